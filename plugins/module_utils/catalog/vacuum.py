# Copyright: (c) 2026, SIGETI data platform team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Reads behind vacuum decisions: freeze ages, extensions, bloat, maintenance counters."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Iterable, Sequence

try:
    from psycopg2 import sql
except ImportError:  # reported by the connection layer
    sql = None

if TYPE_CHECKING:  # names used in annotations only
    from ansible_collections.sigeti.dwh.plugins.module_utils.session.connection import Connection
from ansible_collections.sigeti.dwh.plugins.module_utils.catalog.reads import NO_JIT, dict_cursor, end_read

# ---------------------------------------------------------------------------------------------
# Vacuum facts (sigeti.dwh.vacuum): what read_tables does not read, for the relations it returned
# ---------------------------------------------------------------------------------------------

VACUUM_FACTS_QUERY = """
SELECT c.oid,
       CASE WHEN c.relkind = 'r' THEN age(c.relfrozenxid) END AS relfrozenxid_age,
       CASE WHEN c.reltoastrelid <> 0 THEN (SELECT age(t.relfrozenxid) FROM pg_class t WHERE t.oid = c.reltoastrelid)
       END AS toast_relfrozenxid_age,
       c.relallvisible,
       CASE WHEN c.reltablespace <> 0 THEN pg_tablespace_location(c.reltablespace) END AS tablespace_location,
       (SELECT spcname::text FROM pg_tablespace WHERE oid = c.reltablespace) AS tablespace,
       -- partitioned parents only (what decides their ANALYZE): pg_stats checks privileges row by row
       c.relkind = 'p' AND EXISTS (SELECT 1 FROM pg_stats s
                                   WHERE s.schemaname = n.nspname AND s.tablename = c.relname AND s.inherited)
         AS has_inherited_stats,
       EXISTS (SELECT 1 FROM pg_index i
               WHERE i.indrelid = c.oid AND i.indisvalid
                 AND (i.indisprimary OR (i.indisunique AND i.indpred IS NULL AND i.indexprs IS NULL
                      AND NOT EXISTS (SELECT 1 FROM unnest(i.indkey::int2[]) k(attnum)
                                      JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = k.attnum
                                      WHERE NOT a.attnotnull)))) AS has_repack_key
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.oid = ANY(%(oids)s::oid[])
"""

# pg_stats checks column privileges row by row and cannot be joined to a list of relations without reading all
# of it (100 ms on a 500-partition database, even for one table): one indexed lookup per relation instead, asked
# only for the leaves whose bloat is estimated (about 0.3 ms each).
BLOAT_ESTIMATE_INPUTS_QUERY = """
SELECT c.oid, st.data_width, COALESCE(st.stats_columns, 0) AS stats_columns, st.has_nulls,
       (SELECT count(*) FROM pg_attribute a WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped)
         AS columns
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
LEFT JOIN LATERAL (
    SELECT sum((1 - s.null_frac) * s.avg_width)::float8 AS data_width, count(*) AS stats_columns,
           bool_or(s.null_frac > 0) AS has_nulls
    FROM pg_stats s WHERE s.schemaname = n.nspname AND s.tablename = c.relname AND NOT s.inherited
) st ON true
WHERE c.oid = ANY(%(oids)s::oid[])
"""

EXTENSION_QUERY = """
SELECT e.extname::text AS name, e.extversion AS version, n.nspname::text AS schema
FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace
WHERE e.extname = ANY(%(names)s::text[])
"""


def vacuum_facts(conn: Connection, oids: Sequence[int]) -> dict[int, dict[str, Any]]:
    """Per relation oid: relfrozenxid ages, tablespace location, inheritance statistics (partitioned parents) and
    whether a primary key or unique NOT NULL index exists (pg_repack needs one). One round trip. Returns
    ``{oid: dict}``. Row widths, which only the bloat estimate needs, are read by ``bloat_estimate_inputs``.
    """
    if not oids:
        return {}
    with dict_cursor(conn) as cur:
        cur.execute(NO_JIT + VACUUM_FACTS_QUERY, {"oids": list(oids)})
        rows = {r["oid"]: dict(r) for r in cur.fetchall()}
    end_read(conn)
    return rows


