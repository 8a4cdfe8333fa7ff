# Copyright: (c) 2026, SIGETI data platform team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Reads behind a live migration: everything a table swap must carry, and the hazards it must refuse."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # names used in annotations only
    from ansible_collections.sigeti.dwh.plugins.module_utils.session.connection import Connection
from ansible_collections.sigeti.dwh.plugins.module_utils.catalog.reads import dict_cursor

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
        'comment', obj_description(con.oid, 'pg_constraint'),
        'references', (SELECT json_build_object('schema', rn.nspname, 'name', rc.relname)
                       FROM pg_class rc JOIN pg_namespace rn ON rn.oid = rc.relnamespace
                       WHERE rc.oid = con.confrelid)) ORDER BY con.conname), '[]')
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
    ``constraints`` (every constraint: name, type p/u/c/f/x, definition, columns, index; a foreign key's
    ``references``: the schema and name of the table it references), ``foreign_keys_in``
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
        with dict_cursor(conn) as cur:
            cur.execute("SET LOCAL search_path = pg_catalog, pg_temp")
            cur.execute(MIGRATION_FACTS_QUERY, {"oid": oid})
            row = dict(cur.fetchone())
        conn.rollback()
    finally:
        conn.autocommit = was_autocommit
    extra = row.pop("extra") or {}
    row["index_tails"] = extra.get("index_tails") or {}
    return row


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
  (SELECT coalesce(json_agg(json_build_object(
        'name', p.pubname::text, 'via_root', p.pubviaroot,
        'owned', pg_has_role(current_user, p.pubowner, 'USAGE')) ORDER BY p.pubname), '[]')
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


def migration_hazards(conn: Connection, oid: int) -> dict[str, Any]:
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
        with dict_cursor(conn) as cur:
            cur.execute("SET LOCAL search_path = pg_catalog, pg_temp")
            cur.execute(MIGRATION_HAZARDS_QUERY, {"oid": oid})
            row = dict(cur.fetchone())
        conn.rollback()
    finally:
        conn.autocommit = was_autocommit
    return row


def relation_bytes(conn: Connection, schema: str, name: str) -> int | None:
    """``pg_total_relation_size`` of ``schema.name`` (heap, TOAST and indexes), None when there is no such table."""
    was_autocommit = conn.autocommit
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            cur.execute(
                "SELECT pg_total_relation_size(c.oid) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                "WHERE n.nspname = %s AND c.relname = %s",
                (schema, name),
            )
            row = cur.fetchone()
    finally:
        conn.autocommit = was_autocommit
    return int(row[0]) if row else None
