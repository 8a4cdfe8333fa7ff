# Copyright: (c) 2026, SIGETI data platform team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The run of ``sigeti.dwh.partitioned_table``: facts, the plan of ``partitioning`` (pure), and its application.

A plain table (or one found half migrated) goes through ``migration`` first; then the declared partition set is
planned from the catalog and a few row counts, and applied by the executor (rendered in check mode).
"""

from __future__ import annotations

import datetime
from typing import TYPE_CHECKING, Any, Callable, Sequence, TypeVar

from ansible_collections.sigeti.dwh.plugins.module_utils.archive import retention_run as parquet_retention
from ansible_collections.sigeti.dwh.plugins.module_utils.catalog import migration as catalog_migration
from ansible_collections.sigeti.dwh.plugins.module_utils.catalog import partitions as catalog_partitions
from ansible_collections.sigeti.dwh.plugins.module_utils.catalog import tables as catalog
from ansible_collections.sigeti.dwh.plugins.module_utils.catalog import trials as server_checks
from ansible_collections.sigeti.dwh.plugins.module_utils.catalog.reads import end_read
from ansible_collections.sigeti.dwh.plugins.module_utils.core import periods
from ansible_collections.sigeti.dwh.plugins.module_utils.core.errors import DwhError, InvalidInput
from ansible_collections.sigeti.dwh.plugins.module_utils.core.identifiers import display_name
from ansible_collections.sigeti.dwh.plugins.module_utils.migration import api as migration
from ansible_collections.sigeti.dwh.plugins.module_utils.migration import undo_run
from ansible_collections.sigeti.dwh.plugins.module_utils.partitioning import indexes as partition_indexes
from ansible_collections.sigeti.dwh.plugins.module_utils.partitioning import planner as partitioning
from ansible_collections.sigeti.dwh.plugins.module_utils.partitioning import repartition_run
from ansible_collections.sigeti.dwh.plugins.module_utils.plan import tables as table_runs
from ansible_collections.sigeti.dwh.plugins.module_utils.plan.executor import Executor, describe_blockers
from ansible_collections.sigeti.dwh.plugins.module_utils.plan.retry import is_lock_error
from ansible_collections.sigeti.dwh.plugins.module_utils.rollup import planner as rollups
from ansible_collections.sigeti.dwh.plugins.module_utils.rollup import run as rollup_run
from ansible_collections.sigeti.dwh.plugins.module_utils.session import connection, runlock
from ansible_collections.sigeti.dwh.plugins.module_utils.tiering import planner as tiers
from ansible_collections.sigeti.dwh.plugins.module_utils.tiering import run as tier_run

if TYPE_CHECKING:  # names used in annotations only
    from ansible_collections.sigeti.dwh.plugins.module_utils.core.periods import Point
    from ansible_collections.sigeti.dwh.plugins.module_utils.plan.steps import Step, Target
    from ansible_collections.sigeti.dwh.plugins.module_utils.session.connection import Connection, ServerFacts
    from ansible_collections.sigeti.dwh.plugins.module_utils.session.context import RunContext

T = TypeVar("T")


def with_lock_retries(conn: Connection, context: RunContext, targets: Sequence[Target], read: Callable[[], T]) -> T:
    """Run a catalog read under the module's lock policy (counting the default partition's rows takes ACCESS SHARE
    on it; a session holding ACCESS EXCLUSIVE blocks that)."""
    return Executor.from_options(conn, context.params).read(read, targets)


def declared_state(
    params: dict[str, Any], schema: str, name: str, table: dict[str, Any], conn: Connection
) -> partitioning.Declared:
    """Validate every option against the table's facts; return a ``partitioning.Declared``."""
    shown = display_name(schema, name)
    key = params["key"]
    if params["premake"] < 0:
        raise InvalidInput(
            "premake=%d for %s is negative: give the number of periods created ahead (0 or more)"
            % (params["premake"], shown)
        )
    retention = partitioning.validate_retention(params.get("retention"), shown)
    if params.get("max_new_partitions") is not None and params["max_new_partitions"] < 1:
        raise InvalidInput(
            "max_new_partitions=%d for %s: give the largest number of partitions one run may create, 1 or more"
            % (params["max_new_partitions"], shown)
        )
    options = partitioning.validate_partition_options(params.get("partition_options"), shown)
    columns = None
    if table["exists"]:
        names = [c["name"] for c in table["columns"]]
        if key not in names:
            raise InvalidInput(
                "column %s does not exist in table %s (columns: %s); nothing was changed"
                % (key, shown, ", ".join(names))
            )
        if table["relkind"] == "p":
            stub = partitioning.Declared(schema, name, key, None)
            partitioning.check_partition_key(stub, table)
            column_type = table["partition_key"]["types"][0]
        else:  # a plain table: the source of a migration
            column_type = [c["type"] for c in table["columns"] if c["name"] == key][0]
    else:
        columns = partitioning.validate_columns(params.get("columns"), key, shown)
        resolved = catalog.resolve_types(conn, [c["type"] for c in columns])
        unknown = [c["type"] for c in columns if not resolved.get(c["type"])]
        if unknown:
            raise InvalidInput("type(s) %s given in columns for %s do not exist" % (", ".join(unknown), shown))
        column_type = resolved[[c["type"] for c in columns if c["name"] == key][0]]
        missing_pk = [c for c in params.get("primary_key") or [] if c not in [col["name"] for col in columns]]
        if missing_pk:
            raise InvalidInput(
                "primary_key column(s) %s are not among the columns of %s" % (", ".join(missing_pk), shown)
            )
        if params.get("primary_key") and key not in params["primary_key"]:
            raise InvalidInput(
                "primary_key of %s must include the partition key %s (PostgreSQL requires it)" % (shown, key)
            )
    key_format = periods.detect_format(params["key_format"], key, column_type, shown)
    scheme = periods.Scheme(key_format, params["interval"], column_type)
    start = scheme.parse_start(params["start"]) if params.get("start") not in (None, "") else None
    return partitioning.Declared(
        schema,
        name,
        key,
        scheme,
        start=start,
        premake=params["premake"],
        default_partition=params["default_partition"],
        retention=retention,
        partition_options=options,
        columns=columns,
        primary_key=params.get("primary_key"),
        max_new_partitions=params.get("max_new_partitions", partitioning.DEFAULT_MAX_NEW_PARTITIONS),
        tiers=tiers.validate_tiers(params.get("tiers"), shown),
        rollup=rollups.validate_rollup(params.get("rollup"), scheme, shown),
    )


