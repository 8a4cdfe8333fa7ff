# Copyright: (c) 2026, SIGETI data platform team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The phases of ``attach`` (pure): the original becomes the partition covering its key range. A NOT VALID range
CHECK, validated online, lets ATTACH PARTITION skip its scan; later periods get new partitions.
"""

from __future__ import annotations

import collections
import dataclasses
from typing import TYPE_CHECKING, Any

from ansible_collections.sigeti.dwh.plugins.module_utils.core.bounds import json_value
from ansible_collections.sigeti.dwh.plugins.module_utils.core.errors import InvalidInput
from ansible_collections.sigeti.dwh.plugins.module_utils.migration.build import (
    add_constraint,
    post_units,
    shadow_steps,
)
from ansible_collections.sigeti.dwh.plugins.module_utils.migration.locks import (
    dependent_relations,
    referenced_tables,
)
from ansible_collections.sigeti.dwh.plugins.module_utils.migration.sql import (
    STATE_SCHEMA,
    STATE_TABLE,
    bound_literal,
    column_list,
    derived_name,
    drop_index_steps,
    identifier,
    state_steps,
)
from ansible_collections.sigeti.dwh.plugins.module_utils.migration.swap import (
    swap_steps,
)
from ansible_collections.sigeti.dwh.plugins.module_utils.plan.locks import Lock, lock_set
from ansible_collections.sigeti.dwh.plugins.module_utils.plan.steps import (
    ACCESS_EXCLUSIVE,
    SHARE_UPDATE_EXCLUSIVE,
    Step,
)

if TYPE_CHECKING:  # names used in annotations only
    from ansible_collections.sigeti.dwh.plugins.module_utils.migration.build import MigrationContext

try:
    from psycopg2 import sql
except ImportError:  # reported by the connection layer
    sql = None

# the original's place in the partitioned table: [low, high) and the declared periods it covers
AttachRange = collections.namedtuple("AttachRange", "low high covered")


def attach_phases(ctx: MigrationContext) -> tuple[MigrationContext, AttachRange, list[dict[str, Any]]]:
    """Attach mode: the original becomes the partition covering its key range; later periods get new partitions.

    Returns ``(ctx, attach_range, phases)``: the context naming the partitions to create and the range check.
    """
    _refuse_attach(ctx)
    span = _attach_range(ctx)
    name = ctx.names["name"]
    check_name = derived_name(name, "_sgt_range")
    ctx = dataclasses.replace(
        ctx, partitions_to_create=[e for e in ctx.ranges if e not in span.covered], range_check=check_name
    )
    attached = ctx.names["unpartitioned"]
    validate, concurrent_indexes, pk_index_tmp = _validate_steps(ctx, check_name)
    phases = [
        {"name": "check", "description": "add the range CHECK without a scan", "steps": _check_steps(ctx, span)},
        {
            "name": "validate",
            "description": "validate it online (and prebuild the extended primary key)",
            "units": [("validate %d" % i, [s]) for i, s in enumerate(validate)],
            # built CONCURRENTLY: a build cancelled by lock_timeout leaves them INVALID, the runner checks
            "concurrent_indexes": concurrent_indexes,
        },
        {
            "name": "swap",
            "description": "one short transaction: create the parent and future partitions, attach "
            "the original as partition %s for [%s, %s)" % (attached, json_value(span.low), json_value(span.high)),
            "steps": _attach_swap(ctx, span, pk_index_tmp),
        },
        {
            "name": "post",
            "description": "rebuild materialized views, ANALYZE",
            "units": post_units(ctx, drop_log=False),
        },
    ]
    return ctx, span, phases


def _refuse_attach(ctx):
    if any(s["kind"] == "identity" for s in ctx.facts["sequences"]):
        raise InvalidInput("attach mode cannot move the identity column of %s; use migrate: online" % ctx.display)
    if ctx.user_triggers:
        raise InvalidInput(
            "attach mode does not move user triggers of %s (%s); use migrate: online"
            % (ctx.display, ", ".join(t["name"] for t in ctx.user_triggers))
        )


def _attach_range(ctx):
    """The contiguous declared periods covering every key of the original (the first period if it is empty)."""
    facts, ranges, display = ctx.facts, ctx.ranges, ctx.display
    kmin, kmax = facts.get("key_min"), facts.get("key_max")
    if kmin is None:
        return AttachRange(ranges[0]["low"], ranges[0]["high"], [ranges[0]])
    covered = [e for e in ranges if e["high"] > kmin and e["low"] <= kmax]
    if not covered or (facts.get("out_of_range") or {}).get("rows"):
        raise InvalidInput(
            "attach mode needs every key of %s inside the declared periods (found %s..%s outside "
            "or NULL): use migrate: online with a default partition" % (display, json_value(kmin), json_value(kmax))
        )
    for a, b in zip(covered, covered[1:]):
        if a["high"] != b["low"]:
            raise InvalidInput(
                "attach mode needs contiguous periods over the key range of %s (gap %s..%s)"
                % (display, json_value(a["high"]), json_value(b["low"]))
            )
    return AttachRange(covered[0]["low"], covered[-1]["high"], covered)


def _check_steps(ctx, span):
    """The range CHECK, NOT VALID (a brief lock, no scan); none when a previous run already added it."""
    schema, name = ctx.names["schema"], ctx.names["name"]
    if any(c["name"] == ctx.range_check for c in ctx.facts["constraints"]):
        return []
    return [
        add_constraint(
            identifier(schema, name),
            ctx.range_check,
            sql.SQL("CHECK ({k} IS NOT NULL AND {k} >= {lo} AND {k} < {hi}) NOT VALID").format(
                k=sql.Identifier(ctx.key), lo=bound_literal(span.low), hi=bound_literal(span.high)
            ),
            "range check (NOT VALID: a brief lock, no scan) so ATTACH PARTITION skips its scan",
            lock=ACCESS_EXCLUSIVE,
            targets=[(schema, name)],
        )
    ]


def _validate_steps(ctx, check_name):
    """Validate the range online, rebuild INVALID indexes and prebuild the extended primary key's index.

    Returns ``(steps, indexes built concurrently, name of the prebuilt primary-key index or None)``.
    """
    names, key, pk = ctx.names, ctx.key, ctx.pk
    schema, name = names["schema"], names["name"]
    src = identifier(schema, name)
    validate = [
        Step(
            sql.SQL("ALTER TABLE {} VALIDATE CONSTRAINT {}").format(src, sql.Identifier(check_name)),
            "validate the range online (SHARE UPDATE EXCLUSIVE: readers and writers go on)",
            lock=SHARE_UPDATE_EXCLUSIVE,
            targets=[(schema, name)],
        )
    ]
    rebuild, concurrent_indexes = _rebuild_invalid_steps(ctx, src)
    validate.extend(rebuild)
    if pk is None or key in pk["columns"]:
        return validate, concurrent_indexes, None
    pk_index_tmp = derived_name(pk["name"], "_sgt_pk")
    if any(i["name"] == pk_index_tmp and not i.get("is_valid", True) for i in ctx.table["indexes"]):
        # an interrupted CREATE INDEX CONCURRENTLY left it INVALID: IF NOT EXISTS would keep it, and
        # PRIMARY KEY USING INDEX would fail on it at every run
        validate.extend(drop_index_steps(names, [pk_index_tmp], "INVALID prebuilt index %s"))
    validate.append(
        Step(
            sql.SQL("CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS {} ON {} ({})").format(
                sql.Identifier(pk_index_tmp), src, column_list(ctx.new_pk_columns)
            ),
            "the extended primary key's index, built without blocking writers",
            transactional=False,
        )
    )
    return validate, concurrent_indexes + [pk_index_tmp], pk_index_tmp


def _attach_swap(ctx, span, pk_index_tmp):
    """The swap transaction: the partitioned parent takes the name and the original becomes its partition."""
    names = ctx.names
    schema, name, shadow, attached = names["schema"], names["name"], names["shadow"], names["unpartitioned"]
    src, target = identifier(schema, name), identifier(schema, shadow)
    swap = attach_locks(ctx) + state_steps(ctx.facts) + _original_as_partition(ctx, pk_index_tmp)
    swap += shadow_steps(ctx, shadow) + _parent_keys(ctx, target)
    swap.append(
        Step(
            sql.SQL("ALTER TABLE {} RENAME TO {}").format(src, sql.Identifier(attached)),
            "the original becomes a partition",
        )
    )
    swap.append(
        Step(
            sql.SQL("ALTER TABLE {} RENAME TO {}").format(target, sql.Identifier(name)),
            "the partitioned table takes the name",
        )
    )
    swap.append(
        Step(
            sql.SQL("ALTER TABLE {} ATTACH PARTITION {} FOR VALUES FROM ({}) TO ({})").format(
                identifier(schema, name),
                identifier(schema, attached),
                bound_literal(span.low),
                bound_literal(span.high),
            ),
            "attach without a scan: the validated CHECK proves the bounds",
            lock=ACCESS_EXCLUSIVE,
            targets=[(schema, attached)],
        )
    )
    inner, _lock_targets = swap_steps(ctx, shadow, renames=False)
    swap.extend(inner)
    swap.append(
        Step(
            sql.SQL(
                "INSERT INTO {} (schema_name, table_name, source_oid, mode, phase) VALUES ({}, {}, {}, 'attach', 'post')"
            ).format(
                identifier(STATE_SCHEMA, STATE_TABLE),
                sql.Literal(schema),
                sql.Literal(name),
                sql.Literal(int(ctx.table["oid"])),
            ),
            "remember the phases after the swap",
        )
    )
    return swap


def attach_locks(ctx: MigrationContext) -> list[Step]:
    """The attach swap's locks, first thing (``plan.locks``): the tables the original's foreign keys reference
    (ACCESS EXCLUSIVE: ATTACH PARTITION takes it there when the parent's foreign key adopts the partition's, which
    drops the partition's own triggers on them), then the original, then what depends on it."""
    names = ctx.names
    original = Lock(names["schema"], names["name"], ACCESS_EXCLUSIVE, "the swap: writers wait until commit")
    return lock_set(referenced_tables(ctx, ACCESS_EXCLUSIVE), original, dependent_relations(ctx))


def _original_as_partition(ctx, pk_index_tmp):
    """The original's primary key extended from the prebuilt index, its index names freed for the parent's."""
    schema, name = ctx.names["schema"], ctx.names["name"]
    src, pk = identifier(schema, name), ctx.pk
    steps = []
    if pk_index_tmp:
        steps.append(
            Step(
                sql.SQL("ALTER TABLE {} DROP CONSTRAINT {}").format(src, sql.Identifier(pk["name"])),
                "the old primary key without the partition key",
            )
        )
        steps.append(
            add_constraint(
                src,
                pk["name"],
                sql.SQL("PRIMARY KEY USING INDEX {}").format(sql.Identifier(pk_index_tmp)),
                "extended primary key from the prebuilt index (NOT NULL proven by the range check)",
            )
        )
    for index in ctx.table["indexes"]:
        if index["name"] in ctx.own_indexes:
            continue  # the prebuilt primary-key index became the primary key's index above
        steps.append(
            Step(
                sql.SQL("ALTER INDEX {} RENAME TO {}").format(
                    identifier(schema, index["name"]), sql.Identifier(derived_name(index["name"], "_unpartitioned"))
                ),
                "the partition's index frees its name for the parent's",
            )
        )
    return steps


def _parent_keys(ctx, target):
    """Keys, foreign keys and indexes on the parent: the partition's matching ones are attached, not rebuilt."""
    steps = []
    for con in ctx.facts["constraints"]:
        if con["type"] == "p":
            definition = sql.SQL("PRIMARY KEY ({})").format(column_list(ctx.new_pk_columns))
            steps.append(add_constraint(target, con["name"], definition, "primary key on the parent"))
        elif con["type"] == "u":
            steps.append(
                add_constraint(target, con["name"], sql.SQL(con["definition"]), "unique constraint on the parent")
            )
        elif con["type"] == "f":
            steps.append(
                add_constraint(
                    target,
                    con["name"],
                    sql.SQL(con["definition"]),
                    "foreign key on the parent (the partition's own matches and is attached, not re-checked)",
                )
            )
    tails = ctx.facts.get("index_tails") or {}
    for index in ctx.plain_indexes:
        steps.append(
            Step(
                sql.SQL("CREATE {}INDEX {} ON {} {}").format(
                    sql.SQL("UNIQUE " if index["is_unique"] else ""),
                    sql.Identifier(index["name"]),
                    target,
                    sql.SQL(tails[index["name"]]),
                ),
                "index on the parent (the partition's existing one is attached)",
            )
        )
    return steps


def _rebuild_invalid_steps(ctx, src):
    """An INVALID index (a concurrent build cancelled) is absent for PostgreSQL's planner and would be attached to
    the parent's index as if it were built: drop it and build it again, both without blocking writers.

    Returns ``(steps, names of the indexes rebuilt concurrently)``."""
    names, tails = ctx.names, ctx.facts.get("index_tails") or {}
    steps, rebuilt = [], []
    for index in ctx.plain_indexes:
        if index.get("is_valid", True):
            continue
        steps.extend(drop_index_steps(names, [index["name"]], "INVALID index %s (a cancelled concurrent build)"))
        rebuilt.append(index["name"])
        steps.append(
            Step(
                sql.SQL("CREATE {}INDEX CONCURRENTLY {} ON {} {}").format(
                    sql.SQL("UNIQUE " if index["is_unique"] else ""),
                    sql.Identifier(index["name"]),
                    src,
                    sql.SQL(tails[index["name"]]),
                ),
                "rebuild INVALID index %s before it becomes the partition's" % index["name"],
                transactional=False,
            )
        )
    return steps, rebuilt
