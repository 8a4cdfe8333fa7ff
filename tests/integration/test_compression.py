"""compression against a real PostgreSQL 17 (lz4): settings, online and rewrite recompression, truth, bad input."""

import threading
import time

import pytest

from tests.support.modules import run_module

# ~7 kB of text per row that pglz compresses about 3.5x: 40 distinct 16-char tokens per row, repeated.
NOTE = (
    "(SELECT string_agg(substr(md5((g % 40 + {i})::text), 1, 16) || ' lot ' || (g % 7), ' ') "
    "FROM generate_series(1, 300) g)"
)
# ~4.6 kB of jsonb: an array for even rows, an object for odd rows (both kinds must keep their content).
DOC = (
    "(SELECT CASE WHEN {i} % 2 = 0 THEN jsonb_agg(jsonb_build_object('k', substr(md5((g % 25 + {i})::text), 1, 12), "
    "'n', g % 9)) ELSE jsonb_object_agg('k' || g, substr(md5((g % 25 + {i})::text), 1, 12)) END "
    "FROM generate_series(1, 150) g)"
)
BIN = "convert_to(" + NOTE + ", 'UTF8')"


def _args(pg_server, db, **extra):
    args = pg_server.params(db)
    args.update(lock_timeout="500ms", lock_retry_delay=0.05)
    args.update(extra)
    return args


def _exec(conn, *statements):
    with conn.cursor() as cur:
        for statement in statements:
            cur.execute(statement)


def _one(conn, query):
    with conn.cursor() as cur:
        cur.execute(query)
        return cur.fetchone()[0]


def _methods(conn, table, column):
    with conn.cursor() as cur:
        cur.execute("SELECT coalesce(pg_column_compression(%s), 'none'), count(*) FROM %s GROUP BY 1" % (column, table))
        return dict(cur.fetchall())


def _attcompression(conn, column):
    with conn.cursor() as cur:
        cur.execute(
            "SELECT c.relname, a.attcompression::text FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid "
            "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'f' AND a.attname = %s "
            "AND c.relkind IN ('r', 'p') ORDER BY 1",
            (column,),
        )
        return dict(cur.fetchall())


def _checksum(conn, table, columns, key="id"):
    parts = " || ".join("md5(coalesce(%s::text, '<null>'))" % c for c in columns)
    return _one(conn, "SELECT md5(string_agg(%s, ',' ORDER BY %s)) FROM %s" % (parts, key, table))


def _fill(conn, table, first, last, extra_cols="", extra_vals=""):
    values = ", ".join([NOTE.format(i="i"), DOC.format(i="i"), BIN.format(i="i")])
    _exec(
        conn,
        "INSERT INTO %s (id, note, doc, bin%s) SELECT i, %s%s FROM generate_series(%d, %d) i"
        % (table, extra_cols, values, extra_vals, first, last),
    )


def _plain_table(conn, rows=600, pk=True):
    _exec(
        conn,
        "CREATE SCHEMA f",
        "CREATE TABLE f.t (id int %s, note text, doc jsonb, bin bytea, qty int, jour date)"
        % ("PRIMARY KEY" if pk else "NOT NULL"),
    )
    _fill(conn, "f.t", 1, rows)


