#!/usr/bin/python
# Copyright: (c) 2026, SIGETI data platform team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: partitioned_table
short_description: Keep a RANGE-partitioned table's set of partitions exactly as declared
version_added: 0.1.0
description:
  - Declares the partitions of a table partitioned by RANGE on one date, timestamp, timestamptz or integer key
    (integer keys holding dates as C(YYYYMMDD) or months as C(YYYYMM) included), by calendar interval, and keeps
    them so on every run. Periods from O(start) to O(premake) periods after the current one exist; a default
    partition exists when O(default_partition); periods older than O(retention.keep) are detached, dropped or
    archived.
  - Partitions are created the weak-lock way, C(CREATE TABLE ... (LIKE parent)) then C(ATTACH PARTITION), which
    takes SHARE UPDATE EXCLUSIVE on the parent, not the ACCESS EXCLUSIVE of C(CREATE TABLE ... PARTITION OF).
  - Rows of a new period sitting in the default partition are moved into the new partition in the same
    transaction (PostgreSQL refuses the new partition otherwise).
  - Existing partitions with the right bounds are adopted whatever their names. Indexes of the parent missing on
    a partition are built (concurrently) and attached; an INVALID index (a cancelled concurrent build) counts as
    missing, is dropped and built again, never attached. Names longer than 63 bytes end with a short hash, so each
    partition gets its own. O(partition_options) are applied to every leaf.
  - With a default partition, writers are held at the parent and rows moved for every new period, so rows arriving
    during the run cannot make the ATTACH fail. A partition left pending detach by an interrupted
    C(DETACH ... CONCURRENTLY) is finished with C(DETACH ... FINALIZE) before retention goes on.
  - A run that fails after committing something reports C(changed=true) and what was done.
  - A second run with the same arguments changes nothing and runs no DDL. Check mode only reads the catalog.
  - When O(name) is an existing plain (not partitioned) table, O(migrate) decides how it becomes partitioned,
    online (copy beside it in batches, capture and replay concurrent changes, verify counts and checksums,
    swap names in one short transaction), offline, attach (zero copy) or never. The swap carries keys, indexes,
    sequences, grants, comments, triggers, policies, views and materialized views; a killed run resumes.
author:
  - SIGETI data platform team (@sigeti)
extends_documentation_fragment:
  - sigeti.dwh.connection
