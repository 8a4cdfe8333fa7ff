"""bench/fleet.py's pure parts: its options, reading the PLAY RECAP, one run's numbers, the extrapolation and the
README rows (rendered by bench/report.py from repetitions shaped like the script's)."""

import pytest

from bench import fleet, report

RECAP = """
PLAY RECAP *********************************************************************
sigeti_40001               : ok=21   changed=0    unreachable=0    failed=0    skipped=11   rescued=0    ignored=0
sigeti_40002               : ok=9    changed=1    unreachable=0    failed=1    skipped=3    rescued=0    ignored=0
sigeti_40003               : ok=0    changed=0    unreachable=1    failed=0    skipped=0    rescued=0    ignored=0
"""
PEAKS = {"rss_kb": 4096 * 10, "pss_kb": 2048 * 10, "module_rss_kb": 1024, "module_pss_kb": 512, "processes": 14}


def test_defaults_are_the_claim():
    options = fleet.parse_args([])
    assert (options.servers, options.forks, options.repeat, options.scale, options.catch_up) == (20, 10, 3, 20000, 2)


def test_options_are_read():
    options = fleet.parse_args(["--servers", "5", "--forks", "3", "--repeat", "1", "--scale", "100", "--catch-up", "0"])
    assert (options.servers, options.forks, options.repeat, options.scale, options.catch_up) == (5, 3, 1, 100, 0)


@pytest.mark.parametrize("args", [["--servers", "0"], ["--forks", "-1"], ["--repeat", "two"], ["--catch-up", "-1"]])
def test_bad_options_are_refused_naming_the_value(args, capsys):
    with pytest.raises(SystemExit) as exited:
        fleet.parse_args(args)
    assert exited.value.code == 2
    assert args[0] in capsys.readouterr().err


def test_recap_of_every_host():
    hosts = fleet.parse_recap(RECAP)
    assert sorted(hosts) == ["sigeti_40001", "sigeti_40002", "sigeti_40003"]
    assert hosts["sigeti_40001"] == {"ok": 21, "changed": 0, "unreachable": 0, "failed": 0, "skipped": 11}
    assert hosts["sigeti_40002"]["failed"] == 1 and hosts["sigeti_40003"]["unreachable"] == 1


def test_run_numbers_count_failures_and_busy_time():
    busy = {"sigeti_40001": {"busy_s": 6.0}, "sigeti_40002": {"busy_s": 2.0}}  # the third never got a result
    numbers = fleet.run_numbers(30.0, fleet.parse_recap(RECAP), busy, PEAKS, tasks=32)
    assert numbers["hosts"] == 3 and numbers["per_host_s"] == 10.0
    assert (numbers["failed_hosts"], numbers["unreachable_hosts"], numbers["changed"]) == (1, 1, 1)
    assert (numbers["host_busy_s"], numbers["host_busy_max_s"]) == (2.0, 6.0)
    assert (numbers["controller_mb"], numbers["controller_rss_mb"], numbers["modules_mb"]) == (20.0, 40.0, 0.5)
    assert numbers["processes"] == 14 and numbers["tasks"] == 32


def fake_runs(one, fleet_walls, servers):
    def rep(wall, hosts, mb):
        recap = {"h%d" % n: {"ok": 1, "changed": 0, "unreachable": 0, "failed": 0, "skipped": 0} for n in range(hosts)}
        peaks = dict(PEAKS, pss_kb=mb * 1024)
        return fleet.run_numbers(wall, recap, {}, peaks, tasks=20)

    return {
        "one": [dict(rep(w, 1, 100), rep=i, position=i % 2) for i, w in enumerate(one)],
        "fleet": [dict(rep(w, servers, 300), rep=i, position=1 - i % 2) for i, w in enumerate(fleet_walls)],
    }


def test_extrapolation_follows_the_measured_cost_of_an_added_server():
    runs = fake_runs([10.0, 12.0, 11.0], [48.0, 50.0, 49.0], servers=20)  # 2 s per added server every time
    assert fleet.extrapolate(runs, 20, counts=(1, 20, 100)) == {"1": 11.0, "20": 49.0, "100": 209.0}
    assert fleet.extrapolate(fake_runs([5.0], [5.0], 1), 1, counts=(10,)) == {"10": 50.0}


def test_rows_render_from_the_repetitions():
    options = fleet.parse_args(["--servers", "20", "--forks", "10"])
    specs, rows = fleet.specs_and_rows(options)
    runs = fake_runs([10.0, 12.0, 11.0], [48.0, 50.0, 49.0], servers=20)
    document = {"claim": "fleet", "repetitions": runs, "comparisons": specs}
    first, memory = (report.render(row["measured"], document) for row in rows)
    assert "fleet 49.00 s (48.00–50.00) vs one server 11.00 s (10.00–12.00)" in first
    assert "each added server 2.00 s (2.00–2.00)" in first
    assert "failed or unreachable hosts 0 + 0" in first
    assert "peak PSS 300 MB vs 100 MB for one host (3.00× (3.00–3.00)" in memory
    assert "20 unchanged warehouses" in rows[0]["claim"] and "forks 10" in rows[1]["claim"]
