"""partitioned_table in the corners a busy warehouse reaches (issues 12 and 14), each on the real server: an index
build cancelled by an analyst's old snapshot, long index names, an interrupted DETACH ... CONCURRENTLY, rows arriving
in the default partition during the run, a failure after commits, and a view on a partition retention drops.

Each test reproduces the scenario, then checks: the state is right, the next run is quiet, no row is lost or hidden,
and what cannot be done is said in words."""

import datetime
import threading

from ansible_collections.sigeti.dwh.plugins.module_utils.catalog import tables as catalog
from ansible_collections.sigeti.dwh.plugins.module_utils.core import periods
from tests.support.modules import run_module


def _args(pg_server, db, **extra):
    args = pg_server.params(db)
    args.update(lock_timeout="2s", lock_retries=1, lock_retry_delay=0.1)
    args.update(extra)
    return args


def warnings(result):
    return [w["event"]["msg"] if isinstance(w, dict) else w for w in result.get("warnings") or []]


def one(conn, query, params=None):
    with conn.cursor() as cur:
        cur.execute(query, params)
        return cur.fetchone()[0]


def rows(conn, query, params=None):
    with conn.cursor() as cur:
        cur.execute(query, params)
        return cur.fetchall()


def server_today(conn):
    return one(conn, "SELECT current_date")


def invalid_indexes(conn):
    return [r[0] for r in rows(conn, "SELECT indexrelid::regclass::text FROM pg_index WHERE NOT indisvalid ORDER BY 1")]


def pending_detaches(conn):
    return [r[0] for r in rows(conn, "SELECT inhrelid::regclass::text FROM pg_inherits WHERE inhdetachpending")]


def leaf_index_state(conn, parent_index):
    """``{leaf partition: (index name, valid)}`` for the copies attached to ``parent_index``."""
    return {
        leaf: (name, valid)
        for leaf, name, valid in rows(
            conn,
            "SELECT i.indrelid::regclass::text, c.relname, i.indisvalid FROM pg_inherits h "
            "JOIN pg_index i ON i.indexrelid = h.inhrelid JOIN pg_class c ON c.oid = i.indexrelid "
            "WHERE h.inhparent = %s::regclass",
            (parent_index,),
        )
    }


def yearly_table(conn, years, name="fait", rows_per_year=1000):
    with conn.cursor() as cur:
        cur.execute("CREATE TABLE %s (id bigint NOT NULL, k int NOT NULL, v int) PARTITION BY RANGE (k)" % name)
        for year in years:
            cur.execute(
                "CREATE TABLE %s_%d PARTITION OF %s FOR VALUES FROM (%d) TO (%d)"
                % (name, year, name, year * 10000 + 101, (year + 1) * 10000 + 101)
            )
            cur.execute(
                "INSERT INTO %s SELECT g, %d, g %% 7 FROM generate_series(%d, %d) g"
                % (name, year * 10000 + 615, year * rows_per_year, year * rows_per_year + rows_per_year - 1)
            )


# ---------------------------------------------------------------------------------------------
# Issue 12 item 1: an INVALID index is an absent index
# ---------------------------------------------------------------------------------------------


