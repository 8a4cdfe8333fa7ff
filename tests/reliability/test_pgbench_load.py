"""The slow variant of tests/integration/test_pgbench_migration.py, at the scale the issue saw the deadlocks and the
catch-up collapse: pgbench scale 10 (a million accounts, ten hot branch rows), 500,000 history rows over 24 months,
4 TPC-B clients with --foreign-keys and --max-tries 1, each mode. Run by ``scripts/campaign.py`` (marked slow: not in
``./dev test``); the figures (TPC-B's longest transaction, tps before and during, the module's time) are recorded
for the campaign's report.
"""

import time

import pytest

from tests.integration.test_pgbench_migration import _args, _check_application, _foreign_keys
from tests.reliability.harness import record
from tests.support.modules import run_module
from tests.support.pgbench import Pgbench

HISTORY = 500000


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["offline", "online", "attach"])
def test_migration_under_tpcb_at_scale(pg_server, db, conn, tmp_path, mode):
    bench = Pgbench(pg_server, db, str(tmp_path)).init(scale=10)
    seeded = bench.seed_history(HISTORY)
    if mode == "online":
        bench.add_history_key()
    before = _foreign_keys(conn)
    args = _args(pg_server, db, migrate=mode, extend_primary_key=mode == "online", batch_rows=100000)
    with bench.running(clients=4, threads=2) as running:
        time.sleep(3)
        started = time.time()
        result = run_module("partitioned_table", args)
        ended = time.time()
        time.sleep(2)
    report = running.result
    record(
        "pgbench",
        case="%s migration, scale 10, %d history rows, 4 TPC-B clients" % (mode, seeded),
        module_seconds=round(ended - started, 2),
        tps_before=round(report.tps_between(report.started, started)),
        tps_during=round(report.tps_between(started, ended)),
        longest_transaction_ms=round(report.max_latency(started, ended) * 1000),
        failed_transactions=report.failed,
        swap_attempts=(result.get("migration") or {}).get("swap_attempts"),
    )
    assert not result.get("failed"), result.get("msg")
    assert result["migration"]["swap_attempts"] == 1, result["migration"]
    _check_application(conn, report, seeded)
    assert _foreign_keys(conn) == before
