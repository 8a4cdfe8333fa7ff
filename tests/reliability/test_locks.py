"""Lock contention: a long transaction holds a lock on a partition, the parent, or the default partition.

Every modifying module waits at most lock_timeout per attempt (200ms, lock_retries 1), then fails with a message
naming the blocking pid and its query. A reader probe (SELECT every 10 ms) runs meanwhile: it may wait behind
the module's queued lock request, but only for about lock_timeout x attempts. The longest stall is reported; the
assertion is only a generous bound proving "not queued indefinitely".
"""

import time

import pytest

from tests.reliability.harness import Probe, record, setup_migration
from tests.support.modules import run_module

LOCK_TIMEOUT_MS = 200
ATTEMPTS = 2  # lock_retries 1
GENEROUS_BOUND_S = 5.0


def _setup(conn):
    """lc.p monthly: months -2..0 exist, rows of month +1 wait in the default partition."""
    with conn.cursor() as cur:
        cur.execute("CREATE SCHEMA lc")
        cur.execute(
            "CREATE TABLE lc.p (id int NOT NULL, jour date NOT NULL, note text, PRIMARY KEY (id, jour)) "
            "PARTITION BY RANGE (jour)"
        )
        cur.execute("CREATE TABLE lc.p_default PARTITION OF lc.p DEFAULT")
        for back, name in ((2, "old"), (1, "prev"), (0, "cur")):
            cur.execute(
                "SELECT (date_trunc('month', current_date) - make_interval(months => %s))::date::text, "
                "(date_trunc('month', current_date) - make_interval(months => %s))::date::text",
                (back, back - 1),
            )
            low, high = cur.fetchone()
            cur.execute("CREATE TABLE lc.p_%s PARTITION OF lc.p FOR VALUES FROM ('%s') TO ('%s')" % (name, low, high))
        cur.execute(
            "INSERT INTO lc.p SELECT i, date_trunc('month', current_date)::date - 70 + i % 100, "
            "repeat(md5(i::text), 80) FROM generate_series(1, 400) i"
        )
        cur.execute("SELECT (date_trunc('month', current_date) - interval '2 month')::date::text")
        return cur.fetchone()[0]


TARGETS = {
    "partition": "SELECT count(*) FROM lc.p_old",
    "parent": "SELECT count(*) FROM lc.p",
    "default": "SELECT count(*) FROM lc.p_default",
}


def _module_args(module, start):
    if module == "partitioned_table":
        return {
            "name": "lc.p",
            "key": "jour",
            "interval": "month",
            "start": start,
            "premake": 1,
            "retention": {"keep": 1, "action": "detach"},
        }
    if module == "compression":
        return {"name": "lc.p", "columns": {"note": "lz4"}}
    return {"tables": ["lc.p"], "full": "always", "full_method": "vacuum_full", "disk_check": "never"}


def _hold(pg_server, db, statement):
    blocker = pg_server.connect(db, autocommit=False)
    with blocker.cursor() as cur:
        cur.execute(statement)
    return blocker


def _check(result, blocker_pid, statement, elapsed, probe, label):
    figures = probe.stop()
    record(
        "locks",
        case=label,
        failed=bool(result.get("failed")),
        module_seconds=round(elapsed, 2),
        max_reader_stall_ms=figures["max_stall_ms"],
        reader_queries=figures["queries"],
        budget_ms=LOCK_TIMEOUT_MS * ATTEMPTS,
    )
    assert result.get("failed"), (label, result)
    assert "pid %d" % blocker_pid in result["msg"], (label, result["msg"])
    assert statement in result["msg"], (label, result["msg"])
    assert elapsed < GENEROUS_BOUND_S and figures["max_stall_ms"] < GENEROUS_BOUND_S * 1000, (label, figures)
    assert not figures["errors"], figures


@pytest.mark.parametrize("target", sorted(TARGETS))
@pytest.mark.parametrize("module", ["compression", "partitioned_table", "vacuum"])
def test_module_waits_at_most_lock_timeout_and_names_the_blocker(pg_server, db, conn, module, target):
    start = _setup(conn)
    statement = TARGETS[target]
    blocker = _hold(pg_server, db, statement)
    args = pg_server.params(db)
    args.update(
        _module_args(module, start), lock_timeout="%dms" % LOCK_TIMEOUT_MS, lock_retries=1, lock_retry_delay=0.05
    )
    try:
        with Probe(pg_server.dsn(db), "SELECT count(*) FROM lc.p") as probe:
            time.sleep(0.05)
            began = time.monotonic()
            result = run_module(module, args)
            elapsed = time.monotonic() - began
            time.sleep(0.05)
            _check(result, blocker.get_backend_pid(), statement, elapsed, probe, "%s/%s" % (module, target))
    finally:
        blocker.rollback()
        blocker.close()


def test_migration_waits_at_most_lock_timeout_and_names_the_blocker(pg_server, db, conn):
    """A live migration's capture triggers need SHARE ROW EXCLUSIVE: an open write transaction blocks them."""
    from ansible_collections.sigeti.dwh.plugins.module_utils.core.errors import DwhError
    from tests.support.migration_driver import migrate

    setup_migration(conn, rows=500)
    statement = "UPDATE mg.fait SET note = 'held' WHERE id = 1"
    blocker = _hold(pg_server, db, statement)
    engine = pg_server.connect(db, application_name="sigeti.dwh")
    try:
        with engine.cursor() as cur:
            cur.execute("SET lock_timeout = '%dms'" % LOCK_TIMEOUT_MS)
        with Probe(pg_server.dsn(db), "SELECT count(*) FROM mg.fait") as probe:
            began = time.monotonic()
            try:
                migrate(engine, "mg.fait", "date_key", extend_primary_key=True, retries=1, retry_delay=0.05)
                result = {"changed": True}
            except DwhError as error:
                result = {"failed": True, "msg": error.msg}
            elapsed = time.monotonic() - began
            _check(result, blocker.get_backend_pid(), statement, elapsed, probe, "migration/table")
    finally:
        blocker.rollback()
        blocker.close()
        engine.close()
