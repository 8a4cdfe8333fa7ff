# Copyright: (c) 2026, SIGETI data platform team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Small SQL builders of the migration (pure): the names it creates, option defaults, checksums, the copy
batch, the replay of logged keys, state-row updates, grants and policies. Nothing here reads the database.
"""

from __future__ import annotations

import hashlib
import re
from typing import TYPE_CHECKING, Any, Iterable, Sequence

from ansible_collections.sigeti.dwh.plugins.module_utils.core.errors import DwhError, InvalidInput
from ansible_collections.sigeti.dwh.plugins.module_utils.core.records import Facts
from ansible_collections.sigeti.dwh.plugins.module_utils.plan.steps import AsLiteral, Step

if TYPE_CHECKING:  # names used in annotations only
    from psycopg2.sql import Composable, Composed

try:
    from psycopg2 import sql
except ImportError:  # reported by the connection layer
    sql = None


EXCLUSIVE = "EXCLUSIVE"
SHARE = "SHARE"
STATE_SCHEMA = "sigeti_dwh"
STATE_TABLE = "migration_state"
MODES = ("online", "offline", "attach", "never")
PRE_SWAP_PHASES = ("copy", "build", "catchup", "swap")
DEFAULT_OPTIONS = {
    "mode": "online",
    "key": None,
    "batch_rows": 100000,
    "extend_primary_key": False,
    "drop_source": False,
    # the online catch-up (migration_run._catch_up): bounded batches of logged keys, one transaction each, sized to
    # take about ``replay_seconds``; done when fewer than ``replay_threshold`` keys are left; given up (the original
    # stays in use, the next run resumes) when the keys left did not shrink over ``catchup_patience`` seconds
    "replay_batch_keys": 5000,
    "replay_seconds": 1.0,
    "replay_threshold": 5000,
    "catchup_patience": 60.0,
    "check_disk": True,
}
CAPTURE_TRIGGERS = (
    "sigeti_dwh_capture_ins",
    "sigeti_dwh_capture_upd",
    "sigeti_dwh_capture_del",
    "sigeti_dwh_capture_trunc",
)
REPLAY_KEYS = "sigeti_replay_keys"
INTEGER_TYPES = ("smallint", "integer", "bigint")
MAX_NAME = 63
# what a step achieves, so the runner reads its row count by this mark (never by the text of its SQL)
COPIED = ("copied", "rows")
REPLAYED = ("replayed", "changed keys")
REMOVED = ("removed", "shadow rows of replayed keys")
INSERTED = ("inserted", "shadow rows of replayed keys")


def rows_of(steps: Iterable[Step], effect: tuple[str, str]) -> int:
    """Rows touched by the steps marked ``effect``, once they ran (the copy, or the keys a replay consumed)."""
    return sum(max(step.rowcount or 0, 0) for step in steps if step.effect == effect)


def derived_name(base: str, suffix: str) -> str:
    """``base + suffix`` within PostgreSQL's 63-byte limit (a long base is cut and made unique by a hash)."""
    if len((base + suffix).encode("utf-8")) <= MAX_NAME:
        return base + suffix
    digest = hashlib.md5(base.encode("utf-8")).hexdigest()[:8]
    room = MAX_NAME - len(suffix.encode("utf-8")) - 9
    cut = base
    while len(cut.encode("utf-8")) > room:
        cut = cut[:-1]
    return "%s_%s%s" % (cut, digest, suffix)


def migration_names(table: dict[str, Any]) -> dict[str, str]:
    """The names a migration of ``table`` (catalog facts) creates, all derived from its name and oid."""
    name = table["name"]
    return {
        "schema": table["schema"],
        "name": name,
        "shadow": derived_name(name, "_sgt_new"),
        "unpartitioned": derived_name(name, "_unpartitioned"),
        "log": "mig_log_%s" % table["oid"],
        "function": "mig_capture_%s" % table["oid"],
    }


def normalize_options(options: dict[str, Any] | None) -> dict[str, Any]:
    """Return the options with defaults filled in; raise InvalidInput on a bad mode or batch size."""
    result = dict(DEFAULT_OPTIONS)
    result.update({k: v for k, v in (options or {}).items() if v is not None})
    if result["mode"] not in MODES:
        raise InvalidInput("migrate must be one of %s, not %r" % (", ".join(MODES), result["mode"]))
    try:
        result["batch_rows"] = int(result["batch_rows"])
    except (TypeError, ValueError):
        raise InvalidInput("batch_rows must be an integer, not %r" % (result["batch_rows"],))
    if result["batch_rows"] < 1:
        raise InvalidInput("batch_rows must be at least 1, not %d" % result["batch_rows"])
    return result