def test_index_build_cancelled_by_an_old_snapshot_is_dropped_and_rebuilt(pg_server, db, conn):
    year = server_today(conn).year
    yearly_table(conn, (year, year + 1))
    with conn.cursor() as cur:
        cur.execute("CREATE INDEX fait_v_idx ON ONLY fait (v)")  # the usual way on a big table: partitions lack it
        cur.execute("CREATE TABLE other (x int)")
    args = _args(
        pg_server,
        db,
        name="fait",
        key="k",
        key_format="yyyymmdd",
        interval="year",
        premake=1,
        default_partition=False,
        lock_timeout="300ms",
    )
    analyst = pg_server.connect(db, autocommit=False)
    try:
        with analyst.cursor() as cur:
            cur.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
            cur.execute("SELECT count(*) FROM other")  # holds a snapshot; no lock on fait
            cur.execute("SELECT pg_backend_pid()")
            analyst_pid = cur.fetchone()[0]
        first = run_module("partitioned_table", args)
    finally:
        analyst.rollback()
        analyst.close()
    assert first.get("failed"), first
    assert "pid %d" % analyst_pid in first["msg"] and "older snapshot" in first["msg"], first["msg"]
    assert analyst_pid in first["blocking_pids"]
    assert first["changed"] is True, "the cancelled build left an INVALID index: the database changed"
    assert "INVALID" in first["msg"] and "next run drops and rebuilds" in first["msg"]
    assert invalid_indexes(conn), "what PostgreSQL leaves behind a cancelled CREATE INDEX CONCURRENTLY"

    second = run_module("partitioned_table", args)
    assert not second.get("failed"), second
    assert second["changed"] is True
    assert any(q.startswith("DROP INDEX CONCURRENTLY IF EXISTS") for q in second["queries"])
    assert one(conn, "SELECT indisvalid FROM pg_index WHERE indexrelid = 'fait_v_idx'::regclass") is True
    state = leaf_index_state(conn, "fait_v_idx")
    assert sorted(state) == ["fait_%d" % year, "fait_%d" % (year + 1)]
    assert all(valid for _name, valid in state.values())
    assert invalid_indexes(conn) == []
    assert one(conn, "SELECT count(*) FROM fait") == 2000

    third = run_module("partitioned_table", args)
    assert not third.get("failed") and third["changed"] is False and third["queries"] == [], third


def test_an_invalid_index_attached_by_an_older_run_is_rebuilt(pg_server, db, conn):
    year = server_today(conn).year
    yearly_table(conn, (year,))
    with conn.cursor() as cur:
        cur.execute("CREATE INDEX fait_v_idx ON ONLY fait (v)")
        cur.execute("CREATE TABLE other (x int)")
    analyst = pg_server.connect(db, autocommit=False)
    try:
        with analyst.cursor() as cur:
            cur.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
            cur.execute("SELECT count(*) FROM other")
        with conn.cursor() as cur:
            cur.execute("SET lock_timeout = '200ms'")
            try:
                cur.execute("CREATE INDEX CONCURRENTLY old_run_idx ON fait_%d (v)" % year)
            except Exception:  # lock timeout, as the old version saw it
                pass
            cur.execute("RESET lock_timeout")
            cur.execute("ALTER INDEX fait_v_idx ATTACH PARTITION old_run_idx")  # what the old version did next
    finally:
        analyst.rollback()
        analyst.close()
    assert leaf_index_state(conn, "fait_v_idx") == {"fait_%d" % year: ("old_run_idx", False)}
    args = _args(
        pg_server, db, name="fait", key="k", key_format="yyyymmdd", interval="year", premake=0, default_partition=False
    )
    result = run_module("partitioned_table", args)
    assert not result.get("failed"), result
    assert 'REINDEX INDEX CONCURRENTLY "public"."old_run_idx"' in result["queries"]
    assert leaf_index_state(conn, "fait_v_idx") == {"fait_%d" % year: ("old_run_idx", True)}
    assert invalid_indexes(conn) == ["fait_v_idx"], "PostgreSQL re-checks the parent only when a copy is attached"
    assert any("fait_v_idx" in w and "marked INVALID" in w and "recreate it" in w for w in warnings(result))
    again = run_module("partitioned_table", args)
    assert again["changed"] is False and again["queries"] == [], again


# ---------------------------------------------------------------------------------------------
# Issue 14 item 1: long index names
# ---------------------------------------------------------------------------------------------


