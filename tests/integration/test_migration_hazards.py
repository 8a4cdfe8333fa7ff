"""Issue 15 / issue 12 cases against a real server: every property of a real table is carried, or the migration is
refused before any change with a message naming the property, the object and what to do; a failure in any phase
leaves the original exactly as it was for its writers."""

import pytest

from ansible_collections.sigeti.dwh.plugins.module_utils.core.errors import DwhError, InvalidInput, LockNotGranted
from tests.integration.test_migration import NOTHING_LEFT, _all, _one, checksum, leftovers
from tests.support.migration_driver import migrate


@pytest.fixture
def other(pg_server, db):
    """A second session: what a writer or an operator does while the migration runs on ``conn``."""
    connection = pg_server.connect(db)
    connection.autocommit = True
    yield connection
    connection.close()


def _run(conn, statements):
    with conn.cursor() as cur:
        cur.execute(statements)


def make_events(conn, rows=2000, extra_columns="", extra_values=""):
    """dwh.ev: a yearly-keyed (integer YYYYMMDD) table with a primary key without the key."""
    _run(
        conn,
        "CREATE SCHEMA dwh; CREATE TABLE dwh.ev (id int PRIMARY KEY, k int NOT NULL, v numeric(12,2)%s); "
        "INSERT INTO dwh.ev SELECT g, to_char(date '2021-01-01' + g %% 1500, 'YYYYMMDD')::int, g %% 100%s "
        "FROM generate_series(1, %d) g; ANALYZE dwh.ev" % (extra_columns, extra_values, rows),
    )


def untouched(conn, before, table="dwh.ev"):
    """The original is plain, holds the same rows and nothing of a migration is left."""
    assert _one(conn, "SELECT relkind FROM pg_class WHERE oid = %s::regclass", (table,))[0] == "r"
    assert checksum(conn, table) == before
    assert leftovers(conn) == NOTHING_LEFT


def _refused(conn, message_parts, table="dwh.ev", key="k", **options):
    before = checksum(conn, table)
    with pytest.raises(InvalidInput) as err:
        migrate(conn, table, key, extend_primary_key=True, **options)
    for part in message_parts:
        assert part in err.value.msg, err.value.msg
    assert "nothing was changed" in err.value.msg
    untouched(conn, before, table)
    return err.value.msg


# -- item 1: the checksum hashes whole rows; generated columns whose stored value would change are refused --------


def test_a_column_named_t_does_not_blind_the_verification(conn, other):
    make_events(conn, extra_columns=", t text", extra_values=", 'same'")
    before = checksum(conn, "dwh.ev")

    def tamper(event):
        # column t is identical on both sides; v differs in one row of the shadow
        if event["phase"] == "verify":
            _run(other, "UPDATE dwh.ev_sgt_new SET v = v + 1 WHERE id = 42")

    with pytest.raises(DwhError) as err:
        migrate(conn, "dwh.ev", "k", extend_primary_key=True, batch_rows=500, progress=tamper)
    assert "verification of dwh.ev failed" in err.value.msg
    assert "ev_2021: source" in err.value.msg and "rows" in err.value.msg  # per partition: counts and checksums
    assert "columns that differ: v" in err.value.msg
    untouched(conn, before)


def test_stored_generated_column_whose_function_changed_is_refused(conn):
    _run(
        conn,
        "CREATE FUNCTION public.ttc(numeric) RETURNS numeric IMMUTABLE LANGUAGE sql AS 'SELECT $1 * 1.2'; "
        "CREATE SCHEMA dwh; CREATE TABLE dwh.ev (id int PRIMARY KEY, k int NOT NULL, t int, ht numeric(12,2), "
        "ttc numeric(12,2) GENERATED ALWAYS AS (public.ttc(ht)) STORED); "
        "INSERT INTO dwh.ev (id, k, t, ht) SELECT g, 20240101 + g % 300, g, g FROM generate_series(1, 2000) g; "
        "CREATE OR REPLACE FUNCTION public.ttc(numeric) RETURNS numeric IMMUTABLE LANGUAGE sql AS "
        "'SELECT round($1 * 1.2) + 1'",
    )
    msg = _refused(
        conn, ["2000 rows of dwh.ev", "generated column ttc", "UPDATE dwh.ev SET c = c for a column c that ttc"]
    )
    assert "ttc(ht)" in msg
    _run(conn, "UPDATE dwh.ev SET ht = ht")
    migrate(conn, "dwh.ev", "k", extend_primary_key=True, batch_rows=500)
    assert checksum(conn, "dwh.ev") == checksum(conn, "dwh.ev_unpartitioned")