def identifier(*parts: str) -> sql.Identifier:
    """A (qualified) identifier."""
    return sql.Identifier(*parts)


def join_sql(parts: Iterable[Composable], sep: str = ", ") -> Composed:
    """SQL parts joined by ``sep``."""
    return sql.SQL(sep).join(parts)


def column_list(names: Iterable[str], alias: str | None = None) -> Composed:
    """Column names as a list, qualified by ``alias`` when given."""
    if alias:
        return join_sql([sql.Identifier(alias, n) for n in names])
    return join_sql([sql.Identifier(n) for n in names])


def bound_literal(value: Any) -> sql.Literal:
    """A partition bound value as an SQL literal."""
    return sql.Literal(value)


def in_ranges(key: str, ranges: Sequence[Any]) -> Composed:
    """SQL: the key falls in one of the declared ranges (adjacent ranges merged, so the test stays short)."""
    merged = []
    for entry in ranges:
        if merged and merged[-1][1] == entry["low"]:
            merged[-1][1] = entry["high"]
        else:
            merged.append([entry["low"], entry["high"]])
    return join_sql(
        [
            sql.SQL("({k} >= {lo} AND {k} < {hi})").format(
                k=sql.Identifier(key), lo=bound_literal(lo), hi=bound_literal(hi)
            )
            for lo, hi in merged
        ],
        " OR ",
    )


def _bucket(key, ranges, default, key_type):
    """SQL naming the target partition of a source row: ``width_bucket`` over the sorted bounds (a binary search;
    gaps between ranges name the default partition) instead of a CASE testing every range in turn, which cost
    2.4 times more with 120 monthly partitions. ``key_type`` (``format_type`` of the key) types the bounds."""
    bounds, names = [], []
    for entry in ranges:  # sorted by low, never overlapping (validate_layout)
        if bounds and bounds[-1] != entry["low"]:
            names.append(default["name"] if default else None)  # the gap [previous high, low)
        if not bounds or bounds[-1] != entry["low"]:
            bounds.append(entry["low"])
        bounds.append(entry["high"])
        names.append(entry["name"])
    other = sql.Literal(default["name"]) if default else sql.SQL("NULL")
    if not ranges:
        return sql.SQL("{}::text").format(other)
    # below the first bound: 0, at or above the last: len(bounds); both outside the names array, so NULL
    return sql.SQL("coalesce((ARRAY[{n}]::text[])[width_bucket({k}, ARRAY[{b}]::{t}[])], {o})").format(
        n=join_sql([sql.Literal(n) if n else sql.SQL("NULL") for n in names]),
        k=sql.Identifier("t", key),
        b=join_sql([bound_literal(b) for b in bounds]),
        t=sql.SQL(key_type),
        o=other,
    )


def state_update(names: Facts, **values: Any) -> Composed:
    """UPDATE of the migration's state row setting ``values``."""
    assignments = [
        sql.SQL("{} = {}").format(sql.Identifier(k), v if isinstance(v, sql.Composable) else sql.Literal(v))
        for k, v in sorted(values.items())
    ]
    assignments.append(sql.SQL("updated_at = clock_timestamp()"))
    return sql.SQL("UPDATE {} SET {} WHERE schema_name = {} AND table_name = {}").format(
        identifier(STATE_SCHEMA, STATE_TABLE),
        join_sql(assignments),
        sql.Literal(names["schema"]),
        sql.Literal(names["name"]),
    )


