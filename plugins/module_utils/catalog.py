# Copyright: (c) 2026, SIGETI data platform team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Every introspection query of the collection, and the pure parsers of what they return.

``read_tables`` reads everything about a set of tables and all their partitions in a fixed number of
round trips (four), however many partitions there are. Results are plain dicts and lists, with
partition bounds parsed into typed values (int, datetime.date, datetime.datetime, str).
"""

from __future__ import annotations

import datetime
import re
from typing import TYPE_CHECKING, Any, Iterable, Sequence

from ansible_collections.sigeti.dwh.plugins.module_utils.errors import InvalidInput
from ansible_collections.sigeti.dwh.plugins.module_utils.identifiers import display_name, split_name

try:
    import psycopg2.extras
    from psycopg2 import sql
except ImportError:  # reported by the connection layer
    sql = None

if TYPE_CHECKING:  # names used in annotations only
    from psycopg2.sql import Composable

    from ansible_collections.sigeti.dwh.plugins.module_utils.connection import Connection

MINVALUE = "MINVALUE"
MAXVALUE = "MAXVALUE"

RELKIND_NAMES = {"r": "plain", "p": "partitioned"}
STRATEGY_NAMES = {"r": "range", "l": "list", "h": "hash"}
STORAGE_NAMES = {"p": "plain", "m": "main", "e": "external", "x": "extended"}
COMPRESSION_NAMES = {"": "default", "p": "pglz", "l": "lz4"}

# ---------------------------------------------------------------------------------------------
# Pure parsers
# ---------------------------------------------------------------------------------------------

_TOKEN = re.compile(
    r"\s*(?:(?P<string>'(?:[^']|'')*')|(?P<number>-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?)"
    r"|(?P<word>[A-Za-z_]+)|(?P<punct>[(),]))"
)


def _tokens(text):
    pos = 0
    out = []
    text = text.strip()
    while pos < len(text):
        match = _TOKEN.match(text, pos)
        if not match:
            raise ValueError("cannot parse partition bound %r at %r" % (text, text[pos:]))
        pos = match.end()
        if match.group("string") is not None:
            out.append(("string", match.group("string")[1:-1].replace("''", "'")))
        elif match.group("number") is not None:
            raw = match.group("number")
            out.append(("number", int(raw) if re.match(r"^-?\d+$", raw) else float(raw)))
        elif match.group("word") is not None:
            out.append(("word", match.group("word")))
        else:
            out.append(("punct", match.group("punct")))
    return out


def _literal_list(tokens, start):
    """Read ``( v, v, ... )`` from tokens[start]; return (values, next index)."""
    if tokens[start] != ("punct", "("):
        raise ValueError("expected '(' in partition bound")
    values = []
    i = start + 1
    while True:
        kind, value = tokens[i]
        if kind == "word":
            upper = value.upper()
            value = {"NULL": None, "TRUE": True, "FALSE": False}.get(upper, upper)
        values.append(value)
        i += 1
        kind, value = tokens[i]
        if (kind, value) == ("punct", ")"):
            return values, i + 1
        if (kind, value) != ("punct", ","):
            raise ValueError("expected ',' or ')' in partition bound")
        i += 1


def parse_partition_bound(expr: str | None) -> dict[str, Any] | None:
    """Parse ``pg_get_expr(relpartbound)`` into a dict.

    Returns ``{"kind": "default"}``, ``{"kind": "range", "low": [...], "high": [...]}``,
    ``{"kind": "list", "values": [...]}`` or ``{"kind": "hash", "modulus": m, "remainder": r}``.
    Range values stay raw (str/int) here; ``typed_value`` converts them with the key's type.
    """
    if expr is None:
        return None
    text = expr.strip()
    if text.upper() == "DEFAULT":
        return {"kind": "default"}
    tokens = _tokens(text)
    words = [v.upper() for k, v in tokens[:3] if k == "word"]
    if words[:3] == ["FOR", "VALUES", "FROM"]:
        low, i = _literal_list(tokens, 3)
        if tokens[i] != ("word", "TO") and tokens[i][1].upper() != "TO":
            raise ValueError("expected TO in partition bound %r" % expr)
        high = _literal_list(tokens, i + 1)[0]
        return {"kind": "range", "low": low, "high": high}
    if words[:3] == ["FOR", "VALUES", "IN"]:
        values = _literal_list(tokens, 3)[0]
        return {"kind": "list", "values": values}
    if words[:3] == ["FOR", "VALUES", "WITH"]:
        parts = {tokens[j][1].lower(): tokens[j + 1][1] for j in range(4, len(tokens) - 1) if tokens[j][0] == "word"}
        return {"kind": "hash", "modulus": parts.get("modulus"), "remainder": parts.get("remainder")}
    raise ValueError("unknown partition bound %r" % expr)


_TZ_SHORT = re.compile(r"([+-]\d{2})$")


def typed_value(raw: Any, type_name: str | None) -> Any:
    """Return one raw bound value converted to the key column's Python type (MINVALUE/MAXVALUE kept as is)."""
    if raw in (MINVALUE, MAXVALUE) or raw is None:
        return raw
    base = (type_name or "").split("(")[0].strip()
    if base == "date":
        return datetime.date.fromisoformat(str(raw))
    if base.startswith("timestamp"):
        text = _TZ_SHORT.sub(r"\1:00", str(raw).replace("T", " "))
        return datetime.datetime.fromisoformat(text)
    if base in ("integer", "bigint", "smallint"):
        return int(raw)
    if base == "numeric" and not isinstance(raw, str):
        return raw
    return raw


def json_value(value: Any) -> Any:
    """Return a typed bound value as module results show it (dates as ISO text, ints as ints)."""
    if isinstance(value, datetime.datetime):
        return value.isoformat(sep=" ")
    if isinstance(value, datetime.date):
        return value.isoformat()
    return value


def parse_options(options: Iterable[str] | None) -> dict[str, str]:
    """Return ``reloptions`` (``['fillfactor=90', ...]``) as a dict of strings."""
    result = {}
    for item in options or []:
        key, _sep, value = item.partition("=")
        result[key] = value
    return result


