# Copyright: (c) 2026, SIGETI data platform team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Every introspection query of the collection (reads only), the tables' facts here and each concern's reads beside.

``read_tables`` reads everything about a set of tables and all their partitions in a fixed number of
round trips (four), however many partitions there are. Results are plain dicts and lists, with
partition bounds parsed into typed values (int, datetime.date, datetime.datetime, str).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Iterable, Sequence

from ansible_collections.sigeti.dwh.plugins.module_utils.catalog.migration import (  # noqa: F401  # pylint: disable=unused-import
    migration_facts,
    migration_hazards,
)
from ansible_collections.sigeti.dwh.plugins.module_utils.catalog.partitions import (  # noqa: F401  # pylint: disable=unused-import
    dependent_objects,
    filled_by_statistics,
    index_tails,
    keys_beyond,
    midnight_dates,
    newest_key,
    partition_set_details,
    partition_set_pending,
    partition_set_state,
    relations_named,
    resolve_types,
    time_zone_days,
)
from ansible_collections.sigeti.dwh.plugins.module_utils.catalog.reads import (
    NO_JIT,
    dict_cursor,
    end_read,
    fetch_one,
)
from ansible_collections.sigeti.dwh.plugins.module_utils.catalog.tablespaces import DATABASE_DEFAULT
from ansible_collections.sigeti.dwh.plugins.module_utils.catalog.vacuum import (  # noqa: F401  # pylint: disable=unused-import
    approx_bloat,
    bloat_estimate_inputs,
    extensions_info,
    maintenance_counts,
    newest_row_ages,
    vacuum_facts,
)

# The reads of each concern live in their own file; these names stay reachable as catalog.<name>.
from ansible_collections.sigeti.dwh.plugins.module_utils.core.bounds import (  # noqa: F401  # pylint: disable=unused-import
    MAXVALUE,
    MINVALUE,
    coverage,
    json_value,
    parse_options,
    parse_partition_bound,
    typed_value,
)
from ansible_collections.sigeti.dwh.plugins.module_utils.core.errors import InvalidInput
from ansible_collections.sigeti.dwh.plugins.module_utils.core.identifiers import display_name, split_name

try:
    from psycopg2 import sql
except ImportError:  # reported by the connection layer
    sql = None

if TYPE_CHECKING:  # names used in annotations only
    from psycopg2.sql import Composable

    from ansible_collections.sigeti.dwh.plugins.module_utils.session.connection import Connection

RELKIND_NAMES = {"r": "plain", "p": "partitioned"}
STRATEGY_NAMES = {"r": "range", "l": "list", "h": "hash"}
STORAGE_NAMES = {"p": "plain", "m": "main", "e": "external", "x": "extended"}
COMPRESSION_NAMES = {"": "default", "p": "pglz", "l": "lz4"}

# ---------------------------------------------------------------------------------------------
# Queries
# ---------------------------------------------------------------------------------------------

# One query family for a table's whole tree, root first then level by level: ``read_tables`` (every fact, sizes
# and statistics) and ``read_partition_set`` (what partition maintenance needs, nothing that opens a table) add
# their own columns ({columns}) and joins ({joins}) to it.
# pg_inherits rather than pg_partition_tree(): that function takes ACCESS SHARE on every partition, and the
# planner counts 1,000 rows per call, which made a read over 500 partitions look costly enough to be compiled
# by JIT (see catalog_reads.NO_JIT). Like pg_partition_tree(), it descends only through partitioned tables (a
# plain table's inheritance children are not its partitions) and gives a partition asked for directly its parent.
TREE_QUERY = """
WITH RECURSIVE wanted AS (
    SELECT w.ord, w.schema_name, w.rel_name, c.oid, c.relkind, c.relispartition
    FROM unnest(%(schemas)s::text[], %(names)s::text[]) WITH ORDINALITY AS w(schema_name, rel_name, ord)
    LEFT JOIN pg_namespace n ON n.nspname = w.schema_name
    LEFT JOIN pg_class c ON c.relnamespace = n.oid AND c.relname = w.rel_name AND c.relkind IN ('r', 'p')
), tree(ord, oid, parent_oid, level, relkind) AS (
    SELECT w.ord, w.oid,
           CASE WHEN w.relispartition THEN (SELECT i.inhparent FROM pg_inherits i WHERE i.inhrelid = w.oid) END, 0,
           w.relkind
    FROM wanted w WHERE w.oid IS NOT NULL
    UNION ALL
    -- OFFSET 0 keeps the lookup of each parent's children an index scan: joined, the planner's estimate of a few
    -- rows made it rescan the level for every row of pg_inherits (80 ms a level with 1,000 partitions)
    SELECT t.ord, k.inhrelid, t.oid, t.level + 1, k.relkind
    FROM tree t CROSS JOIN LATERAL (
        SELECT i.inhrelid, c.relkind FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
        WHERE i.inhparent = t.oid OFFSET 0
    ) k
    WHERE t.relkind = 'p'
)
SELECT w.ord, t.oid, t.parent_oid, t.level, n.nspname::text AS schema, c.relname::text AS name,
       c.relkind::text AS relkind,
       -- bounds hold no column reference: pg_get_expr(..., 0) deparses them without opening each partition
       pg_get_expr(c.relpartbound, 0) AS bound_expr,
       c.reloptions, tc.reloptions AS toast_reloptions, NULLIF(c.reltoastrelid, 0)::bigint AS toast_oid,
       {columns}
FROM wanted w
LEFT JOIN tree t ON t.ord = w.ord
LEFT JOIN pg_class c ON c.oid = t.oid
LEFT JOIN pg_namespace n ON n.oid = c.relnamespace
LEFT JOIN pg_class tc ON tc.oid = c.reltoastrelid
{joins}
ORDER BY w.ord, t.level, n.nspname, c.relname
"""

