# Copyright: (c) 2026, SIGETI data platform team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The runner: execute or resume a planned migration, verify it, run the post-swap units, abandon a half-done one.

Resume (``_run_migration``): the state row's phase says where to start; ``post`` runs the statements the swap
stored, from ``step_done`` on. Abandon (``abandon_migration``) drops what ``read_leftovers`` finds, pre-swap only.
"""

from __future__ import annotations

import json
import time

from ansible_collections.sigeti.dwh.plugins.module_utils.errors import DwhError, InvalidInput, LockNotGranted
from ansible_collections.sigeti.dwh.plugins.module_utils.identifiers import display_name
from ansible_collections.sigeti.dwh.plugins.module_utils.plan import (
    ACCESS_EXCLUSIVE,
    SHARE_ROW_EXCLUSIVE,
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
from ansible_collections.sigeti.dwh.plugins.module_utils.migration_facts import (
    read_facts,
    read_state,
)
from ansible_collections.sigeti.dwh.plugins.module_utils.migration_plan import (
    MigrationPlan,
    plan_migration,
)
from ansible_collections.sigeti.dwh.plugins.module_utils.migration_sql import (
    CAPTURE_TRIGGERS,
    STATE_SCHEMA,
    STATE_TABLE,
    _checksum_source,
    _checksum_target,
    _drop_index_steps,
    _ident,
    _join,
    _json_value,
    _replay_steps,
    _state_update,
    checksum_compare_sql,
    copy_statement,
    derived_name,
    migration_names,
    normalize_options,
)

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