def test_long_index_names_land_on_every_partition_and_unique_ones_enforce(pg_server, db, conn):
    today = server_today(conn)
    years = list(range(2024, max(2026, today.year) + 1))
    with conn.cursor() as cur:
        cur.execute("CREATE SCHEMA dwh_facts")
        cur.execute(
            "CREATE TABLE dwh_facts.fait_attributions (id bigint NOT NULL, date_demandee_key int NOT NULL, "
            "client_id int, v int) PARTITION BY RANGE (date_demandee_key)"
        )
        for year in years:
            cur.execute(
                "CREATE TABLE dwh_facts.fait_attributions_%d PARTITION OF dwh_facts.fait_attributions "
                "FOR VALUES FROM (%d) TO (%d)" % (year, year * 10000 + 101, (year + 1) * 10000 + 101)
            )
        cur.execute(
            "INSERT INTO dwh_facts.fait_attributions SELECT g, (2024 + g % 3) * 10000 + 301, g % 50, g "
            "FROM generate_series(1, 3000) g"
        )
        cur.execute(
            "CREATE INDEX fait_attributions_date_demandee_key_client_id_idx ON ONLY dwh_facts.fait_attributions "
            "(date_demandee_key, client_id)"
        )
        cur.execute(
            "CREATE UNIQUE INDEX fait_attributions_id_date_demandee_key_unique_idx ON ONLY "
            "dwh_facts.fait_attributions (id, date_demandee_key)"
        )
        # 2024 already has its copy, attached, under a name of its own: adopted as it is
        cur.execute("CREATE INDEX by_hand_2024 ON dwh_facts.fait_attributions_2024 (date_demandee_key, client_id)")
        cur.execute(
            "ALTER INDEX dwh_facts.fait_attributions_date_demandee_key_client_id_idx "
            "ATTACH PARTITION dwh_facts.by_hand_2024"
        )
        # 2025 has a matching unique index attached to nothing: attached, not built twice
        cur.execute("CREATE UNIQUE INDEX stray_2025 ON dwh_facts.fait_attributions_2025 (id, date_demandee_key)")
    args = _args(
        pg_server,
        db,
        name="dwh_facts.fait_attributions",
        key="date_demandee_key",
        key_format="yyyymmdd",
        interval="year",
        start="2024-01-01",
        premake=0,
        default_partition=False,
    )
    result = run_module("partitioned_table", args)
    assert not result.get("failed"), result
    assert result["changed"] is True
    assert (
        'ALTER INDEX "dwh_facts"."fait_attributions_id_date_demandee_key_unique_idx" ATTACH PARTITION '
        '"dwh_facts"."stray_2025"' in result["queries"]
    )
    for parent_index in (
        "dwh_facts.fait_attributions_date_demandee_key_client_id_idx",
        "dwh_facts.fait_attributions_id_date_demandee_key_unique_idx",
    ):
        assert one(conn, "SELECT indisvalid FROM pg_index WHERE indexrelid = %s::regclass", (parent_index,)) is True
        state = leaf_index_state(conn, parent_index)
        assert sorted(state) == ["dwh_facts.fait_attributions_%d" % y for y in years]
        names = [name for name, _valid in state.values()]
        assert len(set(names)) == len(names) and all(len(n.encode()) <= 63 for n in names), names
    assert leaf_index_state(conn, "dwh_facts.fait_attributions_date_demandee_key_client_id_idx")[
        "dwh_facts.fait_attributions_2024"
    ] == ("by_hand_2024", True)
    assert invalid_indexes(conn) == []
    for year in years:  # uniqueness is enforced on every partition, not on one of three
        with conn.cursor() as cur:
            cur.execute("INSERT INTO dwh_facts.fait_attributions VALUES (-1, %s, 0, 0)", (year * 10000 + 505,))
            try:
                cur.execute("INSERT INTO dwh_facts.fait_attributions VALUES (-1, %s, 0, 0)", (year * 10000 + 505,))
                raise AssertionError("a duplicate was accepted in %d" % year)
            except Exception as error:
                assert getattr(error, "pgcode", None) == "23505", error
    again = run_module("partitioned_table", args)
    assert not again.get("failed") and again["changed"] is False and again["queries"] == [], again


# ---------------------------------------------------------------------------------------------
# Issue 14 item 3: an interrupted DETACH ... CONCURRENTLY
# ---------------------------------------------------------------------------------------------