# The partition key of a partitioned relation as one JSON object; {definition} is the key's text.
PARTITION_KEY_JSON = """(
    SELECT json_build_object(
        'definition', {definition},
        'strategy', pt.partstrat::text,
        'has_expressions', pt.partexprs IS NOT NULL,
        'columns', ARRAY(SELECT a.attname::text FROM unnest(pt.partattrs::int2[]) WITH ORDINALITY k(attnum, o)
                         JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = k.attnum ORDER BY k.o),
        'types', ARRAY(SELECT format_type(a.atttypid, a.atttypmod) FROM unnest(pt.partattrs::int2[]) WITH ORDINALITY k(attnum, o)
                       JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = k.attnum ORDER BY k.o))
    FROM pg_partitioned_table pt WHERE pt.partrelid = c.oid)"""

# Not pg_get_partkeydef(), which takes ACCESS SHARE on the table (check mode must not wait on it): the key's
# columns, an expression written as such.
PARTITION_KEY_TEXT = """CASE pt.partstrat WHEN 'r' THEN 'RANGE' WHEN 'l' THEN 'LIST' ELSE 'HASH' END || ' ('
            || (SELECT string_agg(CASE WHEN k.attnum = 0 THEN '(expression)' ELSE quote_ident(a.attname) END,
                                  ', ' ORDER BY k.o)
                FROM unnest(pt.partattrs::int2[]) WITH ORDINALITY k(attnum, o)
                LEFT JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = k.attnum) || ')'"""


def tree_query(columns: str, joins: str = "") -> str:
    """``TREE_QUERY`` with a reader's own columns (SQL text of this file, never user input) and joins."""
    return TREE_QUERY.replace("{columns}", columns).replace("{joins}", joins)


# The columns of pg_stat_all_tables a report reads, from the functions that view calls: the view groups over
# pg_index for every relation it is asked about (0.26 s for 3,650 partitions and their TOAST tables, a tenth of it
# this way). A relation without statistics reads 0, as through the view; an absent TOAST table reads NULL.
STATS_COLUMNS = """pg_stat_get_live_tuples(c.oid) AS n_live_tup, pg_stat_get_dead_tuples(c.oid) AS n_dead_tup,
       pg_stat_get_mod_since_analyze(c.oid) AS n_mod_since_analyze,
       pg_stat_get_ins_since_vacuum(c.oid) AS n_ins_since_vacuum,
       pg_stat_get_last_vacuum_time(c.oid) AS last_vacuum, pg_stat_get_last_autovacuum_time(c.oid) AS last_autovacuum,
       pg_stat_get_last_analyze_time(c.oid) AS last_analyze,
       pg_stat_get_last_autoanalyze_time(c.oid) AS last_autoanalyze,
       pg_stat_get_vacuum_count(c.oid) AS vacuum_count, pg_stat_get_autovacuum_count(c.oid) AS autovacuum_count,
       pg_stat_get_analyze_count(c.oid) AS analyze_count, pg_stat_get_autoanalyze_count(c.oid) AS autoanalyze_count,
       CASE WHEN c.reltoastrelid <> 0 THEN pg_stat_get_live_tuples(c.reltoastrelid) END AS toast_n_live_tup,
       CASE WHEN c.reltoastrelid <> 0 THEN pg_stat_get_dead_tuples(c.reltoastrelid) END AS toast_n_dead_tup,
       CASE WHEN c.reltoastrelid <> 0 THEN pg_stat_get_last_vacuum_time(c.reltoastrelid) END AS toast_last_vacuum,
       CASE WHEN c.reltoastrelid <> 0 THEN pg_stat_get_last_autovacuum_time(c.reltoastrelid) END
         AS toast_last_autovacuum"""

# Sizes and statistics: the size functions take ACCESS SHARE on each relation (the figures promise bytes, which
# pg_class.relpages * block size is not), so this read waits behind an ACCESS EXCLUSIVE lock.
RELATIONS_QUERY = tree_query(
    """c.relkind <> 'p' AS isleaf, c.relispartition,
       CASE WHEN c.relkind = 'p' THEN """
    + PARTITION_KEY_JSON.replace("{definition}", "pg_get_partkeydef(c.oid)")
    + """ END AS partition_key,
       pg_get_userbyid(c.relowner)::text AS owner,
       -- 0 is the database's default tablespace: named, so that a placement always reads as a tablespace
       coalesce((SELECT s.spcname FROM pg_tablespace s WHERE s.oid = c.reltablespace), """
    + DATABASE_DEFAULT
    + """)::text
         AS tablespace,
       c.reltuples::float8 AS reltuples, c.relpages::bigint AS relpages,
       CASE WHEN c.relkind = 'r' THEN pg_relation_size(c.oid) ELSE 0 END AS heap_bytes,
       -- the main forks of the TOAST table and its index, as for the heap and the indexes (pg_total_relation_size
       -- stats eight files per TOAST table: half of this read's time with 3,650 partitions)
       CASE WHEN c.reltoastrelid <> 0 THEN pg_relation_size(c.reltoastrelid)
            + (SELECT coalesce(sum(pg_relation_size(x.indexrelid)), 0)::bigint FROM pg_index x WHERE x.indrelid = c.reltoastrelid)
            ELSE 0 END AS toast_bytes,
       """
    + STATS_COLUMNS
    + """,
       tc.reltuples::float8 AS toast_reltuples,
       obj_description(c.oid, 'pg_class') AS comment"""
)