options:
  name:
    description: The partitioned table, as C(schema.table). Quote mixed-case parts (C('"Ventes"."Fait"')).
    type: str
    required: true
  key:
    description: The partition key column.
    type: str
    required: true
  key_format:
    description:
      - How the key holds its values. V(auto) detects date, timestamp and timestamptz columns and refuses integer
        columns (set V(yyyymmdd), V(yyyymm) or V(integer) for them).
      - V(timestamptz) bounds are midnight in the session's C(TimeZone).
    type: str
    choices: [auto, date, timestamp, timestamptz, yyyymmdd, yyyymm, integer]
    default: auto
  interval:
    description:
      - V(year), V(quarter), V(month), V(week) (ISO weeks, Monday to Monday) or V(day); V(yyyymm) keys take
        year, quarter or month. For V(key_format=integer), a positive whole number, the width of each partition.
    type: str
    required: true
  start:
    description:
      - First lower bound of the set (C(2020-01-01), C(20200101), or a number for integer keys). It must be the
        start of a period; the error says what the aligned value would be. Defaults to the current period.
      - Older existing partitions are kept as they are (retention aside).
    type: str
  premake:
    description:
      - Periods created ahead of the current one.
      - The current period is the one holding the server's C(current_date) for calendar keys (V(yyyymmdd) and
        V(yyyymm) included). For V(key_format=integer) it is the period of the largest key of the newest partition
        holding rows; rows of the default partition never count, and a partition holding rows more than O(premake)
        periods beyond the next partition holding rows is taken as stray keys (a warning names it, its row count
        and keys). Keys past the last partition that sit in the default partition are reported the same way and
        left alone.
    type: int
    default: 2
  max_new_partitions:
    description:
      - The most partitions one run may create (the default partition aside). A run that would create more fails
        before any change, naming the table, the count and the range; raise it when a long range is intended
        (a first run from an old O(start) with daily partitions).
    type: int
    default: 100
  default_partition:
    description:
      - Whether a default partition (C(<table>_default)) must exist. When false an existing one is kept, with a warning.
    type: bool
    default: true
  retention:
    description: Optional retention of old periods. Partitions only partly older than the cutoff are never touched.
    type: dict
    suboptions:
      keep:
        description: Periods kept behind the current one (0 keeps only the current one).
        type: int
        required: true
      action:
        description:
          - V(detach) keeps the table outside the set, V(drop) drops it, V(archive) moves it to O(retention.archive_schema).
          - Detaching uses C(DETACH PARTITION ... CONCURRENTLY) when the table has no default partition (PostgreSQL
            refuses it otherwise); else a plain DETACH under C(lock_timeout) with retries.
        type: str
        choices: [detach, drop, archive]
        default: detach
      archive_schema:
        description: Schema receiving archived partitions (created when absent).
        type: str
      max_per_run:
        description:
          - The most partitions one run detaches, drops or archives, oldest first. The others wait for the next
            runs; a warning and RV(retention_remaining) say how many.
        type: int
        default: 3
  partition_options:
    description:
      - Storage parameters applied to every leaf partition, new and existing (C(fillfactor), C(autovacuum_*),
        C(toast.autovacuum_*) ...). Only the declared ones are compared; others are left alone.
    type: dict
    default: {}
  columns:
    description:
      - Columns of the table, used only when it does not exist (the module then creates it partitioned by RANGE
        on O(key)). Each is C({name, type, not_null, default}) or a string C("name type").
    type: list
    elements: raw
  primary_key:
    description: Primary key columns of a table the module creates (must include O(key)).
    type: list
    elements: str
    default: []
  state:
    description: Only V(present) for now.
    type: str
    choices: [present]
    default: present
  skip_on_standby:
    description: On a standby (in recovery) return ok and unchanged instead of failing.
    type: bool
    default: false
  migrate:
    description:
      - What to do when O(name) is a plain table (see C(docs/migration.md)).
      - V(online) builds the partitioned table beside it, copies rows in batches without indexes, builds the
        indexes, captures and replays the changes writers make meanwhile, verifies row counts and content checksums
        per partition, then swaps names in one short transaction under O(lock_timeout) with retries.
      - V(offline) does the same in one transaction with writes blocked (maintenance windows).
      - V(attach) copies nothing; the table becomes one partition covering its key range (a CHECK constraint is
        validated first, online, so ATTACH does not scan it), partitions are created for the periods after it.
      - V(never) fails when the table is not partitioned yet (naming a half-done migration if there is one).
      - V(abandon) removes what an unfinished migration left (capture triggers, change log, shadow table and its
        partitions, the attach range check and prebuilt index, the state row), leaves the original table's rows
        untouched, reports what it removed in C(migration.abandoned) and does nothing else. It refuses once the
        swap has committed (rerun with the migration's mode to finish it).
      - The original is kept as C(<table>_unpartitioned) until O(drop_source). Progress is kept in
        C(sigeti_dwh.migration_state); a killed run leaves the original in use and the next run resumes.
      - A run that fails before its swap for a reason that would repeat (data breaking a constraint, a definition
        PostgreSQL refuses) is abandoned at once, so the original is left exactly as it was for its writers.
    type: str
    choices: [online, offline, attach, never, abandon]
    default: online
  batch_rows:
    description: Rows copied per batch (and per transaction) by an online migration.
    type: int
    default: 100000
  extend_primary_key:
    description:
      - PostgreSQL requires a partitioned table's primary key and unique constraints to include the partition key.
        With V(true) a migration appends O(key) to them; with V(false) it refuses, naming the key, before any change.
    type: bool
    default: false
  drop_source:
    description: Drop the original table (C(<table>_unpartitioned)) once the migration is verified and swapped.
    type: bool
    default: false
attributes:
  check_mode:
    description:
      - Changes nothing. The catalog is read without locking any table.
      - Rows are read only for counts - the default partition's rows (C(count(*)), per missing period too) and,
        for integer keys, the largest key of the newest partitions - under ACCESS SHARE, waiting at most 10 ms
        for it. When another session holds a conflicting lock (ACCESS EXCLUSIVE) check mode does not wait; it
        uses the estimates of C(pg_class) instead and a warning names that session.
      - With O(partition_options), their validity is asked of the server by creating a temporary table in a
        transaction that is rolled back (no lock on any user table).
      - For a plain table (O(migrate)) the migration plan reads the table (ACCESS SHARE) to size it.
    support: full
  diff_mode:
    description: The partition list before and after.
    support: full
notes:
  - Needs ownership of the table (ALTER TABLE), CREATE on its schema, and SELECT on the default partition.
  - "One run per table at a time: before reading anything it plans from, the module takes a session-level
    advisory lock per table (key C(hashtext('schema.table')) in class 21319). A second run waits up to its lock
    budget (O(lock_timeout) for each of O(lock_retries)+1 attempts plus the retry delays), then fails naming the
    other run (pid, application_name, client, since when). The lock goes with the session, so a killed run never
    leaves it behind. Check mode does not wait: it warns when another run is changing the table."
seealso:
  - module: sigeti.dwh.table_info
"""

EXAMPLES = r"""
- name: SIGETI's attributions, yearly on an integer YYYYMMDD key, two years ahead, ten kept
  sigeti.dwh.partitioned_table:
    login_db: sigeti_node_db
    name: dwh_facts.fait_attributions
    key: date_demandee_key
    key_format: yyyymmdd
    interval: year
    start: "2020-01-01"
    premake: 2
    retention:
      keep: 10
      action: archive
      archive_schema: dwh_archive
    partition_options:
      autovacuum_vacuum_scale_factor: 0.02

- name: Monthly partitions of a new events table, created when absent
  sigeti.dwh.partitioned_table:
    login_db: sigeti_node_db
    name: dwh_staging.events
    key: occurred_at
    interval: month
    premake: 3
    columns:
      - {name: id, type: bigint}
      - {name: occurred_at, type: timestamptz, not_null: true}
      - payload jsonb
    primary_key: [id, occurred_at]
"""

RETURN = r"""
migration:
  description:
    - When a plain table was migrated, what happened - phases run, rows copied, batches, replayed keys, per-partition
      source and target row counts and checksums, the name the original was renamed to, rows sent to the default
      partition and how long writers were blocked by the swap. In check mode, the phases with their SQL and the
      estimated disk need.
    - With O(migrate=abandon), C(abandoned) lists what was removed (or would be, in check mode).
  returned: when O(name) was a plain table
  type: dict
partitions:
  description: The partitions after the run (predicted in check mode), by low bound, the default last.
  returned: always
  type: list
  elements: dict
  sample: [{name: fait_2024, low: 20240101, high: 20250101, default: false}, {name: fait_default, low: null, high: null, default: true}]
created: {description: Partitions created., type: list, elements: str, returned: always}
detached: {description: Partitions detached by retention (whatever the action)., type: list, elements: str, returned: always}
dropped: {description: Partitions dropped by retention., type: list, elements: str, returned: always}
archived: {description: Partitions moved to the archive schema., type: list, elements: str, returned: always}
default_rows: {description: Rows left in the default partition after the run (null without one)., type: int, returned: always}
moved_rows:
  description:
    - Rows moved out of the default partition into new partitions (counted by the statements that moved them; in check
      mode, the rows counted there when planning).
  type: int
  returned: always
finished_detaches:
  description:
    - Partitions found pending detach (an interrupted C(DETACH PARTITION ... CONCURRENTLY) hides their rows) whose
      detach the run finished with C(DETACH PARTITION ... FINALIZE) before applying retention.
  type: list
  elements: str
  returned: always
retention_remaining:
  description: Partitions older than the retention window left attached because of O(retention.max_per_run).
  type: int
  returned: always
queries: {description: The exact SQL run (or that would run in check mode)., type: list, elements: str, returned: always}
plan: {description: Each statement with its reason and the lock it takes., type: list, elements: dict, returned: always}
warnings: {description: 'What was left alone and why (partly old partitions, an unwanted default).', type: list, elements: str, returned: always}
"""

import contextlib
import datetime

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.sigeti.dwh.plugins.module_utils import (
    catalog,
    migration,
    partitioning,
    periods,
    runlock,
    server_checks,
)
from ansible_collections.sigeti.dwh.plugins.module_utils.connection import (
    connection_argument_spec,
    module_errors,
    open_session,
)
from ansible_collections.sigeti.dwh.plugins.module_utils.errors import DwhError, InvalidInput
from ansible_collections.sigeti.dwh.plugins.module_utils.identifiers import display_name, split_name
from ansible_collections.sigeti.dwh.plugins.module_utils.plan import Executor, describe_blockers, is_lock_error


def with_lock_retries(conn, module, targets, read):
    """Run a catalog read under the module's lock policy (counting the default partition's rows takes ACCESS SHARE
    on it; a session holding ACCESS EXCLUSIVE blocks that)."""
    return Executor.from_module(conn, module).read(read, targets)


def declared_state(params, schema, name, table, conn):
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
    )


def current_period(declared, state):
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


@contextlib.contextmanager
def brief_lock_wait(conn):
    """Set lock_timeout to CHECK_MODE_LOCK_WAIT for the block (committed, so catalog reads' rollbacks keep it)."""
    with conn.cursor() as cur:
        cur.execute(
            "SELECT current_setting('lock_timeout'), set_config('lock_timeout', %s, false)", (CHECK_MODE_LOCK_WAIT,)
        )
        previous = cur.fetchone()[0]
    conn.commit()
    try:
        yield
    finally:
        conn.rollback()
        with conn.cursor() as cur:
            cur.execute("SELECT set_config('lock_timeout', %s, false)", (previous,))
        conn.commit()


def read_rows(conn, module, targets, read, estimate, warnings):
    """Read rows of ``targets`` (ACCESS SHARE). A real run waits like the executor (``with_lock_retries``); check
    mode waits at most CHECK_MODE_LOCK_WAIT and, when another session holds a conflicting lock, returns
    ``estimate()`` (catalog only, no lock) with a warning naming that session."""
    if not module.check_mode:
        return with_lock_retries(conn, module, targets, read)
    try:
        with brief_lock_wait(conn):
            return read()
    except Exception as error:
        if not is_lock_error(error):
            raise
        conn.rollback()
    who = describe_blockers(Executor.from_module(conn, module).blockers(targets))
    warnings.append(
        "check mode did not wait for %s, locked by %s: row counts (default_rows, moved_rows, the current period of "
        "integer keys) are estimates from the statistics in pg_class; the real run reads them"
        % (", ".join(display_name(*t) for t in targets), who)
    )
    return estimate()


def integer_now(conn, module, declared, table, warnings):
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

    found = read_rows(conn, module, names[:8], exact, estimated, warnings)
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
            module,
            [where],
            lambda where=where, part=part: catalog.keys_beyond(conn, where, key, part["low"]),
            lambda: (0, None, None),
            warnings,
        )
        warnings.append(partitioning.stray_partition_warning(declared, part, count, low, high, now))
    return found[chosen][1]


