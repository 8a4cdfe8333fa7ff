"""Bad inputs: a catalogue of wrong calls across modules and roles. Each one fails with a message naming the
table or the value, and the database is byte-for-byte unchanged (catalog + data fingerprint before == after).

Valid unusual names (unicode, mixed case, quotes, spaces) must WORK: a separate test runs every module on them.
"""

import os

import pytest

from tests.support import fingerprint as fp
from tests.support.modules import run_module

DB = "rel_bad_inputs"
INJECTION = 'x"; DROP TABLE bi.victim; --'


@pytest.fixture(scope="module")
def bad_db(pg_server):
    """One database shared by the catalogue: every case must leave it exactly as it is."""
    pg_server.create_database(DB)
    conn = pg_server.connect(DB)
    with conn.cursor() as cur:
        cur.execute("""
            CREATE SCHEMA bi;
            CREATE TABLE bi.victim (id int PRIMARY KEY);
            INSERT INTO bi.victim VALUES (1), (2);
            CREATE TABLE bi.plain (id int PRIMARY KEY, jour date NOT NULL, qty int, note text);
            INSERT INTO bi.plain SELECT i, date '2024-01-01' + i, i, repeat(md5(i::text), 100)
                FROM generate_series(1, 40) i;
            CREATE VIEW bi.v AS SELECT id, note FROM bi.plain;
            CREATE TABLE bi.nopk (id int, note text);
            INSERT INTO bi.nopk SELECT i, repeat(md5(i::text), 100) FROM generate_series(1, 10) i;
            CREATE TABLE bi.p (id int NOT NULL, jour date NOT NULL, n int, note text) PARTITION BY RANGE (jour);
            CREATE TABLE bi.p_2024_01 PARTITION OF bi.p FOR VALUES FROM ('2024-01-01') TO ('2024-02-01');
            CREATE TABLE bi.p_2024_02 PARTITION OF bi.p FOR VALUES FROM ('2024-02-01') TO ('2024-03-01');
            CREATE TABLE bi.p_default PARTITION OF bi.p DEFAULT;
            INSERT INTO bi.p SELECT i, date '2024-01-01' + i, i, md5(i::text) FROM generate_series(0, 150) i;
            CREATE TABLE bi.po (id int NOT NULL, jour date NOT NULL) PARTITION BY RANGE (jour);
            CREATE TABLE bi.po_2024_01 PARTITION OF bi.po FOR VALUES FROM ('2024-01-01') TO ('2024-02-01');
            CREATE TABLE bi.po_odd PARTITION OF bi.po FOR VALUES FROM ('2024-03-15') TO ('2024-04-15');
            INSERT INTO bi.po VALUES (1, '2024-01-02'), (2, '2024-03-20');
            CREATE TABLE bi.ikey (id int NOT NULL, k int NOT NULL) PARTITION BY RANGE (k);
            CREATE TABLE bi.ikey_a PARTITION OF bi.ikey FOR VALUES FROM (20240101) TO (20250101);
            ANALYZE;
        """)
    yield pg_server, conn
    conn.close()


def _pt(**extra):
    args = {"name": "bi.p", "key": "jour", "interval": "month", "start": "2024-01-01", "premake": 1}
    args.update(extra)
    return args


def _cp(**extra):
    args = {"name": "bi.plain", "columns": {"note": "lz4"}}
    args.update(extra)
    return args


def _vac(**extra):
    args = {"tables": ["bi.plain"], "full": "never", "disk_check": "never"}
    args.update(extra)
    return args