# A partition asked for directly: the bound of it and of each ancestor in its parent, nearest first, with the
# parent's partition key. Together they are the key range its rows can have (PostgreSQL attaches a sub-partition
# with bounds outside it, and no row ever reaches that one).
ANCESTRY_JSON = """(
    WITH RECURSIVE up(child, parent, depth) AS (
        SELECT i.inhrelid, i.inhparent, 1 FROM pg_inherits i WHERE i.inhrelid = c.oid
        UNION ALL
        SELECT i.inhrelid, i.inhparent, up.depth + 1 FROM up JOIN pg_inherits i ON i.inhrelid = up.parent
    )
    SELECT json_agg(json_build_object(
        'schema', pn.nspname::text, 'name', p.relname::text, 'bound', pg_get_expr(ch.relpartbound, 0),
        'strategy', pt.partstrat::text, 'has_expressions', pt.partexprs IS NOT NULL,
        'columns', ARRAY(SELECT a.attname::text FROM unnest(pt.partattrs::int2[]) WITH ORDINALITY k(attnum, o)
                         JOIN pg_attribute a ON a.attrelid = p.oid AND a.attnum = k.attnum ORDER BY k.o),
        'types', ARRAY(SELECT format_type(a.atttypid, a.atttypmod)
                       FROM unnest(pt.partattrs::int2[]) WITH ORDINALITY k(attnum, o)
                       JOIN pg_attribute a ON a.attrelid = p.oid AND a.attnum = k.attnum ORDER BY k.o))
        ORDER BY up.depth)
    FROM up JOIN pg_class ch ON ch.oid = up.child JOIN pg_class p ON p.oid = up.parent
    JOIN pg_namespace pn ON pn.oid = p.relnamespace JOIN pg_partitioned_table pt ON pt.partrelid = p.oid)"""

# The catalog only: no lock on any table, 1,000 partitions cost a few milliseconds.
PARTITION_SET_QUERY = tree_query(
    """CASE WHEN t.level = 0 AND c.relispartition THEN """
    + ANCESTRY_JSON
    + """ END AS ancestry,
       ARRAY(SELECT inh.inhparent::bigint FROM pg_index i JOIN pg_inherits inh ON inh.inhrelid = i.indexrelid
             WHERE i.indrelid = c.oid) AS index_parents,
       CASE WHEN t.level = 0 AND c.relkind = 'p' THEN """
    + PARTITION_KEY_JSON.replace("{definition}", PARTITION_KEY_TEXT)
    + """ END AS partition_key,
       CASE WHEN t.level = 0 THEN (
           SELECT json_agg(json_build_object('name', a.attname::text, 'type', format_type(a.atttypid, a.atttypmod),
                                             'generated', a.attgenerated::text, 'not_null', a.attnotnull) ORDER BY a.attnum)
           FROM pg_attribute a WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped) END AS columns,
       CASE WHEN t.level = 0 THEN (
           SELECT json_agg(json_build_object('oid', i.indexrelid::bigint, 'name', ic.relname::text, 'schema', n.nspname::text,
                                             'relkind', ic.relkind::text, 'is_unique', i.indisunique,
                                             'constraint_name', con.conname::text))
           FROM pg_index i JOIN pg_class ic ON ic.oid = i.indexrelid
           LEFT JOIN pg_constraint con ON con.conindid = i.indexrelid AND con.conrelid = i.indrelid
           WHERE i.indrelid = c.oid) END AS all_indexes,
       -- per-column statistics targets a leaf carries (-1 / NULL = the default): new partitions copy the newest's
       CASE WHEN c.relkind = 'r' THEN (
           SELECT json_object_agg(a.attname, a.attstattarget) FROM pg_attribute a
           WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped AND coalesce(a.attstattarget::int, -1) >= 0)
       END AS stat_targets"""
)

COLUMNS_QUERY = """
SELECT a.attrelid AS oid, a.attnum, a.attname::text AS name,
       format_type(a.atttypid, a.atttypmod) AS type, ty.typname::text AS type_name,
       a.attnotnull AS not_null, a.atthasdef AS has_default,
       pg_get_expr(d.adbin, d.adrelid) AS default_expr,
       a.attidentity::text AS identity, a.attgenerated::text AS generated,
       a.attcompression::text AS compression, a.attstorage::text AS storage,
       ty.typstorage::text AS type_storage, ty.typlen AS type_length,
       NULLIF(a.attstattarget, -1) AS statistics_target
FROM pg_attribute a
JOIN pg_type ty ON ty.oid = a.atttypid
LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
WHERE a.attrelid = ANY(%(oids)s::oid[]) AND a.attnum > 0 AND NOT a.attisdropped
ORDER BY a.attrelid, a.attnum
"""

