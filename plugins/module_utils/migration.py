# Copyright: (c) 2026, SIGETI data platform team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Turn a live plain table into a range-partitioned one: online, offline or by attaching it; resumable, verified.

Call order (the ``partitioned_table`` module does this when ``name`` is an existing plain table)::

    table = catalog.read_table(conn, schema, name)
    facts = migration.read_facts(conn, table, layout, options, server)      # catalog reads only
    plan = migration.plan_migration(table, layout, options, server, facts=facts)   # pure, validates everything
    # check mode: migration.render_plan(conn, plan) / migration.plan_queries(conn, plan), then exit
    result = migration.run_migration(conn, executor, table, layout, options, server, facts=facts)

Online mode, phase by phase (each phase commits its progress in ``sigeti_dwh.migration_state``):

``prepare``  one transaction: the partitioned shadow ``<table>_sgt_new`` and its partitions (no indexes), a
             change log ``sigeti_dwh.mig_log_<oid>``, statement-level capture triggers on the original (a short
             SHARE ROW EXCLUSIVE lock, through the Executor) and the state row with the page count to copy.
``copy``     batches of heap pages (TID range scans, no index needed), each batch and its progress in one
             transaction: a killed run loses at most the batch in flight.
``build``    indexes, primary key, unique constraints and foreign keys on the filled shadow (loading first and
             indexing after is ~3x faster than loading into indexed partitions), one transaction each.
``catchup``  replay the logged keys (delete them from the shadow, copy them again from the original) until the
             log is small, then verify in one REPEATABLE READ snapshot: per target partition, row count and a
             content checksum of the original and the shadow must be equal, else abort with the original
             untouched.
``swap``     one short transaction under lock_timeout, retried by the Executor: lock the original, replay the
             last changes, verify them, rename the original to ``<table>_unpartitioned`` and the shadow to
             ``<table>``, move sequences, grants, policies, triggers, incoming foreign keys and dependent views.
``post``     rebuild dependent materialized views beside the old ones then swap their names, validate incoming
             foreign keys, ANALYZE the new parent, drop the log (and the source with ``drop_source``), forget
             the state row. The statements of this phase are stored in the state row by the swap, so a run killed
             here resumes exactly.

A run killed at any moment leaves the original in use: before the swap it is only read (plus the capture
triggers), and the swap is one transaction.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import os
import re
import shutil
import time

from ansible_collections.sigeti.dwh.plugins.module_utils import catalog
from ansible_collections.sigeti.dwh.plugins.module_utils.errors import DwhError, InvalidInput, LockNotGranted
from ansible_collections.sigeti.dwh.plugins.module_utils.identifiers import display_name
from ansible_collections.sigeti.dwh.plugins.module_utils.plan import (
    ACCESS_EXCLUSIVE,
    SHARE_ROW_EXCLUSIVE,
    SHARE_UPDATE_EXCLUSIVE,
    Plan,
    Step,
)

try:
    import psycopg2
    import psycopg2.extensions
    from psycopg2 import sql
except ImportError:  # reported by the connection layer
    psycopg2 = None
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
    "replay_rounds": 20,
    "replay_threshold": 5000,
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


# ---------------------------------------------------------------------------------------------
# Names and small helpers (pure)
# ---------------------------------------------------------------------------------------------


def derived_name(base, suffix):
    """``base + suffix`` within PostgreSQL's 63-byte limit (a long base is cut and made unique by a hash)."""
    if len((base + suffix).encode("utf-8")) <= MAX_NAME:
        return base + suffix
    digest = hashlib.md5(base.encode("utf-8")).hexdigest()[:8]
    room = MAX_NAME - len(suffix.encode("utf-8")) - 9
    cut = base
    while len(cut.encode("utf-8")) > room:
        cut = cut[:-1]
    return "%s_%s%s" % (cut, digest, suffix)


def migration_names(table):
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


def normalize_options(options):
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


class _AsLiteral(sql.Composable if sql else object):
    """A composed SQL text passed as a string literal (function bodies, DO blocks), quoted at render time."""

    def as_string(self, context):
        return sql.Literal(self._wrapped.as_string(context)).as_string(context)


def _ident(*parts):
    return sql.Identifier(*parts)


def _join(parts, sep=", "):
    return sql.SQL(sep).join(parts)


def _cols(names, alias=None):
    if alias:
        return _join([sql.Identifier(alias, n) for n in names])
    return _join([sql.Identifier(n) for n in names])


def _bound_literal(value):
    return sql.Literal(value)


def _human_bytes(value):
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if abs(value) < 1024 or unit == "TB":
            return "%.1f %s" % (value, unit) if unit != "B" else "%d B" % value
        value /= 1024.0
    return str(value)


def _json_value(value):
    return catalog.json_value(value)


# ---------------------------------------------------------------------------------------------
# Layout validation (pure)
# ---------------------------------------------------------------------------------------------


def validate_layout(layout, key_type, display):
    """Check the target partitions: names, one default at most, low < high, typed like the key, no overlap.

    Returns ``(ranges sorted by low, default entry or None)``.
    """
    if not layout:
        raise InvalidInput("no target partitions were given for %s: declare at least one period" % display)
    base = (key_type or "").split("(")[0].strip()
    if base in INTEGER_TYPES:
        expected, label = (int,), "integers (e.g. 20240101 for a YYYYMMDD key)"
    elif base == "date":
        expected, label = (datetime.date,), "dates"
    elif base.startswith("timestamp"):
        expected, label = (datetime.datetime, datetime.date), "datetimes"
    else:
        raise InvalidInput(
            "partition key of %s has type %s: migration supports integer (YYYYMMDD...), date and timestamp keys"
            % (display, key_type)
        )
    names, ranges, default = set(), [], None
    for entry in layout:
        name = entry.get("name")
        if not name or len(name.encode("utf-8")) > MAX_NAME:
            raise InvalidInput("partition name %r for %s is empty or longer than 63 bytes" % (name, display))
        if name in names:
            raise InvalidInput("partition name %s is declared twice for %s" % (name, display))
        names.add(name)
        if entry.get("default"):
            if default is not None:
                raise InvalidInput("%s declares two default partitions: %s and %s" % (display, default["name"], name))
            default = entry
            continue
        low, high = entry.get("low"), entry.get("high")
        for value in (low, high):
            if (
                isinstance(value, bool)
                or not isinstance(value, expected)
                or (base == "date" and isinstance(value, datetime.datetime))
            ):
                raise InvalidInput("bounds of partition %s of %s must be %s, got %r" % (name, display, label, value))
        if not low < high:
            raise InvalidInput("partition %s of %s has low %s >= high %s" % (name, display, low, high))
        ranges.append(entry)
    ranges.sort(key=lambda e: e["low"])
    for previous, current in zip(ranges, ranges[1:]):
        if current["low"] < previous["high"]:
            raise InvalidInput(
                "partitions %s and %s of %s overlap (%s < %s)"
                % (previous["name"], current["name"], display, current["low"], previous["high"])
            )
    return ranges, default


def _in_ranges(key, ranges):
    """SQL: the key falls in one of the declared ranges (adjacent ranges merged, so the test stays short)."""
    merged = []
    for entry in ranges:
        if merged and merged[-1][1] == entry["low"]:
            merged[-1][1] = entry["high"]
        else:
            merged.append([entry["low"], entry["high"]])
    return _join(
        [
            sql.SQL("({k} >= {lo} AND {k} < {hi})").format(
                k=sql.Identifier(key), lo=_bound_literal(lo), hi=_bound_literal(hi)
            )
            for lo, hi in merged
        ],
        " OR ",
    )


def _bucket(key, ranges, default):
    """SQL CASE naming the target partition of a source row."""
    whens = [
        sql.SQL("WHEN {k} >= {lo} AND {k} < {hi} THEN {n}").format(
            k=sql.Identifier("t", key),
            lo=_bound_literal(e["low"]),
            hi=_bound_literal(e["high"]),
            n=sql.Literal(e["name"]),
        )
        for e in ranges
    ]
    other = sql.Literal(default["name"]) if default else sql.SQL("NULL")
    return sql.SQL("CASE {} ELSE {} END").format(_join(whens, " "), other)


# ---------------------------------------------------------------------------------------------
# Facts (catalog reads only)
# ---------------------------------------------------------------------------------------------


def read_state(conn, schema, name):
    """Return the state row of a migration of ``schema.name`` in progress, or None."""
    was = conn.autocommit
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            # found by name in the catalog and read only when allowed: a table owner who is not the one that
            # created sigeti_dwh must still maintain its own partitioned table (no migration of theirs is there)
            cur.execute(
                "SELECT has_schema_privilege(n.oid, 'USAGE') AND has_table_privilege(c.oid, 'SELECT') "
                "FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                "WHERE n.nspname = %s AND c.relname = %s",
                (STATE_SCHEMA, STATE_TABLE),
            )
            row = cur.fetchone()
            if row is None or not row[0]:
                return None
            cur.execute(
                sql.SQL("SELECT row_to_json(s) FROM {} s WHERE schema_name = %s AND table_name = %s").format(
                    _ident(STATE_SCHEMA, STATE_TABLE)
                ),
                (schema, name),
            )
            row = cur.fetchone()
    finally:
        conn.autocommit = was
    return row[0] if row else None


def free_disk_bytes(server):
    """Free bytes under the server's data_directory when it is visible from here (module on the DB host)."""
    path = (server or {}).get("settings", {}).get("data_directory")
    if not path or not os.path.isdir(path):
        return None
    try:
        return shutil.disk_usage(path).free
    except OSError:
        return None


def read_facts(conn, table, layout, options, server):
    """Read what planning needs beyond ``catalog.read_table``: constraints, grants, views... (one round trip),
    rows outside every declared range (count, min, max), the key's range, names already taken, the state of a
    migration in progress and the free disk space. Reads only; returns a dict for ``plan_migration``."""
    options = normalize_options(options)
    facts = catalog.migration_facts(conn, table["oid"])
    facts["hazards"] = catalog.migration_hazards(conn, table["oid"])
    facts["state"] = read_state(conn, table["schema"], table["name"])
    key = options.get("key")
    names = migration_names(table)
    columns = {c["name"]: c for c in table["columns"]}
    facts["out_of_range"] = {"rows": 0, "min": None, "max": None}
    facts["key_min"] = facts["key_max"] = None
    facts["null_keys"] = 0
    facts["generated_drift"] = {}
    wanted = [names["shadow"], names["unpartitioned"]] + [e.get("name") for e in layout or [] if e.get("name")]
    was = conn.autocommit
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            cur.execute(
                "SELECT array_agg(c.relname::text) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                "WHERE n.nspname = %s AND c.relname = ANY(%s::text[])",
                (table["schema"], wanted),
            )
            facts["taken"] = sorted(cur.fetchone()[0] or [])
            if key in columns and layout and table["relkind"] == "r":
                try:
                    ranges, _default = validate_layout(
                        layout, columns[key]["type"], display_name(table["schema"], table["name"])
                    )
                except InvalidInput:
                    ranges = []
                outside = sql.SQL("{k} IS NULL").format(k=sql.Identifier(key))
                if ranges:
                    outside = sql.SQL("{} OR NOT ({})").format(outside, _in_ranges(key, ranges))
                generated = _stored_generated(table)
                cur.execute(
                    sql.SQL(
                        "SELECT count(*) FILTER (WHERE {o}), min({k}) FILTER (WHERE {o}), max({k}) FILTER (WHERE {o}), "
                        "min({k}), max({k}), count(*) FILTER (WHERE {k} IS NULL){g} FROM {t}"
                    ).format(
                        o=outside,
                        k=sql.Identifier(key),
                        g=_generated_drift_sql(generated),
                        t=_ident(table["schema"], table["name"]),
                    )
                )
                row = cur.fetchone()
                facts["out_of_range"] = {"rows": row[0], "min": row[1], "max": row[2]}
                facts["key_min"], facts["key_max"] = row[3], row[4]
                facts["null_keys"] = row[5]
                facts["generated_drift"] = {c["name"]: n for c, n in zip(generated, row[6:]) if n}
    finally:
        conn.autocommit = was
    facts["free_bytes"] = free_disk_bytes(server) if options.get("check_disk") else None
    return facts


def _stored_generated(table):
    """Stored generated columns: the copy recomputes them, so a stored value may not survive it."""
    return [c for c in table["columns"] if c.get("generated") == "s" and c.get("default_expr")]


def _generated_drift_sql(generated):
    """Per stored generated column: rows whose stored value differs from what the copy would recompute.

    A generated column's function may have been redefined after the rows were written (IMMUTABLE is a promise
    PostgreSQL does not check): the copy would silently change those values, so they are counted up front.
    """
    return sql.SQL("").join(
        sql.SQL(", count(*) FILTER (WHERE {c} IS DISTINCT FROM ({e}))").format(
            c=sql.Identifier(c["name"]), e=sql.SQL(c["default_expr"])
        )
        for c in generated
    )


