# Copyright: (c) 2026, SIGETI data platform team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The reads of Parquet archives: a table's columns and place in its partition set, the server's identity, and the
content scan (row count, checksum and the values Parquet cannot hold, in one pass).

Every read but :func:`scan_table` ends its transaction (``catalog_reads``). :func:`scan_table` runs in the caller's
transaction on purpose: the export scans and copies the partition in one REPEATABLE READ snapshot, so the checksum
in the manifest is the checksum of the rows in the file.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Sequence

from ansible_collections.sigeti.dwh.plugins.module_utils.archive.manifest import (
    CANONICAL_SETTINGS,
    Checksum,
    ServerIdentity,
    checksum_of,
)
from ansible_collections.sigeti.dwh.plugins.module_utils.archive.types import ColumnFacts, ValueCheck
from ansible_collections.sigeti.dwh.plugins.module_utils.catalog.reads import end_read, fetch_all, fetch_one
from ansible_collections.sigeti.dwh.plugins.module_utils.core.errors import InvalidInput
from ansible_collections.sigeti.dwh.plugins.module_utils.core.identifiers import display_name, relation

try:
    from psycopg2 import sql
except ImportError:  # reported by the connection layer
    sql = None

if TYPE_CHECKING:  # names used in annotations only
    from psycopg2.sql import Composable

    from ansible_collections.sigeti.dwh.plugins.module_utils.session.connection import Connection

# Values from constants only: SET LOCAL takes no parameters.
ROW_ALIAS = "r"
PIN_SETTINGS = "".join("SET LOCAL %s = '%s';\n" % (name, value) for name, value in CANONICAL_SETTINGS)

TABLE_QUERY = """
SELECT c.oid::bigint, c.relkind::text, c.relispartition,
       pn.nspname::text, p.relname::text,
       CASE WHEN c.relispartition THEN pg_get_expr(c.relpartbound, c.oid) END
FROM pg_class c
JOIN pg_namespace n ON n.oid = c.relnamespace
LEFT JOIN pg_inherits i ON c.relispartition AND i.inhrelid = c.oid
LEFT JOIN pg_class p ON p.oid = i.inhparent
LEFT JOIN pg_namespace pn ON pn.oid = p.relnamespace
WHERE n.nspname = %s AND c.relname = %s
"""

# Plain tables in no partition set and no inheritance tree, among the given (schema, name) pairs.
DETACHED_QUERY = """
SELECT n.nspname::text, c.relname::text, c.oid::bigint
FROM unnest(%s::text[], %s::text[]) AS w(nspname, relname)
JOIN pg_namespace n ON n.nspname = w.nspname
JOIN pg_class c ON c.relnamespace = n.oid AND c.relname = w.relname
WHERE c.relkind = 'r' AND NOT c.relispartition
  AND NOT EXISTS (SELECT 1 FROM pg_inherits i WHERE i.inhrelid = c.oid OR i.inhparent = c.oid)
"""

# The element type for arrays; a collation only when it is not the type's own (then ATTACH needs it equal).
COLUMNS_QUERY = """
SELECT a.attname::text, format_type(a.atttypid, a.atttypmod), tn.nspname::text, t.typname::text, t.typtype::text,
       a.atttypmod, e.oid IS NOT NULL, a.attnotnull, a.attgenerated <> '', cn.nspname::text, co.collname::text
FROM pg_attribute a
JOIN pg_type at ON at.oid = a.atttypid
LEFT JOIN pg_type e ON at.typcategory = 'A' AND at.typelem <> 0 AND e.oid = at.typelem
JOIN pg_type t ON t.oid = coalesce(e.oid, at.oid)
JOIN pg_namespace tn ON tn.oid = t.typnamespace
LEFT JOIN pg_collation co ON a.attcollation <> 0 AND a.attcollation <> t.typcollation AND co.oid = a.attcollation
LEFT JOIN pg_namespace cn ON cn.oid = co.collnamespace
WHERE a.attrelid = %s AND a.attnum > 0 AND NOT a.attisdropped
ORDER BY a.attnum
"""

SERVER_QUERY = """
SELECT current_setting('server_version'), current_database()::text, current_setting('cluster_name'),
       host(inet_server_addr()), inet_server_port(),
       has_function_privilege('pg_control_system()', 'EXECUTE')
"""
SYSTEM_IDENTIFIER_QUERY = "SELECT system_identifier::text FROM pg_control_system()"


@dataclasses.dataclass(frozen=True)
class TableFacts:
    """Where a table sits: its kind (``r`` plain, ``p`` partitioned), its parent and bound when it is a partition."""

    schema: str
    name: str
    oid: int
    kind: str
    parent: tuple[str, str] | None
    bound: str | None


@dataclasses.dataclass(frozen=True)
class ScanFacts:
    """One pass over a table: its content checksum and, per value check, how many rows failed it."""

    checksum: Checksum
    problems: tuple[int, ...]


def read_table(conn: Connection, schema: str, name: str) -> TableFacts | None:
    """The table ``schema.name`` (None when there is no such table)."""
    row = fetch_one(conn, TABLE_QUERY, (schema, name))
    if row is None or row[1] not in ("r", "p"):
        return None
    oid, kind, is_partition, parent_schema, parent, bound = row
    return TableFacts(schema, name, oid, kind, (parent_schema, parent) if is_partition else None, bound)


