# Copyright: (c) 2026, SIGETI data platform team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Indexes of a partition set's partitions (pure): build, adopt by definition or attach each parent index on each
partition, with names that fit in 63 bytes; an INVALID index counts as absent.
"""

from __future__ import annotations

import hashlib
import re
from typing import Any, Sequence

from ansible_collections.sigeti.dwh.plugins.module_utils.core.identifiers import display_name
from ansible_collections.sigeti.dwh.plugins.module_utils.partitioning.layout import (
    MAX_IDENTIFIER_BYTES,
    Declared,
    Layout,
    staying_partitions,
    truncate_name,
)
from ansible_collections.sigeti.dwh.plugins.module_utils.plan import steps as planmod

try:
    from psycopg2 import sql
except ImportError:  # reported by the connection layer
    sql = None


def partition_index_name(partition: str, index: str) -> str:
    """Return the name of the copy of parent index ``index`` built on ``partition``: ``<partition>_<index>``, or, beyond
    PostgreSQL's 63 bytes, cut and ended with a short hash of the full name, so that two partitions never get the
    same name (cutting alone gave every partition of a long-named table one name, and the index landed on one)."""
    full = "%s_%s" % (partition, index)
    if len(full.encode("utf-8")) <= MAX_IDENTIFIER_BYTES:
        return full
    return truncate_name(full, "_" + hashlib.sha1(full.encode("utf-8")).hexdigest()[:8])


def _adoptable(part, index, tails, claimed):
    """A valid index of ``part`` attached to nothing, defined like the parent's ``index``, not ``claimed`` by another
    parent index of the same definition in this plan: attach it as it is."""
    wanted = tails.get(index["oid"])
    for own in part.get("indexes") or []:
        if (
            own.get("oid") is not None
            and own["oid"] not in claimed
            and own.get("parent_index_oid") is None
            and own.get("is_valid", True)
            and not own.get("constraint_name")
            and bool(own.get("is_unique")) == bool(index["is_unique"])
            and wanted is not None
            and tails.get(own["oid"]) == wanted
        ):
            return own
    return None


def _build_index_steps(declared, part, index, name, tail):
    """Drop a leftover INVALID build of ``name`` (if any), build it concurrently: one autocommit unit, so a retry
    after lock_timeout drops what the cancelled build left instead of skipping it like IF NOT EXISTS did."""
    child = (part["schema"], part["name"])
    group = "index-build:%s:%s" % (part["name"], index["name"])
    return [
        planmod.Step(
            sql.SQL("DROP INDEX CONCURRENTLY IF EXISTS {}").format(sql.Identifier(part["schema"], name)),
            "an INVALID index %s left by a cancelled build is no index: drop it first (no-op when absent)" % name,
            lock=planmod.SHARE_UPDATE_EXCLUSIVE,
            targets=[child],
            group=group,
            transactional=False,
        ),
        planmod.Step(
            sql.SQL("CREATE {}INDEX CONCURRENTLY {} ON {} ").format(
                sql.SQL("UNIQUE " if index["is_unique"] else ""), sql.Identifier(name), sql.Identifier(*child)
            )
            + sql.SQL(tail),  # tail: server-generated (pg_get_indexdef), not user input
            "partition %s lacks index %s of the parent: build it without blocking writes"
            % (part["name"], index["name"]),
            lock=planmod.SHARE_UPDATE_EXCLUSIVE,
            targets=[child],
            group=group,
            transactional=False,
            snapshot_wait=True,
            effect=("indexed", "%s.%s" % (part["name"], name)),
        ),
    ]


def _attach_index_step(declared, part, index, name, reason):
    child = (part["schema"], part["name"])
    return planmod.Step(
        sql.SQL("ALTER INDEX {} ATTACH PARTITION {}").format(
            sql.Identifier(index["schema"], index["name"]), sql.Identifier(part["schema"], name)
        ),
        reason,
        lock=planmod.SHARE_UPDATE_EXCLUSIVE,
        targets=[(declared.schema, declared.name), child],
        group="index:%s:%s" % (part["name"], index["name"]),
    )


def _leaf_index_steps(declared, part, index, tails, taken, warnings, claimed):
    """Steps giving one leaf partition a valid copy of one parent index, attached to it (empty when it has one)."""
    own = part.get("indexes") or []
    attached = [i for i in own if i.get("parent_index_oid") == index["oid"]]
    if attached:
        if attached[0].get("is_valid", True):
            return []
        # Attached yet INVALID (left by an older run): PostgreSQL refuses to drop it while attached; REINDEX
        # CONCURRENTLY builds a valid copy and swaps it in place, attachment included. A cancelled REINDEX leaves
        # an invalid "<name>_ccnew" copy: drop those first.
        leftovers = [
            i["name"]
            for i in own
            if not i.get("is_valid", True)
            and i.get("parent_index_oid") is None
            and re.match(re.escape(attached[0]["name"]) + r"_ccnew\d*$", i.get("name") or "")
        ]
        return [
            planmod.Step(
                sql.SQL("DROP INDEX CONCURRENTLY IF EXISTS {}").format(sql.Identifier(part["schema"], leftover)),
                "%s is the INVALID copy a cancelled REINDEX CONCURRENTLY left: drop it" % leftover,
                lock=planmod.SHARE_UPDATE_EXCLUSIVE,
                targets=[(part["schema"], part["name"])],
                transactional=False,
            )
            for leftover in leftovers
        ] + [
            planmod.Step(
                sql.SQL("REINDEX INDEX CONCURRENTLY {}").format(sql.Identifier(part["schema"], attached[0]["name"])),
                "index %s of partition %s is attached to %s but INVALID: rebuild it"
                % (attached[0]["name"], part["name"], index["name"]),
                lock=planmod.SHARE_UPDATE_EXCLUSIVE,
                targets=[(part["schema"], part["name"])],
                transactional=False,
                snapshot_wait=True,
                effect=("indexed", "%s.%s" % (part["name"], attached[0]["name"])),
            )
        ]
    if index.get("constraint_name"):
        warnings.append(
            "partition %s lacks the index of constraint %s: add it by hand (a constraint index cannot be "
            "built concurrently)" % (part["name"], index["constraint_name"])
        )
        return []
    adopted = _adoptable(part, index, tails, claimed)
    if adopted is not None:
        claimed.add(adopted["oid"])
        return [
            _attach_index_step(
                declared,
                part,
                index,
                adopted["name"],
                "partition %s has index %s defined like %s of the parent: attach it as it is"
                % (part["name"], adopted["name"], index["name"]),
            )
        ]
    tail = tails.get(index["oid"])
    if tail is None:
        warnings.append("cannot read the definition of index %s: %s is left without it" % (index["name"], part["name"]))
        return []
    name = partition_index_name(part["name"], index["name"])
    same = [i for i in own if i.get("name") == name]
    holder = taken.get((part["schema"], name))
    if (same and same[0].get("is_valid", True)) or (not same and holder is not None):
        warnings.append(
            "partition %s lacks index %s of the parent, and the name %s it would get is taken by another relation "
            "(%s): rename that relation; the index was not built"
            % (part["name"], index["name"], name, "a different index of this partition" if same else holder["relkind"])
        )
        return []
    return _build_index_steps(declared, part, index, name, tail) + [
        _attach_index_step(declared, part, index, name, "attach it to the parent's index %s" % index["name"])
    ]


def index_steps(
    declared: Declared,
    table: dict[str, Any],
    partitions: Sequence[dict[str, Any]],
    index_tails: dict[int, str] | None,
    warnings: list[str],
    taken: dict[tuple[str, str], dict[str, Any]] | None = None,
) -> list[planmod.Step]:
    """Return the steps giving every kept leaf partition a VALID copy of each parent index, attached to it.

    An INVALID index (a cancelled CREATE INDEX CONCURRENTLY) counts as absent: it is dropped and built again, and
    never attached (PostgreSQL accepts it, and the parent index then stays invalid for good). ``taken`` maps the
    ``(schema, name)`` of planned index names to the relation already holding that name.
    """
    repairs, builds, claimed = [], [], set()
    parent_indexes = [i for i in (table.get("indexes") or []) if i.get("relkind") == "I"]
    for index in parent_indexes:
        attaching = False
        for part in partitions:
            if part["relkind"] != "r":
                continue
            steps = _leaf_index_steps(declared, part, index, index_tails or {}, taken or {}, warnings, claimed)
            attaching = attaching or any(s.effect is None and s.group for s in steps)
            # attached copies are repaired first: PostgreSQL marks the parent index valid only when a copy is
            # attached while every other copy is valid
            repairing = bool(steps) and steps[-1].group is None  # REINDEX of an attached copy (ungrouped)
            (repairs if repairing else builds).extend(steps)
        if index.get("is_valid", True) is False and not attaching:
            warnings.append(
                "index %s of %s is marked INVALID although no partition lacks its copy: PostgreSQL re-checks a "
                "partitioned index only when a copy is attached, and an older run attached an invalid one (repaired "
                "now by REINDEX). Queries use the partition copies; to clear the flag, recreate it: DROP INDEX %s; "
                "CREATE INDEX ... ON ONLY %s ...; then run again (the copies are built concurrently)."
                % (index["name"], declared.display, display_name(index["schema"], index["name"]), declared.display)
            )
    return repairs + builds


def planned_index_names(table: dict[str, Any] | None, lay: Layout) -> list[tuple[str, str]]:
    """Return the ``(schema, name)`` of the indexes ``index_steps`` may build, to read which names are already taken."""
    if not table or not table.get("exists"):
        return []
    parent_indexes = [i for i in (table.get("indexes") or []) if i.get("relkind") == "I"]
    names = []
    for part in staying_partitions(lay):
        if part["relkind"] != "r":
            continue
        have = {i.get("parent_index_oid") for i in part.get("indexes") or []}
        names.extend(
            (part["schema"], partition_index_name(part["name"], i["name"]))
            for i in parent_indexes
            if i["oid"] not in have
        )
    return names


def lacking_indexes(table: dict[str, Any] | None, lay: Layout) -> set[int]:
    """Return the oids whose definitions the plan needs: the parent's indexes that some kept leaf partition lacks (or has only
    INVALID), and the leaf indexes attached to nothing that might be adopted in their place."""
    if not table or not table.get("exists"):
        return set()
    parent_indexes = [
        i for i in (table.get("indexes") or []) if i.get("relkind") == "I" and not i.get("constraint_name")
    ]
    lacking = set()
    for part in staying_partitions(lay):
        if part["relkind"] != "r":
            continue
        have = {i.get("parent_index_oid") for i in part.get("indexes") or []}
        missing = [i["oid"] for i in parent_indexes if i["oid"] not in have]
        lacking.update(missing)
        if missing:
            lacking.update(
                i["oid"]
                for i in part.get("indexes") or []
                if i.get("oid") is not None and i.get("parent_index_oid") is None and i.get("is_valid", True)
            )
    return lacking
