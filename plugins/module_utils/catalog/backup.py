# Copyright: (c) 2026, SIGETI data platform team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What a table-scoped dump must hold so that it restores into an empty database: reads (catalog only) and a pure
closure.

A table-scoped dump is the whole database's definitions (schemas, types, domains, functions, extensions the dump
needs...) with only some of its relations: the others are left out by exact name. A dump of the tables a run touches
is only a backup if a restore of it succeeds on its own, so the relations kept are:

- what depends on those tables and would be lost with them: their partitions (default included) and the views and
  materialized views that read them (views over those views too);
- what a restore of all that needs: the tables their foreign keys point at (their own foreign keys in turn), the
  relations a dumped view reads, the parent of a dumped partition or inheritance child, the sequences their columns
  own or call, the owner of such a sequence, a relation whose row type a dumped column uses;
- the relations a definition every dump holds needs: a function taking a table's row type, a function whose
  SQL-standard body reads a table.

Tables whose foreign keys point *at* a touched table are not added: their definition (and their foreign key) is
theirs, the run does not touch their rows (PostgreSQL refuses to drop or detach a partition whose rows they
reference), and in a star schema every fact table points at the same dimensions, so touching one dimension would
dump the whole warehouse.
"""

from __future__ import annotations

import dataclasses
from collections import deque
from typing import TYPE_CHECKING, Any, NamedTuple, Sequence

from ansible_collections.sigeti.dwh.plugins.module_utils.catalog.reads import end_read, fetch_all, fetch_one

try:
    from psycopg2 import sql
except ImportError:  # reported by the connection layer
    sql = None

if TYPE_CHECKING:  # names used in annotations only
    from ansible_collections.sigeti.dwh.plugins.module_utils.session.connection import Connection

KIND_NAMES = {
    "r": "table",
    "p": "partitioned table",
    "v": "view",
    "m": "materialized view",
    "S": "sequence",
    "f": "foreign table",
}
# Below this oid every object was made by initdb (FirstNormalObjectId): never dumped, never needed.
FIRST_NORMAL_OID = 16384
# Tables counted per statement when comparing row counts (one round trip each).
COUNT_CHUNK = 200


class Relation(NamedTuple):
    oid: int
    schema: str
    name: str
    relkind: str


class Link(NamedTuple):
    """``source`` needs ``target`` in a restore (``kind``: partition, reads, references, sequence, uses)."""

    kind: str
    source: Relation
    target: Relation
    detail: str  # the foreign key's or the column's name, what uses the target for ``uses``, else ""


class Member(NamedTuple):
    relation: Relation
    reason: str


class Use(NamedTuple):
    """A definition that needs a relation or an extension in a restore.

    ``owner`` is the relation the definition belongs to (a column, an index, a constraint, a default of it), or None
    for a definition every dump holds (a function, a type, a domain); ``target`` the relation it needs, or None when it
    needs ``extension`` (an extension's type, operator class or function); ``detail`` says what the definition is.
    """

    owner: Relation | None
    target: Relation | None
    extension: str | None
    detail: str


@dataclasses.dataclass(frozen=True)
class DumpFacts:
    """What the catalog says about a table-scoped dump of ``touched``: every link between relations, every
    definition needing a relation or an extension, and every relation of the database (what the dump may leave out)."""

    touched: tuple[Relation, ...]
    links: tuple[Link, ...]
    uses: tuple[Use, ...]
    relations: tuple[Relation, ...]


@dataclasses.dataclass(frozen=True)
class ServerIdentity:
    """Which server and database a dump comes from (``system_identifier`` is None when the role cannot read it)."""

    database: str
    system_identifier: str | None
    version: str
    user: str
    superuser: bool


RESOLVE_QUERY = """
SELECT c.oid::bigint, n.nspname::text, c.relname::text, c.relkind::text
FROM unnest(%(schemas)s::text[], %(names)s::text[]) WITH ORDINALITY AS w(schema_name, rel_name, ord)
JOIN pg_namespace n ON n.nspname = w.schema_name
JOIN pg_class c ON c.relnamespace = n.oid AND c.relname = w.rel_name AND c.relkind IN ('r', 'p')
ORDER BY w.ord
"""

# Every link of the database between user relations, in one read of the catalog (no lock on any table): a few rows
# per table, so even a warehouse with thousands of partitions reads it at once and the closure is computed here.
LINKS_QUERY = """
WITH links AS (
    -- a partitioned table and each partition (a restore needs the parent of a partition, and its rows are there)
    SELECT 'partition'::text AS kind, i.inhparent AS source, i.inhrelid AS target, ''::text AS detail
    FROM pg_inherits i JOIN pg_class p ON p.oid = i.inhparent
    WHERE p.relkind = 'p'
    UNION
    -- a view or materialized view and each relation its query reads
    SELECT 'reads', r.ev_class, d.refobjid, ''
    FROM pg_depend d JOIN pg_rewrite r ON r.oid = d.objid
    WHERE d.classid = 'pg_rewrite'::regclass AND d.refclassid = 'pg_class'::regclass AND d.refobjid <> r.ev_class
    UNION
    -- a foreign key as declared (not the copies PostgreSQL makes on partitions) and the table it points at
    SELECT 'references', con.conrelid, con.confrelid, con.conname::text
    FROM pg_constraint con
    WHERE con.contype = 'f' AND con.conparentid = 0
    UNION
    -- a sequence a column's default calls (nextval)
    SELECT 'sequence', ad.adrelid, d.refobjid, a.attname::text
    FROM pg_depend d
    JOIN pg_attrdef ad ON ad.oid = d.objid
    JOIN pg_attribute a ON a.attrelid = ad.adrelid AND a.attnum = ad.adnum
    WHERE d.classid = 'pg_attrdef'::regclass AND d.refclassid = 'pg_class'::regclass
    UNION
    -- a sequence a column owns (serial, identity)
    SELECT 'sequence', d.refobjid, d.objid, a.attname::text
    FROM pg_depend d
    JOIN pg_attribute a ON a.attrelid = d.refobjid AND a.attnum = d.refobjsubid
    WHERE d.classid = 'pg_class'::regclass AND d.refclassid = 'pg_class'::regclass AND d.deptype IN ('a', 'i')
)
SELECT l.kind, l.detail,
       s.oid::bigint, sn.nspname::text, s.relname::text, s.relkind::text,
       t.oid::bigint, tn.nspname::text, t.relname::text, t.relkind::text
FROM links l
JOIN pg_class s ON s.oid = l.source
JOIN pg_namespace sn ON sn.oid = s.relnamespace
JOIN pg_class t ON t.oid = l.target
JOIN pg_namespace tn ON tn.oid = t.relnamespace
WHERE s.relkind IN ('r', 'p', 'v', 'm') AND t.relkind IN ('r', 'p', 'v', 'm', 'S')
  AND (l.kind = 'sequence') = (t.relkind = 'S')
  AND sn.nspname NOT IN ('pg_catalog', 'information_schema') AND tn.nspname NOT IN ('pg_catalog', 'information_schema')
ORDER BY 1, 4, 5, 8, 9
"""

# Every dependency of a user definition on a user relation (or its row type) or on an extension's object, with the
# relation the definition belongs to (0: a definition of its own, such as a function or a type, which every dump
# holds). What LINKS_QUERY names with its own words comes again here; the closure keeps the first reason.
DEPENDS_QUERY = """
WITH members AS (
    SELECT classid, objid, refobjid AS extension FROM pg_depend
    WHERE refclassid = 'pg_extension'::regclass AND deptype = 'e'
), edges AS (
    SELECT d.classid, d.objid, d.objsubid,
           CASE d.classid
               WHEN 'pg_class'::regclass THEN
                   CASE WHEN dc.relkind IN ('i', 'I') THEN di.indrelid WHEN dc.relkind IN ('c', 't') THEN 0
                        ELSE dc.oid END
               WHEN 'pg_type'::regclass THEN coalesce(CASE WHEN dtr.relkind <> 'c' THEN dtr.oid END, 0)
               WHEN 'pg_attrdef'::regclass THEN (SELECT adrelid FROM pg_attrdef WHERE oid = d.objid)
               WHEN 'pg_constraint'::regclass THEN (SELECT conrelid FROM pg_constraint WHERE oid = d.objid)
               WHEN 'pg_trigger'::regclass THEN (SELECT tgrelid FROM pg_trigger WHERE oid = d.objid)
               WHEN 'pg_rewrite'::regclass THEN (SELECT ev_class FROM pg_rewrite WHERE oid = d.objid)
               WHEN 'pg_policy'::regclass THEN (SELECT polrelid FROM pg_policy WHERE oid = d.objid)
               WHEN 'pg_statistic_ext'::regclass THEN (SELECT stxrelid FROM pg_statistic_ext WHERE oid = d.objid)
               WHEN 'pg_publication_rel'::regclass THEN (SELECT prrelid FROM pg_publication_rel WHERE oid = d.objid)
               ELSE 0
           END AS owner,
           CASE d.refclassid
               WHEN 'pg_class'::regclass THEN
                   CASE WHEN rc.relkind IN ('i', 'I') THEN ri.indrelid
                        WHEN rc.relkind IN ('r', 'p', 'v', 'm', 'S', 'f') THEN rc.oid END
               WHEN 'pg_type'::regclass THEN CASE WHEN rtr.relkind <> 'c' THEN rtr.oid END
           END AS target,
           m.extension
    FROM pg_depend d
    LEFT JOIN pg_class dc ON d.classid = 'pg_class'::regclass AND dc.oid = d.objid
    LEFT JOIN pg_index di ON di.indexrelid = dc.oid
    LEFT JOIN pg_type dt ON d.classid = 'pg_type'::regclass AND dt.oid = d.objid
    LEFT JOIN pg_type dte ON dte.oid = dt.typelem
    LEFT JOIN pg_class dtr ON dtr.oid = coalesce(nullif(dt.typrelid, 0), dte.typrelid)
    LEFT JOIN pg_class rc ON d.refclassid = 'pg_class'::regclass AND rc.oid = d.refobjid
    LEFT JOIN pg_index ri ON ri.indexrelid = rc.oid
    LEFT JOIN pg_type rt ON d.refclassid = 'pg_type'::regclass AND rt.oid = d.refobjid
    LEFT JOIN pg_type rte ON rte.oid = rt.typelem
    LEFT JOIN pg_class rtr ON rtr.oid = coalesce(nullif(rt.typrelid, 0), rte.typrelid)
    LEFT JOIN members m ON m.classid = d.refclassid AND m.objid = d.refobjid
    WHERE d.deptype IN ('n', 'a') AND d.objid >= %(first)s AND d.refobjid >= %(first)s
      AND d.refclassid <> 'pg_extension'::regclass
      AND NOT EXISTS (SELECT 1 FROM members dm WHERE dm.classid = d.classid AND dm.objid = d.objid)
)
SELECT DISTINCT ON (e.owner, e.target, x.extname)
       e.owner::bigint, o.nspname::text, oc.relname::text, oc.relkind::text,
       e.target::bigint, tn.nspname::text, tc.relname::text, tc.relkind::text,
       x.extname::text, pg_describe_object(e.classid, e.objid, e.objsubid)
FROM edges e
LEFT JOIN pg_class oc ON oc.oid = e.owner
LEFT JOIN pg_namespace o ON o.oid = oc.relnamespace
LEFT JOIN pg_class tc ON tc.oid = e.target AND e.extension IS NULL
LEFT JOIN pg_namespace tn ON tn.oid = tc.relnamespace
LEFT JOIN pg_extension x ON x.oid = e.extension
WHERE (tc.oid IS NOT NULL OR x.oid IS NOT NULL) AND e.owner IS NOT NULL AND e.owner IS DISTINCT FROM e.target
  AND (e.owner = 0 OR oc.relkind IN ('r', 'p', 'v', 'm', 'S', 'f'))
  AND coalesce(o.nspname, '') NOT IN ('pg_catalog', 'information_schema')
ORDER BY e.owner, e.target, x.extname, 10
"""

# Every relation a dump of the database would hold (those an extension creates are its own business).
RELATIONS_QUERY = """
SELECT c.oid::bigint, n.nspname::text, c.relname::text, c.relkind::text
FROM pg_class c
JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f')
  AND n.nspname NOT IN ('pg_catalog', 'information_schema', 'pg_toast') AND n.nspname NOT LIKE 'pg\\_temp\\_%%'
  AND n.nspname NOT LIKE 'pg\\_toast\\_temp\\_%%' AND c.relpersistence <> 't'
  AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid
                  AND d.refclassid = 'pg_extension'::regclass AND d.deptype = 'e')