def bound_aliases(conn, declared, table):
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


def plan_partitions(conn, module, declared, table):
    """Read the few facts the plan needs beyond the table's, then build the plan (a ``partitioning.Result``)."""
    scheme = declared.scheme
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
        module,
        [parent] + ([default] if default else []),
        lambda: catalog.partition_set_state(conn, schemas, default=default),
        lambda: catalog.partition_set_state(conn, schemas, default=default, estimate=True),
        warnings,
    )
    if not scheme.format.calendar and table["exists"]:
        state["newest_key"] = integer_now(conn, module, declared, table, warnings)
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
    if default and state["default_rows"]:
        beyond = read_rows(
            conn,
            module,
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
            module,
            [default] if default else [],
            lambda: catalog.partition_set_pending(conn, names, default=default, key=declared.key, ranges=ranges),
            lambda: catalog.partition_set_pending(conn, names, ranges=ranges),
            lay.warnings,
        )
        extras["existing_names"] = taken
        extras["default_counts"] = dict(zip(lay.missing, counts))
    lacking = partitioning.lacking_indexes(table, lay)
    if lacking:
        extras["index_tails"] = catalog.index_tails(conn, lacking)
        extras["index_names_taken"] = catalog.relations_named(conn, partitioning.planned_index_names(table, lay))
    if declared.retention and declared.retention["action"] == "drop" and lay.retired:
        extras["dependents"] = catalog.dependent_objects(conn, [p["oid"] for p in lay.retired])
    return partitioning.build_plan(declared, table, lay, extras), state