def current_period(declared: partitioning.Declared, state: dict[str, Any]) -> Point:
    """The period holding today (the server's current_date; also for yyyymmdd/yyyymm keys).

    For integer keys there is no calendar: the period of the newest rows in a partition (``state["newest_key"]``,
    rows of the default partition and stray partitions left out), else the largest key of a plain table being
    migrated (``max_key``), else ``start``.
    """
    scheme = declared.scheme
    if scheme.format.calendar:
        return scheme.current(state["today"])
    for name in ("newest_key", "max_key"):
        if state.get(name) is not None:
            return scheme.align(int(state[name]))
    if declared.start is None:
        raise InvalidInput(
            "start is required for key_format integer while no partition of %s holds rows: give the first lower "
            "bound (the current period is the newest partition holding rows; rows of the default partition do "
            "not count, one stray key there must not move it)" % declared.display
        )
    return declared.start


# How long check mode waits for a lock on a table whose rows it reads: it must not queue behind (or in front
# of) other sessions; when the lock is held it reports estimates instead.
CHECK_MODE_LOCK_WAIT = "10ms"


def read_rows(
    conn: Connection,
    context: RunContext,
    targets: Sequence[Target],
    read: Callable[[], T],
    estimate: Callable[[], T],
    warnings: list[str],
) -> T:
    """Read rows of ``targets`` (ACCESS SHARE). A real run waits like the executor (``with_lock_retries``); check
    mode waits at most CHECK_MODE_LOCK_WAIT and, when another session holds a conflicting lock, returns
    ``estimate()`` (catalog only, no lock) with a warning naming that session."""
    if not context.check_mode:
        return with_lock_retries(conn, context, targets, read)
    try:
        with connection.brief_lock_timeout(conn, CHECK_MODE_LOCK_WAIT):
            return read()
    except Exception as error:
        if not is_lock_error(error):
            raise
        end_read(conn)
    who = describe_blockers(Executor.from_options(conn, context.params).blockers(targets))
    warnings.append(
        "check mode did not wait for %s, locked by %s: row counts (default_rows, moved_rows, the current period of "
        "integer keys) are estimates from the statistics in pg_class; the real run reads them"
        % (", ".join(display_name(*t) for t in targets), who)
    )
    return estimate()