# ---------------------------------------------------------------------------------------------
# Planning (pure)
# ---------------------------------------------------------------------------------------------


class MigrationPlan:
    """What ``plan_migration`` returns: the mode, names, the SQL of every structural phase, the copy described,
    estimates and warnings. ``render_plan(conn, plan)`` turns it into JSON-able data for check mode."""

    def __init__(self, **kwargs):
        self.__dict__.update(kwargs)

    def get(self, key, default=None):
        """Dict-style access, for callers that treat the plan as a mapping."""
        return self.__dict__.get(key, default)

    def __getitem__(self, key):
        return self.__dict__[key]


def _state_update(names, **values):
    assignments = [
        sql.SQL("{} = {}").format(sql.Identifier(k), v if isinstance(v, sql.Composable) else sql.Literal(v))
        for k, v in sorted(values.items())
    ]
    assignments.append(sql.SQL("updated_at = clock_timestamp()"))
    return sql.SQL("UPDATE {} SET {} WHERE schema_name = {} AND table_name = {}").format(
        _ident(STATE_SCHEMA, STATE_TABLE), _join(assignments), sql.Literal(names["schema"]), sql.Literal(names["name"])
    )


def _state_steps():
    return [
        Step(
            sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(_ident(STATE_SCHEMA)),
            "schema for the migration state (created on first use)",
        ),
        Step(
            sql.SQL(
                "CREATE TABLE IF NOT EXISTS {} (schema_name text NOT NULL, table_name text NOT NULL, "
                "source_oid oid NOT NULL, mode text NOT NULL, phase text NOT NULL, total_pages bigint NOT NULL DEFAULT 0, "
                "next_page bigint NOT NULL DEFAULT 0, rows_copied bigint NOT NULL DEFAULT 0, "
                "step_done integer NOT NULL DEFAULT 0, replayed bigint NOT NULL DEFAULT 0, post jsonb, "
                "result jsonb NOT NULL DEFAULT '{{}}', started_at timestamptz NOT NULL DEFAULT clock_timestamp(), "
                "updated_at timestamptz NOT NULL DEFAULT clock_timestamp(), PRIMARY KEY (schema_name, table_name))"
            ).format(_ident(STATE_SCHEMA, STATE_TABLE)),
            "progress of migrations, so a killed run resumes",
        ),
    ]


def _checksum_source(names, key, ranges, default, keys_table=None, replay_key=None):
    src = _ident(names["schema"], names["name"])
    join = sql.SQL("")
    if keys_table:
        join = sql.SQL(" JOIN {} k ON {}").format(
            sql.Identifier(keys_table),
            _join([sql.SQL("t.{c} = k.{c}").format(c=sql.Identifier(c)) for c in replay_key], " AND "),
        )
    bucket = _bucket(key, ranges, default) if not keys_table else sql.Literal("replayed keys")
    return sql.SQL(
        "SELECT {b} AS b, count(*) AS n, sum(hashtextextended(ROW(t.*)::text, 0)) AS h FROM {src} t{j} GROUP BY 1"
    ).format(b=bucket, src=src, j=join)


def _checksum_target(names, shadow, keys_table=None, replay_key=None):
    target = _ident(names["schema"], shadow)
    join = sql.SQL("")
    if keys_table:
        join = sql.SQL(" JOIN {} k ON {}").format(
            sql.Identifier(keys_table),
            _join([sql.SQL("t.{c} = k.{c}").format(c=sql.Identifier(c)) for c in replay_key], " AND "),
        )
        return sql.SQL(
            "SELECT 'replayed keys'::text AS b, count(*) AS n, sum(hashtextextended(ROW(t.*)::text, 0)) AS h FROM {t} t{j}"
        ).format(t=target, j=join)
    return sql.SQL(
        "SELECT c.relname::text AS b, x.n, x.h FROM (SELECT t.tableoid, count(*) AS n, "
        "sum(hashtextextended(ROW(t.*)::text, 0)) AS h FROM {t} t GROUP BY 1) x JOIN pg_catalog.pg_class c ON c.oid = x.tableoid"
    ).format(t=target)


def checksum_compare_sql(source_sql, target_sql):
    """SQL listing the buckets where source and target differ (rows, checksum)."""
    return sql.SQL(
        "SELECT coalesce(s.b, d.b) AS bucket, coalesce(s.n, 0) AS source_rows, coalesce(d.n, 0) AS target_rows, "
        "s.h::text AS source_checksum, d.h::text AS target_checksum "
        "FROM ({s}) s FULL JOIN ({d}) d ON s.b = d.b ORDER BY 1"
    ).format(s=source_sql, d=target_sql)


def _verify_block(display, source_sql, target_sql, what):
    body = sql.SQL(
        "DECLARE bad text; BEGIN SELECT string_agg(format('%s: source %s rows (checksum %s), target %s rows "
        "(checksum %s)', bucket, source_rows, source_checksum, target_rows, target_checksum), '; ') INTO bad "
        "FROM ({cmp}) c WHERE source_rows <> target_rows OR source_checksum IS DISTINCT FROM target_checksum; "
        "IF bad IS NOT NULL THEN RAISE EXCEPTION USING ERRCODE = 'P0001', MESSAGE = {msg} || bad; END IF; END"
    ).format(
        cmp=checksum_compare_sql(source_sql, target_sql),
        msg=sql.Literal("sigeti.dwh: verification of %s failed (%s), nothing was swapped: " % (display, what)),
    )
    return sql.SQL("DO {}").format(_AsLiteral(body))


def _replay_steps(names, replay_key, key_types, insert_cols, overriding, shadow):
    src = _ident(names["schema"], names["name"])
    log = _ident(STATE_SCHEMA, names["log"])
    keys = sql.Identifier(REPLAY_KEYS)
    match = _join([sql.SQL("t.{c} = k.{c}").format(c=sql.Identifier(c)) for c in replay_key], " AND ")
    return [
        Step(
            sql.SQL("CREATE TEMP TABLE IF NOT EXISTS {} ({}) ON COMMIT DROP").format(
                keys,
                _join([sql.SQL("{} {}").format(sql.Identifier(c), sql.SQL(t)) for c, t in zip(replay_key, key_types)]),
            ),
            "keys changed since the last replay",
        ),
        Step(
            sql.SQL(
                "WITH consumed AS (DELETE FROM {log} RETURNING {c}) INSERT INTO {keys} SELECT DISTINCT {c} "
                "FROM consumed"
            ).format(log=log, c=_cols(replay_key), keys=keys),
            "take the logged keys (rows logged by transactions still open stay for the next replay)",
        ),
        Step(sql.SQL("ANALYZE {}").format(keys), "statistics for the replay joins"),
        Step(
            sql.SQL("DELETE FROM {t} t USING {keys} k WHERE {m}").format(
                t=_ident(names["schema"], shadow), keys=keys, m=match
            ),
            "drop the shadow's copy of changed rows",
        ),
        Step(
            sql.SQL("INSERT INTO {t} ({c}){o} SELECT {sc} FROM {src} t JOIN {keys} k ON {m}").format(
                t=_ident(names["schema"], shadow),
                c=_cols(insert_cols),
                o=overriding,
                sc=_cols(insert_cols, "t"),
                src=src,
                keys=keys,
                m=match,
            ),
            "copy the changed rows again from the original",
        ),
    ]


def _grant_steps(grants, column_grants, target, reason):
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


def _policy_step(policy, target):
    commands = {"r": "SELECT", "a": "INSERT", "w": "UPDATE", "d": "DELETE", "*": "ALL"}
    roles = _join([sql.SQL("PUBLIC") if r == "PUBLIC" else sql.Identifier(r) for r in policy["roles"]])
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


def _view_steps(views, swap_lock_targets):
    """CREATE OR REPLACE VIEW keeps each view's oid, grants, owner and comment and rebinds it to the new table."""
    steps = []
    for view in views:
        if view["kind"] != "view":
            continue
        options = sql.SQL("")
        if view.get("options"):
            options = sql.SQL(" WITH ({})").format(_join([sql.SQL(o) for o in view["options"]]))
        definition = view["definition"].strip().rstrip(";")
        steps.append(
            Step(
                sql.SQL("CREATE OR REPLACE VIEW {}{} AS {}").format(
                    _ident(view["schema"], view["name"]), options, sql.SQL(definition)
                ),
                "view %s read the old table by oid: rebind it to the partitioned table"
                % display_name(view["schema"], view["name"]),
                lock=ACCESS_EXCLUSIVE,
                targets=[(view["schema"], view["name"])],
            )
        )
        swap_lock_targets.append((view["schema"], view["name"]))
    return steps


def _matview_units(views):
    """Per materialized view: build its replacement beside it (no lock on readers), then swap the names."""
    units = []
    for view in views:
        if view["kind"] != "materialized view":
            continue
        schema, name = view["schema"], view["name"]
        tmp = derived_name(name, "_sgt_new")
        target = _ident(schema, tmp)
        options = sql.SQL("")
        if view.get("options"):
            options = sql.SQL(" WITH ({})").format(_join([sql.SQL(o) for o in view["options"]]))
        build = [
            Step(
                sql.SQL("DROP MATERIALIZED VIEW IF EXISTS {}").format(target),
                "leftover of an interrupted rebuild, if any",
            ),
            Step(
                sql.SQL("CREATE MATERIALIZED VIEW {}{} AS {} WITH {}").format(
                    target,
                    options,
                    sql.SQL(view["definition"].strip().rstrip(";")),
                    sql.SQL("DATA" if view.get("populated", True) else "NO DATA"),
                ),
                "rebuild %s on the partitioned table (the refresh)" % display_name(schema, name),
            ),
        ]
        renames = []
        for index in view.get("indexes") or []:
            tmp_index = derived_name(index["name"], "_sgt_new")
            build.append(
                Step(
                    sql.SQL("CREATE {}INDEX {} ON {} {}").format(
                        sql.SQL("UNIQUE " if index["unique"] else ""),
                        sql.Identifier(tmp_index),
                        target,
                        sql.SQL(index["tail"]),
                    ),
                    "index %s of the materialized view" % index["name"],
                )
            )
            renames.append(
                Step(
                    sql.SQL("ALTER INDEX {} RENAME TO {}").format(
                        _ident(schema, tmp_index), sql.Identifier(index["name"])
                    ),
                    "index keeps its name",
                )
            )
            if index.get("comment"):
                renames.append(
                    Step(
                        sql.SQL("COMMENT ON INDEX {} IS {}").format(
                            _ident(schema, index["name"]), sql.Literal(index["comment"])
                        ),
                        "index comment",
                    )
                )
        build.append(
            Step(
                sql.SQL("ALTER MATERIALIZED VIEW {} OWNER TO {}").format(target, sql.Identifier(view["owner"])),
                "same owner",
            )
        )
        build.extend(_grant_steps(view.get("grants") or [], [], target, "same grants"))
        if view.get("comment"):
            build.append(
                Step(
                    sql.SQL("COMMENT ON MATERIALIZED VIEW {} IS {}").format(target, sql.Literal(view["comment"])),
                    "same comment",
                )
            )
        swap = [
            Step(
                sql.SQL("DROP MATERIALIZED VIEW {}").format(_ident(schema, name)),
                "the old materialized view still reads the unpartitioned table",
                lock=ACCESS_EXCLUSIVE,
                targets=[(schema, name)],
            ),
            Step(
                sql.SQL("ALTER MATERIALIZED VIEW {} RENAME TO {}").format(target, sql.Identifier(name)),
                "the rebuilt materialized view takes its name",
            ),
        ] + renames
        units.append(("matview %s" % display_name(schema, name), build))
        units.append(("matview swap %s" % display_name(schema, name), swap))
    return units


