# Copyright: (c) 2026, SIGETI data platform team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The phases of ``offline`` (pure): one transaction with writes blocked (build, copy, index, verify, swap),
then the post-swap units. The fastest mode, for maintenance windows.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ansible_collections.sigeti.dwh.plugins.module_utils.migration_build import (
    build_memory_step,
    build_units,
    post_units,
    shadow_steps,
)
from ansible_collections.sigeti.dwh.plugins.module_utils.migration_side import ConcurrentRead
from ansible_collections.sigeti.dwh.plugins.module_utils.migration_sql import (
    COPIED,
    EXCLUSIVE,
    _checksum_source,
    _checksum_target,
    _checksum_total,
    _cols,
    _ident,
    _state_insert,
    _state_steps,
    _verify_totals_block,
)
from ansible_collections.sigeti.dwh.plugins.module_utils.migration_swap import swap_steps
from ansible_collections.sigeti.dwh.plugins.module_utils.plan import ACCESS_EXCLUSIVE, Step

if TYPE_CHECKING:  # names used in annotations only
    from ansible_collections.sigeti.dwh.plugins.module_utils.migration_build import MigrationContext

try:
    from psycopg2 import sql
except ImportError:  # reported by the connection layer
    sql = None


def offline_phases(ctx: MigrationContext) -> list[dict[str, Any]]:
    """Offline mode: the whole build and the swap in one transaction, then the post-swap units."""
    names, display = ctx.names, ctx.display
    shadow = names["shadow"]
    src = _ident(names["schema"], names["name"])
    insert_all = Step(
        sql.SQL("INSERT INTO {} ({}){} SELECT {} FROM {}").format(
            _ident(names["schema"], shadow),
            _cols(ctx.insert_cols),
            ctx.overriding,
            _cols(ctx.insert_cols),
            src,
        ),
        "copy every row (writes are blocked by the EXCLUSIVE lock)",
        effect=COPIED,  # its row count is the run's rows_copied
    )
    columns = ctx.table["columns"]
    source_total = Step(
        _checksum_total(src, columns),
        "rows and content checksum of the original, read on a second connection opened once the EXCLUSIVE lock is "
        "held (no writer can commit until the end: it reads exactly the rows the copy reads) while the copy runs",
    )
    target_total = Step(
        _checksum_total(_ident(names["schema"], shadow), columns),
        "rows and content checksum of every row, read back from the shadow",
    )
    full_verify = Step(
        _verify_totals_block(
            display,
            source_total,
            target_total,
            _checksum_source(names, ctx.key, ctx.ranges, ctx.default, columns=columns),
            _checksum_target(names, shadow, columns=columns),
            "rows and content checksum of every row",
        ),
        "verify before the swap: the totals of both sides must be equal (per partition only to name where a "
        "difference is)",
    )
    state_insert = _state_insert(names, ctx.table["oid"], "offline", "post", display)
    swap, _lock_targets = swap_steps(ctx, shadow)
    lock = Step(
        sql.SQL("LOCK TABLE {} IN EXCLUSIVE MODE").format(src),
        "block writes (readers go on) for the whole build",
        lock=EXCLUSIVE,
        targets=[(names["schema"], names["name"])],
    )
    lock2 = Step(
        sql.SQL("LOCK TABLE {} IN ACCESS EXCLUSIVE MODE").format(src),
        "the swap needs the table alone",
        lock=ACCESS_EXCLUSIVE,
        targets=[(names["schema"], names["name"])],
    )
    body = [lock] + _state_steps() + shadow_steps(ctx, shadow) + [source_total, insert_all, build_memory_step(ctx)]
    for unit in build_units(ctx, shadow, validate_separately=False, memory=False):
        body.extend(unit)
    body += [target_total, full_verify, lock2] + swap + [Step(state_insert, "remember the phases after the swap")]
    return [
        {
            "name": "offline",
            "description": "one transaction: build, copy, index, verify and swap with writes "
            "blocked (fastest; for maintenance windows)",
            "steps": body,
            # the source side of the verification runs on a second connection from the copy to the verification
            "concurrent": ConcurrentRead(
                step=source_total, start_before=insert_all, join_before=full_verify, setup=(_serial_read(),)
            ),
            "totals": (source_total, target_total),  # what the verification compared, for the result
        },
        {
            "name": "post",
            "description": "rebuild materialized views, ANALYZE, cleanup",
            "units": post_units(ctx, drop_log=False),
        },
    ]


def _serial_read() -> Step:
    """The second connection reads without parallel workers: one core for it, the other for the copy beside it."""
    return Step(
        sql.SQL("SET LOCAL max_parallel_workers_per_gather = 0"),
        "the read beside the copy takes one core and leaves the other to the copy",
    )