# -- item 2: table inheritance ----------------------------------------------------------------------------------


def test_inheritance_child_and_parent_are_refused(conn):
    _run(
        conn,
        "CREATE SCHEMA dwh; CREATE TABLE dwh.base5 (id int, k int NOT NULL); "
        "CREATE TABLE dwh.x5 (PRIMARY KEY (id, k)) INHERITS (dwh.base5); "
        "INSERT INTO dwh.x5 SELECT g, 20240101 + g % 300 FROM generate_series(1, 3000) g",
    )
    _refused(conn, ["dwh.x5 inherits from dwh.base5", "NO INHERIT"], table="dwh.x5")
    assert _one(conn, "SELECT count(*) FROM dwh.base5")[0] == 3000
    _refused(conn, ["dwh.base5 is the inheritance parent of dwh.x5"], table="dwh.base5", mode="offline")
    _refused(conn, ["dwh.x5 inherits from dwh.base5"], table="dwh.x5", mode="attach")


# -- item 3: unique indexes decided on attribute numbers ----------------------------------------------------------


def test_unique_indexes_are_judged_by_their_columns_not_their_text(conn):
    make_events(conn, extra_columns=", code text, journal_id int, kk int", extra_values=", 'c' || g, g, g")
    _run(conn, "CREATE UNIQUE INDEX ev_code_recent ON dwh.ev (code) WHERE (k >= 20240101)")
    _refused(conn, ["unique index ev_code_recent", "(code) with WHERE (k >= 20240101)", "partition key k"])
    _run(conn, "DROP INDEX dwh.ev_code_recent; CREATE UNIQUE INDEX ev_kk ON dwh.ev (kk)")
    _refused(conn, ["unique index ev_kk of dwh.ev has key columns (kk)"])  # "(k" is a prefix of "(kk": not the key
    _run(conn, "DROP INDEX dwh.ev_kk; CREATE UNIQUE INDEX ev_expr ON dwh.ev (code, (k + 0))")
    _refused(conn, ["unique index ev_expr", "with expressions"])
    _run(conn, "DROP INDEX dwh.ev_expr; CREATE UNIQUE INDEX ev_incl ON dwh.ev (code) INCLUDE (k)")
    _refused(conn, ["unique index ev_incl", "(code)"])
    # the key among the index columns: partial and expression unique indexes hold on the partitioned table
    _run(
        conn,
        "DROP INDEX dwh.ev_incl; CREATE UNIQUE INDEX ev_code_k ON dwh.ev (code, k) WHERE (v > 10); "
        "CREATE UNIQUE INDEX ev_lower ON dwh.ev (lower(code), k)",
    )
    migrate(conn, "dwh.ev", "k", extend_primary_key=True, batch_rows=500)
    defs = dict(
        _all(
            conn,
            "SELECT indexrelid::regclass::text, pg_get_indexdef(indexrelid) FROM pg_index "
            "WHERE indrelid = 'dwh.ev'::regclass",
        )
    )
    assert "WHERE (v > (10)::numeric)" in defs["dwh.ev_code_k"] and "lower(code)" in defs["dwh.ev_lower"]