def integer_now(
    conn: Connection, context: RunContext, declared: partitioning.Declared, table: dict[str, Any], warnings: list[str]
) -> int | None:
    """The largest key of the newest partition holding rows, skipping stray partitions (see ``is_stray``).

    Rows of the default partition never count. Returns None when no partition holds rows.
    """
    order = partitioning.newest_first(table)
    names = [(p["schema"], p["name"]) for p in order]
    key = declared.key

    def exact():
        found = []
        first = 0
        while first < len(names):
            index, value = catalog.newest_key(conn, names[first:], key)
            if index is None:
                break
            found.append((order[first + index], value))
            first += index + 1
            if len(found) >= 2 and not partitioning.is_stray(declared, found[-2][0], found[-1][1]):
                break
        return found

    def estimated():
        # statistics only: a partition "holds rows" when pg_class says so, its largest key is taken as high - 1
        found = []
        for index in catalog.filled_by_statistics(conn, [p["oid"] for p in order]):
            if not isinstance(order[index]["high"], int):
                continue
            found.append((order[index], order[index]["high"] - 1))
            if len(found) >= 2 and not partitioning.is_stray(declared, found[-2][0], found[-1][1]):
                break
        return found

    found = read_rows(conn, context, names[:8], exact, estimated, warnings)
    if not found:
        return None
    chosen = 0
    while chosen + 1 < len(found) and partitioning.is_stray(declared, found[chosen][0], found[chosen + 1][1]):
        chosen += 1
    now = declared.scheme.align(int(found[chosen][1]))
    for part, _value in found[:chosen]:
        where = (part["schema"], part["name"])
        count, low, high = read_rows(
            conn,
            context,
            [where],
            lambda where=where, part=part: catalog.keys_beyond(conn, where, key, part["low"]),
            lambda: (0, None, None),
            warnings,
        )
        warnings.append(partitioning.stray_partition_warning(declared, part, count, low, high, now))
    return found[chosen][1]


def bound_aliases(
    conn: Connection, declared: partitioning.Declared, table: dict[str, Any]
) -> dict[datetime.datetime, datetime.datetime]:
    """For timestamptz keys: the bounds the server moved out of a DST gap, mapped to the midnight the module wrote
    (only bounds that are not midnight on the wall clock are asked about; no table is read)."""
    if declared.scheme.key_format != "timestamptz":
        return {}
    odd = set()
    for part in partitioning.existing_partitions(table):
        for value in (part.get("low"), part.get("high")):
            if isinstance(value, datetime.datetime) and value.tzinfo is not None and value.time() != datetime.time(0):
                odd.add(value)
    return catalog.midnight_dates(conn, sorted(odd)) if odd else {}


def with_session_days(
    conn: Connection, declared: partitioning.Declared, table: dict[str, Any] | None, today: datetime.date
) -> partitioning.Declared:
    """For epoch keys: ``declared`` with its scheme given the session TimeZone's local midnights over the days its
    plan converts (``partitioning.days_span``; one read of no table). Other key formats: ``declared`` itself."""
    if not declared.scheme.format.zoned:
        return declared
    first, last = partitioning.days_span(declared, table, today)
    return declared.with_scheme(declared.scheme.with_days(catalog.time_zone_days(conn, first, last)))


