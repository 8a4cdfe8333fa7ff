"""partitioned_table with ``migrate``: a live plain table of the sample warehouse becomes yearly partitions."""

import pytest

from tests.support.modules import run_module
from tests.support.warehouse import content_checksums, load_warehouse


def _args(pg_server, db, **extra):
    args = pg_server.params(db)
    args.update(
        name="dwh_facts.fait_attributions",
        key="date_demandee_key",
        key_format="yyyymmdd",
        interval="year",
        start="2020-01-01",
        premake=2,
        extend_primary_key=True,
        batch_rows=5000,
        lock_timeout="2s",
    )
    args.update(extra)
    return args


def test_migrate_online_then_maintain_idempotently(pg_server, db, conn):
    load_warehouse(conn, scale=20000, reporting_role="dwh_reporting_migrate")
    before = content_checksums(conn)["dwh_facts.fait_attributions"]

    check = run_module("partitioned_table", _args(pg_server, db), check_mode=True)
    assert not check.get("failed"), check
    assert check["changed"] and check["queries"] and check["migration"]["phases"]
    announced = next(p for p in check["migration"]["phases"] if p["phase"] == "copy")["batches"]["batches"]
    with conn.cursor() as cur:
        cur.execute("SELECT relkind FROM pg_class WHERE oid = 'dwh_facts.fait_attributions'::regclass")
        assert cur.fetchone()[0] == "r", "check mode must not change the table"

    result = run_module("partitioned_table", _args(pg_server, db))
    assert not result.get("failed"), result["msg"]
    assert result["changed"] and result["migration"]["rows_copied"] > 0
    assert result["migration"]["batches"] == announced, "check mode announced the batches the run executes"
    names = [p["name"] for p in result["partitions"]]
    assert "fait_attributions_2020" in names and "fait_attributions_default" in names
    with conn.cursor() as cur:
        cur.execute("SELECT relkind FROM pg_class WHERE oid = 'dwh_facts.fait_attributions'::regclass")
        assert cur.fetchone()[0] == "p"
        cur.execute("SELECT has_table_privilege('dwh_reporting_migrate', 'dwh_facts.fait_attributions', 'SELECT')")
        assert cur.fetchone()[0]
        cur.execute("SELECT count(*) FROM dwh_marts.mv_attributions_par_annee")
        assert cur.fetchone()[0] > 0
    assert content_checksums(conn, ["dwh_facts.fait_attributions"])["dwh_facts.fait_attributions"] == before

    again = run_module("partitioned_table", _args(pg_server, db))
    assert not again.get("failed"), again
    assert again["changed"] is False and again["queries"] == []


def test_migrate_never_refuses_a_plain_table(pg_server, db, conn):
    with conn.cursor() as cur:
        cur.execute(
            "CREATE SCHEMA dwh_facts; CREATE TABLE dwh_facts.fait_attributions "
            "(id bigint PRIMARY KEY, date_demandee_key int NOT NULL)"
        )
    result = run_module("partitioned_table", _args(pg_server, db, migrate="never"))
    assert result["failed"] and "migrate is 'never'" in result["msg"] and "dwh_facts.fait_attributions" in result["msg"]


def test_primary_key_without_the_key_is_refused_before_any_change(pg_server, db, conn):
    with conn.cursor() as cur:
        cur.execute(
            "CREATE SCHEMA dwh_facts; CREATE TABLE dwh_facts.fait_attributions "
            "(id bigint PRIMARY KEY, date_demandee_key int NOT NULL)"
        )
        cur.execute("INSERT INTO dwh_facts.fait_attributions VALUES (1, 20230101)")
    result = run_module("partitioned_table", _args(pg_server, db, extend_primary_key=False))
    assert result["failed"] and "date_demandee_key" in result["msg"]
    with conn.cursor() as cur:
        cur.execute("SELECT relkind FROM pg_class WHERE oid = 'dwh_facts.fait_attributions'::regclass")
        assert cur.fetchone()[0] == "r"