def test_unique_on_a_column_whose_name_starts_like_the_key_is_refused(conn):
    _run(
        conn,
        "CREATE SCHEMA dwh; CREATE TABLE dwh.j (id int, jour int NOT NULL, journal_id int, PRIMARY KEY (id, jour)); "
        "CREATE UNIQUE INDEX j_journal ON dwh.j (journal_id); "
        "INSERT INTO dwh.j SELECT g, 20240101 + g % 300, g FROM generate_series(1, 500) g",
    )
    _refused(conn, ["unique index j_journal", "(journal_id)", "partition key jour"], table="dwh.j", key="jour")


# -- item 4: NOT VALID constraints, NULL keys, row type users, failures after changes ------------------------------


@pytest.mark.parametrize("mode", ["online", "offline"])
def test_not_valid_check_is_carried_not_valid(conn, mode):
    make_events(conn)
    _run(
        conn,
        "UPDATE dwh.ev SET v = -1 WHERE id % 100 = 0; ALTER TABLE dwh.ev ADD CONSTRAINT v_pos CHECK (v >= 0) NOT VALID",
    )
    result = migrate(conn, "dwh.ev", "k", mode=mode, extend_primary_key=True, batch_rows=500)
    assert result["rows_copied"] == 2000, "offline reports the rows it copied too"
    assert checksum(conn, "dwh.ev") == checksum(conn, "dwh.ev_unpartitioned")
    assert _one(
        conn,
        "SELECT pg_get_constraintdef(oid), convalidated FROM pg_constraint "
        "WHERE conname = 'v_pos' AND conrelid = 'dwh.ev'::regclass",
    ) == ("CHECK ((v >= (0)::numeric)) NOT VALID", False)
    with pytest.raises(Exception) as err:
        _run(conn, "INSERT INTO dwh.ev VALUES (99999, 20240505, -5)")
    assert "v_pos" in str(err.value)
    assert leftovers(conn) == NOTHING_LEFT


def test_not_valid_check_refused_by_attach(conn):
    make_events(conn)
    _run(conn, "ALTER TABLE dwh.ev ADD CONSTRAINT v_pos CHECK (v >= 0) NOT VALID")
    _refused(conn, ["check constraint v_pos of dwh.ev is NOT VALID", "VALIDATE CONSTRAINT"], mode="attach")


@pytest.mark.parametrize("mode", ["online", "offline", "attach"])
def test_a_foreign_key_referencing_the_table_itself_is_refused(conn, mode):
    """The shadow's copy of it would reference the original (its definition names the table), and the partitioned
    table cannot hold a unique key on the referenced columns alone: refused, before any change."""
    make_events(conn, extra_columns=", parent int", extra_values=", NULL")
    _run(conn, "ALTER TABLE dwh.ev ADD CONSTRAINT ev_parent FOREIGN KEY (parent) REFERENCES dwh.ev (id)")
    _refused(conn, ["foreign key ev_parent of dwh.ev references dwh.ev itself", "DROP CONSTRAINT ev_parent"], mode=mode)


def test_not_valid_foreign_key_null_keys_and_row_type_users_are_refused(conn):
    make_events(conn, extra_columns=", dim int", extra_values=", g % 7")
    _run(
        conn,
        "CREATE TABLE dwh.dim (id int PRIMARY KEY); INSERT INTO dwh.dim VALUES (1), (2); "
        "ALTER TABLE dwh.ev ADD CONSTRAINT ev_dim FOREIGN KEY (dim) REFERENCES dwh.dim (id) NOT VALID",
    )
    _refused(conn, ["foreign key ev_dim of dwh.ev is NOT VALID", "VALIDATE CONSTRAINT ev_dim"])
    _run(
        conn,
        "ALTER TABLE dwh.ev DROP CONSTRAINT ev_dim; ALTER TABLE dwh.ev ALTER COLUMN k DROP NOT NULL; "
        "UPDATE dwh.ev SET k = NULL WHERE id <= 3",
    )
    _refused(conn, ["3 rows of dwh.ev have a NULL k", "primary key (id, k)"])
    _run(
        conn,
        "UPDATE dwh.ev SET k = 20240101 WHERE k IS NULL; "
        "CREATE FUNCTION dwh.recent() RETURNS SETOF dwh.ev LANGUAGE sql AS 'SELECT * FROM dwh.ev'",
    )
    _refused(conn, ["dwh.recent()", "row type of dwh.ev", "Drop them first"], drop_source=True)
    _run(conn, "DROP FUNCTION dwh.recent(); CREATE TABLE dwh.holder (e dwh.ev)")
    _refused(conn, ["dwh.holder.e", "row type of dwh.ev"])