def plan_partitions(
    conn: Connection, context: RunContext, declared: partitioning.Declared, table: dict[str, Any]
) -> tuple[partitioning.Result, dict[str, Any]]:
    """Read the few facts the plan needs beyond the table's, then build the plan (a ``partitioning.Result``)."""
    table = catalog.partition_set_details(conn, table)
    parent = (declared.schema, declared.name)
    default = None
    for part in partitioning.existing_partitions(table):
        if part["is_default"]:
            default = (part["schema"], part["name"])
    schemas = [declared.schema] + (
        [declared.retention["archive_schema"]]
        if declared.retention and declared.retention.get("archive_schema")
        else []
    )
    warnings = []
    state = read_rows(
        conn,
        context,
        [parent] + ([default] if default else []),
        lambda: catalog.partition_set_state(conn, schemas, default=default),
        lambda: catalog.partition_set_state(conn, schemas, default=default, estimate=True),
        warnings,
    )
    declared = with_session_days(conn, declared, table, state["today"])
    scheme = declared.scheme
    if not scheme.format.calendar and table["exists"]:
        state["newest_key"] = integer_now(conn, context, declared, table, warnings)
    lay = partitioning.layout(
        declared,
        table,
        current_period(declared, state),
        aliases=bound_aliases(conn, declared, table),
        session_tz=state.get("timezone"),
    )
    lay.warnings[:0] = warnings
    extras = {
        "default_rows": state["default_rows"],
        "schemas": state["schemas"],
        "default_counts": {},
        "existing_names": set(),
        "index_tails": {},
    }
    if default and state["default_rows"] and lay.periods:
        beyond = read_rows(
            conn,
            context,
            [default],
            lambda: catalog.keys_beyond(
                conn, default, declared.key, partitioning.bound_sql(scheme, partitioning.beyond_bound(lay, declared))
            ),
            lambda: (0, None, None),
            lay.warnings,
        )
        if beyond[0]:
            lay.warnings.append(partitioning.stray_default_warning(declared, lay, *beyond))
    names = partitioning.candidate_names(declared, lay)
    if names:
        ranges = [
            (partitioning.bound_sql(scheme, p), partitioning.bound_sql(scheme, scheme.step(p))) for p in lay.missing
        ]
        taken, counts = read_rows(
            conn,
            context,
            [default] if default else [],
            lambda: catalog.partition_set_pending(conn, names, default=default, key=declared.key, ranges=ranges),
            lambda: catalog.partition_set_pending(conn, names, ranges=ranges),
            lay.warnings,
        )
        extras["existing_names"] = taken
        extras["default_counts"] = dict(zip(lay.missing, counts))
    catalog_extras(conn, declared, table, lay, default, extras)
    result = partitioning.build_plan(declared, table, lay, extras)
    parquet_retention.prepare_exports(conn, declared, result)
    parquet_retention.finish_detached(conn, declared, result)
    return result, state


def catalog_extras(
    conn: Connection,
    declared: partitioning.Declared,
    table: dict[str, Any],
    lay: partitioning.Layout,
    default: Target | None,
    extras: dict[str, Any],
) -> None:
    """Add to ``extras`` (in place) what the plan needs from the catalog only (no table is read): the index
    definitions partitions lack, the dependents of retired partitions, the tables the foreign keys reference."""
    lacking = partition_indexes.lacking_indexes(table, lay)
    if lacking:
        extras["index_tails"] = catalog.index_tails(conn, lacking)
        extras["index_names_taken"] = catalog.relations_named(conn, partition_indexes.planned_index_names(table, lay))
    if declared.retention and declared.retention["action"] in ("drop", "parquet") and lay.retired:
        extras["dependents"] = catalog.dependent_objects(conn, [p["oid"] for p in lay.retired])
    if default and lay.missing:
        # a new partition beside the default takes the tables its foreign keys reference first (deadlock-safe order)
        # (those this role may lock: LOCK TABLE needs more than the REFERENCES a foreign key needs)
        referenced = catalog_partitions.referenced_tables(conn, table["oid"])
        extras["referenced"] = [(schema, name) for schema, name, lockable in referenced if lockable]
        extras["referenced_unlockable"] = [(schema, name) for schema, name, lockable in referenced if not lockable]


def facts_moved(error: BaseException) -> bool:
    """True when the server refused a step because the table changed after it was read: a row of a new period
    arrived in the default partition (23514), a detach became pending (a cancelled DETACH ... CONCURRENTLY)."""
    code = getattr(error, "pgcode", None)
    return code == "23514" or (code == "55000" and "pending detach" in str(error))


