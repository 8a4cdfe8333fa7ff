"""The content checksum of the migration's verification, against a real server: the row digest tells apart every two
rows that read differently (even values PostgreSQL calls equal), and the offline mode reads every row back from the
shadow before its swap."""

import datetime
import time
import types

import psycopg2
import pytest

from ansible_collections.sigeti.dwh.plugins.module_utils.catalog import tables as catalog
from ansible_collections.sigeti.dwh.plugins.module_utils.core.errors import DwhError, LockNotGranted
from ansible_collections.sigeti.dwh.plugins.module_utils.migration.build import build_memory_step
from ansible_collections.sigeti.dwh.plugins.module_utils.migration.sql import row_digest
from tests.integration.test_migration import NOTHING_LEFT, _all, _one, checksum, leftovers
from tests.support.migration_driver import connect_like, migrate


def _run(conn, statements):
    with conn.cursor() as cur:
        cur.execute(statements)


# pairs of rows that PostgreSQL's equality (and its hash functions) call equal, or that differ only by NULL
TWINS = [
    ("n", "1.0", "1.00"),
    ("f", "'0'", "'-0'"),
    ("s", "''", "NULL"),
    ("j", "'{\"a\": 1.0}'", "'{\"a\": 1.00}'"),
    ("c", "'x'", "'x '"),
    ("a", "'{1.0}'", "'{1.00}'"),
    ("ts", "'2024-01-01 00:00:00+00'", "'2024-01-01 00:00:00.000001+00'"),
    ("v", "'a'", "'A'"),
    ("d", "'2000-01-01'", "NULL"),  # PostgreSQL's day 0: a NULL field must not hash like a zero value
    ("b", "''", "NULL"),
]


def test_row_digest_tells_apart_rows_that_read_differently(conn):
    _run(
        conn,
        "CREATE SCHEMA dg; CREATE TABLE dg.t (id int, n numeric, f float8, s text, j jsonb, c bpchar, "
        "a numeric[], ts timestamptz, v varchar(5), b bytea, u uuid, d date)",
    )
    table = catalog.read_table(conn, "dg", "t")
    # the digest of every column but id (which tells the rows apart anyway)
    digest = row_digest([c for c in table["columns"] if c["name"] != "id"]).as_string(conn)
    assert 'ROW("t"."f", "t"."j", "t"."c", "t"."a")::text' in digest, digest
    for number, (column, left, right) in enumerate(TWINS):
        _run(
            conn,
            "INSERT INTO dg.t (id, %s) VALUES (%d, %s), (%d, %s)" % (column, 2 * number, left, 2 * number + 1, right),
        )
    _run(conn, "INSERT INTO dg.t (id, b, u, d) VALUES (100, '\\x00', gen_random_uuid(), '2024-02-29')")
    _run(conn, "INSERT INTO dg.t (id, b, u, d) SELECT 101, b, u, d FROM dg.t WHERE id = 100")
    digests = dict(_all(conn, "SELECT t.id, %s FROM dg.t t" % digest))
    for number, (column, left, right) in enumerate(TWINS):
        assert digests[2 * number] != digests[2 * number + 1], "%s: %s and %s hash alike" % (column, left, right)
    assert digests[100] == digests[101], "the same row hashes the same"
    # as many digests as rows that read differently (the rows whose only value is a NULL read alike)
    distinct = _one(conn, "SELECT count(DISTINCT ROW(n, f, s, j, c, a, ts, v, b, u, d)::text) FROM dg.t")[0]
    assert len(set(digests.values())) == distinct


def make_fact(conn, rows=2000):
    _run(
        conn,
        "CREATE SCHEMA s; CREATE TABLE s.fait (id bigserial PRIMARY KEY, date_key int NOT NULL, note text, "
        "amount numeric(12,2), at timestamptz DEFAULT now()); "
        "INSERT INTO s.fait (date_key, note, amount) SELECT to_char(date '2021-01-01' + g %% 1200, 'YYYYMMDD')::int, "
        "'n' || g, g / 7.0 FROM generate_series(1, %d) g; ANALYZE s.fait" % rows,
    )