INDEXES_QUERY = (
    """
SELECT i.indrelid AS table_oid, i.indexrelid AS oid, ic.relname::text AS name, n.nspname::text AS schema,
       pg_get_indexdef(i.indexrelid) AS definition, i.indisunique AS is_unique, i.indisprimary AS is_primary,
       i.indisvalid AS is_valid, ic.relkind::text AS relkind,
       pg_stat_get_numscans(i.indexrelid) AS idx_scan, pg_relation_size(i.indexrelid) AS bytes,
       inh.inhparent AS parent_index_oid, con.conname::text AS constraint_name,
       coalesce((SELECT s.spcname FROM pg_tablespace s WHERE s.oid = ic.reltablespace), """
    + DATABASE_DEFAULT
    + """)::text
         AS tablespace
FROM pg_index i
JOIN pg_class ic ON ic.oid = i.indexrelid
JOIN pg_namespace n ON n.oid = ic.relnamespace
LEFT JOIN pg_inherits inh ON inh.inhrelid = i.indexrelid
LEFT JOIN pg_constraint con ON con.conindid = i.indexrelid AND con.conrelid = i.indrelid
WHERE i.indrelid = ANY(%(oids)s::oid[])
ORDER BY i.indrelid, ic.relname
"""
)

DEPENDENTS_QUERY = """
SELECT DISTINCT d.refobjid AS table_oid, v.oid, vn.nspname::text AS schema, v.relname::text AS name,
       CASE v.relkind WHEN 'm' THEN 'materialized view' ELSE 'view' END AS kind,
       pg_get_userbyid(v.relowner)::text AS owner
FROM pg_depend d
JOIN pg_rewrite r ON r.oid = d.objid
JOIN pg_class v ON v.oid = r.ev_class
JOIN pg_namespace vn ON vn.oid = v.relnamespace
WHERE d.classid = 'pg_rewrite'::regclass AND d.refclassid = 'pg_class'::regclass
  AND d.refobjid = ANY(%(oids)s::oid[]) AND v.oid <> d.refobjid
ORDER BY 3, 4
"""

TABLES_IN_SCHEMAS_QUERY = """
SELECT n.nspname::text, c.relname::text
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = ANY(%(schemas)s::text[]) AND c.relkind IN ('r', 'p') AND NOT c.relispartition
ORDER BY 1, 2
"""

SCHEMAS_EXIST_QUERY = "SELECT nspname::text FROM pg_namespace WHERE nspname = ANY(%(schemas)s::text[])"


def tables_in_schemas(conn: Connection, schemas: Sequence[str]) -> list[tuple[str, str]]:
    """Return ``[(schema, table)]`` of every plain or partitioned top-level table in ``schemas``.

    Raises InvalidInput naming any schema that does not exist.
    """
    with conn.cursor() as cur:
        cur.execute(SCHEMAS_EXIST_QUERY, {"schemas": list(schemas)})
        found = {r[0] for r in cur.fetchall()}
        missing = [s for s in schemas if s not in found]
        if missing:
            raise InvalidInput(
                "schema(s) %s do not exist in database %s: fix the schemas option"
                % (", ".join(missing), conn.info.dbname)
            )
        cur.execute(TABLES_IN_SCHEMAS_QUERY, {"schemas": list(schemas)})
        return [tuple(r) for r in cur.fetchall()]


def requested_tables(
    conn: Connection, tables: Sequence[str] | None, schemas: Sequence[str] | None
) -> list[tuple[str, str]]:
    """Return the ``tables`` and ``schemas`` options of a module resolved into ``(schema, table)`` pairs, without
    duplicates.

    Raises InvalidInput when both are empty, or naming a schema that does not exist.
    """
    if not tables and not schemas:
        raise InvalidInput("no table given: give tables (schema.table) or schemas")
    names = [split_name(t) for t in tables or []]
    if schemas:
        names.extend(tables_in_schemas(conn, schemas))
    unique = []
    for name in names:
        if name not in unique:
            unique.append(name)
    return unique


def _tree_entry(row: dict[str, Any]) -> dict[str, Any]:
    """The keys every reader of ``TREE_QUERY`` gives a relation of the tree."""
    key = row["partition_key"]
    if key:
        key = dict(key, strategy=STRATEGY_NAMES.get(key["strategy"], key["strategy"]))
    return {
        "oid": row["oid"],
        "parent_oid": row["parent_oid"],
        "level": row["level"],
        "schema": row["schema"],
        "name": row["name"],
        "relkind": row["relkind"],
        "bound_expr": row["bound_expr"],
        "bound": parse_partition_bound(row["bound_expr"]) if row["bound_expr"] else None,
        "reloptions": parse_options(row["reloptions"]),
        "toast_reloptions": parse_options(row["toast_reloptions"]),
        "toast_oid": row["toast_oid"],
        "partition_key": key,
    }