def leftovers(conn: Connection, before: dict[str, Any]) -> tuple[list[str], list[str]]:
    """What a failed autocommit statement left that was not there before: partitions now pending detach and
    INVALID indexes (a cancelled DETACH ... CONCURRENTLY, CREATE INDEX CONCURRENTLY or REINDEX CONCURRENTLY)."""
    after = catalog.partition_set_details(conn, catalog.read_partition_set(conn, before["schema"], before["name"]))

    def marks(table):
        pending = {p["name"] for p in table.get("partitions") or [] if p.get("detach_pending")}
        invalid = {
            i["name"]
            for p in table.get("partitions") or []
            for i in p.get("indexes") or []
            if not i.get("is_valid", True)
        }
        return pending, invalid

    (pending_before, invalid_before), (pending_after, invalid_after) = marks(before), marks(after)
    return sorted(pending_after - pending_before), sorted(invalid_after - invalid_before)


def apply_partitions(
    conn: Connection,
    context: RunContext,
    declared: partitioning.Declared,
    table: dict[str, Any],
    result: partitioning.Result,
) -> tuple[partitioning.Result, list[str]]:
    """Run the plan. When a step is refused because the table moved under it (``facts_moved``), read the facts
    again and run the new plan, up to twice. Returns ``(result, executed)`` with the result's lists and
    ``moved_rows`` replaced by what the steps did. On failure raises a DwhError saying what was committed
    before it, with ``changed`` true when anything was.
    """
    completed, executed, attempts = [], [], 3
    before = catalog.partition_set_details(conn, table)
    failed_autocommit = False
    for attempt in range(1, attempts + 1):
        executor = Executor.from_options(conn, context.params)
        try:
            executor.run(result.plan)
        except Exception as error:
            completed.extend(executor.completed)
            executed.extend(executor.executed)
            failed_autocommit = failed_autocommit or bool(executor.failed and not executor.failed[0].transactional)
            if attempt < attempts and facts_moved(error):
                table = catalog.read_partition_set(conn, declared.schema, declared.name)
                result, _state = plan_partitions(conn, context, declared, table)
                continue
            raise run_failure(
                conn, declared.display, error, result, completed, executed, before if failed_autocommit else None
            )
        completed.extend(executor.completed)
        executed.extend(executor.executed)
        result.record(completed)
        return result, executed


def run_failure(
    conn: Connection,
    shown: str,
    error: BaseException,
    result: partitioning.Result,
    completed: list[Step],
    executed: list[str],
    before: dict[str, Any] | None,
) -> DwhError:
    """A DwhError for a run that stopped part way: the cause in words, what had committed, ``changed``."""
    pending, invalid = leftovers(conn, before) if before is not None else ([], [])
    result.record(completed)
    details = dict(getattr(error, "details", None) or {})
    if isinstance(error, DwhError):
        msg = error.msg
        cause = (
            partitioning.deadlock_cause(shown, result.referenced, result.unlockable)
            if details.get("sqlstate") == "40P01"
            else ""
        )
        if cause:
            head, what, todo = msg.partition(" What to do: ")
            msg = "%s %s%s%s" % (head, cause, what, todo)
    elif getattr(error, "pgcode", None) == "23514":
        msg = (
            "rows of a period being created kept arriving in the default partition of %s through every retry "
            "(the server said: %s); run again" % (shown, str(error).strip().splitlines()[0])
        )
    elif getattr(error, "pgcode", None) == "23505":
        msg = (
            "a unique index of %s cannot be built on a partition that holds duplicate keys (the server said: %s). "
            "Remove the duplicates, then run again." % (shown, " ".join(str(error).strip().split()))
        )
        details.setdefault("sqlstate", "23505")
    else:
        msg = "PostgreSQL error %s: %s" % (getattr(error, "pgcode", "") or "", str(error).strip())
        details.setdefault("sqlstate", getattr(error, "pgcode", None))
    done = [
        "%s: %s" % (label, ", ".join(names))
        for label, names in (
            ("created", result.created),
            ("detached", result.detached),
            ("dropped", result.dropped),
            ("archived", result.archived),
        )
        if names
    ]
    if result.moved_rows:
        done.append("moved %d rows out of the default partition" % result.moved_rows)
    others = [step for step in completed if step.effect is None]
    if others and done:
        done.append("%d other statement(s)" % len(others))
    if pending:
        done.append(
            "left %s pending detach (hidden from queries on the parent until the next run finishes the detach)"
            % ", ".join(pending)
        )
    if invalid:
        done.append("left the INVALID index(es) %s (the next run drops and rebuilds them)" % ", ".join(invalid))
    changed = bool(completed) or bool(pending) or bool(invalid)
    if changed:
        msg += " Committed before this failure (changed): %s." % (
            "; ".join(done) or "%d statement(s), the last: %s" % (len(executed), executed[-1] if executed else "")
        )
    details.update(
        changed=changed,
        queries=executed,
        created=result.created,
        detached=result.detached,
        dropped=result.dropped,
        archived=result.archived,
        finished_detaches=result.finished_detaches,
        moved_rows=result.moved_rows,
    )
    return DwhError(msg, **details)