@pytest.fixture
def tamper_on_copy(conn):
    """An event trigger (as a bug or a rogue extension would) altering one row as it lands in a partition of the
    shadow: what the offline verification must catch, inside its one transaction."""
    _run(
        conn,
        """
        CREATE FUNCTION public.tamper_row() RETURNS trigger LANGUAGE plpgsql AS
        $$BEGIN IF NEW.id = 42 THEN NEW.note := 'tampered'; END IF; RETURN NEW; END$$;
        CREATE FUNCTION public.tamper_on_create() RETURNS event_trigger LANGUAGE plpgsql AS $$
        DECLARE r record; BEGIN
          FOR r IN SELECT * FROM pg_event_trigger_ddl_commands() WHERE object_identity LIKE 's.fait\\_20%' LOOP
            EXECUTE format('CREATE TRIGGER tamper BEFORE INSERT ON %s FOR EACH ROW EXECUTE FUNCTION public.tamper_row()',
                           r.object_identity);
          END LOOP; END $$;
        CREATE EVENT TRIGGER tamper_on_create ON ddl_command_end WHEN TAG IN ('CREATE TABLE')
          EXECUTE FUNCTION public.tamper_on_create();
        """,
    )
    yield
    _run(conn, "DROP EVENT TRIGGER tamper_on_create; DROP FUNCTION public.tamper_on_create(), public.tamper_row()")


def test_offline_verification_reads_every_row_back(conn, tamper_on_copy):
    make_fact(conn)
    before = checksum(conn, "s.fait")
    with pytest.raises(DwhError) as err:
        migrate(conn, "s.fait", "date_key", mode="offline", extend_primary_key=True)
    message = err.value.msg
    assert "verification of s.fait failed" in message and "nothing was swapped" in message, message
    assert "source 2000 rows" in message and "target 2000 rows" in message, message
    assert "fait_2021: source" in message, "the partition holding the altered row is named: " + message
    assert _one(conn, "SELECT relkind FROM pg_class WHERE oid = 's.fait'::regclass")[0] == "r"
    assert checksum(conn, "s.fait") == before
    assert leftovers(conn) == NOTHING_LEFT


def test_offline_verification_passes_on_a_faithful_copy(conn):
    make_fact(conn)
    before = checksum(conn, "s.fait")
    seen = []

    def side_connect():
        # opened once the main transaction holds EXCLUSIVE on the original: no writer can commit from here on
        seen.append(
            _one(
                conn,
                "SELECT array_agg(mode::text) FROM pg_locks WHERE relation = 's.fait'::regclass "
                "AND pid = pg_backend_pid() AND granted",
            )[0]
        )
        other = connect_like(conn)
        seen.append(_one(other, "SELECT current_setting('application_name')")[0])
        other.rollback()
        return other

    result = migrate(conn, "s.fait", "date_key", mode="offline", extend_primary_key=True, side_connect=side_connect)
    assert result["rows_copied"] == 2000
    assert _one(conn, "SELECT relkind FROM pg_class WHERE oid = 's.fait'::regclass")[0] == "p"
    assert checksum(conn, "s.fait") == before
    assert len(seen) == 2 and "ExclusiveLock" in seen[0] and seen[1] == "sigeti.dwh/side", seen
    total = result["checksums"]["total"]
    assert total["source_rows"] == total["target_rows"] == 2000
    assert total["source_checksum"] is not None and total["source_checksum"] == total["target_checksum"]
    assert result["checksums"]["partitions"] == {}
    verify = [q for q in result["queries"] if "verification of" in q]
    assert len(verify) == 1 and "IF false THEN" in verify[0], "equal totals: the per-partition detail is not computed"
    totals = [q for q in result["queries"] if q.startswith("SELECT count(*), sum(hash_record_extended")]
    assert len(totals) == 2 and any('"s"."fait" t' in q for q in totals), totals
    assert _one(conn, "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'sigeti.dwh/side'")[0] == 0


