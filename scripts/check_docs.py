"""Check that ``ansible-doc`` renders every module of the collection (documentation, examples, return)."""

import glob
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
# conftest makes the collection importable: sets ANSIBLE_COLLECTIONS_PATH to a folder linking this repository
import conftest  # noqa: E402,F401  # pylint: disable=unused-import


def main():
    failures = 0
    modules = sorted(os.path.basename(p)[:-3] for p in glob.glob(os.path.join(ROOT, "plugins", "modules", "*.py")))
    for name in modules:
        if name.startswith("_"):
            continue
        out = subprocess.run(
            [
                os.path.join(
                    os.path.dirname(sys.executable),
                    "ansible-doc",
                ),
                "sigeti.dwh.%s" % name,
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            check=False,
        )
        ok = out.returncode == 0 and "EXAMPLES" in out.stdout and "RETURN VALUES" in out.stdout
        print("%s ansible-doc sigeti.dwh.%s" % ("ok    " if ok else "FAILED", name))
        if not ok:
            failures += 1
            print(out.stdout[-3000:])
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