def _monthly(conn, months_back, months_ahead, rows_per_month=100):
    scheme = periods.Scheme("date", "month", "date")
    current = scheme.current(server_today(conn))
    with conn.cursor() as cur:
        cur.execute("CREATE TABLE fait (id bigint NOT NULL, k date NOT NULL) PARTITION BY RANGE (k)")
        for step in range(-months_back, months_ahead + 1):
            point = scheme.step(current, step)
            cur.execute(
                "CREATE TABLE fait_%s PARTITION OF fait FOR VALUES FROM (%%s) TO (%%s)" % scheme.label(point),
                (point, scheme.step(point)),
            )
            cur.execute(
                "INSERT INTO fait SELECT g, %s FROM generate_series(1, %s) g",
                (point + datetime.timedelta(days=2), rows_per_month),
            )
    return scheme, current


def test_interrupted_concurrent_detach_is_finished_then_retention_goes_on(pg_server, db, conn):
    scheme, current = _monthly(conn, 6, 1)
    total = one(conn, "SELECT count(*) FROM fait")
    args = _args(
        pg_server,
        db,
        name="fait",
        key="k",
        interval="month",
        start=scheme.step(current, -3).isoformat(),
        premake=1,
        default_partition=False,
        retention={"keep": 3, "action": "archive", "archive_schema": "arch"},
        lock_timeout="300ms",
    )
    old = ["fait_%s" % scheme.label(scheme.step(current, -n)) for n in (6, 5, 4)]
    analyst = pg_server.connect(db, autocommit=False)
    try:
        with analyst.cursor() as cur:
            cur.execute("SELECT count(*) FROM fait")  # an open transaction that read the table
            cur.execute("SELECT pg_backend_pid()")
            analyst_pid = cur.fetchone()[0]
        first = run_module("partitioned_table", args)
        pending = pending_detaches(conn)
    finally:
        analyst.rollback()
        analyst.close()
    assert first.get("failed"), first
    assert first["changed"] is True, "the detach's first transaction committed: the partition is pending detach"
    assert "pid %d" % analyst_pid in first["msg"], first["msg"]
    assert "already pending" not in first["msg"], "never PostgreSQL's raw refusal"
    assert "left %s pending detach" % old[0] in first["msg"], first["msg"]
    assert pending == [old[0]], pending

    second = run_module("partitioned_table", args)
    assert not second.get("failed"), second
    assert second["finished_detaches"] == [old[0]]
    assert any(q.endswith("FINALIZE") for q in second["queries"])
    assert second["detached"] == old and second["archived"] == old
    assert pending_detaches(conn) == []
    archived = sum(one(conn, "SELECT count(*) FROM arch.%s" % name) for name in old)
    assert archived == 300 and one(conn, "SELECT count(*) FROM fait") + archived == total, "no row lost or hidden"

    third = run_module("partitioned_table", args)
    assert not third.get("failed") and third["changed"] is False and third["queries"] == [], third


def test_pending_detach_of_a_kept_partition_is_refused_in_words(pg_server, db, conn):
    scheme, current = _monthly(conn, 1, 1)
    kept = "fait_%s" % scheme.label(scheme.step(current, -1))
    analyst = pg_server.connect(db, autocommit=False)
    try:
        with analyst.cursor() as cur:
            cur.execute("SELECT count(*) FROM fait")
        with conn.cursor() as cur:
            cur.execute("SET lock_timeout = '200ms'")
            try:
                cur.execute("ALTER TABLE fait DETACH PARTITION %s CONCURRENTLY" % kept)
            except Exception:  # cancelled after its first transaction: pending
                pass
            cur.execute("RESET lock_timeout")
    finally:
        analyst.rollback()
        analyst.close()
    args = _args(
        pg_server,
        db,
        name="fait",
        key="k",
        interval="month",
        start=scheme.step(current, -1).isoformat(),
        premake=1,
        default_partition=False,
    )
    result = run_module("partitioned_table", args)
    assert result.get("failed") and result.get("changed") is not True, result
    assert kept in result["msg"] and "pending detach" in result["msg"] and "FINALIZE" in result["msg"]


