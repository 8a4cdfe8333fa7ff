"""Run every benchmark at its default (claim) scale, one after the other, then rebuild the README table.

    .venv/bin/python bench/run_all.py [--only migration,vacuum] [--dry-run]

Run it on a quiet machine: the numbers of a run that shared the cores with other work are not the claim.
Each script writes bench/results/<claim>.json; a failing script stops the run (its previous results stay).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time

BENCH = os.path.dirname(os.path.abspath(__file__))
# Shortest first, so a broken set-up shows early.
SCRIPTS = (
    "table_info_partitions",
    "partition_maintenance",
    "compression",
    "cold_data",
    "weekly_playbook",
    "report_scale",
    "vacuum",
    "fleet",
    "migration",
    "pgbench_migration",
)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default="", help="comma-separated script names (default: all)")
    parser.add_argument("--dry-run", action="store_true", help="print the commands only")
    args = parser.parse_args(argv)
    chosen = [s for s in SCRIPTS if not args.only or s in args.only.split(",")]
    for name in chosen:
        command = [sys.executable, os.path.join(BENCH, name + ".py")]
        print("$ %s" % " ".join(command), flush=True)
        if args.dry_run:
            continue
        started = time.monotonic()
        done = subprocess.run(command, check=False)
        print("%s: exit %d after %.0f s" % (name, done.returncode, time.monotonic() - started), flush=True)
        if done.returncode != 0:
            return done.returncode
    if not args.dry_run:
        return subprocess.run([sys.executable, os.path.join(BENCH, "report.py"), "--write"], check=False).returncode
    return 0


if __name__ == "__main__":
    sys.exit(main())
