# Copyright: (c) 2026, SIGETI data platform team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The tiers of ``sigeti.dwh.partitioned_table``: their facts, the moves of ``tiering.planner`` (pure), their run.

``prepare`` runs before the partition plan is applied (its refusals come before any change); ``apply`` runs after
it: each move is one transaction through the executor (lock_timeout, retries, the blocker named when it gives up),
its lock window measured from the moment ``LOCK TABLE`` returned to the commit. A move by pg_repack runs as a
program through the module's ``run_command`` under the same retry policy (the password travels in PGPASSWORD).
"""

from __future__ import annotations

import dataclasses
import time
from typing import TYPE_CHECKING, Any

from ansible_collections.sigeti.dwh.plugins.module_utils.catalog import tables as catalog
from ansible_collections.sigeti.dwh.plugins.module_utils.catalog import tablespaces as catalog_spaces
from ansible_collections.sigeti.dwh.plugins.module_utils.core.errors import DwhError, InvalidInput
from ansible_collections.sigeti.dwh.plugins.module_utils.core.identifiers import display_name
from ansible_collections.sigeti.dwh.plugins.module_utils.partitioning.layout import existing_partitions
from ansible_collections.sigeti.dwh.plugins.module_utils.plan.executor import Executor, describe_blockers
from ansible_collections.sigeti.dwh.plugins.module_utils.plan.retry import is_lock_error
from ansible_collections.sigeti.dwh.plugins.module_utils.plan.steps import Plan
from ansible_collections.sigeti.dwh.plugins.module_utils.session.connection import connection_kwargs
from ansible_collections.sigeti.dwh.plugins.module_utils.tiering import planner as tiers
from ansible_collections.sigeti.dwh.plugins.module_utils.vacuum.repack import (
    render_command,
    repack_argv,
    repack_availability,
    repack_env,
)
from ansible_collections.sigeti.dwh.plugins.module_utils.vacuum.run import (
    filesystem_free,
    find_pg_repack,
    lock_ms_from,
    run_repack,
)

if TYPE_CHECKING:  # names used in annotations only
    from ansible_collections.sigeti.dwh.plugins.module_utils.partitioning.layout import Declared
    from ansible_collections.sigeti.dwh.plugins.module_utils.session.connection import Connection, ServerFacts
    from ansible_collections.sigeti.dwh.plugins.module_utils.session.context import RunContext

# How long check mode waits for the lock the size read takes (as the partition plan's row counts do).
CHECK_MODE_LOCK_WAIT = "10ms"


@dataclasses.dataclass
class TierWork:
    """This run's moves (``plan``), pg_repack's command lines by partition, and what ran."""

    plan: tiers.TierPlan
    commands: dict[str, list[str]] = dataclasses.field(default_factory=dict)
    moved: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    executed: list[str] = dataclasses.field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.plan)

    def queries(self, conn: Connection) -> list[str]:
        """The statements (and pg_repack command lines) of the moves, as check mode shows them."""
        out = []
        for move in self.plan.moves:
            if move.name in self.commands:
                out.append(render_command(self.commands[move.name]))
            out.extend(step.render(conn) for step in move.steps)
        return out

    def explain(self, conn: Connection) -> list[dict[str, Any]]:
        """Each move's statements with their reason and lock, for the ``plan`` result."""
        out = []
        for move in self.plan.moves:
            if move.name in self.commands:
                out.append(
                    {
                        "sql": render_command(self.commands[move.name]),
                        "reason": "%s belongs in tier %s: pg_repack moves it and its indexes online (ACCESS "
                        "EXCLUSIVE only at its start and end)" % (move.name, move.tablespace),
                        "lock": None,
                    }
                )
            out.extend(step.describe(conn) for step in move.steps)
        return out

    def result(self, check_mode: bool) -> dict[str, Any]:
        """The ``tiers`` result: the moves done (in check mode, planned) and how many wait for the next runs."""
        moved = self.moved if not check_mode else [dict(m.report(), lock_seconds=None) for m in self.plan.moves]
        return {"moved": moved, "remaining": self.plan.remaining}


