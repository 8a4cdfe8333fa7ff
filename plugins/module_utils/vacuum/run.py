# Copyright: (c) 2026, SIGETI data platform team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The run of ``sigeti.dwh.vacuum``: read the facts, plan with ``vacuum`` (pure), execute, report.

Facts come from ``catalog`` and from the host the module runs on (free disk under the data directory, the pg_repack
program). The order is fixed by what each fact costs: bloat is measured only for leaves big enough to be rewritten,
row ages only for partitions old enough to freeze, and the host is probed only when some leaf is due a rewrite.
"""

from __future__ import annotations

import datetime
import os
import re
import shutil
import time
from typing import TYPE_CHECKING, Any, Callable, NamedTuple, Sequence, Tuple

from ansible_collections.sigeti.dwh.plugins.module_utils.catalog import tables as catalog
from ansible_collections.sigeti.dwh.plugins.module_utils.catalog.reads import end_read
from ansible_collections.sigeti.dwh.plugins.module_utils.core.errors import InvalidInput, LockNotGranted
from ansible_collections.sigeti.dwh.plugins.module_utils.core.identifiers import display_name
from ansible_collections.sigeti.dwh.plugins.module_utils.plan import tables as table_runs
from ansible_collections.sigeti.dwh.plugins.module_utils.plan.executor import Executor, describe_blockers
from ansible_collections.sigeti.dwh.plugins.module_utils.plan.retry import retrying
from ansible_collections.sigeti.dwh.plugins.module_utils.plan.steps import Plan
from ansible_collections.sigeti.dwh.plugins.module_utils.report import inflight
from ansible_collections.sigeti.dwh.plugins.module_utils.report.table import bound_as_date
from ansible_collections.sigeti.dwh.plugins.module_utils.session import runlock
from ansible_collections.sigeti.dwh.plugins.module_utils.session.connection import connection_kwargs, parse_duration_ms
from ansible_collections.sigeti.dwh.plugins.module_utils.vacuum.decisions import (
    disk_decision,
    leaf_bloat_estimate,
    periods_since_end,
    rewrite_decision,
    rewrite_space,
)
from ansible_collections.sigeti.dwh.plugins.module_utils.vacuum.options import (
    VacuumOptions,
    validate_options,
)
from ansible_collections.sigeti.dwh.plugins.module_utils.vacuum.planner import (
    Action,
    Gathered,
    all_actions,
    counted_before,
    report,
    table_plan,
)
from ansible_collections.sigeti.dwh.plugins.module_utils.vacuum.repack import (
    RepackProbe,
    render_command,
    repack_argv,
    repack_availability,
    repack_env,
)

if TYPE_CHECKING:  # names used in annotations only
    from ansible_collections.sigeti.dwh.plugins.module_utils.plan.executor import Blocker
    from ansible_collections.sigeti.dwh.plugins.module_utils.session.connection import Connection, ServerFacts
    from ansible_collections.sigeti.dwh.plugins.module_utils.session.context import RunContext

STATS_WAIT_SECONDS = 3.0

# the module's ``run_command`` (``RunContext.run_command``) or a callable with its signature: ``(rc, stdout, stderr)``.
RunCommand = Callable[..., Tuple[int, str, str]]


class FreeSpace(NamedTuple):
    """``filesystem_free``'s answer; a tuple, so ``visible, free, note = filesystem_free(...)`` reads as before."""

    visible: bool  # the filesystem is this server's and can be seen from this host
    free_bytes: int | None  # bytes available to PostgreSQL there, None when not visible
    note: str  # how it was measured, or why not


class RepackProgram(NamedTuple):
    """``find_pg_repack``'s answer; a tuple, so ``path, version = find_pg_repack(...)`` reads as before."""

    path: str | None
    version: str | None


# ---------------------------------------------------------------------------------------------
# The host the module runs on: free disk, the pg_repack program
# ---------------------------------------------------------------------------------------------