def _trees(names: Sequence[tuple[str, str]], rows: Iterable[dict[str, Any]], entry: Callable) -> list[dict[str, Any]]:
    """Group the rows of a ``TREE_QUERY`` read by requested table; return one dict per name, in order.

    A table holds its root's entry plus ``exists``, ``relations`` (every relation of the tree by oid, root
    included) and ``partitions`` (the tree below the root in level order); a missing one is
    ``{"schema", "name", "exists": False}``. ``entry(row)`` builds each relation's dict.
    """
    groups = {}
    for row in rows:
        groups.setdefault(row["ord"], []).append(row)
    tables = []
    for position, (schema, name) in enumerate(names, start=1):
        group = groups.get(position, [])
        if not group or group[0]["oid"] is None:
            tables.append({"schema": schema, "name": name, "exists": False})
            continue
        entries = [entry(r) for r in group]
        table = dict(entries[0])
        table["exists"] = True
        table["relations"] = {e["oid"]: e for e in entries}
        table["partitions"] = entries[1:]
        tables.append(table)
    return tables


def _relation_entry(row):
    stats_keys = (
        "n_live_tup",
        "n_dead_tup",
        "n_mod_since_analyze",
        "n_ins_since_vacuum",
        "last_vacuum",
        "last_autovacuum",
        "last_analyze",
        "last_autoanalyze",
        "vacuum_count",
        "autovacuum_count",
        "analyze_count",
        "autoanalyze_count",
    )
    entry = _tree_entry(row)
    entry.update(
        {
            "is_leaf": row["isleaf"],
            "is_partition": row["relispartition"],
            "owner": row["owner"],
            "tablespace": row["tablespace"],
            "comment": row["comment"],
            "reltuples": row["reltuples"],
            "relpages": row["relpages"],
            "heap_bytes": row["heap_bytes"],
            "toast_bytes": row["toast_bytes"],
            "index_bytes": 0,  # summed from the indexes query: cheaper than pg_indexes_size per relation
            "stats": {k: row[k] for k in stats_keys},
            "toast_stats": {
                "n_live_tup": row["toast_n_live_tup"],
                "n_dead_tup": row["toast_n_dead_tup"],
                "last_vacuum": row["toast_last_vacuum"],
                "last_autovacuum": row["toast_last_autovacuum"],
                "reltuples": row["toast_reltuples"],
            },
            "columns": [],
            "indexes": [],
        }
    )
    return entry


def _names_params(names: Sequence[tuple[str, str]]) -> dict[str, list[str]]:
    return {"schemas": [n[0] for n in names], "names": [n[1] for n in names]}


def read_tables(conn: Connection, names: Iterable[tuple[str, str]]) -> list[dict[str, Any]]:
    """Read every fact about ``names`` (list of ``(schema, table)``) and their whole partition trees.

    Four round trips in all. Returns a list (same order as ``names``) of table dicts; a table that
    does not exist has ``exists: False``. Each dict holds the root relation's entry plus
    ``relations`` (every relation of the tree by oid, root included), ``partitions`` (the tree below
    the root in level order), ``dependents`` and ``columns``/``indexes`` on each relation. The sizes take
    ACCESS SHARE on each relation for the length of the first read.
    """
    names = list(names)
    dependents = {}
    with dict_cursor(conn) as cur:
        cur.execute(NO_JIT + RELATIONS_QUERY, _names_params(names))
        tables = _trees(names, cur.fetchall(), _relation_entry)
        relations = {oid: e for t in tables if t["exists"] for oid, e in t["relations"].items()}
        oids = list(relations)
        if oids:
            cur.execute(COLUMNS_QUERY, {"oids": oids})
            for row in cur.fetchall():
                col = dict(row)
                col["compression"] = COMPRESSION_NAMES.get(col["compression"], col["compression"])
                col["storage"] = STORAGE_NAMES.get(col["storage"], col["storage"])
                col["type_storage"] = STORAGE_NAMES.get(col["type_storage"], col["type_storage"])
                col["toastable"] = col.pop("type_length") == -1 and col["type_storage"] != "plain"
                relations[col.pop("oid")]["columns"].append(col)
            cur.execute(INDEXES_QUERY, {"oids": oids})
            for row in cur.fetchall():
                index = dict(row)
                owner = relations[index.pop("table_oid")]
                owner["indexes"].append(index)
                owner["index_bytes"] += index["bytes"]
            cur.execute(DEPENDENTS_QUERY, {"oids": oids})
            for dep in cur.fetchall():
                dependents.setdefault(dep["table_oid"], []).append(dict(dep))
    end_read(conn)
    for table in tables:
        if not table["exists"]:
            continue
        table["root"] = relations[table["oid"]]
        seen, deps = set(), []
        for oid in table["relations"]:
            for dep in dependents.get(oid, []):
                if dep["oid"] not in seen:
                    seen.add(dep["oid"])
                    deps.append({k: v for k, v in dep.items() if k != "table_oid"})
        table["dependents"] = deps
        table["columns"] = table["root"]["columns"]
        table["indexes"] = table["root"]["indexes"]
        _type_bounds(table)
    return tables


