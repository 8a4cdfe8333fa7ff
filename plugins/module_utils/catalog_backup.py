# Copyright: (c) 2026, SIGETI data platform team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What a table-scoped dump must hold so that it restores into an empty database: reads (catalog only) and a pure
closure.

``pg_dump -t`` dumps exactly the relations named, nothing they depend on. A dump of the tables a run touches is only
a backup if a restore of it succeeds on its own, so it also covers:

- what depends on those tables and would be lost with them: their partitions (default included) and the views and
  materialized views that read them (views over those views too);
- what a restore of all that needs: the tables their foreign keys point at (their own foreign keys in turn), the
  relations a dumped view reads, the parent of a dumped partition, the sequences their columns own or call.

Tables whose foreign keys point *at* a touched table are not added: their definition (and their foreign key) is
theirs, the run does not touch their rows (PostgreSQL refuses to drop or detach a partition whose rows they
reference), and in a star schema every fact table points at the same dimensions, so touching one dimension would
dump the whole warehouse.
"""

from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING, Any, NamedTuple, Sequence

from ansible_collections.sigeti.dwh.plugins.module_utils.catalog_reads import fetch_all

if TYPE_CHECKING:  # names used in annotations only
    from ansible_collections.sigeti.dwh.plugins.module_utils.connection import Connection

KIND_NAMES = {"r": "table", "p": "partitioned table", "v": "view", "m": "materialized view", "S": "sequence"}


class Relation(NamedTuple):
    oid: int
    schema: str
    name: str
    relkind: str


class Link(NamedTuple):
    """``source`` needs ``target`` in a restore (``kind``: partition, reads, references, sequence)."""

    kind: str
    source: Relation
    target: Relation
    detail: str  # the foreign key's or the column's name, else ""


class Member(NamedTuple):
    relation: Relation
    reason: str


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

SIZES_QUERY = """
SELECT c.oid::bigint, CASE WHEN c.relkind IN ('r', 'm', 'S') THEN pg_total_relation_size(c.oid) ELSE 0 END
FROM pg_class c WHERE c.oid = ANY(%(oids)s::oid[])
"""


def qualified(relation: Relation) -> str:
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
        else:
            reason = "sequence of %s.%s" % (qualified(source), link.detail)
            result.needs.setdefault(source.oid, []).append((target, reason))
    return result


def dump_set(touched: Sequence[Relation], links: Sequence[Link]) -> list[Member]:
    """Return the relations a dump of ``touched`` must hold, each with why, in the order they were reached.

    First what depends on the touched tables (their partitions, the views reading them or their partitions, views
    over those views), then everything those need in a restore (``links``' targets, followed to the end).
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
    queue = deque(members.values())
    while queue:
        for target, reason in links_from.needs.get(queue.popleft().relation.oid, []):
            if target.oid not in members:
                members[target.oid] = Member(target, reason)
                queue.append(members[target.oid])
    return list(members.values())


def _relation(row: Sequence[Any]) -> Relation:
    return Relation(int(row[0]), row[1], row[2], row[3])


def backup_set(conn: Connection, names: Sequence[tuple[str, str]]) -> list[dict[str, Any]]:
    """Three reads of the catalog: the relations a table-scoped dump of ``names`` must hold (see the module's
    docstring), as ``[{schema, name, kind, reason, bytes}]``; ``bytes`` is 0 for a partitioned table or a view."""
    rows = fetch_all(conn, RESOLVE_QUERY, {"schemas": [n[0] for n in names], "names": [n[1] for n in names]})
    touched = [_relation(row) for row in rows]
    links = [Link(row[0], _relation(row[2:6]), _relation(row[6:10]), row[1]) for row in fetch_all(conn, LINKS_QUERY)]
    members = dump_set(touched, links)
    sizes = dict(fetch_all(conn, SIZES_QUERY, {"oids": [m.relation.oid for m in members]})) if members else {}
    return [
        {
            "schema": m.relation.schema,
            "name": m.relation.name,
            "kind": KIND_NAMES[m.relation.relkind],
            "reason": m.reason,
            "bytes": int(sizes.get(m.relation.oid) or 0),
        }
        for m in members
    ]