def test_refused_partition_options_name_the_table_and_change_nothing(pg_server, db, conn):
    with conn.cursor() as cur:
        cur.execute("CREATE TABLE fait (id bigint, k int NOT NULL) PARTITION BY RANGE (k)")
    args = pg_server.params(db)
    args.update(name="public.fait", key="k", key_format="yyyymmdd", interval="year", start="2024-01-01", premake=0)
    for options, expected in (({"fillfactor": 5}, "fillfactor"), ({"colour": "red"}, "colour")):
        result = run_module("partitioned_table", dict(args, partition_options=options))
        assert result["failed"] and "public.fait" in result["msg"] and expected in result["msg"], result
        assert "nothing was changed" in result["msg"]
    with conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM pg_inherits WHERE inhparent = 'public.fait'::regclass")
        assert cur.fetchone()[0] == 0
    ok = run_module("partitioned_table", dict(args, partition_options={"fillfactor": 90}))
    assert not ok.get("failed") and ok["changed"], ok


def _half_migrated(conn, mode, phase):
    """Stop a migration of dwh_facts.fait_attributions where a killed run would (an exception in the progress
    callback is not a database error, so nothing is cleaned up)."""
    import pytest

    from tests.support.migration_driver import migrate

    with conn.cursor() as cur:
        cur.execute(
            "CREATE SCHEMA dwh_facts; CREATE TABLE dwh_facts.fait_attributions "
            "(id bigint PRIMARY KEY, date_demandee_key int NOT NULL, v text); "
            "INSERT INTO dwh_facts.fait_attributions SELECT g, 20220101 + g % 300, 'v' || g "
            "FROM generate_series(1, 2000) g"
        )

    def stop(event):
        if event["phase"] == phase:
            raise KeyboardInterrupt("killed at %s" % phase)

    with pytest.raises(KeyboardInterrupt):
        migrate(
            conn,
            "dwh_facts.fait_attributions",
            "date_demandee_key",
            mode=mode,
            extend_primary_key=True,
            batch_rows=500,
            progress=stop,
        )


def _fingerprint(conn):
    with conn.cursor() as cur:
        cur.execute("SELECT count(*), sum(hashtextextended(ROW(t.*)::text, 0)) FROM dwh_facts.fait_attributions t")
        rows = cur.fetchone()
        cur.execute(
            "SELECT (SELECT count(*) FROM pg_trigger WHERE tgrelid = 'dwh_facts.fait_attributions'::regclass "
            "AND NOT tgisinternal), (SELECT count(*) FROM pg_class WHERE relname LIKE '%sgt%'), "
            "(SELECT count(*) FROM pg_constraint WHERE conrelid = 'dwh_facts.fait_attributions'::regclass "
            "AND contype IN ('p', 'c')), "
            "(SELECT count(*) FROM sigeti_dwh.migration_state)"
        )
        return rows, cur.fetchone()


def test_never_names_a_half_done_migration_and_abandon_removes_it(pg_server, db, conn):
    _half_migrated(conn, "online", "build")
    half = _fingerprint(conn)
    assert half[1][0] == 4 and half[1][3] == 1, "capture triggers and state row are there"
    never = run_module("partitioned_table", _args(pg_server, db, migrate="never"))
    assert never["failed"] and "half done (phase build" in never["msg"] and "migrate: abandon" in never["msg"]
    assert "capture trigger sigeti_dwh_capture_ins" in never["msg"]
    check = run_module("partitioned_table", _args(pg_server, db, migrate="abandon"), check_mode=True)
    assert not check.get("failed") and check["changed"], check
    assert "state row (phase build)" in check["migration"]["abandoned"]
    assert _fingerprint(conn) == half, "check mode removed nothing"
    done = run_module("partitioned_table", _args(pg_server, db, migrate="abandon"))
    assert not done.get("failed") and done["changed"], done
    removed = "\n".join(done["migration"]["abandoned"])
    for part in ("capture trigger sigeti_dwh_capture_trunc", "shadow", "change log", "capture function", "state row"):
        assert part in removed
    rows, objects = _fingerprint(conn)
    assert rows == half[0] and objects == (0, 0, 1, 0), "the original keeps its rows and its key, nothing else"
    again = run_module("partitioned_table", _args(pg_server, db, migrate="abandon"))
    assert not again.get("failed") and again["changed"] is False and again["migration"]["abandoned"] == []
    result = run_module("partitioned_table", _args(pg_server, db))
    assert not result.get("failed") and result["migration"]["rows_copied"] == 2000, result