# ---------------------------------------------------------------------------------------------
# Issue 14 item 5: rows arriving in the default partition during the run
# ---------------------------------------------------------------------------------------------


def _with_default(conn, waiting_rows):
    scheme = periods.Scheme("date", "month", "date")
    current = scheme.current(server_today(conn))
    with conn.cursor() as cur:
        cur.execute("CREATE TABLE fait (id bigint NOT NULL, k date NOT NULL) PARTITION BY RANGE (k)")
        cur.execute(
            "CREATE TABLE fait_%s PARTITION OF fait FOR VALUES FROM (%%s) TO (%%s)" % scheme.label(current),
            (current, scheme.step(current)),
        )
        cur.execute("CREATE TABLE fait_default PARTITION OF fait DEFAULT")
        cur.execute(
            "INSERT INTO fait SELECT g, %s FROM generate_series(1, %s) g",
            (scheme.step(current, 1) + datetime.timedelta(days=3), waiting_rows),
        )
    return scheme, current


def test_rows_arriving_in_the_default_after_the_count_are_moved_too(pg_server, db, conn, monkeypatch):
    scheme, current = _with_default(conn, 3000)
    nxt, after = scheme.step(current, 1), scheme.step(current, 2)
    counted = catalog.partition_set_pending

    def count_then_writers_arrive(*args, **kwargs):
        # the writers of issue 14: next month's rows keep coming, and the month after starts once next month's
        # partition exists; both land in the default partition between the count and the ATTACH
        result = counted(*args, **kwargs)
        with conn.cursor() as cur:
            cur.execute("INSERT INTO fait SELECT -g, %s FROM generate_series(1, 40) g", (nxt,))
            cur.execute("INSERT INTO fait SELECT -g, %s FROM generate_series(1, 25) g", (after,))
        return result

    monkeypatch.setattr(catalog, "partition_set_pending", count_then_writers_arrive)
    args = _args(pg_server, db, name="fait", key="k", interval="month", premake=2)
    result = run_module("partitioned_table", args)
    monkeypatch.setattr(catalog, "partition_set_pending", counted)
    assert not result.get("failed"), result
    assert "23514" not in str(result)
    assert result["created"] == ["fait_%s" % scheme.label(nxt), "fait_%s" % scheme.label(after)]
    assert result["moved_rows"] == 3065, "what moved, not what was counted"
    assert result["default_rows"] == 0
    assert rows(conn, "SELECT tableoid::regclass::text, count(*) FROM fait GROUP BY 1 ORDER BY 1") == [
        ("fait_%s" % scheme.label(nxt), 3040),
        ("fait_%s" % scheme.label(after), 25),
    ]
    again = run_module("partitioned_table", args)
    assert not again.get("failed") and again["changed"] is False and again["queries"] == [], again


def test_concurrent_writers_during_the_run_lose_no_row(pg_server, db, conn):
    scheme, current = _with_default(conn, 3000)
    nxt, after = scheme.step(current, 1), scheme.step(current, 2)
    stop, written, errors = threading.Event(), [0], []

    def writer():
        other = pg_server.connect(db)
        try:
            with other.cursor() as cur:
                while not stop.is_set():
                    cur.execute("INSERT INTO fait VALUES (-1, %s), (-2, %s)", (nxt, after))
                    written[0] += 2
        except Exception as error:  # any error a writer sees is a failure of the run's locking
            errors.append(error)
        finally:
            other.close()

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        result = run_module(
            "partitioned_table", _args(pg_server, db, name="fait", key="k", interval="month", premake=2)
        )
    finally:
        stop.set()
        thread.join()
    assert not result.get("failed"), result
    assert errors == []
    assert one(conn, "SELECT count(*) FROM fait") == 3000 + written[0] + 0 * len(errors)
    assert one(conn, "SELECT count(*) FROM fait_default WHERE k >= %s", (nxt,)) == 0
    assert one(conn, "SELECT count(*) FROM fait_default") == 0


