# Copyright: (c) 2026, SIGETI data platform team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The phases of ``offline`` (pure): the empty shadow committed (``prepare``), then one transaction with writes
blocked (copy, index, verify, swap), then the post-swap units. The fastest mode, for maintenance windows.

The copy runs on two connections at once, each half of the original's heap pages (an ``INSERT ... SELECT`` uses
one core; a DBA's script does the same on one): the second connection must see the shadow, so the shadow is created
and committed first, with the state row saying ``offline``/``copy``. A run that fails after that drops the shadow on
its way out; a run killed there leaves it, and the next run drops it and starts again (``migration_run``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ansible_collections.sigeti.dwh.plugins.module_utils.migration.build import (
    build_memory_step,
    build_units,
    post_units,
    shadow_steps,
)
from ansible_collections.sigeti.dwh.plugins.module_utils.migration.locks import (
    child_tables,
    dependent_relations,
    referenced_tables,
)
from ansible_collections.sigeti.dwh.plugins.module_utils.migration.sql import (
    COPIED,
    EXCLUSIVE,
    checksum_source,
    checksum_target,
    checksum_total,
    copy_statement,
    identifier,
    state_insert_sql,
    state_steps,
    verify_totals_block,
)
from ansible_collections.sigeti.dwh.plugins.module_utils.migration.swap import swap_steps
from ansible_collections.sigeti.dwh.plugins.module_utils.plan.locks import Lock, lock_set, lock_steps, merge
from ansible_collections.sigeti.dwh.plugins.module_utils.plan.side import ConcurrentStep, SidePart
from ansible_collections.sigeti.dwh.plugins.module_utils.plan.steps import (
    ACCESS_EXCLUSIVE,
    ROW_EXCLUSIVE,
    SHARE_ROW_EXCLUSIVE,
    Step,
)

if TYPE_CHECKING:  # names used in annotations only
    from ansible_collections.sigeti.dwh.plugins.module_utils.migration.build import MigrationContext

try:
    from psycopg2 import sql
except ImportError:  # reported by the connection layer
    sql = None


def offline_phases(ctx: MigrationContext) -> list[dict[str, Any]]:
    """Offline mode: the shadow committed empty, the copy (two halves, one beside the main transaction), keys,
    verification and swap in one transaction, then the post-swap units."""
    names = ctx.names
    shadow = names["shadow"]
    first_half, second_half = _copy_halves(ctx)
    source_total, target_total, full_verify = _offline_verification(ctx)
    swap, _lock_targets = swap_steps(ctx, shadow)
    locks, swap_locks = offline_locks(ctx)
    serial = _serial_read()
    memory = build_memory_step(ctx)
    body = locks + [first_half, second_half, memory]
    for unit in build_units(ctx, shadow, validate_separately=False, memory=False):
        body.extend(unit)
    body += [serial, source_total, target_total, full_verify] + swap_locks + swap
    return [
        {
            "name": "prepare",
            "description": "the empty partitioned shadow, committed so that a second connection can copy into it",
            "steps": _prepare_steps(ctx),
        },
        {
            "name": "offline",
            "description": "one transaction: copy (on two connections), index, verify and swap with writes "
            "blocked (fastest; for maintenance windows)",
            "steps": body,
            # on a second connection: the second half of the copy (committed there) beside the first, awaited before
            # the index builds; then the original's checksum beside the builds, awaited before the verification
            "concurrent": ConcurrentStep(
                start_before=first_half,
                parts=(
                    SidePart(steps=(second_half,), join_before=memory, what="copy of the second half"),
                    SidePart(
                        steps=(serial, source_total),
                        join_before=full_verify,
                        side_only=(serial,),
                        what="checksum of the original",
                    ),
                ),
                undo=(_empty_shadow(ctx),),
            ),
            "totals": (source_total, target_total),  # what the verification compared, for the result
        },
        {
            "name": "post",
            "description": "rebuild materialized views, ANALYZE, cleanup",
            "units": post_units(ctx, drop_log=False),
        },
    ]


def _offline_verification(ctx: MigrationContext) -> tuple[Step, Step, Step]:
    """The whole-table totals of the original and the shadow and the DO block comparing them before the swap."""
    names, display = ctx.names, ctx.display
    shadow = names["shadow"]
    src = identifier(names["schema"], names["name"])
    columns = ctx.table["columns"]
    source_total = Step(
        checksum_total(src, columns),
        "rows and content checksum of the original, on the second connection once its half is copied, while this "
        "transaction builds the indexes (the EXCLUSIVE lock is held: it reads exactly the rows the copy read)",
    )
    target_total = Step(
        checksum_total(identifier(names["schema"], shadow), columns),
        "rows and content checksum of every row, read back from the shadow",
    )
    full_verify = Step(
        verify_totals_block(
            display,
            source_total,
            target_total,
            checksum_source(names, ctx.key, ctx.ranges, ctx.default, columns=columns),
            checksum_target(names, shadow, columns=columns),
            "rows and content checksum of every row",
        ),
        "verify before the swap: the totals of both sides must be equal (per partition only to name where a "
        "difference is)",
    )
    return source_total, target_total, full_verify


def _prepare_steps(ctx: MigrationContext) -> list[Step]:
    """The state table, the empty shadow and its state row (committed: a second connection copies into it)."""
    names, display = ctx.names, ctx.display
    return (
        state_steps(ctx.facts)
        + shadow_steps(ctx, names["shadow"])
        + [
            Step(
                state_insert_sql(names, ctx.table["oid"], "offline", "copy", display),
                "a run killed from here on leaves the shadow: the next one drops it and starts again",
            )
        ]
    )


def offline_locks(ctx: MigrationContext) -> tuple[list[Step], list[Step]]:
    """The offline transaction's lock steps (``plan.locks``): at its start the tables its foreign keys reference
    (SHARE ROW EXCLUSIVE: adding a foreign key needs it, and an application updating them before it writes the
    original would otherwise hold them while waiting for the original: the deadlock), the original (EXCLUSIVE:
    writes wait, reads go on) and the tables whose foreign keys reference it (SHARE ROW EXCLUSIVE: their inserts
    would otherwise wait for the original while holding them); at the swap, ACCESS EXCLUSIVE on the original and
    what depends on it, each lock deadlock-safe."""
    names = ctx.names
    referenced = referenced_tables(ctx, SHARE_ROW_EXCLUSIVE)
    original = Lock(names["schema"], names["name"], EXCLUSIVE, "block writes (readers go on) for the whole build")
    children = child_tables(ctx, SHARE_ROW_EXCLUSIVE)
    at_swap = [Lock(names["schema"], names["name"], ACCESS_EXCLUSIVE, "the swap needs the table alone")]
    at_swap += dependent_relations(ctx)
    return lock_set(referenced, original, children), lock_steps(
        merge(at_swap), held=merge(referenced + [original] + children)
    )


def _copy_halves(ctx: MigrationContext) -> tuple[Step, Step]:
    """The copy as two TID range scans split at the middle page of the original (as the facts saw it: only the
    balance depends on it, the second half reads every page from there on)."""
    names = ctx.names
    block_size = int((ctx.server.get("settings") or {}).get("block_size") or 8192)
    middle = max(int(ctx.table.get("heap_bytes") or 0) // block_size // 2, 1)
    targets = [(names["schema"], names["name"]), (names["schema"], names["shadow"])]
    first = Step(
        copy_statement(names, ctx.insert_cols, ctx.overriding, 0, middle),
        "copy the rows of heap pages 0 to %d (writes are blocked by the EXCLUSIVE lock)" % (middle - 1),
        lock=ROW_EXCLUSIVE,
        targets=targets,
        effect=COPIED,  # the two halves' row counts are the run's rows_copied
    )
    second = Step(
        copy_statement(names, ctx.insert_cols, ctx.overriding, middle, None),
        "copy the rows of heap pages %d and on, on a second connection at the same time (committed there: the "
        "main transaction waits for it before its checksums)" % middle,
        lock=ROW_EXCLUSIVE,
        targets=targets,
        effect=COPIED,
    )
    return first, second


def _empty_shadow(ctx: MigrationContext) -> Step:
    """Undo of the second half when the main transaction is retried: its lock was released in between, so writers
    may have changed the original; both halves are copied again from an empty shadow."""
    names = ctx.names
    return Step(
        sql.SQL("TRUNCATE {}").format(identifier(names["schema"], names["shadow"])),
        "empty the shadow the second connection filled before the main transaction was retried",
        lock=ACCESS_EXCLUSIVE,
        targets=[(names["schema"], names["shadow"])],
    )


def _serial_read() -> Step:
    """The original's checksum on the second connection without parallel workers: one core for it, the other for
    the index builds beside it (their parallel workers wait for a free core anyway)."""
    return Step(
        sql.SQL("SET LOCAL max_parallel_workers_per_gather = 0"),
        "the read beside the index builds takes one core",
    )
