# Copyright: (c) 2026, SIGETI data platform team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""``plan_migration``: validate everything, build the context once and hand it to the mode's phases (pure);
``render_plan`` / ``plan_queries`` show a plan in check mode.
"""

from __future__ import annotations

import dataclasses
import datetime
from typing import TYPE_CHECKING, Any, Sequence

from ansible_collections.sigeti.dwh.plugins.module_utils.core.bounds import json_value
from ansible_collections.sigeti.dwh.plugins.module_utils.core.errors import DwhError, InvalidInput
from ansible_collections.sigeti.dwh.plugins.module_utils.core.identifiers import display_name
from ansible_collections.sigeti.dwh.plugins.module_utils.migration.attach import attach_phases
from ansible_collections.sigeti.dwh.plugins.module_utils.migration.build import MigrationContext, new_partitions
from ansible_collections.sigeti.dwh.plugins.module_utils.migration.facts import (
    default_rows_checked,
    disk_needed,
    hazard_warnings,
    new_primary_key,
    own_leftover_indexes,
    refuse_exclusion,
    refuse_foreign_keys_in,
    refuse_hazards,
    refuse_self_foreign_keys,
    refuse_stacked_matviews,
    refuse_table,
    refuse_taken,
    refuse_unique_without_key,
    replay_key_columns,
    user_triggers_checked,
    validate_layout,
)
from ansible_collections.sigeti.dwh.plugins.module_utils.migration.offline import offline_phases
from ansible_collections.sigeti.dwh.plugins.module_utils.migration.online import copy_batches, online_phases
from ansible_collections.sigeti.dwh.plugins.module_utils.migration.sql import migration_names, normalize_options
from ansible_collections.sigeti.dwh.plugins.module_utils.partitioning.layout import bound_rank

if TYPE_CHECKING:  # names used in annotations only
    from ansible_collections.sigeti.dwh.plugins.module_utils.session.connection import Connection, ServerFacts

try:
    from psycopg2 import sql
except ImportError:  # reported by the connection layer
    sql = None


@dataclasses.dataclass(frozen=True)
class MigrationPlan:
    """What ``plan_migration`` returns: the mode, names, the SQL of every structural phase, the copy described,
    estimates and warnings. ``render_plan(conn, plan)`` turns it into JSON-able data for check mode.

    A run resuming after its swap only knows the first five fields (the rest stays None)."""

    mode: str
    display: str
    warnings: list
    default_rows: int
    names: dict | None
    key: str | None = None
    ranges: list | None = None
    default: dict | None = None
    replay_key: list | None = None
    insert_cols: list | None = None
    overriding: Any = None
    phases: list = dataclasses.field(default_factory=list)
    options: dict | None = None
    estimated_disk_bytes: int = 0
    free_disk_bytes: int | None = None
    # the online copy described: batch_rows, rows_estimate, pages_per_batch, total_pages, batches_estimate
    copy: dict | None = None
    attach_range: Any = None  # attach mode: migration_attach.AttachRange(low, high, covered)
    ctx: MigrationContext | None = None

    def get(self, key: str, default: Any = None) -> Any:
        """Dict-style access, for callers that treat the plan as a mapping."""
        return getattr(self, key, default)

    def __getitem__(self, key: str) -> Any:
        return getattr(self, key)


def _checked_context(table, layout, options, server, facts, display):
    """Every refusal, in order, then the context the phases are built from, with the warnings, the rows bound for
    the default partition and the disk needed and free."""
    key, mode = options.get("key"), options["mode"]
    columns = {c["name"]: c for c in table["columns"]}
    ranges, default = validate_layout(layout, columns[key]["type"], display)
    names = migration_names(table)
    refuse_taken(table, layout, facts, names, display)

    constraints = facts["constraints"]
    pk = next((c for c in constraints if c["type"] == "p"), None)
    new_pk_columns, warnings = new_primary_key(pk, key, options, display)
    refuse_exclusion(constraints, display)
    refuse_unique_without_key(facts, key, display)
    refuse_hazards(table, facts, options, key, display, new_pk_columns)
    warnings.extend(hazard_warnings(table, facts, display))
    own_indexes = own_leftover_indexes(table, pk)
    constraint_indexes = {c["index"] for c in constraints if c["type"] in ("p", "u") and c["index"]}
    plain_indexes = [
        i for i in table["indexes"] if i["name"] not in constraint_indexes and i["name"] not in own_indexes
    ]
    refuse_foreign_keys_in(facts, key, new_pk_columns, display)
    refuse_self_foreign_keys(table, facts, display)
    refuse_stacked_matviews(facts, display)
    user_triggers = user_triggers_checked(facts, display)
    replay_key = replay_key_columns(pk, constraints, columns, display) if mode == "online" else None
    default_rows, default_warnings = default_rows_checked(facts, default, key, display)
    warnings.extend(default_warnings)
    need, free = disk_needed(table, facts, mode, display)

    ctx = MigrationContext(
        table=table,
        facts=facts,
        options=options,
        names=names,
        key=key,
        ranges=ranges,
        default=default,
        pk=pk,
        new_pk_columns=new_pk_columns,
        plain_indexes=plain_indexes,
        own_indexes=own_indexes,
        user_triggers=user_triggers,
        replay_key=replay_key,
        replay_key_types=[columns[c]["type"] for c in replay_key] if replay_key else None,
        columns=columns,
        display=display,
        server=server or {},
        insert_cols=[c["name"] for c in table["columns"] if not c.get("generated")],
        overriding=sql.SQL(" OVERRIDING SYSTEM VALUE" if any(c.get("identity") for c in table["columns"]) else ""),
    )
    return ctx, warnings, default_rows, need, free


def plan_migration(
    table: dict[str, Any],
    layout: Sequence[dict[str, Any]],
    options: dict[str, Any] | None,
    server: ServerFacts,
    facts: dict[str, Any] | None = None,
) -> MigrationPlan:
    """Validate everything and describe the migration of a plain table into range partitions (pure).

    ``facts`` comes from ``read_facts`` (constraints, grants, views, rows outside the periods, disk).
    Raises InvalidInput before any change when the migration cannot be done as declared. Returns a
    ``MigrationPlan`` with ``phases`` (name, description, steps), ``copy`` (batches described),
    ``estimated_disk_bytes``, ``default_rows`` (rows that will land in the default partition) and ``warnings``.
    """
    options = normalize_options(options)
    display = display_name(table["schema"], table["name"])
    if facts is None:
        raise DwhError("plan_migration needs facts=read_facts(conn, table, layout, options, server)")
    mode = options["mode"]
    refuse_table(table, mode, display)
    key = options.get("key")
    columns = {c["name"]: c for c in table["columns"]}
    if key not in columns:
        raise InvalidInput(
            "partition key %r is not a column of %s (columns: %s)" % (key, display, ", ".join(sorted(columns)))
        )
    ctx, warnings, default_rows, need, free = _checked_context(table, layout, options, server, facts, display)
    names, ranges, default, replay_key = ctx.names, ctx.ranges, ctx.default, ctx.replay_key
    attach_range = None
    if mode == "attach":
        ctx, attach_range, phases = attach_phases(ctx)
    elif mode == "offline":
        phases = offline_phases(ctx)
    else:
        phases = online_phases(ctx)
    reltuples = max(table.get("reltuples") or 0, 0)
    batches = copy_batches(ctx) if mode == "online" else None
    return MigrationPlan(
        mode=mode,
        display=display,
        names=names,
        key=key,
        ranges=ranges,
        default=default,
        replay_key=replay_key,
        insert_cols=ctx.insert_cols,
        overriding=ctx.overriding,
        phases=phases,
        options=options,
        warnings=warnings,
        default_rows=default_rows,
        estimated_disk_bytes=need,
        free_disk_bytes=free,
        copy={
            "batch_rows": options["batch_rows"],
            "rows_estimate": int(reltuples),
            "pages_per_batch": batches.pages if batches else None,
            "total_pages": batches.total_pages if batches else None,
            # exact when nobody writes before the run: the run cuts the pages it finds when its capture starts
            "batches_estimate": batches.batches if batches else 0,
        },
        attach_range=attach_range,
        ctx=ctx,
    )


def _entry(name, low=None, high=None, default=False):
    def shown(value):
        # timestamptz bounds read as wall-clock times of the session, as partitioned_table reports them
        if isinstance(value, datetime.datetime) and value.tzinfo is not None:
            value = value.replace(tzinfo=None)
        return None if default else json_value(value)

    return {"name": name, "low": shown(low), "high": shown(high), "default": default}


def planned_partitions(plan: MigrationPlan) -> tuple[list[dict[str, Any]], list[str]]:
    """``(partitions, created)``: the partition set the migration leaves, entries spelled as partitioned_table's
    ``partitions`` (name, low, high, default; by low bound, the default last), and the names of those it creates
    (attach mode: not the attached original, which becomes ``<table>_unpartitioned`` covering its key range)."""
    ctx = plan.ctx
    created = [e["name"] for e in new_partitions(ctx, with_default=True)]
    ranges = [(e["low"], e["name"], e["high"]) for e in new_partitions(ctx)]
    if plan.mode == "attach":
        ranges.append((plan.attach_range.low, plan.names["unpartitioned"], plan.attach_range.high))
    entries = [_entry(name, low, high) for low, name, high in sorted(ranges, key=lambda r: bound_rank(r[0]))]
    if ctx.default:
        entries.append(_entry(ctx.default["name"], default=True))
    return entries, created


def kept_original(mode: str, names: dict[str, str], drop_source: bool, size: int | None) -> dict[str, Any] | None:
    """``{"name", "bytes"}`` of the original the migration keeps beside the partitioned table (``<table>_unpartitioned``,
    ``size`` bytes), or None: dropped (``drop_source``) or nothing kept (attach: the original became a partition)."""
    if drop_source or mode == "attach":
        return None
    return {"name": display_name(names["schema"], names["unpartitioned"]), "bytes": size}


def drop_hint(kept: dict[str, Any] | None) -> str | None:
    """One line saying how to get rid of the kept original (None when nothing is kept)."""
    if not kept:
        return None
    return (
        "%s is the table as it was before the migration, kept as a fallback and used by nothing any more: once the "
        "partitioned table is checked, DROP TABLE %s (or migrate with drop_source: true)" % (kept["name"], kept["name"])
    )


def render_plan(conn: Connection, plan: MigrationPlan) -> dict[str, Any]:
    """JSON-able description of a plan for check mode: phases with their SQL, estimates, warnings."""
    phases = []
    for phase in plan.phases:
        entry = {"phase": phase["name"], "description": phase["description"]}
        steps = list(phase.get("steps") or [])
        for _label, unit in phase.get("units") or []:
            steps.extend(unit)
        entry["steps"] = [s.describe(conn) for s in steps]
        if phase.get("batches"):
            entry["batches"] = phase["batches"]
        phases.append(entry)
    partitions, created = planned_partitions(plan)
    kept = kept_original(plan.mode, plan.names, plan.options["drop_source"], None)
    return {
        "mode": plan.mode,
        "table": plan.display,
        "partitions": partitions,
        "created": created,
        "rows_moved": None,  # known once the copy ran
        "kept_original": kept,
        "drop_hint": drop_hint(kept),
        "phases": phases,
        "copy": plan.copy,
        "renamed_source": None
        if plan.mode == "attach"
        else display_name(plan.names["schema"], plan.names["unpartitioned"]),
        "default_rows": plan.default_rows,
        "estimated_disk_bytes": plan.estimated_disk_bytes,
        "free_disk_bytes": plan.free_disk_bytes,
        "warnings": plan.warnings,
    }


def plan_queries(conn: Connection, plan: MigrationPlan) -> list[str]:
    """Every statement of the plan as text (the module's ``queries`` in check mode)."""
    return [s["sql"] for p in render_plan(conn, plan)["phases"] for s in p["steps"]]
