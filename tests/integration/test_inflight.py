"""What a DBA sees of half-done work: invalid indexes and migrations started and not finished.

A cancelled ``CREATE INDEX CONCURRENTLY`` leaves an INVALID index that serves no query; a killed migration leaves
capture triggers logging every write. ``table_info`` lists both, and every module warns about a migration older
than a day.
"""

from tests.integration.test_migration import make_fact
from tests.integration.test_migration_resume import _driver
from tests.support.modules import run_module


def _warnings(result):
    return [w["event"]["msg"] if isinstance(w, dict) else w for w in result.get("warnings") or []]


def _args(pg_server, db, **extra):
    args = pg_server.params(db)
    args.update(extra)
    return args


def test_table_info_lists_invalid_indexes(pg_server, db, conn):
    with conn.cursor() as cur:
        cur.execute("CREATE SCHEMA s")
        cur.execute("CREATE TABLE s.t (id int, code int)")
        cur.execute("INSERT INTO s.t SELECT i, i % 3 FROM generate_series(1, 100) i")
        # a concurrent unique build that fails leaves its index behind, INVALID (as a cancelled one does)
        try:
            cur.execute("CREATE UNIQUE INDEX CONCURRENTLY t_code_key ON s.t (code)")
        except Exception as error:  # duplicate key: expected
            assert "could not create unique index" in str(error)
        cur.execute("CREATE INDEX t_id ON s.t (id)")
    table = run_module("table_info", _args(pg_server, db, tables=["s.t"]))["tables"][0]
    assert table["invalid_indexes"] == ["t_code_key"]
    assert {i["name"]: i["valid"] for i in table["indexes"]} == {"t_code_key": False, "t_id": True}
    assert table["migration"] is None


def test_a_killed_migration_is_reported_with_its_phase_and_an_old_one_warned_about(pg_server, db, conn):
    make_fact(conn, rows=3000, extra=False)
    proc = _driver(pg_server, db, "--die-after-batches", "3")
    proc.communicate(timeout=120)
    assert proc.returncode == -9

    result = run_module("table_info", _args(pg_server, db, tables=["s.fait"]))
    migration = result["tables"][0]["migration"]
    assert migration["phase"] == "copy" and migration["mode"] == "online"
    assert migration["rows_copied"] > 0 and 0 < migration["copy_percent"] < 100
    assert not [w for w in _warnings(result) if "migration" in w]  # minutes old: no warning yet

    with conn.cursor() as cur:
        cur.execute("UPDATE sigeti_dwh.migration_state SET started_at = started_at - interval '2 days'")
    for module, extra in (
        ("table_info", {"tables": ["s.fait"]}),
        ("vacuum", {"tables": ["s.fait"], "analyze": "never", "vacuum": "never", "full": "never"}),
        ("compression", {"name": "s.fait"}),
    ):
        result = run_module(module, _args(pg_server, db, **extra))
        assert not result.get("failed"), (module, result.get("msg"))
        stale = [w for w in _warnings(result) if "migration of s.fait" in w]
        assert stale and "still at phase copy" in stale[0] and "migrate: abandon" in stale[0], (module, stale)


def test_a_role_without_access_to_the_state_schema_is_told_not_failed(pg_server, db, conn):
    make_fact(conn, rows=500, extra=False)
    proc = _driver(pg_server, db, "--die-after-batches", "1")
    proc.communicate(timeout=120)
    with conn.cursor() as cur:
        cur.execute("CREATE ROLE analyst LOGIN PASSWORD 'pw'")
        cur.execute("GRANT USAGE ON SCHEMA s TO analyst")
        cur.execute("GRANT SELECT ON s.fait TO analyst")
    args = _args(pg_server, db, tables=["s.fait"])
    args.update(login_user="analyst", login_password="pw")
    result = run_module("table_info", args)
    assert not result.get("failed"), result.get("msg")
    assert result["tables"][0]["migration"] is None
    assert any("in-flight migrations not reported" in w for w in _warnings(result))


def test_table_info_server_only_reports_the_facts_preflight_needs(pg_server, db):
    result = run_module("table_info", _args(pg_server, db, server_only=True))
    assert not result.get("failed"), result.get("msg")
    assert result["tables"] == [] and result["changed"] is False
    server = result["server"]
    assert server["version_num"] >= 140000 and server["in_recovery"] is False
    assert server["data_directory"] and set(server) >= {"version", "lz4", "superuser", "extensions"}