def test_generated_key_is_refused_with_a_message(conn):
    make_events(conn, extra_columns=", g int GENERATED ALWAYS AS (k / 100) STORED")
    _refused(conn, ["partition key g of dwh.ev is a generated column"], key="g")


@pytest.mark.parametrize("mode", ["online", "attach"])
def test_rules_on_and_into_the_table_are_carried(conn, mode):
    """A rule on the table is created again on the partitioned table; a rule of another table writing into it
    (which used to crash planning: 'NoneType' object has no attribute 'strip') is rebound to it."""
    make_events(conn)
    _run(
        conn,
        "CREATE TABLE dwh.other (id int, k int); CREATE TABLE dwh.deleted (id int); "
        "CREATE RULE other_copy AS ON INSERT TO dwh.other DO ALSO INSERT INTO dwh.ev (id, k) VALUES (NEW.id, NEW.k); "
        "CREATE RULE ev_keep AS ON DELETE TO dwh.ev DO INSTEAD INSERT INTO dwh.deleted VALUES (OLD.id); "
        "CREATE RULE ev_off AS ON UPDATE TO dwh.ev DO ALSO NOTHING; ALTER TABLE dwh.ev DISABLE RULE ev_off",
    )
    migrate(conn, "dwh.ev", "k", mode=mode, extend_primary_key=True, batch_rows=500)
    _run(conn, "INSERT INTO dwh.other VALUES (90001, 20260606); DELETE FROM dwh.ev WHERE id = 1")
    assert _one(conn, "SELECT tableoid::regclass::text FROM dwh.ev WHERE id = 90001")[0] == "dwh.ev_2026"
    assert _one(conn, "SELECT count(*) FROM dwh.ev WHERE id = 1")[0] == 1, "DO INSTEAD kept the row"
    assert _all(conn, "SELECT id FROM dwh.deleted") == [(1,)]
    rules = dict(_all(conn, "SELECT rulename, ev_enabled FROM pg_rewrite WHERE ev_class = 'dwh.ev'::regclass"))
    assert rules == {"ev_keep": "O", "ev_off": "D"}
    assert leftovers(conn) == NOTHING_LEFT


def test_failed_online_build_is_abandoned_and_the_rerun_converges(conn, other):
    make_events(conn)
    before = checksum(conn, "dwh.ev")

    def duplicate(event):
        # a deterministic failure after the copy: the primary key cannot be built on the shadow
        if event["phase"] == "build" and event.get("unit") == 0:
            _run(other, "INSERT INTO dwh.ev_sgt_new SELECT * FROM dwh.ev WHERE id = 7")

    with pytest.raises(DwhError) as err:
        migrate(conn, "dwh.ev", "k", extend_primary_key=True, batch_rows=500, progress=duplicate)
    assert "failed before its swap" in err.value.msg and "It was abandoned" in err.value.msg
    assert "capture trigger sigeti_dwh_capture_ins" in err.value.msg
    untouched(conn, before)
    migrate(conn, "dwh.ev", "k", extend_primary_key=True, batch_rows=500)
    assert checksum(conn, "dwh.ev") == before and leftovers(conn) == NOTHING_LEFT


