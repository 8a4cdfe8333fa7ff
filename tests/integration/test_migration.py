"""Migration of live plain tables into partitions, against a real server: carried objects, refusals, modes."""

import pytest

from ansible_collections.sigeti.dwh.plugins.module_utils.core.errors import DwhError, InvalidInput
from tests.support.migration_driver import migrate


def _one(conn, query, params=None):
    with conn.cursor() as cur:
        cur.execute(query, params)
        return cur.fetchone()


def _all(conn, query, params=None):
    with conn.cursor() as cur:
        cur.execute(query, params)
        return cur.fetchall()


def checksum(conn, relation, key="id"):
    return _one(conn, "SELECT count(*), md5(string_agg(md5(t::text), '' ORDER BY t.%s)) FROM %s t" % (key, relation))


def leftovers(conn, schema="s", table="fait"):
    """Anything a finished or abandoned migration must not leave behind."""
    rels = [r[0] for r in _all(conn, "SELECT relname FROM pg_class WHERE relname LIKE '%%sgt%%'")]
    triggers = [r[0] for r in _all(conn, "SELECT tgname FROM pg_trigger WHERE tgname LIKE 'sigeti_dwh_capture%%'")]
    logs = [
        r[0]
        for r in _all(
            conn,
            "SELECT relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = 'sigeti_dwh' AND relname LIKE 'mig_log%%'",
        )
    ]
    state = []
    if _one(conn, "SELECT to_regclass('sigeti_dwh.migration_state')")[0]:
        state = _all(conn, "SELECT schema_name, table_name, phase FROM sigeti_dwh.migration_state")
    return {"relations": rels, "triggers": triggers, "logs": logs, "state": state}


NOTHING_LEFT = {"relations": [], "triggers": [], "logs": [], "state": []}


def make_fact(conn, rows=3000, extra=True):
    """A SIGETI-like fact table with everything a swap must carry."""
    with conn.cursor() as cur:
        cur.execute(
            """
            DO $$ BEGIN IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'reader') THEN CREATE ROLE reader; END IF;
            IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'app_owner') THEN CREATE ROLE app_owner; END IF; END $$;
            CREATE SCHEMA s;
            CREATE TABLE s.dim (dim_id int PRIMARY KEY, label text);
            INSERT INTO s.dim SELECT g, 'd' || g FROM generate_series(1, 50) g;
            CREATE TABLE s.fait (
                id bigserial PRIMARY KEY,
                date_key int NOT NULL,
                dim_id int REFERENCES s.dim (dim_id),
                montant numeric(12,2) DEFAULT 0 CHECK (montant >= 0),
                note text,
                created_at timestamptz NOT NULL DEFAULT now()
            ) WITH (fillfactor = 90, autovacuum_vacuum_scale_factor = 0.02);
            CREATE INDEX fait_date_key_idx ON s.fait (date_key);
            CREATE INDEX fait_dim_idx ON s.fait (dim_id) WHERE dim_id IS NOT NULL;
            COMMENT ON TABLE s.fait IS 'les faits';
            COMMENT ON COLUMN s.fait.montant IS 'en FCFA';
            INSERT INTO s.fait (date_key, dim_id, montant, note, created_at)
            SELECT to_char(date '2020-01-01' + (g %% 2500), 'YYYYMMDD')::int, 1 + g %% 50, g %% 1000,
                   CASE WHEN g %% 97 = 0 THEN repeat(md5(g::text), 100) ELSE 'n' || g END,
                   timestamptz '2024-01-01' + g * interval '1 minute'
            FROM generate_series(1, %s) g;
            GRANT SELECT ON s.fait TO reader;
            CREATE VIEW s.v_fait AS SELECT id, date_key, montant FROM s.fait WHERE montant > 10;
            GRANT SELECT ON s.v_fait TO reader;
            CREATE MATERIALIZED VIEW s.mv_fait AS SELECT date_key / 10000 AS annee, count(*) AS n, sum(montant) AS total
                FROM s.fait GROUP BY 1;
            CREATE UNIQUE INDEX mv_fait_uk ON s.mv_fait (annee);
            GRANT SELECT ON s.mv_fait TO reader;
            ANALYZE s.fait;
        """,
            (rows,),
        )
        if extra:
            cur.execute("""
                ALTER TABLE s.fait ALTER COLUMN note SET STATISTICS 500;
                GRANT UPDATE (note) ON s.fait TO reader;
                CREATE TABLE s.audit (id bigint, op text);
                CREATE FUNCTION s.audit_fn() RETURNS trigger LANGUAGE plpgsql AS
                    'BEGIN INSERT INTO s.audit VALUES (NEW.id, TG_OP); RETURN NEW; END';
                CREATE TRIGGER fait_audit AFTER INSERT ON s.fait FOR EACH ROW EXECUTE FUNCTION s.audit_fn();
                ALTER TABLE s.fait ENABLE ROW LEVEL SECURITY;
                CREATE POLICY fait_reader ON s.fait FOR SELECT TO reader USING (montant < 900);
                ALTER TABLE s.fait OWNER TO app_owner;
            """)