def _partition_set_entry(row):
    entry = _tree_entry(row)
    entry.update(
        {
            "is_leaf": row["relkind"] == "r",
            "indexes": [{"parent_index_oid": p} for p in row["index_parents"] or []],
            "columns": row["columns"] or [],
            "all_indexes": row["all_indexes"] or [],
            "stat_targets": row["stat_targets"] or {},
            "ancestry": row["ancestry"] or [],
        }
    )
    return entry


def read_partition_set(conn: Connection, schema: str, name: str) -> dict[str, Any]:
    """Read what partition-set maintenance needs, in one round trip and without touching any table file.

    The same tree as ``read_tables`` (one query family) without sizes or statistics: no lock is taken on any
    partition, and 1,000 partitions cost a few milliseconds. Returns the same shape as ``read_table`` for the
    keys it has: ``exists, schema, name, oid, relkind, partition_key, columns, indexes, partitions`` (each with
    ``oid, parent_oid, level, schema, name, relkind, bound_expr, bound, low, high, reloptions,
    toast_reloptions, toast_oid, indexes`` = ``[{"parent_index_oid"}]``), and ``ancestry``: for a table that is
    itself a partition, its bound and each ancestor's in its parent, nearest first (``[{"schema", "name"`` of the
    parent, ``"bound"`` text, the parent's key ``"strategy", "has_expressions", "columns", "types"}]``).
    """
    with dict_cursor(conn) as cur:
        cur.execute(NO_JIT + PARTITION_SET_QUERY, _names_params([(schema, name)]))
        table = _trees([(schema, name)], cur.fetchall(), _partition_set_entry)[0]
    end_read(conn)
    if table["exists"]:
        table["indexes"] = table.pop("all_indexes")
        _type_bounds(table)
    return table


def _type_bounds(table):
    """Give every partition typed ``low``/``high`` (single-column range keys) from its parent's key type."""
    for entry in table["partitions"]:
        bound = entry["bound"]
        parent = table["relations"].get(entry["parent_oid"])
        if not bound or not parent or not parent.get("partition_key"):
            continue
        types = parent["partition_key"]["types"]
        if bound["kind"] == "range":
            bound["low"] = [typed_value(v, t) for v, t in zip(bound["low"], types)]
            bound["high"] = [typed_value(v, t) for v, t in zip(bound["high"], types)]
            if len(types) == 1:
                entry["low"], entry["high"] = bound["low"][0], bound["high"][0]


def read_table(conn: Connection, schema: str, name: str) -> dict[str, Any]:
    """Return one table's facts (see ``read_tables``); raise InvalidInput naming it when it does not exist."""
    table = read_tables(conn, [(schema, name)])[0]
    if not table["exists"]:
        raise InvalidInput(
            "table %s does not exist in database %s: check the name (schema.table; quote mixed-case parts)"
            % (display_name(schema, name), conn.info.dbname)
        )
    return table


def tree_totals(table: dict[str, Any]) -> dict[str, float]:
    """Return sizes and tuple counts summed over every leaf of a table (a partitioned parent itself reads 0)."""
    totals = {"heap_bytes": 0, "toast_bytes": 0, "index_bytes": 0, "reltuples": 0.0, "n_live_tup": 0, "n_dead_tup": 0}
    for entry in table["relations"].values():
        totals["heap_bytes"] += entry["heap_bytes"] or 0
        totals["toast_bytes"] += entry["toast_bytes"] or 0
        totals["index_bytes"] += entry["index_bytes"] or 0
        if entry["relkind"] == "r":
            totals["reltuples"] += max(entry["reltuples"] or 0, 0)
            totals["n_live_tup"] += entry["stats"]["n_live_tup"] or 0
            totals["n_dead_tup"] += entry["stats"]["n_dead_tup"] or 0
    totals["total_bytes"] = totals["heap_bytes"] + totals["toast_bytes"] + totals["index_bytes"]
    return totals


def count_rows(conn: Connection, schema: str, name: str) -> int:
    """Return the exact ``count(*)`` of one relation (used for default partitions, whose rows block new partitions)."""
    count = fetch_one(conn, sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(schema, name)))[0]
    return count


MIGRATIONS_QUERY = """
SELECT schema_name, table_name, mode, phase, rows_copied, next_page, total_pages,
       (to_jsonb(m) ->> 'rows_total')::bigint AS rows_total,  -- a state table of an older version has none
       started_at::text, updated_at::text,
       -- the copy of the current run (a resumed run notes where it started in result: the pause is not counted)
       extract(epoch FROM updated_at - coalesce((result ->> 'copy_since')::timestamptz, started_at))::float8
         AS progress_seconds,
       coalesce((result ->> 'copy_since_page')::bigint, 0) AS since_page,
       coalesce((result ->> 'copy_since_rows')::bigint, 0) AS since_rows,
       extract(epoch FROM clock_timestamp() - started_at)::bigint AS age_seconds,
       extract(epoch FROM clock_timestamp() - updated_at)::bigint AS idle_seconds
FROM sigeti_dwh.migration_state m
WHERE (schema_name, table_name) IN (SELECT * FROM unnest(%(schemas)s::text[], %(names)s::text[]))
ORDER BY 1, 2
"""


