# Copyright: (c) 2026, SIGETI data platform team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The phases of the copying modes (pure): ``online`` (prepare, copy, build, catchup, swap, post) and
``offline`` (one transaction with writes blocked, then post), with the capture triggers of the online mode.
"""

from __future__ import annotations

from ansible_collections.sigeti.dwh.plugins.module_utils.migration_build import (
    build_units,
    post_units,
    shadow_steps,
)
from ansible_collections.sigeti.dwh.plugins.module_utils.migration_sql import (
    CAPTURE_TRIGGERS,
    REPLAY_KEYS,
    STATE_SCHEMA,
    _AsLiteral,
    _checksum_source,
    _checksum_target,
    _cols,
    _ident,
    _join,
    _replay_steps,
    _state_insert,
    _state_steps,
    _verify_block,
    checksum_compare_sql,
    copy_statement,
)
from ansible_collections.sigeti.dwh.plugins.module_utils.migration_swap import (
    swap_steps,
)
from ansible_collections.sigeti.dwh.plugins.module_utils.plan import (
    ACCESS_EXCLUSIVE,
    SHARE_ROW_EXCLUSIVE,
    Step,
)

try:
    from psycopg2 import sql
except ImportError:  # reported by the connection layer
    sql = None


def _capture_steps(ctx):
    names = ctx.names
    src = _ident(names["schema"], names["name"])
    log = _ident(STATE_SCHEMA, names["log"])
    func = _ident(STATE_SCHEMA, names["function"])
    key_cols = ctx.replay_key
    key_types = ctx.replay_key_types
    body = sql.SQL(
        "BEGIN IF TG_OP IN ('INSERT', 'UPDATE') THEN INSERT INTO {log} ({c}) SELECT {c} FROM sigeti_new; END IF; "
        "IF TG_OP IN ('DELETE', 'UPDATE') THEN INSERT INTO {log} ({c}) SELECT {c} FROM sigeti_old; END IF; "
        "IF TG_OP = 'TRUNCATE' THEN RAISE EXCEPTION 'sigeti.dwh: {t} is being migrated to partitions: TRUNCATE is "
        "refused until the migration ends'; END IF; RETURN NULL; END"
    ).format(log=log, c=_cols(key_cols), t=sql.SQL(ctx.display.replace("'", "''").replace("%", "")))
    steps = [
        Step(
            sql.SQL("CREATE TABLE {} (log_id bigserial PRIMARY KEY, {})").format(
                log,
                _join([sql.SQL("{} {}").format(sql.Identifier(c), sql.SQL(t)) for c, t in zip(key_cols, key_types)]),
            ),
            "log of the keys changed while the copy runs (a regular table: it survives a crash)",
        ),
        Step(
            sql.SQL(
                "CREATE FUNCTION {}() RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER "
                "SET search_path = pg_catalog, pg_temp AS {}"
            ).format(func, _AsLiteral(body)),
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
    src = _ident(ctx.names["schema"], ctx.names["name"])
    return [
        Step(
            sql.SQL("DROP TRIGGER IF EXISTS {} ON {}").format(sql.Identifier(t), src),
            "stop capturing: the original is no longer written",
        )
        for t in CAPTURE_TRIGGERS
    ]


def online_phases(ctx):
    """Online mode: copy beside the original while writers go on, replay their changes, swap in one short lock."""
    names, display = ctx.names, ctx.display
    shadow = names["shadow"]
    state_insert = _state_insert(names, ctx.table["oid"], "online", "copy", display)
    swap, lock_targets = swap_steps(ctx, shadow)
    prepare = (
        _state_steps()
        + shadow_steps(ctx, shadow)
        + _capture_steps(ctx)
        + [Step(state_insert, "remember the progress of this migration")]
    )
    copy_example = Step(
        copy_statement(names, ctx.insert_cols, ctx.overriding, 0, 1000),
        "copy one batch of heap pages (repeated: about %d rows per batch); each batch commits with its "
        "progress" % ctx.options["batch_rows"],
    )
    replay = _replay_steps(names, ctx.replay_key, ctx.replay_key_types, ctx.insert_cols, ctx.overriding, shadow)
    compare = Step(
        checksum_compare_sql(
            _checksum_source(names, ctx.key, ctx.ranges, ctx.default, columns=ctx.table["columns"]),
            _checksum_target(names, shadow, columns=ctx.table["columns"]),
        ),
        "compare source and shadow per partition",
    )
    return [
        {
            "name": "prepare",
            "description": "create the partitioned shadow (no indexes), the change log and the capture triggers",
            "steps": prepare,
        },
        {"name": "copy", "description": "copy in batches of heap pages without indexes", "steps": [copy_example]},
        {
            "name": "build",
            "description": "build indexes, keys and foreign keys on the filled partitions",
            "units": [("build %d" % i, u) for i, u in enumerate(build_units(ctx, shadow))],
        },
        {
            "name": "catchup",
            "description": "replay changed keys until the log is small, then verify counts and "
            "checksums per partition in one snapshot",
            "steps": replay + [compare],
        },
        {
            "name": "swap",
            "description": "one short transaction: lock, replay the last changes, verify them, rename",
            "steps": _online_swap(ctx, replay, lock_targets) + swap,
        },
        {
            "name": "post",
            "description": "rebuild materialized views, validate re-pointed foreign keys, ANALYZE, cleanup",
            "units": post_units(ctx, drop_log=True),
        },
    ]


def _online_swap(ctx, replay, lock_targets):
    """The head of the online swap: lock, last replay, verify the replayed rows, stop capturing."""
    names = ctx.names
    shadow = names["shadow"]
    key_verify = Step(
        _verify_block(
            ctx.display,
            _checksum_source(names, None, None, None, REPLAY_KEYS, ctx.replay_key, columns=ctx.table["columns"]),
            _checksum_target(names, shadow, REPLAY_KEYS, ctx.replay_key, columns=ctx.table["columns"]),
            "rows changed since the online verification",
        ),
        "verify the rows replayed under the lock",
    )
    swap_lock = Step(
        sql.SQL("LOCK TABLE {} IN ACCESS EXCLUSIVE MODE").format(_ident(names["schema"], names["name"])),
        "the swap: writers wait from here to the commit",
        lock=ACCESS_EXCLUSIVE,
        targets=[(names["schema"], names["name"])] + lock_targets,
    )
    return [swap_lock] + replay + [key_verify] + _drop_capture_steps(ctx)