def check_partition_options(conn: Connection, declared: partitioning.Declared) -> None:
    """Refuse storage parameters the server would refuse (unknown name, value out of range) before any change."""
    if not declared.partition_options:
        return
    refused = server_checks.storage_parameters_error(conn, partitioning.with_clause(declared.partition_options))
    if refused:
        raise InvalidInput(
            "partition_options %s for %s are refused by the server: %s. Fix the name or value; nothing was changed."
            % (
                ", ".join("%s=%s" % item for item in sorted(declared.partition_options.items())),
                declared.display,
                refused,
            )
        )


def migration_options(params: dict[str, Any], key: str) -> dict[str, Any]:
    """The options ``migration`` takes, from the module's."""
    return {
        "mode": params["migrate"],
        "key": key,
        "batch_rows": params["batch_rows"],
        "extend_primary_key": params["extend_primary_key"],
        "drop_source": params["drop_source"],
    }


def abandon_migration(conn: Connection, context: RunContext, table: dict[str, Any]) -> dict[str, Any]:
    """``migrate: abandon``: drop what an unfinished migration left (or list it in check mode)."""
    if context.check_mode:
        steps, concurrent = migration.plan_abandon(conn, table)
        return {
            "check_mode": True,
            "plan": {"abandoned": [s.reason for s in steps + concurrent]},
            "queries": [s.render(conn) for s in steps + concurrent],
            "changed": bool(steps or concurrent),
        }
    removed, queries = migration.abandon_migration(conn, Executor.from_options(conn, context.params), table)
    return {"abandoned": removed, "queries": queries, "changed": bool(removed)}


def migrate_plain_table(
    conn: Connection, context: RunContext, schema: str, name: str, server: ServerFacts
) -> dict[str, Any] | None:
    """Turn a plain table into the declared partition set (or finish a migration found half done).

    Returns None when there is nothing to migrate, else the migration's result (its plan in check mode).
    """
    state = migration.read_state(conn, schema, name)
    table = catalog.read_table(conn, schema, name)
    params = context.params
    if params["migrate"] == "abandon":
        return abandon_migration(conn, context, table)
    if table["relkind"] == "p" and not state:
        return None
    options = migration_options(params, params["key"])
    if table["relkind"] == "p":  # the swap committed before a crash: finish what follows it
        return migration.run_migration(conn, Executor.from_options(conn, context.params), table, [], options, server)
    if params["migrate"] == "never":
        pending = migration.describe_leftovers(conn, table)
        if pending:
            raise InvalidInput(
                "table %s is not partitioned and migrate is 'never', but %s. Run with migrate: abandon to remove "
                "it (the original keeps its rows) or with its mode to resume it; nothing was changed"
                % (display_name(schema, name), pending)
            )
        raise InvalidInput(
            "table %s is not partitioned and migrate is 'never': set migrate to online, offline or attach "
            "to turn it into partitions; nothing was changed" % display_name(schema, name)
        )
    declared = declared_state(params, schema, name, table, conn)
    state = with_lock_retries(
        conn,
        context,
        [(schema, name)],
        lambda: catalog.partition_set_state(
            conn, [schema], parent=(schema, name), key=declared.key if declared.scheme.format.numeric else None
        ),
    )
    periods.check_epoch_keys(
        declared.scheme.key_format,
        [state["min_key"], state["max_key"]],
        declared.display,
        "its smallest and largest keys",
    )
    declared = with_session_days(conn, declared, None, state["today"])
    layout = partitioning.migration_layout(declared, current_period(declared, state))
    partitioning.check_migration_layout(declared, layout)
    facts = migration.read_facts(conn, table, layout, options, server)
    planned = migration.plan_migration(table, layout, options, server, facts=facts)
    if context.check_mode:
        rendered = migration.render_plan(conn, planned)
        if rendered["kept_original"]:
            rendered["kept_original"]["bytes"] = catalog_migration.relation_bytes(conn, schema, name)
        return {"check_mode": True, "plan": rendered, "queries": migration.plan_queries(conn, planned)}
    return migration.run_migration(
        conn,
        Executor.from_options(conn, context.params),
        table,
        layout,
        options,
        server,
        facts=facts,
        side_connect=lambda: connection.connect_again(context.params, "/side"),
    )