def _places(conn: Connection, parts: list[dict[str, Any]]) -> list[tiers.PartitionPlace]:
    placed = catalog_spaces.placements(conn, [p["oid"] for p in parts])
    out = []
    for part in parts:
        row = placed.get(part["oid"])
        if row is None:
            continue
        indexes = tuple(tiers.Placed(i["schema"], i["name"], i["tablespace"]) for i in row["indexes"] or [])
        out.append(
            tiers.PartitionPlace(
                part["schema"],
                part["name"],
                part.get("high"),
                row["tablespace"],
                int(row["estimated_bytes"] or 0),
                indexes,
                oid=part["oid"],
            )
        )
    return out


def _exact_sizes(conn: Connection, context: RunContext, places: list[tiers.PartitionPlace]) -> dict[int, int]:
    """Sizes of the partitions to move (ACCESS SHARE on each): a real run waits like the executor; check mode waits
    at most CHECK_MODE_LOCK_WAIT and keeps the catalog's estimates, with a warning, when one is locked."""
    oids = [p.oid for p in places]
    targets = [(p.schema, p.name) for p in places]
    if not context.check_mode:
        return Executor.from_options(conn, context.params).read(lambda: catalog_spaces.total_bytes(conn, oids), targets)
    try:
        return catalog_spaces.total_bytes(conn, oids, lock_wait=CHECK_MODE_LOCK_WAIT)
    except Exception as error:
        if not is_lock_error(error):
            raise
    who = describe_blockers(Executor.from_options(conn, context.params).blockers(targets))
    context.warn(
        "check mode did not wait for %s, locked by %s: tiers.moved bytes are estimates from pg_class; the real run "
        "measures them" % (", ".join(display_name(*t) for t in targets), who)
    )
    return {}


def _repack(conn: Connection, context: RunContext, server: ServerFacts) -> str | None:
    """The pg_repack program to move with, when the extension is in the database and a matching program here."""
    extension = catalog.extensions_info(conn, ["pg_repack"]).get("pg_repack")
    if not extension:
        return None
    binary, version = (None, None)
    if context.run_command is not None:
        binary, version = find_pg_repack(
            context.params.get("pg_repack_path"), server["version_num"], context.run_command
        )
    ok, why = repack_availability(extension, binary, version, server["superuser"], server["version_num"])
    if not ok:
        context.warn(
            "tiers: the pg_repack extension is installed but %s: partitions move by ALTER TABLE (ACCESS "
            "EXCLUSIVE on each for its whole copy)" % why
        )
        return None
    return binary


def _spaces(
    conn: Connection, context: RunContext, server: ServerFacts, names: list[str], owner: str
) -> list[tiers.TablespaceFacts]:
    """The tablespaces ``names`` as the catalog and this host see them (free room only where statvfs reaches)."""
    settings = server.get("settings") or {}
    data_directory = settings.get("data_directory")
    out = []
    for row in catalog_spaces.tablespaces(conn, names, owner):
        free, note = None, ""
        if row["exists"]:
            location = row["location"] or data_directory
            visible, free_bytes, note = filesystem_free(location, data_directory, context.params.get("login_port"))
            free = free_bytes if visible else None
        out.append(
            tiers.TablespaceFacts(
                row["name"],
                row["exists"],
                row["database_default"],
                row["owner_can_create"],
                row["user_can_create"],
                free,
                note,
            )
        )
    return out