def test_mixed_table_online_to_lz4_keeps_content_and_is_idempotent(pg_server, db, conn):
    _plain_table(conn)
    # Half the values rewritten as lz4 already: a mixed table, as after a method change and some updates.
    _exec(
        conn,
        "ALTER TABLE f.t ALTER COLUMN note SET COMPRESSION lz4",
        "UPDATE f.t SET note = note || '' WHERE id % 2 = 0",
        "ALTER TABLE f.t ALTER COLUMN note SET COMPRESSION pglz",
    )
    assert _methods(conn, "f.t", "note") == {"pglz": 300, "lz4": 300}
    checksum = _checksum(conn, "f.t", ["note", "doc", "bin"])
    args = _args(
        pg_server,
        db,
        name="f.t",
        columns={"note": "lz4", "doc": "lz4", "bin": "lz4"},
        recompress="online",
        batch_size=100,
        measure="exact",
    )
    result = run_module("compression", args)
    assert not result.get("failed"), result
    assert result["changed"] is True
    assert result["columns"]["note"]["before"]["shares"] == {"pglz": 0.5, "lz4": 0.5, "uncompressed": 0.0}
    assert result["columns"]["note"]["values_to_rewrite"] == 300
    assert result["columns"]["doc"]["values_to_rewrite"] == 600
    for column in ("note", "doc", "bin"):
        assert _methods(conn, "f.t", column) == {"lz4": 600}
        assert result["columns"][column]["after"]["shares"]["lz4"] == 1.0
    assert _checksum(conn, "f.t", ["note", "doc", "bin"]) == checksum
    assert _attcompression(conn, "note") == {"t": "l"}
    # 6 batches of 100 keys, then the open-ended tail (which catches rows inserted meanwhile).
    assert result["recompress"]["rows_rewritten"] == 600 and result["recompress"]["batches"] == 7
    assert "not returned" in result["recompress"]["note"]
    assert result["sizes"]["after"]["total_bytes"] > 0 and result["sizes"]["change_bytes"] is not None
    assert any(q.startswith('VACUUM "f"."t"') for q in result["queries"])
    assert sum(1 for q in result["queries"] if q.startswith('UPDATE ONLY "f"."t"')) == 7

    again = run_module("compression", args)
    assert not again.get("failed"), again
    assert again["changed"] is False and again["queries"] == []
    assert again["columns"]["note"]["values_to_rewrite"] == 0


def test_check_mode_plans_estimates_and_takes_no_lock(pg_server, db, conn):
    _plain_table(conn, rows=300)
    before = _attcompression(conn, "note")
    blocker = pg_server.connect(db, autocommit=False)
    try:
        # EXCLUSIVE lets only ACCESS SHARE through: any DDL, UPDATE or VACUUM would wait and time out.
        _exec(blocker, "LOCK TABLE f.t IN EXCLUSIVE MODE")
        result = run_module(
            "compression",
            _args(
                pg_server,
                db,
                name="f.t",
                columns={"note": "lz4"},
                storage={"doc": "main"},
                toast_tuple_target=4096,
                recompress="online",
                lock_timeout="200ms",
                lock_retries=0,
            ),
            check_mode=True,
            diff=True,
        )
    finally:
        blocker.rollback()
        blocker.close()
    assert not result.get("failed"), result
    assert result["changed"] is True
    assert result["columns"]["note"]["values_to_rewrite"] == 300
    assert result["sizes"]["after"] is None
    kinds = [q.split(" ")[0] for q in result["queries"]]
    assert kinds == ["ALTER", "ALTER", "UPDATE", "VACUUM"], result["queries"]
    assert ":lower_1" in result["queries"][2]
    assert result["diff"]["after"]["relations"]["f.t"]["note"]["compression"] == "lz4"
    assert _attcompression(conn, "note") == before
    assert _methods(conn, "f.t", "note") == {"pglz": 300}
    assert _one(conn, "SELECT reloptions FROM pg_class WHERE oid = 'f.t'::regclass") is None