def _migration_only_result(migrated):
    # check mode of a migration (the partitions it would leave and create, as its plan predicts them; the maintenance
    # that follows it in a real run plans from the partitioned table, not there yet), or an abandon
    plan = migrated.get("plan") or {}
    return dict(
        changed=migrated.get("changed", True),
        queries=migrated["queries"],
        migration=plan or {"abandoned": migrated.get("abandoned", [])},
        partitions=list(plan.get("partitions") or []),
        created=list(plan.get("created") or []),
        detached=[],
        dropped=[],
        archived=[],
        archive_files=[],
        default_rows=None,
        moved_rows=0,
        finished_detaches=[],
        retention_remaining=0,
        bound=None,
    )


def _merged(first: list[str], then: list[str]) -> list[str]:
    """``first`` then the names of ``then`` not in it."""
    return list(first) + [n for n in then if n not in first]


def run(context: RunContext, conn: Connection, server: ServerFacts, schema: str, name: str) -> dict[str, Any]:
    """The whole run of ``sigeti.dwh.partitioned_table`` once connected and holding the table's run lock.

    Finishes or starts a migration when the table is plain (or half migrated), then plans the partition set from
    the facts and applies it (renders it in check mode). Returns the module result; warnings go to ``context.warn``.
    ``state: plain`` turns a partition set back into a plain table instead (``migration.undo_run``).
    """
    if context.params.get("state") == "plain":
        return undo_run.run_undo(context, conn, schema, name)
    table = with_lock_retries(conn, context, [(schema, name)], lambda: catalog.read_partition_set(conn, schema, name))
    context = repartition_run.forward_context(context)
    rebuilt = rebuild_first(conn, context, schema, name, table)
    if rebuilt is not None:
        if context.check_mode:
            return rebuilt
        table = catalog.read_partition_set(conn, schema, name)
    migrated = None
    abandon = context.params["migrate"] == "abandon" and table["exists"]
    if table["exists"] and (abandon or table["relkind"] == "r" or migration.read_state(conn, schema, name)):
        migrated = migrate_plain_table(conn, context, schema, name, server)
        if migrated and (migrated.get("check_mode") or abandon):
            return _migration_only_result(migrated)
        table = catalog.read_partition_set(conn, schema, name)
    declared = declared_state(context.params, schema, name, table, conn)
    check_partition_options(conn, declared)
    result, _state = plan_partitions(conn, context, declared, table)
    # the refusals of the roll-up and the tiers: before any change
    rolled = rollup_run.prepare(conn, context, declared, table, result)
    merging = frozenset(p.name for m in (rolled.plan.merges if rolled else ()) for p in m.period.sources)
    tiered = tier_run.prepare(conn, context, server, declared, table, result, merging)
    queries = (migrated or {}).get("queries", []) + result.plan.queries(conn)
    explained = (
        result.plan.explain(conn) + (rolled.explain(conn) if rolled else []) + (tiered.explain(conn) if tiered else [])
    )
    changed = bool(result.plan) or bool(tiered) or bool(rolled)
    if result.plan and not context.check_mode:
        try:
            result, executed = apply_partitions(conn, context, declared, table, result)
        except DwhError as failure:
            if migrated:  # the migration committed before the partition maintenance failed
                failure.details["changed"] = True
            raise
        queries = (migrated or {}).get("queries", []) + executed
    rollup_run.apply(conn, context, rolled, bool(result.plan) or bool(migrated))
    queries += (rolled.queries(conn) if context.check_mode else rolled.executed) if rolled else []
    tier_run.apply(conn, context, tiered, bool(result.plan) or bool(migrated) or bool(rolled))
    queries += (tiered.queries(conn) if context.check_mode else tiered.executed) if tiered else []
    has_default = any(p["default"] for p in result.partitions)
    output = dict(
        changed=changed or bool(migrated),
        queries=queries,
        plan=explained,
        partitions=rollup_run.partitions_after(result.partitions, rolled, context.check_mode),
        # the migration's partitions first (a run finishing one an earlier run swapped reports them too)
        created=_merged((migrated or {}).get("created") or [], result.created),
        detached=result.detached,
        dropped=result.dropped,
        archived=result.archived,
        archive_files=parquet_retention.archive_files_of(result),
        default_rows=result.default_rows_after if has_default else None,
        moved_rows=result.moved_rows,
        finished_detaches=result.finished_detaches,
        retention_remaining=result.retention_remaining,
        bound=result.bound,
    )
    output = completed_output(context, output, result, migrated, tiered, rolled)
    return repartition_run.with_way_back(output, rebuilt)