def prepare(
    conn: Connection,
    context: RunContext,
    server: ServerFacts,
    declared: Declared,
    table: dict[str, Any],
    result: Any,
    merging: frozenset[str] = frozenset(),
) -> TierWork | None:
    """Read where the partitions are, plan this run's moves and refuse, before any change, what cannot be done.

    Partitions the partition plan retires this run are left out, and so are those the roll-up merges this run
    (``merging``: the merged partition is built where the newest of them is); new ones are created in their tier by
    that plan. Returns None without ``tiers``."""
    if not declared.tiers:
        return None
    retiring = set(result.detached) | set(merging)
    parts = [
        p
        for p in existing_partitions(table)
        if not p["is_default"] and p["relkind"] == "r" and p["name"] not in retiring
    ]
    places = _places(conn, parts)
    limit = tiers.validate_max_moves(context.params.get("tiers_max_per_run"), declared.display)
    plan = tiers.plan_moves(declared.tiers, result.scheme, result.current, places, limit, table=declared.display)
    repack = _repack(conn, context, server) if plan else None
    if plan:
        moving = {m.name for m in plan.moves}
        chosen = [p for p in places if p.name in moving]
        sizes = _exact_sizes(conn, context, chosen)
        keys = catalog.row_identities(conn, [p.oid for p in chosen]) if repack else {}
        places = [
            dataclasses.replace(p, bytes=sizes.get(p.oid, p.bytes), has_row_key=p.oid in keys)
            if p.name in moving
            else p
            for p in places
        ]
        plan = tiers.plan_moves(
            declared.tiers, result.scheme, result.current, places, limit, bool(repack), declared.display
        )
    owner, user = catalog_spaces.table_owner(conn, declared.schema, declared.name)
    owner = owner or user  # a table this run creates (``columns``) belongs to the connecting role
    spaces = _spaces(conn, context, server, sorted({t.tablespace for t in declared.tiers}), owner)
    errors = tiers.refusals(declared.tiers, spaces, plan.moves, declared.display, owner, user)
    if errors:
        raise InvalidInput(" ".join(errors) + ". Nothing was changed.")
    for warning in plan.warnings:
        context.warn(warning)
    work = TierWork(plan)
    for move in plan.moves:
        if move.method == "pg_repack":
            argv = repack_argv(
                repack, connection_kwargs(context.params), move.schema, move.name, lock_ms_from(context.params)
            )
            work.commands[move.name] = argv + ["--tablespace=%s" % move.tablespace, "--moveidx"]
    return work


def _move_alter(conn: Connection, context: RunContext, move: tiers.Move, work: TierWork) -> float:
    """Run one move's transaction; return how long the partition was locked (LOCK TABLE returned -> commit)."""
    steps = list(move.steps)
    marks: dict[str, float] = {}

    def locked() -> None:
        marks["locked"] = time.monotonic()

    steps[1].before = locked
    executor = Executor.from_options(conn, context.params)
    try:
        executor.run(Plan(steps))
    finally:
        work.executed.extend(executor.executed)
    return round(time.monotonic() - marks["locked"], 3)


def _move_repack(conn: Connection, context: RunContext, move: tiers.Move, work: TierWork) -> None:
    argv = work.commands[move.name]
    executor = Executor.from_options(conn, context.params)
    run_repack(
        argv,
        repack_env(connection_kwargs(context.params)),
        executor.retries,
        executor.retry_delay,
        executor.blockers,
        [(move.schema, move.name)],
        context.run_command,
    )
    work.executed.append(render_command(argv))


def apply(conn: Connection, context: RunContext, work: TierWork | None, committed: bool) -> None:
    """Run the moves, oldest first; fill ``work.moved``. A move that fails (a lock kept through every retry) stops
    the run: the DwhError names the blocker, the partition stays where it was (its transaction rolled back), the
    moves before it stay done and ``changed`` is true when anything (``committed``: the partition plan) committed."""
    if not work or context.check_mode:
        return
    for move in work.plan.moves:
        try:
            if move.method == "pg_repack":
                _move_repack(conn, context, move, work)
                seconds = None
            else:
                seconds = _move_alter(conn, context, move, work)
        except Exception as error:  # a lock kept through every retry, a refused statement, pg_repack failing
            if isinstance(error, DwhError):
                msg, details = error.msg, dict(error.details)
            else:
                msg = "PostgreSQL error %s: %s" % (getattr(error, "pgcode", "") or "", str(error).strip())
                details = {"sqlstate": getattr(error, "pgcode", None)}
            raise _failure(details, msg, move, work, committed) from None
        work.moved.append(dict(move.report(), lock_seconds=seconds))


def _failure(details: dict[str, Any], msg: str, move: tiers.Move, work: TierWork, committed: bool) -> DwhError:
    done = ", ".join("%s to %s" % (m["partition"], m["tablespace"]) for m in work.moved)
    text = "tiers: moving %s to tablespace %s failed, it stays in %s: %s%s A next run moves what is left." % (
        move.name,
        move.tablespace,
        move.source,
        msg,
        (" Moved before it (changed): %s." % done) if done else "",
    )
    details.update(changed=committed or bool(work.moved), tiers={"moved": work.moved, "failed": move.name})
    return DwhError(text, **details)
