# Copyright: (c) 2026, SIGETI data platform team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What the roll-up of old partitions reads from the catalog (no lock on any table): the storage of the partitions
(tablespace, access method, storage parameters), the parent's columns and indexes (with the definition of the
constraints behind them), the foreign keys in and out of the set, and the relations whose names a merge would take
or left behind (``<target>_sgt_rollup``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Iterable

from ansible_collections.sigeti.dwh.plugins.module_utils.catalog.reads import dict_cursor, end_read

if TYPE_CHECKING:  # names used in annotations only
    from ansible_collections.sigeti.dwh.plugins.module_utils.session.connection import Connection

# pg_class.reltablespace = 0: the database's default tablespace, written '' (default_tablespace's "the default")
STORAGE_QUERY = """
SELECT c.oid::bigint AS oid, coalesce(t.spcname, '')::text AS tablespace, am.amname::text AS access_method,
       coalesce(c.reloptions, '{}')::text[] AS reloptions
FROM pg_class c
LEFT JOIN pg_tablespace t ON t.oid = c.reltablespace
LEFT JOIN pg_am am ON am.oid = c.relam
WHERE c.oid = ANY(%(oids)s::oid[])
"""

PARENT_QUERY = """
SELECT
  (SELECT json_agg(json_build_object('name', a.attname::text, 'type', format_type(a.atttypid, a.atttypmod),
                                     'type_name', ty.typname::text, 'generated', a.attgenerated::text <> '')
                   ORDER BY a.attnum)
   FROM pg_attribute a JOIN pg_type ty ON ty.oid = a.atttypid
   WHERE a.attrelid = %(parent)s AND a.attnum > 0 AND NOT a.attisdropped) AS columns,
  (SELECT json_agg(json_build_object('oid', i.indexrelid::bigint, 'name', ic.relname::text,
                                     'unique', i.indisunique, 'constraint', pg_get_constraintdef(con.oid))
                   ORDER BY ic.relname)
   FROM pg_index i JOIN pg_class ic ON ic.oid = i.indexrelid
   LEFT JOIN pg_constraint con ON con.conindid = i.indexrelid AND con.conrelid = i.indrelid
                              AND con.contype IN ('p', 'u', 'x')
   WHERE i.indrelid = %(parent)s) AS indexes,
  (SELECT array_agg(DISTINCT con.conname::text ORDER BY con.conname::text) FROM pg_constraint con
   WHERE con.contype = 'f' AND (con.conrelid = %(parent)s OR con.confrelid = %(parent)s)) AS foreign_keys,
  (SELECT array_agg(c.relname::text ORDER BY c.relname::text) FROM pg_class c
   WHERE c.relnamespace = %(namespace)s AND c.relname = ANY(%(names)s::text[])) AS taken,
  (SELECT array_agg(c.relname::text ORDER BY c.relname::text) FROM pg_class c
   WHERE c.relnamespace = %(namespace)s AND c.relkind = 'r' AND NOT c.relispartition
     AND c.relname LIKE '%%\\_sgt\\_rollup') AS leftovers
"""


def rollup_facts(
    conn: Connection, parent_oid: int, schema: str, oids: Iterable[int], names: Iterable[str]
) -> dict[str, Any]:
    """Return ``{storage: {oid: {tablespace, access_method, reloptions}}, columns, indexes, foreign_keys, taken,
    leftovers}`` for the partition set ``parent_oid``: the storage of partitions ``oids``, the parent's columns
    (``name, type, type_name, generated``) and indexes (``oid, name, unique, constraint`` = the definition of the
    primary key / unique / exclusion constraint it backs, else None), the names of its foreign keys (either
    direction), which of ``names`` are taken in ``schema`` and the plain tables there named ``*_sgt_rollup``."""
    with dict_cursor(conn) as cur:
        cur.execute(STORAGE_QUERY, {"oids": list(oids)})
        storage = {row["oid"]: row for row in cur.fetchall()}
        cur.execute("SELECT oid FROM pg_namespace WHERE nspname = %s", (schema,))
        found = cur.fetchone()
        cur.execute(
            PARENT_QUERY,
            {"parent": parent_oid, "namespace": found["oid"] if found else 0, "names": sorted(set(names))},
        )
        row = cur.fetchone()
    end_read(conn)
    return {
        "storage": storage,
        "columns": row["columns"] or [],
        "indexes": row["indexes"] or [],
        "foreign_keys": list(row["foreign_keys"] or []),
        "taken": list(row["taken"] or []),
        "leftovers": list(row["leftovers"] or []),
    }