def test_partitioned_old_new_and_attached_partitions(pg_server, db, conn):
    _exec(
        conn,
        "CREATE SCHEMA f",
        "CREATE TABLE f.p (id int, jour date NOT NULL, note text, doc jsonb, bin bytea, PRIMARY KEY (id, jour))"
        " PARTITION BY RANGE (jour)",
        "CREATE TABLE f.p_2023 PARTITION OF f.p FOR VALUES FROM ('2023-01-01') TO ('2024-01-01')",
        "CREATE TABLE f.p_2024 PARTITION OF f.p FOR VALUES FROM ('2024-01-01') TO ('2025-01-01')",
        "CREATE TABLE f.p_2025 (LIKE f.p INCLUDING ALL)",
        "ALTER TABLE f.p ATTACH PARTITION f.p_2025 FOR VALUES FROM ('2025-01-01') TO ('2026-01-01')",
    )
    _fill(conn, "f.p", 1, 450, ", jour", ", date '2023-06-01' + ((i - 1) / 150) * 365")
    # The newest partition already writes lz4 for a part of its rows.
    _exec(
        conn,
        "ALTER TABLE f.p_2025 ALTER COLUMN note SET COMPRESSION lz4",
        "UPDATE f.p_2025 SET note = note || '' WHERE id % 3 = 0",
    )
    checksum = _checksum(conn, "f.p", ["note", "doc", "bin"], key="id, jour")
    args = _args(
        pg_server,
        db,
        name="f.p",
        columns={"note": "lz4", "doc": "lz4"},
        storage={"note": "extended"},
        recompress="online",
        batch_size=64,
    )
    result = run_module("compression", args)
    assert not result.get("failed"), result
    assert _attcompression(conn, "note") == {"p": "l", "p_2023": "l", "p_2024": "l", "p_2025": "l"}
    assert _attcompression(conn, "doc") == {"p": "l", "p_2023": "l", "p_2024": "l", "p_2025": "l"}
    assert _attcompression(conn, "bin") == {"p": "", "p_2023": "", "p_2024": "", "p_2025": ""}
    assert _methods(conn, "f.p", "note") == {"lz4": 450}
    assert _methods(conn, "f.p", "doc") == {"lz4": 450}
    assert _methods(conn, "f.p", "bin") == {"pglz": 450}, "undeclared columns are left alone"
    assert _checksum(conn, "f.p", ["note", "doc", "bin"], key="id, jour") == checksum
    alters = [q for q in result["queries"] if q.startswith("ALTER TABLE ONLY")]
    assert len(alters) == 4, "the parent and each partition, one by one"
    assert [p["relation"] for p in result["recompress"]["leaves"]] == ["f.p_2023", "f.p_2024", "f.p_2025"]
    # The parent's setting reaches partitions created later.
    _exec(conn, "CREATE TABLE f.p_2026 PARTITION OF f.p FOR VALUES FROM ('2026-01-01') TO ('2027-01-01')")
    assert _attcompression(conn, "note")["p_2026"] == "l"
    again = run_module("compression", args)
    assert again["changed"] is False, again["queries"]


def test_rewrite_plain_table_jsonb_and_bytea_keeps_content_and_indexes(pg_server, db, conn):
    _plain_table(conn, rows=300)
    _exec(
        conn,
        "CREATE INDEX t_note_prefix ON f.t (left(note, 20))",
        "CREATE INDEX t_doc ON f.t USING gin (doc jsonb_path_ops)",
        "ALTER TABLE f.t ALTER COLUMN bin SET STORAGE main",
        "CREATE VIEW f.v AS SELECT id, qty FROM f.t",
    )
    indexes = _one(conn, "SELECT array_agg(indexname::text ORDER BY 1) FROM pg_indexes WHERE tablename = 't'")
    checksum = _checksum(conn, "f.t", ["note", "doc", "bin"])
    args = _args(
        pg_server,
        db,
        name="f.t",
        columns={"note": "lz4", "doc": "lz4", "bin": "lz4"},
        storage={"note": "main"},
        recompress="rewrite",
    )
    result = run_module("compression", args)
    assert not result.get("failed"), result
    rewrites = [q for q in result["queries"] if " TYPE " in q]
    assert len(rewrites) == 1 and "USING" in rewrites[0]
    for column in ("note", "doc", "bin"):
        assert _methods(conn, "f.t", column) == {"lz4": 300}
    assert _checksum(conn, "f.t", ["note", "doc", "bin"]) == checksum
    assert _one(conn, "SELECT array_agg(indexname::text ORDER BY 1) FROM pg_indexes WHERE tablename = 't'") == indexes
    assert _one(conn, "SELECT count(*) FROM f.t WHERE doc @> jsonb_build_object('k1', substr(md5('2'), 1, 12))") == 1
    with conn.cursor() as cur:
        cur.execute(
            "SELECT attname::text, attstorage::text, attcompression::text FROM pg_attribute "
            "WHERE attrelid = 'f.t'::regclass AND attname IN ('note', 'doc', 'bin') ORDER BY 1"
        )
        assert cur.fetchall() == [("bin", "m", "l"), ("doc", "x", "l"), ("note", "m", "l")]
    assert result["sizes"]["after"]["total_bytes"] > 0
    assert run_module("compression", args)["changed"] is False


