# Copyright: (c) 2026, SIGETI data platform team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The phases of ``offline`` (pure): one transaction with writes blocked (build, copy, index, verify, swap),
then the post-swap units. The fastest mode, for maintenance windows.

The verification compares the original's totals (rows, sum of row digests), read on a second connection while the
copy runs, with the shadow's. The shadow's side comes from the copy itself: its ``RETURNING`` clause digests every
row as it was stored (after routing and the partitions' BEFORE triggers), which saves reading the shadow back. That
holds only while nothing but the copy wrote to the shadow, which no other session can see before the commit; so the
shadow is read back, row by row, whenever the database has an enabled event trigger (code that runs on our own DDL)
or the transaction's own counters on the shadow's partitions show anything but the copy's inserts.
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
    COPIED_WITH_TOTAL,
    EXCLUSIVE,
    _checksum_source,
    _checksum_target,
    _checksum_total,
    _cols,
    _ident,
    _state_insert,
    _state_steps,
    _verify_totals_block,
    row_digest,
)
from ansible_collections.sigeti.dwh.plugins.module_utils.migration_swap import swap_steps
from ansible_collections.sigeti.dwh.plugins.module_utils.plan import ACCESS_EXCLUSIVE, Step

if TYPE_CHECKING:  # names used in annotations only
    from psycopg2.sql import Composed

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
    columns = ctx.table["columns"]
    insert_all = Step(
        copy_with_total(ctx, shadow),
        "copy every row (writes are blocked by the EXCLUSIVE lock), returning the rows and content checksum of "
        "what it stored",
        effect=COPIED_WITH_TOTAL,  # its first value is the run's rows_copied
    )
    source_total = Step(
        _checksum_total(src, columns),
        "rows and content checksum of the original, read on a second connection opened once the EXCLUSIVE lock is "
        "held (no writer can commit until the end: it reads exactly the rows the copy reads) while the copy runs",
    )
    target_total = Step(
        shadow_total(ctx, shadow, insert_all),
        "rows and content checksum of the shadow: the copy's, unless something else may have written to the shadow "
        "(an enabled event trigger, or the transaction's counters on its partitions show more than the copy's "
        "inserts); then every row is read back",
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
            "concurrent": ConcurrentRead(step=source_total, start_before=insert_all, join_before=full_verify),
            "totals": (source_total, target_total),  # what the verification compared, for the result
        },
        {
            "name": "post",
            "description": "rebuild materialized views, ANALYZE, cleanup",
            "units": post_units(ctx, drop_log=False),
        },
    ]


def copy_with_total(ctx: MigrationContext, shadow: str) -> Composed:
    """SQL: copy every row of the original into ``shadow`` and return (rows, sum of row digests) of what it stored."""
    names = ctx.names
    return sql.SQL(
        "WITH copied AS (INSERT INTO {shadow} AS t ({cols}){overriding} SELECT {cols} FROM {src} RETURNING {digest} "
        "AS d) SELECT count(*), sum(d) FROM copied"
    ).format(
        shadow=_ident(names["schema"], shadow),
        cols=_cols(ctx.insert_cols),
        overriding=ctx.overriding,
        src=_ident(names["schema"], names["name"]),
        digest=row_digest(ctx.table["columns"]),
    )


def shadow_total(ctx: MigrationContext, shadow: str, copy: Step) -> Composed:
    """SQL: (rows, checksum, read_back) of ``shadow``: the totals ``copy`` returned, or, when something else may
    have written to the shadow, the totals of every row read back (``read_back`` true; the scan is gated by a
    one-time filter, so it costs nothing otherwise)."""
    relation = _ident(ctx.names["schema"], shadow)
    copied_rows = _Returned(copy, 0, "bigint")
    only_the_copy = sql.SQL(
        "SELECT coalesce(sum(pg_catalog.pg_stat_get_xact_tuples_inserted(p.relid)), 0) = {rows} "
        "AND coalesce(sum(pg_catalog.pg_stat_get_xact_tuples_updated(p.relid) "
        "+ pg_catalog.pg_stat_get_xact_tuples_deleted(p.relid)), 0) = 0 "
        "FROM pg_catalog.pg_partition_tree(pg_catalog.format('%I.%I', {schema}, {name})::regclass) p"
    ).format(rows=copied_rows, schema=sql.Literal(ctx.names["schema"]), name=sql.Literal(shadow))
    return sql.SQL(
        "SELECT CASE WHEN r.read_back THEN x.n ELSE c.n END, CASE WHEN r.read_back THEN x.h ELSE c.h END, r.read_back "
        "FROM (SELECT {rows} AS n, {checksum} AS h) c "
        "CROSS JOIN (SELECT EXISTS (SELECT FROM pg_catalog.pg_event_trigger WHERE evtenabled <> 'D') "
        "OR NOT ({only_the_copy}) AS read_back) r "
        "CROSS JOIN LATERAL (SELECT count(*) AS n, sum({digest}) AS h FROM {relation} t WHERE r.read_back) x"
    ).format(
        rows=copied_rows,
        checksum=_Returned(copy, 1, "numeric"),
        only_the_copy=only_the_copy,
        digest=row_digest(ctx.table["columns"]),
        relation=relation,
    )


class _Returned(sql.Composable if sql else object):
    """Value ``index`` of the first row an earlier step of the same transaction returned, as a typed literal when
    the Executor reaches the step embedding it (a typed NULL, with a comment, before: check mode)."""

    def __init__(self, step: Step, index: int, cast: str) -> None:
        super().__init__((step, index))
        self.step = step
        self.index = index
        self.cast = cast

    def as_string(self, context: Any) -> str:
        """The value as a literal of type ``cast``."""
        if not self.step.rows:
            return "/* what the copy returned */ NULL::%s" % self.cast
        return "%s::%s" % (sql.Literal(self.step.rows[0][self.index]).as_string(context), self.cast)