def plan_migration(table, layout, options, server, facts=None):
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
    if table.get("relkind") != "r":
        raise InvalidInput("%s is not a plain table: nothing to migrate" % display)
    mode = options["mode"]
    if mode == "never":
        raise InvalidInput(
            "%s is a plain (unpartitioned) table and migrate is 'never': set migrate to online (copy beside it, "
            "writers blocked about a second), offline (one transaction, writes blocked) or attach (the table "
            "becomes one partition, no copy)" % display
        )
    key = options.get("key")
    columns = {c["name"]: c for c in table["columns"]}
    if key not in columns:
        raise InvalidInput(
            "partition key %r is not a column of %s (columns: %s)" % (key, display, ", ".join(sorted(columns)))
        )
    ranges, default = validate_layout(layout, columns[key]["type"], display)
    names = migration_names(table)
    state = facts.get("state")
    own = set() if state is None else {names["shadow"], names["unpartitioned"]} | {e["name"] for e in layout}
    clash = [n for n in facts.get("taken", []) if n not in own]
    if clash:
        raise InvalidInput(
            "cannot migrate %s: relation(s) %s already exist in schema %s (drop or rename them)"
            % (display, ", ".join(clash), table["schema"])
        )
    if table.get("partitions"):
        raise InvalidInput("%s already has partitions" % display)
    if facts["flags"].get("persistence") != "p":
        raise InvalidInput("%s is unlogged or temporary: migrate only permanent tables" % display)

    constraints = facts["constraints"]
    pk = next((c for c in constraints if c["type"] == "p"), None)
    warnings = []
    new_pk_columns = None
    if pk is not None:
        new_pk_columns = list(pk["columns"])
        if key not in pk["columns"]:
            if not options["extend_primary_key"]:
                raise InvalidInput(
                    "the primary key of %s is (%s) and does not include the partition key %s: PostgreSQL requires a "
                    "partitioned table's primary key to include it. Set extend_primary_key: true to make it (%s), "
                    "nothing was changed" % (display, ", ".join(pk["columns"]), key, ", ".join(pk["columns"] + [key]))
                )
            new_pk_columns.append(key)
            warnings.append(
                "primary key of %s extended to (%s): uniqueness of (%s) alone is no longer enforced"
                % (display, ", ".join(new_pk_columns), ", ".join(pk["columns"]))
            )
    for con in constraints:
        if con["type"] == "x":
            raise InvalidInput(
                "exclusion constraint %s of %s cannot be carried to a partitioned table automatically; "
                "drop it first" % (con["name"], display)
            )
    _refuse_unique_without_key(facts, key, display)
    _refuse_hazards(table, facts, options, key, display, new_pk_columns)
    warnings.extend(_hazard_warnings(table, facts, display))
    own_indexes = _own_leftover_indexes(table, pk)
    constraint_indexes = {c["index"] for c in constraints if c["type"] in ("p", "u") and c["index"]}
    plain_indexes = [
        i for i in table["indexes"] if i["name"] not in constraint_indexes and i["name"] not in own_indexes
    ]
    fks_in = facts["foreign_keys_in"]
    unique_sets = [set(c["columns"]) for c in constraints if c["type"] == "u"]
    if new_pk_columns:
        unique_sets.append(set(new_pk_columns))
    for fk in fks_in:
        if set(fk["columns"]) not in unique_sets:
            raise InvalidInput(
                "foreign key %s of %s references %s (%s), which will not be unique on its own once %s is partitioned "
                "by %s (a unique key there must include %s). Drop that foreign key or make it reference (%s); "
                "nothing was changed"
                % (
                    fk["name"],
                    display_name(fk["schema"], fk["table"]),
                    display,
                    ", ".join(fk["columns"]),
                    display,
                    key,
                    key,
                    ", ".join(fk["columns"] + [key]),
                )
            )
    for view in facts["views"]:
        if view["kind"] == "materialized view" and view.get("dependents"):
            raise InvalidInput(
                "materialized view %s depends on %s and is itself read by %s: rebuilding it would need those dropped "
                "too. Drop them first or migrate offline by hand"
                % (display_name(view["schema"], view["name"]), display, ", ".join(view["dependents"]))
            )
    user_triggers = [t for t in facts["triggers"] if t["name"] not in CAPTURE_TRIGGERS]
    for trig in user_triggers:
        if "REFERENCING" in trig["definition"] and "FOR EACH ROW" in trig["definition"]:
            raise InvalidInput(
                "trigger %s of %s uses transition tables FOR EACH ROW, which partitioned tables refuse"
                % (trig["name"], display)
            )

    replay_key = None
    if mode == "online":
        replay_key = pk["columns"] if pk else None
        if replay_key is None:
            unique = next(
                (c for c in constraints if c["type"] == "u" and all(columns[x]["not_null"] for x in c["columns"])), None
            )
            replay_key = unique["columns"] if unique else None
        if replay_key is None:
            raise InvalidInput(
                "online migration of %s needs a primary key or a unique key on NOT NULL columns to "
                "replay the rows changed during the copy; use migrate: offline (writes blocked during "
                "the copy) or attach" % display
            )

    out = facts.get("out_of_range") or {}
    default_rows = 0
    if out.get("rows"):
        if default is None:
            raise InvalidInput(
                "%d rows of %s have a %s outside every declared period (min %s, max %s%s): add periods covering them "
                "or a default partition; nothing was changed"
                % (
                    out["rows"],
                    display,
                    key,
                    _json_value(out.get("min")),
                    _json_value(out.get("max")),
                    ", some are NULL" if out.get("min") is None else "",
                )
            )
        default_rows = out["rows"]
        warnings.append(
            "%d rows of %s fall outside every period and go to the default partition %s (min %s, max %s)"
            % (out["rows"], display, default["name"], _json_value(out.get("min")), _json_value(out.get("max")))
        )

    source_bytes = (table.get("heap_bytes") or 0) + (table.get("toast_bytes") or 0) + (table.get("index_bytes") or 0)
    need = 0 if mode == "attach" else int(source_bytes * 1.1)
    free = facts.get("free_bytes")
    if free is not None and need > free and state is None:
        raise InvalidInput(
            "migrating %s needs about %s of free disk (a copy of the table and its indexes) but the "
            "server's data directory has %s free: free space first or use migrate: attach"
            % (display, _human_bytes(need), _human_bytes(free))
        )

    ctx = {
        "table": table,
        "facts": facts,
        "options": options,
        "names": names,
        "key": key,
        "ranges": ranges,
        "default": default,
        "pk": pk,
        "new_pk_columns": new_pk_columns,
        "plain_indexes": plain_indexes,
        "own_indexes": own_indexes,
        "user_triggers": user_triggers,
        "replay_key": replay_key,
        "columns": columns,
        "display": display,
        "server": server or {},
    }
    insert_cols = [c["name"] for c in table["columns"] if not c.get("generated")]
    ctx["insert_cols"] = insert_cols
    ctx["overriding"] = sql.SQL(" OVERRIDING SYSTEM VALUE" if any(c.get("identity") for c in table["columns"]) else "")
    if mode == "attach":
        phases = _attach_phases(ctx)
    else:
        phases = _copy_phases(ctx)
    reltuples = max(table.get("reltuples") or 0, 0)
    return MigrationPlan(
        mode=mode,
        display=display,
        names=names,
        key=key,
        ranges=ranges,
        default=default,
        replay_key=replay_key,
        insert_cols=insert_cols,
        overriding=ctx["overriding"],
        phases=phases,
        options=options,
        warnings=warnings,
        default_rows=default_rows,
        estimated_disk_bytes=need,
        free_disk_bytes=free,
        copy={
            "batch_rows": options["batch_rows"],
            "rows_estimate": int(reltuples),
            "batches_estimate": 0 if mode != "online" else max(1, int(reltuples // options["batch_rows"]) + 1),
        },
        ctx=ctx,
    )


def _refuse_unique_without_key(facts, key, display):
    """Every unique index or constraint (the primary key aside: see extend_primary_key) must have the partition key
    among its key columns, compared as attributes (``pg_index.indkey`` up to ``indnkeyatts``), never as text: an
    expression, an INCLUDE column or a WHERE clause mentioning the key does not count."""
    for con in facts["constraints"]:
        if con["type"] == "u" and key not in con["columns"]:  # conkey, read as attribute names
            raise InvalidInput(
                "unique constraint %s of %s on (%s) does not include the partition key %s: a partitioned table cannot "
                "enforce it. Drop it or add %s to it first; nothing was changed"
                % (con["name"], display, ", ".join(con["columns"]), key, key)
            )
    for index in (facts.get("hazards") or {}).get("indexes") or []:
        if not index["unique"] or index["primary"] or key in index["key_columns"]:
            continue
        what = (
            "unique constraint %s" % index["constraint"] if index["constraint"] else "unique index %s" % index["name"]
        )
        shape = "(%s)" % ", ".join(index["key_columns"]) if index["key_columns"] else "expressions only"
        extra = []
        if index["has_expressions"]:
            extra.append("expressions")
        if index.get("predicate"):
            extra.append("WHERE %s" % index["predicate"])
        raise InvalidInput(
            "%s of %s has key columns %s%s and does not include the partition key %s as a column: a partitioned "
            "table cannot enforce it (PostgreSQL: unique constraint on partitioned table must include all "
            "partitioning columns). Drop it or recreate it with %s among its columns first; nothing was changed"
            % (what, display, shape, " with %s" % " and ".join(extra) if extra else "", key, key)
        )


def _own_leftover_indexes(table, pk):
    """Names of indexes an interrupted attach migration built on the table (never carried as the user's)."""
    if pk is None:
        return set()
    tmp = derived_name(pk["name"], "_sgt_pk")
    return {i["name"] for i in table["indexes"] if i["name"] == tmp}


def _assigns_column(source, column):
    """Whether a trigger function's source assigns ``NEW.column`` (plpgsql ``:=`` or ``=``, quoted or not)."""
    target = r'\bNEW\s*\.\s*(?:"%s"|%s\b)\s*' % (re.escape(column), re.escape(column))
    # ":=" is an assignment anywhere; a bare "=" only where a statement starts ("IF NEW.k = 3" compares)
    assign = target + ":="
    statement = r"(?:^|;|\bBEGIN\b|\bTHEN\b|\bELSE\b|\bLOOP\b)\s*" + target + "=(?!=)"
    return any(re.search(p, source, re.IGNORECASE | re.MULTILINE) for p in (assign, statement))


def _refuse_state_privileges(hazards, facts, display):
    """The migration keeps its progress in sigeti_dwh: say which right is missing before anything is created."""
    if facts.get("state") is not None or "can_create_schema" not in hazards:
        return
    user = hazards.get("current_user")
    if hazards.get("can_create_in_state_schema") is None and not hazards.get("can_create_schema"):
        raise InvalidInput(
            "migrating %s keeps its progress in schema %s, which does not exist, and %s may not create it (no CREATE "
            "on the database). Run CREATE SCHEMA %s AUTHORIZATION %s as a superuser (or GRANT CREATE ON DATABASE to "
            "%s); nothing was changed" % (display, STATE_SCHEMA, user, STATE_SCHEMA, user, user)
        )
    if hazards.get("can_create_in_state_schema") is False:
        raise InvalidInput(
            "migrating %s creates its change log and capture function in schema %s, where %s has no CREATE/USAGE "
            "right. Run GRANT USAGE, CREATE ON SCHEMA %s TO %s as its owner; nothing was changed"
            % (display, STATE_SCHEMA, user, STATE_SCHEMA, user)
        )
    if hazards.get("can_write_state") is False:
        raise InvalidInput(
            "migrating %s records its progress in %s.%s, which %s may not write. Run GRANT SELECT, INSERT, UPDATE, "
            "DELETE ON %s.%s TO %s as its owner; nothing was changed"
            % (display, STATE_SCHEMA, STATE_TABLE, user, STATE_SCHEMA, STATE_TABLE, user)
        )


def _hazard_warnings(table, facts, display):
    """What the migration cannot carry and only reports (each named, with what to do after it)."""
    hazards = facts.get("hazards") or {}
    warnings = []
    for publication in hazards.get("publications") or []:
        warnings.append(
            "%s is in publication %s: the partitioned table is not added to it (run ALTER PUBLICATION %s ADD TABLE "
            "%s after the migration; subscribers see the old table until then)"
            % (display, publication, publication, display)
        )
    if facts["flags"].get("replica_identity") == "i":
        warnings.append(
            "%s has REPLICA IDENTITY USING INDEX: not carried (set it again on each partition after the migration)"
            % display
        )
    for index in hazards.get("indexes") or []:
        if index.get("clustered"):
            warnings.append(
                "%s is marked CLUSTER ON %s: a partitioned table cannot carry the mark (set it per partition with "
                "ALTER TABLE <partition> CLUSTER ON <its index> if CLUSTER runs on them)" % (display, index["name"])
            )
    return warnings


def _refuse_hazards(table, facts, options, key, display, new_pk_columns):
    """Refuse, before any change, what a partitioned copy cannot carry; each message names the object and the way out."""
    hazards = facts.get("hazards") or {}
    _refuse_structure(table, hazards, key, display)
    _refuse_constraints(table, facts, hazards, options["mode"], display)
    _refuse_key_triggers(hazards, key, display)
    _refuse_state_privileges(hazards, facts, display)
    _refuse_data(table, facts, key, display, new_pk_columns)


def _refuse_structure(table, hazards, key, display):
    """Generated key, table inheritance, rules, users of the row type: what binds to the old table or cannot be."""
    columns = {c["name"]: c for c in table["columns"]}
    if columns[key].get("generated"):
        raise InvalidInput(
            "partition key %s of %s is a generated column: PostgreSQL cannot partition by a generated column. "
            "Choose a plain column as key; nothing was changed" % (key, display)
        )
    if hazards.get("inherits_from"):
        raise InvalidInput(
            "%s inherits from %s (table inheritance): a partitioned table cannot take part in inheritance, and the "
            "parent would lose or freeze the rows it shows from %s. Run ALTER TABLE %s NO INHERIT %s first or keep "
            "it unpartitioned; nothing was changed"
            % (display, ", ".join(hazards["inherits_from"]), display, display, hazards["inherits_from"][0])
        )
    if hazards.get("inherited_by"):
        raise InvalidInput(
            "%s is the inheritance parent of %s: a partitioned table cannot have inheritance children, and copying "
            "%s would also copy their rows. Detach them first (ALTER TABLE <child> NO INHERIT %s) or keep it "
            "unpartitioned; nothing was changed" % (display, ", ".join(hazards["inherited_by"]), display, display)
        )
    for rule in hazards.get("foreign_rules") or []:
        if not (rule.get("definition") or "").startswith("CREATE RULE "):
            raise InvalidInput(
                "rule %s on %s refers to %s by its identity and cannot be read back to rebind it: drop it first and "
                "recreate it after the migration; nothing was changed" % (rule["name"], rule["table"], display)
            )
    users = list(hazards.get("rowtype_functions") or []) + list(hazards.get("rowtype_columns") or [])
    if users:
        raise InvalidInput(
            "%s use(s) the row type of %s (e.g. RETURNS SETOF %s): after the migration they would keep the old "
            "table's type (%s_unpartitioned) and block drop_source. Drop them first and recreate them after the "
            "migration; nothing was changed" % (", ".join(users), display, display, table["name"])
        )


def _refuse_constraints(table, facts, hazards, mode, display):
    """NOT VALID constraints and keys a partitioned table (or the attach mode) cannot hold as they are."""
    own_check = derived_name(table["name"], "_sgt_range")
    if mode != "attach" and any(c["name"] == own_check for c in facts["constraints"]):
        raise InvalidInput(
            "an interrupted attach migration left its range check %s on %s (it refuses rows outside that range): "
            "run partitioned_table with migrate: abandon to remove it, or migrate: attach to finish; nothing was "
            "changed" % (own_check, display)
        )
    for con in facts["constraints"]:
        if con["name"] == own_check:
            continue
        if con["type"] == "f" and not con["validated"]:
            raise InvalidInput(
                "foreign key %s of %s is NOT VALID: a partitioned table cannot hold a NOT VALID foreign key. Fix the "
                "rows that break it and run ALTER TABLE %s VALIDATE CONSTRAINT %s, or drop it; nothing was changed"
                % (con["name"], display, display, con["name"])
            )
        if con["type"] == "c" and not con["validated"] and mode == "attach":
            raise InvalidInput(
                "check constraint %s of %s is NOT VALID: attach mode cannot make the table a partition with it. Run "
                "ALTER TABLE %s VALIDATE CONSTRAINT %s first or use migrate: online (it carries the constraint as "
                "NOT VALID); nothing was changed" % (con["name"], display, display, con["name"])
            )
    pk = next((c for c in facts["constraints"] if c["type"] == "p"), None)
    if pk is not None and mode == "attach" and _split_key(pk["definition"])[1].strip():
        raise InvalidInput(
            "the primary key of %s is %s: attach mode rebuilds it as a plain PRIMARY KEY and would lose what follows "
            "its columns; use migrate: online (it carries it); nothing was changed" % (display, pk["definition"])
        )
    for index in hazards.get("indexes") or []:
        if index["deferrable"] and mode == "attach":
            raise InvalidInput(
                "constraint %s of %s is DEFERRABLE: attach mode cannot carry it; use migrate: online; nothing was "
                "changed" % (index["constraint"], display)
            )


def _refuse_key_triggers(hazards, key, display):
    """A BEFORE row trigger setting the key breaks every writer once the table is partitioned."""
    for trig in hazards.get("before_row_triggers") or []:
        if _assigns_column(trig.get("source") or "", key):
            raise InvalidInput(
                "trigger %s of %s (function %s) sets NEW.%s before the row is stored: on a partitioned table the row "
                "is routed before that trigger runs, so writers would fail with 'moving row to another partition "
                "during a BEFORE FOR EACH ROW trigger is not supported'. Have writers give %s themselves (or a "
                "DEFAULT), drop the trigger, then migrate; nothing was changed"
                % (trig["name"], display, trig["function"], key, key)
            )


def _refuse_data(table, facts, key, display, new_pk_columns):
    """Rows the copy would reject (NULL keys under the extended key) or silently change (stale generated values)."""
    columns = {c["name"]: c for c in table["columns"]}
    if new_pk_columns and key in new_pk_columns and facts.get("null_keys"):
        raise InvalidInput(
            "%d rows of %s have a NULL %s, which the primary key (%s) cannot hold. Set a key on those rows (or "
            "delete them) first; nothing was changed" % (facts["null_keys"], display, key, ", ".join(new_pk_columns))
        )
    for name, rows in sorted((facts.get("generated_drift") or {}).items()):
        raise InvalidInput(
            "%d rows of %s hold a stored value of generated column %s that differs from what its expression (%s) "
            "gives today (its function was probably redefined after they were written): copying them would change "
            "those values. Recompute them first (UPDATE %s SET c = c for a column c that %s is computed from: "
            "PostgreSQL recomputes it only then), or "
            "restore the function; nothing was changed"
            % (rows, display, name, columns[name].get("default_expr"), display, name)
        )


def _new_partitions(ctx, with_default=False):
    entries = list(ctx["partitions_to_create"]) if "partitions_to_create" in ctx else list(ctx["ranges"])
    if with_default and ctx["default"]:
        entries.append(ctx["default"])
    return entries


def _shadow_steps(ctx, shadow):
    """Create the partitioned shadow and its partitions, with leaf-level reloptions, owner and comment."""
    table, names, key = ctx["table"], ctx["names"], ctx["key"]
    target = _ident(names["schema"], shadow)
    steps = [
        Step(
            sql.SQL(
                "CREATE TABLE {} (LIKE {} INCLUDING DEFAULTS INCLUDING CONSTRAINTS INCLUDING GENERATED INCLUDING IDENTITY "
                "INCLUDING STATISTICS INCLUDING STORAGE INCLUDING COMPRESSION INCLUDING COMMENTS) PARTITION BY RANGE ({})"
            ).format(target, _ident(names["schema"], names["name"]), sql.Identifier(key)),
            "partitioned copy of %s: same columns, defaults, NOT NULL and CHECK constraints, no index yet"
            % ctx["display"],
        )
    ]
    steps.append(
        Step(sql.SQL("ALTER TABLE {} OWNER TO {}").format(target, sql.Identifier(table["owner"])), "same owner")
    )
    for con in _not_valid_checks(ctx):
        steps.append(
            Step(
                sql.SQL("ALTER TABLE {} DROP CONSTRAINT {}").format(target, sql.Identifier(con["name"])),
                "LIKE copied the NOT VALID check %s as valid: it is added back NOT VALID once the rows are in"
                % con["name"],
            )
        )
    if table.get("comment"):
        steps.append(
            Step(sql.SQL("COMMENT ON TABLE {} IS {}").format(target, sql.Literal(table["comment"])), "same comment")
        )
    options = ["%s=%s" % (k, v) for k, v in sorted((table.get("reloptions") or {}).items())]
    options += ["toast.%s=%s" % (k, v) for k, v in sorted((table.get("toast_reloptions") or {}).items())]
    with_clause = sql.SQL("")
    if options:
        with_clause = sql.SQL(" WITH ({})").format(
            _join(
                [
                    sql.SQL("{} = {}").format(sql.SQL(o.split("=", 1)[0]), sql.Literal(o.split("=", 1)[1]))
                    for o in options
                ]
            )
        )
    if ctx.get("range_check"):
        steps.append(
            Step(
                sql.SQL("ALTER TABLE {} DROP CONSTRAINT IF EXISTS {}").format(
                    target, sql.Identifier(ctx["range_check"])
                ),
                "the attach range check belongs to the old table only",
            )
        )
    for entry in _new_partitions(ctx):
        steps.append(
            Step(
                sql.SQL("CREATE TABLE {} PARTITION OF {} FOR VALUES FROM ({}) TO ({}){}").format(
                    _ident(names["schema"], entry["name"]),
                    target,
                    _bound_literal(entry["low"]),
                    _bound_literal(entry["high"]),
                    with_clause,
                ),
                "partition for [%s, %s)" % (_json_value(entry["low"]), _json_value(entry["high"])),
            )
        )
    if ctx["default"]:
        steps.append(
            Step(
                sql.SQL("CREATE TABLE {} PARTITION OF {} DEFAULT{}").format(
                    _ident(names["schema"], ctx["default"]["name"]), target, with_clause
                ),
                "default partition: rows outside every period",
            )
        )
    for entry in _new_partitions(ctx, with_default=True):
        steps.append(
            Step(
                sql.SQL("ALTER TABLE {} OWNER TO {}").format(
                    _ident(names["schema"], entry["name"]), sql.Identifier(table["owner"])
                ),
                "same owner on the partition",
            )
        )
    return steps


def key_definition(definition, columns, reloptions=None):
    """``pg_get_constraintdef`` of a key with its column list replaced by ``columns``: INCLUDE, USING INDEX
    TABLESPACE and DEFERRABLE ... are kept as the original had them, and the index's storage parameters
    (``reloptions``, which pg_get_constraintdef leaves out) are put back as ``WITH (...)`` (pure)."""
    head, tail = _split_key(definition)
    include = ""
    if tail.startswith(" INCLUDE ("):
        close = _paren_end(tail, tail.index("("))
        include, tail = tail[: close + 1], tail[close + 1 :]
    with_clause = sql.SQL("")
    if reloptions and not tail.startswith(" WITH ("):
        with_clause = sql.SQL(" WITH ({})").format(
            _join(
                [
                    sql.SQL("{} = {}").format(sql.SQL(o.split("=", 1)[0]), sql.Literal(o.split("=", 1)[1]))
                    for o in reloptions
                ]
            )
        )
    return sql.SQL("{}({}){}{}{}").format(sql.SQL(head), _cols(columns), sql.SQL(include), with_clause, sql.SQL(tail))


def _index_reloptions(ctx, index_name):
    for index in (ctx["facts"].get("hazards") or {}).get("indexes") or []:
        if index["name"] == index_name:
            return index.get("reloptions") or []
    return []


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


def _split_key(definition):
    """``("PRIMARY KEY ", " INCLUDE (v) ...")``: what precedes and follows a key definition's column list."""
    start = definition.index("(")
    end = _paren_end(definition, start)
    return definition[:start], definition[end + 1 :]


def _not_valid_checks(ctx):
    """CHECK constraints the original holds NOT VALID: old rows may break them, so the copy must not check them."""
    own = derived_name(ctx["names"]["name"], "_sgt_range")
    return [c for c in ctx["facts"]["constraints"] if c["type"] == "c" and not c["validated"] and c["name"] != own]


def _build_units(ctx, shadow, validate_separately=True):
    """Indexes, keys and foreign keys on the filled shadow, under temporary names, one unit each."""
    names, facts = ctx["names"], ctx["facts"]
    target = _ident(names["schema"], shadow)
    units = []
    for con in _not_valid_checks(ctx):
        # pg_get_constraintdef ends with NOT VALID: no scan, new rows are checked as on the original
        units.append(
            [
                Step(
                    sql.SQL("ALTER TABLE {} ADD CONSTRAINT {} {}").format(
                        target, sql.Identifier(con["name"]), sql.SQL(con["definition"])
                    ),
                    "check %s, NOT VALID as on the original" % con["name"],
                )
            ]
        )
    tails = facts.get("index_tails") or {}
    for con in facts["constraints"]:
        if con["type"] == "p":
            units.append(
                [
                    Step(
                        sql.SQL("ALTER TABLE {} ADD CONSTRAINT {} {}").format(
                            target,
                            sql.Identifier(derived_name(con["name"], "_sgt_new")),
                            key_definition(
                                con["definition"], ctx["new_pk_columns"], _index_reloptions(ctx, con["index"])
                            ),
                        ),
                        "primary key (%s), with the original's INCLUDE, storage parameters and deferrability"
                        % ", ".join(ctx["new_pk_columns"]),
                    )
                ]
            )
        elif con["type"] == "u":
            units.append(
                [
                    Step(
                        sql.SQL("ALTER TABLE {} ADD CONSTRAINT {} {}").format(
                            target,
                            sql.Identifier(derived_name(con["name"], "_sgt_new")),
                            key_definition(con["definition"], con["columns"], _index_reloptions(ctx, con["index"])),
                        ),
                        "unique constraint %s" % con["name"],
                    )
                ]
            )
    for index in ctx["plain_indexes"]:
        tail = tails.get(index["name"])
        if not tail:
            raise InvalidInput("cannot read the definition of index %s of %s" % (index["name"], ctx["display"]))
        units.append(
            [
                Step(
                    sql.SQL("CREATE {}INDEX {} ON {} {}").format(
                        sql.SQL("UNIQUE " if index["is_unique"] else ""),
                        sql.Identifier(derived_name(index["name"], "_sgt_new")),
                        target,
                        sql.SQL(tail),
                    ),
                    "index %s, built once on the filled partitions" % index["name"],
                )
            ]
        )
    for con in facts["constraints"]:
        if con["type"] != "f":
            continue
        if validate_separately:
            # a partitioned table refuses NOT VALID foreign keys (PostgreSQL < 18): add and validate them per
            # leaf (no long lock on the dimension), then on the parent, which adopts the leaves' constraints
            for entry in _new_partitions(ctx, with_default=True):
                leaf = _ident(names["schema"], entry["name"])
                units.append(
                    [
                        Step(
                            sql.SQL("ALTER TABLE {} ADD CONSTRAINT {} {} NOT VALID").format(
                                leaf, sql.Identifier(con["name"]), sql.SQL(con["definition"])
                            ),
                            "foreign key %s on partition %s, checked by the next step" % (con["name"], entry["name"]),
                        )
                    ]
                )
                if con["validated"]:
                    units.append(
                        [
                            Step(
                                sql.SQL("ALTER TABLE {} VALIDATE CONSTRAINT {}").format(
                                    leaf, sql.Identifier(con["name"])
                                ),
                                "validate %s without blocking the dimension's writers" % con["name"],
                            )
                        ]
                    )
            units.append(
                [
                    Step(
                        sql.SQL("ALTER TABLE {} ADD CONSTRAINT {} {}").format(
                            target, sql.Identifier(con["name"]), sql.SQL(con["definition"])
                        ),
                        "foreign key %s on the parent: adopts the partitions' validated constraints" % con["name"],
                    )
                ]
            )
        else:
            units.append(
                [
                    Step(
                        sql.SQL("ALTER TABLE {} ADD CONSTRAINT {} {}{}").format(
                            target,
                            sql.Identifier(con["name"]),
                            sql.SQL(con["definition"]),
                            sql.SQL("" if con["validated"] else " NOT VALID"),
                        ),
                        "foreign key %s" % con["name"],
                    )
                ]
            )
    for column in ctx["table"]["columns"]:
        if column.get("statistics_target") is not None:
            units.append(
                [
                    Step(
                        sql.SQL("ALTER TABLE {} ALTER COLUMN {} SET STATISTICS {}").format(
                            target, sql.Identifier(column["name"]), sql.Literal(int(column["statistics_target"]))
                        ),
                        "same statistics target",
                    )
                ]
            )
    for item in facts.get("column_options") or []:
        units.append(
            [
                Step(
                    sql.SQL("ALTER TABLE {} ALTER COLUMN {} SET ({})").format(
                        target,
                        sql.Identifier(item["column"]),
                        _join(
                            [
                                sql.SQL("{} = {}").format(sql.SQL(o.split("=", 1)[0]), sql.Literal(o.split("=", 1)[1]))
                                for o in item["options"]
                            ]
                        ),
                    ),
                    "same column options",
                )
            ]
        )
    return units


def _swap_steps(ctx, shadow, renames=True):
    """Everything that must change together when the partitioned table takes the name (cheap catalog work)."""
    names = ctx["names"]
    schema, name = names["schema"], names["name"]
    new = _ident(schema, name)
    steps = []
    if renames:
        steps.extend(_rename_steps(ctx, shadow))
    steps.extend(_carry_steps(ctx, new))
    lock_targets = []
    steps.extend(_repoint_steps(ctx, lock_targets))
    return steps, lock_targets


def _rename_steps(ctx, shadow):
    names, table = ctx["names"], ctx["table"]
    schema, name = names["schema"], names["name"]
    steps = []
    for index in table["indexes"]:
        steps.append(
            Step(
                sql.SQL("ALTER INDEX {} RENAME TO {}").format(
                    _ident(schema, index["name"]), sql.Identifier(derived_name(index["name"], "_unpartitioned"))
                ),
                "the original's index frees its name",
            )
        )
    steps.append(
        Step(
            sql.SQL("ALTER TABLE {} RENAME TO {}").format(_ident(schema, name), sql.Identifier(names["unpartitioned"])),
            "keep the original until drop_source",
        )
    )
    steps.append(
        Step(
            sql.SQL("ALTER TABLE {} RENAME TO {}").format(_ident(schema, shadow), sql.Identifier(name)),
            "the partitioned table takes the name",
        )
    )
    for index in table["indexes"]:
        steps.append(
            Step(
                sql.SQL("ALTER INDEX {} RENAME TO {}").format(
                    _ident(schema, derived_name(index["name"], "_sgt_new")), sql.Identifier(index["name"])
                ),
                "indexes keep their names",
            )
        )
    return steps


def _carry_steps(ctx, new):
    names, facts = ctx["names"], ctx["facts"]
    schema, name = names["schema"], names["name"]
    steps = []
    for item in facts.get("index_comments") or []:
        steps.append(
            Step(
                sql.SQL("COMMENT ON INDEX {} IS {}").format(_ident(schema, item["name"]), sql.Literal(item["comment"])),
                "index comment",
            )
        )
    for con in facts["constraints"]:
        if con.get("comment") and con["type"] in ("p", "u", "f"):
            steps.append(
                Step(
                    sql.SQL("COMMENT ON CONSTRAINT {} ON {} IS {}").format(
                        sql.Identifier(con["name"]), new, sql.Literal(con["comment"])
                    ),
                    "constraint comment",
                )
            )
    for seq in facts["sequences"]:
        if seq["kind"] == "serial":
            steps.append(
                Step(
                    sql.SQL("ALTER SEQUENCE {} OWNED BY {}").format(
                        _ident(seq["schema"], seq["name"]), _ident(schema, name, seq["column"])
                    ),
                    "the sequence follows its column (dropping the old table will not drop it)",
                )
            )
        else:
            steps.append(
                Step(
                    sql.SQL(
                        "SELECT setval(pg_get_serial_sequence({t}, {c}), s.last_value, s.is_called) FROM {s} s"
                    ).format(
                        t=sql.Literal(display_name(schema, name)),
                        c=sql.Literal(seq["column"]),
                        s=_ident(seq["schema"], seq["name"]),
                    ),
                    "identity %s continues where the original stopped" % seq["column"],
                )
            )
            # the identity sequence created with the shadow takes the original's name
            steps.append(
                Step(
                    sql.SQL("ALTER SEQUENCE {} RENAME TO {}").format(
                        _ident(seq["schema"], seq["name"]), sql.Identifier(derived_name(seq["name"], "_unpartitioned"))
                    ),
                    "the original's identity sequence frees its name",
                )
            )
            body = sql.SQL(
                "BEGIN EXECUTE format('ALTER SEQUENCE %s RENAME TO %I', pg_get_serial_sequence({t}, {c}), {n}); END"
            ).format(
                t=sql.Literal(display_name(schema, name)), c=sql.Literal(seq["column"]), n=sql.Literal(seq["name"])
            )
            steps.append(Step(sql.SQL("DO {}").format(_AsLiteral(body)), "the new identity sequence takes its name"))
    steps.extend(_grant_steps(facts["grants"], facts["column_grants"], new, "same grants"))
    for entry in _new_partitions(ctx, with_default=True):
        steps.extend(_grant_steps(facts["grants"], [], _ident(schema, entry["name"]), "same grants on the partition"))
    identity = {"f": "FULL", "n": "NOTHING"}.get(facts["flags"].get("replica_identity"))
    if identity:
        for target in [new] + [_ident(schema, e["name"]) for e in _new_partitions(ctx, with_default=True)]:
            steps.append(
                Step(
                    sql.SQL("ALTER TABLE {} REPLICA IDENTITY {}").format(target, sql.SQL(identity)),
                    "same replica identity (logical replication reads each partition's own)",
                )
            )
    if facts["flags"].get("row_security"):
        steps.append(Step(sql.SQL("ALTER TABLE {} ENABLE ROW LEVEL SECURITY").format(new), "row-level security"))
    if facts["flags"].get("force_row_security"):
        steps.append(Step(sql.SQL("ALTER TABLE {} FORCE ROW LEVEL SECURITY").format(new), "forced row-level security"))
    for policy in facts["policies"]:
        steps.append(_policy_step(policy, new))
    for trig in ctx["user_triggers"]:
        steps.append(
            Step(sql.SQL(trig["definition"]), "user trigger %s (created by name on the renamed table)" % trig["name"])
        )
        state = {"D": "DISABLE", "R": "ENABLE REPLICA", "A": "ENABLE ALWAYS"}.get(trig.get("enabled"))
        if state:
            steps.append(
                Step(
                    sql.SQL("ALTER TABLE {} {} TRIGGER {}").format(new, sql.SQL(state), sql.Identifier(trig["name"])),
                    "same state",
                )
            )
        if trig.get("comment"):
            steps.append(
                Step(
                    sql.SQL("COMMENT ON TRIGGER {} ON {} IS {}").format(
                        sql.Identifier(trig["name"]), new, sql.Literal(trig["comment"])
                    ),
                    "trigger comment",
                )
            )
    steps.extend(_rule_steps(ctx, new))
    return steps


def _rule_text(definition, replace=False):
    """``pg_get_ruledef`` output as a statement: names in it are schema-qualified (read under search_path
    pg_catalog), so once the partitioned table has taken the name it binds to it."""
    text = definition.strip().rstrip(";")
    if replace:
        text = "CREATE OR REPLACE RULE " + text[len("CREATE RULE ") :]
    return sql.SQL(text)


def _rule_steps(ctx, new):
    """The table's own rules, created again on the partitioned table (the old table keeps its copies)."""
    steps = []
    for rule in (ctx["facts"].get("hazards") or {}).get("rules") or []:
        steps.append(Step(_rule_text(rule["definition"]), "rule %s, created on the partitioned table" % rule["name"]))
        state = {"D": "DISABLE", "R": "ENABLE REPLICA", "A": "ENABLE ALWAYS"}.get(rule.get("enabled"))
        if state:
            steps.append(
                Step(
                    sql.SQL("ALTER TABLE {} {} RULE {}").format(new, sql.SQL(state), sql.Identifier(rule["name"])),
                    "same rule state",
                )
            )
    return steps


def _foreign_rule_steps(ctx, lock_targets):
    """Rules of other relations that read or write the table name it by oid: CREATE OR REPLACE RULE rebinds them."""
    steps = []
    for rule in (ctx["facts"].get("hazards") or {}).get("foreign_rules") or []:
        steps.append(
            Step(
                _rule_text(rule["definition"], replace=True),
                "rule %s on %s referred to the old table: rebind it" % (rule["name"], rule["table"]),
                lock=ACCESS_EXCLUSIVE,
                targets=[(rule["schema"], rule["relation"])],
            )
        )
        lock_targets.append((rule["schema"], rule["relation"]))
    return steps


def _repoint_steps(ctx, lock_targets):
    facts = ctx["facts"]
    steps = []
    for fk in facts["foreign_keys_in"]:
        child = _ident(fk["schema"], fk["table"])
        steps.append(
            Step(
                sql.SQL("ALTER TABLE {} DROP CONSTRAINT {}").format(child, sql.Identifier(fk["name"])),
                "foreign key %s pointed at the old table" % fk["name"],
                lock=SHARE_ROW_EXCLUSIVE,
                targets=[(fk["schema"], fk["table"])],
            )
        )
        steps.append(
            Step(
                sql.SQL("ALTER TABLE {} ADD CONSTRAINT {} {} NOT VALID").format(
                    child, sql.Identifier(fk["name"]), sql.SQL(fk["definition"])
                ),
                "re-point %s at the partitioned table (validated after the swap)" % fk["name"],
                targets=[(fk["schema"], fk["table"])],
            )
        )
        lock_targets.append((fk["schema"], fk["table"]))
    # a relation with a rule on the table shows up among its "views" (pg_rewrite) without a view definition
    steps.extend(_view_steps([v for v in facts["views"] if v.get("definition")], lock_targets))
    steps.extend(_foreign_rule_steps(ctx, lock_targets))
    return steps


def _post_units(ctx, drop_log):
    """Units that run after the swap committed; rendered into the state row by the swap itself."""
    names, facts = ctx["names"], ctx["facts"]
    units = []
    for fk in facts["foreign_keys_in"]:
        if fk.get("validated", True):
            units.append(
                (
                    "validate %s" % fk["name"],
                    [
                        Step(
                            sql.SQL("ALTER TABLE {} VALIDATE CONSTRAINT {}").format(
                                _ident(fk["schema"], fk["table"]), sql.Identifier(fk["name"])
                            ),
                            "validate the re-pointed foreign key (SHARE UPDATE EXCLUSIVE: writers go on)",
                            lock=SHARE_UPDATE_EXCLUSIVE,
                        )
                    ],
                )
            )
    units.extend(_matview_units(facts["views"]))
    units.append(
        (
            "analyze",
            [
                Step(
                    sql.SQL("ANALYZE {}").format(_ident(names["schema"], names["name"])),
                    "autovacuum never analyzes a partitioned parent",
                )
            ],
        )
    )
    cleanup = []
    if drop_log:
        cleanup.append(
            Step(
                sql.SQL("DROP TABLE IF EXISTS {}").format(_ident(STATE_SCHEMA, names["log"])),
                "the change log is no longer needed",
            )
        )
        cleanup.append(
            Step(
                sql.SQL("DROP FUNCTION IF EXISTS {}()").format(_ident(STATE_SCHEMA, names["function"])),
                "the capture function is no longer needed",
            )
        )
    if ctx["options"]["drop_source"] and ctx["options"]["mode"] != "attach":
        cleanup.append(
            Step(
                sql.SQL("DROP TABLE {}").format(_ident(names["schema"], names["unpartitioned"])),
                "drop_source: the original is no longer kept",
                lock=ACCESS_EXCLUSIVE,
                targets=[(names["schema"], names["unpartitioned"])],
            )
        )
    units.append(("cleanup", cleanup))
    return units


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


def copy_statement(names, insert_cols, overriding, first_page, last_page):
    """One copy batch: rows stored in heap pages [first_page, last_page) of the original (a TID range scan)."""
    return sql.SQL("INSERT INTO {} ({}){} SELECT {} FROM {} WHERE ctid >= {}::tid AND ctid < {}::tid").format(
        _ident(names["schema"], names["shadow"]),
        _cols(insert_cols),
        overriding,
        _cols(insert_cols),
        _ident(names["schema"], names["name"]),
        sql.Literal("(%d,0)" % first_page),
        sql.Literal("(%d,0)" % last_page),
    )


def _attach_phases(ctx):
    """Attach mode: the original becomes the partition covering its key range; later periods get new partitions."""
    names, facts, key, display = ctx["names"], ctx["facts"], ctx["key"], ctx["display"]
    schema, name = names["schema"], names["name"]
    if any(s["kind"] == "identity" for s in facts["sequences"]):
        raise InvalidInput("attach mode cannot move the identity column of %s; use migrate: online" % display)
    if ctx["user_triggers"]:
        raise InvalidInput(
            "attach mode does not move user triggers of %s (%s); use migrate: online"
            % (display, ", ".join(t["name"] for t in ctx["user_triggers"]))
        )
    ranges = ctx["ranges"]
    kmin, kmax = facts.get("key_min"), facts.get("key_max")
    if kmin is None:
        low, high, covered = ranges[0]["low"], ranges[0]["high"], [ranges[0]]
    else:
        covered = [e for e in ranges if e["high"] > kmin and e["low"] <= kmax]
        if not covered or (facts.get("out_of_range") or {}).get("rows"):
            raise InvalidInput(
                "attach mode needs every key of %s inside the declared periods (found %s..%s outside "
                "or NULL): use migrate: online with a default partition"
                % (display, _json_value(kmin), _json_value(kmax))
            )
        low, high = covered[0]["low"], covered[-1]["high"]
        for a, b in zip(covered, covered[1:]):
            if a["high"] != b["low"]:
                raise InvalidInput(
                    "attach mode needs contiguous periods over the key range of %s (gap %s..%s)"
                    % (display, _json_value(a["high"]), _json_value(b["low"]))
                )
    ctx["partitions_to_create"] = [e for e in ranges if e not in covered]
    attached = names["unpartitioned"]
    ctx["attach_range"] = (low, high, covered)
    shadow = names["shadow"]
    src = _ident(schema, name)
    check_name = derived_name(name, "_sgt_range")
    ctx["range_check"] = check_name
    existing = [c for c in facts["constraints"] if c["name"] == check_name]
    pre = (
        []
        if existing
        else [
            Step(
                sql.SQL(
                    "ALTER TABLE {} ADD CONSTRAINT {} CHECK ({k} IS NOT NULL AND {k} >= {lo} AND {k} < {hi}) NOT VALID"
                ).format(
                    src,
                    sql.Identifier(check_name),
                    k=sql.Identifier(key),
                    lo=_bound_literal(low),
                    hi=_bound_literal(high),
                ),
                "range check (NOT VALID: a brief lock, no scan) so ATTACH PARTITION skips its scan",
                lock=ACCESS_EXCLUSIVE,
                targets=[(schema, name)],
            )
        ]
    )
    validate = [
        Step(
            sql.SQL("ALTER TABLE {} VALIDATE CONSTRAINT {}").format(src, sql.Identifier(check_name)),
            "validate the range online (SHARE UPDATE EXCLUSIVE: readers and writers go on)",
            lock=SHARE_UPDATE_EXCLUSIVE,
            targets=[(schema, name)],
        )
    ]
    ctx["concurrent_indexes"] = []
    validate.extend(_rebuild_invalid_steps(ctx, src))
    pk = ctx["pk"]
    pk_index_tmp = None
    if pk is not None and key not in pk["columns"]:
        pk_index_tmp = derived_name(pk["name"], "_sgt_pk")
        if any(i["name"] == pk_index_tmp and not i.get("is_valid", True) for i in ctx["table"]["indexes"]):
            # an interrupted CREATE INDEX CONCURRENTLY left it INVALID: IF NOT EXISTS would keep it, and
            # PRIMARY KEY USING INDEX would fail on it at every run
            validate.extend(_drop_index_steps(names, [pk_index_tmp], "INVALID prebuilt index %s"))
        validate.append(
            Step(
                sql.SQL("CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS {} ON {} ({})").format(
                    sql.Identifier(pk_index_tmp), src, _cols(ctx["new_pk_columns"])
                ),
                "the extended primary key's index, built without blocking writers",
                transactional=False,
            )
        )
        ctx["concurrent_indexes"].append(pk_index_tmp)
    target = _ident(schema, shadow)
    swap = [
        Step(
            sql.SQL("LOCK TABLE {} IN ACCESS EXCLUSIVE MODE").format(src),
            "the swap: writers wait until commit",
            lock=ACCESS_EXCLUSIVE,
            targets=[(schema, name)],
        )
    ]
    swap += _state_steps()
    if pk_index_tmp:
        swap.append(
            Step(
                sql.SQL("ALTER TABLE {} DROP CONSTRAINT {}").format(src, sql.Identifier(pk["name"])),
                "the old primary key without the partition key",
            )
        )
        swap.append(
            Step(
                sql.SQL("ALTER TABLE {} ADD CONSTRAINT {} PRIMARY KEY USING INDEX {}").format(
                    src, sql.Identifier(pk["name"]), sql.Identifier(pk_index_tmp)
                ),
                "extended primary key from the prebuilt index (NOT NULL proven by the range check)",
            )
        )
    for index in ctx["table"]["indexes"]:
        if index["name"] in ctx["own_indexes"]:
            continue  # the prebuilt primary-key index became the primary key's index above
        swap.append(
            Step(
                sql.SQL("ALTER INDEX {} RENAME TO {}").format(
                    _ident(schema, index["name"]), sql.Identifier(derived_name(index["name"], "_unpartitioned"))
                ),
                "the partition's index frees its name for the parent's",
            )
        )
    swap += _shadow_steps(ctx, shadow)
    for con in facts["constraints"]:
        if con["type"] == "p":
            swap.append(
                Step(
                    sql.SQL("ALTER TABLE {} ADD CONSTRAINT {} PRIMARY KEY ({})").format(
                        target, sql.Identifier(con["name"]), _cols(ctx["new_pk_columns"])
                    ),
                    "primary key on the parent",
                )
            )
        elif con["type"] == "u":
            swap.append(
                Step(
                    sql.SQL("ALTER TABLE {} ADD CONSTRAINT {} {}").format(
                        target, sql.Identifier(con["name"]), sql.SQL(con["definition"])
                    ),
                    "unique constraint on the parent",
                )
            )
        elif con["type"] == "f":
            swap.append(
                Step(
                    sql.SQL("ALTER TABLE {} ADD CONSTRAINT {} {}").format(
                        target, sql.Identifier(con["name"]), sql.SQL(con["definition"])
                    ),
                    "foreign key on the parent (the partition's own matches and is attached, not re-checked)",
                )
            )
    tails = facts.get("index_tails") or {}
    for index in ctx["plain_indexes"]:
        swap.append(
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
                _ident(schema, name), _ident(schema, attached), _bound_literal(low), _bound_literal(high)
            ),
            "attach without a scan: the validated CHECK proves the bounds",
            lock=ACCESS_EXCLUSIVE,
            targets=[(schema, attached)],
        )
    )
    inner, lock_targets = _swap_steps(ctx, shadow, renames=False)
    swap.extend(inner)
    swap[0].targets = tuple(list(swap[0].targets) + lock_targets)
    swap.append(
        Step(
            sql.SQL(
                "INSERT INTO {} (schema_name, table_name, source_oid, mode, phase) VALUES ({}, {}, {}, 'attach', 'post')"
            ).format(
                _ident(STATE_SCHEMA, STATE_TABLE),
                sql.Literal(schema),
                sql.Literal(name),
                sql.Literal(int(ctx["table"]["oid"])),
            ),
            "remember the phases after the swap",
        )
    )
    post = _post_units(ctx, drop_log=False)
    return [
        {"name": "check", "description": "add the range CHECK without a scan", "steps": pre},
        {
            "name": "validate",
            "description": "validate it online (and prebuild the extended primary key)",
            "units": [("validate %d" % i, [s]) for i, s in enumerate(validate)],
        },
        {
            "name": "swap",
            "description": "one short transaction: create the parent and future partitions, attach "
            "the original as partition %s for [%s, %s)" % (attached, _json_value(low), _json_value(high)),
            "steps": swap,
        },
        {"name": "post", "description": "rebuild materialized views, ANALYZE", "units": post},
    ]