def test_offline_plan_shows_the_copy_in_two_halves_the_second_on_a_second_connection(conn):
    make_fact(conn)
    plan = migrate(conn, "s.fait", "date_key", mode="offline", extend_primary_key=True, check_mode=True)
    assert [p["phase"] for p in plan["phases"]] == ["prepare", "offline", "post"]
    prepare = [s["sql"] for s in plan["phases"][0]["steps"]]
    assert any(q.startswith('CREATE TABLE "s"."fait_sgt_new"') for q in prepare), prepare
    assert "'offline', 'copy'" in prepare[-1], "the state row says a run killed here leaves the shadow"
    steps = plan["phases"][1]["steps"]
    copies = [i for i, s in enumerate(steps) if s["sql"].startswith('INSERT INTO "s"."fait_sgt_new"')]
    assert len(copies) == 2 and copies[1] == copies[0] + 1, [s["sql"] for s in steps]
    first, second = steps[copies[0]], steps[copies[1]]
    middle = _one(conn, "SELECT pg_relation_size('s.fait') / 8192 / 2")[0]
    assert first["sql"].endswith("WHERE ctid >= '(0,0)'::tid AND ctid < '(%d,0)'::tid" % max(middle, 1))
    assert second["sql"].endswith("WHERE ctid >= '(%d,0)'::tid" % max(middle, 1)), "the second half has no end"
    assert "second connection" in second["reason"]
    totals = [i for i, s in enumerate(steps) if s["sql"].startswith("SELECT count(*), sum(hash_record_extended")]
    builds = [i for i, s in enumerate(steps) if "ADD CONSTRAINT" in s["sql"] or s["sql"].startswith("CREATE INDEX")]
    assert len(totals) == 2 and builds and max(builds) < totals[0], "the checksums come after the builds"
    assert "second connection" in steps[totals[0]]["reason"] and "indexes" in steps[totals[0]]["reason"]
    assert steps[totals[0] - 1]["sql"] == "SET LOCAL max_parallel_workers_per_gather = 0"


@pytest.mark.parametrize("failure", ["connect", "statement"])
def test_offline_fails_with_nothing_changed_when_the_second_connection_fails(conn, failure):
    make_fact(conn)
    _run(
        conn,
        "DO $$ BEGIN IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'sgt_no_select') THEN "
        "CREATE ROLE sgt_no_select; END IF; END $$",
    )
    before = checksum(conn, "s.fait")

    def side_connect():
        if failure == "connect":
            raise OSError("connection refused (simulated)")
        other = connect_like(conn)
        _run(other, "SET ROLE sgt_no_select")  # its read of the original is refused: permission denied
        other.commit()
        return other

    with pytest.raises(DwhError) as err:
        migrate(conn, "s.fait", "date_key", mode="offline", extend_primary_key=True, side_connect=side_connect)
    message = err.value.msg
    assert "copy of the second half of s.fait on a second connection failed" in message, message
    assert "Nothing was changed" in message, message
    assert _one(conn, "SELECT relkind FROM pg_class WHERE oid = 's.fait'::regclass")[0] == "r"
    assert checksum(conn, "s.fait") == before
    assert leftovers(conn) == NOTHING_LEFT
    assert _one(conn, "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'sigeti.dwh/side'")[0] == 0


def test_offline_killed_after_its_shadow_committed_is_started_again_by_the_next_run(conn):
    make_fact(conn)
    before = checksum(conn, "s.fait")
    work = connect_like(conn, "/main")
    work_pid = _one(work, "SELECT pg_backend_pid()")[0]
    work.rollback()

    def side_connect():
        # the main transaction holds its lock and the empty shadow is committed: the run dies here (kill -9)
        _run(conn, "SELECT pg_terminate_backend(%d)" % work_pid)
        return connect_like(conn)

    with pytest.raises((DwhError, psycopg2.Error)):
        migrate(work, "s.fait", "date_key", mode="offline", extend_primary_key=True, side_connect=side_connect)
    assert _all(conn, "SELECT mode, phase FROM sigeti_dwh.migration_state") == [("offline", "copy")]
    assert _one(conn, "SELECT to_regclass('s.fait_sgt_new') IS NOT NULL")[0], "the committed shadow is left"
    assert _one(conn, "SELECT relkind FROM pg_class WHERE oid = 's.fait'::regclass")[0] == "r"
    assert checksum(conn, "s.fait") == before

    result = migrate(
        conn, "s.fait", "date_key", mode="offline", extend_primary_key=True, side_connect=lambda: connect_like(conn)
    )
    assert result["rows_copied"] == 2000
    assert any(q.startswith('DROP TABLE IF EXISTS "s"."fait_sgt_new"') for q in result["queries"]), "dropped first"
    assert any("had left" in w and "started again" in w for w in result["warnings"]), result["warnings"]
    assert _one(conn, "SELECT relkind FROM pg_class WHERE oid = 's.fait'::regclass")[0] == "p"
    assert checksum(conn, "s.fait") == before
    assert leftovers(conn) == NOTHING_LEFT


def _offline_with_a_second_connection(conn, **options):
    return migrate(
        conn,
        "s.fait",
        "date_key",
        mode="offline",
        extend_primary_key=True,
        side_connect=lambda: connect_like(conn),
        **options,
    )