def migrations_in_flight(conn: Connection, names: Sequence[tuple[str, str]]) -> tuple[list[dict[str, Any]], str | None]:
    """The migrations of ``names`` ([(schema, table)]) started and not finished, from the migration state table.

    Returns ``(rows, unreadable)``: ``unreadable`` says why the state could not be read (no privilege on the state
    schema), so callers report it instead of failing; no state table means no migration.
    """
    with dict_cursor(conn) as cur:
        cur.execute(
            "SELECT has_schema_privilege(n.oid, 'USAGE') AND has_table_privilege(c.oid, 'SELECT') AS readable "
            "FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = 'sigeti_dwh' AND c.relname = 'migration_state'"
        )
        row = cur.fetchone()
        if row is None:
            rows, unreadable = [], None
        elif not row["readable"]:
            rows, unreadable = [], "role %s may not read sigeti_dwh.migration_state" % conn.info.user
        else:
            cur.execute(MIGRATIONS_QUERY, {"schemas": [n[0] for n in names], "names": [n[1] for n in names]})
            rows, unreadable = [dict(r) for r in cur.fetchall()], None
    end_read(conn)
    return rows, unreadable


SAMPLE_TARGET_PAGES = 2000
# A measurement over a partitioned table reads every leaf in one statement, locking each (ACCESS SHARE) until it
# ends. Parallel workers lock them all again, each: with 3,650 partitions the leader and two workers passed the
# server's lock table at max_locks_per_transaction 64 ("out of shared memory"). JIT would compile a scan per leaf.
MEASURE_SETTINGS = "SET LOCAL max_parallel_workers_per_gather = 0; SET LOCAL jit = off;\n"


def sample_percent(relpages: int | None, exact: bool = False) -> float | None:
    """Return the percentage of pages to sample so that about SAMPLE_TARGET_PAGES pages are read; None means read all."""
    if exact or relpages is None or relpages <= SAMPLE_TARGET_PAGES:
        return None
    return max(0.01, round(100.0 * SAMPLE_TARGET_PAGES / relpages, 4))


def compression_query(schema: str, name: str, columns: Sequence[str], percent: float | None) -> Composable:
    """The measurement of ``column_compression`` as one statement (without MEASURE_SETTINGS): per column, values
    stored pglz, lz4, uncompressed, NULL, and their widths, over a ``TABLESAMPLE SYSTEM (percent)`` or every row."""
    parts = []
    for col in columns:
        ident = sql.Identifier(col)
        parts.append(
            sql.SQL(
                "count({c}) FILTER (WHERE pg_column_compression({c}) = 'pglz'), "
                "count({c}) FILTER (WHERE pg_column_compression({c}) = 'lz4'), "
                "count({c}) FILTER (WHERE pg_column_compression({c}) IS NULL), "
                "count(*) FILTER (WHERE {c} IS NULL), "
                "COALESCE(avg(pg_column_size({c})), 0)::float8, COALESCE(max(pg_column_size({c})), 0)"
            ).format(c=ident)
        )
    query = sql.SQL("SELECT count(*), {} FROM {}").format(sql.SQL(", ").join(parts), sql.Identifier(schema, name))
    if percent is not None:
        query = query + sql.SQL(" TABLESAMPLE SYSTEM ({})").format(sql.Literal(percent))
    return query


def column_compression(
    conn: Connection, schema: str, name: str, columns: Sequence[str], relpages: int | None = None, exact: bool = False
) -> dict[str, Any]:
    """Measure, per column, how many values are stored pglz, lz4, uncompressed, or NULL, and their widths.

    Reads a ``TABLESAMPLE SYSTEM`` sample of about SAMPLE_TARGET_PAGES pages unless ``exact`` or the table
    is small. One query for all columns. Returns ``{"sampled": bool, "sample_percent": p, "columns": {...}}``.
    """
    if not columns:
        return {"sampled": False, "sample_percent": None, "columns": {}}
    percent = sample_percent(relpages, exact)
    row = fetch_one(conn, sql.SQL(MEASURE_SETTINGS) + compression_query(schema, name, columns, percent))
    result = {"sampled": percent is not None, "sample_percent": percent, "rows_read": row[0], "columns": {}}
    for i, col in enumerate(columns):
        pglz, lz4, plain, nulls, avg_width, max_width = row[1 + 6 * i : 7 + 6 * i]
        result["columns"][col] = {
            "pglz": pglz,
            "lz4": lz4,
            "uncompressed": plain,
            "null": nulls,
            "avg_bytes": round(avg_width, 1),
            "max_bytes": max_width,
        }
    return result


# ---------------------------------------------------------------------------------------------
# Compression module: row identity, row widths, triggers, column-level view dependencies,
# database-level settings
# ---------------------------------------------------------------------------------------------

ROW_IDENTITIES_QUERY = """
SELECT i.indrelid AS table_oid, ic.relname::text AS index_name, i.indisprimary AS is_primary,
       ARRAY(SELECT a.attname::text FROM unnest(i.indkey::int2[]) WITH ORDINALITY k(attnum, o)
             JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
             WHERE k.o <= i.indnkeyatts ORDER BY k.o) AS columns
FROM pg_index i
JOIN pg_class ic ON ic.oid = i.indexrelid
JOIN pg_am am ON am.oid = ic.relam AND am.amname = 'btree'
WHERE i.indrelid = ANY(%(oids)s::oid[]) AND i.indisunique AND i.indisvalid AND i.indisready
  AND i.indpred IS NULL AND i.indexprs IS NULL
  AND NOT EXISTS (SELECT 1 FROM unnest(i.indkey::int2[]) WITH ORDINALITY k(attnum, o)
                  LEFT JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
                  WHERE k.o <= i.indnkeyatts AND (k.attnum = 0 OR NOT a.attnotnull))
ORDER BY i.indrelid, i.indisprimary DESC, i.indnkeyatts, ic.relname
"""