def read_detached(conn: Connection, tables: Sequence[tuple[str, str]]) -> dict[tuple[str, str], int]:
    """The OID of each of ``tables`` that is a plain table outside any partition set or inheritance tree."""
    if not tables:
        return {}
    rows = fetch_all(conn, DETACHED_QUERY, ([t[0] for t in tables], [t[1] for t in tables]))
    return {(schema, name): oid for schema, name, oid in rows}


def read_columns(conn: Connection, table: TableFacts) -> tuple[ColumnFacts, ...]:
    """The live columns of ``table`` in their order, with their (element) types as the archive rules need them."""
    rows = fetch_all(conn, COLUMNS_QUERY, (table.oid,))
    return tuple(
        ColumnFacts(
            name=name,
            pg_type=pg_type,
            type_schema=type_schema,
            type_name=type_name,
            type_kind=type_kind,
            typmod=typmod,
            is_array=is_array,
            not_null=not_null,
            generated=generated,
            collation=(coll_schema, coll_name) if coll_name else None,
        )
        for (
            name,
            pg_type,
            type_schema,
            type_name,
            type_kind,
            typmod,
            is_array,
            not_null,
            generated,
            coll_schema,
            coll_name,
        ) in rows
    )


# The parent's CHECK constraints (not NO INHERIT) that the table to attach lacks by name: ATTACH PARTITION requires
# them on the partition and does not add them itself. An absent target lacks them all.
MISSING_CHECKS_QUERY = """
SELECT p.conname::text, pg_get_constraintdef(p.oid)
FROM pg_constraint p
WHERE p.conrelid = %s::oid AND p.contype = 'c' AND NOT p.connoinherit
  AND NOT EXISTS (SELECT 1 FROM pg_constraint t JOIN pg_class c ON c.oid = t.conrelid
                  JOIN pg_namespace n ON n.oid = c.relnamespace
                  WHERE n.nspname = %s AND c.relname = %s AND t.conname = p.conname)
ORDER BY 1
"""


def read_missing_checks(conn: Connection, parent: TableFacts, schema: str, name: str) -> tuple[tuple[str, str], ...]:
    """``(name, definition)`` of each CHECK constraint of ``parent`` that ``schema.name`` (absent or not) lacks."""
    rows = fetch_all(conn, MISSING_CHECKS_QUERY, (parent.oid, schema, name))
    return tuple((con_name, definition) for con_name, definition in rows)


def server_identity(conn: Connection) -> ServerIdentity:
    """Version, system identifier (when this role may read it), database, cluster name and address of the server."""
    version, database, cluster_name, address, port, may_read_control = fetch_one(conn, SERVER_QUERY)
    system_identifier = fetch_one(conn, SYSTEM_IDENTIFIER_QUERY)[0] if may_read_control else None
    return ServerIdentity(version, system_identifier, database, cluster_name, address, port)


def scan_query(schema: str, name: str, checks: Sequence[ValueCheck]) -> Composable:
    """``count(*)``, the checksum's two sums and one count per check, in one pass over ``ONLY schema.name``.

    The digest is computed once per row (``OFFSET 0`` keeps the lateral subquery from being folded into both sums).
    The row is ``ROW(r.*)``, never ``r::text``: in ``r::text`` a column named ``r`` wins over the table alias, and
    the checksum would cover that one column (found by the round-trip test, whose table has a column ``t``).
    """
    counts = [
        sql.SQL("count(*) FILTER (WHERE {})").format(
            sql.SQL(check.predicate.replace("{c}", "{column}")).format(column=sql.Identifier(ROW_ALIAS, check.column))
        )
        for check in checks
    ]
    return sql.SQL(
        "SELECT count(*), sum(('x' || substr(d.digest, 1, 16))::bit(64)::bigint), "
        "sum(('x' || substr(d.digest, 17, 16))::bit(64)::bigint){extra} "
        "FROM ONLY {table} AS {alias} CROSS JOIN LATERAL (SELECT md5(ROW({alias}.*)::text) AS digest OFFSET 0) AS d"
    ).format(
        extra=sql.SQL("").join(sql.SQL(", {}").format(c) for c in counts),
        table=relation(schema, name),
        alias=sql.Identifier(ROW_ALIAS),
    )


def pin_settings(conn: Connection) -> None:
    """Set the canonical row-text settings for the rest of the caller's transaction (not under autocommit)."""
    with conn.cursor() as cur:
        cur.execute(PIN_SETTINGS)


def scan_table(conn: Connection, schema: str, name: str, checks: Sequence[ValueCheck]) -> ScanFacts:
    """Scan ``schema.name`` in the caller's open transaction (settings pinned first); the transaction stays open."""
    if conn.autocommit:
        raise InvalidInput("scan_table needs an open transaction: the export's copy must see the same rows")
    pin_settings(conn)
    with conn.cursor() as cur:
        cur.execute(scan_query(schema, name, checks))
        row = cur.fetchone()
    return ScanFacts(checksum_of(row[0], row[1], row[2]), tuple(int(v) for v in row[3:]))


def checksum_table(conn: Connection, schema: str, name: str) -> Checksum:
    """The content checksum of ``schema.name`` now, in a transaction of its own (ended before returning)."""
    query = sql.SQL("{}{}").format(sql.SQL(PIN_SETTINGS), scan_query(schema, name, ()))
    with conn.cursor() as cur:
        cur.execute(query)
        row = cur.fetchone()
    end_read(conn)
    return checksum_of(row[0], row[1], row[2])


def missing_table(schema: str, name: str) -> InvalidInput:
    """The error for a table that is not there."""
    return InvalidInput(
        "table %s does not exist: check the schema and name (quote mixed-case names)" % display_name(schema, name)
    )
