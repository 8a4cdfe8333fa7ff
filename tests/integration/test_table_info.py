"""table_info against a real server: plain, partitioned, sub-partitioned, quoted names, absent tables."""

import datetime

from tests.support.modules import run_module


def _args(pg_server, db, **extra):
    args = pg_server.params(db)
    args.update(extra)
    return args


def test_partitioned_table_reports_bounds_sizes_and_default_rows(pg_server, db, conn):
    year = datetime.date.today().year
    with conn.cursor() as cur:
        cur.execute("CREATE SCHEMA dwh_facts")
        cur.execute(
            "CREATE TABLE dwh_facts.fait (id bigserial, date_key int NOT NULL, note text, PRIMARY KEY (id, date_key))"
            " PARTITION BY RANGE (date_key)"
        )
        for y in range(year - 1, year + 3):
            cur.execute(
                "CREATE TABLE dwh_facts.fait_%d PARTITION OF dwh_facts.fait FOR VALUES FROM (%d0101) TO (%d0101)"
                % (y, y, y + 1)
            )
        cur.execute("CREATE TABLE dwh_facts.fait_default PARTITION OF dwh_facts.fait DEFAULT")
        cur.execute(
            "INSERT INTO dwh_facts.fait (date_key, note) SELECT %d0101 + (i %% 200), repeat(md5(i::text), 200)"
            " FROM generate_series(1, 2000) i" % year
        )
        cur.execute("INSERT INTO dwh_facts.fait (date_key) VALUES (19990101), (19990102)")
        cur.execute("CREATE MATERIALIZED VIEW dwh_facts.mv AS SELECT count(*) FROM dwh_facts.fait")
        cur.execute("ANALYZE dwh_facts.fait")
    result = run_module("table_info", _args(pg_server, db, tables=["dwh_facts.fait"]))
    assert not result.get("failed"), result
    assert result["changed"] is False
    table = result["tables"][0]
    assert table["kind"] == "partitioned"
    assert table["partition_key"]["columns"] == ["date_key"]
    assert table["partition_count"] == 5
    bounds = {p["name"]: (p["low"], p["high"]) for p in table["partitions"]}
    assert bounds["fait_%d" % year] == (int("%d0101" % year), int("%d0101" % (year + 1)))
    assert table["default_partition"] == "fait_default"
    assert table["default_rows"] == 2
    assert table["current_partition"] == "fait_%d" % year
    assert table["periods_ahead"] == 2
    assert table["gaps"] == [] and table["overlaps"] == []
    assert table["sizes"]["total_bytes"] > 0, "sizes must be summed over the partition tree"
    assert table["sizes"]["total_bytes"] == sum(p["sizes"]["total_bytes"] for p in table["partitions"])
    assert table["rows_estimate"] == 2002
    measured = table["compression_measured"]["columns"]["note"]
    assert measured["pglz"] + measured["lz4"] == 2000
    assert [d["name"] for d in table["dependents"]] == ["mv"]
    assert any(v["name"] == "fait_default" for v in table["vacuum"])


def test_plain_table_and_schemas_option(pg_server, db, conn):
    with conn.cursor() as cur:
        cur.execute("CREATE SCHEMA dwh_dim; CREATE TABLE dwh_dim.dim_zone (zone_id int PRIMARY KEY, nom text)")
        cur.execute("CREATE TABLE dwh_dim.dim_lot (lot_id int PRIMARY KEY)")
        cur.execute("INSERT INTO dwh_dim.dim_zone SELECT i, 'z' || i FROM generate_series(1, 100) i")
    result = run_module("table_info", _args(pg_server, db, schemas=["dwh_dim"]))
    assert not result.get("failed"), result
    assert [t["name"] for t in result["tables"]] == ["dim_lot", "dim_zone"]
    zone = result["tables"][1]
    assert zone["kind"] == "plain" and "partitions" not in zone
    assert zone["sizes"]["heap_bytes"] > 0
    assert zone["vacuum"][0]["vacuum_trigger"] >= 50


def test_sub_partitioned_and_quoted_names(pg_server, db, conn):
    with conn.cursor() as cur:
        cur.execute('CREATE SCHEMA "Ventes.EU"')
        cur.execute(
            'CREATE TABLE "Ventes.EU"."Fait ""Q""" (d date NOT NULL, region text NOT NULL) PARTITION BY RANGE (d)'
        )
        cur.execute(
            'CREATE TABLE "Ventes.EU"."Fait 2024" PARTITION OF "Ventes.EU"."Fait ""Q""" '
            "FOR VALUES FROM ('2024-01-01') TO ('2025-01-01') PARTITION BY LIST (region)"
        )
        cur.execute('CREATE TABLE "Ventes.EU".f2024_nord PARTITION OF "Ventes.EU"."Fait 2024" FOR VALUES IN (\'nord\')')
        cur.execute('INSERT INTO "Ventes.EU"."Fait ""Q""" VALUES (\'2024-03-01\', \'nord\')')
    result = run_module("table_info", _args(pg_server, db, tables=['"Ventes.EU"."Fait ""Q"""'], compression="exact"))
    assert not result.get("failed"), result
    table = result["tables"][0]
    assert table["name"] == 'Fait "Q"' and table["schema"] == "Ventes.EU"
    assert [p["name"] for p in table["partitions"]] == ["Fait 2024"], "sub-partitions are nested in theirs"
    top = table["partitions"][0]
    assert (top["low"], top["high"]) == ("2024-01-01", "2025-01-01")
    assert [(p["name"], p["level"]) for p in top["partitions"]] == [("f2024_nord", 2)] and top["partition_count"] == 1
    assert table["partition_count"] == 1