def test_rewrite_partitioned_table_one_partition_at_a_time(pg_server, db, conn):
    _exec(
        conn,
        "CREATE SCHEMA f",
        "CREATE TABLE f.p (id int NOT NULL, jour date NOT NULL, note text, doc jsonb, bin bytea)"
        " PARTITION BY RANGE (jour)",
        "CREATE TABLE f.p_a PARTITION OF f.p FOR VALUES FROM ('2024-01-01') TO ('2025-01-01')",
        "CREATE TABLE f.p_b PARTITION OF f.p FOR VALUES FROM ('2025-01-01') TO ('2026-01-01')",
    )
    _fill(conn, "f.p", 1, 300, ", jour", ", date '2024-03-01' + ((i - 1) / 150) * 365")
    checksum = _checksum(conn, "f.p", ["note", "doc", "bin"])
    result = run_module("compression", _args(pg_server, db, name="f.p", columns={"note": "lz4"}, recompress="rewrite"))
    assert not result.get("failed"), result
    vacuums = [q for q in result["queries"] if q.startswith("VACUUM (FULL, ANALYZE)")]
    assert vacuums == ['VACUUM (FULL, ANALYZE) "f"."p_a"', 'VACUUM (FULL, ANALYZE) "f"."p_b"']
    assert _methods(conn, "f.p", "note") == {"lz4": 300}
    assert _checksum(conn, "f.p", ["note", "doc", "bin"]) == checksum
    assert _one(conn, "SELECT count(*) FROM f.p_a") == 150


def test_narrow_table_warns_that_nothing_changes(pg_server, db, conn):
    _exec(
        conn,
        "CREATE SCHEMA f",
        "CREATE TABLE f.fait (id bigint PRIMARY KEY, jour date, montant numeric(12,2), libelle varchar(40))",
        "INSERT INTO f.fait SELECT i, date '2024-01-01' + i % 365, i * 1.5, 'ligne ' || i FROM generate_series(1, 2000) i",
    )
    result = run_module(
        "compression", _args(pg_server, db, name="f.fait", columns={"libelle": "lz4"}, recompress="online")
    )
    assert not result.get("failed"), result
    warning = [w for w in result["warnings_detail"] if "no row exceeds the TOAST threshold" in w]
    assert warning and "this setting changes nothing for this table" in warning[0]
    assert "widest row" in warning[0] and "threshold 2032 bytes" in warning[0]
    assert result["columns"]["libelle"]["values_to_rewrite"] == 0
    assert result["recompress"]["rows_rewritten"] == 0
    assert result["sizes"]["after"] == result["sizes"]["before"]


def test_interrupted_online_recompression_resumes(pg_server, db, conn):
    _plain_table(conn, rows=600)
    checksum = _checksum(conn, "f.t", ["note", "doc", "bin"])
    # Row 300 stalls its batch; another session then kills the module's connection mid-run.
    _exec(
        conn,
        "CREATE FUNCTION f.stall() RETURNS trigger LANGUAGE plpgsql AS "
        "$$ BEGIN IF NEW.id = 300 THEN PERFORM pg_sleep(60); END IF; RETURN NEW; END $$",
        "CREATE TRIGGER stall BEFORE UPDATE ON f.t FOR EACH ROW EXECUTE FUNCTION f.stall()",
    )
    killed = []

    def killer():
        watcher = pg_server.connect(db)
        try:
            deadline = time.time() + 60
            while time.time() < deadline and not killed:
                with watcher.cursor() as cur:
                    cur.execute(
                        "SELECT pid FROM pg_stat_activity WHERE application_name = 'sigeti.dwh' "
                        "AND wait_event = 'PgSleep'"
                    )
                    row = cur.fetchone()
                    if row:
                        cur.execute("SELECT pg_terminate_backend(%s)", row)
                        killed.append(row[0])
                time.sleep(0.05)
        finally:
            watcher.close()

    thread = threading.Thread(target=killer)
    thread.start()
    args = _args(
        pg_server,
        db,
        name="f.t",
        columns={"note": "lz4", "doc": "lz4"},
        recompress="online",
        batch_size=100,
        measure="exact",
    )
    first = run_module("compression", args)
    killed.append("done")
    thread.join()
    assert first.get("failed"), first
    assert "interrupted" in first["msg"] and "2 batch(es)" in first["msg"] and "continue" in first["msg"]
    assert _methods(conn, "f.t", "note") == {"lz4": 200, "pglz": 400}

    _exec(conn, "DROP TRIGGER stall ON f.t")
    second = run_module("compression", args)
    assert not second.get("failed"), second
    assert second["columns"]["note"]["before"]["lz4"] == 200
    assert second["recompress"]["rows_rewritten"] == 400
    assert _methods(conn, "f.t", "note") == {"lz4": 600}
    assert _methods(conn, "f.t", "doc") == {"lz4": 600}
    assert _checksum(conn, "f.t", ["note", "doc", "bin"]) == checksum


