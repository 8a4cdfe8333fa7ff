"""The test command: every gate, in order, with a summary. Run through ``./dev test``.

Stages are plain commands; a stage that fails fails the run (after the others ran, so one run shows
everything). Extra arguments go to pytest.
"""

import os
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
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


def stages(pytest_args):
    """The ordered list of (name, command) the test command runs."""
    return [
        ("pytest (unit + integration, real PostgreSQL)",
         [sys.executable, "-m", "pytest", "--junitxml", JUNIT] + pytest_args),
        ("ansible-doc renders every module", [sys.executable, os.path.join(ROOT, "scripts", "check_docs.py")]),
        ("molecule test --all (extensions/molecule, throwaway PostgreSQL per scenario)", ["env", "PATH=" + os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", ""), os.path.join(os.path.dirname(sys.executable), "molecule"), "test", "--all"]),
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
