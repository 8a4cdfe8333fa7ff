"""vacuum's list form (``policies``): several tables, each with its own policy, in one call; every entry checked
before anything runs; the first failure stops the list, naming the table."""

from tests.integration.test_vacuum import _args, flush, make_table, relation, stats
from tests.support.modules import run_module


def test_each_table_gets_its_own_policy_in_one_call(pg_server, db, conn):
    make_table(conn, "dwh.a")
    make_table(conn, "dwh.b")
    policies = [
        {"name": "dwh.a", "full": "never"},
        # b: analyze only, and its own autovacuum setting on its leaves
        {"name": "dwh.b", "vacuum": "never", "full": "never", "autovacuum": {"autovacuum_vacuum_scale_factor": 0.05}},
    ]
    planned = run_module("vacuum", _args(pg_server, db, policies=policies), check_mode=True)
    assert not planned.get("failed"), planned
    assert stats(conn, "dwh.a")[1:3] == (None, None), "check mode runs nothing"

    result = run_module("vacuum", _args(pg_server, db, policies=policies))
    assert not result.get("failed"), result
    assert result["changed"] is True and [r["name"] for r in result["results"]] == ["dwh.a", "dwh.b"]
    first, second = result["results"]
    assert first["queries"] == ['VACUUM (ANALYZE) "dwh"."a"']
    assert 'ANALYZE "dwh"."b"' in second["queries"] and not any(q.startswith("VACUUM") for q in second["queries"])
    assert any("autovacuum_vacuum_scale_factor" in q for q in second["queries"])
    assert result["queries"] == first["queries"] + second["queries"]
    assert [t["name"] for t in result["tables"]] == ["a", "b"]
    assert relation(result, "a")["decisions"]["vacuum"]["due"]
    with conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'")
        assert cur.fetchone()[0] == 0, "each table's run lock is released after it"

    flush(conn)
    again = run_module("vacuum", _args(pg_server, db, policies=policies))
    assert again["changed"] is False and again["queries"] == [], again["queries"]


def test_bad_entries_change_nothing_and_a_failure_stops_the_list(pg_server, db, conn):
    make_table(conn, "dwh.a")
    bad = run_module(
        "vacuum",
        _args(pg_server, db, policies=[{"name": "dwh.a"}, {"name": "dwh.b", "bloat_threshold": 1.5}]),
    )
    assert bad.get("failed") and "policies entry dwh.b: bloat_threshold=1.5 is out of range" in bad["msg"], bad
    assert stats(conn, "dwh.a")[1:3] == (None, None), "entries are checked before anything runs"
    both = run_module("vacuum", _args(pg_server, db, policies=[{"name": "dwh.a"}], tables=["dwh.a"]))
    assert both.get("failed") and "mutually exclusive" in both["msg"], both

    stopped = run_module(
        "vacuum",
        _args(pg_server, db, policies=[{"name": "dwh.a", "full": "never"}, {"name": "dwh.nope"}, {"name": "dwh.c"}]),
    )
    assert stopped.get("failed"), stopped
    assert "table dwh.nope failed: table(s) dwh.nope do not exist" in stopped["msg"]
    assert "done before it: dwh.a; not run: dwh.c" in stopped["msg"]
    assert stopped["changed"] is True and stopped["failed_table"] == "dwh.nope"
    assert stats(conn, "dwh.a")[1] is not None, "dwh.a was vacuumed before the failure"