def test_database_default_toast_tuple_target_and_default_method(pg_server, db, conn):
    _exec(
        conn,
        "CREATE SCHEMA f",
        "CREATE TABLE f.p (id int NOT NULL, jour date NOT NULL, note text, doc jsonb, bin bytea,"
        " PRIMARY KEY (id, jour)) PARTITION BY RANGE (jour)",
        "CREATE TABLE f.p_a PARTITION OF f.p FOR VALUES FROM ('2024-01-01') TO ('2025-01-01')",
    )
    _fill(conn, "f.p", 1, 200, ", jour", ", date '2024-03-01'")
    args = _args(
        pg_server,
        db,
        name="f.p",
        columns={"note": "default"},
        database_default="lz4",
        toast_tuple_target=4096,
        recompress="online",
    )
    result = run_module("compression", args, diff=True)
    assert not result.get("failed"), result
    assert result["queries"][0] == "ALTER DATABASE \"%s\" SET default_toast_compression = 'lz4'" % db
    assert "SET default_toast_compression = 'lz4'" in result["queries"]
    assert _one(conn, "SELECT reloptions FROM pg_class WHERE oid = 'f.p_a'::regclass") == ["toast_tuple_target=4096"]
    assert _methods(conn, "f.p", "note") == {"lz4": 200}, "default resolves to the declared database default"
    assert result["diff"]["before"]["database_default"] is None
    assert result["diff"]["after"]["database_default"] == "lz4"
    again = run_module("compression", args)
    assert again["changed"] is False, again["queries"]


def test_lock_held_elsewhere_fails_naming_the_blocker_and_changes_nothing(pg_server, db, conn):
    _plain_table(conn, rows=50)
    blocker = pg_server.connect(db, autocommit=False)
    try:
        _exec(blocker, "SELECT count(*) FROM f.t")  # an open read transaction holds ACCESS SHARE
        pid = blocker.get_backend_pid()
        result = run_module(
            "compression",
            _args(pg_server, db, name="f.t", columns={"note": "lz4"}, lock_timeout="100ms", lock_retries=1),
        )
    finally:
        blocker.rollback()
        blocker.close()
    assert result.get("failed")
    assert "pid %d" % pid in result["msg"] and "lock_timeout" in result["msg"]
    assert result["blocking_pids"] == [pid]
    assert _attcompression(conn, "note") == {"t": ""}


@pytest.mark.parametrize(
    "options, message",
    [
        ({"columns": {"note": "zstd"}}, "not a compression method"),
        ({"columns": {"nope": "lz4"}}, "column 'nope' does not exist in table f.t"),
        ({"columns": {"qty": "lz4"}}, "is of type integer"),
        ({"storage": {"jour": "main"}}, "is of type date"),
        ({"storage": {"note": "compressed"}}, "not a storage strategy"),
        ({"toast_tuple_target": 100}, "out of range"),
        ({"toast_tuple_target": 9000}, "out of range"),
        ({"columns": {}, "recompress": "online"}, "needs columns"),
        ({"columns": {"note": "lz4"}, "recompress": "online", "_no_pk": True}, "needs a row identity"),
        ({"columns": {"note": "lz4"}, "recompress": "rewrite", "_view": True}, "refuses ALTER COLUMN"),
        ({"name": "f.absent", "columns": {"note": "lz4"}}, "does not exist"),
    ],
)
def test_bad_input_is_a_clear_error_and_changes_nothing(pg_server, db, conn, options, message):
    options = dict(options)
    _plain_table(conn, rows=20, pk=not options.pop("_no_pk", False))
    if options.pop("_view", False):
        _exec(conn, "CREATE VIEW f.v AS SELECT id, note FROM f.t")
    args = _args(pg_server, db, name="f.t", columns={"note": "lz4"}, storage={"doc": "main"})
    args.update(options)
    result = run_module("compression", args)
    assert result.get("failed"), result
    assert message in result["msg"], result["msg"]
    assert _attcompression(conn, "note") == {"t": ""}
    assert (
        _one(conn, "SELECT attstorage::text FROM pg_attribute WHERE attrelid = 'f.t'::regclass AND attname = 'doc'")
        == "x"
    )
    assert _methods(conn, "f.t", "note") == {"pglz": 20}
