"""pgbench itself writing while partitioned_table maintains a partitioned pgbench_history (the weekly run).

History is partitioned by month with a default partition and its foreign keys on the parent; this month's partition
is missing, so this month's rows (seeded ones and every TPC-B insert) land in the default. The run creates this
month and the next two (premake 2), moving this month's rows out of the default while TPC-B (``--foreign-keys``,
``--max-tries 1``) keeps inserting into it: no transaction fails, every row is there once, the balances hold, and
nothing is left in the default.
"""

import datetime

from tests.integration.test_pgbench_migration import SEEDED, _args, _check_application, _under_tpcb
from tests.support.modules import run_module
from tests.support.pgbench import Pgbench, first_month


def _month(first, offset):
    month = first.month - 1 + offset
    return datetime.date(first.year + month // 12, month % 12 + 1, 1)


def _partitioned_history(conn, first, months):
    """pgbench_history partitioned by month from ``first`` for ``months`` months (this month not among them) and a
    default, holding the rows of the plain one, with its foreign keys on the parent."""
    statements = [
        "ALTER TABLE pgbench_history RENAME TO pgbench_history_plain",
        "CREATE TABLE pgbench_history (LIKE pgbench_history_plain) PARTITION BY RANGE (mtime)",
        "CREATE TABLE pgbench_history_default PARTITION OF pgbench_history DEFAULT",
    ]
    for offset in range(months):
        low, high = _month(first, offset), _month(first, offset + 1)
        statements.append(
            "CREATE TABLE pgbench_history_%s PARTITION OF pgbench_history FOR VALUES FROM ('%s') TO ('%s')"
            % (low.strftime("%Y%m"), low, high)
        )
    statements += [
        "INSERT INTO pgbench_history SELECT * FROM pgbench_history_plain",
        "DROP TABLE pgbench_history_plain",
        "ALTER TABLE pgbench_history ADD FOREIGN KEY (aid) REFERENCES pgbench_accounts",
        "ALTER TABLE pgbench_history ADD FOREIGN KEY (bid) REFERENCES pgbench_branches",
        "ALTER TABLE pgbench_history ADD FOREIGN KEY (tid) REFERENCES pgbench_tellers",
        "ANALYZE pgbench_history",
    ]
    with conn.cursor() as cur:
        for statement in statements:
            cur.execute(statement)


def _in_default(conn):
    with conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM pgbench_history_default")
        return cur.fetchone()[0]


def test_weekly_premake_moves_default_rows_under_tpcb(pg_server, db, conn, tmp_path):
    """The parent has foreign keys: the ATTACH takes SHARE ROW EXCLUSIVE on accounts, branches and tellers, which
    TPC-B holds while it waits for the parent. The run locks them first (``plan.locks``): neither TPC-B nor the run
    is ended by a deadlock."""
    bench = Pgbench(pg_server, db, str(tmp_path)).init(scale=1)
    bench.seed_history(SEEDED)
    first = first_month()
    _partitioned_history(conn, first, 23)  # up to last month: this month's rows are in the default
    assert _in_default(conn) > 0
    result, report = _under_tpcb(bench, _args(pg_server, db))
    assert not result.get("failed"), result.get("msg")
    this_month = "pgbench_history_%s" % _month(first, 23).strftime("%Y%m")
    assert this_month in result["created"] and len(result["created"]) == 3, result["created"]
    assert result["moved_rows"] > 0
    _check_application(conn, report, SEEDED)
    assert _in_default(conn) == 0, "this month's rows, old and new, are in this month's partition"
    again = run_module("partitioned_table", _args(pg_server, db))
    assert not again.get("failed") and again["changed"] is False, again


def test_weekly_premake_without_default_under_tpcb(pg_server, db, conn, tmp_path):
    """Without a default partition the new periods are created beside the writers (SHARE UPDATE EXCLUSIVE on the
    parent, none held at the parent): the foreign keys' SHARE ROW EXCLUSIVE on the referenced tables waits for
    TPC-B's transactions, which do not wait for it."""
    bench = Pgbench(pg_server, db, str(tmp_path)).init(scale=1)
    bench.seed_history(SEEDED)
    first = first_month()
    _partitioned_history(conn, first, 24)  # up to this month
    with conn.cursor() as cur:
        cur.execute("DROP TABLE pgbench_history_default")  # holds nothing: this month has its partition
    result, report = _under_tpcb(bench, _args(pg_server, db, default_partition=False))
    assert not result.get("failed"), result.get("msg")
    assert len(result["created"]) == 2, result["created"]
    _check_application(conn, report, SEEDED)


def test_a_referenced_table_the_role_may_not_lock_is_left_to_the_attach(pg_server, db, conn):
    """LOCK TABLE in SHARE ROW EXCLUSIVE needs UPDATE, DELETE or TRUNCATE on the table, a foreign key only REFERENCES:
    a fact table's owner that may not lock a dimension still gets its partitions (the ATTACH takes that lock, as
    before), only the tables it may lock are taken first."""
    import psycopg2

    role = "fact_owner_%s" % db[-12:]
    with conn.cursor() as cur:
        cur.execute("SELECT date_trunc('month', current_date)::date")
        first = cur.fetchone()[0]  # this month: its row waits in the default
    with conn.cursor() as cur:
        cur.execute("DROP ROLE IF EXISTS %s" % role)
        cur.execute("CREATE ROLE %s LOGIN PASSWORD 'owner-pw'" % role)
        cur.execute("CREATE TABLE public.dim_other (id int PRIMARY KEY)")  # another team's: REFERENCES only
        cur.execute("INSERT INTO public.dim_other VALUES (1)")
        cur.execute("GRANT SELECT, REFERENCES ON public.dim_other TO %s" % role)
        cur.execute("GRANT CREATE ON SCHEMA public TO %s" % role)
    owner = psycopg2.connect(pg_server.dsn(db, user=role, password="owner-pw"))
    owner.autocommit = True
    try:
        with owner.cursor() as cur:
            cur.execute("CREATE TABLE public.dim_own (id int PRIMARY KEY); INSERT INTO public.dim_own VALUES (1)")
            cur.execute(
                "CREATE TABLE public.fait (d date NOT NULL, own int REFERENCES public.dim_own, "
                "other int REFERENCES public.dim_other) PARTITION BY RANGE (d)"
            )
            cur.execute("CREATE TABLE public.fait_default PARTITION OF public.fait DEFAULT")
            cur.execute("INSERT INTO public.fait VALUES (%s, 1, 1)", (first,))
        args = dict(pg_server.params(db, user=role, password="owner-pw"))
        args.update(name="public.fait", key="d", key_format="date", interval="month", start=str(first), premake=0)
        args.update(lock_timeout="2s", lock_retries=1, lock_retry_delay=0.1)
        result = run_module("partitioned_table", args)
        assert not result.get("failed"), result.get("msg")
        assert result["moved_rows"] == 1 and len(result["created"]) == 1, result
        locks = [q for q in result["queries"] if q.startswith("DO ")]
        assert locks and '"public"."dim_own"' in locks[0] and "dim_other" not in locks[0], locks
    finally:
        owner.close()
        with conn.cursor() as cur:
            cur.execute("DROP TABLE IF EXISTS public.fait, public.dim_own, public.dim_other")
            cur.execute("DROP OWNED BY %s" % role)
            cur.execute("DROP ROLE IF EXISTS %s" % role)