def state_steps(facts: dict[str, Any] | None = None) -> list[Step]:
    """The state schema (unless ``facts`` saw it: CREATE SCHEMA IF NOT EXISTS still asks for CREATE on the database,
    which an owner migrating its own table may lack) and the state table, created on first use."""
    hazards = (facts or {}).get("hazards") or {}
    schema = []
    if hazards.get("can_create_in_state_schema") is None:  # None: no sigeti_dwh yet (or not read)
        schema.append(
            Step(
                sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(identifier(STATE_SCHEMA)),
                "schema for the migration state (created on first use)",
            )
        )
    return schema + [
        Step(
            sql.SQL(
                "CREATE TABLE IF NOT EXISTS {} (schema_name text NOT NULL, table_name text NOT NULL, "
                "source_oid oid NOT NULL, mode text NOT NULL, phase text NOT NULL, total_pages bigint NOT NULL DEFAULT 0, "
                "next_page bigint NOT NULL DEFAULT 0, rows_copied bigint NOT NULL DEFAULT 0, "
                "step_done integer NOT NULL DEFAULT 0, replayed bigint NOT NULL DEFAULT 0, post jsonb, "
                "result jsonb NOT NULL DEFAULT '{{}}', started_at timestamptz NOT NULL DEFAULT clock_timestamp(), "
                "updated_at timestamptz NOT NULL DEFAULT clock_timestamp(), PRIMARY KEY (schema_name, table_name))"
            ).format(identifier(STATE_SCHEMA, STATE_TABLE)),
            "progress of migrations, so a killed run resumes",
        ),
    ]


def state_insert_sql(names: Facts, oid: int, mode: str, phase: str, display: str) -> Composed:
    """The state row of a new migration, with the number of heap pages the online copy will read."""
    return sql.SQL(
        "INSERT INTO {} (schema_name, table_name, source_oid, mode, phase, total_pages) VALUES ({}, {}, {}, {}, {}, "
        "(SELECT pg_relation_size({}) / current_setting('block_size')::bigint))"
    ).format(
        identifier(STATE_SCHEMA, STATE_TABLE),
        sql.Literal(names["schema"]),
        sql.Literal(names["name"]),
        sql.Literal(int(oid)),
        sql.Literal(mode),
        sql.Literal(phase),
        sql.Literal(display),
    )


# Types whose hash function tells every two different values apart (equality is identity), by ``typname`` and the
# name ``format_type`` gives the built-in one (a user type of the same typname reads differently there): hashed in
# their binary form by ``hash_record_extended``, about three times cheaper than the text of the row. Text is hashed
# under COLLATE "C" (bytes), so a nondeterministic collation cannot make 'A' and 'a' one value.
_EXACT_HASH_TYPES = {
    "int2": "smallint",
    "int4": "integer",
    "int8": "bigint",
    "bool": "boolean",
    "date": "date",
    "timestamp": "timestamp without time zone",
    "timestamptz": "timestamp with time zone",
    "uuid": "uuid",
    "bytea": "bytea",
    "text": "text",
    "varchar": "character varying",
    "numeric": "numeric",
}
_COLLATABLE = ("text", "varchar")


def _exact_hash_type(column):
    """The column's ``typname`` when its values hash natively without losing a difference, else None."""
    name = column.get("type_name")
    shown = re.sub(r"\(\d+(,\d+)?\)", "", column.get("type") or "").strip()
    return name if _EXACT_HASH_TYPES.get(name) == shown else None


def row_digest(columns: Iterable[dict[str, Any]], alias: str = "t") -> Composed:
    """SQL: a 64-bit digest of every column of a row (``columns``: catalog facts with name, type, type_name).

    Columns of an exact-hash type are hashed in binary form (a numeric with its scale too: 1.0 and 1.00 are equal
    but read differently); every other column (float, json, arrays, domains, user types...) by its text, as
    ``ROW(...)::text`` prints it, so NULL and '' still differ. The same expression on both sides of a copy tells
    whether their contents are the same.
    """
    native, other = [], []
    for column in columns:
        ref = sql.Identifier(alias, column["name"])
        kind = _exact_hash_type(column)
        if kind is None:
            other.append(ref)
        elif kind in _COLLATABLE:
            native.append(sql.SQL('({} COLLATE "C")').format(ref))
        elif kind == "numeric":
            native.extend([ref, sql.SQL("scale({})").format(ref)])
        else:
            native.append(ref)
    if other:
        native.append(sql.SQL("ROW({})::text").format(join_sql(other)))
    return sql.SQL("hash_record_extended(ROW({}), 0)").format(join_sql(native))


def _keys_join(keys_table, replay_key):
    if not keys_table:
        return sql.SQL("")
    return sql.SQL(" JOIN {} k ON {}").format(
        sql.Identifier(keys_table),
        join_sql([sql.SQL("t.{c} = k.{c}").format(c=sql.Identifier(c)) for c in replay_key], " AND "),
    )


