"""Concurrent load: a writer (inserts, updates, deletes at a steady rate, each committed one by one and logged)
and a reader run during partition maintenance, online recompression, VACUUM FULL and a live migration. Nothing
committed is lost or duplicated (the writer's log vs the table), and the longest stalls of the reader and the
writer are reported against the lock budget (lock_timeout x attempts)."""

import datetime
import time

import pytest

from tests.reliability.harness import SEED, Probe, Writer, record, setup_migration
from tests.support.modules import run_module

LOCK_TIMEOUT = "500ms"
BUDGET_MS = 500 * 4  # lock_timeout x (1 + lock_retries 3)


def _exec(conn, *statements):
    with conn.cursor() as cur:
        for statement in statements:
            cur.execute(statement)


def _rows(conn, query):
    with conn.cursor() as cur:
        cur.execute(query)
        return cur.fetchall()


def _month(offset):
    today = datetime.date.today().replace(day=1)
    month = today.month - 1 + offset
    return datetime.date(today.year + month // 12, month % 12 + 1, 1)


def _partitioned(conn, rows, note_size=0):
    """ld.p monthly: months -3..0 and a default; existing rows in months -3..+1 (month +1 in the default)."""
    _exec(
        conn,
        "CREATE SCHEMA ld",
        "CREATE TABLE ld.p (id int NOT NULL, jour date NOT NULL, val int, note text, PRIMARY KEY (id, jour)) "
        "PARTITION BY RANGE (jour)",
        "CREATE TABLE ld.p_default PARTITION OF ld.p DEFAULT",
    )
    for offset in range(-3, 1):
        _exec(
            conn,
            "CREATE TABLE ld.p_%d PARTITION OF ld.p FOR VALUES FROM ('%s') TO ('%s')"
            % (offset + 3, _month(offset), _month(offset + 1)),
        )
    note = "repeat(md5(i::text) || ' lot ', %d)" % (note_size // 37) if note_size else "NULL"
    _exec(
        conn,
        "INSERT INTO ld.p SELECT i, date '%s' + i %% 150, i, %s FROM generate_series(1, %d) i"
        % (_month(-3), note, rows),
    )
    return dict(_rows(conn, "SELECT id, val FROM ld.p"))


def _days():
    first = _month(-3)
    return [first + datetime.timedelta(days=d) for d in range(0, 150)]


def _during(
    pg_server,
    db,
    conn,
    expected,
    action,
    label,
    note_size=0,
    reader="SELECT count(*) FROM ld.p",
    table="ld.p",
    days=None,
    tolerated=(),
    seed=SEED,
):
    with Probe(pg_server.dsn(db), reader) as probe, Writer(
        pg_server.dsn(db), table, days or _days(), expected, note_size=note_size, seed=seed
    ) as writer:
        time.sleep(0.3)
        result = action()
        time.sleep(0.3)
        writer.stop()
        reader_figures = probe.stop()
    comparison = writer.compare(conn)
    figures = dict(
        writer.figures(),
        max_reader_stall_ms=reader_figures["max_stall_ms"],
        reader_errors=reader_figures["errors"],
        budget_ms=BUDGET_MS,
        lost=len(comparison["lost"]),
        duplicated=len(comparison["duplicated"]),
        wrong_value=len(comparison["wrong_value"]),
        unexpected=len(comparison["unexpected"]),
    )
    record("load", case=label, seed=seed, **figures)
    assert not result.get("failed"), result
    assert comparison == {"lost": [], "unexpected": [], "duplicated": [], "wrong_value": []}, comparison
    rejected = [e for e in writer.errors if any(t in e for t in tolerated)]
    record("load", case=label + ": writes rejected (rolled back, never committed)", rejected=rejected)
    assert not set(writer.errors) - set(rejected) and not reader_figures["errors"], figures
    assert sum(writer.committed.values()) > 20, figures
    return result, figures


def _args(pg_server, db, **extra):
    args = pg_server.params(db)
    args.update(lock_timeout=LOCK_TIMEOUT, lock_retries=3, lock_retry_delay=0.1)
    args.update(extra)
    return args


def test_partition_maintenance_under_load(pg_server, db, conn, seed=SEED):
    expected = _partitioned(conn, 1500)
    args = _args(pg_server, db, name="ld.p", key="jour", interval="month", start=str(_month(-3)), premake=2)
    # Writers of the period being attached wait at the parent while the default's rows move (SHARE ROW EXCLUSIVE):
    # none is routed to the default partition meanwhile, so none fails with "violates partition constraint".
    result, _stalls = _during(
        pg_server, db, conn, expected, lambda: run_module("partitioned_table", args), "partition maintenance", seed=seed
    )
    assert result["created"] and result["moved_rows"], result


def test_online_recompression_under_load(pg_server, db, conn, seed=SEED):
    expected = _partitioned(conn, 600, note_size=4000)
    args = _args(
        pg_server, db, name="ld.p", columns={"note": "lz4"}, recompress="online", batch_size=50, measure="exact"
    )
    result, figures = _during(
        pg_server,
        db,
        conn,
        expected,
        lambda: run_module("compression", args),
        "online recompression",
        note_size=4000,
        seed=seed,
    )
    left = dict(_rows(conn, "SELECT coalesce(pg_column_compression(note), 'none'), count(*) FROM ld.p GROUP BY 1"))
    record("load", case="online recompression: methods after", methods=left)
    assert set(left) <= {"lz4", "none"}, left


def test_vacuum_full_under_load(pg_server, db, conn):
    expected = _partitioned(conn, 3000)
    _exec(conn, "DELETE FROM ld.p WHERE id % 3 = 0")
    expected = {k: v for k, v in expected.items() if k % 3}
    args = _args(
        pg_server, db, tables=["ld.p"], full="always", full_method="vacuum_full", disk_check="never", analyze="always"
    )
    _during(pg_server, db, conn, expected, lambda: run_module("vacuum", args), "vacuum full")


def test_live_migration_under_load(pg_server, db, conn):
    """The writer keeps writing through the whole online migration, the swap included."""
    from tests.support.migration_driver import migrate

    setup_migration(conn, rows=2000)
    _exec(
        conn,
        "DROP VIEW mg.v_fait",
        "ALTER TABLE mg.fait RENAME COLUMN montant TO val",
        "ALTER TABLE mg.fait ALTER COLUMN val TYPE int",
        "ALTER TABLE mg.fait RENAME COLUMN date_key TO jour",
    )
    expected = dict(_rows(conn, "SELECT id, val FROM mg.fait"))
    engine = pg_server.connect(db, application_name="sigeti.dwh")
    _exec(engine, "SET lock_timeout = '%s'" % LOCK_TIMEOUT)

    def action():
        return migrate(engine, "mg.fait", "jour", extend_primary_key=True, batch_rows=200, retries=3, retry_delay=0.1)

    days = [int(d.strftime("%Y%m%d")) for d in _days()]
    try:
        _during(
            pg_server,
            db,
            conn,
            expected,
            action,
            "live migration",
            reader="SELECT count(*) FROM mg.fait",
            table="mg.fait",
            days=days,
        )
    finally:
        engine.close()
    assert _rows(conn, "SELECT relkind FROM pg_class WHERE oid = 'mg.fait'::regclass") == [("p",)]


@pytest.mark.slow
@pytest.mark.parametrize("repeat", range(5))
def test_full_load_campaign(pg_server, db, conn, repeat):
    """The full campaign repeats the partition maintenance and recompression runs with other writer seeds."""
    seed = SEED + 1 + repeat
    if repeat % 2 == 0:
        test_partition_maintenance_under_load(pg_server, db, conn, seed=seed)
    else:
        test_online_recompression_under_load(pg_server, db, conn, seed=seed)
