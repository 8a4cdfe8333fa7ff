# Copyright: (c) 2026, SIGETI data platform team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What a changing module's run does to a table's existing data, read from its own result (pure).

Each changing module returns ``rewrites`` per table: the kinds of change that rewrite or remove rows already there
(a backup is due before them under the preflight role's ``dwh_backup: auto``). Creating partitions, setting a
column's compression for new rows, VACUUM and ANALYZE add or keep: they are not listed. The decision is made here,
once, on the result the module computed (check mode included), so no role reads the result's details.
"""

from __future__ import annotations

from typing import Any, Callable, Dict

# The kinds a result may list, and whether the change writes a new copy of the data (free disk is then needed).
KINDS = {
    "migrate": True,  # a plain table copied into partitions
    "detach": False,  # retention: partitions detached (their rows leave the table)
    "drop": False,  # retention: partitions dropped
    "archive": False,  # retention: partitions moved to the archive schema
    "recompress": True,  # existing values rewritten with another compression method
    "full": True,  # VACUUM FULL or pg_repack
}
Result = Dict[str, Any]


def partitioning(result: Result) -> list[str]:
    """``partitioned_table``: a migration (not an abandon), and retention's detach, drop and archive. Back to a plain
    table (``direction: plain``): the set's rows copied into a new table is a migration; on a table already plain,
    the kept set dropped (``drop_source``, ``kept`` then none) is a drop, and nothing to do is nothing."""
    kinds = []
    migration = result.get("migration")
    if migration and migration.get("direction") == "plain" and "mode" not in migration:
        if result.get("queries") and migration.get("kept") is None:
            kinds.append("drop")
    elif migration and "abandoned" not in migration:
        kinds.append("migrate")
    retired = set(result.get("dropped") or []) | set(result.get("archived") or [])
    if [name for name in result.get("detached") or [] if name not in retired]:
        kinds.append("detach")
    if result.get("dropped"):
        kinds.append("drop")
    if result.get("archived"):
        kinds.append("archive")
    return kinds


def compression(result: Result) -> list[str]:
    """``compression``: values to rewrite with ``recompress`` other than none."""
    mode = (result.get("recompress") or {}).get("mode") or "none"
    to_rewrite = [c.get("values_to_rewrite") or 0 for c in (result.get("columns") or {}).values()]
    return ["recompress"] if mode != "none" and result.get("queries") and any(to_rewrite) else []


def vacuum(result: Result) -> list[str]:
    """``vacuum``: a relation of the table given a VACUUM FULL or a pg_repack."""
    actions = (
        action.get("action")
        for table in result.get("tables") or []
        for relation in table.get("relations") or []
        for action in relation.get("actions") or []
    )
    return ["full"] if "full" in actions else []


def mark(output: Result, rule: Callable[[Result], list[str]]) -> Result:
    """Set ``rewrites`` on ``output`` (by ``rule``) and on each of its per-table ``results``; return ``output``."""
    for result in output.get("results") or []:
        if not result.get("failed"):
            result["rewrites"] = rule(result)
    output["rewrites"] = sorted(
        {kind for r in output.get("results") or [output] for kind in r.get("rewrites", rule(r))}
    )
    return output


def needs_room(kinds: list[str]) -> bool:
    """Whether one of ``kinds`` writes a new copy of the data (a migration, a recompression, a full vacuum)."""
    return any(KINDS.get(kind, True) for kind in kinds)