def test_abandon_removes_an_interrupted_attach(pg_server, db, conn):
    _half_migrated(conn, "attach", "swap")
    with conn.cursor() as cur:
        cur.execute("SELECT conname FROM pg_constraint WHERE contype = 'c' AND conname LIKE '%sgt_range'")
        assert cur.fetchall() == [("fait_attributions_sgt_range",)]
    online = run_module("partitioned_table", _args(pg_server, db))
    assert online["failed"] and "fait_attributions_sgt_range" in online["msg"] and "abandon" in online["msg"]
    done = run_module("partitioned_table", _args(pg_server, db, migrate="abandon"))
    assert not done.get("failed") and done["changed"], done
    removed = "\n".join(done["migration"]["abandoned"])
    assert "range check fait_attributions_sgt_range" in removed and "fait_attributions_pkey_sgt_pk" in removed
    with conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM pg_index WHERE indrelid = 'dwh_facts.fait_attributions'::regclass")
        assert cur.fetchone()[0] == 1
        cur.execute("INSERT INTO dwh_facts.fait_attributions VALUES (99999, 20230505, 'beyond the attach range')")
    result = run_module("partitioned_table", _args(pg_server, db, migrate="attach"))
    assert not result.get("failed"), result["msg"]
    assert result["migration"]["attached_range"] == [20220101, 20240101], "two periods: adopted as they are"


def test_a_non_superuser_owner_gets_clear_rights_messages_and_keeps_maintaining(pg_server, db, conn):
    import psycopg2

    from tests.support.migration_driver import migrate

    role = "mig_owner_%s" % db[-12:]
    with conn.cursor() as cur:
        cur.execute("DROP ROLE IF EXISTS %s" % role)
        cur.execute("CREATE ROLE %s LOGIN PASSWORD 'owner-pw'" % role)
        cur.execute("CREATE SCHEMA dwh_facts AUTHORIZATION %s" % role)
    owner = psycopg2.connect(pg_server.dsn(db, user=role, password="owner-pw"))
    owner.autocommit = True
    args = dict(_args(pg_server, db), **pg_server.params(db, user=role, password="owner-pw"))
    try:
        with owner.cursor() as cur:
            cur.execute(
                "CREATE TABLE dwh_facts.fait_attributions (id bigint PRIMARY KEY, date_demandee_key int NOT NULL); "
                "INSERT INTO dwh_facts.fait_attributions SELECT g, 20230101 + g % 300 FROM generate_series(1, 300) g"
            )
        # no sigeti_dwh yet and no CREATE on the database: the message says what to run, nothing is created
        result = run_module("partitioned_table", args)
        assert result["failed"] and "CREATE SCHEMA sigeti_dwh AUTHORIZATION %s" % role in result["msg"], result["msg"]
        # a superuser migrates another table first: sigeti_dwh now belongs to it
        with conn.cursor() as cur:
            cur.execute(
                "CREATE TABLE public.other (id int PRIMARY KEY, k int NOT NULL); "
                "INSERT INTO public.other SELECT g, 20240101 FROM generate_series(1, 10) g"
            )
        migrate(conn, "public.other", "k", extend_primary_key=True)
        result = run_module("partitioned_table", args)
        assert result["failed"] and "GRANT USAGE, CREATE ON SCHEMA sigeti_dwh TO %s" % role in result["msg"]
        # the owner's own partitioned table is maintained although sigeti_dwh is not readable to it
        with owner.cursor() as cur:
            cur.execute(
                "DROP TABLE dwh_facts.fait_attributions; CREATE TABLE dwh_facts.fait_attributions "
                "(id bigint, date_demandee_key int NOT NULL) PARTITION BY RANGE (date_demandee_key)"
            )
        result = run_module("partitioned_table", args)
        assert not result.get("failed"), result["msg"]
        assert result["changed"] and "fait_attributions_2020" in result["created"]
    finally:
        owner.close()
        with conn.cursor() as cur:
            cur.execute("DROP SCHEMA dwh_facts CASCADE; DROP ROLE %s" % role)