def facts_moved(error):
    """True when the server refused a step because the table changed after it was read: a row of a new period
    arrived in the default partition (23514), a detach became pending (a cancelled DETACH ... CONCURRENTLY)."""
    code = getattr(error, "pgcode", None)
    return code == "23514" or (code == "55000" and "pending detach" in str(error))


def leftovers(conn, before):
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


def apply_partitions(conn, module, declared, table, result):
    """Run the plan. When a step is refused because the table moved under it (``facts_moved``), read the facts
    again and run the new plan, up to twice. Returns ``(result, executed)`` with the result's lists and
    ``moved_rows`` replaced by what the steps did. On failure raises a DwhError saying what was committed
    before it, with ``changed`` true when anything was.
    """
    completed, executed, attempts = [], [], 3
    before = catalog.partition_set_details(conn, table)
    failed_autocommit = False
    for attempt in range(1, attempts + 1):
        executor = Executor.from_module(conn, module)
        try:
            executor.run(result.plan)
        except Exception as error:
            completed.extend(executor.completed)
            executed.extend(executor.executed)
            failed_autocommit = failed_autocommit or bool(executor.failed and not executor.failed[0].transactional)
            if attempt < attempts and facts_moved(error):
                table = catalog.read_partition_set(conn, declared.schema, declared.name)
                result, _state = plan_partitions(conn, module, declared, table)
                continue
            raise run_failure(
                conn, declared.display, error, result, completed, executed, before if failed_autocommit else None
            )
        completed.extend(executor.completed)
        executed.extend(executor.executed)
        result.record(completed)
        return result, executed