def _rebuild_invalid_steps(ctx, src):
    """An INVALID index (a concurrent build cancelled) is absent for PostgreSQL's planner and would be attached to
    the parent's index as if it were built: drop it and build it again, both without blocking writers."""
    names, tails = ctx["names"], ctx["facts"].get("index_tails") or {}
    steps = []
    for index in ctx["plain_indexes"]:
        if index.get("is_valid", True):
            continue
        steps.extend(_drop_index_steps(names, [index["name"]], "INVALID index %s (a cancelled concurrent build)"))
        ctx["concurrent_indexes"].append(index["name"])
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
    return steps


OLD_SNAPSHOTS_QUERY = """
SELECT pid, usename::text, application_name, client_addr::text, state, xact_start, left(query, 120)
FROM pg_stat_activity
WHERE datname = current_database() AND pid <> pg_backend_pid() AND backend_xmin IS NOT NULL
ORDER BY xact_start NULLS LAST
"""


def _require_valid_indexes(conn, names, indexes):
    """A concurrent build cancelled by lock_timeout leaves an INVALID index, and a retry of ``CREATE INDEX
    CONCURRENTLY IF NOT EXISTS`` then succeeds without building anything: check, and name what it waited for."""
    if not indexes:
        return
    was = conn.autocommit
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            cur.execute(
                "SELECT c.relname::text FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
                "JOIN pg_namespace n ON n.oid = c.relnamespace "
                "WHERE n.nspname = %s AND c.relname = ANY(%s) AND NOT i.indisvalid",
                (names["schema"], list(indexes)),
            )
            invalid = [r[0] for r in cur.fetchall()]
            if not invalid:
                return
            cur.execute(OLD_SNAPSHOTS_QUERY)
            holders = cur.fetchall()
    finally:
        conn.autocommit = was
    who = "; ".join(
        "pid %s (user %s, application %r, client %s, %s, transaction open since %s: %s)" % row for row in holders
    )
    raise LockNotGranted(
        "the concurrent build of index %s on %s was cancelled by lock_timeout and left it INVALID: such a build waits "
        "for every transaction holding an older snapshot, here %s. Let those transactions end (or end them with "
        "SELECT pg_terminate_backend(pid)) and run again; the invalid index is dropped and rebuilt"
        % (", ".join(invalid), display_name(names["schema"], names["name"]), who or "no session any more"),
        blocking_pids=[row[0] for row in holders],
    )


