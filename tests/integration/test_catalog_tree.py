"""The catalog's one query family for a table's tree (read_tables, read_partition_set), the vacuum facts, and the
reads planned without JIT: against a real server."""

import datetime
import re

import psycopg2
import pytest

from ansible_collections.sigeti.dwh.plugins.module_utils.catalog import reads as catalog_reads
from ansible_collections.sigeti.dwh.plugins.module_utils.catalog import tables as catalog
from ansible_collections.sigeti.dwh.plugins.module_utils.vacuum import run as vacuum_run
from tests.support.modules import run_module

# The keys both readers give every relation of a tree (TREE_QUERY and _tree_entry).
COMMON = ("oid", "parent_oid", "level", "schema", "name", "relkind", "bound_expr", "bound", "reloptions")
COMMON += ("toast_reloptions", "toast_oid", "low", "high")


def _run(conn, *statements):
    with conn.cursor() as cur:
        for statement in statements:
            cur.execute(statement)


def _make_tree(conn):
    """A range-by-year fact table whose 2024 partition is listed by region, plus a plain table with an
    inheritance child (legacy inheritance, not partitions)."""
    _run(
        conn,
        'CREATE SCHEMA "Dwh"',
        'CREATE TABLE "Dwh"."Fact" (id bigint, d date NOT NULL, region text NOT NULL, note text, '
        "PRIMARY KEY (id, d, region)) PARTITION BY RANGE (d)",
        'CREATE TABLE "Dwh"."Fact_2024" PARTITION OF "Dwh"."Fact" FOR VALUES FROM (\'2024-01-01\') TO (\'2025-01-01\') '
        "PARTITION BY LIST (region)",
        'CREATE TABLE "Dwh"."Fact_2024_n" PARTITION OF "Dwh"."Fact_2024" FOR VALUES IN (\'north\')',
        'CREATE TABLE "Dwh"."Fact_2024_d" PARTITION OF "Dwh"."Fact_2024" DEFAULT',
        'CREATE TABLE "Dwh"."Fact_2025" PARTITION OF "Dwh"."Fact" FOR VALUES FROM (\'2025-01-01\') TO (\'2026-01-01\') '
        "WITH (autovacuum_vacuum_scale_factor = 0.01, toast.autovacuum_enabled = off)",
        'CREATE TABLE "Dwh"."Fact_default" PARTITION OF "Dwh"."Fact" DEFAULT',
        'INSERT INTO "Dwh"."Fact" SELECT g, date \'2024-01-01\' + g % 700, '
        "CASE WHEN g % 3 = 0 THEN 'north' ELSE 'south' END, CASE WHEN g % 2 = 0 THEN md5(g::text) END "
        "FROM generate_series(1, 3000) g",
        "CREATE TABLE public.base (id int, k int NOT NULL)",
        "CREATE TABLE public.kid (PRIMARY KEY (id, k)) INHERITS (public.base)",
    )


def test_both_readers_walk_the_same_tree(conn):
    _make_tree(conn)
    names = [("Dwh", "Fact"), ("Dwh", "Fact_2024"), ("public", "base"), ("public", "missing")]
    full = catalog.read_tables(conn, names)
    for table, (schema, name) in zip(full, names):
        light = catalog.read_partition_set(conn, schema, name)
        assert light["exists"] is table["exists"], name
        if not table["exists"]:
            assert light == table == {"schema": schema, "name": name, "exists": False}
            continue
        assert list(light["relations"]) == list(table["relations"]), name  # same relations, same order
        for oid, entry in table["relations"].items():
            assert {k: light["relations"][oid].get(k) for k in COMMON} == {k: entry.get(k) for k in COMMON}, oid
        if table["relkind"] == "p":
            assert light["partition_key"]["columns"] == table["partition_key"]["columns"], name
    fact, sub, base = full[0], full[1], full[2]
    assert [(p["name"], p["level"]) for p in fact["partitions"]] == [
        ("Fact_2024", 1),
        ("Fact_2025", 1),
        ("Fact_default", 1),
        ("Fact_2024_d", 2),
        ("Fact_2024_n", 2),
    ]
    assert fact["parent_oid"] is None
    assert sub["parent_oid"] == fact["oid"], "a partition asked for directly keeps its parent"
    assert sub["level"] == 0 and [p["name"] for p in sub["partitions"]] == ["Fact_2024_d", "Fact_2024_n"]
    assert base["relkind"] == "r" and base["partitions"] == [], "inheritance children are not partitions"
    by_name = {e["name"]: e for e in fact["relations"].values()}
    assert by_name["Fact_2025"]["low"] == datetime.date(2025, 1, 1)
    assert by_name["Fact_2025"]["reloptions"] == {"autovacuum_vacuum_scale_factor": "0.01"}
    assert by_name["Fact_2025"]["toast_reloptions"] == {"autovacuum_enabled": "off"}
    assert by_name["Fact_2024_n"]["bound"] == {"kind": "list", "values": ["north"]}
    # what only read_tables gives: the key's text from the server, sizes, statistics
    assert fact["partition_key"]["definition"] == "RANGE (d)"
    assert sum(e["heap_bytes"] for e in fact["relations"].values()) > 0