def filesystem_free(location: str | None, data_directory: str | None, port: int | None) -> FreeSpace:
    """Return ``(visible, free_bytes, note)`` for the filesystem holding ``location``.

    Visible means the path exists on this host and, when the data directory's ``postmaster.pid`` is readable,
    that it belongs to the server on ``port`` (a same-named folder of another cluster does not count).
    """
    if not location:
        return FreeSpace(
            False, None, "data_directory is not readable by this role (needs superuser or pg_read_all_settings)"
        )
    if not os.path.isdir(location):
        return FreeSpace(
            False, None, "%s does not exist on this host (the module runs elsewhere than the server)" % location
        )
    if data_directory:
        pid_file = os.path.join(data_directory, "postmaster.pid")
        try:
            with open(pid_file) as handle:
                lines = handle.read().splitlines()
            if len(lines) > 3 and port and lines[3].strip() != str(port):
                return FreeSpace(
                    False, None, "%s belongs to the server on port %s, not %s" % (data_directory, lines[3], port)
                )
        except OSError:
            pass  # not readable as this user: the path still tells which filesystem it is
    stat = os.statvfs(location)
    return FreeSpace(True, stat.f_bavail * stat.f_frsize, "statvfs(%s)" % location)


def repack_binary_version(path: str, run_command: RunCommand) -> str | None:
    """Return the version printed by ``pg_repack --version`` (e.g. ``1.4.8``), or None when it does not run.

    ``run_command`` is the module's ``run_command`` (or a callable with its signature and return value).
    """
    try:
        _rc, out, err = run_command([path, "--version"], handle_exceptions=False)
    except OSError:
        return None
    match = re.search(r"pg_repack\s+(\S+)", (out or "") + (err or ""))
    return match.group(1) if match else None


def find_pg_repack(explicit_path: str | None, version_num: int, run_command: RunCommand) -> RepackProgram:
    """Locate a pg_repack binary: ``pg_repack_path``, then PATH, then Debian's per-version bin folder.

    Returns ``(path, version)`` or ``(None, None)``. ``run_command`` as for repack_binary_version.
    """
    major = int(version_num) // 10000
    candidates = (
        [explicit_path]
        if explicit_path
        else [
            shutil.which("pg_repack"),
            "/usr/lib/postgresql/%d/bin/pg_repack" % major,
            "/usr/pgsql-%d/bin/pg_repack" % major,
        ]
    )
    for path in candidates:
        if path and os.path.isfile(path) and os.access(path, os.X_OK):
            version = repack_binary_version(path, run_command)
            if version:
                return RepackProgram(path, version)
    return RepackProgram(None, None)


class RepackTimedOut(Exception):
    """pg_repack gave up waiting for a lock (its --wait-timeout): the retry policy tries again."""


def run_repack(
    argv: Sequence[str],
    env: dict[str, str],
    retries: int,
    retry_delay: float,
    blockers: Callable[[Sequence[tuple[str, str]]], list[Blocker]],
    targets: Sequence[tuple[str, str]],
    run_command: RunCommand,
    sleep: Callable[[float], Any] = time.sleep,
) -> str:
    """Run one pg_repack command under the executor's retry policy (``plan.retrying``) for lock timeouts.

    ``blockers(targets)`` names the sessions holding locks when we give up; ``run_command`` is
    the module's ``run_command``. Returns pg_repack's output.
    """
    # run_command adds environ_update to the module's environment: an inherited PGPASSWORD is blanked
    # (libpq treats an empty one as absent) so only the module's own password can reach pg_repack.
    update = dict(env)
    update["PGPASSWORD"] = update.get("PGPASSWORD") or ""
    shown = ", ".join(display_name(s, r) for s, r in targets)
    tries = []

    def attempt(number):
        tries.append(number)
        returncode, out, err = run_command(argv, environ_update=update)
        output = (out or "") + (err or "")
        # pg_repack reports a lock wait it gave up only in words; --no-kill-backend makes it give up
        if "timed out" in output or "Skipping repack" in output or "lock timeout" in output:
            raise RepackTimedOut(output)
        if returncode != 0:
            raise InvalidInput("pg_repack failed on %s (exit %s): %s" % (shown, returncode, output.strip()[-800:]))
        return output

    try:
        return retrying(attempt, lambda e: isinstance(e, RepackTimedOut), retries, retry_delay, sleep)
    except RepackTimedOut:
        found = blockers(targets)
        raise LockNotGranted(
            "Gave up after %d attempts: pg_repack could not lock %s within its wait timeout. Blocked by %s. "
            "What to do: wait for or end that session, or raise lock_timeout / lock_retries."
            % (tries[-1], shown, describe_blockers(found)),
            blocking_pids=[b["pid"] for b in found],
        ) from None