# (id, module, arguments, words the message must contain). ``@wrong_password`` replaces the password.
CASES = [
    # table_info
    ("info-absent-table", "table_info", {"tables": ["bi.absent"]}, ["bi.absent"]),
    ("info-injection-name", "table_info", {"tables": [INJECTION]}, ["DROP TABLE bi.victim"]),
    ("info-three-part-name", "table_info", {"tables": ["a.b.c"]}, ["a.b.c"]),
    ("info-absent-schema", "table_info", {"schemas": ["no_such_schema"]}, ["no_such_schema"]),
    ("info-wrong-type", "table_info", {"tables": ["bi.plain"], "count_default_rows": "maybe"}, ["count_default_rows"]),
    ("info-bad-choice", "table_info", {"tables": ["bi.plain"], "compression": "all"}, ["compression", "all"]),
    # partitioned_table
    ("pt-absent-table", "partitioned_table", _pt(name="bi.absent"), ["bi.absent"]),
    ("pt-injection-name", "partitioned_table", _pt(name=INJECTION), ["DROP TABLE bi.victim"]),
    ("pt-injection-key", "partitioned_table", _pt(key=INJECTION), ["DROP TABLE bi.victim"]),
    ("pt-absent-key", "partitioned_table", _pt(key="nope"), ["nope"]),
    ("pt-key-not-partition-key", "partitioned_table", _pt(key="id"), ["id"]),
    ("pt-bad-interval", "partitioned_table", _pt(interval="fortnight"), ["fortnight"]),
    ("pt-unaligned-start", "partitioned_table", _pt(start="2024-01-15"), ["2024-01-15"]),
    ("pt-bad-start", "partitioned_table", _pt(start="yesterday"), ["yesterday"]),
    ("pt-negative-premake", "partitioned_table", _pt(premake=-1), ["premake", "-1"]),
    ("pt-wrong-type-premake", "partitioned_table", _pt(premake="two"), ["premake"]),
    ("pt-wrong-key-format", "partitioned_table", _pt(key_format="yyyymmdd"), ["yyyymmdd"]),
    ("pt-integer-key-auto", "partitioned_table", _pt(name="bi.ikey", key="k", start="20240101"), ["bi.ikey", "k"]),
    (
        "pt-archive-without-schema",
        "partitioned_table",
        _pt(retention={"keep": 1, "action": "archive"}),
        ["archive_schema"],
    ),
    ("pt-negative-retention", "partitioned_table", _pt(retention={"keep": -2}), ["keep", "-2"]),
    ("pt-overlapping-partition", "partitioned_table", _pt(name="bi.po"), ["bi.po_odd", "2024-03-15"]),
    ("pt-plain-table", "partitioned_table", _pt(name="bi.plain"), ["bi.plain"]),
    ("pt-bad-partition-option", "partitioned_table", _pt(partition_options={"fillfactor": 5}), ["fillfactor"]),
    ("pt-unknown-partition-option", "partitioned_table", _pt(partition_options={"colour": "red"}), ["colour"]),
    (
        "pt-pk-without-key",
        "partitioned_table",
        _pt(name="bi.newt", columns=["id int", "jour date"], primary_key=["id"]),
        ["jour"],
    ),
    # compression
    ("cp-absent-table", "compression", _cp(name="bi.absent"), ["bi.absent"]),
    ("cp-injection-name", "compression", _cp(name=INJECTION), ["DROP TABLE bi.victim"]),
    ("cp-injection-column", "compression", _cp(columns={INJECTION: "lz4"}), ["DROP TABLE bi.victim"]),
    ("cp-bad-method", "compression", _cp(columns={"note": "zstd"}), ["zstd"]),
    ("cp-absent-column", "compression", _cp(columns={"nope": "lz4"}), ["nope", "bi.plain"]),
    ("cp-fixed-width-column", "compression", _cp(columns={"qty": "lz4"}), ["qty", "integer"]),
    ("cp-tuple-target-low", "compression", _cp(toast_tuple_target=100), ["100"]),
    ("cp-tuple-target-high", "compression", _cp(toast_tuple_target=9000), ["9000"]),
    ("cp-online-without-key", "compression", _cp(name="bi.nopk", recompress="online"), ["bi.nopk"]),
    ("cp-rewrite-under-view", "compression", _cp(recompress="rewrite"), ["bi.v"]),
    ("cp-zero-batch", "compression", _cp(recompress="online", batch_size=0), ["batch_size"]),
    ("cp-bad-storage", "compression", _cp(storage={"note": "compressed"}), ["compressed"]),
    # vacuum
    ("vac-absent-table", "vacuum", _vac(tables=["bi.absent"]), ["bi.absent"]),
    ("vac-injection-name", "vacuum", _vac(tables=[INJECTION]), ["DROP TABLE bi.victim"]),
    ("vac-threshold-out-of-range", "vacuum", _vac(bloat_threshold=1.5), ["bloat_threshold", "1.5"]),
    ("vac-bad-size", "vacuum", _vac(min_size="lots"), ["lots"]),
    (
        "vac-bad-reloption",
        "vacuum",
        _vac(autovacuum={"autovacuum_vacuum_scale_factor": -1}),
        ["autovacuum_vacuum_scale_factor"],
    ),
    ("vac-unknown-reloption", "vacuum", _vac(autovacuum={"vacuum_now": True}), ["vacuum_now"]),
    ("vac-negative-freeze", "vacuum", _vac(freeze_older_than=-1), ["freeze_older_than"]),
    ("vac-repack-unavailable", "vacuum", _vac(full="always", full_method="pg_repack"), ["pg_repack"]),
    # connection options, shared by all
    ("conn-bad-lock-timeout", "vacuum", _vac(lock_timeout="soon"), ["lock_timeout", "soon"]),
    (
        "conn-wrong-password",
        "table_info",
        {"tables": ["bi.plain"], "login_password": "@wrong_password"},
        ["login_password"],
    ),
    ("conn-absent-database", "table_info", {"tables": ["bi.plain"], "login_db": "no_such_db"}, ["no_such_db"]),
    ("conn-absent-session-role", "vacuum", _vac(session_role="nobody_here"), ["nobody_here"]),
]