def test_migrate_offline_reads_the_source_totals_on_a_second_connection(pg_server, db, conn):
    load_warehouse(conn, scale=5000, reporting_role="dwh_reporting_offline")
    before = content_checksums(conn)["dwh_facts.fait_attributions"]
    result = run_module(
        "partitioned_table", _args(pg_server, db, migrate="offline", connect_params={"application_name": "etl"})
    )
    assert not result.get("failed"), result["msg"]
    migrated = result["migration"]
    total = migrated["checksums"]["total"]
    assert total["source_rows"] == total["target_rows"] == migrated["rows_copied"] > 0
    assert total["source_checksum"] == total["target_checksum"]
    assert content_checksums(conn, ["dwh_facts.fait_attributions"])["dwh_facts.fait_attributions"] == before
    with conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM pg_stat_activity WHERE application_name LIKE 'etl%'")
        assert cur.fetchone()[0] == 0, "both connections are closed"


@pytest.mark.parametrize("mode", ["online", "offline"])
def test_a_non_superuser_owner_without_create_on_the_database_migrates_its_table(pg_server, db, conn, mode):
    """The owner of the table and of sigeti_dwh, with no CREATE on the database (CREATE SCHEMA IF NOT EXISTS would
    ask for it): both connections log in as it (offline: the second half of the copy and the original's checksum
    need only its rights)."""
    import psycopg2

    role = "off_owner_%s" % db[-12:]
    with conn.cursor() as cur:
        cur.execute("DROP ROLE IF EXISTS %s" % role)
        cur.execute("CREATE ROLE %s LOGIN PASSWORD 'owner-pw'" % role)
        cur.execute("CREATE SCHEMA dwh_facts AUTHORIZATION %s" % role)
        cur.execute("CREATE SCHEMA IF NOT EXISTS sigeti_dwh AUTHORIZATION %s" % role)
    owner = psycopg2.connect(pg_server.dsn(db, user=role, password="owner-pw"))
    owner.autocommit = True
    try:
        with owner.cursor() as cur:
            cur.execute(
                "CREATE TABLE dwh_facts.fait_attributions (attribution_id bigint PRIMARY KEY, date_demandee_key int NOT NULL, "
                "note text); INSERT INTO dwh_facts.fait_attributions SELECT g, 20200101 + (g % 4) * 10000 + g % 28, "
                "'n' || g FROM generate_series(1, 4000) g"
            )
        before = content_checksums(conn, ["dwh_facts.fait_attributions"])["dwh_facts.fait_attributions"]
        args = dict(_args(pg_server, db, migrate=mode), **pg_server.params(db, user=role, password="owner-pw"))
        result = run_module("partitioned_table", args)
        assert not result.get("failed"), result["msg"]
        migrated = result["migration"]
        assert migrated["rows_copied"] == 4000 and migrated["checksums"]["total"]["target_rows"] == 4000
        assert content_checksums(conn, ["dwh_facts.fait_attributions"])["dwh_facts.fait_attributions"] == before
        with conn.cursor() as cur:
            cur.execute("SELECT relkind FROM pg_class WHERE oid = 'dwh_facts.fait_attributions'::regclass")
            assert cur.fetchone()[0] == "p"
            cur.execute("SELECT count(*) FROM sigeti_dwh.migration_state")
            assert cur.fetchone()[0] == 0
    finally:
        owner.close()
        with conn.cursor() as cur:
            cur.execute("DROP SCHEMA dwh_facts CASCADE; DROP SCHEMA sigeti_dwh CASCADE; DROP ROLE %s" % role)