def test_offline_retried_after_the_second_half_committed_copies_both_halves_again(conn):
    """A lock timeout at the swap retries the main transaction, whose rollback releases the EXCLUSIVE lock: a writer
    commits in between. The second half, committed on its connection before, is emptied and copied again with the
    first (kept, it would miss the new row or hold old ones twice)."""
    import threading

    make_fact(conn)
    reader = connect_like(conn, "/reader")
    _one(reader, "SELECT count(*) FROM s.fait")  # ACCESS SHARE held: EXCLUSIVE is granted, ACCESS EXCLUSIVE waits
    writer = connect_like(conn, "/writer")
    writer.autocommit = True

    def write():  # queued behind the migration's EXCLUSIVE lock, commits when its first attempt rolls back
        _run(writer, "INSERT INTO s.fait (date_key, note, amount) VALUES (20230505, 'between two attempts', 1)")

    threading.Timer(0.5, write).start()
    threading.Timer(1.5, reader.rollback).start()
    _run(conn, "SET lock_timeout = '300ms'")
    try:
        result = _offline_with_a_second_connection(conn, retries=20, retry_delay=0.3)
    finally:
        _run(conn, "RESET lock_timeout")
        time.sleep(1.6)
        reader.close()
        writer.close()
    assert result["swap_attempts"] > 1, "the swap's lock timed out at least once"
    assert any(q.startswith('TRUNCATE "s"."fait_sgt_new"') for q in result["queries"]), "the committed half undone"
    assert result["rows_copied"] == 2001
    total = result["checksums"]["total"]
    assert total["source_rows"] == total["target_rows"] == 2001
    assert _one(conn, "SELECT count(*) FROM s.fait WHERE note = 'between two attempts'")[0] == 1
    assert _one(conn, "SELECT count(*), count(DISTINCT id) FROM s.fait") == (2001, 2001)
    assert checksum(conn, "s.fait") == checksum(conn, "s.fait_unpartitioned")
    assert leftovers(conn) == NOTHING_LEFT


def test_offline_refused_its_swap_lock_drops_its_shadow_and_names_the_reader(conn):
    make_fact(conn)
    before = checksum(conn, "s.fait")
    reader = connect_like(conn, "/reader")
    reader_pid = _one(reader, "SELECT pg_backend_pid()")[0]
    _one(reader, "SELECT count(*) FROM s.fait")  # ACCESS SHARE held for the whole run: the swap's lock never comes
    _run(conn, "SET lock_timeout = '200ms'")
    try:
        with pytest.raises(LockNotGranted) as err:
            _offline_with_a_second_connection(conn, retries=1, retry_delay=0.1)
    finally:
        _run(conn, "RESET lock_timeout")
        reader.close()
    message = err.value.msg
    assert "It was abandoned" in message and "fait_sgt_new" in message, message
    assert reader_pid in err.value.details.get("blocking_pids", []), err.value.details
    assert _one(conn, "SELECT relkind FROM pg_class WHERE oid = 's.fait'::regclass")[0] == "r"
    assert checksum(conn, "s.fait") == before
    assert leftovers(conn) == NOTHING_LEFT


@pytest.mark.parametrize(
    "server_value, heap_bytes, expected",
    [("1MB", 8 * 1024 * 1024, "8MB"), ("1GB", 8 * 1024 * 1024, "1GB"), ("64MB", 10 * 1024**3, "256MB")],
)
def test_index_builds_get_memory_up_to_the_heap_size_never_less_than_the_server_gives(
    conn, server_value, heap_bytes, expected
):
    step = build_memory_step(types.SimpleNamespace(table={"heap_bytes": heap_bytes}))
    conn.autocommit = False
    try:
        _run(conn, "SET maintenance_work_mem = '%s'" % server_value)
        _run(conn, step.render(conn))
        assert _one(conn, "SELECT current_setting('maintenance_work_mem')")[0] == expected
        conn.commit()
        assert _one(conn, "SELECT current_setting('maintenance_work_mem')")[0] == server_value, "SET LOCAL only"
    finally:
        conn.rollback()
        conn.autocommit = True