def test_check_mode_renders_the_plan_and_changes_nothing(conn):
    make_fact(conn)
    before = checksum(conn, "s.fait")
    plan = migrate(conn, "s.fait", "date_key", check_mode=True, extend_primary_key=True)
    assert [p["phase"] for p in plan["phases"]] == ["prepare", "copy", "build", "catchup", "swap", "post"]
    text = "\n".join(s["sql"] for p in plan["phases"] for s in p["steps"])
    assert 'PARTITION BY RANGE ("date_key")' in text
    assert 'ADD CONSTRAINT "fait_pkey_sgt_new" PRIMARY KEY ("id", "date_key")' in text
    assert 'CREATE OR REPLACE VIEW "s"."v_fait"' in text
    assert plan["estimated_disk_bytes"] > 0
    assert plan["renamed_source"] == "s.fait_unpartitioned"
    assert _one(conn, "SELECT relkind FROM pg_class WHERE oid = 's.fait'::regclass")[0] == "r"
    assert checksum(conn, "s.fait") == before
    assert _one(conn, "SELECT to_regclass('sigeti_dwh.migration_state')")[0] is None, "check mode created nothing"


def test_refuses_before_any_change(conn):
    make_fact(conn, rows=1000, extra=False)
    with pytest.raises(InvalidInput) as err:
        migrate(conn, "s.fait", "date_key")
    assert "does not include the partition key date_key" in err.value.msg and "extend_primary_key" in err.value.msg
    # rows outside every period and no default partition: count, min and max of the offending keys
    with pytest.raises(InvalidInput) as err:
        migrate(conn, "s.fait", "date_key", first=2021, last=2030, default=False, extend_primary_key=True)
    assert "365 rows" in err.value.msg and "min 20200102" in err.value.msg and "max 20201231" in err.value.msg
    with pytest.raises(InvalidInput) as err:
        migrate(conn, "s.fait", "date_key", mode="never")
    assert "migrate is 'never'" in err.value.msg
    with conn.cursor() as cur:
        cur.execute("CREATE TABLE s.child (id bigint REFERENCES s.fait (id))")
    with pytest.raises(InvalidInput) as err:
        migrate(conn, "s.fait", "date_key", extend_primary_key=True)
    assert "s.child" in err.value.msg and "must include date_key" in err.value.msg
    assert leftovers(conn) == NOTHING_LEFT
    assert _one(conn, "SELECT relkind FROM pg_class WHERE oid = 's.fait'::regclass")[0] == "r"


