# Copyright: (c) 2026, SIGETI data platform team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The phases of the copying modes (pure): ``online`` (prepare, copy, build, catchup, swap, post) and
``offline`` (one transaction with writes blocked, then post), with the capture triggers of the online mode.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

from ansible_collections.sigeti.dwh.plugins.module_utils.migration.build import (
    analyze_unit,
    build_units,
    foreign_key_post_units,
    leaf_foreign_key_steps,
    post_units,
    shadow_steps,
)
from ansible_collections.sigeti.dwh.plugins.module_utils.migration.locks import (
    dependent_relations,
    referenced_tables,
)
from ansible_collections.sigeti.dwh.plugins.module_utils.migration.sql import (
    CAPTURE_TRIGGERS,
    COPIED,
    REPLAY_KEYS,
    STATE_SCHEMA,
    ExportedSnapshot,
    checksum_detail_sql,
    checksum_source,
    checksum_target,
    checksum_total,
    column_list,
    copy_statement,
    identifier,
    join_sql,
    replay_steps,
    state_insert_sql,
    state_steps,
    state_update,
    verify_block,
)
from ansible_collections.sigeti.dwh.plugins.module_utils.migration.swap import (
    swap_steps,
)
from ansible_collections.sigeti.dwh.plugins.module_utils.plan.locks import Lock, lock_set
from ansible_collections.sigeti.dwh.plugins.module_utils.plan.side import ConcurrentStep, SidePart
from ansible_collections.sigeti.dwh.plugins.module_utils.plan.steps import (
    ACCESS_EXCLUSIVE,
    ROW_EXCLUSIVE,
    SHARE_ROW_EXCLUSIVE,
    AsLiteral,
    RowcountOf,
    Step,
)

if TYPE_CHECKING:  # names used in annotations only
    from ansible_collections.sigeti.dwh.plugins.module_utils.migration.build import MigrationContext

try:
    from psycopg2 import sql
except ImportError:  # reported by the connection layer
    sql = None


# an older version's state table has no rows_total: add it, without taking a lock when it is there already
_STATE_ROWS_TOTAL = (
    "DO $sgt$BEGIN IF NOT EXISTS (SELECT 1 FROM pg_attribute WHERE attrelid = 'sigeti_dwh.migration_state'::regclass "
    "AND attname = 'rows_total' AND NOT attisdropped) THEN "
    "ALTER TABLE sigeti_dwh.migration_state ADD COLUMN rows_total bigint; END IF; END$sgt$"
)