def test_a_year_partitioned_by_month_reads_as_one_partition_holding_its_months(pg_server, db, conn):
    """The issue's tree: years, one of them partitioned by month. The year shows the bytes and rows of its months
    (it read 0 bytes, its months listed beside the years); the years add up to the table."""
    with conn.cursor() as cur:
        cur.execute("CREATE TABLE fait (id bigint, k date NOT NULL, note text) PARTITION BY RANGE (k)")
        cur.execute("CREATE INDEX ON fait (k)")
        cur.execute("CREATE TABLE fait_2023 PARTITION OF fait FOR VALUES FROM ('2023-01-01') TO ('2024-01-01')")
        cur.execute(
            "CREATE TABLE fait_2024 PARTITION OF fait FOR VALUES FROM ('2024-01-01') TO ('2025-01-01') "
            "PARTITION BY RANGE (k)"
        )
        for month in range(1, 13):
            high = "2025-01-01" if month == 12 else "2024-%02d-01" % (month + 1)
            cur.execute(
                "CREATE TABLE fait_2024_%02d PARTITION OF fait_2024 FOR VALUES FROM ('2024-%02d-01') TO ('%s')"
                % (month, month, high)
            )
        cur.execute(
            "INSERT INTO fait SELECT i, date '2023-01-01' + i % 731, md5(i::text) FROM generate_series(1, 7310) i"
        )
        cur.execute("ANALYZE fait")
    result = run_module("table_info", _args(pg_server, db, tables=["public.fait"], compression="none"))
    assert not result.get("failed"), result
    table = result["tables"][0]
    assert [p["name"] for p in table["partitions"]] == ["fait_2023", "fait_2024"] and table["partition_count"] == 2
    year = table["partitions"][1]
    assert year["partition_count"] == 12 and [p["name"] for p in year["partitions"]][:2] == [
        "fait_2024_01",
        "fait_2024_02",
    ]
    months = year["partitions"]
    assert year["rows"] == sum(p["rows"] for p in months) == 3660  # 2024 is a leap year: 366 days x 10 rows
    for key in ("heap_bytes", "index_bytes", "total_bytes"):
        assert year["sizes"][key] == sum(p["sizes"][key] for p in months) > 0, key
    assert table["sizes"]["total_bytes"] == sum(p["sizes"]["total_bytes"] for p in table["partitions"])
    assert table["rows_estimate"] == 7310 == sum(p["rows"] for p in table["partitions"])
    # the vacuum state stays per relation that holds rows: every month is there
    assert {v["name"] for v in table["vacuum"]} >= {p["name"] for p in months}


def test_absent_table_is_a_clear_error(pg_server, db):
    result = run_module("table_info", _args(pg_server, db, tables=["dwh_facts.nope", "public.absent"]))
    assert result["failed"]
    assert "dwh_facts.nope" in result["msg"] and "public.absent" in result["msg"]
    assert "do not exist" in result["msg"]


def test_bad_name_and_absent_schema(pg_server, db):
    result = run_module("table_info", _args(pg_server, db, tables=['dwh."unterminated']))
    assert result["failed"] and "unterminated quote" in result["msg"]
    result = run_module("table_info", _args(pg_server, db, schemas=["no_such_schema"]))
    assert result["failed"] and "no_such_schema" in result["msg"]


def test_connection_errors_are_one_clear_message(pg_server, db):
    result = run_module("table_info", _args(pg_server, db, tables=["x.y"], login_password="wrong"))
    assert result["failed"] and "login_password" in result["msg"] and "wrong" not in result["msg"]
    result = run_module("table_info", _args(pg_server, db, tables=["x.y"], login_port=1))
    assert result["failed"] and "login_port" in result["msg"]
    result = run_module("table_info", _args(pg_server, db, tables=["x.y"], login_db="missing_db"))
    assert result["failed"] and "login_db" in result["msg"]


def test_application_name_and_lock_timeout_are_set(pg_server, db):
    from ansible_collections.sigeti.dwh.plugins.module_utils.session import connection

    params = dict(
        pg_server.params(db),
        lock_timeout="750ms",
        statement_timeout="1min",
        ssl_mode="disable",
        connect_params={},
        session_role=None,
        login_unix_socket="",
    )

    conn = connection.connect(params)
    with conn.cursor() as cur:
        cur.execute(
            "SELECT current_setting('application_name'), current_setting('lock_timeout'),"
            " current_setting('statement_timeout')"
        )
        assert cur.fetchone() == ("sigeti.dwh", "750ms", "1min")
    facts = connection.server_facts(conn)
    assert facts["version_num"] >= 140000 and facts["in_recovery"] is False
    assert "pgstattuple" in facts["available_extensions"]
    conn.close()