@pytest.mark.parametrize("mode", ["online", "offline"])
def test_swap_carries_everything(conn, mode):
    make_fact(conn)
    before = checksum(conn, "s.fait")
    mv_before = _all(conn, "SELECT * FROM s.mv_fait ORDER BY 1")
    with conn.cursor() as cur:
        cur.execute("ALTER TABLE s.fait ALTER COLUMN montant SET DEFAULT 7")
        cur.execute("INSERT INTO s.fait (date_key, note) VALUES (19990101, 'outside')")
    result = migrate(conn, "s.fait", "date_key", mode=mode, extend_primary_key=True, batch_rows=500)
    assert result["default_rows"] == 1
    assert result["renamed_source"] == "s.fait_unpartitioned"
    assert _one(conn, "SELECT relkind FROM pg_class WHERE oid = 's.fait'::regclass")[0] == "p"
    assert checksum(conn, "s.fait") == checksum(conn, "s.fait_unpartitioned")
    assert checksum(conn, "s.fait")[0] == before[0] + 1
    assert _one(conn, "SELECT count(*) FROM s.fait_default")[0] == 1
    parts = [
        r[0]
        for r in _all(
            conn,
            "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
            "WHERE i.inhparent = 's.fait'::regclass ORDER BY 1",
        )
    ]
    assert parts == ["fait_%d" % y for y in range(2020, 2031)] + ["fait_default"]
    # keys, indexes and constraints under their original names
    assert (
        _one(conn, "SELECT pg_get_constraintdef(oid) FROM pg_constraint WHERE conname = 'fait_pkey'")[0]
        == "PRIMARY KEY (id, date_key)"
    )
    indexes = dict(
        _all(
            conn,
            "SELECT indexrelid::regclass::text, indrelid::regclass::text FROM pg_index "
            "WHERE indrelid IN ('s.fait'::regclass, 's.fait_unpartitioned'::regclass)",
        )
    )
    assert indexes["s.fait_date_key_idx"] == "s.fait" and indexes["s.fait_dim_idx"] == "s.fait"
    assert indexes["s.fait_date_key_idx_unpartitioned"] == "s.fait_unpartitioned"
    assert "WHERE (dim_id IS NOT NULL)" in _one(conn, "SELECT pg_get_indexdef('s.fait_dim_idx'::regclass)")[0]
    cons = dict(_all(conn, "SELECT conname, contype FROM pg_constraint WHERE conrelid = 's.fait'::regclass"))
    assert cons["fait_dim_id_fkey"] == "f" and cons["fait_montant_check"] == "c"
    # defaults, sequence ownership, comments, owner, reloptions on leaves, statistics target
    assert _one(conn, "SELECT pg_get_serial_sequence('s.fait', 'id')")[0] == "s.fait_id_seq"
    new_id = _one(conn, "INSERT INTO s.fait (date_key) VALUES (20250505) RETURNING id, montant")
    assert new_id[0] > 3000 and new_id[1] == 7
    assert _one(conn, "SELECT obj_description('s.fait'::regclass, 'pg_class')")[0] == "les faits"
    assert _one(conn, "SELECT col_description('s.fait'::regclass, 4)")[0] == "en FCFA"
    assert _one(conn, "SELECT pg_get_userbyid(relowner) FROM pg_class WHERE oid = 's.fait'::regclass")[0] == "app_owner"
    assert (
        _one(conn, "SELECT pg_get_userbyid(relowner) FROM pg_class WHERE oid = 's.fait_2024'::regclass")[0]
        == "app_owner"
    )
    assert sorted(_one(conn, "SELECT reloptions FROM pg_class WHERE oid = 's.fait_2024'::regclass")[0]) == [
        "autovacuum_vacuum_scale_factor=0.02",
        "fillfactor=90",
    ]
    assert (
        _one(conn, "SELECT attstattarget FROM pg_attribute WHERE attrelid = 's.fait'::regclass AND attname = 'note'")[0]
        == 500
    )
    # grants, column grants, RLS and policy, user trigger
    assert _one(
        conn,
        "SELECT has_table_privilege('reader', 's.fait', 'SELECT'), "
        "has_column_privilege('reader', 's.fait', 'note', 'UPDATE'), "
        "has_table_privilege('reader', 's.fait_2024', 'SELECT')",
    ) == (True, True, True)
    assert _one(conn, "SELECT relrowsecurity FROM pg_class WHERE oid = 's.fait'::regclass")[0] is True
    assert _one(conn, "SELECT polname FROM pg_policy WHERE polrelid = 's.fait'::regclass")[0] == "fait_reader"
    assert _one(conn, "SELECT count(*) FROM s.audit WHERE id = %s", (new_id[0],))[0] == 1
    # the view reads the new table, the materialized view was rebuilt on it, with its index and grant
    assert (
        _one(conn, "SELECT count(*) FROM s.v_fait")[0]
        == _one(conn, "SELECT count(*) FROM s.fait WHERE montant > 10")[0]
    )
    deps = _all(
        conn,
        "SELECT DISTINCT d.refobjid::regclass::text FROM pg_depend d JOIN pg_rewrite r ON r.oid = d.objid "
        "WHERE r.ev_class IN ('s.v_fait'::regclass, 's.mv_fait'::regclass) AND d.refobjid <> r.ev_class "
        "AND d.refclassid = 'pg_class'::regclass",
    )
    assert sorted(r[0] for r in deps) == ["s.fait"]
    mv_after = _all(conn, "SELECT * FROM s.mv_fait ORDER BY 1")
    assert [r for r in mv_after if r[0] != 1999] == mv_before
    assert _one(
        conn,
        "SELECT has_table_privilege('reader', 's.mv_fait', 'SELECT'), "
        "has_table_privilege('reader', 's.v_fait', 'SELECT')",
    ) == (True, True)
    assert (
        _one(conn, "SELECT indexrelid::regclass::text FROM pg_index WHERE indrelid = 's.mv_fait'::regclass")[0]
        == "s.mv_fait_uk"
    )
    assert (
        _one(conn, "SELECT count(*) FROM pg_stats WHERE schemaname = 's' AND tablename = 'fait' AND inherited")[0] > 0
    )
    assert leftovers(conn) == NOTHING_LEFT