# ---------------------------------------------------------------------------------------------
# Facts, read in the order their cost allows
# ---------------------------------------------------------------------------------------------


def read_relations(
    conn: Connection, names: Sequence[tuple[str, str]]
) -> tuple[list[dict[str, Any]], dict[int, dict[str, Any]], dict[int, dict[str, Any]]]:
    """Return ``(tables, relations, extras)``: the requested tables, every relation of their trees by oid, and per oid
    the values only this module reads (sizes too)."""
    tables = catalog.read_tables(conn, names)
    missing = [display_name(t["schema"], t["name"]) for t in tables if not t["exists"]]
    if missing:
        raise InvalidInput(
            "table(s) %s do not exist in database %s: check the names (schema.table; quote "
            "mixed-case parts)" % (", ".join(missing), conn.info.dbname)
        )
    relations = {}
    for table in tables:
        relations.update(table["relations"])
    extras = catalog.vacuum_facts(conn, list(relations))
    for oid, extra in extras.items():
        entry = relations[oid]
        extra["size_bytes"] = (entry["heap_bytes"] or 0) + (entry["toast_bytes"] or 0)
        extra["total_bytes"] = extra["size_bytes"] + (entry["index_bytes"] or 0)
    return tables, relations, extras


def _bloat_from_approx(row):
    length = row.get("table_len") or 0
    if not length:
        return {"bloat": 0.0, "method": "pgstattuple"}
    dead, free = row.get("dead_tuple_len") or 0, row.get("approx_free_space") or 0
    return {
        "bloat": round((dead + free) / float(length), 4),
        "method": "pgstattuple",
        "table_len": length,
        "dead_tuple_len": dead,
        "approx_free_space": free,
        "scanned_percent": round(float(row.get("scanned_percent") or 0), 2),
    }


def measure_bloat(
    conn: Connection,
    server: ServerFacts,
    relations: dict[int, dict[str, Any]],
    extras: dict[int, dict[str, Any]],
    options: VacuumOptions,
    pgstattuple: dict[str, Any] | None,
) -> str:
    """Record ``bloat`` (or why not) on the leaves big enough to be rewritten; return the method used.

    pgstattuple_approx when the extension is there and the role may call it, else the catalog estimate.
    """
    leaves = [e for e in relations.values() if e["relkind"] == "r"]
    measured = [
        e for e in leaves if options["full"] == "auto" and extras[e["oid"]]["size_bytes"] >= options["min_size"]
    ]
    if pgstattuple and pgstattuple.get("approx_allowed"):
        rows = catalog.approx_bloat(conn, pgstattuple["schema"], [e["oid"] for e in measured])
        for entry in measured:
            extras[entry["oid"]]["bloat"] = _bloat_from_approx(rows[entry["oid"]])
        return "pgstattuple"
    why = (
        "pgstattuple extension not installed in this database"
        if not pgstattuple
        else "role %s may not call pgstattuple_approx (grant pg_stat_scan_tables)" % server["current_user"]
    )
    block_size = int(server["settings"].get("block_size") or 8192)
    # read only for the leaves estimated (pg_stats is the costliest catalog read of a pass over many partitions)
    for oid, inputs in catalog.bloat_estimate_inputs(conn, [e["oid"] for e in measured]).items():
        extras[oid].update(inputs)
    for entry in measured:
        estimate = leaf_bloat_estimate(entry, extras[entry["oid"]], block_size)
        if estimate is not None:
            estimate["method"] = "estimate"
            extras[entry["oid"]]["bloat"] = estimate
        else:
            extras[entry["oid"]]["bloat_note"] = "no pg_stats for it (never analyzed) and %s" % why
    return "estimate"