def completed_output(
    context: RunContext,
    output: dict[str, Any],
    result: partitioning.Result,
    migrated: dict[str, Any] | None,
    tiered: Any,
    rolled: Any,
) -> dict[str, Any]:
    """The run's result with what the migration, the tiers and the roll-up did, the diff, and the warnings shown."""
    if migrated:
        output["migration"] = {k: v for k, v in migrated.items() if k != "queries"}
    if tiered is not None:
        output["tiers"] = tiered.result(context.check_mode)
    if rolled is not None:
        output["rollup"] = rolled.result(context.check_mode)
    if context.diff:
        moves = tiers.diff_lines(tiered.plan.moves if tiered else ())
        merges = rollups.diff_lines(rolled.plan.merges if rolled else ())
        output["diff"] = {
            # the merged partitions in the list after, and a line each saying what it merged
            "before": partitioning.diff_text(result.before) + moves[0],
            "after": partitioning.diff_text(output["partitions"])
            + merges[1]
            + moves[1]
            + parquet_retention.diff_lines(result),
        }
    for warning in result.warnings + list((migrated or {}).get("warnings") or []):
        context.warn(warning)
    return output


def rebuild_first(
    conn: Connection, context: RunContext, schema: str, name: str, table: dict[str, Any]
) -> dict[str, Any] | None:
    """With ``repartition``, a set of another interval than declared turned back into a plain table first (the
    forward migration then rebuilds it); its result, or None when there is nothing to rebuild."""
    if context.params.get("repartition") not in repartition_run.MODES or not table["exists"]:
        return None
    if table["relkind"] != "p":
        return None
    declared = declared_state(context.params, schema, name, table, conn)
    return repartition_run.undo_first(context, conn, declared, table)


def run_tables(context: RunContext, conn: Connection, server: ServerFacts) -> dict[str, Any]:
    """``tables``: each entry run as ``run`` does for one table, in order, on this connection (see
    ``table_runs.run_each``: the first failure stops the list). Each table's run lock is taken just before its run
    and released after it, so a list never waits on another run while holding a table that run needs."""

    def run_one(view, schema, name):
        runlock.hold(view, conn, [(schema, name)])
        output = run(view, conn, server, schema, name)
        # after a failure the list stops and closing the connection releases the lock
        end_read(conn)
        runlock.release(conn, [(schema, name)])
        return output

    output = table_runs.run_each(context, context.params["tables"], run_one, "tables")
    if context.diff:
        output["diff"] = {
            # a migration planned in check mode has no partition list yet: no diff for that table
            side: "".join("# %s\n%s" % (r["name"], r["diff"][side]) for r in output["results"] if "diff" in r)
            for side in ("before", "after")
        }
    return output