ORDER BY 2, 3
"""

SIZES_QUERY = """
SELECT c.oid::bigint, CASE WHEN c.relkind IN ('r', 'm', 'S') THEN pg_total_relation_size(c.oid) ELSE 0 END
FROM pg_class c WHERE c.oid = ANY(%(oids)s::oid[])
"""

IDENTITY_QUERY = """
SELECT current_database()::text, current_setting('server_version'),
       CASE WHEN has_function_privilege('pg_catalog.pg_control_system()', 'EXECUTE')
            THEN (SELECT system_identifier::text FROM pg_catalog.pg_control_system()) END,
       current_user::text, (SELECT rolsuper FROM pg_roles WHERE rolname = current_user)
"""

# Scratch databases of the restore check this role owns, with whether a session is still connected to each.
SCRATCH_QUERY = """
SELECT d.datname::text, EXISTS (SELECT 1 FROM pg_stat_activity a WHERE a.datname = d.datname)
FROM pg_database d
WHERE d.datname LIKE %(pattern)s AND d.datdba = (SELECT oid FROM pg_roles WHERE rolname = current_user)
ORDER BY 1
"""


def qualified(relation: Relation) -> str:
    """``schema.name`` of ``relation``, as messages write it."""
    return "%s.%s" % (relation.schema, relation.name)


class Graph(NamedTuple):
    readers: dict[int, list[Relation]]  # relation oid -> the views and materialized views that read it
    partitions: dict[int, list[Relation]]  # partitioned table oid -> its partitions
    needs: dict[int, list[tuple[Relation, str]]]  # relation oid -> what its restore needs, and why


def graph(links: Sequence[Link]) -> Graph:
    """Index ``links`` by the relation they start from."""
    result = Graph({}, {}, {})
    for link in links:
        source, target = link.source, link.target
        if link.kind == "partition":
            result.partitions.setdefault(source.oid, []).append(target)
            result.needs.setdefault(source.oid, []).append((target, "partition of %s" % qualified(source)))
            result.needs.setdefault(target.oid, []).append((source, "parent of %s" % qualified(target)))
        elif link.kind == "reads":
            result.readers.setdefault(target.oid, []).append(source)
            reason = "read by %s %s" % (KIND_NAMES[source.relkind], qualified(source))
            result.needs.setdefault(source.oid, []).append((target, reason))
        elif link.kind == "references":
            reason = "referenced by foreign key %s of %s" % (link.detail, qualified(source))
            result.needs.setdefault(source.oid, []).append((target, reason))
        elif link.kind == "uses":
            result.needs.setdefault(source.oid, []).append((target, "needed by %s" % link.detail))
        else:
            reason = "sequence of %s.%s" % (qualified(source), link.detail)
            result.needs.setdefault(source.oid, []).append((target, reason))
    return result


def dump_set(touched: Sequence[Relation], links: Sequence[Link], needed: Sequence[Member] = ()) -> list[Member]:
    """Return the relations a dump of ``touched`` must hold, each with why, in the order they were reached.

    First what depends on the touched tables (their partitions, the views reading them or their partitions, views
    over those views), then ``needed`` (what definitions every dump holds need), then everything those need in a
    restore (``links``' targets, followed to the end).
    """
    links_from = graph(links)
    members: dict[int, Member] = {}
    queue = deque(Member(relation, "touched by this run") for relation in touched)
    while queue:
        member = queue.popleft()
        relation = member.relation
        if relation.oid in members:
            continue
        members[relation.oid] = member
        for partition in links_from.partitions.get(relation.oid, []):
            queue.append(Member(partition, "partition of %s" % qualified(relation)))
        for view in links_from.readers.get(relation.oid, []):
            queue.append(Member(view, "%s over %s" % (KIND_NAMES[view.relkind], qualified(relation))))
    if members:
        for member in needed:
            members.setdefault(member.relation.oid, member)
    queue = deque(members.values())
    while queue:
        for target, reason in links_from.needs.get(queue.popleft().relation.oid, []):
            if target.oid not in members:
                members[target.oid] = Member(target, reason)
                queue.append(members[target.oid])
    return list(members.values())


def _relation(row: Sequence[Any]) -> Relation:
    return Relation(int(row[0]), row[1], row[2], row[3])


def _use(row: Sequence[Any]) -> Use:
    owner = _relation(row[0:4]) if row[0] else None
    target = _relation(row[4:8]) if row[4] is not None and row[6] is not None else None
    return Use(owner, target, row[8], row[9])


def read_dump_facts(conn: Connection, names: Sequence[tuple[str, str]]) -> DumpFacts:
    """Four reads of the catalog (no lock on any table): the touched tables among ``names`` (those that exist), every
    link between relations, every definition needing a relation or an extension, every relation of the database."""
    rows = fetch_all(conn, RESOLVE_QUERY, {"schemas": [n[0] for n in names], "names": [n[1] for n in names]})
    links = [Link(row[0], _relation(row[2:6]), _relation(row[6:10]), row[1]) for row in fetch_all(conn, LINKS_QUERY)]
    uses = [_use(row) for row in fetch_all(conn, DEPENDS_QUERY, {"first": FIRST_NORMAL_OID})]
    relations = [_relation(row) for row in fetch_all(conn, RELATIONS_QUERY)]
    return DumpFacts(tuple(_relation(row) for row in rows), tuple(links), tuple(uses), tuple(relations))


def relation_links(facts: DumpFacts) -> tuple[list[Link], list[Member]]:
    """The links the closure follows (LINKS_QUERY's, then the ``uses`` between relations it does not name) and the
    relations the definitions every dump holds need, each with why (pure)."""
    links = list(facts.links)
    named = {(link.source.oid, link.target.oid) for link in links}
    needed: dict[int, Member] = {}
    for use in facts.uses:
        if use.target is None:
            continue
        if use.owner is None:
            needed.setdefault(use.target.oid, Member(use.target, "needed by %s" % use.detail))
        elif (use.owner.oid, use.target.oid) not in named and use.target.relkind in KIND_NAMES:
            links.append(Link("uses", use.owner, use.target, use.detail))
    return links, list(needed.values())


def relation_sizes(conn: Connection, oids: Sequence[int]) -> dict[int, int]:
    """Bytes on disk of each relation (``pg_total_relation_size``; 0 for a partitioned table or a view)."""
    if not oids:
        return {}
    return {int(oid): int(size or 0) for oid, size in fetch_all(conn, SIZES_QUERY, {"oids": list(oids)})}


def backup_set(conn: Connection, names: Sequence[tuple[str, str]]) -> list[dict[str, Any]]:
    """The relations a table-scoped dump of ``names`` must hold (see the module's docstring), as
    ``[{schema, name, kind, reason, bytes}]``; ``bytes`` is 0 for a partitioned table or a view."""
    facts = read_dump_facts(conn, names)
    links, needed = relation_links(facts)
    members = dump_set(facts.touched, links, needed)
    sizes = relation_sizes(conn, [m.relation.oid for m in members])
    return members_report(members, sizes)


def members_report(members: Sequence[Member], sizes: dict[int, int]) -> list[dict[str, Any]]:
    """The dumped relations as results return them: ``{schema, name, kind, reason, bytes}`` (pure)."""
    return [
        {
            "schema": m.relation.schema,
            "name": m.relation.name,
            "kind": KIND_NAMES[m.relation.relkind],
            "reason": m.reason,
            "bytes": sizes.get(m.relation.oid, 0),
        }
        for m in members
    ]


def database_size(conn: Connection) -> int:
    """Bytes of the connected database (``pg_database_size``)."""
    return int(fetch_one(conn, "SELECT pg_database_size(current_database())")[0])


def server_identity(conn: Connection) -> ServerIdentity:
    """The connected database, the server's system identifier (when readable) and version, the role."""
    row = fetch_one(conn, IDENTITY_QUERY)
    return ServerIdentity(row[0], row[2], row[1], row[3], bool(row[4]))


def user_tables(conn: Connection) -> list[tuple[str, str]]:
    """Every table whose rows a dump of the whole database holds (not an extension's)."""
    return [(r.schema, r.name) for r in map(_relation, fetch_all(conn, RELATIONS_QUERY)) if r.relkind == "r"]


def export_snapshot(conn: Connection) -> str:
    """Open a REPEATABLE READ transaction on ``conn`` and export its snapshot (pg_dump --snapshot reads the same
    rows as ``count_rows`` then does in it). The transaction stays open: end it with ``end_read``."""
    conn.rollback()
    with conn.cursor() as cur:
        cur.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        cur.execute("SELECT pg_export_snapshot()")
        return cur.fetchone()[0]


def count_rows(conn: Connection, tables: Sequence[tuple[str, str]]) -> dict[str, int]:
    """Exact row count of each table (``FROM ONLY``) as ``{"schema.table": n}``, in the current transaction (its
    snapshot when ``export_snapshot`` opened it): the caller ends it."""
    counts: dict[str, int] = {}
    for start in range(0, len(tables), COUNT_CHUNK):
        chunk = tables[start : start + COUNT_CHUNK]
        query = sql.SQL(" UNION ALL ").join(
            sql.SQL("SELECT {}, count(*) FROM ONLY {}").format(
                sql.Literal("%s.%s" % (schema, name)), sql.Identifier(schema, name)
            )
            for schema, name in chunk
        )
        with conn.cursor() as cur:
            cur.execute(query)
            counts.update((key, int(count)) for key, count in cur.fetchall())
    return counts


def scratch_databases(conn: Connection, prefix: str) -> list[tuple[str, bool]]:
    """The databases named ``prefix...`` the current role owns, each with whether a session is connected to it."""
    pattern = prefix.replace("\\", "\\\\").replace("_", "\\_").replace("%", "\\%") + "%"
    rows = fetch_all(conn, SCRATCH_QUERY, {"pattern": pattern})
    end_read(conn)
    return [(name, bool(busy)) for name, busy in rows]


@dataclasses.dataclass(frozen=True)
class TableSpaceUse:
    """Bytes of a table's leaves in one tablespace (``location`` empty: the data directory)."""

    table: str
    location: str
    bytes: int


@dataclasses.dataclass(frozen=True)
class DiskFacts:
    """Where the rewritten tables live and what the server says about its own folder."""

    uses: tuple[TableSpaceUse, ...]
    data_directory: str | None  # None: this role may not read it (superuser or pg_read_all_settings)
    port: int
    backend_pid: int
    user: str
    started: int  # the server's start, in seconds since 1970 (postmaster.pid's third line says the same)


DISK_QUERY = """
WITH wanted AS (
    SELECT * FROM unnest(%(schemas)s::text[], %(names)s::text[]) WITH ORDINALITY AS w(schema_name, rel_name, ord)
), roots AS (
    SELECT w.ord, c.oid
    FROM wanted w JOIN pg_namespace n ON n.nspname = w.schema_name
    JOIN pg_class c ON c.relnamespace = n.oid AND c.relname = w.rel_name
), leaves AS (
    SELECT r.ord, coalesce(t.relid, r.oid) AS relid
    FROM roots r LEFT JOIN LATERAL pg_partition_tree(r.oid) t ON true
    WHERE t.relid IS NULL OR t.isleaf
)
SELECT l.ord, pg_tablespace_location(CASE WHEN c.reltablespace = 0 THEN d.dattablespace ELSE c.reltablespace END),
       sum(pg_total_relation_size(l.relid))::bigint
FROM leaves l JOIN pg_class c ON c.oid = l.relid
JOIN pg_database d ON d.datname = current_database()
GROUP BY 1, 2
ORDER BY 1, 2
"""

SERVER_FOLDER_QUERY = """
SELECT (SELECT setting FROM pg_settings WHERE name = 'data_directory'), current_setting('port')::int, pg_backend_pid(),
       current_user::text, extract(epoch FROM pg_postmaster_start_time())::bigint
"""


def read_disk_facts(conn: Connection, names: Sequence[tuple[str, str]], shown: Sequence[str]) -> DiskFacts:
    """Two reads: the bytes of each table's leaves per tablespace (``shown`` names the tables), and the data
    directory (None unless superuser or pg_read_all_settings), port, backend of this session and start time."""
    rows = fetch_all(conn, DISK_QUERY, {"schemas": [n[0] for n in names], "names": [n[1] for n in names]})
    uses = tuple(TableSpaceUse(shown[int(ord_) - 1], location or "", int(size or 0)) for ord_, location, size in rows)
    folder, port, pid, user, started = fetch_one(conn, SERVER_FOLDER_QUERY)
    return DiskFacts(uses, folder, int(port), int(pid), user, int(started))