def run_failure(conn, shown, error, result, completed, executed, before):
    """A DwhError for a run that stopped part way: the cause in words, what had committed, ``changed``."""
    pending, invalid = leftovers(conn, before) if before is not None else ([], [])
    result.record(completed)
    details = dict(getattr(error, "details", None) or {})
    if isinstance(error, DwhError):
        msg = error.msg
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


def check_partition_options(conn, declared):
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


def migration_options(params, key):
    """The options ``migration`` takes, from the module's."""
    return {
        "mode": params["migrate"],
        "key": key,
        "batch_rows": params["batch_rows"],
        "extend_primary_key": params["extend_primary_key"],
        "drop_source": params["drop_source"],
    }


def abandon_migration(conn, module, table):
    """``migrate: abandon``: drop what an unfinished migration left (or list it in check mode)."""
    if module.check_mode:
        steps, concurrent = migration.plan_abandon(conn, table)
        return {
            "check_mode": True,
            "plan": {"abandoned": [s.reason for s in steps + concurrent]},
            "queries": [s.render(conn) for s in steps + concurrent],
            "changed": bool(steps or concurrent),
        }
    removed, queries = migration.abandon_migration(conn, Executor.from_module(conn, module), table)
    return {"abandoned": removed, "queries": queries, "changed": bool(removed)}


def migrate_plain_table(conn, module, schema, name, server):
    """Turn a plain table into the declared partition set (or finish a migration found half done).

    Returns None when there is nothing to migrate, else the migration's result (its plan in check mode).
    """
    state = migration.read_state(conn, schema, name)
    table = catalog.read_table(conn, schema, name)
    params = module.params
    if params["migrate"] == "abandon":
        return abandon_migration(conn, module, table)
    if table["relkind"] == "p" and not state:
        return None
    options = migration_options(params, params["key"])
    if table["relkind"] == "p":  # the swap committed before a crash: finish what follows it
        return migration.run_migration(conn, Executor.from_module(conn, module), table, [], options, server)
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
        module,
        [(schema, name)],
        lambda: catalog.partition_set_state(
            conn, [schema], parent=(schema, name), key=None if declared.scheme.format.calendar else declared.key
        ),
    )
    layout = partitioning.migration_layout(declared, current_period(declared, state))
    partitioning.check_migration_layout(declared, layout)
    facts = migration.read_facts(conn, table, layout, options, server)
    planned = migration.plan_migration(table, layout, options, server, facts=facts)
    if module.check_mode:
        rendered = migration.render_plan(conn, planned)
        return {"check_mode": True, "plan": rendered, "queries": migration.plan_queries(conn, planned)}
    return migration.run_migration(
        conn, Executor.from_module(conn, module), table, layout, options, server, facts=facts
    )