def _range_dates(entry, relations):
    """The date range of a leaf, from its own range bound or its nearest range-partitioned ancestor."""
    node = entry
    while node is not None:
        if "low" in node and "high" in node:
            return bound_as_date(node["low"]), bound_as_date(node["high"])
        node = relations.get(node.get("parent_oid"))
    return None, None


def read_freeze_ages(
    conn: Connection,
    relations: dict[int, dict[str, Any]],
    extras: dict[int, dict[str, Any]],
    older_than: int,
    today: datetime.date,
) -> None:
    """Record ``periods_ago`` on every leaf, and ``newest_row_age`` on those old enough to be frozen (in ``extras``;
    returns nothing)."""
    sample = []
    for entry in (e for e in relations.values() if e["relkind"] == "r"):
        low, high = _range_dates(entry, relations)
        ago = periods_since_end(low, high, today) if low and high else None
        extras[entry["oid"]]["periods_ago"] = ago
        if ago is not None and ago >= older_than:
            sample.append((entry["oid"], entry["schema"], entry["name"], entry["relpages"]))
    for oid, age in catalog.newest_row_ages(conn, sample).items():
        extras[oid]["newest_row_age"] = age


def probe_repack(
    server: ServerFacts,
    params: dict[str, Any],
    options: VacuumOptions,
    extension: dict[str, Any] | None,
    run_command: RunCommand,
) -> RepackProbe:
    """Return whether pg_repack can rewrite here (program found, versions match, superuser), and why not."""
    if options["full_method"] not in ("auto", "pg_repack"):
        return {"available": False}
    binary, version = find_pg_repack(params.get("pg_repack_path"), server["version_num"], run_command)
    ok, why = repack_availability(extension, binary, version, server["superuser"], server["version_num"])
    if options["full_method"] == "pg_repack" and not ok:
        raise InvalidInput("full_method: pg_repack is not possible: %s. Nothing was changed." % why)
    return {"available": ok, "reason": why, "path": binary, "version": version}


def _rewrite_method(entry, extra, repack, kwargs, lock_ms):
    if repack["available"] and extra["has_repack_key"]:
        argv = repack_argv(repack["path"], kwargs, entry["schema"], entry["name"], lock_ms)
        return {"method": "pg_repack", "reason": repack["reason"], "command": argv}
    if repack["available"]:
        why = "no primary key or unique NOT NULL index: pg_repack cannot rewrite it online"
    else:
        why = repack.get("reason") or "full_method: vacuum_full"
    return {"method": "vacuum_full", "reason": why}


def _rewrite_disk(conn, server, entry, extra, params, options):
    settings = server["settings"]
    location = extra.get("tablespace_location") or settings.get("data_directory")
    visible, free, note = filesystem_free(location, settings.get("data_directory"), conn.info.port)
    share = (extra.get("bloat") or {}).get("bloat")
    disk = disk_decision(
        rewrite_space(extra["total_bytes"], share),
        free,
        location,
        visible,
        params.get("disk_check", "auto"),
        options["min_free_space"],
    )
    disk["note"] = note
    disk["relation"] = display_name(entry["schema"], entry["name"])
    return disk


def prepare_rewrites(
    conn: Connection,
    server: ServerFacts,
    rewrites: list[dict[str, Any]],
    extras: dict[int, dict[str, Any]],
    params: dict[str, Any],
    options: VacuumOptions,
    repack: RepackProbe,
) -> list[dict[str, Any]]:
    """Record on each leaf due a rewrite its method (``repack``) and the disk check; refuse before any change
    when pg_repack was required but cannot rewrite a leaf, or the disk cannot hold a rewrite. Returns the disk report.
    """
    kwargs = connection_kwargs(params)
    lock_ms = lock_ms_from(params)
    disk_report, refusals, no_key = [], [], []
    for entry in rewrites:
        extra = extras[entry["oid"]]
        extra["repack"] = _rewrite_method(entry, extra, repack, kwargs, lock_ms)
        if repack["available"] and extra["repack"]["method"] != "pg_repack":
            no_key.append(display_name(entry["schema"], entry["name"]))
        extra["disk"] = _rewrite_disk(conn, server, entry, extra, params, options)
        disk_report.append(extra["disk"])
        if not extra["disk"]["ok"]:
            refusals.append("%s: %s" % (extra["disk"]["relation"], extra["disk"]["reason"]))
    if no_key and options["full_method"] == "pg_repack":
        raise InvalidInput(
            "full_method: pg_repack cannot rewrite %s: no primary key or unique NOT NULL index. "
            "Add one, or use full_method: vacuum_full (ACCESS EXCLUSIVE for the whole rewrite). "
            "Nothing was changed." % ", ".join(no_key)
        )
    if refusals:
        raise InvalidInput(
            "VACUUM FULL refused, nothing was changed: %s. What to do: free disk space, lower "
            "min_free_space, or rewrite a smaller table first." % "; ".join(refusals),
            disk=disk_report,
        )
    return disk_report