@pytest.mark.parametrize("mode", ["online", "offline"])
def test_every_key_and_index_build_is_sized_once_after_the_copy(conn, mode):
    make_fact(conn)
    _run(conn, "CREATE INDEX fait_note_idx ON s.fait (note)")
    plan = migrate(conn, "s.fait", "date_key", mode=mode, extend_primary_key=True, check_mode=True)
    statements = [s["sql"] for p in plan["phases"] for s in p["steps"]]
    copy = next(i for i, q in enumerate(statements) if q.startswith("INSERT INTO") and "_sgt_new" in q)
    builds = [i for i, q in enumerate(statements) if "ADD CONSTRAINT" in q or q.startswith("CREATE INDEX")]
    sized = [i for i, q in enumerate(statements) if "set_config('maintenance_work_mem'" in q]
    assert len(builds) == 2 and all(i > copy for i in builds), "keys and indexes built once, after the copy"
    assert all(i > copy for i in sized) and len(sized) == (1 if mode == "offline" else 2)
    assert all(any(s < b for s in sized) for b in builds), "every build runs with its memory sized"


def _bound(key_type, year, month):
    if key_type == "date":
        return datetime.date(year, month, 1)
    return datetime.datetime(year, month, 1, tzinfo=datetime.timezone.utc)


@pytest.mark.parametrize("key_type", ["date", "timestamptz"])
def test_rows_are_bucketed_by_a_binary_search_of_the_bounds_gaps_to_the_default(pg_server, db, conn, key_type):
    _run(
        conn,
        "SET TimeZone = 'UTC'; CREATE SCHEMA g; CREATE TABLE g.ev (id int PRIMARY KEY, day %s NOT NULL, v text); "
        "INSERT INTO g.ev SELECT n, date '2020-12-01' + n, 'v' || n FROM generate_series(1, 1600) n; ANALYZE g.ev"
        % key_type,
    )
    layout = [
        {"name": "ev_2021", "low": _bound(key_type, 2021, 1), "high": _bound(key_type, 2022, 1)},
        {"name": "ev_2023h1", "low": _bound(key_type, 2023, 1), "high": _bound(key_type, 2023, 7)},
        {"name": "ev_2023h2", "low": _bound(key_type, 2023, 7), "high": _bound(key_type, 2024, 1)},
        {"name": "ev_default", "default": True},
    ]
    expected = dict(
        _all(
            conn,
            "SELECT CASE WHEN day >= '2021-01-01' AND day < '2022-01-01' THEN 'ev_2021' "
            "WHEN day >= '2023-01-01' AND day < '2023-07-01' THEN 'ev_2023h1' "
            "WHEN day >= '2023-07-01' AND day < '2024-01-01' THEN 'ev_2023h2' ELSE 'ev_default' END, count(*) "
            "FROM g.ev GROUP BY 1",
        )
    )
    other = pg_server.connect(db)
    other.autocommit = True

    def tamper(event):
        # one shadow row changed: the totals differ, so the detail per partition runs and names where
        if event["phase"] == "verify":
            _run(other, "UPDATE g.ev_sgt_new SET v = 'changed' WHERE id = 1000")

    try:
        with pytest.raises(DwhError) as err:
            migrate(conn, "g.ev", "day", extend_primary_key=True, batch_rows=400, layout=layout, progress=tamper)
    finally:
        other.close()
    checksums = err.value.details["checksums"]
    assert checksums["total"]["source_rows"] == checksums["total"]["target_rows"] == 1600
    assert checksums["total"]["source_checksum"] != checksums["total"]["target_checksum"]
    detail = checksums["partitions"]
    assert {b: c["source_rows"] for b, c in detail.items()} == expected
    assert all(c["source_rows"] == c["target_rows"] for c in detail.values())
    differ = [b for b, c in detail.items() if c["source_checksum"] != c["target_checksum"]]
    assert differ == ["ev_2023h2"], differ  # day 2020-12-01 + 1000 = 2023-08-28
    assert "ev_2023h2: source" in err.value.msg
    assert expected["ev_default"] == 30 + 365 + 475  # December 2020, the gap (2022), and 2024 on


