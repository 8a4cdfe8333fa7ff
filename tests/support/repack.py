"""Debian's PostgreSQL 15 with pg_repack, private to the checkout, for the tests of the collection's pg_repack paths.

Nothing is installed into the system. Once per checkout (under ``.venv/pg15-repack/``, which ``./dev clean``
removes with the venv):

1. ``apt-get download postgresql-15-repack`` (run in the cache folder; the system's package lists first, else a
   private ``apt-get update`` whose lists and caches stay in the cache folder too);
2. a copy of Debian's PostgreSQL 15 laid out as under /usr (``<root>/lib/postgresql/15``, ``<root>/share/postgresql/15``):
   PostgreSQL finds its share and lib folders relative to its own executable when the compiled paths share a prefix
   (Debian: bindir /usr/lib/postgresql/15/bin, sharedir /usr/share/postgresql/15), so the copy's server loads
   extensions from the copy;
3. the package unpacked with ``dpkg-deb -x`` and its files (``pg_repack.so``, the extension's control and SQL files,
   the ``pg_repack`` program) placed into the copy.

When the server's unprivileged user cannot enter the checkout (a checkout under root's 0700 home), the finished copy
is copied as a whole, layout kept, into the system temp folder, as ``pgserver.reachable_bin_dir`` does for plain
binaries (a copy of the bin folder's parent alone would lose the share folder).

    python -m tests.support.repack [--partman]   # builds (or finds) the copy and prints its bin folder
"""

from __future__ import annotations

import contextlib
import fcntl
import glob
import hashlib
import os
import shutil
import subprocess
import sys
import time

from tests.support.pgserver import _own_folder, can_traverse, server_user, shared_root

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CACHE = os.path.join(ROOT, ".venv", "pg15-repack")
PACKAGE = "postgresql-15-repack"
# the benchmarks' baselines also need pg_partman (bench/common.py asks for it; the tests never do)
PARTMAN = "postgresql-15-partman"
MARKS = {
    PACKAGE: (
        "lib/postgresql/15/lib/pg_repack.so",
        "lib/postgresql/15/bin/pg_repack",
        "share/postgresql/15/extension/pg_repack.control",
    ),
    PARTMAN: ("share/postgresql/15/extension/pg_partman.control",),
}
SOURCE_LIB = "/usr/lib/postgresql/15"
SOURCE_SHARE = "/usr/share/postgresql/15"
HOW = (
    "the tests of the pg_repack paths need Debian's PostgreSQL 15 (%s, %s) and apt-get/dpkg-deb with Debian's "
    "package registry reachable, to fetch %s into %s (nothing is installed into the system)"
    % (SOURCE_LIB, SOURCE_SHARE, PACKAGE, CACHE)
)


class RepackUnavailable(RuntimeError):
    """The private PostgreSQL 15 with pg_repack cannot be made here; the message says what failed and how to fix."""


def _run(argv, cwd=None):
    done = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, check=False)
    return done.returncode, (done.stdout + done.stderr).strip()


def _source_key():
    """What the copy is made of: Debian's postgres binary (size, time); a new package rebuilds the copy."""
    postgres = os.path.join(SOURCE_LIB, "bin", "postgres")
    if not os.path.isfile(postgres) or not os.path.isdir(SOURCE_SHARE):
        raise RepackUnavailable("Debian's PostgreSQL 15 is not installed (%s missing): %s" % (postgres, HOW))
    for tool in ("apt-get", "dpkg-deb"):
        if not shutil.which(tool):
            raise RepackUnavailable("%s is not on PATH: %s" % (tool, HOW))
    info = os.stat(postgres)
    return "%d:%d" % (info.st_size, int(info.st_mtime))


