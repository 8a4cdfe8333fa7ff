"""bench/report.py: the README's measured table is computed from bench/results/*.json and checked against them.

The check runs with the system's python3 and ``-I`` (isolated: no site-packages, no PYTHONPATH), which is how
it proves it needs the standard library only.
"""

import glob
import json
import os
import shutil
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "bench"))
import report  # noqa: E402

PYTHON3 = shutil.which("python3") or sys.executable


def check(*args):
    return subprocess.run(
        [PYTHON3, "-I", os.path.join(ROOT, "bench", "report.py"), "--check", *args],
        capture_output=True,
        text=True,
        check=False,
    )


def test_committed_readme_matches_committed_results():
    assert glob.glob(os.path.join(ROOT, "bench", "results", "*.json")), "no results file: run a benchmark"
    done = check()
    assert done.returncode == 0, done.stderr


def test_edited_readme_number_fails_the_check(tmp_path):
    readme = tmp_path / "README.md"
    with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as handle:
        text = handle.read()
    table = report.readme_table(text)
    assert table and "×" in table
    # Change the first ratio of the table, as a hand edit would.
    head, rest = table.split("×", 1)
    digits = head.rstrip()[-1]
    tampered = head[:-1] + ("1" if digits != "1" else "2") + "×" + rest
    readme.write_text(text.replace(table, tampered), encoding="utf-8")
    done = check("--readme", str(readme))
    assert done.returncode == 1
    assert "disagrees" in done.stderr and "bench/report.py --write" in done.stderr


def test_edited_repetition_fails_the_check(tmp_path):
    results = tmp_path / "results"
    shutil.copytree(os.path.join(ROOT, "bench", "results"), results)
    path = sorted(results.glob("*.json"))[0]
    document = json.loads(path.read_text(encoding="utf-8"))
    first = next(iter(document["repetitions"].values()))[0]
    # a timing of the repetition (not every script times the whole repetition as wall_s)
    metric = next(k for k, v in sorted(first.items()) if k.endswith("_s") and isinstance(v, float))
    first[metric] = first[metric] * 3 + 1
    path.write_text(json.dumps(document), encoding="utf-8")
    done = check("--results", str(results))
    assert done.returncode == 1
    assert path.name in done.stderr and "disagree with its own repetitions" in done.stderr


def test_results_without_provenance_fail(tmp_path):
    (tmp_path / "x.json").write_text(json.dumps({"claim": "x", "script": "bench/x.py"}), encoding="utf-8")
    done = check("--results", str(tmp_path))
    assert done.returncode == 1
    assert "lacks commit" in done.stderr


def test_every_results_file_carries_its_provenance():
    for path in glob.glob(os.path.join(ROOT, "bench", "results", "*.json")):
        with open(path, encoding="utf-8") as handle:
            document = json.load(handle)
        assert len(document["commit"]) == 40, path
        assert document["machine"]["cores"] >= 1, path
        assert document["postgresql"]["settings"]["server_version"], path
        assert document["scale"] in ("full", "tiny"), path
        for reps in document["repetitions"].values():
            assert {r["rep"] for r in reps} == set(range(len(reps))), path


def runs(a, b):
    return {"a": [{"wall_s": x} for x in a], "b": [{"wall_s": x} for x in b]}


@pytest.mark.parametrize(
    "a, b, expected",
    [
        ([1.0, 1.0, 1.0], [2.0, 2.0, 2.0], "0.50× (0.50–0.50)"),
        ([0.9, 1.2, 1.0], [1.0, 1.0, 1.0], "no difference (0.90–1.20×)"),  # spread crosses 1: never a gain
        ([3.0, 2.5, 2.0], [1.0, 1.0, 1.0], "2.50× (2.00–3.00)"),
    ],
)
def test_ratio_is_paired_by_repetition_and_says_no_difference_across_one(a, b, expected):
    assert report.ratio_text(report.compare(runs(a, b), "a", "b")) == expected


def test_tiny_scale_rows_are_labelled():
    document = {
        "claim": "c",
        "script": "bench/c.py",
        "commit": "0" * 40,
        "scale": "tiny",
        "machine": {"cores": 2},
        "postgresql": {"settings": {"server_version": "15.18", "fsync": "on", "synchronous_commit": "on"}},
        "parameters": {},
        "repetitions": runs([1.0, 1.0, 1.0], [2.0, 2.0, 2.0]),
        "comparisons": [{"name": "r", "method": "a", "baseline": "b"}],
        "rows": [{"claim": "c", "measured": "{ratio:r}, a {time:a.wall_s}"}],
    }
    (row,) = report.build_rows([document])
    assert "tiny-scale check, not the claim" in row
    assert "**not durable**" in row  # full_page_writes missing from the settings
    assert "0.50× (0.50–0.50), a 1.00 s (1.00–1.00)" in row