def gather(
    conn: Connection,
    server: ServerFacts,
    names: Sequence[tuple[str, str]],
    options: VacuumOptions,
    params: dict[str, Any],
    run_command: RunCommand,
    today: datetime.date | None = None,
) -> Gathered:
    """Read every fact the decisions need and plan each table; raise InvalidInput before anything runs.

    Returns ``{"tables": [...], "bloat_method": ..., "repack": ..., "disk": [...]}`` where each table holds its
    ``plan`` (see ``vacuum.table_plan``) and the facts read (for sizes before).
    """
    tables, relations, extras = read_relations(conn, names)
    exts = catalog.extensions_info(conn, ["pgstattuple", "pg_repack"])
    bloat_method = measure_bloat(conn, server, relations, extras, options, exts.get("pgstattuple"))
    if options["freeze_older_than"] is not None:
        read_freeze_ages(conn, relations, extras, options["freeze_older_than"], today or datetime.date.today())
    leaves = [e for e in relations.values() if e["relkind"] == "r"]
    rewrites = [e for e in leaves if rewrite_decision(extras[e["oid"]], options)["due"]]
    repack = probe_repack(server, params, options, exts.get("pg_repack"), run_command) if rewrites else {}
    disk_report = prepare_rewrites(conn, server, rewrites, extras, params, options, repack) if rewrites else []
    planned = [
        {"table": table, "plan": table_plan(table, extras, options, server["settings"], server["version_num"])}
        for table in tables
    ]
    return {
        "tables": planned,
        "bloat_method": bloat_method,
        "repack": repack or {"available": False},
        "disk": disk_report,
        "extras": extras,
        "repack_env_kwargs": connection_kwargs(params),
    }


# ---------------------------------------------------------------------------------------------
# Execution
# ---------------------------------------------------------------------------------------------


def lock_ms_from(params: dict[str, Any]) -> int:
    """Return the session's lock_timeout in milliseconds (pg_repack's --wait-timeout follows it)."""
    return parse_duration_ms(params.get("lock_timeout", "5s"), "lock_timeout")


def _run_action(
    executor: Executor, action: Action, gathered: Gathered, params: dict[str, Any], run_command: RunCommand
) -> list[str]:
    if "step" in action:
        return executor.run([action["step"]])
    env = repack_env(gathered["repack_env_kwargs"])
    output = run_repack(
        action["command"],
        env,
        executor.retries,
        executor.retry_delay,
        executor.blockers,
        action["targets"],
        run_command,
    )
    action["output"] = output[-500:]
    return []


def execute(
    conn: Connection, executor: Executor, gathered: Gathered, params: dict[str, Any], run_command: RunCommand
) -> list[str]:
    """Run every action, record ``duration_ms`` on each, and return the SQL statements that ran. SQL goes through the executor (lock_timeout, retries,
    autocommit for VACUUM); pg_repack runs as a program under the same retry policy.

    Reloption changes run first, in one transaction. On failure, the exception carries ``queries`` (what already
    ran) in its details when it is a DwhError.
    """
    actions = all_actions(gathered)
    settings_steps = [a for a in actions if a["action"] == "reloptions"]
    ran = []
    try:
        if settings_steps:
            start = time.monotonic()
            ran.extend(executor.run([a["step"] for a in settings_steps]))
            spent = int((time.monotonic() - start) * 1000)
            for action in settings_steps:
                action["duration_ms"] = spent
        for action in actions:
            if action["action"] == "reloptions":
                continue
            start = time.monotonic()
            ran.extend(_run_action(executor, action, gathered, params, run_command))
            action["duration_ms"] = int((time.monotonic() - start) * 1000)
    except Exception as error:
        if hasattr(error, "details"):
            error.details.setdefault("queries", list(ran))
        raise
    return ran


