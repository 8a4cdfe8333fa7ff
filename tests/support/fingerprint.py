"""A catalog + data fingerprint of one database, to prove "byte-for-byte unchanged" (or "converged to the same
state as an uninterrupted run") after a call.

``fingerprint(conn)`` returns a plain dict of sorted lists: schemas, relations (kind, persistence, owner, ACL,
reloptions and TOAST reloptions, partition key and bound, parent), columns (type, NOT NULL, default, identity,
generated, ``attcompression``, ``attstorage``, column ACL), constraints, indexes (definition, valid), triggers,
views, policies, comments, sequences, functions, database-level settings, and per table/matview a content
checksum (row count + order-independent md5 of every row's text). Physical facts that legitimately change
without a logical change (relfilenode, sizes, statistics) are left out.

``diff(a, b)`` lists what differs, for assertion messages. ``content(conn, "s.t")`` is one table's checksum.
"""

from __future__ import annotations

from psycopg2 import sql

SYSTEM = "('pg_catalog', 'information_schema', 'pg_toast')"
USER_NS = "n.nspname NOT IN %s AND n.nspname NOT LIKE 'pg_temp%%' AND n.nspname NOT LIKE 'pg_toast_temp%%'" % SYSTEM

QUERIES = {
    "schemas": """
        SELECT n.nspname, pg_get_userbyid(n.nspowner), coalesce(n.nspacl::text, '')
        FROM pg_namespace n WHERE {ns}""",
    "relations": """
        SELECT n.nspname, c.relname, c.relkind, c.relpersistence, pg_get_userbyid(c.relowner),
               coalesce(c.relacl::text, ''), coalesce(c.reloptions::text, ''),
               coalesce((SELECT t.reloptions::text FROM pg_class t WHERE t.oid = c.reltoastrelid), ''),
               c.relispartition, coalesce(pg_get_expr(c.relpartbound, c.oid), ''),
               CASE WHEN c.relkind = 'p' THEN pg_get_partkeydef(c.oid) ELSE '' END,
               coalesce((SELECT pn.nspname || '.' || p.relname FROM pg_inherits i JOIN pg_class p ON p.oid = i.inhparent
                         JOIN pg_namespace pn ON pn.oid = p.relnamespace WHERE i.inhrelid = c.oid), ''),
               c.relrowsecurity, c.relreplident, coalesce((SELECT amname::text FROM pg_am WHERE oid = c.relam), '')
        FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE {ns} AND c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f', 'c')""",
    "columns": """
        SELECT n.nspname, c.relname, a.attnum, a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull,
               coalesce(pg_get_expr(d.adbin, d.adrelid), ''), a.attidentity, a.attgenerated,
               a.attcompression::text, a.attstorage::text, coalesce(a.attacl::text, ''), a.attstattarget::text
        FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace
        LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
        WHERE {ns} AND c.relkind IN ('r', 'p', 'v', 'm', 'f') AND a.attnum > 0 AND NOT a.attisdropped""",
    "constraints": """
        SELECT n.nspname, coalesce(c.relname, ''), co.conname, co.contype, pg_get_constraintdef(co.oid),
               co.convalidated, co.condeferrable
        FROM pg_constraint co JOIN pg_namespace n ON n.oid = co.connamespace
        LEFT JOIN pg_class c ON c.oid = co.conrelid WHERE {ns}""",
    "indexes": """
        SELECT n.nspname, c.relname, i.relname, pg_get_indexdef(x.indexrelid), x.indisvalid, x.indisready,
               coalesce(i.reloptions::text, '')
        FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid JOIN pg_class c ON c.oid = x.indrelid
        JOIN pg_namespace n ON n.oid = c.relnamespace WHERE {ns}""",
    "triggers": """
        SELECT n.nspname, c.relname, t.tgname, pg_get_triggerdef(t.oid), t.tgenabled
        FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE {ns} AND NOT t.tgisinternal""",
    "views": """
        SELECT n.nspname, c.relname, pg_get_viewdef(c.oid)
        FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE {ns} AND c.relkind IN ('v', 'm')""",
    "policies": """
        SELECT n.nspname, c.relname, p.polname, p.polcmd, p.polpermissive,
               coalesce(pg_get_expr(p.polqual, p.polrelid), ''), coalesce(pg_get_expr(p.polwithcheck, p.polrelid), '')
        FROM pg_policy p JOIN pg_class c ON c.oid = p.polrelid JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE {ns}""",
    "comments": """
        SELECT n.nspname, c.relname, d.objsubid, d.description
        FROM pg_description d JOIN pg_class c ON c.oid = d.objoid AND d.classoid = 'pg_class'::regclass
        JOIN pg_namespace n ON n.oid = c.relnamespace WHERE {ns}""",
    "sequences": """
        SELECT n.nspname, c.relname, format_type(s.seqtypid, NULL), s.seqincrement, s.seqstart,
               coalesce(pg_get_userbyid(c.relowner), ''),
               coalesce((SELECT tn.nspname || '.' || t.relname || '.' || a.attname FROM pg_depend dp
                         JOIN pg_class t ON t.oid = dp.refobjid JOIN pg_namespace tn ON tn.oid = t.relnamespace
                         JOIN pg_attribute a ON a.attrelid = dp.refobjid AND a.attnum = dp.refobjsubid
                         WHERE dp.objid = c.oid AND dp.classid = 'pg_class'::regclass AND dp.deptype IN ('a', 'i')
                         LIMIT 1), '')
        FROM pg_sequence s JOIN pg_class c ON c.oid = s.seqrelid JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE {ns}""",
    "functions": """
        SELECT n.nspname, p.proname, pg_get_function_identity_arguments(p.oid), md5(p.prosrc)
        FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace WHERE {ns}""",
    "database_settings": """
        SELECT coalesce(s.setrole::regrole::text, ''), s.setconfig::text FROM pg_db_role_setting s
        WHERE s.setdatabase = (SELECT oid FROM pg_database WHERE datname = current_database())""",
    "extensions": "SELECT extname, extversion FROM pg_extension",
}