@pytest.mark.parametrize("case_id, module, args, words", CASES, ids=[c[0] for c in CASES])
def test_bad_input_fails_clearly_and_changes_nothing(bad_db, case_id, module, args, words):
    server, conn = bad_db
    before = fp.fingerprint(conn)
    full = server.params(DB)
    full.update(lock_timeout="500ms", lock_retries=0)
    full.update(args)
    if full.get("login_password") == "@wrong_password":
        full["login_password"] = "not-the-password-" + case_id
    result = run_module(module, full)
    after = fp.fingerprint(conn)
    assert result.get("failed"), (case_id, result)
    message = result["msg"]
    for word in words:
        assert word.lower() in message.lower(), (case_id, word, message)
    assert "Traceback" not in message
    assert server.password not in message and server.password not in repr(result)
    assert fp.diff(before, after) == [], (case_id, fp.diff(before, after))


def test_catalogue_is_large_enough():
    modules = {c[1] for c in CASES}
    assert len(CASES) >= 30 and {"table_info", "partitioned_table", "compression", "vacuum"} <= modules


def test_lz4_absent_is_refused_by_the_planner(bad_db):
    """A server built without lz4 is not available here: the compression planner gets the real table facts with
    ``lz4=False`` (what ``server_facts`` reads from ``default_toast_compression``'s allowed values)."""
    from ansible_collections.sigeti.dwh.plugins.module_utils.catalog import tables as catalog
    from ansible_collections.sigeti.dwh.plugins.module_utils.compression import planner as compression
    from ansible_collections.sigeti.dwh.plugins.module_utils.core.errors import DwhError
    from ansible_collections.sigeti.dwh.plugins.module_utils.session import connection

    server, conn = bad_db
    facts = connection.server_facts(conn)
    facts["lz4"] = False
    table = catalog.read_table(conn, "bi", "plain")
    for params in ({"columns": {"note": "lz4"}}, {"columns": {"note": "pglz"}, "database_default": "lz4"}):
        full = dict(
            {
                "columns": {},
                "storage": {},
                "toast_tuple_target": None,
                "recompress": "none",
                "batch_size": 5000,
                "database_default": None,
            },
            **params,
        )
        declared = compression.declared_state(full)
        with pytest.raises(DwhError) as error:
            compression.validate(declared, table, facts, {}, [])
        assert "lz4" in error.value.msg and "nothing was changed" in error.value.msg
    declared = compression.declared_state(dict(full, columns={"note": "pglz"}, database_default=None))
    compression.validate(declared, table, facts, {}, [])  # pglz stays possible


