"""Every module session runs with jit off: the catalog reads' estimates (pg_partition_tree() counts as 1000 rows a
call) crossed jit_above_cost with a few dozen tables, and the server compiled reads of milliseconds for seconds."""

from ansible_collections.sigeti.dwh.plugins.module_utils.catalog import tables as catalog
from ansible_collections.sigeti.dwh.plugins.module_utils.session import connection


def test_module_sessions_read_the_catalog_without_jit(pg_server, db, conn):
    with conn.cursor() as cur:
        cur.execute("ALTER DATABASE %s SET jit = on" % db)
        cur.execute("ALTER DATABASE %s SET jit_above_cost = 0" % db)
        cur.execute("CREATE TABLE f (d date NOT NULL) PARTITION BY RANGE (d)")
        cur.execute("CREATE TABLE f_2024 PARTITION OF f FOR VALUES FROM ('2024-01-01') TO ('2025-01-01')")

    params = dict(
        pg_server.params(db),
        lock_timeout="5s",
        statement_timeout="0",
        ssl_mode="disable",
        connect_params={},
        session_role=None,
        login_unix_socket="",
    )

    session = connection.connect(params)
    try:
        tables = catalog.read_tables(session, [("public", "f"), ("public", "absent")])
        assert [t["exists"] for t in tables] == [True, False]
        assert [p["name"] for p in tables[0]["partitions"]] == ["f_2024"]
        with session.cursor() as cur:
            cur.execute("SELECT current_setting('jit'), current_setting('jit_above_cost')")
            assert cur.fetchone() == ("off", "0"), "the database says jit on from the first cost; the session says off"
    finally:
        session.close()