def wait_for_statistics(
    read_counts: Callable[[list[int]], dict[int, int]],
    before: dict[int, int],
    timeout: float = STATS_WAIT_SECONDS,
    sleep: Callable[[float], Any] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> list[int]:
    """Wait (bounded) until the statistics show this run's VACUUM/ANALYZE of every relation in ``before``.

    PostgreSQL 14's statistics collector publishes counters up to 500 ms late: a run started right after this one
    would read the old counters and vacuum again. Returns the oids still not counted when ``timeout`` ran out.
    """
    deadline = clock() + timeout
    waiting = dict(before)
    while waiting:
        now = read_counts(list(waiting))
        waiting = {oid: count for oid, count in waiting.items() if now.get(oid, count) <= count}
        if not waiting or clock() >= deadline:
            break
        sleep(0.1)
    return sorted(waiting)


def run(
    context: RunContext,
    conn: Connection,
    server: ServerFacts,
    names: Sequence[tuple[str, str]],
    options: VacuumOptions,
) -> dict[str, Any]:
    """Return the module's result after its whole run: facts, plan, execution (unless check mode), report."""
    gathered = gather(conn, server, names, options, context.params, context.run_command)
    actions = all_actions(gathered)
    queries = Plan([a["step"] for a in actions if "step" in a]).queries(conn)
    commands = [render_command(a["command"]) for a in actions if "command" in a]
    after = None
    if actions and not context.check_mode:
        before = counted_before(gathered)
        queries = execute(
            conn, Executor.from_options(conn, context.params), gathered, context.params, context.run_command
        )
        if server["version_num"] < 150000:
            wait_for_statistics(lambda oids: catalog.maintenance_counts(conn, oids), before)
        reread = catalog.read_tables(conn, [(t["table"]["schema"], t["table"]["name"]) for t in gathered["tables"]])
        after = {oid: e for t in reread if t["exists"] for oid, e in t["relations"].items()}
    return {
        "changed": bool(actions),
        "queries": queries,
        "commands": commands,
        "tables": report(conn, gathered, after),
        "bloat_method": gathered["bloat_method"],
        "repack": gathered["repack"],
        "disk": gathered["disk"],
    }


def validate_policies(params: dict[str, Any]) -> list[VacuumOptions]:
    """Check every ``policies`` entry's options before anything is read or changed (see ``validate_options``);
    an error names the table. Returns the options of each entry, in order."""
    checked = []
    table_runs.table_names(params["policies"], "policies")
    for entry in params["policies"]:
        try:
            checked.append(validate_options(dict(params, **entry)))
        except InvalidInput as error:
            raise InvalidInput("policies entry %s: %s" % (entry["name"], error.msg), **error.details) from None
    return checked


def run_policies(context: RunContext, conn: Connection, server: ServerFacts) -> dict[str, Any]:
    """``policies``: each table run as ``run`` does with its own policy, in order, on this connection (see
    ``table_runs.run_each``: the first failure stops the list), under its run lock taken just before it and released
    after it. Returns ``changed``, ``queries``, ``commands``, ``tables`` (every table's report) and ``results``."""

    def run_one(view, schema, name):
        names = [(schema, name)]
        runlock.hold(view, conn, names)
        for warning in inflight.stale_warnings(catalog.migrations_in_flight(conn, names)[0]):
            view.warn(warning)
        output = run(view, conn, server, names, validate_options(view.params))
        # after a failure the list stops and closing the connection releases the lock
        end_read(conn)
        runlock.release(conn, names)
        return output

    output = table_runs.run_each(context, context.params["policies"], run_one, "policies")
    output["commands"] = [c for r in output["results"] for c in r["commands"]]
    output["tables"] = [t for r in output["results"] for t in r["tables"]]
    return output