def coverage(ranges: Iterable[tuple[Any, Any, str]]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Find gaps and overlaps in sorted single-column ranges.

    ``ranges`` is a list of ``(low, high, name)`` with comparable typed values. Returns
    ``(gaps, overlaps)``: lists of ``{"from", "to"}`` and ``{"partitions", "from", "to"}``.
    """
    gaps, overlaps = [], []
    ordered = sorted(
        (r for r in ranges if r[0] not in (MINVALUE, MAXVALUE) or r[1] not in (MINVALUE, MAXVALUE)),
        key=lambda r: (r[0] != MINVALUE, r[0] if r[0] not in (MINVALUE, MAXVALUE) else 0),
    )
    for previous, current in zip(ordered, ordered[1:]):
        prev_high, cur_low = previous[1], current[0]
        if prev_high == MAXVALUE or cur_low == MINVALUE:
            overlaps.append({"partitions": [previous[2], current[2]], "from": cur_low, "to": prev_high})
        elif prev_high < cur_low:
            gaps.append({"from": prev_high, "to": cur_low})
        elif prev_high > cur_low:
            overlaps.append({"partitions": [previous[2], current[2]], "from": cur_low, "to": prev_high})
    return gaps, overlaps


# ---------------------------------------------------------------------------------------------
# Queries
# ---------------------------------------------------------------------------------------------

RELATIONS_QUERY = """
WITH wanted AS (
    SELECT w.ord, w.schema_name, w.rel_name, c.oid
    FROM unnest(%(schemas)s::text[], %(names)s::text[]) WITH ORDINALITY AS w(schema_name, rel_name, ord)
    LEFT JOIN pg_namespace n ON n.nspname = w.schema_name
    LEFT JOIN pg_class c ON c.relnamespace = n.oid AND c.relname = w.rel_name AND c.relkind IN ('r', 'p')
)
SELECT w.ord, w.schema_name AS wanted_schema, w.rel_name AS wanted_name,
       t.relid::oid AS oid, t.parentrelid::oid AS parent_oid, t.isleaf, t.level,
       n.nspname::text AS schema, c.relname::text AS name, c.relkind::text AS relkind, c.relispartition,
       pg_get_expr(c.relpartbound, c.oid) AS bound_expr,
       CASE WHEN c.relkind = 'p' THEN pg_get_partkeydef(c.oid) END AS partition_key_def,
       pt.partstrat::text AS strategy,
       ARRAY(SELECT a.attname::text FROM unnest(pt.partattrs::int2[]) WITH ORDINALITY k(attnum, o)
             JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = k.attnum ORDER BY k.o) AS key_columns,
       ARRAY(SELECT format_type(a.atttypid, a.atttypmod) FROM unnest(pt.partattrs::int2[]) WITH ORDINALITY k(attnum, o)
             JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = k.attnum ORDER BY k.o) AS key_types,
       pt.partexprs IS NOT NULL AS key_has_expressions,
       pg_get_userbyid(c.relowner)::text AS owner,
       c.reltuples::float8 AS reltuples, c.relpages::bigint AS relpages,
       c.reloptions, tc.reloptions AS toast_reloptions, c.reltoastrelid::bigint AS toast_oid,
       CASE WHEN c.relkind = 'r' THEN pg_relation_size(c.oid) ELSE 0 END AS heap_bytes,
       CASE WHEN c.reltoastrelid <> 0 THEN pg_total_relation_size(c.reltoastrelid) ELSE 0 END AS toast_bytes,
       s.n_live_tup, s.n_dead_tup, s.n_mod_since_analyze, s.n_ins_since_vacuum,
       s.last_vacuum, s.last_autovacuum, s.last_analyze, s.last_autoanalyze,
       s.vacuum_count, s.autovacuum_count, s.analyze_count, s.autoanalyze_count,
       ts.n_live_tup AS toast_n_live_tup, ts.n_dead_tup AS toast_n_dead_tup,
       ts.last_vacuum AS toast_last_vacuum, ts.last_autovacuum AS toast_last_autovacuum,
       tc.reltuples::float8 AS toast_reltuples,
       obj_description(c.oid, 'pg_class') AS comment
FROM wanted w
LEFT JOIN LATERAL (
    SELECT pt.relid, pt.parentrelid, pt.isleaf, pt.level FROM pg_partition_tree(w.oid) pt
    UNION ALL  -- pg_partition_tree returns nothing for a plain table
    SELECT w.oid::regclass, NULL::regclass, true, 0
    WHERE w.oid IS NOT NULL AND NOT EXISTS (SELECT 1 FROM pg_partition_tree(w.oid))
) t ON true
LEFT JOIN pg_class c ON c.oid = t.relid::oid
LEFT JOIN pg_namespace n ON n.oid = c.relnamespace
LEFT JOIN pg_partitioned_table pt ON pt.partrelid = c.oid
LEFT JOIN pg_class tc ON tc.oid = c.reltoastrelid
LEFT JOIN pg_stat_all_tables s ON s.relid = c.oid
LEFT JOIN pg_stat_all_tables ts ON ts.relid = c.reltoastrelid
ORDER BY w.ord, t.level, n.nspname, c.relname
"""

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

INDEXES_QUERY = """
SELECT i.indrelid AS table_oid, i.indexrelid AS oid, ic.relname::text AS name, n.nspname::text AS schema,
       pg_get_indexdef(i.indexrelid) AS definition, i.indisunique AS is_unique, i.indisprimary AS is_primary,
       i.indisvalid AS is_valid, ic.relkind::text AS relkind,
       COALESCE(s.idx_scan, 0) AS idx_scan, pg_relation_size(i.indexrelid) AS bytes,
       inh.inhparent AS parent_index_oid, con.conname::text AS constraint_name
FROM pg_index i
JOIN pg_class ic ON ic.oid = i.indexrelid
JOIN pg_namespace n ON n.oid = ic.relnamespace
LEFT JOIN pg_stat_all_indexes s ON s.indexrelid = i.indexrelid
LEFT JOIN pg_inherits inh ON inh.inhrelid = i.indexrelid
LEFT JOIN pg_constraint con ON con.conindid = i.indexrelid AND con.conrelid = i.indrelid
WHERE i.indrelid = ANY(%(oids)s::oid[])
ORDER BY i.indrelid, ic.relname
"""

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


def _end_read(conn):
    # a read ends its transaction at once: catalog reads never keep the locks they took
    if not conn.autocommit:
        conn.rollback()


def _fetch_one(conn, query, params=None):
    """Run one read, end its transaction, return its first row."""
    with conn.cursor() as cur:
        cur.execute(query, params)
        row = cur.fetchone()
    _end_read(conn)
    return row


def _fetch_all(conn, query, params=None):
    """Run one read, end its transaction, return every row."""
    with conn.cursor() as cur:
        cur.execute(query, params)
        rows = cur.fetchall()
    _end_read(conn)
    return rows


def _dict_cursor(conn):
    return conn.cursor(cursor_factory=psycopg2.extras.RealDictCursor)


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
    entry = {
        "oid": row["oid"],
        "parent_oid": row["parent_oid"],
        "schema": row["schema"],
        "name": row["name"],
        "relkind": row["relkind"],
        "is_leaf": row["isleaf"],
        "level": row["level"],
        "is_partition": row["relispartition"],
        "owner": row["owner"],
        "comment": row["comment"],
        "reltuples": row["reltuples"],
        "relpages": row["relpages"],
        "reloptions": parse_options(row["reloptions"]),
        "toast_reloptions": parse_options(row["toast_reloptions"]),
        "toast_oid": row["toast_oid"] or None,
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
        "bound_expr": row["bound_expr"],
        "bound": parse_partition_bound(row["bound_expr"]) if row["bound_expr"] else None,
        "partition_key": None,
        "columns": [],
        "indexes": [],
    }
    if row["relkind"] == "p":
        entry["partition_key"] = {
            "definition": row["partition_key_def"],
            "strategy": STRATEGY_NAMES.get(row["strategy"], row["strategy"]),
            "columns": list(row["key_columns"] or []),
            "types": list(row["key_types"] or []),
            "has_expressions": row["key_has_expressions"],
        }
    return entry


def read_tables(conn: Connection, names: Iterable[tuple[str, str]]) -> list[dict[str, Any]]:
    """Read every fact about ``names`` (list of ``(schema, table)``) and their whole partition trees.

    Four round trips in all. Returns a list (same order as ``names``) of table dicts; a table that
    does not exist has ``exists: False``. Each dict holds the root relation's entry plus
    ``relations`` (every relation of the tree by oid, root included), ``partitions`` (the tree below
    the root in level order), ``dependents`` and ``columns``/``indexes`` on each relation.
    """
    names = list(names)
    with _dict_cursor(conn) as cur:
        cur.execute(RELATIONS_QUERY, {"schemas": [n[0] for n in names], "names": [n[1] for n in names]})
        rows = cur.fetchall()
        tables = []
        by_ord = {}
        for row in rows:
            by_ord.setdefault(row["ord"], []).append(row)
        relations = {}
        dependents = {}
        for position, (schema, name) in enumerate(names, start=1):
            group = by_ord.get(position, [])
            if not group or group[0]["oid"] is None:
                tables.append({"schema": schema, "name": name, "exists": False})
                continue
            entries = [_relation_entry(r) for r in group]
            for entry in entries:
                relations[entry["oid"]] = entry
            root = dict(entries[0])
            root["exists"] = True
            root["relations"] = {e["oid"]: e for e in entries}
            root["partitions"] = entries[1:]
            tables.append(root)
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
    _end_read(conn)
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
    count = _fetch_one(conn, sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(schema, name)))[0]
    return count


MIGRATIONS_QUERY = """
SELECT schema_name, table_name, mode, phase, rows_copied, next_page, total_pages,
       started_at::text, updated_at::text,
       extract(epoch FROM clock_timestamp() - started_at)::bigint AS age_seconds,
       extract(epoch FROM clock_timestamp() - updated_at)::bigint AS idle_seconds
FROM sigeti_dwh.migration_state
WHERE (schema_name, table_name) IN (SELECT * FROM unnest(%(schemas)s::text[], %(names)s::text[]))
ORDER BY 1, 2
"""


def migrations_in_flight(conn: Connection, names: Sequence[tuple[str, str]]) -> tuple[list[dict[str, Any]], str | None]:
    """The migrations of ``names`` ([(schema, table)]) started and not finished, from the migration state table.

    Returns ``(rows, unreadable)``: ``unreadable`` says why the state could not be read (no privilege on the state
    schema), so callers report it instead of failing; no state table means no migration.
    """
    with _dict_cursor(conn) as cur:
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
    _end_read(conn)
    return rows, unreadable


SAMPLE_TARGET_PAGES = 2000


def sample_percent(relpages: int | None, exact: bool = False) -> float | None:
    """Return the percentage of pages to sample so that about SAMPLE_TARGET_PAGES pages are read; None means read all."""
    if exact or relpages is None or relpages <= SAMPLE_TARGET_PAGES:
        return None
    return max(0.01, round(100.0 * SAMPLE_TARGET_PAGES / relpages, 4))


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
    row = _fetch_one(conn, query)
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
    _end_read(conn)
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
    _end_read(conn)
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
    _end_read(conn)
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
    row = _fetch_one(conn, DATABASE_SETTING_QUERY, {"name": name})
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
        "SELECT count(*), COALESCE(avg(pg_column_size(t.*)), 0)::float8, COALESCE(max(pg_column_size(t.*)), 0) "
        "FROM {} AS t"
    ).format(sql.Identifier(schema, name))
    if percent is not None:
        query = query + sql.SQL(" TABLESAMPLE SYSTEM ({})").format(sql.Literal(percent))
    rows, avg_width, max_width = _fetch_one(conn, query)
    return {"rows_read": rows, "avg_bytes": round(avg_width, 1), "max_bytes": max_width, "sampled": percent is not None}


# ---------------------------------------------------------------------------------------------
# Partition sets (partitioned_table)
# ---------------------------------------------------------------------------------------------


def partition_set_state(
    conn: Connection,
    schemas: Iterable[str],
    default: tuple[str, str] | None = None,
    parent: tuple[str, str] | None = None,
    key: str | None = None,
    estimate: bool = False,
) -> dict[str, Any]:
    """One round trip: the server's ``current_date`` and ``TimeZone``, rows in the default partition,
    ``max(key)`` and which of ``schemas`` exist.

    ``default`` is ``(schema, name)`` of the default partition or None; ``parent`` and ``key`` ask for the
    largest key value of a plain table (a migration source). With ``estimate`` no row is read (no lock on any
    table): ``default_rows`` is ``pg_class.reltuples`` (None when never analyzed). Returns a dict.
    """
    parts = [sql.SQL("current_date"), sql.SQL("current_setting('TimeZone')")]
    if default and estimate:
        parts.append(
            sql.SQL(
                "(SELECT CASE WHEN c.reltuples >= 0 THEN c.reltuples::bigint END FROM pg_class c "
                "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = {} AND c.relname = {})"
            ).format(sql.Literal(default[0]), sql.Literal(default[1]))
        )
    elif default:
        parts.append(sql.SQL("(SELECT count(*) FROM {})").format(sql.Identifier(*default)))
    else:
        parts.append(sql.SQL("NULL::bigint"))
    if parent and key and not estimate:
        parts.append(sql.SQL("(SELECT max({}) FROM {})").format(sql.Identifier(key), sql.Identifier(*parent)))
    else:
        parts.append(sql.SQL("NULL::bigint"))
    parts.append(
        sql.SQL("ARRAY(SELECT nspname::text FROM pg_namespace WHERE nspname = ANY({}::text[]))").format(
            sql.Literal(list(schemas))
        )
    )
    today, timezone, default_rows, max_key, found = _fetch_one(conn, sql.SQL("SELECT ") + sql.SQL(", ").join(parts))
    return {
        "today": today,
        "timezone": timezone,
        "default_rows": default_rows,
        "max_key": max_key,
        "schemas": set(found or []),
    }


def newest_key(
    conn: Connection, relations: Iterable[tuple[str, str]], key: str, batch: int = 4
) -> tuple[int | None, Any]:
    """The largest ``key`` of the first of ``relations`` (``(schema, name)``, newest first) that holds rows.

    Walks ``batch`` partitions per round trip and stops at the first non-empty one, so only the newest few are
    read (ACCESS SHARE on each). Returns ``(index in relations, value)`` or ``(None, None)`` when all are empty.
    """
    relations = list(relations)
    for first in range(0, len(relations), batch):
        chunk = relations[first : first + batch]
        parts = [sql.SQL("(SELECT max({}) FROM {})").format(sql.Identifier(key), sql.Identifier(*r)) for r in chunk]
        row = _fetch_one(conn, sql.SQL("SELECT ") + sql.SQL(", ").join(parts))
        for offset, value in enumerate(row):
            if value is not None:
                return first + offset, value
    return None, None


def filled_by_statistics(conn: Connection, oids: Iterable[int]) -> list[int]:
    """Return the positions in ``oids`` of the relations pg_class says hold rows (reltuples or relpages above 0), in order.

    Reads only the catalog (no lock on any table): what check mode uses when a table is locked by another session.
    """
    with conn.cursor() as cur:
        cur.execute(
            "SELECT o.i FROM unnest(%s::oid[]) WITH ORDINALITY o(oid, i) JOIN pg_class c ON c.oid = o.oid "
            "WHERE c.reltuples > 0 OR c.relpages > 0 ORDER BY o.i",
            (list(oids),),
        )
        rows = cur.fetchall()
    _end_read(conn)
    return [row[0] - 1 for row in rows]


def keys_beyond(conn: Connection, relation: tuple[str, str], key: str, bound: Any) -> tuple[int, Any, Any]:
    """Return the rows of ``relation`` whose ``key`` is at or past ``bound`` (a value or composed SQL): ``(count, min, max)``."""
    if not isinstance(bound, sql.Composable):
        bound = sql.Literal(bound)
    with conn.cursor() as cur:
        cur.execute(
            sql.SQL("SELECT count(*), min({k}), max({k}) FROM {t} WHERE {k} >= {b}").format(
                k=sql.Identifier(key), t=sql.Identifier(*relation), b=bound
            )
        )
        row = cur.fetchone()
    _end_read(conn)
    return row


def midnight_dates(conn: Connection, values: Iterable[datetime.datetime]) -> dict[datetime.datetime, datetime.datetime]:
    """Return ``{value: naive midnight}``: each aware timestamptz ``value`` mapped to the naive midnight the server turns into it, when it is one.

    Midnight that does not exist (a DST gap at midnight, America/Santiago 2026-09-06) is stored as the first
    instant after the gap (01:00-03); comparing wall clocks would call that bound foreign. Reads no table.
    """
    values = list(values)
    if not values:
        return {}
    with conn.cursor() as cur:
        cur.execute(
            "SELECT v, (v AT TIME ZONE current_setting('TimeZone'))::date "
            "FROM unnest(%s::timestamptz[]) v "
            "WHERE ((v AT TIME ZONE current_setting('TimeZone'))::date)::timestamptz = v",
            (values,),
        )
        rows = cur.fetchall()
    _end_read(conn)
    return {value: datetime.datetime(day.year, day.month, day.day) for value, day in rows}


def partition_set_pending(
    conn: Connection,
    names: Iterable[tuple[str, str]],
    default: tuple[str, str] | None = None,
    key: str | None = None,
    ranges: Iterable[tuple[Composable, Composable]] = (),
) -> tuple[set[tuple[str, ...]], list[int]]:
    """One round trip before creating partitions: which ``names`` (``(schema, name)``) are taken, and how
    many default-partition rows fall in each of ``ranges`` (list of composed ``(low, high)`` SQL bounds).

    Returns ``(taken_set, [count per range])``.
    """
    names = list(names)
    parts = [
        sql.SQL(
            "ARRAY(SELECT ARRAY[n.nspname::text, c.relname::text] FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE (n.nspname::text, c.relname::text) IN (SELECT * FROM unnest({}::text[], {}::text[])))"
        ).format(sql.Literal([n[0] for n in names]), sql.Literal([n[1] for n in names]))
    ]
    ranges = list(ranges)
    if default and ranges:
        filters = [
            sql.SQL("count(*) FILTER (WHERE {k} >= {lo} AND {k} < {hi})").format(k=sql.Identifier(key), lo=lo, hi=hi)
            for lo, hi in ranges
        ]
        parts.append(
            sql.SQL("(SELECT ARRAY[{}]::bigint[] FROM {})").format(
                sql.SQL(", ").join(filters), sql.Identifier(*default)
            )
        )
    row = _fetch_one(conn, sql.SQL("SELECT ") + sql.SQL(", ").join(parts))
    taken = {tuple(x) for x in (row[0] or [])}
    counts = list(row[1]) if len(row) > 1 and row[1] is not None else [0] * len(ranges)
    return taken, counts


INDEX_TAILS_QUERY = """
SELECT i.indexrelid, pg_get_indexdef(i.indexrelid),
       'CREATE ' || CASE WHEN i.indisunique THEN 'UNIQUE ' ELSE '' END || 'INDEX ' || quote_ident(ic.relname)
       || ' ON ' || CASE WHEN t.relkind = 'p' THEN 'ONLY ' ELSE '' END
       || quote_ident(tn.nspname) || '.' || quote_ident(t.relname) || ' '
FROM pg_index i
JOIN pg_class ic ON ic.oid = i.indexrelid
JOIN pg_class t ON t.oid = i.indrelid
JOIN pg_namespace tn ON tn.oid = t.relnamespace
WHERE i.indexrelid = ANY(%(oids)s::oid[])
"""


def index_tails(conn: Connection, oids: Iterable[int]) -> dict[int, str]:
    """Return ``{index oid: "USING btree (col) ..."}``: an index definition without its name and table,
    to build the same index on a partition. Definitions that do not start as expected are left out."""
    rows = _fetch_all(conn, INDEX_TAILS_QUERY, {"oids": list(oids)})
    tails = {}
    for oid, definition, prefix in rows:
        if definition.startswith(prefix):
            tails[oid] = definition[len(prefix) :]
    return tails


def resolve_types(conn: Connection, type_names: Iterable[str]) -> dict[str, str | None]:
    """Return ``{text: format_type name or None}`` for type names written by a user (None: no such type)."""
    names = list(type_names)
    rows = dict(_fetch_all(conn, "SELECT t, format_type(to_regtype(t), NULL) FROM unnest(%s::text[]) AS t", (names,)))
    return rows


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
       (SELECT sum((1 - s.null_frac) * s.avg_width)::float8 FROM pg_stats s
         WHERE s.schemaname = n.nspname AND s.tablename = c.relname AND NOT s.inherited) AS data_width,
       (SELECT count(*) FROM pg_stats s
         WHERE s.schemaname = n.nspname AND s.tablename = c.relname AND NOT s.inherited) AS stats_columns,
       (SELECT bool_or(s.null_frac > 0) FROM pg_stats s
         WHERE s.schemaname = n.nspname AND s.tablename = c.relname AND NOT s.inherited) AS has_nulls,
       (SELECT count(*) FROM pg_attribute a WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped)
         AS columns,
       EXISTS (SELECT 1 FROM pg_stats s
               WHERE s.schemaname = n.nspname AND s.tablename = c.relname AND s.inherited) AS has_inherited_stats,
       EXISTS (SELECT 1 FROM pg_index i
               WHERE i.indrelid = c.oid AND i.indisvalid
                 AND (i.indisprimary OR (i.indisunique AND i.indpred IS NULL AND i.indexprs IS NULL
                      AND NOT EXISTS (SELECT 1 FROM unnest(i.indkey::int2[]) k(attnum)
                                      JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = k.attnum
                                      WHERE NOT a.attnotnull)))) AS has_repack_key
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.oid = ANY(%(oids)s::oid[])
"""

EXTENSION_QUERY = """
SELECT e.extname::text AS name, e.extversion AS version, n.nspname::text AS schema
FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace
WHERE e.extname = ANY(%(names)s::text[])
"""


def vacuum_facts(conn: Connection, oids: Sequence[int]) -> dict[int, dict[str, Any]]:
    """Per relation oid: relfrozenxid ages, tablespace location, row width from pg_stats (for the bloat estimate),
    inheritance statistics (partitioned parents) and whether a primary key or unique NOT NULL index exists
    (pg_repack needs one). One round trip. Returns ``{oid: dict}``.
    """
    if not oids:
        return {}
    with _dict_cursor(conn) as cur:
        cur.execute(VACUUM_FACTS_QUERY, {"oids": list(oids)})
        rows = {r["oid"]: dict(r) for r in cur.fetchall()}
    _end_read(conn)
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
    _end_read(conn)
    return counts


def extensions_info(conn: Connection, names: Iterable[str]) -> dict[str, dict[str, Any]]:
    """Return ``{name: {"version", "schema"}}`` for the installed extensions among ``names``, and whether this
    role may call ``pgstattuple_approx`` (key ``pgstattuple_approx_allowed``)."""
    with _dict_cursor(conn) as cur:
        cur.execute(EXTENSION_QUERY, {"names": list(names)})
        found = {r["name"]: {"version": r["version"], "schema": r["schema"]} for r in cur.fetchall()}
        if "pgstattuple" in found:
            cur.execute(
                "SELECT has_function_privilege(%s, 'EXECUTE') AS allowed",
                ("%s.pgstattuple_approx(regclass)" % sql.Identifier(found["pgstattuple"]["schema"]).as_string(conn),),
            )
            found["pgstattuple"]["approx_allowed"] = cur.fetchone()["allowed"]
    _end_read(conn)
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
    with _dict_cursor(conn) as cur:
        cur.execute(query, {"oids": list(oids)})
        rows = {r["oid"]: dict(r) for r in cur.fetchall()}
    _end_read(conn)
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
    _end_read(conn)
    return rows


# ---------------------------------------------------------------------------------------------
# Migration facts (plain table -> partitioned): everything a table swap must carry
# ---------------------------------------------------------------------------------------------

MIGRATION_FACTS_QUERY = """
WITH t AS (SELECT c.oid, c.relname, c.relnamespace, c.relacl, c.relrowsecurity, c.relforcerowsecurity,
                  c.relpersistence, c.relreplident FROM pg_class c WHERE c.oid = %(oid)s::oid)
SELECT
  (SELECT json_build_object('row_security', t.relrowsecurity, 'force_row_security', t.relforcerowsecurity,
                            'persistence', t.relpersistence, 'replica_identity', t.relreplident) FROM t) AS flags,
  (SELECT coalesce(json_agg(json_build_object(
        'name', con.conname, 'type', con.contype, 'definition', pg_get_constraintdef(con.oid),
        'validated', con.convalidated, 'index', (SELECT relname FROM pg_class WHERE oid = con.conindid),
        'columns', ARRAY(SELECT a.attname::text FROM unnest(con.conkey) WITH ORDINALITY k(n, o)
                         JOIN pg_attribute a ON a.attrelid = con.conrelid AND a.attnum = k.n ORDER BY k.o),
        'comment', obj_description(con.oid, 'pg_constraint')) ORDER BY con.conname), '[]')
   FROM pg_constraint con WHERE con.conrelid = (SELECT oid FROM t)) AS constraints,
  (SELECT coalesce(json_agg(json_build_object(
        'name', con.conname, 'schema', n.nspname, 'table', c.relname, 'definition', pg_get_constraintdef(con.oid),
        'validated', con.convalidated,
        'columns', ARRAY(SELECT a.attname::text FROM unnest(con.confkey) WITH ORDINALITY k(n, o)
                         JOIN pg_attribute a ON a.attrelid = con.confrelid AND a.attnum = k.n ORDER BY k.o))
        ORDER BY n.nspname, c.relname, con.conname), '[]')
   FROM pg_constraint con JOIN pg_class c ON c.oid = con.conrelid JOIN pg_namespace n ON n.oid = c.relnamespace
   WHERE con.contype = 'f' AND con.confrelid = (SELECT oid FROM t) AND con.conrelid <> con.confrelid
     AND con.conparentid = 0) AS foreign_keys_in,
  (SELECT coalesce(json_agg(json_build_object('grantee', CASE WHEN a.grantee = 0 THEN 'PUBLIC'
                                                         ELSE pg_get_userbyid(a.grantee) END,
        'privilege', a.privilege_type, 'grantable', a.is_grantable) ORDER BY 1), '[]')
   FROM t, aclexplode(t.relacl) a WHERE a.grantee <> a.grantor OR a.grantee = 0) AS grants,
  (SELECT coalesce(json_agg(json_build_object('column', att.attname, 'grantee', CASE WHEN a.grantee = 0 THEN 'PUBLIC'
                                                         ELSE pg_get_userbyid(a.grantee) END,
        'privilege', a.privilege_type, 'grantable', a.is_grantable) ORDER BY 1), '[]')
   FROM pg_attribute att, aclexplode(att.attacl) a
   WHERE att.attrelid = (SELECT oid FROM t) AND att.attacl IS NOT NULL AND NOT att.attisdropped) AS column_grants,
  (SELECT coalesce(json_agg(json_build_object('name', tg.tgname, 'definition', pg_get_triggerdef(tg.oid),
        'enabled', tg.tgenabled, 'comment', obj_description(tg.oid, 'pg_trigger')) ORDER BY tg.tgname), '[]')
   FROM pg_trigger tg WHERE tg.tgrelid = (SELECT oid FROM t) AND NOT tg.tgisinternal) AS triggers,
  (SELECT coalesce(json_agg(json_build_object('name', p.polname, 'permissive', p.polpermissive,
        'command', p.polcmd, 'roles', ARRAY(SELECT CASE WHEN r = 0 THEN 'PUBLIC' ELSE pg_get_userbyid(r) END
                                           FROM unnest(p.polroles) r),
        'using', pg_get_expr(p.polqual, p.polrelid), 'with_check', pg_get_expr(p.polwithcheck, p.polrelid))
        ORDER BY p.polname), '[]')
   FROM pg_policy p WHERE p.polrelid = (SELECT oid FROM t)) AS policies,
  (SELECT coalesce(json_agg(json_build_object('column', a.attname, 'schema', sn.nspname, 'name', s.relname,
        'kind', CASE d.deptype WHEN 'i' THEN 'identity' ELSE 'serial' END) ORDER BY a.attnum), '[]')
   FROM pg_depend d JOIN pg_class s ON s.oid = d.objid AND s.relkind = 'S'
   JOIN pg_namespace sn ON sn.oid = s.relnamespace
   JOIN pg_attribute a ON a.attrelid = d.refobjid AND a.attnum = d.refobjsubid
   WHERE d.classid = 'pg_class'::regclass AND d.refclassid = 'pg_class'::regclass
     AND d.refobjid = (SELECT oid FROM t) AND d.deptype IN ('a', 'i')) AS sequences,
  (SELECT coalesce(json_agg(json_build_object('column', a.attname, 'options', a.attoptions)), '[]')
   FROM pg_attribute a WHERE a.attrelid = (SELECT oid FROM t) AND a.attoptions IS NOT NULL
     AND NOT a.attisdropped) AS column_options,
  (SELECT coalesce(json_agg(json_build_object('name', ic.relname, 'comment', obj_description(ic.oid, 'pg_class'))),
          '[]')
   FROM pg_index i JOIN pg_class ic ON ic.oid = i.indexrelid
   WHERE i.indrelid = (SELECT oid FROM t) AND obj_description(ic.oid, 'pg_class') IS NOT NULL) AS index_comments,
  (SELECT coalesce(json_agg(json_build_object(
        'oid', v.oid, 'schema', vn.nspname, 'name', v.relname,
        'kind', CASE v.relkind WHEN 'm' THEN 'materialized view' ELSE 'view' END,
        'owner', pg_get_userbyid(v.relowner), 'definition', pg_get_viewdef(v.oid),
        'options', v.reloptions, 'comment', obj_description(v.oid, 'pg_class'),
        'populated', v.relispopulated,
        'grants', (SELECT coalesce(json_agg(json_build_object('grantee', CASE WHEN a.grantee = 0 THEN 'PUBLIC'
                                                         ELSE pg_get_userbyid(a.grantee) END,
                         'privilege', a.privilege_type, 'grantable', a.is_grantable)), '[]')
                   FROM aclexplode(v.relacl) a WHERE a.grantee <> a.grantor OR a.grantee = 0),
        'indexes', (SELECT coalesce(json_agg(json_build_object('name', ic.relname, 'definition',
                         pg_get_indexdef(i.indexrelid), 'comment', obj_description(ic.oid, 'pg_class'),
                         'tail', substr(pg_get_indexdef(i.indexrelid),
                                 length('CREATE ' || CASE WHEN i.indisunique THEN 'UNIQUE ' ELSE '' END || 'INDEX '
                                        || quote_ident(ic.relname) || ' ON ' || quote_ident(vn.nspname) || '.'
                                        || quote_ident(v.relname) || ' ') + 1),
                         'unique', i.indisunique) ORDER BY ic.relname), '[]')
                     FROM pg_index i JOIN pg_class ic ON ic.oid = i.indexrelid WHERE i.indrelid = v.oid),
        'dependents', ARRAY(SELECT DISTINCT quote_ident(wn.nspname) || '.' || quote_ident(w.relname)
                            FROM pg_depend d2 JOIN pg_rewrite r2 ON r2.oid = d2.objid
                            JOIN pg_class w ON w.oid = r2.ev_class JOIN pg_namespace wn ON wn.oid = w.relnamespace
                            WHERE d2.classid = 'pg_rewrite'::regclass AND d2.refobjid = v.oid AND w.oid <> v.oid))
        ORDER BY vn.nspname, v.relname), '[]')
   FROM pg_class v JOIN pg_namespace vn ON vn.oid = v.relnamespace
   WHERE v.oid IN (SELECT r.ev_class FROM pg_depend d JOIN pg_rewrite r ON r.oid = d.objid
                   WHERE d.classid = 'pg_rewrite'::regclass AND d.refclassid = 'pg_class'::regclass
                     AND d.refobjid = (SELECT oid FROM t) AND r.ev_class <> d.refobjid)) AS views,
  (SELECT json_build_object('index_tails', coalesce(json_object_agg(ic.relname, substr(pg_get_indexdef(i.indexrelid),
            length('CREATE ' || CASE WHEN i.indisunique THEN 'UNIQUE ' ELSE '' END || 'INDEX '
                   || quote_ident(ic.relname) || ' ON ' || quote_ident(n.nspname) || '.' || quote_ident(t.relname)
                   || ' ') + 1)), '{}'))
   FROM t JOIN pg_namespace n ON n.oid = t.relnamespace
   JOIN pg_index i ON i.indrelid = t.oid JOIN pg_class ic ON ic.oid = i.indexrelid) AS extra
"""


def migration_facts(conn: Connection, oid: int) -> dict[str, Any]:
    """Read, in one round trip, what swapping table ``oid`` for a partitioned copy must carry.

    Returns a dict: ``flags`` (row_security, force_row_security, persistence, replica_identity),
    ``constraints`` (every constraint: name, type p/u/c/f/x, definition, columns, index), ``foreign_keys_in``
    (FKs of other tables referencing it), ``grants`` and ``column_grants`` (from ``relacl``/``attacl``),
    ``triggers`` (user triggers with their ``pg_get_triggerdef``), ``policies`` (RLS), ``sequences`` (owned
    serial/identity sequences), ``column_options`` (attoptions such as n_distinct), ``index_comments``,
    ``views`` (direct dependent views and materialized views with definition, owner, grants, comment, options,
    indexes and their own dependents) and ``index_tails`` (index definition after ``ON table``).

    Definitions are read with ``search_path`` set to ``pg_catalog`` so every name in them is schema-qualified
    and they can be replayed from any session.
    """
    was_autocommit = conn.autocommit
    conn.autocommit = False
    try:
        with _dict_cursor(conn) as cur:
            cur.execute("SET LOCAL search_path = pg_catalog, pg_temp")
            cur.execute(MIGRATION_FACTS_QUERY, {"oid": oid})
            row = dict(cur.fetchone())
        conn.rollback()
    finally:
        conn.autocommit = was_autocommit
    extra = row.pop("extra") or {}
    row["index_tails"] = extra.get("index_tails") or {}
    return row


PARTITION_SET_QUERY = """
WITH root AS (
    SELECT c.oid FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE n.nspname = %(schema)s AND c.relname = %(name)s AND c.relkind IN ('r', 'p')
), tree AS (
    -- pg_inherits rather than pg_partition_tree(), which takes ACCESS SHARE on every partition; bounds hold no
    -- column references, so pg_get_expr(..., 0) deparses them without opening each partition (PG 15 does)
    WITH RECURSIVE walk(oid, parent_oid, level) AS (
        SELECT root.oid, NULL::oid, 0 FROM root
        UNION ALL
        SELECT i.inhrelid, i.inhparent, w.level + 1 FROM walk w JOIN pg_inherits i ON i.inhparent = w.oid
    )
    SELECT * FROM walk
)
SELECT t.oid, t.parent_oid, t.level, n.nspname::text, c.relname::text, c.relkind::text,
       pg_get_expr(c.relpartbound, 0), c.reloptions, tc.reloptions, NULLIF(c.reltoastrelid, 0)::bigint,
       ARRAY(SELECT inh.inhparent::bigint FROM pg_index i JOIN pg_inherits inh ON inh.inhrelid = i.indexrelid
             WHERE i.indrelid = c.oid),
       CASE WHEN t.level = 0 THEN (
           SELECT json_build_object(
               -- not pg_get_partkeydef(), which takes ACCESS SHARE on the table (check mode must not wait on it)
               'definition', CASE pt.partstrat WHEN 'r' THEN 'RANGE' WHEN 'l' THEN 'LIST' ELSE 'HASH' END || ' ('
                   || (SELECT string_agg(CASE WHEN k.attnum = 0 THEN '(expression)' ELSE quote_ident(a.attname) END,
                                         ', ' ORDER BY k.o)
                       FROM unnest(pt.partattrs::int2[]) WITH ORDINALITY k(attnum, o)
                       LEFT JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = k.attnum) || ')',
               'strategy', pt.partstrat::text,
               'has_expressions', pt.partexprs IS NOT NULL,
               'columns', ARRAY(SELECT a.attname::text FROM unnest(pt.partattrs::int2[]) WITH ORDINALITY k(attnum, o)
                                JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = k.attnum ORDER BY k.o),
               'types', ARRAY(SELECT format_type(a.atttypid, a.atttypmod) FROM unnest(pt.partattrs::int2[]) WITH ORDINALITY k(attnum, o)
                              JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = k.attnum ORDER BY k.o))
           FROM pg_partitioned_table pt WHERE pt.partrelid = c.oid) END,
       CASE WHEN t.level = 0 THEN (
           SELECT json_agg(json_build_object('name', a.attname::text, 'type', format_type(a.atttypid, a.atttypmod),
                                             'generated', a.attgenerated::text, 'not_null', a.attnotnull) ORDER BY a.attnum)
           FROM pg_attribute a WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped) END,
       CASE WHEN t.level = 0 THEN (
           SELECT json_agg(json_build_object('oid', i.indexrelid::bigint, 'name', ic.relname::text, 'schema', n.nspname::text,
                                             'relkind', ic.relkind::text, 'is_unique', i.indisunique,
                                             'constraint_name', con.conname::text))
           FROM pg_index i JOIN pg_class ic ON ic.oid = i.indexrelid
           LEFT JOIN pg_constraint con ON con.conindid = i.indexrelid AND con.conrelid = i.indrelid
           WHERE i.indrelid = c.oid) END
FROM tree t
JOIN pg_class c ON c.oid = t.oid
JOIN pg_namespace n ON n.oid = c.relnamespace
LEFT JOIN pg_class tc ON tc.oid = c.reltoastrelid
ORDER BY t.level, n.nspname, c.relname
"""


def read_partition_set(conn: Connection, schema: str, name: str) -> dict[str, Any]:
    """Read what partition-set maintenance needs, in one round trip and without touching any table file.

    Unlike ``read_table`` it reads no sizes or statistics: no lock is taken on any partition, and 1,000
    partitions cost a few milliseconds. Returns the same shape as ``read_table`` for the keys it has:
    ``exists, schema, name, oid, relkind, partition_key, columns, indexes, partitions`` (each with
    ``oid, parent_oid, level, schema, name, relkind, bound_expr, bound, low, high, reloptions,
    toast_reloptions, toast_oid, indexes`` = ``[{"parent_index_oid"}]``).
    """
    rows = _fetch_all(conn, PARTITION_SET_QUERY, {"schema": schema, "name": name})
    if not rows:
        return {"schema": schema, "name": name, "exists": False}
    entries = []
    for row in rows:
        (
            oid,
            parent_oid,
            level,
            nsp,
            rel,
            relkind,
            bound_expr,
            reloptions,
            toast_reloptions,
            toast_oid,
            index_parents,
            key,
            columns,
            indexes,
        ) = row
        entries.append(
            {
                "oid": oid,
                "parent_oid": parent_oid,
                "level": level,
                "schema": nsp,
                "name": rel,
                "relkind": relkind,
                "is_leaf": relkind == "r",
                "bound_expr": bound_expr,
                "bound": parse_partition_bound(bound_expr) if bound_expr else None,
                "reloptions": parse_options(reloptions),
                "toast_reloptions": parse_options(toast_reloptions),
                "toast_oid": toast_oid,
                "indexes": [{"parent_index_oid": p} for p in index_parents or []],
                "partition_key": None,
                "columns": columns or [],
                "all_indexes": indexes or [],
            }
        )
        if key:
            key["strategy"] = STRATEGY_NAMES.get(key["strategy"], key["strategy"])
            entries[-1]["partition_key"] = key
    table = dict(entries[0])
    table["exists"] = True
    table["indexes"] = table.pop("all_indexes")
    table["relations"] = {e["oid"]: e for e in entries}
    table["partitions"] = entries[1:]
    _type_bounds(table)
    return table


PARTITION_SET_DETAILS_QUERY = """
WITH RECURSIVE walk(oid, detach_pending) AS (
    SELECT %(root)s::oid, false
    UNION ALL
    SELECT i.inhrelid, i.inhdetachpending FROM walk w JOIN pg_inherits i ON i.inhparent = w.oid
)
SELECT w.oid, w.detach_pending,
       COALESCE((SELECT json_agg(json_build_object(
                    'oid', i.indexrelid::bigint, 'name', ic.relname::text, 'schema', n.nspname::text,
                    'is_valid', i.indisvalid AND i.indisready, 'is_unique', i.indisunique,
                    'parent_index_oid', inh.inhparent::bigint, 'constraint_name', con.conname::text))
                 FROM pg_index i JOIN pg_class ic ON ic.oid = i.indexrelid
                 JOIN pg_namespace n ON n.oid = ic.relnamespace
                 LEFT JOIN pg_inherits inh ON inh.inhrelid = i.indexrelid
                 LEFT JOIN pg_constraint con ON con.conindid = i.indexrelid AND con.conrelid = i.indrelid
                 WHERE i.indrelid = w.oid), '[]'::json)
FROM walk w
"""

RELATIONS_NAMED_QUERY = """
SELECT n.nspname::text, c.relname::text, c.relkind::text, i.indrelid::bigint
FROM unnest(%(schemas)s::text[], %(names)s::text[]) AS w(schema_name, rel_name)
JOIN pg_namespace n ON n.nspname = w.schema_name
JOIN pg_class c ON c.relnamespace = n.oid AND c.relname = w.rel_name
LEFT JOIN pg_index i ON i.indexrelid = c.oid
"""

DEPENDENT_OBJECTS_QUERY = """
SELECT d.refobjid::bigint, format('%%s %%I.%%I', CASE v.relkind WHEN 'm' THEN 'materialized view' ELSE 'view' END,
                                  vn.nspname, v.relname)
FROM pg_depend d
JOIN pg_rewrite r ON r.oid = d.objid
JOIN pg_class v ON v.oid = r.ev_class
JOIN pg_namespace vn ON vn.oid = v.relnamespace
WHERE d.classid = 'pg_rewrite'::regclass AND d.refclassid = 'pg_class'::regclass
  AND d.refobjid = ANY(%(oids)s::oid[]) AND v.oid <> d.refobjid
UNION
SELECT con.confrelid::bigint, format('foreign key %%I of %%I.%%I', con.conname, tn.nspname, t.relname)
FROM pg_constraint con
JOIN pg_class t ON t.oid = con.conrelid
JOIN pg_namespace tn ON tn.oid = t.relnamespace
WHERE con.contype = 'f' AND con.confrelid = ANY(%(oids)s::oid[]) AND con.conparentid = 0
ORDER BY 1, 2
"""


def partition_set_details(conn: Connection, table: dict[str, Any]) -> dict[str, Any]:
    """Add what ``read_partition_set`` leaves out and the partition planner needs, in one round trip on the
    catalog only (no lock on any table): every index of the tree with its validity (an INVALID index, left by a
    cancelled ``CREATE INDEX CONCURRENTLY``, counts as absent) and ``detach_pending`` on partitions whose
    ``DETACH ... CONCURRENTLY`` was interrupted. Returns a new table dict; ``table`` is left as it was.
    """
    if not table.get("exists") or table.get("relkind") != "p":
        return table
    with conn.cursor() as cur:
        cur.execute(PARTITION_SET_DETAILS_QUERY, {"root": table["oid"]})
        rows = {oid: (pending, indexes) for oid, pending, indexes in cur.fetchall()}
    _end_read(conn)
    result = dict(table)
    result["partitions"] = []
    for entry in table["partitions"]:
        pending, indexes = rows.get(entry["oid"], (False, None))
        detailed = dict(entry, detach_pending=bool(pending))
        if indexes is not None:
            detailed["indexes"] = indexes
        result["partitions"].append(detailed)
    valid = {i["oid"]: i["is_valid"] for i in rows.get(table["oid"], (False, []))[1]}
    result["indexes"] = [dict(i, is_valid=valid.get(i["oid"], True)) for i in table.get("indexes") or []]
    return result


def relations_named(conn: Connection, names: Iterable[tuple[str, str]]) -> dict[tuple[str, str], dict[str, Any]]:
    """Return ``{(schema, name): {"relkind", "table_oid"}}`` for those of ``names`` that exist (``table_oid``:
    the table of an index, else None)."""
    names = list(names)
    if not names:
        return {}
    rows = _fetch_all(conn, RELATIONS_NAMED_QUERY, {"schemas": [n[0] for n in names], "names": [n[1] for n in names]})
    return {(s, n): {"relkind": k, "table_oid": t} for s, n, k, t in rows}


def dependent_objects(conn: Connection, oids: Iterable[int]) -> dict[int, list[str]]:
    """Return ``{table oid: ["view public.v", "foreign key fk of public.t", ...]}``: what makes DROP TABLE fail."""
    oids = list(oids)
    if not oids:
        return {}
    rows = _fetch_all(conn, DEPENDENT_OBJECTS_QUERY, {"oids": oids})
    found = {}
    for oid, what in rows:
        found.setdefault(oid, []).append(what)
    return found


MIGRATION_HAZARDS_QUERY = """
WITH t AS (SELECT c.oid, c.reltype, ty.typarray FROM pg_class c JOIN pg_type ty ON ty.oid = c.reltype
           WHERE c.oid = %(oid)s::oid)
SELECT
  (SELECT coalesce(json_agg(quote_ident(n.nspname) || '.' || quote_ident(c.relname) ORDER BY 1), '[]')
   FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhparent JOIN pg_namespace n ON n.oid = c.relnamespace
   WHERE i.inhrelid = (SELECT oid FROM t)) AS inherits_from,
  (SELECT coalesce(json_agg(quote_ident(n.nspname) || '.' || quote_ident(c.relname) ORDER BY 1), '[]')
   FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid JOIN pg_namespace n ON n.oid = c.relnamespace
   WHERE i.inhparent = (SELECT oid FROM t)) AS inherited_by,
  (SELECT coalesce(json_agg(json_build_object(
        'name', ic.relname::text, 'unique', i.indisunique, 'primary', i.indisprimary, 'valid', i.indisvalid,
        'key_columns', ARRAY(SELECT a.attname::text FROM unnest(i.indkey::int2[]) WITH ORDINALITY k(n, o)
                             JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.n
                             WHERE k.o <= i.indnkeyatts ORDER BY k.o),
        'key_count', i.indnkeyatts, 'has_expressions', i.indexprs IS NOT NULL,
        'predicate', pg_get_expr(i.indpred, i.indrelid), 'constraint', con.conname::text,
        'constraint_type', con.contype::text, 'deferrable', coalesce(con.condeferrable, false),
        'clustered', i.indisclustered, 'reloptions', ic.reloptions)
        ORDER BY ic.relname), '[]')
   FROM pg_index i JOIN pg_class ic ON ic.oid = i.indexrelid
   LEFT JOIN pg_constraint con ON con.conindid = i.indexrelid AND con.conrelid = i.indrelid
   WHERE i.indrelid = (SELECT oid FROM t)) AS indexes,
  (SELECT coalesce(json_agg(DISTINCT d.objid::regprocedure::text), '[]')
   FROM pg_depend d WHERE d.classid = 'pg_proc'::regclass AND d.refclassid = 'pg_type'::regclass
     AND d.refobjid IN ((SELECT reltype FROM t), (SELECT typarray FROM t))) AS rowtype_functions,
  (SELECT coalesce(json_agg(DISTINCT quote_ident(n.nspname) || '.' || quote_ident(c.relname) || '.'
                            || quote_ident(a.attname)), '[]')
   FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace
   WHERE a.atttypid IN ((SELECT reltype FROM t), (SELECT typarray FROM t)) AND NOT a.attisdropped
     AND c.relkind IN ('r', 'p', 'f', 'm')) AS rowtype_columns,
  (SELECT coalesce(json_agg(json_build_object('name', r.rulename::text, 'definition', pg_get_ruledef(r.oid),
                                              'enabled', r.ev_enabled::text) ORDER BY r.rulename), '[]')
   FROM pg_rewrite r WHERE r.ev_class = (SELECT oid FROM t) AND r.rulename <> '_RETURN') AS rules,
  (SELECT coalesce(json_agg(DISTINCT jsonb_build_object(
        'name', r.rulename::text, 'oid', c.oid::bigint, 'schema', n.nspname::text, 'relation', c.relname::text,
        'table', quote_ident(n.nspname) || '.' || quote_ident(c.relname), 'definition', pg_get_ruledef(r.oid))),
        '[]')
   FROM pg_depend d JOIN pg_rewrite r ON r.oid = d.objid JOIN pg_class c ON c.oid = r.ev_class
   JOIN pg_namespace n ON n.oid = c.relnamespace
   WHERE d.classid = 'pg_rewrite'::regclass AND d.refclassid = 'pg_class'::regclass
     AND d.refobjid = (SELECT oid FROM t) AND r.ev_class <> d.refobjid AND r.rulename <> '_RETURN') AS foreign_rules,
  (SELECT coalesce(json_agg(p.pubname::text ORDER BY p.pubname), '[]')
   FROM pg_publication_rel pr JOIN pg_publication p ON p.oid = pr.prpubid
   WHERE pr.prrelid = (SELECT oid FROM t)) AS publications,
  (SELECT coalesce(json_agg(json_build_object('name', tg.tgname::text, 'function', tg.tgfoid::regprocedure::text,
                                              'source', p.prosrc) ORDER BY tg.tgname), '[]')
   FROM pg_trigger tg JOIN pg_proc p ON p.oid = tg.tgfoid
   -- tgtype bits: 1 row, 2 before, 4 insert, 16 update
   WHERE tg.tgrelid = (SELECT oid FROM t) AND NOT tg.tgisinternal AND tg.tgtype & 3 = 3
     AND tg.tgtype & 20 <> 0) AS before_row_triggers,
  (SELECT has_database_privilege(current_database(), 'CREATE')) AS can_create_schema,
  (SELECT has_schema_privilege(n.oid, 'CREATE') AND has_schema_privilege(n.oid, 'USAGE')
   FROM pg_namespace n WHERE n.nspname = 'sigeti_dwh') AS can_create_in_state_schema,
  (SELECT has_table_privilege(c.oid, 'SELECT') AND has_table_privilege(c.oid, 'INSERT')
          AND has_table_privilege(c.oid, 'UPDATE') AND has_table_privilege(c.oid, 'DELETE')
   FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
   WHERE n.nspname = 'sigeti_dwh' AND c.relname = 'migration_state') AS can_write_state,
  current_user::text AS current_user
"""


def migration_hazards(conn, oid):
    """Read what a migration of table ``oid`` must refuse or treat specially, decided on catalog numbers.

    Returns a dict: ``inherits_from`` / ``inherited_by`` (qualified names, table inheritance), ``indexes``
    (name, unique, primary, valid, ``key_columns`` from ``pg_index.indkey`` up to ``indnkeyatts`` (expressions
    left out), ``key_count``, ``has_expressions``, ``predicate``, constraint name/type, deferrable),
    ``rowtype_functions`` (functions whose signature uses the table's row type), ``rowtype_columns`` (columns of
    other relations typed by it), ``rules`` (rules on the table: name, definition, enabled), ``foreign_rules``
    (rules of other relations that reference it: name, schema, relation, table, oid, definition),
    ``publications``, ``before_row_triggers`` (BEFORE INSERT/UPDATE row triggers with their function's source),
    ``can_create_schema`` (CREATE on the database) and
    ``can_create_in_state_schema`` (CREATE and USAGE on ``sigeti_dwh``, None when it does not exist yet),
    ``can_write_state`` (on ``sigeti_dwh.migration_state``, None when absent) and ``current_user``.
    """
    was_autocommit = conn.autocommit
    conn.autocommit = False
    try:
        with _dict_cursor(conn) as cur:
            cur.execute("SET LOCAL search_path = pg_catalog, pg_temp")
            cur.execute(MIGRATION_HAZARDS_QUERY, {"oid": oid})
            row = dict(cur.fetchone())
        conn.rollback()
    finally:
        conn.autocommit = was_autocommit
    return row
