# Copyright: (c) 2026, SIGETI data platform team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The run of ``sigeti.dwh.compression``: measure, plan with ``compression`` (pure), apply, measure again."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Sequence

from ansible_collections.sigeti.dwh.plugins.module_utils.catalog import tables as catalog
from ansible_collections.sigeti.dwh.plugins.module_utils.compression import planner as compression
from ansible_collections.sigeti.dwh.plugins.module_utils.core.identifiers import display_name
from ansible_collections.sigeti.dwh.plugins.module_utils.plan.executor import Executor
from ansible_collections.sigeti.dwh.plugins.module_utils.plan.steps import Batches

if TYPE_CHECKING:  # names used in annotations only
    from ansible_collections.sigeti.dwh.plugins.module_utils.compression.planner import (
        CompressionPlan,
        DeclaredCompression,
    )
    from ansible_collections.sigeti.dwh.plugins.module_utils.session.connection import Connection, ServerFacts
    from ansible_collections.sigeti.dwh.plugins.module_utils.session.context import RunContext


def measure(
    conn: Connection, table: dict[str, Any], columns: Sequence[str], exact: bool, with_widths: bool
) -> tuple[dict[int, dict[str, Any]], dict[int, dict[str, Any]]]:
    """Measure every leaf: values per method for ``columns`` and, when asked, whole-row widths."""
    measurements, widths = {}, {}
    for entry in compression.leaves(table):
        if columns:
            measurements[entry["oid"]] = catalog.column_compression(
                conn, entry["schema"], entry["name"], columns, relpages=entry["relpages"], exact=exact
            )
        if with_widths:
            widths[entry["oid"]] = catalog.row_widths(
                conn, entry["schema"], entry["name"], relpages=entry["relpages"], exact=exact
            )
    return measurements, widths


def column_report(
    declared: DeclaredCompression,
    plan: CompressionPlan,
    before: dict[str, dict[str, Any]],
    after: dict[str, dict[str, Any]] | None,
) -> dict[str, dict[str, Any]]:
    """Per declared column: method declared, values to rewrite, counts and shares before / after."""
    report = {}
    for column in declared["columns"]:
        report[column] = {
            "declared": declared["columns"][column],
            "values_to_rewrite": plan.to_rewrite.get(column, 0),
            "before": before.get(column),
            "after": after.get(column) if after is not None else None,
        }
    return report


def size_report(before: dict[str, float], after: dict[str, float] | None) -> dict[str, Any]:
    """Sizes before/after with the measured change (never a predicted one)."""
    keys = ("heap_bytes", "toast_bytes", "index_bytes", "total_bytes")
    out = {"before": {k: before[k] for k in keys}, "after": None, "change_bytes": None}
    if after is not None:
        out["after"] = {k: after[k] for k in keys}
        out["change_bytes"] = after["total_bytes"] - before["total_bytes"]
        if before["total_bytes"]:
            out["change_ratio"] = round(after["total_bytes"] / float(before["total_bytes"]), 4)
    return out


def run(
    context: RunContext,
    conn: Connection,
    server: ServerFacts,
    schema: str,
    name: str,
    declared: DeclaredCompression,
) -> dict[str, Any]:
    """The whole run of ``sigeti.dwh.compression`` once connected and holding the table's run lock.

    Reads the table and measures the declared columns, plans with ``compression`` (pure), applies the plan (renders
    it in check mode), measures again, and returns the module result; warnings go to ``context.warn``.
    """
    table = catalog.read_table(conn, schema, name)
    leaf_oids = [e["oid"] for e in compression.leaves(table)]
    mode = declared["recompress"]
    identities = catalog.row_identities(conn, leaf_oids) if mode == "online" else {}
    column_views = catalog.column_dependent_views(conn, leaf_oids) if mode == "rewrite" else []
    compression.validate(declared, table, server, identities, column_views)

    measured_columns = sorted(set(declared["columns"]) | set(declared["storage"]))
    exact = context.params["measure"] == "exact"
    with_widths = bool(measured_columns) or declared["toast_tuple_target"] is not None
    measurements, widths = measure(conn, table, measured_columns, exact, with_widths)
    triggers = catalog.update_triggers(conn, leaf_oids) if mode != "none" else {}
    db_default = catalog.database_setting(conn, "default_toast_compression")
    plan = compression.build_plan(declared, table, server, measurements, identities, widths, triggers, db_default)
    before = compression.summarize(measurements, list(declared["columns"]))
    totals_before = catalog.tree_totals(table)

    after, totals_after, progress = None, None, []
    queries = plan.queries(conn)
    explained = plan.explain(conn)
    if plan and not context.check_mode:
        queries = Executor.from_options(conn, context.params).run(plan.plan)
        progress = [
            {"relation": display_name(*work.targets[0]), "batches": work.batches, "rows_rewritten": work.rows}
            for work in plan.items
            if isinstance(work, Batches)
        ]
        table_after = catalog.read_table(conn, schema, name)
        measurements_after = measure(conn, table_after, list(declared["columns"]), exact, False)[0]
        after = compression.summarize(measurements_after, list(declared["columns"]))
        totals_after = catalog.tree_totals(table_after)
    elif not plan:
        after, totals_after = before, totals_before

    for warning in plan.warnings:
        context.warn(warning)
    recompress = {
        "mode": mode,
        "leaves": progress,
        "rows_rewritten": sum(p["rows_rewritten"] for p in progress),
        "batches": sum(p["batches"] for p in progress),
    }
    if mode == "online" and progress and not context.check_mode:
        recompress["note"] = compression.SPACE_NOTE
    result = dict(
        changed=bool(plan),
        queries=queries,
        plan=explained,
        columns=column_report(declared, plan, before, after),
        sizes=size_report(totals_before, totals_after),
        measurement={
            "mode": context.params["measure"],
            "sampled": any(m.get("sampled") for m in measurements.values()),
        },
        recompress=recompress,
        warnings_detail=plan.warnings,
    )
    if context.diff:
        result["diff"] = plan.diff
    return result