def checksum_source(
    names: Facts,
    key: str,
    ranges: Sequence[Any],
    default: Any,
    keys_table: str | None = None,
    replay_key: Sequence[str] | None = None,
    *,
    columns: Sequence[Facts],
) -> Composed:
    """SQL: rows and content checksum of the original, per target partition (or of the rows of ``keys_table``)."""
    src = identifier(names["schema"], names["name"])
    if keys_table:
        bucket = sql.Literal("replayed keys")
    else:
        bucket = _bucket(key, ranges, default, next(c["type"] for c in columns if c["name"] == key))
    return sql.SQL("SELECT {b} AS b, count(*) AS n, sum({d}) AS h FROM {src} t{j} GROUP BY 1").format(
        b=bucket, d=row_digest(columns), src=src, j=_keys_join(keys_table, replay_key)
    )


def checksum_target(
    names: Facts,
    shadow: str,
    keys_table: str | None = None,
    replay_key: Sequence[str] | None = None,
    *,
    columns: Sequence[Facts],
) -> Composed:
    """SQL: rows and content checksum of the shadow, per partition (or of the rows of ``keys_table``)."""
    target = identifier(names["schema"], shadow)
    if keys_table:
        return sql.SQL("SELECT 'replayed keys'::text AS b, count(*) AS n, sum({d}) AS h FROM {t} t{j}").format(
            d=row_digest(columns), t=target, j=_keys_join(keys_table, replay_key)
        )
    return sql.SQL(
        "SELECT c.relname::text AS b, x.n, x.h FROM (SELECT t.tableoid, count(*) AS n, "
        "sum({d}) AS h FROM {t} t GROUP BY 1) x JOIN pg_catalog.pg_class c ON c.oid = x.tableoid"
    ).format(d=row_digest(columns), t=target)


def checksum_total(relation: Composable, columns: Sequence[Facts]) -> Composed:
    """SQL: rows and content checksum of a whole table, one row (no grouping: the cheap check of the offline mode)."""
    return sql.SQL("SELECT count(*), sum({d}) FROM {r} t").format(d=row_digest(columns), r=relation)


def totals_differ(source_total: Sequence[Any], target_total: Sequence[Any]) -> bool:
    """Whether two ``checksum_total`` results (``(rows, checksum)``) differ."""
    return tuple(source_total) != tuple(target_total)


class _FromTotals(sql.Composable if sql else object):
    """SQL rendered from the whole-table totals two earlier steps of the same transaction returned, when the
    Executor reaches the step embedding it (like ``plan.RowcountOf``); ``before`` until those steps ran."""

    before = ""

    def __init__(self, source_step: Step, target_step: Step) -> None:
        super().__init__((source_step, target_step))
        self.source_step = source_step
        self.target_step = target_step

    def as_string(self, context: Any) -> str:
        """The SQL ``render`` makes from the two totals once both steps ran, ``before`` until then."""
        if self.source_step.rows is None or self.target_step.rows is None:
            return self.before
        return self.render(self.source_step.rows[0], self.target_step.rows[0], context)

    def render(self, source: Sequence[Any], target: Sequence[Any], context: Any) -> str:
        """The SQL for these (rows, checksum) totals of the original and of the shadow."""
        raise NotImplementedError


class TotalsDiffer(_FromTotals):
    """``true`` when the totals differ, else ``false``.

    A detail query gated by it (``WHERE false``) is planned as a one-time filter and reads nothing, so the detail per
    partition costs a scan only when there is a difference to name. Before the steps ran (check mode) it renders as
    a comment and ``true``.
    """

    before = "/* only when the totals differ */ true"

    def render(self, source: Sequence[Any], target: Sequence[Any], context: Any) -> str:
        """``true`` when the totals differ."""
        return "true" if totals_differ(source, target) else "false"


class ExportedSnapshot(sql.Composable if sql else object):
    """The snapshot id an earlier ``SELECT pg_export_snapshot()`` step returned, as a literal (rendered when the
    Executor reaches the step embedding it; a comment before, in check mode)."""

    def __init__(self, export_step: Step) -> None:
        super().__init__(export_step)
        self.export_step = export_step

    def as_string(self, context: Any) -> str:
        """The exported snapshot id as a literal once the export ran, a comment before."""
        if not self.export_step.rows:
            return "/* the snapshot exported by the verification */"
        return sql.Literal(self.export_step.rows[0][0]).as_string(context)


def checksum_detail_sql(
    source_sql: Composable, target_sql: Composable, source_step: Step, target_step: Step
) -> Composed:
    """SQL: the per-partition comparison, run only when the totals of ``source_step`` and ``target_step`` differ."""
    return sql.SQL("SELECT * FROM ({}) c WHERE {}").format(
        checksum_compare_sql(source_sql, target_sql), TotalsDiffer(source_step, target_step)
    )