def test_failed_attach_leaves_no_range_check_and_no_index(conn, other):
    make_events(conn)
    before = checksum(conn, "dwh.ev")

    def block(event):
        if event["phase"] == "swap":  # after the range check and the prebuilt index committed
            _run(other, "CREATE TABLE dwh.ev_2030 (x int)")

    with pytest.raises(DwhError) as err:
        migrate(conn, "dwh.ev", "k", mode="attach", extend_primary_key=True, progress=block)
    assert "It was abandoned" in err.value.msg and "range check ev_sgt_range" in err.value.msg
    assert "ev_pkey_sgt_pk" in err.value.msg
    untouched(conn, before)
    assert _all(conn, "SELECT conname FROM pg_constraint WHERE conrelid = 'dwh.ev'::regclass AND contype = 'c'") == []
    assert [
        r[0] for r in _all(conn, "SELECT indexrelid::regclass::text FROM pg_index WHERE indrelid = 'dwh.ev'::regclass")
    ] == ["dwh.ev_pkey"]
    _run(conn, "INSERT INTO dwh.ev VALUES (99999, 20270105, 1)")  # writers beyond the range still work
    _run(conn, "DROP TABLE dwh.ev_2030")
    result = migrate(conn, "dwh.ev", "k", mode="attach", extend_primary_key=True)
    assert result["attached_partition"] == "dwh.ev_unpartitioned"
    assert leftovers(conn) == NOTHING_LEFT


# -- issue 12 item 1: an INVALID index is absent ------------------------------------------------------------------


def test_attach_rebuilds_invalid_indexes_and_never_uses_them(conn):
    make_events(conn)
    _run(
        conn,
        "CREATE INDEX ev_v ON dwh.ev (v); CREATE UNIQUE INDEX ev_pkey_sgt_pk ON dwh.ev (id, k); "
        "UPDATE pg_index SET indisvalid = false "
        "WHERE indexrelid IN ('dwh.ev_v'::regclass, 'dwh.ev_pkey_sgt_pk'::regclass)",
    )
    before = checksum(conn, "dwh.ev")
    result = migrate(conn, "dwh.ev", "k", mode="attach", extend_primary_key=True)
    queries = "\n".join(result["queries"])
    assert 'DROP INDEX CONCURRENTLY IF EXISTS "dwh"."ev_pkey_sgt_pk"' in queries
    assert 'DROP INDEX CONCURRENTLY IF EXISTS "dwh"."ev_v"' in queries
    assert _all(conn, "SELECT indexrelid::regclass::text FROM pg_index WHERE NOT indisvalid") == []
    parent = dict(
        _all(conn, "SELECT indexrelid::regclass::text, indisvalid FROM pg_index WHERE indrelid = 'dwh.ev'::regclass")
    )
    assert parent == {"dwh.ev_pkey": True, "dwh.ev_v": True}
    assert checksum(conn, "dwh.ev") == before and leftovers(conn) == NOTHING_LEFT


# -- items 3-7: keys carried whole, key-setting triggers, replication properties ---------------------------------


def test_primary_key_include_storage_and_deferrable_are_carried(conn):
    make_events(conn)
    _run(
        conn,
        "ALTER TABLE dwh.ev DROP CONSTRAINT ev_pkey; ALTER TABLE dwh.ev ADD CONSTRAINT ev_pkey PRIMARY KEY (id) "
        "INCLUDE (v) WITH (fillfactor = 60) DEFERRABLE INITIALLY DEFERRED",
    )
    _refused(conn, ["the primary key of dwh.ev is PRIMARY KEY (id) INCLUDE (v)", "migrate: online"], mode="attach")
    migrate(conn, "dwh.ev", "k", extend_primary_key=True, batch_rows=500)
    assert (
        _one(
            conn,
            "SELECT pg_get_constraintdef(oid) FROM pg_constraint WHERE conrelid = 'dwh.ev'::regclass AND contype = 'p'",
        )[0]
        == "PRIMARY KEY (id, k) INCLUDE (v) DEFERRABLE INITIALLY DEFERRED"
    )
    # PostgreSQL does not deparse a partitioned index's WITH: the leaves' indexes hold it
    assert _one(
        conn,
        "SELECT c.reloptions FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
        "WHERE i.indrelid = 'dwh.ev_2022'::regclass AND i.indisprimary",
    )[0] == ["fillfactor=60"]
    assert leftovers(conn) == NOTHING_LEFT


