# Copyright: (c) 2026, SIGETI data platform team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Read a PostgreSQL JSON plan: which relations a query scans, how many were pruned, its times (pure)."""

from __future__ import annotations

from typing import Any, Iterator

# Plan nodes that read a relation's rows (index-only and bitmap heap scans included).
SCAN_NODES = (
    "Seq Scan",
    "Index Scan",
    "Index Only Scan",
    "Bitmap Heap Scan",
    "Tid Scan",
    "Tid Range Scan",
    "Sample Scan",
)


def _walk(node: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield node
    for child in node.get("Plans") or []:
        yield from _walk(child)


def scanned_relations(plan: dict[str, Any]) -> list[str]:
    """Return the ``schema.relation`` names a plan reads, in plan order, without duplicates.

    A node that ANALYZE shows as never executed (``Actual Loops`` 0, run-time pruning) does not count.
    """
    names = []
    for node in _walk(plan["Plan"]):
        if node.get("Node Type") not in SCAN_NODES or "Relation Name" not in node:
            continue
        if node.get("Actual Loops") == 0:
            continue
        name = (
            "%s.%s" % (node.get("Schema", ""), node["Relation Name"]) if node.get("Schema") else node["Relation Name"]
        )
        if name not in names:
            names.append(name)
    return names


def subplans_removed(plan: dict[str, Any]) -> int:
    """Return how many partitions were pruned at executor start-up (``Subplans Removed``), summed over the plan."""
    return sum(node.get("Subplans Removed", 0) for node in _walk(plan["Plan"]))


def plan_lines(plan: dict[str, Any], indent: int = 0) -> list[str]:
    """Return a JSON plan as short text lines, one per node (node type, relation, estimated rows)."""
    lines = []

    def render(node, depth):
        label = node.get("Node Type", "?")
        if node.get("Relation Name"):
            label += " on %s" % node["Relation Name"]
        details = "rows=%s" % node.get("Plan Rows")
        if "Actual Rows" in node:
            details += " actual=%s loops=%s" % (node.get("Actual Rows"), node.get("Actual Loops"))
        if node.get("Subplans Removed"):
            details += " subplans_removed=%s" % node["Subplans Removed"]
        lines.append("%s%s (%s)" % ("  " * (depth + indent), label, details))
        for child in node.get("Plans") or []:
            render(child, depth + 1)

    render(plan["Plan"], 0)
    return lines


def summarize(plan: dict[str, Any], query: str) -> dict[str, Any]:
    """Return the module result for one plan: query text, scanned relations and count, times, text plan."""
    scanned = scanned_relations(plan)
    return {
        "query": query,
        "scanned": scanned,
        "scanned_count": len(scanned),
        "subplans_removed": subplans_removed(plan),
        "planning_ms": plan.get("Planning Time"),
        "execution_ms": plan.get("Execution Time"),
        "plan": plan_lines(plan),
    }