def bloat_estimate_inputs(conn: Connection, oids: Sequence[int]) -> dict[int, dict[str, Any]]:
    """Per relation oid, from pg_stats (not inherited): ``data_width`` (average bytes of a row's data, None when
    never analyzed), ``stats_columns``, ``has_nulls``, and ``columns`` (pg_attribute). The inputs of the catalog
    bloat estimate; one round trip, none when ``oids`` is empty. Returns ``{oid: dict}``.
    """
    if not oids:
        return {}
    with dict_cursor(conn) as cur:
        cur.execute(NO_JIT + BLOAT_ESTIMATE_INPUTS_QUERY, {"oids": list(oids)})
        rows = {r["oid"]: {k: v for k, v in r.items() if k != "oid"} for r in cur.fetchall()}
    end_read(conn)
    return rows


def maintenance_counts(conn: Connection, oids: Iterable[int]) -> dict[int, int]:
    """Return, per relation oid, how many (auto)vacuums and (auto)analyzes the statistics show now, read afresh."""
    with conn.cursor() as cur:
        cur.execute("SELECT pg_stat_clear_snapshot()")
        cur.execute(
            "SELECT relid, vacuum_count + autovacuum_count + analyze_count + autoanalyze_count "
            "FROM pg_stat_all_tables WHERE relid = ANY(%s::oid[])",
            (list(oids),),
        )
        counts = dict(cur.fetchall())
    end_read(conn)
    return counts


def extensions_info(conn: Connection, names: Iterable[str]) -> dict[str, dict[str, Any]]:
    """Return ``{name: {"version", "schema"}}`` for the installed extensions among ``names``, and whether this
    role may call ``pgstattuple_approx`` (key ``pgstattuple_approx_allowed``)."""
    with dict_cursor(conn) as cur:
        cur.execute(EXTENSION_QUERY, {"names": list(names)})
        found = {r["name"]: {"version": r["version"], "schema": r["schema"]} for r in cur.fetchall()}
        if "pgstattuple" in found:
            cur.execute(
                "SELECT has_function_privilege(%s, 'EXECUTE') AS allowed",
                ("%s.pgstattuple_approx(regclass)" % sql.Identifier(found["pgstattuple"]["schema"]).as_string(conn),),
            )
            found["pgstattuple"]["approx_allowed"] = cur.fetchone()["allowed"]
    end_read(conn)
    return found


def approx_bloat(conn: Connection, extension_schema: str, oids: Sequence[int]) -> dict[int, dict[str, Any]]:
    """Measure dead + free space of heaps with ``pgstattuple_approx`` (skips all-visible pages), one query.

    Returns ``{oid: {"table_len", "dead_tuple_len", "approx_free_space", "scanned_percent", ...}}``.
    """
    if not oids:
        return {}
    query = sql.SQL(
        "SELECT o.oid, a.* FROM unnest(%(oids)s::oid[]) AS o(oid), LATERAL {}.pgstattuple_approx(o.oid::regclass) a"
    ).format(sql.Identifier(extension_schema))
    with dict_cursor(conn) as cur:
        cur.execute(query, {"oids": list(oids)})
        rows = {r["oid"]: dict(r) for r in cur.fetchall()}
    end_read(conn)
    return rows


FREEZE_SAMPLE_PAGES = 64


def newest_row_ages(conn: Connection, relations: Sequence[tuple[int, str, str, int | None]]) -> dict[int, int | None]:
    """Return ``{oid: min(age(xmin))}`` over a ``TABLESAMPLE SYSTEM`` sample of about FREEZE_SAMPLE_PAGES pages of
    each relation (``[(oid, schema, name, relpages)]``); None when the sample saw no row. One query.
    """
    if not relations:
        return {}
    parts = []
    for oid, schema, name, relpages in relations:
        percent = (
            100.0
            if not relpages or relpages <= FREEZE_SAMPLE_PAGES
            else max(0.01, round(100.0 * FREEZE_SAMPLE_PAGES / relpages, 4))
        )
        parts.append(
            sql.SQL("SELECT {}::oid, (SELECT min(age(xmin)) FROM {} TABLESAMPLE SYSTEM ({}))").format(
                sql.Literal(oid), sql.Identifier(schema, name), sql.Literal(percent)
            )
        )
    with conn.cursor() as cur:
        cur.execute(sql.SQL(" UNION ALL ").join(parts))
        rows = {r[0]: r[1] for r in cur.fetchall()}
    end_read(conn)
    return rows