def test_interleaved_order_rotates():
    import importlib

    sys.path.insert(0, ROOT)
    common = importlib.import_module("bench.common")
    assert common.interleaved("ABC", 4) == [list("ABC"), list("BCA"), list("CAB"), list("ABC")]


LOG = """\
2026-11-29 10:48:18.380 UTC [101] | LOG:  connection received: host=127.0.0.1 port=5000
2026-11-29 10:48:18.381 UTC [101] sigeti.dwh| LOG:  connection authorized: user=postgres database=b application_name=sigeti.dwh
2026-11-29 10:48:18.382 UTC [101] sigeti.dwh| LOG:  duration: 0.500 ms  statement: BEGIN
2026-11-29 10:48:18.383 UTC [101] sigeti.dwh| LOG:  duration: 12.000 ms  statement:
\tSELECT slow
\tFROM pg_class
2026-11-29 10:48:18.384 UTC [102] bench-harness| LOG:  connection authorized: user=postgres database=b application_name=bench-harness
2026-11-29 10:48:18.385 UTC [102] bench-harness| LOG:  duration: 99.000 ms  statement: SELECT harness
2026-11-29 10:48:18.386 UTC [103] bench-probe| LOG:  duration: 5.000 ms  statement: INSERT probe
2026-11-29 10:48:18.387 UTC [101] sigeti.dwh| ERROR:  canceling statement due to lock timeout
2026-11-29 10:48:18.388 UTC [101] sigeti.dwh| LOG:  duration: 0.500 ms  statement: ROLLBACK
"""


def test_server_log_counts_what_clients_sent_without_the_harness(tmp_path):
    import importlib

    sys.path.insert(0, ROOT)
    common = importlib.import_module("bench.common")
    path = tmp_path / "server.log"
    path.write_text("2026-11-29 10:48:00.000 UTC [100] psql| LOG:  duration: 1.0 ms  statement: before the mark\n")

    class Server:
        log_file = str(path)

    log = common.ServerLog(Server())
    log.mark()
    with open(path, "a") as handle:
        handle.write(LOG)
    counts = log.read()
    assert counts["statements"] == 3  # BEGIN, the slow SELECT, ROLLBACK: harness, probe and earlier lines left out
    assert counts["connections"] == 1
    assert counts["errors"] == 1
    assert abs(counts["db_s"] - 0.013) < 1e-9
    assert counts["slowest_sql"] == "SELECT slow FROM pg_class"


def test_a_run_below_the_default_scale_is_tiny():
    import importlib

    sys.path.insert(0, ROOT)
    common = importlib.import_module("bench.common")
    defaults = {"scale": 5000000, "repeat": 3}
    assert common.scale_label({"scale": 5000000, "repeat": 3, "batch_rows": 10}, defaults) == "full"
    assert common.scale_label({"scale": 20000, "repeat": 3}, defaults) == "tiny"
    assert common.scale_label({"scale": 5000000, "repeat": 2}, defaults) == "tiny"  # fewer than 3 repetitions


@pytest.mark.parametrize(
    "low, median, high, at_most, expected",
    [
        (1.19, 1.34, 1.44, True, "goal ≤ 1.25×: missed (spread crosses it)"),
        (1.30, 1.34, 1.44, True, "goal ≤ 1.25×: missed"),
        (1.10, 1.20, 1.24, True, "goal ≤ 1.25×: met"),
        (3.8, 3.95, 4.25, False, "goal ≥ 2×: met"),
    ],
)
def test_goals_read_met_or_missed_by_the_median_and_say_when_the_spread_crosses(low, median, high, at_most, expected):
    goal = 1.25 if at_most else 2
    assert report.goal_text({"min": low, "median": median, "max": high}, goal, at_most) == expected


def test_a_time_goal_reads_met_or_missed():
    document = {"repetitions": {"m": [{"db_s": 0.2}, {"db_s": 0.25}, {"db_s": 0.3}]}, "comparisons": []}
    assert report.render("{under:m.db_s,0.1}", document) == "goal ≤ 100 ms: missed"
    assert report.render("{under:m.db_s,1}", document) == "goal ≤ 1.00 s: met"