def test_partition_set_read_takes_no_lock_on_partitions(pg_server, db, conn):
    _make_tree(conn)
    other = pg_server.connect(db, autocommit=False)
    try:
        with other.cursor() as cur:
            cur.execute('LOCK TABLE "Dwh"."Fact_2025" IN ACCESS EXCLUSIVE MODE')
        _run(conn, "SET lock_timeout = '200ms'")
        table = catalog.read_partition_set(conn, "Dwh", "Fact")
        assert "Fact_2025" in [p["name"] for p in table["partitions"]]
        with pytest.raises(psycopg2.errors.LockNotAvailable):
            catalog.read_tables(conn, [("Dwh", "Fact")])  # the sizes open every relation
    finally:
        other.rollback()
        other.close()


@pytest.mark.parametrize("autocommit", [True, False])
def test_catalog_reads_are_planned_without_jit_and_only_them(conn, autocommit):
    """JIT compiled the vacuum pass's read of 500 relations for 1.4 s (PostgreSQL 15 with LLVM): the tree and
    vacuum reads are planned with jit off, and the setting ends with the read. auto_explain's settings line shows
    it on any server, with or without LLVM."""
    _make_tree(conn)
    _run(conn, "ANALYZE")
    conn.autocommit = autocommit
    with conn.cursor() as cur:
        cur.execute("LOAD 'auto_explain'")
        cur.execute("SET auto_explain.log_min_duration = 0")
        cur.execute("SET auto_explain.log_level = 'notice'")
        cur.execute("SET auto_explain.log_settings = on")
    conn.commit()
    del conn.notices[:]
    tables = catalog.read_tables(conn, [("Dwh", "Fact")])
    catalog.read_partition_set(conn, "Dwh", "Fact")
    oids = list(tables[0]["relations"])
    catalog.vacuum_facts(conn, oids)
    catalog.bloat_estimate_inputs(conn, oids)
    plans = list(conn.notices)
    without_jit = [p for p in plans if re.search(r"Settings:.*jit = 'off'", p)]
    # in a transaction, read_tables' four statements share the SET LOCAL of its first; in autocommit only the first
    assert len(without_jit) == (4 if autocommit else 7), plans
    assert sum("WITH RECURSIVE wanted" in p for p in without_jit) == 2
    if autocommit:
        assert any("FROM pg_attribute a" in p and "jit = 'off'" not in p for p in plans), "columns planned as usual"
    assert catalog_reads.fetch_one(conn, "SELECT current_setting('jit')")[0] == "on", "SET LOCAL ended with the read"


def test_compression_is_measured_without_parallel_workers(conn):
    """At 3,650 partitions the measurement ran out of lock slots ("out of shared memory", max_locks_per_transaction
    64): each parallel worker locks every leaf again. Parallel plans are made cheap here, so a plain read of the
    tree gets workers; the measurement gets none, and its setting ends with it."""
    _make_tree(conn)
    _run(conn, "ANALYZE")
    with conn.cursor() as cur:
        cur.execute("LOAD 'auto_explain'")
        for setting in ("auto_explain.log_min_duration = 0", "auto_explain.log_level = 'notice'"):
            cur.execute("SET " + setting)
        for setting in ("parallel_setup_cost = 0", "parallel_tuple_cost = 0", "min_parallel_table_scan_size = 0"):
            cur.execute("SET " + setting)
        cur.execute("SET max_parallel_workers_per_gather = 2")
        cur.execute('SELECT count(*) FROM "Dwh"."Fact"')
    assert any("Gather" in p for p in conn.notices), "the test makes parallel plans cheap"
    del conn.notices[:]
    for exact in (True, False):
        measured = catalog.column_compression(conn, "Dwh", "Fact", ["note"], relpages=100000, exact=exact)
        assert measured["rows_read"] > 0 or not exact
    plans = [p for p in conn.notices if "pg_column_compression" in p]
    assert len(plans) == 2 and not any("Gather" in p for p in plans), plans
    assert catalog_reads.fetch_one(conn, "SELECT current_setting('max_parallel_workers_per_gather')")[0] == "2"