def _apt_options(private):
    # no binary package cache written (apt would refresh /var/cache/apt/*.bin as root where they are enabled)
    options = ["-q", "-o", "Dir::Cache::pkgcache=", "-o", "Dir::Cache::srcpkgcache="]
    if os.geteuid() == 0:
        # apt drops to the _apt user for downloads, who cannot write into the checkout; as root say so explicitly
        # (the download is the same, without apt's warning)
        options += ["-o", "APT::Sandbox::User=root"]
    if private:
        options += ["-o", "Dir::State::Lists=" + os.path.join(private, "lists")]
        options += ["-o", "Dir::Cache=" + os.path.join(private, "cache")]
    return options


def download(folder, package=PACKAGE):
    """Return the path of ``package``'s .deb in ``folder``, downloading it when missing."""
    found = sorted(glob.glob(os.path.join(folder, package + "_*.deb")))
    if found:
        return found[-1]
    os.makedirs(folder, exist_ok=True)
    code, output = _run(["apt-get", *_apt_options(None), "download", package], cwd=folder)
    if code != 0:
        # the system's package lists may be missing or stale (a fresh machine): a private update, its lists and
        # caches kept in the checkout, never in /var/lib/apt
        private = os.path.join(CACHE, "apt")
        for sub in ("lists/partial", "cache/archives/partial"):
            os.makedirs(os.path.join(private, sub), exist_ok=True)
        update_code, update_output = _run(["apt-get", *_apt_options(private), "update"], cwd=folder)
        code, again = _run(["apt-get", *_apt_options(private), "download", package], cwd=folder)
        if code != 0:
            raise RepackUnavailable(
                "apt-get download %s failed (with the system's package lists: %s; after a private apt-get update "
                "(exit %d: %s): %s): %s"
                % (package, output[-300:], update_code, update_output[-300:], again[-300:], HOW)
            )
    found = sorted(glob.glob(os.path.join(folder, package + "_*.deb")))
    if not found:
        raise RepackUnavailable("apt-get download %s left no .deb in %s: %s" % (package, folder, HOW))
    return found[-1]


def _readable(tree):
    """Let the server's unprivileged user read and traverse the whole tree."""
    for folder, _dirs, files in os.walk(tree):
        os.chmod(folder, 0o755)
        for name in files:
            path = os.path.join(folder, name)
            if not os.path.islink(path):
                os.chmod(path, os.stat(path).st_mode | 0o444)


def _bin(root):
    return os.path.join(root, "lib", "postgresql", "15", "bin")


def build(root, debs):
    """Make at ``root`` (absent) a relocatable copy of Debian's PostgreSQL 15 with the packages ``debs``
    (``{package: .deb path}``) placed into it."""
    partial = "%s.partial-%d" % (root, os.getpid())
    shutil.rmtree(partial, ignore_errors=True)
    os.makedirs(partial)
    # real copies (the symlink-resolved executable path decides where PostgreSQL looks for its share folder)
    shutil.copytree(SOURCE_LIB, os.path.join(partial, "lib", "postgresql", "15"), symlinks=True)
    shutil.copytree(SOURCE_SHARE, os.path.join(partial, "share", "postgresql", "15"), symlinks=True)
    placed = {mark: False for package in debs for mark in MARKS[package]}
    for deb in debs.values():
        placed.update(_place(partial, deb))
    missing = [path for path, done in placed.items() if not done]
    if missing:
        shutil.rmtree(partial, ignore_errors=True)
        raise RepackUnavailable(
            "%s hold no %s: %s" % (", ".join(map(os.path.basename, debs.values())), ", ".join(missing), HOW)
        )
    _readable(partial)
    os.rename(partial, root)
    try:
        check(root)
    except RepackUnavailable:
        shutil.rmtree(root, ignore_errors=True)
        raise
    return root


