"""Run the full reliability campaign and print its figures.

    .venv/bin/python scripts/campaign.py [--points N] [--seed S] [-k EXPR] [pytest args...]

Runs ``pytest tests/reliability -m "slow or not slow"`` (the fast subset that ``./dev test`` runs, plus every
case marked slow: >= 20 seeded crash points per scenario and action, server crashes, repeated load runs, the
playbook, report and ansible-runner secret greps), collects the figures every campaign records, and prints:
N/N converged and rows lost per crash scenario, the longest reader stall under lock contention against the
lock budget, and the load runs' committed writes, losses and stalls. Exit status is pytest's.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def summarize(lines):
    """Turn the recorded figure lines into the printed report (a list of text lines)."""
    out = []
    crash = [r for r in lines if r["campaign"] == "crash"]
    if crash:
        out.append("Crash campaign (kill -9 / pg_terminate_backend / server crash at seeded random statements):")
        merged = collections.OrderedDict()
        for line in crash:
            key = (line["scenario"], line["action"])
            entry = merged.setdefault(key, {"points": 0, "converged": 0, "crashed": 0, "rows_lost": 0, "stall": 0.0})
            entry["points"] += line["points"]
            entry["converged"] += line["converged"]
            entry["crashed"] += line["crashed"]
            entry["rows_lost"] += line["rows_lost"]
            entry["stall"] = max(entry["stall"], line["max_reader_stall_ms"])
        for (scenario, action), e in merged.items():
            out.append(
                "  %-22s %-42s %3d/%-3d converged, %d rows lost (%d reached the crash point), max reader stall %.0f ms"
                % (scenario, action, e["converged"], e["points"], e["rows_lost"], e["crashed"], e["stall"])
            )
        total = sum(e["points"] for e in merged.values())
        converged = sum(e["converged"] for e in merged.values())
        lost = sum(e["rows_lost"] for e in merged.values())
        out.append("  TOTAL: %d/%d converged, %d rows lost" % (converged, total, lost))
    locks = [r for r in lines if r["campaign"] == "locks"]
    if locks:
        out.append("Lock contention (lock_timeout 200ms, lock_retries 1; a reader SELECTs every 10 ms):")
        for line in locks:
            out.append(
                "  %-30s failed naming the blocker: %-5s module %.2f s, max reader stall %.0f ms (budget %d ms)"
                % (line["case"], line["failed"], line["module_seconds"], line["max_reader_stall_ms"], line["budget_ms"])
            )
        out.append("  MAX reader stall: %.0f ms" % max(r["max_reader_stall_ms"] for r in locks))
    load = [r for r in lines if r["campaign"] == "load" and "committed" in r]
    if load:
        out.append("Concurrent load (writer: inserts/updates/deletes every 5 ms, one reader every 10 ms):")
        for line in load:
            out.append(
                "  %-24s committed %-40s lost %d, duplicated %d, wrong %d; max stall reader %.0f ms, "
                "writer %.0f ms (budget %d ms)"
                % (
                    line["case"],
                    json.dumps(line["committed"], sort_keys=True),
                    line["lost"],
                    line["duplicated"],
                    line["wrong_value"],
                    line["max_reader_stall_ms"],
                    line["max_writer_stall_ms"],
                    line["budget_ms"],
                )
            )
        rejected = [r for r in lines if r["campaign"] == "load" and r.get("rejected")]
        for line in rejected:
            out.append("  %s: %d (%s)" % (line["case"], len(line["rejected"]), line["rejected"][0]))
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=int, default=20, help="crash points per scenario and action (default 20)")
    parser.add_argument("--seed", type=int, default=20260101, help="seed of the random crash points")
    parser.add_argument("--fast", action="store_true", help="only the fast subset (what ./dev test runs)")
    args, pytest_args = parser.parse_known_args(argv)
    with tempfile.NamedTemporaryFile(prefix="sigeti-campaign-", suffix=".jsonl", delete=False) as report:
        pass  # only its name is needed: the tests append their figures to it
    env = dict(
        os.environ,
        SIGETI_CAMPAIGN_REPORT=report.name,
        SIGETI_CAMPAIGN_POINTS=str(args.points),
        SIGETI_CAMPAIGN_SEED=str(args.seed),
    )
    marker = "not slow" if args.fast else "slow or not slow"
    command = [sys.executable, "-m", "pytest", "-q", "tests/reliability", "-m", marker] + pytest_args
    print("$ " + " ".join(command), flush=True)
    started = time.time()
    code = subprocess.call(command, cwd=ROOT, env=env)
    seconds = time.time() - started
    with open(report.name) as handle:
        lines = [json.loads(line) for line in handle if line.strip()]
    os.unlink(report.name)
    print()
    print("=" * 100)
    print(
        "sigeti.dwh reliability campaign (%s) - seed %d, %.0f s"
        % (
            "fast subset" if args.fast else "full, %d point(s) per crash scenario and action" % args.points,
            args.seed,
            seconds,
        )
    )
    for line in summarize(lines):
        print(line)
    print("pytest exit status: %d" % code)
    return code


if __name__ == "__main__":
    sys.exit(main())