def test_before_row_trigger_setting_the_key_is_refused_other_ones_carried(conn):
    make_events(conn, extra_columns=", ts date")
    _run(
        conn,
        "ALTER TABLE dwh.ev ALTER COLUMN k DROP NOT NULL; "
        "CREATE FUNCTION dwh.set_k() RETURNS trigger LANGUAGE plpgsql AS "
        "$$BEGIN NEW.k := to_char(NEW.ts, 'YYYYMMDD')::int; RETURN NEW; END$$; "
        "CREATE TRIGGER ev_set_k BEFORE INSERT ON dwh.ev FOR EACH ROW EXECUTE FUNCTION dwh.set_k()",
    )
    _refused(conn, ["trigger ev_set_k of dwh.ev (function dwh.set_k())", "sets NEW.k", "moving row to another"])
    _run(
        conn,
        "DROP TRIGGER ev_set_k ON dwh.ev; ALTER TABLE dwh.ev ALTER COLUMN k SET NOT NULL; "
        "CREATE FUNCTION dwh.round_v() RETURNS trigger LANGUAGE plpgsql AS "
        "$$BEGIN IF NEW.k = 0 THEN RAISE 'zero'; END IF; NEW.v := round(NEW.v); RETURN NEW; END$$; "
        "CREATE TRIGGER ev_round BEFORE INSERT OR UPDATE ON dwh.ev FOR EACH ROW EXECUTE FUNCTION dwh.round_v()",
    )
    migrate(conn, "dwh.ev", "k", extend_primary_key=True, batch_rows=500)
    assert _one(conn, "INSERT INTO dwh.ev (id, k, v) VALUES (99999, 20240505, 2.6) RETURNING v")[0] == 3


@pytest.mark.parametrize("mode", ["online", "attach"])
def test_replica_identity_and_publication_carried_cluster_mark_reported(conn, mode):
    make_events(conn)
    _run(
        conn,
        "ALTER TABLE dwh.ev REPLICA IDENTITY FULL; CREATE PUBLICATION ev_pub FOR TABLE dwh.ev; "
        "CLUSTER dwh.ev USING ev_pkey",
    )
    # published under each partition's name, subscribers would lose the table: refused before any change
    _refused(conn, ["publication ev_pub", "publish_via_partition_root = true"], mode=mode)
    _run(conn, "ALTER PUBLICATION ev_pub SET (publish_via_partition_root = true)")
    result = migrate(conn, "dwh.ev", "k", extend_primary_key=True, batch_rows=500, mode=mode)
    warnings = "\n".join(result["warnings"])
    assert "CLUSTER ON ev_pkey" in warnings
    published = _all(conn, "SELECT schemaname || '.' || tablename FROM pg_publication_tables WHERE pubname = 'ev_pub'")
    assert published == [("dwh.ev",)], "the partitioned table took the original's place in the publication"
    identities = dict(
        _all(
            conn,
            "SELECT c.oid::regclass::text, c.relreplident FROM pg_class c "
            "WHERE c.oid = 'dwh.ev'::regclass OR c.oid IN (SELECT inhrelid FROM pg_inherits "
            "WHERE inhparent = 'dwh.ev'::regclass)",
        )
    )
    assert set(identities.values()) == {"f"}, identities
    if mode == "online":
        assert len(identities) == 13, "the parent, 11 periods and the default"


