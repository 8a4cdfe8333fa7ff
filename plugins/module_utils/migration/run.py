# Copyright: (c) 2026, SIGETI data platform team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The runner: execute or resume a planned migration, verify it, run the post-swap units, abandon a half-done one.

Resume (``_run_migration``): the state row's phase says where to start; ``post`` runs the statements the swap
stored, from ``step_done`` on. Abandon (``abandon_migration``) drops what ``read_leftovers`` finds, pre-swap only.
"""

from __future__ import annotations

import itertools
import json
import time
from typing import TYPE_CHECKING, Any, Callable, Sequence

from ansible_collections.sigeti.dwh.plugins.module_utils.catalog import migration as catalog_migration
from ansible_collections.sigeti.dwh.plugins.module_utils.core.bounds import json_value
from ansible_collections.sigeti.dwh.plugins.module_utils.core.errors import DwhError, InvalidInput, LockNotGranted
from ansible_collections.sigeti.dwh.plugins.module_utils.core.identifiers import display_name
from ansible_collections.sigeti.dwh.plugins.module_utils.migration.abandon import (
    abandon_migration,
    execute_in_units,
    one_unit,
)
from ansible_collections.sigeti.dwh.plugins.module_utils.migration.catchup import catch_up
from ansible_collections.sigeti.dwh.plugins.module_utils.migration.facts import read_facts, read_state
from ansible_collections.sigeti.dwh.plugins.module_utils.migration.online import (
    copy_batch_steps,
    copy_batches,
    copy_start_step,
    verify_steps,
)
from ansible_collections.sigeti.dwh.plugins.module_utils.migration.planner import (
    MigrationPlan,
    drop_hint,
    kept_original,
    plan_migration,
    planned_partitions,
)
from ansible_collections.sigeti.dwh.plugins.module_utils.migration.sql import (
    COPIED,
    INSERTED,
    REMOVED,
    REPLAYED,
    STATE_SCHEMA,
    STATE_TABLE,
    identifier,
    join_sql,
    migration_names,
    normalize_options,
    replay_steps,
    rows_of,
    state_update,
    totals_differ,
)
from ansible_collections.sigeti.dwh.plugins.module_utils.plan.side import side_read
from ansible_collections.sigeti.dwh.plugins.module_utils.plan.steps import Step

if TYPE_CHECKING:  # names used in annotations only
    from ansible_collections.sigeti.dwh.plugins.module_utils.plan.executor import Executor
    from ansible_collections.sigeti.dwh.plugins.module_utils.session.connection import Connection, ServerFacts

try:
    import psycopg2
    import psycopg2.extensions
    from psycopg2 import sql
except ImportError:  # reported by the connection layer
    psycopg2 = None
    sql = None


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
        self.side_connect = None  # opens a second connection (the offline mode's concurrent read)
        self.queries = []
        self._groups = itertools.count(1)  # each unit its own transaction group
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
            "created": [],
            "rows_moved": None,
            "kept_original": None,
            "drop_hint": None,
        }

    def event(self, phase, **info):
        info["phase"] = phase
        self.progress(info)

    def execute(self, steps, isolation=None):
        """Run Steps as one transaction through the Executor (lock_timeout + retries), remembering their SQL.

        Every statement of the migration goes through here: each step's ``rowcount`` and ``rows`` are set once it
        ran. ``isolation`` (e.g. ``REPEATABLE READ``) is the level of that transaction.
        """
        steps = list(steps)
        if isolation and steps:
            steps[0].isolation = isolation
        ran = execute_in_units(self.executor, one_unit(steps, "sigeti-migration-%d" % next(self._groups)))
        self.queries.extend(ran)
        return ran

    def execute_units(self, units, state_values=None):
        """Run Steps (and the progress they make, ``state_values``) as one transaction through the Executor."""
        steps = list(units)
        if state_values is not None:
            steps.append(Step(state_update(self.plan.names, **state_values), "progress"))
        return self.execute(steps)

    def timed_swap(self, steps):
        """The swap transaction through the Executor, its duration (lock wait included) and attempts recorded."""
        started = time.monotonic()
        attempts = self.executor.attempts
        self.execute(steps)
        self.result["swap_seconds"] = round(time.monotonic() - started, 3)
        self.result["swap_attempts"] = self.executor.attempts - attempts

    def replay(self, extra=(), isolation=None, limit=None):
        """Replay the logged keys (the ``limit`` oldest, or all) into the shadow (plus ``extra`` steps in the same
        transaction); return how many keys it consumed (the ``extra`` steps keep what they returned in their
        ``rows``)."""
        plan = self.plan
        names = plan.names
        steps = replay_steps(
            names,
            plan.replay_key,
            plan.ctx.replay_key_types,
            plan.insert_cols,
            plan.overriding,
            names["shadow"],
            limit=limit,
        )
        self.execute(steps + list(extra), isolation=isolation)
        consumed = rows_of(steps, REPLAYED)
        self.result["replayed_keys"] += consumed
        return consumed


def _state(conn, names):
    return read_state(conn, names["schema"], names["name"])


def _checksum_entry(source_rows, target_rows, source_sum, target_sum):
    return {
        "source_rows": source_rows,
        "target_rows": target_rows,
        "source_checksum": None if source_sum is None else str(source_sum),
        "target_checksum": None if target_sum is None else str(target_sum),
    }


def _verify_online(run):
    """Replay, then compare source and shadow inside one REPEATABLE READ snapshot: the whole-table totals, and the
    detail per target partition only when they differ (``verify_steps``)."""
    names = run.plan.names
    verify = verify_steps(run.plan.ctx)
    source, target, detail = verify.source, verify.target, verify.detail
    consequence = (
        "The original is untouched and still in use; the verification's transaction was rolled back and the next "
        "run resumes at it"
    )
    with side_read(run.side_connect, verify.concurrent, run.executor, run.plan.display, consequence) as (
        main_steps,
        executed,
    ):
        extra = main_steps(verify.steps) + [Step(state_update(names, phase="swap"), "progress")]
        run.replay(extra, isolation="REPEATABLE READ")
    run.queries.extend(executed)
    (source_rows, source_sum), (target_rows, target_sum) = source.rows[0], target.rows[0]
    checksums = {"total": _checksum_entry(source_rows, target_rows, source_sum, target_sum), "partitions": {}}
    run.result["checksums"] = checksums
    if not totals_differ(source.rows[0], target.rows[0]):
        return []
    bad = []
    for bucket, b_source_rows, b_target_rows, b_source_sum, b_target_sum in detail.rows:
        checksums["partitions"][bucket] = _checksum_entry(b_source_rows, b_target_rows, b_source_sum, b_target_sum)
        if b_source_rows != b_target_rows or b_source_sum != b_target_sum:
            bad.append(
                "%s: source %s rows (checksum %s), shadow %s rows (checksum %s)"
                % (bucket, b_source_rows, b_source_sum, b_target_rows, b_target_sum)
            )
    # equal totals are the proof; different totals always fail, even if no partition differs alone (rows moved)
    return bad or [
        "whole table: source %s rows (checksum %s), shadow %s rows (checksum %s)"
        % (source_rows, source_sum, target_rows, target_sum)
    ]


def _differing_columns(run):
    """After a failed verification: the columns whose content differs between the original and the shadow.

    One scan of each, per column a sum of hashes of ``ROW(column)`` (so NULL and '' differ). Only run on failure.
    """
    names = run.plan.names
    columns = [c["name"] for c in run.plan.ctx.table["columns"]]
    sums = join_sql(
        [sql.SQL("sum(hashtextextended(ROW(t.{})::text, 0))::text").format(sql.Identifier(c)) for c in columns]
    )
    source, shadow = [
        Step(sql.SQL("SELECT {} FROM {} t").format(sums, identifier(names["schema"], relation)), "column checksums")
        for relation in (names["name"], names["shadow"])
    ]
    run.execute([source, shadow], isolation="REPEATABLE READ")
    (source,), (shadow,) = source.rows, shadow.rows
    return [c for c, a, b in zip(columns, source, shadow) if a != b]


def _run_post(run, state):
    """The post-swap units the swap stored in the state row, from ``step_done`` on; the last one forgets the row."""
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
                        identifier(STATE_SCHEMA, STATE_TABLE),
                        sql.Literal(state["schema_name"]),
                        sql.Literal(state["table_name"]),
                    ),
                    "migration finished: forget its state",
                )
            )
        else:
            steps.append(
                Step(
                    state_update({"schema": state["schema_name"], "name": state["table_name"]}, step_done=index + 1),
                    "progress",
                )
            )
        run.event("post", unit=index, units=len(units))
        run.execute(steps)
    run.result["phases_run"].append("post")


def _render_post(conn, units):
    return [[s.render(conn) for s in unit] for _label, unit in units]


def run_migration(
    conn: Connection,
    executor: Executor,
    table: dict[str, Any],
    layout: Sequence[dict[str, Any]],
    options: dict[str, Any] | None,
    server: ServerFacts,
    progress: Callable[[dict[str, Any]], None] | None = None,
    facts: dict[str, Any] | None = None,
    side_connect: Callable[[], Connection] | None = None,
) -> dict[str, Any]:
    """Execute (or resume) the migration; see ``_run_migration``. The connection's autocommit mode is restored.

    ``side_connect`` opens a second connection with the same parameters (``connection.connect_again``): the offline
    mode reads the original's totals on it while its copy runs. Without it, that read runs in the main transaction.
    """
    was = conn.autocommit
    planned = []  # set once the plan is made: a failure while reading facts abandons nothing
    try:
        return _run_migration(conn, executor, table, layout, options, server, progress, facts, planned, side_connect)
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
    # an offline run has no progress worth keeping: whatever stopped it, its committed shadow goes
    if table.get("relkind") != "r" or conn.closed or (mode == "online" and _is_transient(error)):
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


def _run_migration(
    conn, executor, table, layout, options, server, progress=None, facts=None, planned=None, side_connect=None
):
    """Execute (or resume) the migration of plain table ``table`` into the partitions of ``layout``.

    ``executor`` is a ``plan.Executor`` (lock_timeout retries). ``progress`` is an optional callable receiving
    ``{"phase": ..., ...}`` events. Returns a dict: ``phases_run``, ``rows_copied``, ``batches``,
    ``replayed_keys``, ``checksums`` (per partition: source/target rows and checksums), ``renamed_source``,
    ``default_rows``, ``swap_seconds`` (writers blocked by the swap transaction, lock wait included),
    ``swap_attempts``, ``resumed_from``, ``warnings`` and ``queries`` (every statement that ran).
    A migration found half-done (state row in ``sigeti_dwh.migration_state``) is resumed.
    """
    options = normalize_options(options)
    state = read_state(conn, table["schema"], table["name"])
    if state and state["phase"] == "post":
        return _finish_post(conn, executor, table, state, progress)
    if table.get("relkind") != "r":
        raise InvalidInput(
            "%s is not a plain table and no migration of it is in progress"
            % display_name(table["schema"], table["name"])
        )
    state, facts, dropped = _drop_stale_run(conn, executor, table, layout, options, server, state, facts)
    plan = plan_migration(table, layout, options, server, facts=facts)
    if planned is not None:
        planned.append(True)
    run = _Run(conn, executor, plan, progress)
    run.side_connect = side_connect
    if dropped:
        removed, queries = dropped
        run.queries.extend(queries)
        run.result["warnings"].append(
            "a run of this migration stopped before its swap had left: %s; dropped, this run started again"
            % "; ".join(removed)
        )
    run.result["renamed_source"] = display_name(plan.names["schema"], plan.names["unpartitioned"])
    run.result["created"] = planned_partitions(plan)[1]
    if plan.mode in ("offline", "attach"):
        _run_in_one_swap(run)
    else:
        _run_online(run, state)
    _outcome(run, plan.names, plan.options["drop_source"])
    run.result["queries"] = run.queries
    return run.result


def _outcome(run, names, drop_source):
    """What the migration left, once it is over: ``rows_moved`` (offline: the rows both halves copied; online: the
    rows the verification counted plus what the swap's replay added; attach copies none; None when not known: a run
    resuming after an earlier run's swap), ``kept_original`` and ``drop_hint``."""
    result = run.result
    if result.get("rows_moved") is None and result["mode"] == "offline" and "offline" in result["phases_run"]:
        result["rows_moved"] = result["rows_copied"]
    elif result["mode"] == "attach":
        result["rows_moved"] = 0
    size = catalog_migration.relation_bytes(run.conn, names["schema"], names["unpartitioned"])
    kept = kept_original(result["mode"], names, drop_source or size is None, size)
    result["kept_original"] = kept
    result["drop_hint"] = drop_hint(kept)


def _finish_post(conn, executor, table, state, progress):
    """The swap committed: finish from the statements it stored (nothing is planned again)."""
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
    stored = state.get("result") or {}
    run.result.update((k, stored[k]) for k in _STORED_RESULT if k in stored)
    run.result.setdefault("renamed_source", None)
    run.result.setdefault("created", [])
    run.result["rows_moved"] = None  # the copy ran in the run that swapped
    _outcome(run, migration_names(table), False)
    return run.result


def _drop_stale_run(conn, executor, table, layout, options, server, state, facts):
    """A half-done run of another table oid, of another mode, or of ``offline`` (killed between its prepare and its
    swap: its shadow may be half filled) is abandoned. Returns ``(state, facts, dropped)`` to plan with; ``dropped``
    the ``(removed, queries)`` of that abandon, or None."""
    names = migration_names(table)
    dropped = None
    if state and int(state["source_oid"]) != int(table["oid"]):
        # the table was recreated since: what was built from the old one is worthless
        dropped = abandon_migration(conn, executor, names)
        state = None
    if state and (state["mode"] != options["mode"] or state["mode"] == "offline"):
        # the new plan is validated first: bad input must fail before the half-done run is dropped
        if facts is None or not facts.get("state"):
            facts = read_facts(conn, table, layout, options, server)
            facts["state"] = state
        plan_migration(table, layout, options, server, facts=facts)
        dropped = abandon_migration(conn, executor, names)
        state = None
    if facts is None or (facts.get("state") or None) != (state or None):
        facts = read_facts(conn, table, layout, options, server)
        facts["state"] = state
    return state, facts, dropped


# what the swap's result says, stored with the post-swap statements so a run resuming at ``post`` says the same
_STORED_RESULT = ("renamed_source", "attached_partition", "attached_range", "created")


def _store_post(run, post_units, **state_values):
    """The step of the swap transaction storing the post-swap statements: a run killed after it resumes exactly."""
    result_json = json.dumps({k: run.result[k] for k in _STORED_RESULT if k in run.result})
    return Step(
        state_update(
            run.plan.names,
            post=json.dumps(_render_post(run.conn, post_units)),
            step_done=0,
            result=result_json,
            **state_values,
        ),
        "store the post-swap statements",
    )


def _timed_swap_with_side_read(run, steps, concurrent):
    """The one transaction of the offline mode (or attach's swap); the plan's concurrent step (offline: the second
    half of the copy) runs on a second connection beside it, when the caller can open one."""
    consequence = "Nothing was changed (the migration's transaction was rolled back, what it built is dropped)"
    with side_read(run.side_connect, concurrent, run.executor, run.plan.display, consequence) as (
        main_steps,
        side_executed,
    ):
        run.timed_swap(main_steps(steps))
    run.queries.extend(side_executed)


def _run_in_one_swap(run):
    """Offline (build, copy and swap in one transaction) or attach (check, validate, then the swap); then post."""
    plan, names = run.plan, run.plan.names
    phases = {p["name"]: p for p in plan.phases}
    if plan.mode == "attach":
        run.result["renamed_source"] = None
        run.result["attached_partition"] = display_name(names["schema"], names["unpartitioned"])
        run.result["attached_range"] = [json_value(plan.attach_range.low), json_value(plan.attach_range.high)]
        run.event("check")
        run.execute_units(phases["check"]["steps"])
        run.result["phases_run"].append("check")
        for _label, unit in phases["validate"]["units"]:
            run.event("validate")
            run.execute_units(unit)
        _require_valid_indexes(run.conn, names, phases["validate"]["concurrent_indexes"])
        run.result["phases_run"].append("validate")
    if plan.mode == "offline":
        run.event("prepare")
        run.execute_units(phases["prepare"]["steps"])
        run.result["phases_run"].append("prepare")
    name = "offline" if plan.mode == "offline" else "swap"
    steps = list(phases[name]["steps"]) + [_store_post(run, phases["post"]["units"], phase="post")]
    run.event(name)
    try:
        _timed_swap_with_side_read(run, steps, phases[name].get("concurrent"))
    except DwhError as error:
        # a server error or a lock not granted goes through _abandon_after_failure, which says what it removed
        if plan.mode == "offline" and not isinstance(error, LockNotGranted):
            _abandon_quietly(run)
        raise
    if phases[name].get("totals"):
        (source_rows, source_sum), (target_rows, target_sum) = [step.rows[0] for step in phases[name]["totals"]]
        total = _checksum_entry(source_rows, target_rows, source_sum, target_sum)
        run.result["checksums"] = {"total": total, "partitions": {}}
    run.result["phases_run"].append(name)
    run.result["rows_copied"] = None if plan.mode == "attach" else rows_of(steps, COPIED)
    _run_post(run, _state(run.conn, names))


def _abandon_quietly(run):
    """Drop what a failed offline run committed (its shadow, half filled by the second connection) before its
    error is raised; if that fails too, the next run drops it."""
    try:
        if run.conn.get_transaction_status() != psycopg2.extensions.TRANSACTION_STATUS_IDLE:
            run.conn.rollback()
        abandon_migration(run.conn, run.executor, run.plan.names)
    except (psycopg2.Error, DwhError):
        pass


def _run_online(run, state):
    """Online: each phase from where the state row says (a run killed anywhere resumes at its phase)."""
    conn, names = run.conn, run.plan.names
    phases = {p["name"]: p for p in run.plan.phases}
    phase = state["phase"] if state else None
    run.result["resumed_from"] = phase
    if phase is None:
        run.event("prepare")
        run.execute_units(phases["prepare"]["steps"])
        run.result["phases_run"].append("prepare")
        state = _state(conn, names)
        phase = "copy"
    if phase == "copy":
        _online_copy(run, state)
        state = _state(conn, names)
        phase = "build"
    else:
        run.result["rows_copied"] = int(state["rows_copied"])
    if phase == "build":
        _online_build(run, phases["build"], int(state["step_done"]))
        phase = "catchup"
    if phase in ("catchup", "swap"):
        _online_catchup(run)
        _online_swap(run, phases)
    _run_post(run, _state(conn, names))


def _online_copy(run, state):
    """The batch loop: batches of heap pages from ``next_page`` (``copy_batch_steps``, the steps check mode shows),
    each with its progress in one transaction through the Executor, then one replay."""
    plan = run.plan
    names = plan.names
    batches = copy_batches(plan.ctx, total_pages=int(state["total_pages"]), first_page=int(state["next_page"]))
    copied = int(state["rows_copied"])
    run.execute([copy_start_step(plan.ctx)])
    for first, last in batches.ranges():
        run.event("copy", page=first, total_pages=batches.total_pages, rows_copied=copied)
        steps = copy_batch_steps(plan.ctx, first, last)
        run.execute(steps)
        copied += rows_of(steps, COPIED)
        run.result["batches"] += 1
    # a row updated during the copy can move to a later page and be copied twice (old and new version); its
    # key was logged before the later batch read it, so one replay now (before any unique index) removes the
    # duplicate. Pages added after the copy started hold rows inserted since the triggers: the log has them.
    run.event("copy-replay")
    run.replay([Step(state_update(names, phase="build", step_done=0), "progress")])
    run.result["rows_copied"] = copied
    run.result["phases_run"].append("copy")


def _online_build(run, phase, done):
    """Keys, indexes and ANALYZE on the filled shadow, one transaction each, from ``step_done`` on."""
    units = phase["units"]
    for index, (_label, unit) in enumerate(units):
        if index < done:
            continue
        run.event("build", unit=index, units=len(units))
        run.execute_units(unit, {"step_done": index + 1})
    run.execute([Step(state_update(run.plan.names, phase="catchup", step_done=0), "progress")])
    run.result["phases_run"].append("build")


def _online_catchup(run):
    """Replay until the log is small, then verify per partition; a mismatch abandons with the original untouched."""
    plan = run.plan
    catch_up(run, "before the verification")
    run.event("verify")
    bad = _verify_online(run)
    if bad:
        differ = _differing_columns(run)
        abandon_migration(run.conn, run.executor, plan.names)
        raise DwhError(
            "verification of %s failed before the swap: %s; columns that differ: %s. The original table is "
            "untouched and still in use; the shadow was dropped, the next run starts over"
            % (plan.display, "; ".join(bad), ", ".join(differ) or "none (rows missing or extra)"),
            checksums=run.result["checksums"],
            differing_columns=differ,
        )
    run.result["phases_run"].append("catchup")


def _online_swap(run, phases):
    """The swap transaction (see ``migration_swap``), storing the post-swap statements in the same commit."""
    swap_steps = list(phases["swap"]["steps"]) + [_store_post(run, phases["post"]["units"], phase="post")]
    run.event("swap")
    run.timed_swap(swap_steps)
    run.result["phases_run"].append("swap")
    run.result["replayed_keys"] += rows_of(swap_steps, REPLAYED)
    verified = (run.result.get("checksums") or {}).get("total") or {}
    if verified.get("source_rows") is not None:
        # the shadow held exactly the verified rows; the swap's replay then removed and inserted these
        run.result["rows_moved"] = (
            int(verified["source_rows"]) + rows_of(swap_steps, INSERTED) - rows_of(swap_steps, REMOVED)
        )