# ---------------------------------------------------------------------------------------------
# changed after commits, and retention drop with a dependent view ("Also seen")
# ---------------------------------------------------------------------------------------------


def test_a_run_failing_after_commits_says_changed_and_what_was_done(pg_server, db, conn):
    scheme, current = _monthly(conn, 5, 0, rows_per_month=10)
    with conn.cursor() as cur:
        cur.execute("CREATE TABLE fait_default PARTITION OF fait DEFAULT")
    old = "fait_%s" % scheme.label(scheme.step(current, -5))
    holder = pg_server.connect(db, autocommit=False)
    try:
        with holder.cursor() as cur:
            cur.execute("LOCK TABLE %s IN ACCESS SHARE MODE" % old)  # blocks the DETACH, not the new partitions
            cur.execute("SELECT pg_backend_pid()")
            holder_pid = cur.fetchone()[0]
        result = run_module(
            "partitioned_table",
            _args(
                pg_server,
                db,
                name="fait",
                key="k",
                interval="month",
                premake=2,
                retention={"keep": 3, "action": "drop"},
                lock_timeout="200ms",
            ),
        )
    finally:
        holder.rollback()
        holder.close()
    assert result.get("failed"), result
    assert result["changed"] is True
    created = ["fait_%s" % scheme.label(scheme.step(current, n)) for n in (1, 2)]
    assert result["created"] == created and result["detached"] == [] and result["dropped"] == []
    assert "pid %d" % holder_pid in result["msg"] and "created: %s" % ", ".join(created) in result["msg"]
    assert sum("ATTACH PARTITION" in q for q in result["queries"]) == 2, "queries: what ran, not the whole plan"
    assert one(conn, "SELECT count(*) FROM fait") == 60


def test_retention_drop_keeps_a_partition_a_view_depends_on_attached_and_says_so(pg_server, db, conn):
    scheme, current = _monthly(conn, 5, 0, rows_per_month=10)
    seen = "fait_%s" % scheme.label(scheme.step(current, -5))
    free = "fait_%s" % scheme.label(scheme.step(current, -4))
    with conn.cursor() as cur:
        cur.execute("CREATE VIEW old_report AS SELECT count(*) FROM %s" % seen)
    args = _args(
        pg_server,
        db,
        name="fait",
        key="k",
        interval="month",
        start=scheme.step(current, -3).isoformat(),
        premake=0,
        default_partition=False,
        retention={"keep": 3, "action": "drop"},
    )
    result = run_module("partitioned_table", args)
    assert not result.get("failed"), result
    assert result["dropped"] == [free] and result["detached"] == [free]
    assert any(seen in w and "view public.old_report" in w for w in warnings(result)), warnings(result)
    assert seen in [p["name"] for p in result["partitions"]]
    attached = [r[0] for r in rows(conn, "SELECT inhrelid::regclass::text FROM pg_inherits")]
    assert seen in attached and free not in attached, "never a detached table left behind"
    assert one(conn, "SELECT count(*) FROM fait") == 50
    again = run_module("partitioned_table", args)
    assert not again.get("failed") and again["changed"] is False and again["queries"] == [], again
    assert any(seen in w for w in warnings(again))


def test_a_unique_index_over_duplicates_fails_in_words_and_leaves_no_invalid_index_attached(pg_server, db, conn):
    year = server_today(conn).year
    yearly_table(conn, (year,))
    with conn.cursor() as cur:
        cur.execute("CREATE UNIQUE INDEX fait_v_key ON ONLY fait (v, k)")  # v repeats: duplicates
    args = _args(
        pg_server, db, name="fait", key="k", key_format="yyyymmdd", interval="year", premake=0, default_partition=False
    )
    result = run_module("partitioned_table", args)
    assert result.get("failed") and result["changed"] is True, result
    assert "duplicate keys" in result["msg"] and "Remove the duplicates" in result["msg"], result["msg"]
    assert leaf_index_state(conn, "fait_v_key") == {}, "an invalid index is never attached"