def checksum_compare_sql(source_sql: Composable, target_sql: Composable) -> Composed:
    """SQL listing the buckets where source and target differ (rows, checksum)."""
    return sql.SQL(
        "SELECT coalesce(s.b, d.b) AS bucket, coalesce(s.n, 0) AS source_rows, coalesce(d.n, 0) AS target_rows, "
        "s.h::text AS source_checksum, d.h::text AS target_checksum "
        "FROM ({s}) s FULL JOIN ({d}) d ON s.b = d.b ORDER BY 1"
    ).format(s=source_sql, d=target_sql)


def verify_block(display: str, source_sql: Composable, target_sql: Composable, what: str) -> Composed:
    """DO block: raise (rolling the transaction back) when the per-partition checksums of source and target differ."""
    body = sql.SQL(
        "DECLARE bad text; BEGIN SELECT string_agg(format('%s: source %s rows (checksum %s), target %s rows "
        "(checksum %s)', bucket, source_rows, source_checksum, target_rows, target_checksum), '; ') INTO bad "
        "FROM ({cmp}) c WHERE source_rows <> target_rows OR source_checksum IS DISTINCT FROM target_checksum; "
        "IF bad IS NOT NULL THEN RAISE EXCEPTION USING ERRCODE = 'P0001', MESSAGE = {msg} || bad; END IF; END"
    ).format(
        cmp=checksum_compare_sql(source_sql, target_sql),
        msg=sql.Literal("sigeti.dwh: verification of %s failed (%s), nothing was swapped: " % (display, what)),
    )
    return sql.SQL("DO {}").format(AsLiteral(body))


class _TotalsText(_FromTotals):
    """The totals, as a string literal for a message."""

    before = "/* the totals */ ''"

    def render(self, source: Sequence[Any], target: Sequence[Any], context: Any) -> str:
        (sn, sh), (dn, dh) = source, target
        text = "source %s rows (checksum %s), target %s rows (checksum %s): " % (sn, sh, dn, dh)
        return sql.Literal(text).as_string(context)


def verify_totals_block(
    display: str, source_step: Step, target_step: Step, source_sql: Composable, target_sql: Composable, what: str
) -> Composed:
    """DO block: raise (rolling the transaction back) when the whole-table totals ``source_step`` and ``target_step``
    returned (``checksum_total``, one scan each, no grouping) differ, naming the partitions that differ: the detail
    per partition is computed only then (``IF false`` plans nothing)."""
    body = sql.SQL(
        "DECLARE bad text; BEGIN IF {differ} THEN "
        "SELECT string_agg(format('%s: source %s rows (checksum %s), target %s rows (checksum %s)', bucket, "
        "source_rows, source_checksum, target_rows, target_checksum), '; ') INTO bad FROM ({cmp}) c "
        "WHERE source_rows <> target_rows OR source_checksum IS DISTINCT FROM target_checksum; "
        "RAISE EXCEPTION USING ERRCODE = 'P0001', MESSAGE = {msg} || {totals} "
        "|| coalesce(bad, 'no partition differs alone'); END IF; END"
    ).format(
        differ=TotalsDiffer(source_step, target_step),
        cmp=checksum_compare_sql(source_sql, target_sql),
        msg=sql.Literal("sigeti.dwh: verification of %s failed (%s), nothing was swapped: " % (display, what)),
        totals=_TotalsText(source_step, target_step),
    )
    return sql.SQL("DO {}").format(AsLiteral(body))