def _place(partial, deb):
    """Unpack ``deb`` and copy its PostgreSQL 15 files into the copy at ``partial``; return {relative path: True}."""
    unpacked = os.path.join(partial, "deb")
    code, output = _run(["dpkg-deb", "-x", deb, unpacked])
    if code != 0:
        shutil.rmtree(partial, ignore_errors=True)
        raise RepackUnavailable("dpkg-deb -x %s failed: %s" % (deb, output[-500:]))
    placed = {}
    for top in ("lib/postgresql/15", "share/postgresql/15"):
        source = os.path.join(unpacked, "usr", top)
        if not os.path.isdir(source):
            continue
        for folder, _dirs, files in os.walk(source):
            for name in files:
                relative = os.path.relpath(os.path.join(folder, name), os.path.join(unpacked, "usr"))
                os.makedirs(os.path.join(partial, os.path.dirname(relative)), exist_ok=True)
                shutil.copy2(os.path.join(folder, name), os.path.join(partial, relative))
                placed[relative] = True
    shutil.rmtree(unpacked)
    return placed


def check(root):
    """Refuse a copy whose programs would read the system's share or lib folders instead of the copy's."""
    bin_dir = _bin(root)
    for flag, expected in (("--sharedir", "share/postgresql/15"), ("--pkglibdir", "lib/postgresql/15/lib")):
        code, output = _run([os.path.join(bin_dir, "pg_config"), flag])
        if code != 0 or os.path.realpath(output) != os.path.realpath(os.path.join(root, expected)):
            raise RepackUnavailable(
                "the copy of PostgreSQL 15 at %s is not relocatable: pg_config %s says %r, not %s"
                % (root, flag, output, os.path.join(root, expected))
            )
    code, output = _run([os.path.join(bin_dir, "pg_repack"), "--version"])
    if code != 0 or not output.startswith("pg_repack "):
        raise RepackUnavailable("%s/pg_repack --version failed: %s" % (bin_dir, output[-300:]))
    return output.split()[1]


@contextlib.contextmanager
def _locked():
    os.makedirs(CACHE, exist_ok=True)
    with open(os.path.join(CACHE, ".lock"), "w") as handle:  # pytest-xdist workers build it once, one at a time
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def prepared_root(partman=False):
    """The copy's root folder in the checkout (built when missing or made from another PostgreSQL 15 package);
    with ``partman``, a copy that also holds pg_partman (the benchmarks' baselines)."""
    packages = (PACKAGE, PARTMAN) if partman else (PACKAGE,)
    key = _source_key() + ":" + ",".join(packages)
    prefix = "root-partman-" if partman else "root-"
    root = os.path.join(CACHE, prefix + hashlib.sha1(key.encode()).hexdigest()[:12])
    with _locked():
        if not os.path.isdir(root):
            for old in glob.glob(os.path.join(CACHE, prefix + "*")):
                if partman or not os.path.basename(old).startswith("root-partman-"):
                    shutil.rmtree(old, ignore_errors=True)
            build(root, {p: download(os.path.join(CACHE, "download"), p) for p in packages})
    return root


def reachable_root(root, user):
    """``root``, or a whole copy of it (same layout) the server user can enter, in the system temp folder."""
    if user is None or can_traverse(_bin(root), *user):
        return root
    target = os.path.join(shared_root(user), "sigeti-dwh-pg15-repack-" + hashlib.sha1(root.encode()).hexdigest()[:12])
    with _locked():
        if not os.path.exists(target):
            partial = "%s.partial-%d" % (target, os.getpid())
            shutil.copytree(root, partial, symlinks=True)
            os.chmod(partial, 0o755)
            os.rename(partial, target)
            try:
                check(target)
            except RepackUnavailable:
                shutil.rmtree(target, ignore_errors=True)
                raise
    return _own_folder(target, (os.geteuid(),))


def pg15_repack_bin_dir(partman=False):
    """The bin folder (postgres, initdb, pg_ctl, pg_repack) of the private PostgreSQL 15 with pg_repack (and
    pg_partman with ``partman``), as the server's user can run it. Raises RepackUnavailable saying what failed and
    how to get it."""
    return _bin(reachable_root(prepared_root(partman), server_user()))


if __name__ == "__main__":
    started = time.monotonic()
    try:
        print(pg15_repack_bin_dir(partman="--partman" in sys.argv))
    except RepackUnavailable as error:
        print(error, file=sys.stderr)
        sys.exit(1)
    print("ready in %.1f s" % (time.monotonic() - started), file=sys.stderr)