@dataclasses.dataclass(frozen=True)
class CopyBatches:
    """How the online copy is cut: ``pages`` heap pages per batch, from ``first_page`` to ``total_pages``."""

    pages: int  # heap pages per batch (about ``batch_rows`` rows)
    first_page: int
    total_pages: int

    @property
    def batches(self) -> int:
        """Return how many batches are left from ``first_page`` (ceil of the pages left over the batch size)."""
        return max(0, -(-(self.total_pages - self.first_page) // self.pages))

    def ranges(self) -> list[tuple[int, int]]:
        """Return the ``[first, last)`` page range of every batch, in order."""
        return [
            (p, min(self.total_pages, p + self.pages)) for p in range(self.first_page, self.total_pages, self.pages)
        ]


def copy_batches(ctx: MigrationContext, total_pages: int | None = None, first_page: int = 0) -> CopyBatches:
    """Cut the copy in batches of about ``batch_rows`` rows, from the table's rows per page (pure).

    ``total_pages`` is the page count the state row took when the capture started (a real run); without it (check
    mode) the heap size read with the facts: the same when nobody writes in between.
    """
    table = ctx.table
    rows_per_page = max(1.0, (table.get("reltuples") or 0) / float(max(table.get("relpages") or 1, 1)))
    pages = max(1, int(ctx.options["batch_rows"] / rows_per_page))
    if total_pages is None:
        block_size = int((ctx.server.get("settings") or {}).get("block_size") or 8192)
        total_pages = int(table.get("heap_bytes") or 0) // block_size
    return CopyBatches(pages=pages, first_page=first_page, total_pages=int(total_pages))


def copy_batch_steps(ctx: MigrationContext, first_page: int, last_page: int) -> list[Step]:
    """One batch of the online copy, the same in check mode and in the run: the rows of heap pages
    ``[first_page, last_page)`` into the shadow, and the progress, in one transaction (a kill loses at most this
    batch and never counts it twice)."""
    names = ctx.names
    copy = Step(
        copy_statement(names, ctx.insert_cols, ctx.overriding, first_page, last_page),
        "copy the rows of heap pages %d to %d of the original (a TID range scan)" % (first_page, last_page - 1),
        lock=ROW_EXCLUSIVE,
        targets=[(names["schema"], names["name"]), (names["schema"], names["shadow"])],
        effect=COPIED,
    )
    progress = Step(
        state_update(
            names,
            next_page=last_page,
            rows_copied=sql.SQL("rows_copied + {}").format(RowcountOf(copy, "/* rows the batch inserted */ 0")),
        ),
        "progress of the copy, committed with its batch",
    )
    return [copy, progress]


def copy_start_step(ctx: MigrationContext) -> Step:
    """Where this run's copy starts (time, page, rows), so the rate and ETA shown while it runs do not count the
    pause of a run killed and resumed later. Kept in ``result`` (unused until the swap stores its result there)."""
    return Step(
        state_update(
            ctx.names,
            result=sql.SQL(
                "jsonb_build_object('copy_since', clock_timestamp(), 'copy_since_page', next_page, "
                "'copy_since_rows', rows_copied)"
            ),
        ),
        "the copy rate is measured from here",
    )


def _rows_total_step(ctx: MigrationContext) -> Step:
    """The rows to copy, estimated as the planner does (rows per page of the statistics times the pages now)."""
    estimate = sql.SQL(
        "(SELECT CASE WHEN c.relpages > 0 AND c.reltuples >= 0 THEN round(c.reltuples / c.relpages * total_pages) "
        "END FROM pg_class c WHERE c.oid = {})"
    ).format(sql.Literal(int(ctx.table["oid"])))
    return Step(state_update(ctx.names, rows_total=estimate), "estimate the rows to copy, for progress reports")


def _copy_phase(ctx: MigrationContext) -> dict[str, Any]:
    """The copy as it will run: the first batch rendered, how many batches, then the replay ending it."""
    names = ctx.names
    batches = copy_batches(ctx)
    ranges = batches.ranges()
    replay = replay_steps(names, ctx.replay_key, ctx.replay_key_types, ctx.insert_cols, ctx.overriding, names["shadow"])
    return {
        "name": "copy",
        "description": "copy %d batch(es) of %d heap pages (about %d rows) without indexes, each in one transaction "
        "with its progress: the first is shown, the next ones read the next pages up to page %d; then one replay"
        % (batches.batches, batches.pages, ctx.options["batch_rows"], batches.total_pages),
        "steps": [copy_start_step(ctx)]
        + (copy_batch_steps(ctx, *ranges[0]) if ranges else [])
        + replay
        + [Step(state_update(names, phase="build", step_done=0), "progress")],
        "batches": {
            "pages_per_batch": batches.pages,
            "total_pages": batches.total_pages,
            "batches": batches.batches,
            "first_batch_pages": list(ranges[0]) if ranges else None,
        },
    }


def _capture_steps(ctx):
    names = ctx.names
    src = identifier(names["schema"], names["name"])
    log = identifier(STATE_SCHEMA, names["log"])
    func = identifier(STATE_SCHEMA, names["function"])
    key_cols = ctx.replay_key
    key_types = ctx.replay_key_types
    body = sql.SQL(
        "BEGIN IF TG_OP IN ('INSERT', 'UPDATE') THEN INSERT INTO {log} ({c}) SELECT {c} FROM sigeti_new; END IF; "
        "IF TG_OP IN ('DELETE', 'UPDATE') THEN INSERT INTO {log} ({c}) SELECT {c} FROM sigeti_old; END IF; "
        "IF TG_OP = 'TRUNCATE' THEN RAISE EXCEPTION 'sigeti.dwh: {t} is being migrated to partitions: TRUNCATE is "
        "refused until the migration ends'; END IF; RETURN NULL; END"
    ).format(log=log, c=column_list(key_cols), t=sql.SQL(ctx.display.replace("'", "''").replace("%", "")))
    steps = [
        Step(
            sql.SQL("CREATE TABLE {} (log_id bigserial PRIMARY KEY, {})").format(
                log,
                join_sql([sql.SQL("{} {}").format(sql.Identifier(c), sql.SQL(t)) for c, t in zip(key_cols, key_types)]),
            ),
            "log of the keys changed while the copy runs (a regular table: it survives a crash)",
        ),
        Step(
            sql.SQL(
                "CREATE FUNCTION {}() RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER "
                "SET search_path = pg_catalog, pg_temp AS {}"
            ).format(func, AsLiteral(body)),
            "capture function (SECURITY DEFINER: writers need no right on the sigeti_dwh schema)",
        ),
    ]
    triggers = [
        ("sigeti_dwh_capture_ins", "AFTER INSERT", "REFERENCING NEW TABLE AS sigeti_new FOR EACH STATEMENT"),
        (
            "sigeti_dwh_capture_upd",
            "AFTER UPDATE",
            "REFERENCING OLD TABLE AS sigeti_old NEW TABLE AS sigeti_new FOR EACH STATEMENT",
        ),
        ("sigeti_dwh_capture_del", "AFTER DELETE", "REFERENCING OLD TABLE AS sigeti_old FOR EACH STATEMENT"),
        ("sigeti_dwh_capture_trunc", "BEFORE TRUNCATE", "FOR EACH STATEMENT"),
    ]
    for trig, event, tail in triggers:
        steps.append(
            Step(
                sql.SQL("CREATE TRIGGER {} {} ON {} {} EXECUTE FUNCTION {}()").format(
                    sql.Identifier(trig), sql.SQL(event), src, sql.SQL(tail), func
                ),
                "capture changed keys during the copy",
                lock=SHARE_ROW_EXCLUSIVE,
                targets=[(names["schema"], names["name"])],
            )
        )
    return steps


def _drop_capture_steps(ctx):
    src = identifier(ctx.names["schema"], ctx.names["name"])
    return [
        Step(
            sql.SQL("DROP TRIGGER IF EXISTS {} ON {}").format(sql.Identifier(t), src),
            "stop capturing: the original is no longer written",
        )
        for t in CAPTURE_TRIGGERS
    ]


def online_phases(ctx: MigrationContext) -> list[dict[str, Any]]:
    """Online mode: copy beside the original while writers go on, replay their changes, swap in one short lock."""
    names, display = ctx.names, ctx.display
    shadow = names["shadow"]
    state_insert = state_insert_sql(names, ctx.table["oid"], "online", "copy", display)
    swap, lock_targets = swap_steps(ctx, shadow)
    prepare = (
        state_steps(ctx.facts)
        + shadow_steps(ctx, shadow)
        + _capture_steps(ctx)
        + [
            Step(state_insert, "remember the progress of this migration"),
            Step(_STATE_ROWS_TOTAL, "the state table of an older version gets the rows_total column"),
            _rows_total_step(ctx),
        ]
    )
    replay = replay_steps(names, ctx.replay_key, ctx.replay_key_types, ctx.insert_cols, ctx.overriding, shadow)
    return [
        {
            "name": "prepare",
            "description": "create the partitioned shadow (no indexes), the change log and the capture triggers",
            "steps": prepare,
        },
        _copy_phase(ctx),
        _build_phase(ctx, shadow),
        {
            "name": "catchup",
            "description": "replay changed keys until the log is small, then verify the row count and content "
            "checksum of each whole table in one snapshot (per partition only to name where a difference is)",
            "steps": replay + verify_steps(ctx).steps,
        },
        {
            "name": "swap",
            "description": "one short transaction: lock, replay the last changes, verify them, rename",
            "steps": _online_swap(ctx, replay, lock_targets) + leaf_foreign_key_steps(ctx) + swap,
        },
        {
            "name": "post",
            "description": "validate the foreign keys (per partition, then on the parent) and the re-pointed ones, "
            "rebuild materialized views, cleanup",
            "units": foreign_key_post_units(ctx, _parent_locks(ctx)) + post_units(ctx, drop_log=True, analyze=False),
        },
    ]


def _build_phase(ctx: MigrationContext, shadow: str) -> dict[str, Any]:
    """Keys and indexes, then ANALYZE (the replays, under the swap's lock too, join on the shadow: planned from its
    statistics). No foreign key: a replayed row would be checked against the referenced table one by one."""
    units = [("build %d" % i, u) for i, u in enumerate(build_units(ctx, shadow, foreign_keys=False))]
    units.append(analyze_unit(ctx, shadow))
    return {
        "name": "build",
        "description": "build keys and indexes on the filled partitions, then ANALYZE them (foreign keys come at "
        "the swap, NOT VALID, and are validated after it)",
        "units": units,
    }


@dataclasses.dataclass(frozen=True)
class VerifySteps:
    """The online verification (``verify_steps``): ``steps`` in plan order; ``concurrent`` the read run beside."""

    steps: list
    source: Step
    target: Step
    detail: Step
    concurrent: ConcurrentStep


def verify_steps(ctx: MigrationContext) -> VerifySteps:
    """The online verification, run after a replay in one REPEATABLE READ snapshot: rows and content checksum of
    the original and of the shadow (one scan each, no grouping), then the per-partition comparison, which reads
    the tables only when those totals differ (to name where).

    The original's side runs on a second connection in the same snapshot (exported here, imported there) while this
    transaction reads the shadow: the original is not written by this transaction, so both read the same rows.
    """
    names, columns = ctx.names, ctx.table["columns"]
    export = Step(
        "SELECT pg_export_snapshot()", "share this snapshot with a second connection reading the original meanwhile"
    )
    snapshot = Step(
        sql.SQL("SET TRANSACTION SNAPSHOT {}").format(ExportedSnapshot(export)),
        "on the second connection: the snapshot of the verification",
        isolation="REPEATABLE READ",
    )
    source = Step(
        checksum_total(identifier(names["schema"], names["name"]), columns),
        "rows and content checksum of the original (on the second connection, while the shadow is read)",
    )
    target = Step(
        checksum_total(identifier(names["schema"], names["shadow"]), columns), "rows and content checksum of the shadow"
    )
    detail = Step(
        checksum_detail_sql(
            checksum_source(names, ctx.key, ctx.ranges, ctx.default, columns=columns),
            checksum_target(names, names["shadow"], columns=columns),
            source,
            target,
        ),
        "only when the totals differ: compare source and shadow per partition, to name where",
    )
    concurrent = ConcurrentStep(
        start_before=target, parts=(SidePart(steps=(snapshot, source), join_before=detail, side_only=(snapshot,)),)
    )
    return VerifySteps([export, snapshot, source, target, detail], source, target, detail, concurrent)


def _online_swap(ctx, replay, lock_targets):
    """The head of the online swap: lock (the original, then what depends on it: ``plan.locks``), last replay,
    verify the replayed rows, stop capturing."""
    names = ctx.names
    shadow = names["shadow"]
    key_verify = Step(
        verify_block(
            ctx.display,
            checksum_source(names, None, None, None, REPLAY_KEYS, ctx.replay_key, columns=ctx.table["columns"]),
            checksum_target(names, shadow, REPLAY_KEYS, ctx.replay_key, columns=ctx.table["columns"]),
            "rows changed since the online verification",
        ),
        "verify the rows replayed under the lock",
    )
    original = Lock(names["schema"], names["name"], ACCESS_EXCLUSIVE, "the swap: writers wait from here to the commit")
    locks = lock_set(referenced_tables(ctx, SHARE_ROW_EXCLUSIVE), original, dependent_relations(ctx))
    return locks + replay + [key_verify] + _drop_capture_steps(ctx)


def _parent_locks(ctx):
    """Before the partitioned table takes its foreign keys (after the swap): the tables they reference, then the
    table itself (SHARE ROW EXCLUSIVE each, as ADD FOREIGN KEY takes them)."""
    names = ctx.names
    referenced = referenced_tables(ctx, SHARE_ROW_EXCLUSIVE)
    if not referenced:
        return []
    parent = Lock(names["schema"], names["name"], SHARE_ROW_EXCLUSIVE, "the partitioned table takes its foreign key")
    return lock_set(referenced, parent, [])
