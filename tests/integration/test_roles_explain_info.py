"""explain_info (the verify role's read-only module): the guide's range query, partitions read, bad input named."""

from tests.support.modules import run_module

RANGE = {"name": "dwh_facts.f", "key": "k", "low": 20230101, "high": 20231231}


def setup_tables(conn):
    with conn.cursor() as cur:
        cur.execute("CREATE SCHEMA dwh_facts; CREATE TABLE dwh_facts.f (id int, k int NOT NULL) PARTITION BY RANGE (k)")
        for year in (2022, 2023, 2024):
            cur.execute(
                "CREATE TABLE dwh_facts.f_%d PARTITION OF dwh_facts.f FOR VALUES FROM (%d) TO (%d)"
                % (year, year * 10000 + 101, (year + 1) * 10000 + 101)
            )
        cur.execute("INSERT INTO dwh_facts.f SELECT g, 20220101 + (g % 3) * 10000 FROM generate_series(1, 300) g")
        cur.execute("CREATE TABLE dwh_facts.plain AS SELECT * FROM dwh_facts.f")
        cur.execute('CREATE TABLE dwh_facts."Odd ""Name""" (k int)')


def test_pruning_to_one_partition_with_time(pg_server, db, conn):
    setup_tables(conn)
    result = run_module("explain_info", dict(pg_server.params(db), ranges=[RANGE], analyze=True))
    assert not result.get("failed"), result
    plan = result["plans"][0]
    assert plan["scanned"] == ["f_2023"] and plan["scanned_count"] == 1 and plan["execution_ms"] is not None
    assert "BETWEEN 20230101 AND 20231231" in plan["query"]
    assert result["server"]["data_directory"] and result["server"]["in_recovery"] is False
    assert result["changed"] is False and pg_server.password not in str(result)


def test_wider_range_plain_table_and_quoted_names(pg_server, db, conn):
    setup_tables(conn)
    ranges = [
        dict(RANGE, low=20220101, high=20241231),
        dict(RANGE, name="dwh_facts.plain"),
        {"name": 'dwh_facts."Odd ""Name"""', "key": "k", "low": 1, "high": 2},
    ]
    result = run_module("explain_info", dict(pg_server.params(db), ranges=ranges), check_mode=True)
    assert [p["scanned_count"] for p in result["plans"]] == [3, 1, 1]
    assert result["plans"][1]["scanned"] == ["plain"] and result["plans"][1]["execution_ms"] is None
    assert result["plans"][2]["scanned"] == ['Odd "Name"']


def test_bad_input_names_the_table_and_column(pg_server, db, conn):
    setup_tables(conn)
    result = run_module(
        "explain_info",
        dict(pg_server.params(db), ranges=[dict(RANGE, name="dwh_facts.absent"), dict(RANGE, key="nope")]),
    )
    assert result["failed"]
    assert "table dwh_facts.absent does not exist" in result["msg"] and "has no column nope" in result["msg"]


def test_server_facts_only(pg_server, db):
    result = run_module("explain_info", pg_server.params(db))
    assert result["plans"] == [] and result["server"]["version_num"] >= 140000