def test_unsupported_server_version_is_refused():
    """No PostgreSQL 13 here: the version gate every module calls first, with version_num=130000."""
    from ansible_collections.sigeti.dwh.plugins.module_utils.core.errors import DwhError
    from ansible_collections.sigeti.dwh.plugins.module_utils.session.connection import require_supported_server

    with pytest.raises(DwhError) as error:
        require_supported_server({"version_num": 130016, "version": "13.16"})
    assert "13.16" in error.value.msg and "14" in error.value.msg
    require_supported_server({"version_num": 140000, "version": "14.0"})


# -- valid unusual names must work ----------------------------------------------------------------------------

ODD_SCHEMA = "Ventes Été"
ODD_TABLE = 'Fait "Détail"; --'


def test_unicode_mixed_case_and_quote_names_work_in_every_module(pg_server, db, conn):
    with conn.cursor() as cur:
        cur.execute('CREATE SCHEMA "Ventes Été"')
        cur.execute(
            'CREATE TABLE "Ventes Été"."Fait ""Détail""; --" (id int NOT NULL, "Jour" date NOT NULL, '
            '"Note Été" text, PRIMARY KEY (id, "Jour")) PARTITION BY RANGE ("Jour")'
        )
        cur.execute(
            'INSERT INTO "Ventes Été"."Fait ""Détail""; --" SELECT 1, current_date, repeat(\'é\', 3000) WHERE false'
        )
    name = '"Ventes Été"."Fait ""Détail""; --"'
    args = pg_server.params(db)
    args.update(lock_timeout="2s")
    created = run_module("partitioned_table", dict(args, name=name, key="Jour", interval="month", premake=1))
    assert not created.get("failed"), created
    assert len(created["created"]) >= 2
    with conn.cursor() as cur:
        cur.execute(
            'INSERT INTO "Ventes Été"."Fait ""Détail""; --" SELECT i, current_date, repeat(md5(i::text), 100) '
            "FROM generate_series(1, 30) i"
        )
    info = run_module("table_info", dict(args, tables=[name]))
    assert not info.get("failed"), info
    compressed = run_module("compression", dict(args, name=name, columns={"Note Été": "lz4"}, recompress="online"))
    assert not compressed.get("failed"), compressed
    vacuumed = run_module("vacuum", dict(args, tables=[name], analyze="always", disk_check="never"))
    assert not vacuumed.get("failed"), vacuumed
    with conn.cursor() as cur:
        cur.execute('SELECT count(*), min(pg_column_compression("Note Été")) FROM "Ventes Été"."Fait ""Détail""; --"')
        assert cur.fetchone() == (30, "lz4")
    again = run_module("partitioned_table", dict(args, name=name, key="Jour", interval="month", premake=1))
    assert again["changed"] is False, again


@pytest.mark.slow
def test_role_bad_input_is_refused_before_any_change(pg_server, db, conn, tmp_path):
    """Roles validate dwh_tables before any task: a wrong entry changes nothing (slow: ansible-playbook start-up)."""
    from tests.integration.test_roles_helpers import play, write_inventory

    with conn.cursor() as cur:
        cur.execute("CREATE SCHEMA bi; CREATE TABLE bi.victim (id int); INSERT INTO bi.victim VALUES (1)")
    before = fp.fingerprint(conn)
    inventory = write_inventory(
        tmp_path / "hosts.yml",
        {"dwh1": (pg_server, db)},
        {
            "dwh_tables": [
                {"name": INJECTION, "key": "jour", "interval": "fortnight", "start": "2024-01-01", "premake": "many"}
            ],
            "dwh_report_dir": str(tmp_path / "reports"),
            "dwh_backup_dir": str(tmp_path / "backups"),
        },
    )
    result = play("setup.yml", inventory, pg_server.password, {"dwh_confirm": True})
    assert result.returncode != 0
    assert "premake" in result.stdout, result.stdout[-3000:]
    assert pg_server.password not in result.stdout
    assert fp.diff(before, fp.fingerprint(conn)) == []
    assert os.path.exists(str(tmp_path))
