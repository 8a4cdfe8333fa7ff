# Copyright: (c) 2026, SIGETI data platform team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Where relations are stored: the tablespace of partitions and of their indexes, and the tablespaces tiers name.

``pg_class.reltablespace`` is 0 for a relation in the database's default tablespace: these reads name that one
instead, so a placement always reads as a tablespace name.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Iterable, Sequence

from ansible_collections.sigeti.dwh.plugins.module_utils.catalog.reads import dict_cursor, end_read

if TYPE_CHECKING:  # names used in annotations only
    from ansible_collections.sigeti.dwh.plugins.module_utils.session.connection import Connection

DATABASE_DEFAULT = (
    "(SELECT s.spcname FROM pg_database d JOIN pg_tablespace s ON s.oid = d.dattablespace "
    "WHERE d.datname = current_database())"
)

# The catalog only: no lock on any table.
PLACEMENT_QUERY = (
    """
SELECT c.oid::bigint AS oid, n.nspname::text AS schema, c.relname::text AS name,
       coalesce(t.spcname, """
    + DATABASE_DEFAULT
    + """)::text AS tablespace,
       coalesce((SELECT json_agg(json_build_object('schema', n.nspname::text, 'name', ic.relname::text,
                                                   'tablespace', coalesce(it.spcname, """
    + DATABASE_DEFAULT
    + """)::text) ORDER BY ic.relname)
                 FROM pg_index i JOIN pg_class ic ON ic.oid = i.indexrelid
                 LEFT JOIN pg_tablespace it ON it.oid = ic.reltablespace
                 WHERE i.indrelid = c.oid), '[]'::json) AS indexes,
       ((c.relpages::bigint + coalesce(tc.relpages, 0)
         + coalesce((SELECT sum(ic.relpages) FROM pg_index i JOIN pg_class ic ON ic.oid = i.indexrelid
                     WHERE i.indrelid = c.oid), 0)) * current_setting('block_size')::bigint)::bigint AS estimated_bytes
FROM pg_class c
JOIN pg_namespace n ON n.oid = c.relnamespace
LEFT JOIN pg_tablespace t ON t.oid = c.reltablespace
LEFT JOIN pg_class tc ON tc.oid = c.reltoastrelid
WHERE c.oid = ANY(%(oids)s::oid[])
ORDER BY c.oid
"""
)

# pg_total_relation_size opens each relation: ACCESS SHARE, so this read waits behind an ACCESS EXCLUSIVE lock.
SIZES_QUERY = "SELECT oid::bigint, pg_total_relation_size(oid)::bigint FROM unnest(%(oids)s::oid[]) AS w(oid)"

TABLESPACES_QUERY = (
    """
SELECT w.name, t.oid IS NOT NULL AS exists, coalesce(pg_tablespace_location(t.oid), '') AS location,
       coalesce(t.spcname = """
    + DATABASE_DEFAULT
    + """, false) AS database_default,
       CASE WHEN t.oid IS NOT NULL AND %(owner)s IS NOT NULL
            THEN has_tablespace_privilege(%(owner)s, t.oid, 'CREATE') ELSE false END AS owner_can_create,
       CASE WHEN t.oid IS NOT NULL THEN has_tablespace_privilege(t.oid, 'CREATE') ELSE false END AS user_can_create
FROM unnest(%(names)s::text[]) AS w(name)
LEFT JOIN pg_tablespace t ON t.spcname = w.name
"""
)


def placements(conn: Connection, oids: Iterable[int]) -> dict[int, dict[str, Any]]:
    """``{oid: {"schema", "name", "tablespace", "indexes": [{"schema", "name", "tablespace"}], "estimated_bytes"}}``
    of the relations ``oids`` (the catalog only; ``estimated_bytes`` from ``relpages``, as of the last VACUUM or
    ANALYZE)."""
    oids = list(oids)
    if not oids:
        return {}
    with dict_cursor(conn) as cur:
        cur.execute(PLACEMENT_QUERY, {"oids": oids})
        rows = {int(r["oid"]): dict(r) for r in cur.fetchall()}
    end_read(conn)
    return rows


def total_bytes(conn: Connection, oids: Iterable[int], lock_wait: str | None = None) -> dict[int, int]:
    """``{oid: bytes}``: each relation with its TOAST table and indexes (``pg_total_relation_size``, ACCESS SHARE on
    each). With ``lock_wait`` (check mode) the read waits at most that long for a lock, then fails (lock_timeout)."""
    oids = list(oids)
    if not oids:
        return {}
    with dict_cursor(conn) as cur:
        # one round trip, one transaction (under autocommit too): the lock_timeout set here ends with the read
        wait = "SELECT set_config('lock_timeout', %(wait)s, true);\n" if lock_wait else ""
        cur.execute(wait + SIZES_QUERY, {"oids": oids, "wait": lock_wait})
        sizes = {int(r["oid"]): int(r["pg_total_relation_size"]) for r in cur.fetchall()}
    end_read(conn)
    return sizes


def tablespaces(conn: Connection, names: Sequence[str], owner: str | None) -> list[dict[str, Any]]:
    """Each tablespace of ``names``: ``exists``, ``location`` (empty for pg_default), ``database_default``, and
    whether ``owner`` and the connecting role have CREATE on it."""
    with dict_cursor(conn) as cur:
        cur.execute(TABLESPACES_QUERY, {"names": list(names), "owner": owner})
        rows = [dict(r) for r in cur.fetchall()]
    end_read(conn)
    return rows


def table_owner(conn: Connection, schema: str, name: str) -> tuple[str | None, str]:
    """The owner of ``schema.name`` and the connecting role: ``(owner, current_user)``."""
    with dict_cursor(conn) as cur:
        cur.execute(
            "SELECT (SELECT pg_get_userbyid(c.relowner)::text FROM pg_class c JOIN pg_namespace n "
            "ON n.oid = c.relnamespace WHERE n.nspname = %s AND c.relname = %s) AS owner, current_user::text AS user",
            (schema, name),
        )
        row = cur.fetchone()
    end_read(conn)
    return row["owner"], row["user"]