def test_online_verification_compares_whole_table_totals_and_skips_the_detail_when_equal(conn):
    _run(
        conn,
        "CREATE SCHEMA tt; CREATE TABLE tt.ev (id int PRIMARY KEY, day int NOT NULL, v text); "
        "INSERT INTO tt.ev SELECT n, 20210101 + n % 300, 'v' || n FROM generate_series(1, 2000) n; ANALYZE tt.ev",
    )
    result = migrate(conn, "tt.ev", "day", extend_primary_key=True, batch_rows=500)
    total = result["checksums"]["total"]
    assert total["source_rows"] == total["target_rows"] == 2000
    assert total["source_checksum"] is not None and total["source_checksum"] == total["target_checksum"]
    assert result["checksums"]["partitions"] == {}  # equal totals: the per-partition detail read nothing
    detail = [q for q in result["queries"] if q.startswith("SELECT * FROM (SELECT coalesce")]
    assert detail and all(q.rstrip().endswith("WHERE false") for q in detail), detail


@pytest.mark.parametrize("mode", ["online", "offline"])
def test_statistics_are_gathered_once_on_the_new_parent_never_on_the_source(conn, mode):
    make_fact(conn)
    result = migrate(conn, "s.fait", "date_key", mode=mode, extend_primary_key=True, batch_rows=500)
    analyzed = [q for q in result["queries"] if q.upper().startswith("ANALYZE")]
    # ANALYZE on the parent covers each partition too (it cascades): a second ANALYZE per partition would double
    # the work, one of the original (kept as s.fait_unpartitioned) would be wasted
    # online: on the shadow before its swap (the swap's replays join on it, planned from those statistics; the
    # shadow becomes s.fait), offline: on the new s.fait after its one transaction
    parent = '"s"."fait_sgt_new"' if mode == "online" else '"s"."fait"'
    assert [q for q in analyzed if "sigeti_replay_keys" not in q] == ["ANALYZE " + parent], analyzed
    # the partitions are new tables: their statistics come from that ANALYZE only
    assert _one(conn, "SELECT count(*) FROM pg_stats WHERE schemaname = 's' AND tablename = 'fait_2021'")[0]
    assert _one(conn, "SELECT count(*) FROM pg_stats WHERE schemaname = 's' AND tablename = 'fait' AND inherited")[0]
    # nothing left "modified since analyze" beyond what autovacuum would act on: a second run does not analyze
    assert (
        _one(
            conn,
            "SELECT coalesce(sum(n_mod_since_analyze), 0) FROM pg_stat_user_tables "
            "WHERE schemaname = 's' AND relname LIKE 'fait\\_2%'",
        )[0]
        == 0
    )


def test_online_verification_reads_the_original_beside_in_the_same_snapshot_and_resumes_after_its_failure(conn):
    make_fact(conn)
    before = checksum(conn, "s.fait")
    calls = []

    def refused():
        calls.append("refused")
        raise OSError("connection refused (simulated)")

    with pytest.raises(DwhError) as err:
        migrate(conn, "s.fait", "date_key", extend_primary_key=True, batch_rows=500, side_connect=refused)
    assert calls == ["refused"]
    message = err.value.msg
    assert "verification read of s.fait on a second connection failed" in message, message
    assert "the next run resumes at it" in message, message
    assert _one(conn, "SELECT relkind FROM pg_class WHERE oid = 's.fait'::regclass")[0] == "r"
    assert checksum(conn, "s.fait") == before
    assert _one(conn, "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'sigeti.dwh/side'")[0] == 0

    result = migrate(conn, "s.fait", "date_key", extend_primary_key=True, batch_rows=500)
    assert result["resumed_from"] == "catchup", result["resumed_from"]
    total = result["checksums"]["total"]
    assert total["source_rows"] == total["target_rows"] == 2000
    assert total["source_checksum"] == total["target_checksum"]
    assert any(q.startswith("SET TRANSACTION SNAPSHOT '") for q in result["queries"]), "imported on the second one"
    assert checksum(conn, "s.fait") == before


def test_online_second_connection_reads_the_verification_snapshot_not_a_later_write(pg_server, db, conn):
    make_fact(conn)
    writer = pg_server.connect(db)
    writer.autocommit = True

    def side_connect():
        # a row committed after the verification's snapshot: the shadow (read in that snapshot) lacks it, so the
        # original's side must not count it either; the swap replays it
        _run(writer, "INSERT INTO s.fait (date_key, note, amount) VALUES (20210505, 'late', 1)")
        return connect_like(conn)

    try:
        result = migrate(conn, "s.fait", "date_key", extend_primary_key=True, batch_rows=500, side_connect=side_connect)
    finally:
        writer.close()
    total = result["checksums"]["total"]
    assert total["source_rows"] == total["target_rows"] == 2000, total
    assert _one(conn, "SELECT count(*) FROM s.fait")[0] == 2001