def test_names_taken_and_default_rows_per_missing_range_in_one_read(conn):
    """partition_set_pending: which names exist (any relation kind, any schema asked) and how many rows of the default
    partition fall in each range, ranges apart from each other; rows outside every range are not counted. (It was a
    count(*) FILTER per range, 8 s for 3,265 ranges, and a name lookup filtering every relation per name.)"""
    from psycopg2 import sql

    _run(
        conn,
        "CREATE TABLE public.f (k date NOT NULL, n int NOT NULL) PARTITION BY RANGE (k)",
        "CREATE TABLE public.f_default PARTITION OF public.f DEFAULT",
        "INSERT INTO public.f SELECT date '2023-12-01' + g, g FROM generate_series(0, 400) g",
        "CREATE INDEX f_taken_idx ON public.f_default (n)",
        "CREATE SCHEMA other",
        "CREATE TABLE other.f_202403 (x int)",
    )
    months = [(datetime.date(2024, m, 1), datetime.date(2024, m + 1, 1)) for m in (1, 3, 6)]
    ranges = [tuple(sql.SQL("{}::date").format(sql.Literal(v.isoformat())) for v in r) for r in months]
    names = [("public", "f_202401"), ("public", "f_taken_idx"), ("other", "f_202403"), ("public", "f_default")]
    taken, counts = catalog.partition_set_pending(conn, names, default=("public", "f_default"), key="k", ranges=ranges)
    assert taken == {("public", "f_taken_idx"), ("other", "f_202403"), ("public", "f_default")}
    assert counts == [31, 31, 30]
    assert catalog.partition_set_pending(conn, names, ranges=ranges)[1] == [0, 0, 0], "no default: nothing counted"
    _run(conn, "TRUNCATE public.f_default")
    assert (
        catalog.partition_set_pending(conn, [], default=("public", "f_default"), key="k", ranges=ranges)[1] == [0] * 3
    )


def test_bloat_estimate_inputs_read_pg_stats_exactly(conn):
    _make_tree(conn)
    _run(conn, "CREATE TABLE public.fresh (a int, b text)")
    names = [("Dwh", "Fact"), ("public", "fresh")]
    before = catalog.read_tables(conn, names)
    parent = before[0]["oid"]
    assert catalog.vacuum_facts(conn, [parent])[parent]["has_inherited_stats"] is False
    _run(conn, 'ANALYZE "Dwh"."Fact"', "ANALYZE public.fresh")
    tables = catalog.read_tables(conn, names)
    leaf = next(e for e in tables[0]["relations"].values() if e["name"] == "Fact_2025")
    fresh = tables[1]["oid"]
    facts = catalog.vacuum_facts(conn, [parent, leaf["oid"], fresh])
    assert facts[parent]["has_inherited_stats"] is True
    assert facts[leaf["oid"]]["has_inherited_stats"] is False
    inputs = catalog.bloat_estimate_inputs(conn, [leaf["oid"], fresh])
    with conn.cursor() as cur:
        cur.execute(
            "SELECT sum((1 - null_frac) * avg_width)::float8, count(*), bool_or(null_frac > 0) FROM pg_stats "
            "WHERE schemaname = 'Dwh' AND tablename = 'Fact_2025' AND NOT inherited"
        )
        width, count, nulls = cur.fetchone()
    assert inputs[leaf["oid"]] == {"data_width": width, "stats_columns": count, "has_nulls": nulls, "columns": 4}
    assert count == 4 and nulls is True
    # an empty table analyzed has no pg_stats rows: no width, so no estimate
    assert inputs[fresh] == {"data_width": None, "stats_columns": 0, "has_nulls": None, "columns": 2}
    assert catalog.bloat_estimate_inputs(conn, []) == {}


def test_weekly_pass_reads_no_row_widths(pg_server, db, conn, monkeypatch):
    """full: never (the weekly playbook's) estimates no bloat, so pg_stats' widths are not read at all."""
    _make_tree(conn)
    asked = []
    real = catalog.bloat_estimate_inputs

    def recording(connection, oids):
        asked.append(list(oids))
        return real(connection, oids)

    monkeypatch.setattr(catalog, "bloat_estimate_inputs", recording)
    assert vacuum_run.catalog is catalog
    args = dict(pg_server.params(db), tables=['"Dwh"."Fact"'])
    result = run_module("vacuum", dict(args, full="never"), check_mode=True)
    assert not result.get("failed"), result
    assert asked == [[]]
    result = run_module("vacuum", dict(args, full="auto", min_size="0"), check_mode=True)
    assert not result.get("failed"), result
    assert len(asked[-1]) == 4 and result["bloat_method"] == "estimate"  # the four leaves, no pgstattuple here