def _rows(cur, query):
    cur.execute(query.format(ns=USER_NS))
    return sorted(tuple("" if v is None else v for v in row) for row in cur.fetchall())


def content(conn, schema, table=None):
    """``(row count, md5)`` of a table's rows, independent of their physical order (``schema.table`` or both)."""
    if table is None:
        schema, table = schema.split(".", 1)
    query = sql.SQL(
        "SELECT count(*), coalesce(md5(string_agg(h, ',' ORDER BY h)), '') FROM (SELECT md5(t::text) AS h FROM {} t) s"
    ).format(sql.Identifier(schema, table))
    with conn.cursor() as cur:
        cur.execute(query)
        count, digest = cur.fetchone()
    _end(conn)
    return int(count), digest


def fingerprint(conn, data=True):
    """Return the catalog (and, with ``data``, content) fingerprint of the connection's database."""
    result = {}
    with conn.cursor() as cur:
        for name, query in QUERIES.items():
            result[name] = _rows(cur, query)
    _end(conn)
    if data:
        checksums = []
        for row in result["relations"]:
            schema, relname, kind = row[0], row[1], row[2]
            if kind in ("r", "m"):
                checksums.append((schema, relname) + content(conn, schema, relname))
        result["content"] = sorted(checksums)
    return result


def _end(conn):
    if not conn.autocommit:
        conn.rollback()


def diff(before, after):
    """Human-readable lines for every difference between two fingerprints (empty list when equal)."""
    lines = []
    for section in sorted(set(before) | set(after)):
        old, new = set(before.get(section, [])), set(after.get(section, []))
        for row in sorted(old - new, key=repr):
            lines.append("%s: - %r" % (section, row))
        for row in sorted(new - old, key=repr):
            lines.append("%s: + %r" % (section, row))
    return lines


def without(fp, *sections):
    """A copy of a fingerprint without some sections (e.g. to compare catalogs only)."""
    return {k: v for k, v in fp.items() if k not in sections}