def replay_steps(
    names: Facts,
    replay_key: Sequence[str],
    key_types: Sequence[str],
    insert_cols: Composable,
    overriding: Composable,
    shadow: str,
    limit: int | None = None,
) -> list[Step]:
    """The replay of the logged keys into the shadow, in one transaction: take the keys (all of them, or the
    ``limit`` oldest: a bounded batch of the catch-up), drop their rows from the shadow, copy them again."""
    src = identifier(names["schema"], names["name"])
    log = identifier(STATE_SCHEMA, names["log"])
    keys = sql.Identifier(REPLAY_KEYS)
    match = join_sql([sql.SQL("t.{c} = k.{c}").format(c=sql.Identifier(c)) for c in replay_key], " AND ")
    taken = sql.SQL("")
    if limit is not None:
        taken = sql.SQL(" WHERE log_id IN (SELECT log_id FROM {log} ORDER BY log_id LIMIT {n})").format(
            log=log, n=sql.Literal(int(limit))
        )
    return [
        Step(
            sql.SQL("CREATE TEMP TABLE IF NOT EXISTS {} ({}) ON COMMIT DROP").format(
                keys,
                join_sql(
                    [sql.SQL("{} {}").format(sql.Identifier(c), sql.SQL(t)) for c, t in zip(replay_key, key_types)]
                ),
            ),
            "keys changed since the last replay",
        ),
        Step(
            sql.SQL(
                "WITH consumed AS (DELETE FROM {log}{taken} RETURNING {c}) INSERT INTO {keys} SELECT DISTINCT {c} "
                "FROM consumed"
            ).format(log=log, taken=taken, c=column_list(replay_key), keys=keys),
            "take the logged keys (rows logged by transactions still open stay for the next replay)"
            if limit is None
            else "take the %d oldest logged keys (a bounded batch: the transaction stays short)" % int(limit),
            effect=REPLAYED,
        ),
        Step(sql.SQL("ANALYZE {}").format(keys), "statistics for the replay joins"),
        Step(
            sql.SQL("DELETE FROM {t} t USING {keys} k WHERE {m}").format(
                t=identifier(names["schema"], shadow), keys=keys, m=match
            ),
            "drop the shadow's copy of changed rows",
            effect=REMOVED,
        ),
        Step(
            sql.SQL("INSERT INTO {t} ({c}){o} SELECT {sc} FROM {src} t JOIN {keys} k ON {m}").format(
                t=identifier(names["schema"], shadow),
                c=column_list(insert_cols),
                o=overriding,
                sc=column_list(insert_cols, "t"),
                src=src,
                keys=keys,
                m=match,
            ),
            "copy the changed rows again from the original",
            effect=INSERTED,
        ),
    ]


def backlog_step(names: dict[str, str]) -> Step:
    """Keys left in the change log (the span of its visible ids: cheap, from its primary key) and keys ever logged
    (its sequence, committed or not): what the catch-up measures its progress and the writers' rate by."""
    log = identifier(STATE_SCHEMA, names["log"])
    return Step(
        sql.SQL(
            "SELECT coalesce(max(log_id) - min(log_id) + 1, 0), "
            "pg_sequence_last_value(pg_get_serial_sequence({name}, 'log_id')) FROM {log}"
        ).format(name=sql.Literal("%s.%s" % (STATE_SCHEMA, names["log"])), log=log),
        "keys left in the change log, and keys logged so far: the catch-up's progress",
    )


def grant_steps(grants: Sequence[Facts], column_grants: Sequence[Facts], target: Composable, reason: str) -> list[Step]:
    """The GRANT steps giving ``target`` the table's and its columns' privileges."""
    steps = []
    for g in grants:
        grantee = sql.SQL("PUBLIC") if g["grantee"] == "PUBLIC" else sql.Identifier(g["grantee"])
        steps.append(
            Step(
                sql.SQL("GRANT {} ON TABLE {} TO {}{}").format(
                    sql.SQL(g["privilege"]), target, grantee, sql.SQL(" WITH GRANT OPTION" if g["grantable"] else "")
                ),
                reason,
            )
        )
    for g in column_grants:
        grantee = sql.SQL("PUBLIC") if g["grantee"] == "PUBLIC" else sql.Identifier(g["grantee"])
        steps.append(
            Step(
                sql.SQL("GRANT {} ({}) ON TABLE {} TO {}{}").format(
                    sql.SQL(g["privilege"]),
                    sql.Identifier(g["column"]),
                    target,
                    grantee,
                    sql.SQL(" WITH GRANT OPTION" if g["grantable"] else ""),
                ),
                reason,
            )
        )
    return steps


def policy_step(policy: Facts, target: Composable) -> Step:
    """The CREATE POLICY step recreating a row-level security policy on ``target``."""
    commands = {"r": "SELECT", "a": "INSERT", "w": "UPDATE", "d": "DELETE", "*": "ALL"}
    roles = join_sql([sql.SQL("PUBLIC") if r == "PUBLIC" else sql.Identifier(r) for r in policy["roles"]])
    text = sql.SQL("CREATE POLICY {} ON {} AS {} FOR {} TO {}").format(
        sql.Identifier(policy["name"]),
        target,
        sql.SQL("PERMISSIVE" if policy["permissive"] else "RESTRICTIVE"),
        sql.SQL(commands.get(policy["command"], "ALL")),
        roles,
    )
    if policy["using"]:
        text = text + sql.SQL(" USING ({})").format(sql.SQL(policy["using"]))
    if policy["with_check"]:
        text = text + sql.SQL(" WITH CHECK ({})").format(sql.SQL(policy["with_check"]))
    return Step(text, "row-level security policy %s" % policy["name"])