def row_identities(conn: Connection, oids: Iterable[int]) -> dict[int, dict[str, Any]]:
    """Return ``{table_oid: {"index", "primary", "columns"}}``: the key that identifies each row, per table.

    The primary key when there is one, else the narrowest valid unique btree index, without predicate or
    expression, over NOT NULL columns (what keyset batching needs). Tables with neither are absent.
    """
    result = {}
    with conn.cursor() as cur:
        cur.execute(ROW_IDENTITIES_QUERY, {"oids": list(oids)})
        for table_oid, index_name, is_primary, columns in cur.fetchall():
            if table_oid not in result:
                result[table_oid] = {"index": index_name, "primary": is_primary, "columns": list(columns)}
    end_read(conn)
    return result


UPDATE_TRIGGERS_QUERY = """
SELECT tgrelid AS table_oid, tgname::text
FROM pg_trigger
WHERE tgrelid = ANY(%(oids)s::oid[]) AND NOT tgisinternal AND tgenabled <> 'D' AND (tgtype & 16) <> 0
ORDER BY 1, 2
"""


def update_triggers(conn: Connection, oids: Iterable[int]) -> dict[int, list[str]]:
    """Return ``{table_oid: [trigger names]}`` of the enabled user triggers that fire on UPDATE."""
    result = {}
    with conn.cursor() as cur:
        cur.execute(UPDATE_TRIGGERS_QUERY, {"oids": list(oids)})
        for table_oid, name in cur.fetchall():
            result.setdefault(table_oid, []).append(name)
    end_read(conn)
    return result


COLUMN_VIEWS_QUERY = """
SELECT DISTINCT d.refobjid AS table_oid, a.attname::text AS column_name, vn.nspname::text AS schema,
       v.relname::text AS name
FROM pg_depend d
JOIN pg_rewrite r ON r.oid = d.objid
JOIN pg_class v ON v.oid = r.ev_class
JOIN pg_namespace vn ON vn.oid = v.relnamespace
JOIN pg_attribute a ON a.attrelid = d.refobjid AND a.attnum = d.refobjsubid
WHERE d.classid = 'pg_rewrite'::regclass AND d.refclassid = 'pg_class'::regclass
  AND d.refobjid = ANY(%(oids)s::oid[]) AND d.refobjsubid > 0 AND v.oid <> d.refobjid
ORDER BY 1, 2, 3, 4
"""


def column_dependent_views(conn: Connection, oids: Iterable[int]) -> list[dict[str, Any]]:
    """Return ``[{"table_oid", "column", "schema", "name"}]``: views and rules that read a given column.

    ``ALTER COLUMN ... TYPE`` is refused on such a column, so the rewrite path checks this first.
    """
    with conn.cursor() as cur:
        cur.execute(COLUMN_VIEWS_QUERY, {"oids": list(oids)})
        rows = [{"table_oid": r[0], "column": r[1], "schema": r[2], "name": r[3]} for r in cur.fetchall()]
    end_read(conn)
    return rows


DATABASE_SETTING_QUERY = """
SELECT split_part(cfg, '=', 2)
FROM pg_db_role_setting s
JOIN pg_database d ON d.oid = s.setdatabase AND d.datname = current_database()
CROSS JOIN LATERAL unnest(s.setconfig) AS cfg
WHERE s.setrole = 0 AND split_part(cfg, '=', 1) = %(name)s
"""


def database_setting(conn: Connection, name: str) -> str | None:
    """Return the value set by ``ALTER DATABASE <current> SET name = ...``, or None when it is not set."""
    row = fetch_one(conn, DATABASE_SETTING_QUERY, {"name": name})
    return row[0] if row else None


def row_widths(
    conn: Connection, schema: str, name: str, relpages: int | None = None, exact: bool = False
) -> dict[str, Any]:
    """Return whole-row widths (``pg_column_size(t.*)``): rows read, average and largest in bytes, whether sampled.

    Sampled like ``column_compression`` unless ``exact`` or the table is small. Used to tell a user that no
    row reaches the TOAST threshold, so no compression setting can change anything there.
    """
    percent = sample_percent(relpages, exact)
    query = sql.SQL(
        MEASURE_SETTINGS
        + "SELECT count(*), COALESCE(avg(pg_column_size(t.*)), 0)::float8, COALESCE(max(pg_column_size(t.*)), 0) "
        "FROM {} AS t"
    ).format(sql.Identifier(schema, name))
    if percent is not None:
        query = query + sql.SQL(" TABLESAMPLE SYSTEM ({})").format(sql.Literal(percent))
    rows, avg_width, max_width = fetch_one(conn, query)
    return {"rows_read": rows, "avg_bytes": round(avg_width, 1), "max_bytes": max_width, "sampled": percent is not None}
