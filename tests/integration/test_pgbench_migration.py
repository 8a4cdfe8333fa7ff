"""pgbench itself writing while partitioned_table migrates pgbench_history, and while it maintains the partitions.

TPC-B (``-b tpcb-like``) with ``--foreign-keys`` (history references accounts, tellers and branches) and
``--max-tries 1`` (an application without retry logic: a deadlock or serialization failure is a failed
transaction), two clients, for the whole module run. Each test checks what an application would: no transaction
failed, every history row is there once (the seeded ones plus one per TPC-B transaction), the balance invariant
holds (sum of abalance = bbalance = tbalance = history delta), and the module got its locks on its first attempt.
The longest transaction is printed (not asserted: timing lives in bench/pgbench_migration.py).
"""

import pytest

from tests.support.modules import run_module
from tests.support.pgbench import Pgbench, first_month, history_rows, invariant

SEEDED = 20000  # over 24 months: every monthly partition gets rows


@pytest.fixture
def bench(pg_server, db, tmp_path):
    """pgbench's tables at scale 1 with foreign keys, history seeded over 24 months."""
    pgbench = Pgbench(pg_server, db, str(tmp_path)).init(scale=1)
    pgbench.seed_history(SEEDED)
    return pgbench


def _args(pg_server, db, **extra):
    args = pg_server.params(db)
    args.update(
        name="public.pgbench_history",
        key="mtime",
        key_format="timestamp",
        interval="month",
        start=str(first_month()),
        premake=2,
        lock_timeout="2s",
        lock_retry_delay=0.2,  # a failed attempt fails the test anyway: no need to wait long between them
        batch_rows=5000,
    )
    args.update(extra)
    return args


def _foreign_keys(conn):
    """``{constraint: validated}`` of the foreign keys on pgbench_history (the parent once partitioned)."""
    with conn.cursor() as cur:
        cur.execute(
            "SELECT conname::text, convalidated FROM pg_constraint "
            "WHERE conrelid = 'public.pgbench_history'::regclass AND contype = 'f' ORDER BY 1"
        )
        return dict(cur.fetchall())


def _under_tpcb(bench, args):
    """Run the module while TPC-B writes; return (module result, pgbench result)."""
    with bench.running(clients=2, threads=2) as run:
        result = run_module("partitioned_table", args)
    report = run.result
    print(
        "tpcb: %d transactions, longest %.3f s, failed %d, migration: %s"
        % (
            report.tpcb_transactions,
            report.max_latency(),
            report.failed,
            {k: (result.get("migration") or {}).get(k) for k in ("swap_seconds", "swap_attempts", "rows_moved")},
        )
    )
    return result, report


def _check_application(conn, report, seeded):
    assert report.problems() == [], report.problems()
    assert history_rows(conn) == seeded + report.tpcb_transactions, "every history row once"
    sums = invariant(conn)
    assert len(set(sums.values())) == 1, sums


@pytest.mark.parametrize("mode", ["offline", "online", "attach"])
def test_migration_under_tpcb_with_foreign_keys(pg_server, db, conn, bench, mode):
    if mode == "online":
        bench.add_history_key()  # the online mode replays changes by key
    before = _foreign_keys(conn)
    assert len(before) == 3 and all(before.values()), before
    result, report = _under_tpcb(bench, _args(pg_server, db, migrate=mode, extend_primary_key=mode == "online"))
    assert not result.get("failed"), result.get("msg")
    migration = result["migration"]
    assert migration["mode"] == mode and migration["swap_attempts"] == 1, migration
    _check_application(conn, report, SEEDED)
    with conn.cursor() as cur:
        cur.execute("SELECT relkind FROM pg_class WHERE oid = 'public.pgbench_history'::regclass")
        assert cur.fetchone()[0] == "p"
    assert _foreign_keys(conn) == before, "the foreign keys are on the partitioned table, validated"
    # results that say what happened (CONTRACT.md)
    created = [p["name"] for p in result["partitions"] if p["name"] != "pgbench_history_unpartitioned"]
    assert sorted(result["created"]) == sorted(created), (result["created"], created)
    if mode == "attach":
        assert migration["rows_moved"] == 0 and migration["kept_original"] is None
    else:
        # the rows at the swap: the seeded ones and those TPC-B committed before it
        assert SEEDED <= migration["rows_moved"] <= history_rows(conn), migration["rows_moved"]
        assert migration["kept_original"]["name"] == "public.pgbench_history_unpartitioned"
        assert migration["kept_original"]["bytes"] > 0 and "DROP TABLE" in migration["drop_hint"]
    again = run_module("partitioned_table", _args(pg_server, db, migrate=mode, extend_primary_key=mode == "online"))
    assert not again.get("failed") and again["changed"] is False, again


@pytest.mark.parametrize("mode", ["online", "offline", "attach"])
def test_migration_of_accounts_by_aid_ranges_under_tpcb(pg_server, db, conn, tmp_path, mode):
    """A table that references another and is referenced: pgbench_accounts (its foreign key to branches) by ranges of
    its integer key while TPC-B updates it, then its branch, and inserts history rows referencing it (the incoming
    foreign key is re-pointed at the swap, validated after), fillfactor 90 carried to the partitions. TPC-B writes
    accounts before branches: the migration's first order (branches first) would deadlock, it takes the other."""
    bench = Pgbench(pg_server, db, str(tmp_path)).init(scale=1, fillfactor=90)
    bench.seed_history(SEEDED)
    args = pg_server.params(db)
    args.update(
        name="public.pgbench_accounts",
        key="aid",
        key_format="integer",
        interval="25000",
        start="0",
        premake=1,
        migrate=mode,
        extend_primary_key=True,
        lock_timeout="2s",
        batch_rows=20000,
    )
    result, report = _under_tpcb(bench, args)
    assert not result.get("failed"), result.get("msg")
    assert result["migration"]["swap_attempts"] == 1, result["migration"]
    _check_application(conn, report, SEEDED)
    with conn.cursor() as cur:
        cur.execute(
            "SELECT convalidated, confrelid::regclass::text FROM pg_constraint WHERE conrelid = "
            "'pgbench_history'::regclass AND conname = 'pgbench_history_aid_fkey'"
        )
        assert cur.fetchone() == (True, "pgbench_accounts"), "re-pointed at the partitioned table and validated"
        cur.execute(
            "SELECT count(*) FILTER (WHERE c.reloptions @> ARRAY['fillfactor=90']), count(*) FROM pg_inherits i "
            "JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = 'pgbench_accounts'::regclass"
        )
        carried, partitions = cur.fetchone()
        assert carried == partitions > 1
        cur.execute(
            "SELECT convalidated FROM pg_constraint WHERE conrelid = 'pgbench_accounts'::regclass AND contype = 'f'"
        )
        assert cur.fetchall() == [(True,)], "its own foreign key to branches, on the partitioned table"
        cur.execute("SELECT count(*) FROM pgbench_accounts")
        assert cur.fetchone()[0] == 100000