def main():
    argument_spec = connection_argument_spec()
    argument_spec.update(
        name=dict(type="str", required=True),
        key=dict(type="str", required=True, no_log=False),
        key_format=dict(type="str", default="auto", choices=list(periods.FORMAT_NAMES)),
        interval=dict(type="str", required=True),
        start=dict(type="str"),
        premake=dict(type="int", default=2),
        max_new_partitions=dict(type="int", default=partitioning.DEFAULT_MAX_NEW_PARTITIONS),
        default_partition=dict(type="bool", default=True),
        retention=dict(
            type="dict",
            options=dict(
                keep=dict(type="int", required=True),
                action=dict(type="str", choices=list(partitioning.RETENTION_ACTIONS), default="detach"),
                archive_schema=dict(type="str"),
                max_per_run=dict(type="int", default=partitioning.DEFAULT_MAX_PER_RUN),
            ),
        ),
        partition_options=dict(type="dict", default={}),
        columns=dict(type="list", elements="raw"),
        primary_key=dict(type="list", elements="str", default=[], no_log=False),
        state=dict(type="str", choices=["present"], default="present"),
        skip_on_standby=dict(type="bool", default=False),
        migrate=dict(type="str", choices=["online", "offline", "attach", "never", "abandon"], default="online"),
        batch_rows=dict(type="int", default=100000),
        extend_primary_key=dict(type="bool", default=False),
        drop_source=dict(type="bool", default=False),
    )
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)
    holder = []
    with module_errors(module, holder):
        schema, name = split_name(module.params["name"])
        conn, facts = open_session(module, holder, module.params["skip_on_standby"])
        runlock.hold(module, conn, [(schema, name)])
        table = with_lock_retries(
            conn, module, [(schema, name)], lambda: catalog.read_partition_set(conn, schema, name)
        )
        migrated = None
        abandon = module.params["migrate"] == "abandon" and table["exists"]
        if table["exists"] and (abandon or table["relkind"] == "r" or migration.read_state(conn, schema, name)):
            migrated = migrate_plain_table(conn, module, schema, name, facts)
            if migrated and (migrated.get("check_mode") or abandon):
                conn.close()
                module.exit_json(
                    changed=migrated.get("changed", True),
                    queries=migrated["queries"],
                    migration=migrated.get("plan") or {"abandoned": migrated.get("abandoned", [])},
                    partitions=[],
                    created=[],
                    detached=[],
                    dropped=[],
                    archived=[],
                    default_rows=None,
                    moved_rows=0,
                    finished_detaches=[],
                    retention_remaining=0,
                )
            table = catalog.read_partition_set(conn, schema, name)
        declared = declared_state(module.params, schema, name, table, conn)
        check_partition_options(conn, declared)
        result, state = plan_partitions(conn, module, declared, table)
        queries = (migrated or {}).get("queries", []) + result.plan.queries(conn)
        explained = result.plan.explain(conn)
        changed = bool(result.plan)
        if result.plan and not module.check_mode:
            try:
                result, executed = apply_partitions(conn, module, declared, table, result)
            except DwhError as failure:
                if migrated:  # the migration committed before the partition maintenance failed
                    failure.details["changed"] = True
                raise
            queries = (migrated or {}).get("queries", []) + executed
        conn.close()
        has_default = any(p["default"] for p in result.partitions)
        output = dict(
            changed=changed or bool(migrated),
            queries=queries,
            plan=explained,
            partitions=result.partitions,
            created=result.created,
            detached=result.detached,
            dropped=result.dropped,
            archived=result.archived,
            default_rows=result.default_rows_after if has_default else None,
            moved_rows=result.moved_rows,
            finished_detaches=result.finished_detaches,
            retention_remaining=result.retention_remaining,
        )
        if migrated:
            output["migration"] = {k: v for k, v in migrated.items() if k != "queries"}
        if module._diff:
            output["diff"] = {
                "before": partitioning.diff_text(result.before),
                "after": partitioning.diff_text(result.partitions),
            }
        for warning in result.warnings + list((migrated or {}).get("warnings") or []):
            module.warn(warning)
        module.exit_json(**output)


if __name__ == "__main__":
    main()
