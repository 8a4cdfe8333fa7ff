"""partitioned_table's list form (``tables``): several tables in one call, each as if called alone; the first
failure stops the list, naming the table, what was done and what was not run."""

from tests.integration.test_partitioned_table import _args, partitions, snapshot, warnings
from tests.support.modules import run_module

FACT = {"name": "fact_a", "key": "d", "interval": "year", "start": "2024-01-01"}
NEW = {
    "name": "dim_b",
    "key": "d",
    "interval": "month",
    "premake": 1,
    "columns": [{"name": "id", "type": "bigint"}, {"name": "d", "type": "date", "not_null": True}],
}


def _facts(conn):
    with conn.cursor() as cur:
        cur.execute("CREATE TABLE fact_a (id bigint, d date NOT NULL) PARTITION BY RANGE (d)")


def test_tables_run_each_in_one_call_then_nothing(pg_server, db, conn):
    _facts(conn)
    before = snapshot(conn)
    planned = run_module("partitioned_table", _args(pg_server, db, tables=[FACT, NEW]), check_mode=True)
    assert not planned.get("failed"), planned
    assert snapshot(conn) == before, "check mode changes nothing"
    assert [r["name"] for r in planned["results"]] == ["fact_a", "dim_b"]
    assert planned["changed"] is True and all(r["queries"] for r in planned["results"])

    result = run_module("partitioned_table", _args(pg_server, db, tables=[FACT, NEW]), diff=True)
    assert not result.get("failed"), result
    assert result["changed"] is True
    first, second = result["results"]
    assert first["name"] == "fact_a" and "fact_a_2024" in first["created"] and first["changed"] is True
    assert "fact_a_2024" in partitions(conn, "fact_a") and "dim_b_default" in partitions(conn, "dim_b")
    assert result["queries"] == first["queries"] + second["queries"]
    assert "# fact_a\n" in result["diff"]["after"] and "# dim_b\n" in result["diff"]["after"]
    # each table's run lock was released after it: the list holds none once done
    with conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'")
        assert cur.fetchone()[0] == 0

    again = run_module("partitioned_table", _args(pg_server, db, tables=[FACT, NEW]))
    assert again["changed"] is False and again["queries"] == []
    assert [r["changed"] for r in again["results"]] == [False, False]
    assert all(r["warnings"] == [] for r in again["results"]), warnings(again)


def test_first_failure_stops_the_list_and_names_the_table(pg_server, db, conn):
    _facts(conn)
    bad = dict(FACT, name="dim_c", key="missing")
    with conn.cursor() as cur:
        cur.execute("CREATE TABLE dim_c (d date NOT NULL) PARTITION BY RANGE (d)")
    result = run_module("partitioned_table", _args(pg_server, db, tables=[FACT, bad, NEW]))
    assert result.get("failed"), result
    assert "table dim_c failed: column missing does not exist in table public.dim_c" in result["msg"]
    assert "done before it: fact_a; not run: dim_b" in result["msg"]
    assert result["changed"] is True, "fact_a's partitions were committed"
    assert result["failed_table"] == "dim_c" and result["not_run"] == ["dim_b"]
    assert [r["name"] for r in result["results"]] == ["fact_a", "dim_c"] and result["results"][1]["failed"]
    assert "fact_a_2024" in partitions(conn, "fact_a")
    with conn.cursor() as cur:
        cur.execute("SELECT to_regclass('dim_b')")
        assert cur.fetchone()[0] is None, "the tables after the failure are not run"


def test_bad_list_inputs_change_nothing(pg_server, db, conn):
    _facts(conn)
    before = snapshot(conn)
    twice = run_module("partitioned_table", _args(pg_server, db, tables=[FACT, dict(FACT, name="public.fact_a")]))
    assert twice.get("failed") and "lists table public.fact_a twice" in twice["msg"], twice
    both = run_module("partitioned_table", _args(pg_server, db, tables=[FACT], name="fact_a"))
    assert both.get("failed") and "mutually exclusive" in both["msg"], both
    beside = run_module("partitioned_table", _args(pg_server, db, tables=[FACT], premake=3))
    assert beside.get("failed") and "mutually exclusive" in beside["msg"], beside
    neither = run_module("partitioned_table", _args(pg_server, db, key="d"))
    assert neither.get("failed") and "name, tables" in neither["msg"], neither
    incomplete = run_module("partitioned_table", _args(pg_server, db, tables=[{"name": "fact_a", "key": "d"}]))
    assert incomplete.get("failed") and "interval" in incomplete["msg"], incomplete
    assert snapshot(conn) == before
