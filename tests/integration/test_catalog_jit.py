"""catalog.read_tables turns JIT off for its own transaction only: a dozen partitioned tables pushed its query over
jit_above_cost (pg_partition_tree() is estimated at 1000 rows a call) and compiling it took seconds."""

from ansible_collections.sigeti.dwh.plugins.module_utils import catalog


def test_read_tables_reads_without_jit_and_leaves_the_session_setting_alone(pg_server, db, conn):
    with conn.cursor() as cur:
        cur.execute("CREATE TABLE f (d date NOT NULL) PARTITION BY RANGE (d)")
        cur.execute("CREATE TABLE f_2024 PARTITION OF f FOR VALUES FROM ('2024-01-01') TO ('2025-01-01')")
    reader = pg_server.connect(db, autocommit=False)
    try:
        with reader.cursor() as cur:
            cur.execute("SET jit = on")
            cur.execute("SET jit_above_cost = 0")
        reader.commit()
        seen = []
        real_execute = catalog.dict_cursor

        def spying(connection):
            cursor = real_execute(connection)
            original = cursor.execute

            def execute(query, params=None):
                original(query, params)
                if "WITH wanted AS" in query:
                    with connection.cursor() as probe:
                        probe.execute("SELECT current_setting('jit')")
                        seen.append(probe.fetchone()[0])

            cursor.execute = execute
            return cursor

        catalog.dict_cursor = spying
        try:
            tables = catalog.read_tables(reader, [("public", "f"), ("public", "absent")])
        finally:
            catalog.dict_cursor = real_execute
        assert [t["exists"] for t in tables] == [True, False]
        assert [p["name"] for p in tables[0]["partitions"]] == ["f_2024"]
        assert seen == ["off"], "the relations query runs with jit off"
        with reader.cursor() as cur:
            cur.execute("SELECT current_setting('jit')")
            assert cur.fetchone()[0] == "on", "the session's own setting is back after the read"
    finally:
        reader.close()
