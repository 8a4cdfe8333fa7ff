"""The migration's key facts (rows outside the declared ranges, NULL keys, the key's bounds), against a real server:
when the key is NOT NULL and leads an index, the two ends of that index settle it without reading the table
whenever every key between them falls in the declared ranges; any other case counts every row, as before."""

import pytest

from ansible_collections.sigeti.dwh.plugins.module_utils.catalog import tables as catalog
from ansible_collections.sigeti.dwh.plugins.module_utils.migration import api as migration
from ansible_collections.sigeti.dwh.plugins.module_utils.session import connection
from tests.integration.test_migration import _one
from tests.support.migration_driver import yearly_layout


def _run(conn, statements):
    with conn.cursor() as cur:
        cur.execute(statements)


def _facts(conn, layout=None):
    table = catalog.read_table(conn, "k", "t")
    layout = layout or yearly_layout("t", 2020, 2022, default=True)
    server = connection.server_facts(conn)
    facts = migration.read_facts(conn, table, layout, {"mode": "offline", "key": "k", "check_disk": False}, server)
    return {name: facts[name] for name in ("out_of_range", "key_min", "key_max", "null_keys", "generated_drift")}


def _rows_read(conn):
    """Rows the table's scans returned so far: sequential, plus index entries read."""
    if _one(conn, "SELECT current_setting('server_version_num')::int")[0] >= 150000:
        _run(conn, "SELECT pg_stat_force_next_flush()")
    return _one(
        conn,
        "SELECT coalesce(t.seq_tup_read, 0) + coalesce((SELECT sum(i.idx_tup_read) FROM pg_stat_user_indexes i "
        "WHERE i.relid = t.relid), 0) FROM pg_stat_user_tables t WHERE t.relid = 'k.t'::regclass",
    )[0]


CASES = {
    # name: (column definition, index, rows as SQL, quick path expected)
    "covered": ("k int NOT NULL", True, "SELECT g, 20200101 + (g % 3) * 10000 FROM generate_series(1, 300) g", True),
    "above": ("k int NOT NULL", True, "SELECT g, 20200101 + (g % 5) * 10000 FROM generate_series(1, 300) g", False),
    "below": ("k int NOT NULL", True, "SELECT g, 20190101 + (g % 2) * 10000 FROM generate_series(1, 300) g", False),
    "nullable": (
        "k int",
        True,
        "SELECT g, CASE WHEN g = 7 THEN NULL ELSE 20210101 END FROM generate_series(1, 300) g",
        False,
    ),
    "no index": ("k int NOT NULL", False, "SELECT g, 20210101 FROM generate_series(1, 300) g", False),
    "empty": ("k int NOT NULL", True, "SELECT 1, 20210101 WHERE false", True),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_key_facts_from_the_index_ends_equal_a_full_count(conn, case):
    column, indexed, rows, quick = CASES[case]
    _run(conn, "CREATE SCHEMA k; CREATE TABLE k.t (id int, %s); INSERT INTO k.t %s; ANALYZE k.t" % (column, rows))
    if indexed:
        _run(conn, "CREATE INDEX t_k ON k.t (k, id)")
    _run(conn, "SET enable_seqscan = off") if indexed else None  # tiny table: the planner must not prefer a scan
    before = _rows_read(conn)
    found = _facts(conn)
    read_rows = _rows_read(conn) - before
    _run(conn, "RESET enable_seqscan")
    expected = _one(
        conn,
        "SELECT count(*) FILTER (WHERE k IS NULL OR NOT (k >= 20200101 AND k < 20230101)), "
        "min(k) FILTER (WHERE NOT (k >= 20200101 AND k < 20230101)), max(k) FILTER (WHERE NOT (k >= 20200101 AND "
        "k < 20230101)), min(k), max(k), count(*) FILTER (WHERE k IS NULL) FROM k.t",
    )
    assert found["out_of_range"] == {"rows": expected[0], "min": expected[1], "max": expected[2]}
    assert (found["key_min"], found["key_max"], found["null_keys"]) == tuple(expected[3:])
    if indexed:
        # the quick path reads the index's two ends, the full count every row
        assert (read_rows <= 2) is quick, "quick path expected %s, rows read %s" % (quick, read_rows)
