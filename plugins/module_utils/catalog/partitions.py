# Copyright: (c) 2026, SIGETI data platform team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Reads behind a partition set's plan: row counts, newest keys, names taken, index definitions, dependents."""

from __future__ import annotations

import datetime
from typing import TYPE_CHECKING, Any, Iterable

try:
    from psycopg2 import sql
except ImportError:  # reported by the connection layer
    sql = None

if TYPE_CHECKING:  # names used in annotations only
    from psycopg2.sql import Composable

    from ansible_collections.sigeti.dwh.plugins.module_utils.session.connection import Connection
from ansible_collections.sigeti.dwh.plugins.module_utils.catalog.reads import end_read, fetch_all, fetch_one
from ansible_collections.sigeti.dwh.plugins.module_utils.core.periods import TimeZoneDays

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
    ``min(key)`` and ``max(key)``, and which of ``schemas`` exist.

    ``default`` is ``(schema, name)`` of the default partition or None; ``parent`` and ``key`` ask for the
    smallest and largest key values of a plain table (a migration source). With ``estimate`` no row is read (no lock on any
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
        parts.append(
            sql.SQL("(SELECT ARRAY[min({k}), max({k})] FROM {t})").format(
                k=sql.Identifier(key), t=sql.Identifier(*parent)
            )
        )
    else:
        parts.append(sql.SQL("NULL::bigint[]"))
    parts.append(
        sql.SQL("ARRAY(SELECT nspname::text FROM pg_namespace WHERE nspname = ANY({}::text[]))").format(
            sql.Literal(list(schemas))
        )
    )
    today, timezone, default_rows, keys, found = fetch_one(conn, sql.SQL("SELECT ") + sql.SQL(", ").join(parts))
    min_key, max_key = keys or (None, None)
    return {
        "today": today,
        "timezone": timezone,
        "default_rows": default_rows,
        "min_key": min_key,
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
        row = fetch_one(conn, sql.SQL("SELECT ") + sql.SQL(", ").join(parts))
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
    end_read(conn)
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
    end_read(conn)
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
    end_read(conn)
    return {value: datetime.datetime(day.year, day.month, day.day) for value, day in rows}


# Each day's local midnight as the server places it (the instant a timestamptz bound written as midnight gets),
# kept where the shift from UTC midnight changes: ~2 rows a year. 3 us a day on the server.
TIME_ZONE_DAYS_QUERY = """
SELECT current_setting('TimeZone'), d, shift FROM (
    SELECT d, shift, lag(shift) OVER (ORDER BY d) AS before FROM (
        SELECT g::date AS d,
               extract(epoch FROM g::timestamp::timestamptz)::bigint - (g::date - date '1970-01-01')::bigint * 86400
                   AS shift
        FROM generate_series(%(first)s::timestamp, %(last)s::timestamp, interval '1 day') g
    ) days
) runs
WHERE before IS DISTINCT FROM shift
ORDER BY d
"""


def time_zone_days(conn: Connection, first: datetime.date, last: datetime.date) -> TimeZoneDays:
    """Return the session TimeZone's local midnights from ``first`` to ``last`` (what epoch keys are bounded at), in
    one round trip on no table. ``last - first`` days are computed by the server: keep the span to what a plan needs.
    """
    rows = fetch_all(conn, TIME_ZONE_DAYS_QUERY, {"first": first, "last": last})
    return TimeZoneDays(rows[0][0], first, last, tuple((day, int(shift)) for _zone, day, shift in rows))


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
    # An index lookup per name: compared as text, the names made the planner filter every relation of the schema
    # for each of them (8M comparisons, 5 s, for 1,000 new partitions).
    parts = [
        sql.SQL(
            "ARRAY(SELECT ARRAY[n.nspname::text, c.relname::text] "
            "FROM unnest({}::text[], {}::text[]) AS w(schema_name, rel_name) "
            "JOIN pg_namespace n ON n.nspname = w.schema_name "
            "JOIN pg_class c ON c.relnamespace = n.oid AND c.relname = w.rel_name)"
        ).format(sql.Literal([n[0] for n in names]), sql.Literal([n[1] for n in names]))
    ]
    ranges = list(ranges)
    if default and ranges:
        # Each row finds its range by a binary search over the ranges' low bounds (sorted: the periods in order),
        # then is counted when below that range's high bound. One count(*) FILTER per range made the planner compare
        # every aggregate with every other: 16 s to plan 3,265 of them.
        parts.append(
            sql.SQL(
                "(SELECT json_object_agg(b, n) FROM (SELECT b, count(*) AS n FROM ("
                "SELECT width_bucket({k}, ARRAY[{lows}]) AS b, {k} AS v FROM {d}) s "
                "WHERE b > 0 AND v < (ARRAY[{highs}])[b] GROUP BY b) g)"
            ).format(
                k=sql.Identifier(key),
                lows=sql.SQL(", ").join(lo for lo, _hi in ranges),
                highs=sql.SQL(", ").join(hi for _lo, hi in ranges),
                d=sql.Identifier(*default),
            )
        )
    row = fetch_one(conn, sql.SQL("SELECT ") + sql.SQL(", ").join(parts))
    taken = {tuple(x) for x in (row[0] or [])}
    found = (row[1] if len(row) > 1 else None) or {}
    counts = [int(found.get(str(index), 0)) for index in range(1, len(ranges) + 1)]
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
    rows = fetch_all(conn, INDEX_TAILS_QUERY, {"oids": list(oids)})
    tails = {}
    for oid, definition, prefix in rows:
        if definition.startswith(prefix):
            tails[oid] = definition[len(prefix) :]
    return tails


def resolve_types(conn: Connection, type_names: Iterable[str]) -> dict[str, str | None]:
    """Return ``{text: format_type name or None}`` for type names written by a user (None: no such type)."""
    names = list(type_names)
    rows = dict(fetch_all(conn, "SELECT t, format_type(to_regtype(t), NULL) FROM unnest(%s::text[]) AS t", (names,)))
    return rows


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
    end_read(conn)
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
    rows = fetch_all(conn, RELATIONS_NAMED_QUERY, {"schemas": [n[0] for n in names], "names": [n[1] for n in names]})
    return {(s, n): {"relkind": k, "table_oid": t} for s, n, k, t in rows}


def dependent_objects(conn: Connection, oids: Iterable[int]) -> dict[int, list[str]]:
    """Return ``{table oid: ["view public.v", "foreign key fk of public.t", ...]}``: what makes DROP TABLE fail."""
    oids = list(oids)
    if not oids:
        return {}
    rows = fetch_all(conn, DEPENDENT_OBJECTS_QUERY, {"oids": oids})
    found = {}
    for oid, what in rows:
        found.setdefault(oid, []).append(what)
    return found


REFERENCED_TABLES_QUERY = """
SELECT DISTINCT n.nspname::text, c.relname::text,
       has_table_privilege(c.oid, 'UPDATE, DELETE, TRUNCATE')
       OR CASE WHEN current_setting('server_version_num')::int >= 170000
               THEN has_table_privilege(c.oid, 'MAINTAIN') ELSE false END
FROM pg_constraint con
JOIN pg_class c ON c.oid = con.confrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE con.contype = 'f' AND con.conrelid = %(oid)s::oid AND con.confrelid <> con.conrelid
ORDER BY 1, 2
"""


def referenced_tables(conn: Connection, oid: int) -> list[tuple[str, str, bool]]:
    """Return ``(schema, name, lockable)`` of each table the foreign keys of table ``oid`` reference, once, sorted
    (a foreign key to the table itself left out). Attaching a partition to a partitioned table with foreign keys
    clones them onto it, which takes SHARE ROW EXCLUSIVE on each of these tables. ``lockable``: this role may take
    that lock itself with LOCK TABLE (it needs UPDATE, DELETE, TRUNCATE or, on 17+, MAINTAIN there; the foreign key
    needs only REFERENCES). Reads the catalog only."""
    return [
        (schema, name, bool(lockable))
        for schema, name, lockable in fetch_all(conn, REFERENCED_TABLES_QUERY, {"oid": oid})
    ]