def render_plan(conn, plan):
    """JSON-able description of a plan for check mode: phases with their SQL, estimates, warnings."""
    phases = []
    for phase in plan.phases:
        entry = {"phase": phase["name"], "description": phase["description"]}
        steps = list(phase.get("steps") or [])
        for _label, unit in phase.get("units") or []:
            steps.extend(unit)
        entry["steps"] = [s.describe(conn) for s in steps]
        phases.append(entry)
    return {
        "mode": plan.mode,
        "table": plan.display,
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


def plan_queries(conn, plan):
    """Every statement of the plan as text (the module's ``queries`` in check mode)."""
    return [s["sql"] for p in render_plan(conn, plan)["phases"] for s in p["steps"]]


# ---------------------------------------------------------------------------------------------
# Execution
# ---------------------------------------------------------------------------------------------


class _Run:
    """Mutable bookkeeping of one run_migration call."""

    def __init__(self, conn, executor, plan, progress):
        self.conn = conn
        self.executor = executor
        self.plan = plan
        self.progress = progress or (lambda event: None)
        self.queries = []
        self.result = {
            "mode": plan.mode,
            "table": plan.display,
            "phases_run": [],
            "rows_copied": 0,
            "batches": 0,
            "replayed_keys": 0,
            "checksums": {},
            "default_rows": plan.default_rows,
            "warnings": list(plan.warnings),
            "resumed_from": None,
            "swap_seconds": None,
            "swap_attempts": None,
        }

    def event(self, phase, **info):
        info["phase"] = phase
        self.progress(info)

    def execute_units(self, units, state_values=None):
        """Run Steps through the Executor (lock_timeout + retries), remembering their SQL."""
        steps = list(units)
        if state_values is not None:
            steps.append(Step(_state_update(self.plan.names, **state_values), "progress"))
        ran = _execute(self.executor, _unit(steps))
        self.queries.extend(ran)
        return ran

    def direct(self, statements, isolation=None):
        """Run weak-lock statements in one transaction on the connection (no strong lock: no retry needed)."""
        conn = self.conn
        conn.autocommit = False
        rows = []
        try:
            with conn.cursor() as cur:
                if isolation:
                    cur.execute("SET TRANSACTION ISOLATION LEVEL %s" % isolation)
                for statement in statements:
                    text = statement.as_string(conn) if hasattr(statement, "as_string") else statement
                    cur.execute(text)
                    self.queries.append(text)
                    rows.append((cur.rowcount, cur.fetchall() if cur.description else None))
            conn.commit()
        except BaseException:
            try:
                conn.rollback()
            except Exception:  # the connection may be gone; the server rolls back anyway
                pass
            raise
        return rows


def _copy_batch(run, statement, last_page):
    """One batch and its progress in one transaction: a kill loses at most this batch, never counts it twice."""
    conn = run.conn
    names = run.plan.names
    conn.autocommit = False
    try:
        with conn.cursor() as cur:
            text = statement.as_string(conn)
            cur.execute(text)
            count = max(cur.rowcount, 0)
            cur.execute(
                _state_update(
                    names, next_page=last_page, rows_copied=sql.SQL("rows_copied + {}").format(sql.Literal(count))
                ).as_string(conn)
            )
        conn.commit()
    except BaseException:
        try:
            conn.rollback()
        except Exception:  # the connection may be gone; the server rolls back anyway
            pass
        raise
    run.queries.append(text)
    return count


def _execute(executor, plan):
    """Run a plan through the Executor in transaction mode (it commits each unit; autocommit would split them)."""
    if executor.conn.autocommit:
        executor.conn.autocommit = False
    return executor.run(plan)


def _unit(steps):
    """A Plan whose steps all run in one transaction (steps that cannot, like CREATE INDEX CONCURRENTLY, alone)."""
    _UNIT_COUNTER[0] += 1
    group = "sigeti-migration-%d" % _UNIT_COUNTER[0]
    for step in steps:
        step.group = group
    return Plan(steps)


_UNIT_COUNTER = [0]


def _state(conn, names):
    return read_state(conn, names["schema"], names["name"])


LEFTOVERS_QUERY = """
WITH src AS (SELECT c.oid, c.relkind FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
             WHERE n.nspname = %(schema)s AND c.relname = %(name)s)
SELECT (SELECT relkind::text FROM src),
       (SELECT coalesce(array_agg(tgname::text ORDER BY tgname), '{}') FROM pg_trigger
        WHERE tgrelid = (SELECT oid FROM src) AND tgname = ANY(%(triggers)s)),
       EXISTS (SELECT 1 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
               WHERE n.nspname = %(schema)s AND c.relname = %(shadow)s),
       EXISTS (SELECT 1 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
               WHERE n.nspname = %(state_schema)s AND c.relname = %(log)s),
       EXISTS (SELECT 1 FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
               WHERE n.nspname = %(state_schema)s AND p.proname = %(function)s),
       EXISTS (SELECT 1 FROM pg_constraint WHERE conrelid = (SELECT oid FROM src) AND conname = %(check)s
               AND (SELECT relkind FROM src) = 'r'),
       (SELECT coalesce(array_agg(c.relname::text ORDER BY c.relname), '{}') FROM pg_index i
        JOIN pg_class c ON c.oid = i.indexrelid
        WHERE i.indrelid = (SELECT oid FROM src) AND (SELECT relkind FROM src) = 'r'
          AND right(c.relname, 7) = '_sgt_pk' AND NOT i.indisprimary)
"""


def read_leftovers(conn, names):
    """What an unfinished migration of ``names`` left in the database (catalog reads only).

    Returns a dict: ``relkind`` of the table, ``triggers`` (capture triggers present), ``shadow``, ``log`` and
    ``function`` (bools), ``range_check`` (attach's CHECK still on the plain table), ``indexes`` (attach's prebuilt
    primary-key indexes) and ``state`` (the state row or None).
    """
    was = conn.autocommit
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            cur.execute(
                LEFTOVERS_QUERY,
                {
                    "schema": names["schema"],
                    "name": names["name"],
                    "triggers": list(CAPTURE_TRIGGERS),
                    "shadow": names["shadow"],
                    "state_schema": STATE_SCHEMA,
                    "log": names["log"],
                    "function": names["function"],
                    "check": derived_name(names["name"], "_sgt_range"),
                },
            )
            row = cur.fetchone()
    finally:
        conn.autocommit = was
    keys = ("relkind", "triggers", "shadow", "log", "function", "range_check", "indexes")
    found = dict(zip(keys, row))
    found["state"] = read_state(conn, names["schema"], names["name"])
    return found


def _abandon_steps(names, found):
    """Steps dropping what ``read_leftovers`` found, each with what it removes (its reason)."""
    src = _ident(names["schema"], names["name"])
    target = [(names["schema"], names["name"])]
    steps = [
        Step(
            sql.SQL("DROP TRIGGER IF EXISTS {} ON {}").format(sql.Identifier(t), src),
            "capture trigger %s on %s" % (t, display_name(names["schema"], names["name"])),
            lock=SHARE_ROW_EXCLUSIVE,
            targets=target,
        )
        for t in found["triggers"]
    ]
    if found["range_check"]:
        check = derived_name(names["name"], "_sgt_range")
        steps.append(
            Step(
                sql.SQL("ALTER TABLE {} DROP CONSTRAINT IF EXISTS {}").format(src, sql.Identifier(check)),
                "range check %s of the attach mode (it refuses writers outside the attached range)" % check,
                lock=ACCESS_EXCLUSIVE,
                targets=target,
            )
        )
    if found["shadow"]:
        steps.append(
            Step(
                sql.SQL("DROP TABLE IF EXISTS {}").format(_ident(names["schema"], names["shadow"])),
                "partitioned shadow %s and its partitions" % display_name(names["schema"], names["shadow"]),
            )
        )
    if found["log"]:
        steps.append(
            Step(
                sql.SQL("DROP TABLE IF EXISTS {}").format(_ident(STATE_SCHEMA, names["log"])),
                "change log %s" % display_name(STATE_SCHEMA, names["log"]),
            )
        )
    if found["function"]:
        steps.append(
            Step(
                sql.SQL("DROP FUNCTION IF EXISTS {}()").format(_ident(STATE_SCHEMA, names["function"])),
                "capture function %s" % display_name(STATE_SCHEMA, names["function"]),
            )
        )
    if found["state"] is not None:
        steps.append(
            Step(
                sql.SQL("DELETE FROM {} WHERE schema_name = {} AND table_name = {}").format(
                    _ident(STATE_SCHEMA, STATE_TABLE), sql.Literal(names["schema"]), sql.Literal(names["name"])
                ),
                "state row (phase %s)" % found["state"]["phase"],
            )
        )
    return steps


def _drop_index_steps(names, indexes, reason="index %s prebuilt by the attach mode"):
    # outside any transaction: DROP INDEX CONCURRENTLY waits for readers instead of blocking them
    return [
        Step(
            sql.SQL("DROP INDEX CONCURRENTLY IF EXISTS {}").format(_ident(names["schema"], index)),
            reason % index,
            transactional=False,
        )
        for index in indexes
    ]


def _names_of(table_or_names):
    return table_or_names if "shadow" in table_or_names else migration_names(table_or_names)


def plan_abandon(conn, table_or_names):
    """What ``migrate: abandon`` would drop (catalog reads only): ``(steps, concurrent_steps)``.

    Refuses (InvalidInput) after the swap committed: then the partitioned table is in use and the run must finish.
    """
    names = _names_of(table_or_names)
    found = read_leftovers(conn, names)
    if found["state"] is not None and found["state"]["phase"] == "post":
        raise InvalidInput(
            "the migration of %s already swapped the tables (phase post since %s): it cannot be abandoned. Run "
            "partitioned_table with migrate: %s to finish it; nothing was changed"
            % (display_name(names["schema"], names["name"]), found["state"].get("updated_at"), found["state"]["mode"])
        )
    return _abandon_steps(names, found), _drop_index_steps(names, found["indexes"])


def describe_leftovers(conn, table):
    """One line naming an unfinished migration of ``table`` (phase, mode, start) and what it left, or None."""
    names = migration_names(table)
    found = read_leftovers(conn, names)
    parts = [s.reason for s in _abandon_steps(names, found) + _drop_index_steps(names, found["indexes"])]
    if not parts:
        return None
    state = found["state"]
    head = (
        "a %s migration of %s is half done (phase %s, started %s)"
        % (state["mode"], display_name(names["schema"], names["name"]), state["phase"], state.get("started_at"))
        if state
        else "an interrupted migration of %s left objects behind" % display_name(names["schema"], names["name"])
    )
    return "%s: %s" % (head, "; ".join(parts))


def abandon_migration(conn, executor, table_or_names):
    """Drop everything an unfinished (pre-swap) migration left: capture triggers, attach's range check and
    prebuilt index, shadow and its partitions, change log, capture function, state row.

    The original table keeps its rows, indexes and constraints. Returns ``(removed, queries)``: what was dropped
    (one line each, in the warehouse's words) and the statements that ran. Refuses after the swap committed.
    """
    names = _names_of(table_or_names)
    steps, index_steps = plan_abandon(conn, names)
    removed = [s.reason for s in steps]
    queries = _execute(executor, _unit(steps)) if steps else []
    if index_steps:
        queries += _execute(executor, Plan(index_steps))
        removed += [s.reason for s in index_steps]
    return removed, queries


def _verify_online(run, ctx):
    """Replay, then compare source and shadow per target partition inside one REPEATABLE READ snapshot."""
    plan = run.plan
    names = plan.names
    replay = _replay_steps(
        names, plan.replay_key, ctx["replay_key_types"], plan.insert_cols, plan.overriding, names["shadow"]
    )
    compare = checksum_compare_sql(
        _checksum_source(names, plan.key, plan.ranges, plan.default), _checksum_target(names, names["shadow"])
    )
    rows = run.direct(
        [s.sql for s in replay] + [compare, _state_update(names, phase="swap")], isolation="REPEATABLE READ"
    )
    run.result["replayed_keys"] += max(rows[1][0], 0)
    table = rows[len(replay)][1]
    checksums, bad = {}, []
    for bucket, source_rows, target_rows, source_sum, target_sum in table:
        checksums[bucket] = {
            "source_rows": source_rows,
            "target_rows": target_rows,
            "source_checksum": source_sum,
            "target_checksum": target_sum,
        }
        if source_rows != target_rows or source_sum != target_sum:
            bad.append(
                "%s: source %s rows (checksum %s), shadow %s rows (checksum %s)"
                % (bucket, source_rows, source_sum, target_rows, target_sum)
            )
    run.result["checksums"] = checksums
    return bad


def _differing_columns(run, ctx):
    """After a failed verification: the columns whose content differs between the original and the shadow.

    One scan of each, per column a sum of hashes of ``ROW(column)`` (so NULL and '' differ). Only run on failure.
    """
    names = run.plan.names
    columns = [c["name"] for c in ctx["table"]["columns"]]
    sums = _join(
        [sql.SQL("sum(hashtextextended(ROW(t.{})::text, 0))::text").format(sql.Identifier(c)) for c in columns]
    )
    rows = run.direct(
        [
            sql.SQL("SELECT {} FROM {} t").format(sums, _ident(names["schema"], relation))
            for relation in (names["name"], names["shadow"])
        ],
        isolation="REPEATABLE READ",
    )
    source, shadow = rows[0][1][0], rows[1][1][0]
    return [c for c, a, b in zip(columns, source, shadow) if a != b]


def _run_post(run, state):
    units = state.get("post") or []
    done = state.get("step_done") or 0
    for index, statements in enumerate(units):
        if index < done:
            continue
        steps = [Step(text, "post-swap") for text in statements]
        last = index == len(units) - 1
        if last:
            steps.append(
                Step(
                    sql.SQL("DELETE FROM {} WHERE schema_name = {} AND table_name = {}").format(
                        _ident(STATE_SCHEMA, STATE_TABLE),
                        sql.Literal(state["schema_name"]),
                        sql.Literal(state["table_name"]),
                    ),
                    "migration finished: forget its state",
                )
            )
        else:
            steps.append(
                Step(
                    _state_update({"schema": state["schema_name"], "name": state["table_name"]}, step_done=index + 1),
                    "progress",
                )
            )
        run.event("post", unit=index, units=len(units))
        ran = _execute(run.executor, _unit(steps))
        run.queries.extend(ran)
    run.result["phases_run"].append("post")


def _render_post(conn, units):
    return [[s.render(conn) for s in unit] for _label, unit in units]


def run_migration(conn, executor, table, layout, options, server, progress=None, facts=None):
    """Execute (or resume) the migration; see ``_run_migration``. The connection's autocommit mode is restored."""
    was = conn.autocommit
    planned = []  # set once the plan is made: a failure while reading facts abandons nothing
    try:
        return _run_migration(conn, executor, table, layout, options, server, progress, facts, planned)
    except (psycopg2.Error, LockNotGranted) as error:
        if planned:
            _abandon_after_failure(conn, executor, table, normalize_options(options)["mode"], error)
        raise
    finally:
        if not conn.closed:
            if conn.get_transaction_status() != psycopg2.extensions.TRANSACTION_STATUS_IDLE:
                conn.rollback()
            conn.autocommit = was


# lost connection, lock or serialization conflicts, cancel or shutdown, resources: the next run can resume
_TRANSIENT_CLASSES = ("08", "40", "53", "55", "57", "58", "XX")


def _is_transient(error):
    if isinstance(error, LockNotGranted):
        return True
    code = getattr(error, "pgcode", None)
    return code is None or (code[:2] in _TRANSIENT_CLASSES and code != "53100")


def _abandon_after_failure(conn, executor, table, mode, error):
    """A migration that failed before its swap committed: leave the original exactly as it was for its writers.

    An error that will repeat on every run (a constraint the data breaks, a definition PostgreSQL refuses) would
    otherwise leave capture triggers logging and every re-run failing the same way; an attach run leaves its range
    check refusing writers. So those runs are abandoned here (what they built is dropped) and the error says so.
    An online run stopped by a transient cause (lock, lost connection, cancel) keeps its progress and resumes.
    Raises a DwhError naming the failure and what was removed; returns when nothing is to be done.
    """
    if table.get("relkind") != "r" or conn.closed or (mode != "attach" and _is_transient(error)):
        return
    names = migration_names(table)
    display = display_name(names["schema"], names["name"])
    reason = str(getattr(error, "msg", None) or error).strip().splitlines()[0]
    try:
        if conn.get_transaction_status() != psycopg2.extensions.TRANSACTION_STATUS_IDLE:
            conn.rollback()
        state = read_state(conn, names["schema"], names["name"])
        if state is not None and state["phase"] == "post":
            return  # the swap committed: the next run finishes the post phase
        removed, _queries = abandon_migration(conn, executor, names)
    except (psycopg2.Error, DwhError) as cleanup:
        raise DwhError(
            "the migration of %s failed (%s) and its leftovers could not be removed (%s): run partitioned_table "
            "with migrate: abandon to remove them" % (display, reason, str(cleanup).strip().splitlines()[0]),
            sqlstate=getattr(error, "pgcode", None),
        )
    # a lock failure stays a LockNotGranted (with its blocking pids) for callers that tell them apart
    kind = type(error) if isinstance(error, DwhError) else DwhError
    details = dict(getattr(error, "details", None) or {})
    details.update(removed=removed)
    if getattr(error, "pgcode", None):
        details["sqlstate"] = error.pgcode
    raise kind(
        "the migration of %s failed before its swap: %s. It was abandoned, so the original is exactly as it was "
        "for its writers (removed: %s); fix the cause and run again"
        % (display, reason.rstrip("."), "; ".join(removed) or "nothing was left"),
        **details,
    )


def _run_migration(conn, executor, table, layout, options, server, progress=None, facts=None, planned=None):
    """Execute (or resume) the migration of plain table ``table`` into the partitions of ``layout``.

    ``executor`` is a ``plan.Executor`` (lock_timeout retries). ``progress`` is an optional callable receiving
    ``{"phase": ..., ...}`` events. Returns a dict: ``phases_run``, ``rows_copied``, ``batches``,
    ``replayed_keys``, ``checksums`` (per partition: source/target rows and checksums), ``renamed_source``,
    ``default_rows``, ``swap_seconds`` (writers blocked by the swap transaction, lock wait included),
    ``swap_attempts``, ``resumed_from``, ``warnings`` and ``queries`` (every statement that ran).
    A migration found half-done (state row in ``sigeti_dwh.migration_state``) is resumed.
    """
    options = normalize_options(options)
    names = migration_names(table) if table.get("relkind") == "r" else None
    state = read_state(conn, table["schema"], table["name"])
    if state and state["phase"] == "post":
        # the swap committed: finish from the statements it stored
        stub = MigrationPlan(
            mode=state["mode"],
            display=display_name(table["schema"], table["name"]),
            warnings=[],
            default_rows=0,
            names=None,
        )
        run = _Run(conn, executor, stub, progress)
        run.result["resumed_from"] = "post"
        _run_post(run, state)
        run.result["queries"] = run.queries
        run.result["renamed_source"] = (state.get("result") or {}).get("renamed_source")
        return run.result
    if table.get("relkind") != "r":
        raise InvalidInput(
            "%s is not a plain table and no migration of it is in progress"
            % display_name(table["schema"], table["name"])
        )
    if state and int(state["source_oid"]) != int(table["oid"]):
        # the table was recreated since: what was built from the old one is worthless
        abandon_migration(conn, executor, names)
        state = None
    if state and state["mode"] != options["mode"]:
        # the other mode's plan is validated first: bad input must fail before the half-done run is dropped
        if facts is None or not facts.get("state"):
            facts = read_facts(conn, table, layout, options, server)
            facts["state"] = state
        plan_migration(table, layout, options, server, facts=facts)
        abandon_migration(conn, executor, names)
        state = None
    if facts is None or (facts.get("state") or None) != (state or None):
        facts = read_facts(conn, table, layout, options, server)
        facts["state"] = state
    plan = plan_migration(table, layout, options, server, facts=facts)
    if planned is not None:
        planned.append(True)
    ctx = plan.ctx
    run = _Run(conn, executor, plan, progress)
    run.result["renamed_source"] = display_name(names["schema"], names["unpartitioned"])
    phases = {p["name"]: p for p in plan.phases}
    post_units = phases["post"]["units"]
    result_json = json.dumps({"renamed_source": run.result["renamed_source"]})

    if plan.mode in ("offline", "attach"):
        if plan.mode == "attach":
            run.result["renamed_source"] = None
            run.result["attached_partition"] = display_name(names["schema"], names["unpartitioned"])
            low, high, _covered = ctx["attach_range"]
            run.result["attached_range"] = [_json_value(low), _json_value(high)]
            run.event("check")
            run.execute_units(phases["check"]["steps"])
            run.result["phases_run"].append("check")
            for _label, unit in phases["validate"]["units"]:
                run.event("validate")
                run.execute_units(unit)
            _require_valid_indexes(conn, names, ctx["concurrent_indexes"])
            run.result["phases_run"].append("validate")
        name = "offline" if plan.mode == "offline" else "swap"
        steps = list(phases[name]["steps"])
        steps.append(
            Step(
                _state_update(names, post=json.dumps(_render_post(conn, post_units)), step_done=0, result=result_json),
                "store the post-swap statements",
            )
        )
        run.event(name)
        started = time.monotonic()
        attempts = executor.attempts
        run.queries.extend(_execute(executor, _unit(steps)))
        run.result["swap_seconds"] = round(time.monotonic() - started, 3)
        run.result["swap_attempts"] = executor.attempts - attempts
        run.result["phases_run"].append(name)
        run.result["rows_copied"] = None if plan.mode == "attach" else max(ctx["insert_all"].rowcount or 0, 0)
        _run_post(run, read_state(conn, names["schema"], names["name"]))
        run.result["queries"] = run.queries
        return run.result

    # online
    phase = state["phase"] if state else None
    run.result["resumed_from"] = phase
    if phase is None:
        run.event("prepare")
        run.execute_units(phases["prepare"]["steps"])
        run.result["phases_run"].append("prepare")
        state = _state(conn, names)
        phase = "copy"
    if phase == "copy":
        total = int(state["total_pages"])
        page = int(state["next_page"])
        rows_per_page = max(1.0, (table.get("reltuples") or 0) / float(max(table.get("relpages") or 1, 1)))
        pages = max(1, int(options["batch_rows"] / rows_per_page))
        copied = int(state["rows_copied"])
        while page < total:
            last = min(total, page + pages)
            run.event("copy", page=page, total_pages=total, rows_copied=copied)
            copied += _copy_batch(run, copy_statement(names, plan.insert_cols, plan.overriding, page, last), last)
            run.result["batches"] += 1
            page = last
        # a row updated during the copy can move to a later page and be copied twice (old and new version); its
        # key was logged before the later batch read it, so one replay now (before any unique index) removes the
        # duplicate. Pages added after the copy started hold rows inserted since the triggers: the log has them.
        run.event("copy-replay")
        replay = _replay_steps(
            names, plan.replay_key, ctx["replay_key_types"], plan.insert_cols, plan.overriding, names["shadow"]
        )
        rows = run.direct([s.sql for s in replay] + [_state_update(names, phase="build", step_done=0)])
        run.result["replayed_keys"] += max(rows[1][0], 0)
        run.result["rows_copied"] = copied
        run.result["phases_run"].append("copy")
        state = _state(conn, names)
        phase = "build"
    else:
        run.result["rows_copied"] = int(state["rows_copied"])
    if phase == "build":
        done = int(state["step_done"])
        units = phases["build"]["units"]
        for index, (_label, unit) in enumerate(units):
            if index < done:
                continue
            run.event("build", unit=index, units=len(units))
            run.execute_units(unit, {"step_done": index + 1})
        run.direct([_state_update(names, phase="catchup", step_done=0)])
        run.result["phases_run"].append("build")
        phase = "catchup"
    if phase in ("catchup", "swap"):
        replay = _replay_steps(
            names, plan.replay_key, ctx["replay_key_types"], plan.insert_cols, plan.overriding, names["shadow"]
        )
        for _round in range(options["replay_rounds"]):
            run.event("catchup", round=_round)
            rows = run.direct([s.sql for s in replay])
            consumed = max(rows[1][0], 0)
            run.result["replayed_keys"] += consumed
            if consumed <= options["replay_threshold"]:
                break
        run.event("verify")
        bad = _verify_online(run, ctx)
        if bad:
            differ = _differing_columns(run, ctx)
            abandon_migration(conn, executor, names)
            raise DwhError(
                "verification of %s failed before the swap: %s; columns that differ: %s. The original table is "
                "untouched and still in use; the shadow was dropped, the next run starts over"
                % (plan.display, "; ".join(bad), ", ".join(differ) or "none (rows missing or extra)"),
                checksums=run.result["checksums"],
                differing_columns=differ,
            )
        run.result["phases_run"].append("catchup")
        swap_steps = list(phases["swap"]["steps"])
        swap_steps.append(
            Step(
                _state_update(
                    names,
                    phase="post",
                    step_done=0,
                    post=json.dumps(_render_post(conn, post_units)),
                    result=result_json,
                ),
                "store the post-swap statements",
            )
        )
        run.event("swap")
        started = time.monotonic()
        attempts = executor.attempts
        ran = _execute(executor, _unit(swap_steps))
        run.result["swap_seconds"] = round(time.monotonic() - started, 3)
        run.result["swap_attempts"] = executor.attempts - attempts
        run.queries.extend(ran)
        run.result["phases_run"].append("swap")
        for step in swap_steps:
            if step.render(conn).startswith("WITH consumed AS"):
                run.result["replayed_keys"] += max(step.rowcount or 0, 0)
    _run_post(run, _state(conn, names))
    run.result["queries"] = run.queries
    return run.result
