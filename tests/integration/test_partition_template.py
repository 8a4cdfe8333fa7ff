"""Storage settings a warehouse tuned on its partitions reach the partitions later runs create (issue 15, item 6).

A partitioned parent cannot hold fillfactor, autovacuum or most TOAST options, so a migration puts the plain table's
settings on the partitions it creates; a later run (the weekly premake) used to create the next ones bare.
"""

from tests.support.modules import run_module


def _exec(conn, *statements):
    with conn.cursor() as cur:
        for statement in statements:
            cur.execute(statement)


def _settings(conn, table):
    with conn.cursor() as cur:
        cur.execute(
            "SELECT coalesce(c.reloptions, '{}'), coalesce(t.reloptions, '{}'), "
            "(SELECT coalesce(attstattarget::int, -1) FROM pg_attribute WHERE attrelid = c.oid AND attname = 'k') "
            "FROM pg_class c LEFT JOIN pg_class t ON t.oid = c.reltoastrelid WHERE c.oid = %s::regclass",
            (table,),
        )
        heap, toast, target = cur.fetchone()
    return sorted(heap), sorted(toast), target


def _args(pg_server, db, **extra):
    args = pg_server.params(db)
    args.update(name="dwh.f", key="k", key_format="yyyymmdd", interval="year", start="2024-01-01", premake=1)
    args.update(extra)
    return args


def test_settings_of_a_migrated_table_reach_partitions_created_later(pg_server, db, conn):
    _exec(
        conn,
        "CREATE SCHEMA dwh",
        "CREATE TABLE dwh.f (id bigint PRIMARY KEY, k int NOT NULL, note text) "
        "WITH (fillfactor = 70, autovacuum_vacuum_scale_factor = 0.01, toast.autovacuum_enabled = false)",
        "ALTER TABLE dwh.f ALTER COLUMN k SET STATISTICS 500",
        "INSERT INTO dwh.f SELECT i, to_char(date '2024-01-01' + i % 700, 'YYYYMMDD')::int, md5(i::text) "
        "FROM generate_series(1, 2000) i",
    )
    first = run_module("partitioned_table", _args(pg_server, db, migrate="online", extend_primary_key=True))
    assert not first.get("failed"), first.get("msg")
    tuned = _settings(conn, "dwh.f_2025")
    assert tuned == (
        ["autovacuum_vacuum_scale_factor=0.01", "fillfactor=70"],
        ["autovacuum_enabled=false"],
        500,
    ), "the migration carries them to the partitions it creates"

    later = run_module("partitioned_table", _args(pg_server, db, premake=3))
    assert not later.get("failed"), later.get("msg")
    assert later["created"], later
    for name in later["created"]:
        if not name.endswith("_default"):
            assert _settings(conn, "dwh." + name) == tuned, name
    again = run_module("partitioned_table", _args(pg_server, db, premake=3))
    assert again["changed"] is False


def test_declared_partition_options_win_over_the_newest_partition(pg_server, db, conn):
    _exec(
        conn,
        "CREATE SCHEMA dwh",
        "CREATE TABLE dwh.f (id bigint, k int NOT NULL, note text, PRIMARY KEY (id, k)) PARTITION BY RANGE (k)",
        "CREATE TABLE dwh.f_2024 PARTITION OF dwh.f FOR VALUES FROM (20240101) TO (20250101) WITH (fillfactor = 80)",
    )
    result = run_module("partitioned_table", _args(pg_server, db, premake=0, partition_options={"fillfactor": 60}))
    assert not result.get("failed"), result.get("msg")
    created = [n for n in result["created"] if not n.endswith("_default")]
    assert created
    for name in created:
        assert _settings(conn, "dwh." + name)[0] == ["fillfactor=60"]
