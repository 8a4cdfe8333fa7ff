"""The test command: every gate, in order, with a summary. Run through ``./dev test``.

Stages are plain commands; a stage that fails fails the run (after the others ran, so one run shows
everything). Extra arguments go to pytest.
"""

import os
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
# conftest keeps Ansible's home, the collections path and the tools' caches (pip, ansible-lint, molecule) under
# .venv for every stage run from here: nothing lands in ~
import conftest  # noqa: E402,F401  # pylint: disable=unused-import

JUNIT = os.path.join(ROOT, "tests", "output", "junit.xml")


def pytest_counts():
    """Return (passed, failed, skipped) from pytest's JUnit report, or None when there is none."""
    from xml.etree import ElementTree

    if not os.path.exists(JUNIT):
        return None
    suite = ElementTree.parse(JUNIT).getroot()
    suite = suite if suite.tag == "testsuite" else suite.find("testsuite")
    total, failed = int(suite.get("tests")), int(suite.get("failures")) + int(suite.get("errors"))
    skipped = int(suite.get("skipped"))
    return total - failed - skipped, failed, skipped


# The version-matrix corner CI runs: the oldest and newest PostgreSQL on the tests that drive every module
# (table_info, partitioned_table incl. migrate, compression, vacuum, explain_info through its role).
MATRIX_CORNER = [
    "tests/integration/test_table_info.py",
    "tests/integration/test_partitioned_table.py",
    "tests/integration/test_partitioned_table_migrate.py",
    "tests/integration/test_compression.py",
    "tests/integration/test_vacuum.py",
    "tests/integration/test_roles_explain_info.py",
]
WORKERS = os.environ.get("SIGETI_TEST_WORKERS", "2")  # pytest-xdist processes; 1 runs pytest in one process


def gate(name):
    """The command running one quality gate of scripts/gates.py."""
    return [sys.executable, os.path.join(ROOT, "scripts", "gates.py"), name]


def stages(pytest_args):
    """The ordered list of (name, command) the test command runs (fast static gates first)."""
    venv_bin = os.path.dirname(sys.executable)
    parallel = ["-n", WORKERS] if WORKERS != "1" else []
    return [
        ("gate: ruff (lint + format check)", gate("ruff")),
        ("gate: changelog (antsibull-changelog lint)", gate("changelog")),
        ("gate: ansible-lint --profile production", gate("lint")),
        ("gate: ansible-test sanity (ansible-core 2.19, Python 3.11)", gate("sanity")),
        ("gate: ansible-test sanity (ansible-core 2.21, Python 3.13)", gate("sanity-2.21")),
        ("gate: ansible-test units", gate("units")),
        ("gate: docs (lint-collection-docs, HTML site)", gate("docs")),
        (
            "pytest (unit + integration, real PostgreSQL)",
            [sys.executable, "-m", "pytest", "--junitxml", JUNIT] + parallel + pytest_args,
        ),
        ("ansible-doc renders every module", [sys.executable, os.path.join(ROOT, "scripts", "check_docs.py")]),
        (
            "molecule test --all (extensions/molecule, throwaway PostgreSQL per scenario)",
            [
                "env",
                "PATH=" + venv_bin + os.pathsep + os.environ.get("PATH", ""),
                os.path.join(venv_bin, "molecule"),
                "test",
                "--all",
            ],
        ),
        (
            "matrix corner: PostgreSQL 14 and 18 (ansible-core 2.19)",
            [
                sys.executable,
                os.path.join(ROOT, "scripts", "matrix.py"),
                "--pg",
                "14",
                "18",
                "--core",
                "2.19",
                "--workers",
                WORKERS,
                "--tests",
            ]
            + MATRIX_CORNER,
        ),
    ]


def main(argv):
    results = []
    if os.path.exists(JUNIT):
        os.remove(JUNIT)
    for name, command in stages(argv):
        print("\n=== %s\n$ %s" % (name, " ".join(command)), flush=True)
        started = time.time()
        code = subprocess.call(command, cwd=ROOT)
        results.append((name, code, time.time() - started))
    print("\n=== summary")
    for name, code, seconds in results:
        print("%-6s %6.1fs  %s" % ("ok" if code == 0 else "FAILED", seconds, name))
    counts = pytest_counts()
    failed_stages = sum(1 for _name, code, _seconds in results if code != 0)
    print("stages: %d of %d failed" % (failed_stages, len(results)))
    if counts:
        print("pytest: %d passed, %d failed, %d skipped" % counts)
    return 0 if all(code == 0 for _name, code, _seconds in results) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
