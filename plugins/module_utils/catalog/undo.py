# Copyright: (c) 2026, SIGETI data platform team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Reads behind an undo (partition set -> one plain table): what the set's parent and partitions carry beyond what
``catalog.migration`` reads for any table (its grants, triggers, views, sequences... read on the parent's oid)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Sequence

from ansible_collections.sigeti.dwh.plugins.module_utils.catalog.reads import dict_cursor

if TYPE_CHECKING:  # names used in annotations only
    from ansible_collections.sigeti.dwh.plugins.module_utils.session.connection import Connection

UNDO_FACTS_QUERY = """
WITH t AS (SELECT c.oid, c.relname, n.nspname, c.relowner, c.reloptions, c.relreplident
           FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = %(oid)s::oid),
tree AS (SELECT p.relid, p.isleaf FROM t, pg_partition_tree(t.oid) p WHERE p.relid <> t.oid)
SELECT
  (SELECT pg_get_userbyid(relowner) FROM t) AS owner,
  (SELECT obj_description(oid, 'pg_class') FROM t) AS comment,
  (SELECT reloptions FROM t) AS reloptions,
  (SELECT relreplident::text FROM t) AS replica_identity,
  (SELECT ARRAY(SELECT a.attname::text FROM pg_partitioned_table pt CROSS JOIN LATERAL unnest(pt.partattrs::int2[]) k(n)
                JOIN pg_attribute a ON a.attrelid = pt.partrelid AND a.attnum = k.n
                WHERE pt.partrelid = t.oid) FROM t) AS partition_key,
  (SELECT json_agg(json_build_object('name', a.attname::text, 'type', format_type(a.atttypid, a.atttypmod),
        'type_name', ty.typname::text, 'identity', a.attidentity::text, 'generated', a.attgenerated::text,
        'not_null', a.attnotnull)
        ORDER BY a.attnum)
   FROM t JOIN pg_attribute a ON a.attrelid = t.oid JOIN pg_type ty ON ty.oid = a.atttypid
   WHERE a.attnum > 0 AND NOT a.attisdropped) AS columns,
  (SELECT coalesce(json_agg(json_build_object('schema', n.nspname::text, 'name', c.relname::text,
        'leaf', tree.isleaf, 'reloptions', c.reloptions) ORDER BY c.relname), '[]')
   FROM tree JOIN pg_class c ON c.oid = tree.relid JOIN pg_namespace n ON n.oid = c.relnamespace) AS partitions,
  (SELECT coalesce(json_agg(json_build_object(
        'name', ic.relname::text, 'unique', i.indisunique, 'valid', i.indisvalid,
        'partial', i.indpred IS NOT NULL, 'reloptions', ic.reloptions,
        'columns', ARRAY(SELECT a.attname::text FROM unnest(i.indkey::int2[]) WITH ORDINALITY k(n, o)
                         JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.n
                         WHERE k.o <= i.indnkeyatts ORDER BY k.o),
        'constraint', con.conname::text, 'constraint_type', con.contype::text,
        'constraint_definition', pg_get_constraintdef(con.oid),
        'definition', pg_get_indexdef(i.indexrelid),
        'prefix', 'CREATE ' || CASE WHEN i.indisunique THEN 'UNIQUE ' ELSE '' END || 'INDEX '
                  || quote_ident(ic.relname) || ' ON ONLY ' || quote_ident(t.nspname) || '.'
                  || quote_ident(t.relname) || ' ',
        'comment', obj_description(ic.oid, 'pg_class')) ORDER BY ic.relname), '[]')
   FROM t JOIN pg_index i ON i.indrelid = t.oid JOIN pg_class ic ON ic.oid = i.indexrelid
   LEFT JOIN pg_constraint con ON con.conindid = i.indexrelid AND con.conrelid = t.oid) AS indexes,
  (SELECT coalesce(json_agg(DISTINCT p.pubname::text), '[]')
   FROM pg_publication_rel pr JOIN pg_publication p ON p.oid = pr.prpubid
   WHERE pr.prrelid IN (SELECT oid FROM t UNION ALL SELECT relid FROM tree)) AS publications,
  (SELECT coalesce(json_agg(DISTINCT quote_ident(vn.nspname) || '.' || quote_ident(v.relname)), '[]')
   FROM pg_depend d JOIN pg_rewrite r ON r.oid = d.objid JOIN pg_class v ON v.oid = r.ev_class
   JOIN pg_namespace vn ON vn.oid = v.relnamespace
   WHERE d.classid = 'pg_rewrite'::regclass AND d.refclassid = 'pg_class'::regclass
     AND d.refobjid IN (SELECT relid FROM tree) AND v.oid <> d.refobjid) AS partition_views,
  (SELECT coalesce(json_agg(json_build_object('name', con.conname::text,
        'table', quote_ident(n.nspname) || '.' || quote_ident(c.relname),
        'partition', con.confrelid::regclass::text) ORDER BY con.conname), '[]')
   FROM pg_constraint con JOIN pg_class c ON c.oid = con.conrelid JOIN pg_namespace n ON n.oid = c.relnamespace
   WHERE con.contype = 'f' AND con.conparentid = 0 AND con.confrelid IN (SELECT relid FROM tree)
     AND con.conrelid NOT IN (SELECT relid FROM tree)) AS partition_foreign_keys
"""


def undo_facts(conn: Connection, oid: int) -> dict[str, Any]:
    """Read, in one round trip, what turning partition set ``oid`` into one plain table must carry or refuse.

    Returns a dict: ``owner``, ``comment`` (the parent's), ``reloptions`` (the parent's), ``replica_identity``
    (``relreplident``), ``partition_key`` (its columns; expressions left out), ``columns`` (name, type,
    type_name, identity, generated, not_null), ``partitions`` (every relation below the parent: schema, name, leaf,
    reloptions), ``indexes`` (the parent's: name, unique, valid, partial, reloptions, key ``columns`` (expressions
    left out), constraint name/type/definition, ``definition`` from ``pg_get_indexdef`` and the ``prefix`` it
    starts with up to ``ON ONLY table``, comment), ``publications`` (named publications listing the parent or a
    partition), ``partition_views`` (views reading a partition directly) and ``partition_foreign_keys`` (foreign
    keys of other tables referencing a partition directly).

    Definitions are read with ``search_path`` set to ``pg_catalog`` so every name in them is schema-qualified.
    """
    was_autocommit = conn.autocommit
    conn.autocommit = False
    try:
        with dict_cursor(conn) as cur:
            cur.execute("SET LOCAL search_path = pg_catalog, pg_temp")
            cur.execute(UNDO_FACTS_QUERY, {"oid": oid})
            row = dict(cur.fetchone())
        conn.rollback()
    finally:
        conn.autocommit = was_autocommit
    return row


def relation_kinds(conn: Connection, schema: str, names: Sequence[str]) -> dict[str, str]:
    """``{name: relkind}`` of the relations of ``schema`` among ``names`` that exist (``r`` table, ``p`` set...)."""
    was_autocommit = conn.autocommit
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            cur.execute(
                "SELECT c.relname::text, c.relkind::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                "WHERE n.nspname = %s AND c.relname = ANY(%s)",
                (schema, list(names)),
            )
            return dict(cur.fetchall())
    finally:
        conn.autocommit = was_autocommit


def relation_oid(conn: Connection, schema: str, name: str) -> int:
    """The oid of ``schema.name`` (it exists: read just before)."""
    was_autocommit = conn.autocommit
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            cur.execute(
                "SELECT c.oid::bigint FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                "WHERE n.nspname = %s AND c.relname = %s",
                (schema, name),
            )
            return cur.fetchone()[0]
    finally:
        conn.autocommit = was_autocommit


def relation_comment(conn: Connection, schema: str, name: str) -> str | None:
    """The comment on ``schema.name`` (None without one, or when there is no such relation)."""
    was_autocommit = conn.autocommit
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            cur.execute(
                "SELECT obj_description(c.oid, 'pg_class') FROM pg_class c JOIN pg_namespace n "
                "ON n.oid = c.relnamespace WHERE n.nspname = %s AND c.relname = %s",
                (schema, name),
            )
            row = cur.fetchone()
            return row[0] if row else None
    finally:
        conn.autocommit = was_autocommit