def test_drop_source_and_identity_column(conn):
    with conn.cursor() as cur:
        cur.execute(
            "CREATE SCHEMA s; CREATE TABLE s.fait (id int GENERATED ALWAYS AS IDENTITY, date_key int NOT NULL, "
            "v text, PRIMARY KEY (id, date_key)); "
            "INSERT INTO s.fait (date_key, v) SELECT 20200101 + g % 300, g::text FROM generate_series(1, 500) g"
        )
    result = migrate(conn, "s.fait", "date_key", drop_source=True, batch_rows=100)
    assert result["rows_copied"] == 500
    assert _one(conn, "SELECT to_regclass('s.fait_unpartitioned')")[0] is None
    assert _one(conn, "INSERT INTO s.fait (date_key) VALUES (20220101) RETURNING id")[0] == 501
    assert leftovers(conn) == NOTHING_LEFT


def test_attach_mode_makes_the_table_a_partition_without_copy(conn):
    make_fact(conn, rows=2000, extra=False)
    before = checksum(conn, "s.fait")
    result = migrate(conn, "s.fait", "date_key", mode="attach", extend_primary_key=True)
    assert result["rows_copied"] is None and result["swap_seconds"] is not None
    assert result["attached_partition"] == "s.fait_unpartitioned"
    assert result["attached_range"] == [20200101, 20260101]
    bounds = dict(
        _all(
            conn,
            "SELECT c.relname, pg_get_expr(c.relpartbound, c.oid) FROM pg_inherits i "
            "JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = 's.fait'::regclass",
        )
    )
    assert bounds["fait_unpartitioned"] == "FOR VALUES FROM (20200101) TO (20260101)"
    assert "fait_2026" in bounds and "fait_2030" in bounds and "fait_2020" not in bounds
    assert checksum(conn, "s.fait") == before
    assert (
        _one(
            conn,
            "SELECT pg_get_constraintdef(oid) FROM pg_constraint WHERE conname = 'fait_pkey' "
            "AND conrelid = 's.fait'::regclass",
        )[0]
        == "PRIMARY KEY (id, date_key)"
    )
    assert _one(conn, "SELECT has_table_privilege('reader', 's.fait', 'SELECT')")[0]
    assert _one(conn, "SELECT pg_get_serial_sequence('s.fait', 'id')")[0] == "s.fait_id_seq"
    assert (
        _one(conn, "INSERT INTO s.fait (date_key) VALUES (20290101) RETURNING tableoid::regclass::text")[0]
        == "s.fait_2029"
    )
    assert _one(conn, "SELECT count(*) FROM s.mv_fait")[0] > 0
    assert leftovers(conn) == NOTHING_LEFT


def test_verification_mismatch_aborts_with_the_original_untouched(conn):
    make_fact(conn, rows=500, extra=False)
    before = checksum(conn, "s.fait")

    def corrupt(event):
        # a row changed behind the capture triggers' back (as a bug or a superuser session_replication_role would)
        if event["phase"] == "verify":
            with conn.cursor() as cur:
                cur.execute("UPDATE s.fait_sgt_new SET note = 'tampered' WHERE id = 42")
            conn.commit()

    with pytest.raises(DwhError) as err:
        migrate(conn, "s.fait", "date_key", extend_primary_key=True, batch_rows=100, progress=corrupt)
    assert "verification of s.fait failed" in err.value.msg and "fait_" in err.value.msg
    assert _one(conn, "SELECT relkind FROM pg_class WHERE oid = 's.fait'::regclass")[0] == "r"
    assert checksum(conn, "s.fait") == before
    assert leftovers(conn) == NOTHING_LEFT
    migrate(conn, "s.fait", "date_key", extend_primary_key=True, batch_rows=100)
    assert checksum(conn, "s.fait") == before
