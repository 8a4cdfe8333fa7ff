# Copyright: (c) 2026, SIGETI data platform team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The phases of the copying modes (pure): ``online`` (prepare, copy, build, catchup, swap, post) and
``offline`` (one transaction with writes blocked, then post), with the capture triggers of the online mode.
"""

from __future__ import annotations

from ansible_collections.sigeti.dwh.plugins.module_utils.plan import (
    ACCESS_EXCLUSIVE,
    SHARE_ROW_EXCLUSIVE,
    Step,
)

try:
    from psycopg2 import sql
except ImportError:  # reported by the connection layer
    sql = None
from ansible_collections.sigeti.dwh.plugins.module_utils.migration_build import (
    _build_units,
    _post_units,
    _shadow_steps,
)
from ansible_collections.sigeti.dwh.plugins.module_utils.migration_sql import (
    CAPTURE_TRIGGERS,
    EXCLUSIVE,
    REPLAY_KEYS,
    STATE_SCHEMA,
    STATE_TABLE,
    _AsLiteral,
    _checksum_source,
    _checksum_target,
    _cols,
    _ident,
    _join,
    _replay_steps,
    _state_steps,
    _verify_block,
    checksum_compare_sql,
    copy_statement,
)
from ansible_collections.sigeti.dwh.plugins.module_utils.migration_swap import (
    _swap_steps,
)


def _capture_steps(ctx):
    names = ctx["names"]
    src = _ident(names["schema"], names["name"])
    log = _ident(STATE_SCHEMA, names["log"])
    func = _ident(STATE_SCHEMA, names["function"])
    key_cols = ctx["replay_key"]
    key_types = [ctx["columns"][c]["type"] for c in key_cols]
    ctx["replay_key_types"] = key_types
    body = sql.SQL(
        "BEGIN IF TG_OP IN ('INSERT', 'UPDATE') THEN INSERT INTO {log} ({c}) SELECT {c} FROM sigeti_new; END IF; "
        "IF TG_OP IN ('DELETE', 'UPDATE') THEN INSERT INTO {log} ({c}) SELECT {c} FROM sigeti_old; END IF; "
        "IF TG_OP = 'TRUNCATE' THEN RAISE EXCEPTION 'sigeti.dwh: {t} is being migrated to partitions: TRUNCATE is "
        "refused until the migration ends'; END IF; RETURN NULL; END"
    ).format(log=log, c=_cols(key_cols), t=sql.SQL(ctx["display"].replace("'", "''").replace("%", "")))
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
    src = _ident(ctx["names"]["schema"], ctx["names"]["name"])
    return [
        Step(
            sql.SQL("DROP TRIGGER IF EXISTS {} ON {}").format(sql.Identifier(t), src),
            "stop capturing: the original is no longer written",
        )
        for t in CAPTURE_TRIGGERS
    ]


def _copy_phases(ctx):
    names, display = ctx["names"], ctx["display"]
    mode = ctx["options"]["mode"]
    shadow = names["shadow"]
    src = _ident(names["schema"], names["name"])
    insert_all = Step(
        sql.SQL("INSERT INTO {} ({}){} SELECT {} FROM {}").format(
            _ident(names["schema"], shadow),
            _cols(ctx["insert_cols"]),
            ctx["overriding"],
            _cols(ctx["insert_cols"]),
            src,
        ),
        "copy every row (writes are blocked by the EXCLUSIVE lock)",
    )
    ctx["insert_all"] = insert_all  # its row count is the offline run's rows_copied
    full_verify = Step(
        _verify_block(
            display,
            _checksum_source(names, ctx["key"], ctx["ranges"], ctx["default"]),
            _checksum_target(names, shadow),
            "per partition: rows and content checksum",
        ),
        "verify before the swap: per target partition, row count and content checksum",
    )
    state_insert = sql.SQL(
        "INSERT INTO {} (schema_name, table_name, source_oid, mode, phase, total_pages) VALUES ({}, {}, {}, {}, {}, "
        "(SELECT pg_relation_size({}) / current_setting('block_size')::bigint))"
    ).format(
        _ident(STATE_SCHEMA, STATE_TABLE),
        sql.Literal(names["schema"]),
        sql.Literal(names["name"]),
        sql.Literal(int(ctx["table"]["oid"])),
        sql.Literal(mode),
        sql.Literal("copy" if mode == "online" else "post"),
        sql.Literal(display),
    )
    swap, lock_targets = _swap_steps(ctx, shadow)
    post = _post_units(ctx, drop_log=(mode == "online"))
    if mode == "offline":
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
        body = [lock] + _state_steps() + _shadow_steps(ctx, shadow) + [insert_all]
        for unit in _build_units(ctx, shadow, validate_separately=False):
            body.extend(unit)
        body += [full_verify, lock2] + swap + [Step(state_insert, "remember the phases after the swap")]
        return [
            {
                "name": "offline",
                "description": "one transaction: build, copy, index, verify and swap with writes "
                "blocked (fastest; for maintenance windows)",
                "steps": body,
            },
            {"name": "post", "description": "rebuild materialized views, ANALYZE, cleanup", "units": post},
        ]
    prepare = (
        _state_steps()
        + _shadow_steps(ctx, shadow)
        + _capture_steps(ctx)
        + [Step(state_insert, "remember the progress of this migration")]
    )
    copy_example = Step(
        copy_statement(names, ctx["insert_cols"], ctx["overriding"], 0, 1000),
        "copy one batch of heap pages (repeated: about %d rows per batch); each batch commits with its "
        "progress" % ctx["options"]["batch_rows"],
    )
    replay = _replay_steps(
        names, ctx["replay_key"], ctx["replay_key_types"], ctx["insert_cols"], ctx["overriding"], shadow
    )
    key_verify = Step(
        _verify_block(
            display,
            _checksum_source(names, None, None, None, REPLAY_KEYS, ctx["replay_key"]),
            _checksum_target(names, shadow, REPLAY_KEYS, ctx["replay_key"]),
            "rows changed since the online verification",
        ),
        "verify the rows replayed under the lock",
    )
    swap_lock = Step(
        sql.SQL("LOCK TABLE {} IN ACCESS EXCLUSIVE MODE").format(src),
        "the swap: writers wait from here to the commit",
        lock=ACCESS_EXCLUSIVE,
        targets=[(names["schema"], names["name"])] + lock_targets,
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
            "units": [("build %d" % i, u) for i, u in enumerate(_build_units(ctx, shadow))],
        },
        {
            "name": "catchup",
            "description": "replay changed keys until the log is small, then verify counts and "
            "checksums per partition in one snapshot",
            "steps": replay
            + [
                Step(
                    checksum_compare_sql(
                        _checksum_source(names, ctx["key"], ctx["ranges"], ctx["default"]),
                        _checksum_target(names, shadow),
                    ),
                    "compare source and shadow per partition",
                )
            ],
        },
        {
            "name": "swap",
            "description": "one short transaction: lock, replay the last changes, verify them, rename",
            "steps": [swap_lock] + replay + [key_verify] + _drop_capture_steps(ctx) + swap,
        },
        {
            "name": "post",
            "description": "rebuild materialized views, validate re-pointed foreign keys, ANALYZE, cleanup",
            "units": post,
        },
    ]