def test_attach_under_an_old_snapshot_fails_clean_then_converges(conn, other):
    """Issue 12 item 1 on the attach path: an analyst's REPEATABLE READ snapshot makes the concurrent build of the
    extended key's index wait; lock_timeout cancels it (PostgreSQL leaves it INVALID). The run fails with nothing
    left on the table; once the analyst is gone the next run converges with every index valid."""
    make_events(conn)
    _run(conn, "CREATE TABLE public.elsewhere (x int); INSERT INTO public.elsewhere VALUES (1)")
    before = checksum(conn, "dwh.ev")
    other.autocommit = False
    with other.cursor() as cur:
        cur.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        cur.execute("SELECT count(*) FROM public.elsewhere")  # the snapshot is taken, no lock on dwh.ev
    _run(conn, "SET lock_timeout = '200ms'")
    with pytest.raises(DwhError) as err:
        migrate(conn, "dwh.ev", "k", mode="attach", extend_primary_key=True, retries=1, retry_delay=0.1)
    # the cause is named (the session holding the snapshot), and the run cleaned up after itself
    assert "older snapshot, here pid %d" % other.get_backend_pid() in err.value.msg, err.value.msg
    assert "It was abandoned" in err.value.msg and "index ev_pkey_sgt_pk" in err.value.msg
    assert isinstance(err.value, LockNotGranted) and other.get_backend_pid() in err.value.details["blocking_pids"]
    assert _all(conn, "SELECT conname FROM pg_constraint WHERE conname = 'ev_sgt_range'") == []
    assert _all(conn, "SELECT indexrelid::regclass::text FROM pg_index WHERE NOT indisvalid") == []
    other.rollback()
    other.autocommit = True
    result = migrate(conn, "dwh.ev", "k", mode="attach", extend_primary_key=True)  # also removes any leftover
    assert result["attached_partition"] == "dwh.ev_unpartitioned"
    assert _all(conn, "SELECT indexrelid::regclass::text FROM pg_index WHERE NOT indisvalid") == []
    assert checksum(conn, "dwh.ev") == before and leftovers(conn) == NOTHING_LEFT


def test_interrupted_attach_resumes_with_its_own_check_and_index(conn):
    make_events(conn)
    before = checksum(conn, "dwh.ev")

    def stop(event):
        if event["phase"] == "swap":
            raise KeyboardInterrupt("killed before the swap")

    with pytest.raises(KeyboardInterrupt):
        migrate(conn, "dwh.ev", "k", mode="attach", extend_primary_key=True, progress=stop)
    assert _one(conn, "SELECT count(*) FROM pg_class WHERE relname IN ('ev_sgt_range', 'ev_pkey_sgt_pk')")[0] == 1
    result = migrate(conn, "dwh.ev", "k", mode="attach", extend_primary_key=True)
    assert result["attached_partition"] == "dwh.ev_unpartitioned"
    assert checksum(conn, "dwh.ev") == before and leftovers(conn) == NOTHING_LEFT
    assert (
        _one(
            conn,
            "SELECT pg_get_constraintdef(oid) FROM pg_constraint WHERE conrelid = 'dwh.ev'::regclass AND contype = 'p'",
        )[0]
        == "PRIMARY KEY (id, k)"
    )


def test_a_mode_change_is_validated_before_the_half_done_run_is_dropped(conn):
    make_events(conn)
    _run(
        conn,
        "CREATE FUNCTION dwh.noop() RETURNS trigger LANGUAGE plpgsql AS 'BEGIN RETURN NULL; END'; "
        "CREATE TRIGGER ev_after AFTER INSERT ON dwh.ev FOR EACH ROW EXECUTE FUNCTION dwh.noop()",
    )

    def stop(event):
        if event["phase"] == "build":
            raise KeyboardInterrupt("killed in build")

    with pytest.raises(KeyboardInterrupt):
        migrate(conn, "dwh.ev", "k", extend_primary_key=True, batch_rows=500, progress=stop)
    with pytest.raises(InvalidInput) as err:  # attach refuses user triggers: the online run must survive
        migrate(conn, "dwh.ev", "k", mode="attach", extend_primary_key=True)
    assert "ev_after" in err.value.msg
    assert leftovers(conn)["state"] == [("dwh", "ev", "build")]
    result = migrate(conn, "dwh.ev", "k", extend_primary_key=True, batch_rows=500)
    assert result["resumed_from"] == "build" and leftovers(conn) == NOTHING_LEFT