def key_definition(definition: str, columns: Sequence[str], reloptions: Sequence[str] | None = None) -> Composed:
    """``pg_get_constraintdef`` of a key with its column list replaced by ``columns``: INCLUDE, USING INDEX
    TABLESPACE and DEFERRABLE ... are kept as the original had them, and the index's storage parameters
    (``reloptions``, which pg_get_constraintdef leaves out) are put back as ``WITH (...)`` (pure)."""
    head, tail = split_key(definition)
    include = ""
    if tail.startswith(" INCLUDE ("):
        close = _paren_end(tail, tail.index("("))
        include, tail = tail[: close + 1], tail[close + 1 :]
    with_clause = sql.SQL("")
    if reloptions and not tail.startswith(" WITH ("):
        with_clause = sql.SQL(" WITH ({})").format(
            join_sql(
                [
                    sql.SQL("{} = {}").format(sql.SQL(o.split("=", 1)[0]), sql.Literal(o.split("=", 1)[1]))
                    for o in reloptions
                ]
            )
        )
    return sql.SQL("{}({}){}{}{}").format(
        sql.SQL(head), column_list(columns), sql.SQL(include), with_clause, sql.SQL(tail)
    )


def _paren_end(text, start):
    """Index of the parenthesis closing the one at ``start`` (double-quoted names skipped)."""
    depth, quoted = 0, False
    for position in range(start, len(text)):
        char = text[position]
        if char == '"':
            quoted = not quoted  # a doubled quote inside a name flips twice
        elif not quoted and char == "(":
            depth += 1
        elif not quoted and char == ")":
            depth -= 1
            if depth == 0:
                return position
    raise DwhError("cannot read the key definition %r: unbalanced parentheses" % text)


def split_key(definition: str) -> tuple[str, str]:
    """``("PRIMARY KEY ", " INCLUDE (v) ...")``: what precedes and follows a key definition's column list."""
    start = definition.index("(")
    end = _paren_end(definition, start)
    return definition[:start], definition[end + 1 :]


def rule_text(definition: str, replace: bool = False) -> sql.SQL:
    """``pg_get_ruledef`` output as a statement: names in it are schema-qualified (read under search_path
    pg_catalog), so once the partitioned table has taken the name it binds to it."""
    text = definition.strip().rstrip(";")
    if replace:
        text = "CREATE OR REPLACE RULE " + text[len("CREATE RULE ") :]
    return sql.SQL(text)


def copy_statement(
    names: dict[str, str],
    insert_cols: Sequence[str],
    overriding: Composable,
    first_page: int,
    last_page: int | None,
) -> Composed:
    """One copy batch: rows stored in heap pages [first_page, last_page) of the original (a TID range scan);
    ``last_page`` None: every page from ``first_page`` on."""
    pages = sql.SQL("ctid >= {}::tid").format(sql.Literal("(%d,0)" % first_page))
    if last_page is not None:
        pages = sql.SQL("{} AND ctid < {}::tid").format(pages, sql.Literal("(%d,0)" % last_page))
    return sql.SQL("INSERT INTO {} ({}){} SELECT {} FROM {} WHERE {}").format(
        identifier(names["schema"], names["shadow"]),
        column_list(insert_cols),
        overriding,
        column_list(insert_cols),
        identifier(names["schema"], names["name"]),
        pages,
    )


def drop_index_steps(
    names: Facts, indexes: Sequence[str], reason: str = "index %s prebuilt by the attach mode"
) -> list[Step]:
    """DROP INDEX CONCURRENTLY of indexes an attach migration built, each alone."""
    # outside any transaction: DROP INDEX CONCURRENTLY waits for readers instead of blocking them
    return [
        Step(
            sql.SQL("DROP INDEX CONCURRENTLY IF EXISTS {}").format(identifier(names["schema"], index)),
            reason % index,
            transactional=False,
        )
        for index in indexes
    ]
