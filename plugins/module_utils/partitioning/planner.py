# Copyright: (c) 2026, SIGETI data platform team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""A declared RANGE partition set compared with catalog facts, turned into a Plan (pure, no I/O).

Two phases, because what the module must count in the default partition depends on what is missing:

1. ``layout(declared, table, current)`` (in ``partition_layout``, re-exported here) classifies the existing
   partitions against the declared periods.
2. ``build_plan(declared, table, layout, extras)`` (here) returns a ``Result``: the Plan of Steps (SQL, reason,
   lock, targets, transaction group), the predicted partition list and what is created/detached/dropped.

Locks measured on PostgreSQL 17 (see docs/partitioned_table.md): ``CREATE TABLE ... PARTITION OF`` takes
ACCESS EXCLUSIVE on the parent; ``CREATE TABLE ... (LIKE parent)`` + ``ATTACH PARTITION`` takes only
SHARE UPDATE EXCLUSIVE on it (plus ACCESS EXCLUSIVE on the default partition, which it scans). Plain
``DETACH`` and ``DROP`` of a partition take ACCESS EXCLUSIVE on the parent; ``DETACH ... CONCURRENTLY``
takes SHARE UPDATE EXCLUSIVE but is refused while a default partition exists.

The partitions' indexes (build, adopt, attach; names within 63 bytes) are planned in ``partition_indexes``.
"""

from __future__ import annotations

import datetime
from typing import TYPE_CHECKING, Any, Iterable, Sequence

from ansible_collections.sigeti.dwh.plugins.module_utils.archive import retention as parquet_retention
from ansible_collections.sigeti.dwh.plugins.module_utils.core.bounds import json_value
from ansible_collections.sigeti.dwh.plugins.module_utils.core.errors import InvalidInput
from ansible_collections.sigeti.dwh.plugins.module_utils.core.identifiers import display_name
from ansible_collections.sigeti.dwh.plugins.module_utils.partitioning.indexes import index_steps
from ansible_collections.sigeti.dwh.plugins.module_utils.partitioning.layout import (  # noqa: F401  # pylint: disable=unused-import
    CREATE_BATCH,
    DAYS_MARGIN,
    DEFAULT_MAX_NEW_PARTITIONS,
    DEFAULT_MAX_PER_RUN,
    LIKE_OPTIONS,
    MAX_IDENTIFIER_BYTES,
    RETENTION_ACTIONS,
    ColumnDef,
    Declared,
    KeyBound,
    Layout,
    Retention,
    beyond_bound,
    bound_rank,
    check_epoch_bounds,
    check_interval,
    check_migration_layout,
    check_partition_key,
    check_start_in_bound,
    days_span,
    default_name,
    existing_interval,
    existing_partitions,
    interval_of,
    is_stray,
    key_bound,
    layout,
    migration_layout,
    newest_first,
    normalize_option_value,
    partition_name,
    staying_partitions,
    stray_default_warning,
    stray_partition_warning,
    truncate_name,
    validate_columns,
    validate_partition_options,
    validate_retention,
)
from ansible_collections.sigeti.dwh.plugins.module_utils.plan import steps as planmod
from ansible_collections.sigeti.dwh.plugins.module_utils.plan.locks import Lock, lock_set
from ansible_collections.sigeti.dwh.plugins.module_utils.tiering import planner as tiers

try:
    from psycopg2 import sql
except ImportError:  # reported by the connection layer
    sql = None

if TYPE_CHECKING:  # names used in annotations only
    from psycopg2.sql import Composable

    from ansible_collections.sigeti.dwh.plugins.module_utils.core.periods import Point, Scheme


# ---------------------------------------------------------------------------------------------
# Phase 2: the plan
# ---------------------------------------------------------------------------------------------


class Result:
    """A plan plus what it predicts: partitions after, created, detached, dropped, archived, moved rows."""

    default_rows_after: int  # rows left in the default partition once the moves are done (set by build_plan)

    def __init__(self) -> None:
        self.plan = planmod.Plan()
        self.partitions: list[dict[str, Any]] = []  # partition_list entries after the plan
        self.before: list[dict[str, Any]] = []  # partition_list entries before it
        self.created: list[str] = []
        self.detached: list[str] = []
        self.dropped: list[str] = []
        self.archived: list[str] = []
        self.finished_detaches: list[
            str
        ] = []  # partitions whose interrupted DETACH ... CONCURRENTLY this plan finishes
        self.moved_rows = 0
        self.retention_remaining = 0
        self.bound: dict[str, Any] | None = None  # the table's own bound when it is a partition (see bound_report)
        self.referenced: list[planmod.Target] = []  # the tables the parent's foreign keys reference, locked first
        self.unlockable: list[planmod.Target] = []  # those this role may not LOCK: the ATTACH takes them
        self.current: Point | None = None  # the current period, and the scheme it is of (tiers plan from them)
        self.scheme: Scheme | None = None
        self.warnings: list[str] = []

    def record(self, completed: Iterable[planmod.Step]) -> None:
        """Replace (in place; returns nothing) the predictions by what the executor's ``completed`` steps did (a run that stopped part way
        reports only what committed): created, detached, dropped, archived, finished detaches, moved rows."""
        done = {"created": [], "detached": [], "dropped": [], "archived": []}
        moved = 0
        for step in completed:
            kind, name = step.effect or (None, None)
            if kind in done:
                done[kind].append(name)
            elif kind == "moved" and step.rowcount and step.rowcount > 0:
                moved += step.rowcount
        self.finished_detaches = [p for p in self.finished_detaches if p in done["detached"]]
        self.created, self.detached, self.dropped, self.archived = (
            done["created"],
            done["detached"],
            done["dropped"],
            done["archived"],
        )
        self.moved_rows = moved


def bound_sql(scheme: Scheme, point: Point) -> Composable:
    """Return one bound composed as SQL: ``'2023-01-01'::date`` or ``20230101``."""
    value, cast = scheme.literal_parts(point)
    if cast:
        return sql.SQL("{}::{}").format(sql.Literal(value), sql.SQL(cast))
    return sql.Literal(value)


def with_clause(options: dict[str, str] | None) -> Composable:
    """Return `` WITH (name = 'value', ...)`` for storage parameters (names are checked by validate_partition_options)."""
    if not options:
        return sql.SQL("")
    items = [sql.SQL("{} = {}").format(sql.SQL(name), sql.Literal(value)) for name, value in sorted(options.items())]
    return sql.SQL(" WITH ({})").format(sql.SQL(", ").join(items))


def create_table_steps(declared: Declared, schema_exists: bool) -> list[planmod.Step]:
    """Return the steps creating the absent parent table (and its schema) partitioned by RANGE on the key."""
    steps = []
    parent = (declared.schema, declared.name)
    if not schema_exists:
        steps.append(
            planmod.Step(
                sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(declared.schema)),
                "schema %s does not exist" % declared.schema,
                lock=None,
                group="create-table",
            )
        )
    cols = []
    for col in declared.columns:
        part = sql.SQL("{} {}").format(sql.Identifier(col["name"]), sql.SQL(col["type"]))
        if col["not_null"]:
            part = part + sql.SQL(" NOT NULL")
        if col.get("default") is not None:
            # The default is a SQL expression written by the playbook author, like a column type.
            part = part + sql.SQL(" DEFAULT ") + sql.SQL(str(col["default"]))
        cols.append(part)
    if declared.primary_key:
        cols.append(
            sql.SQL("PRIMARY KEY ({})").format(sql.SQL(", ").join(sql.Identifier(c) for c in declared.primary_key))
        )
    steps.append(
        planmod.Step(
            sql.SQL("CREATE TABLE {} ({}) PARTITION BY RANGE ({})").format(
                sql.Identifier(*parent), sql.SQL(", ").join(cols), sql.Identifier(declared.key)
            ),
            "table %s does not exist: create it partitioned by RANGE (%s)" % (declared.display, declared.key),
            lock=planmod.ACCESS_EXCLUSIVE,
            targets=[parent],
            group="create-table",
        )
    )
    return steps


def _insertable_columns(table, declared):
    if table and table.get("exists"):
        return [c["name"] for c in table["columns"] if not c.get("generated")]
    return [c["name"] for c in declared.columns]


def _counted(scheme, point, default_rows):
    """The rows a move takes, in words, for the steps' reasons."""
    if default_rows:
        return "the %d rows of period %s waiting in the default partition" % (default_rows, scheme.label(point))
    return "rows of period %s that arrive in the default partition meanwhile (none when counted)" % scheme.label(point)


def default_move_locks(
    declared: Declared,
    default: dict[str, Any],
    referenced: Sequence[planmod.Target],
    counted: str,
    group: str | None,
) -> list[planmod.Step]:
    """Return the first step of a transaction moving rows out of the default partition and attaching a partition:
    the locks it needs, taken first thing in the deadlock-safe order of ``plan.locks.lock_set``.

    Writers of the period are arriving now. One routed to the default partition before the ATTACH commits fails
    afterwards ("violates partition constraint"): they wait at the parent instead (SHARE ROW EXCLUSIVE, readers go
    on), and the default partition is locked so no row arrives there. When the parent has foreign keys, ATTACH
    PARTITION clones them onto the new table, which takes SHARE ROW EXCLUSIVE on every table they reference
    (``referenced``); the writers hold those (they update rows there, TPC-B's accounts) while they wait for the
    parent. Taking the parent first and them at the ATTACH is a deadlock: they are locked first (else, when that
    order would deadlock, right after the parent), every lock after the first never waiting into a deadlock.
    """
    parent = Lock(
        declared.schema,
        declared.name,
        planmod.SHARE_ROW_EXCLUSIVE,
        "hold writers (not readers) at the parent while %s move, so none is routed to the default partition before "
        "the ATTACH" % counted,
    )
    tables = [
        Lock(
            schema,
            name,
            planmod.SHARE_ROW_EXCLUSIVE,
            "referenced by the foreign keys of %s, which ATTACH PARTITION "
            "clones onto the new partition" % declared.display,
        )
        for schema, name in referenced
    ]
    partition = Lock(
        default["schema"],
        default["name"],
        planmod.ACCESS_EXCLUSIVE,
        "lock the default partition so no row arrives there while %s move" % counted,
    )
    steps = lock_set(tables, parent, [partition], group=group)
    steps[0].reason = "%s; %s" % (parent.why, steps[0].reason)
    return steps


def _move_step(declared, point, name, default, columns, counted, group, targets):
    """Move the period's rows out of the default partition into the new table (in the transaction of the ATTACH)."""
    scheme = declared.scheme
    default_id = sql.Identifier(default["schema"], default["name"])
    cols = sql.SQL(", ").join(sql.Identifier(c) for c in columns)
    return planmod.Step(
        sql.SQL(
            "WITH moved AS (DELETE FROM {d} WHERE {k} >= {lo} AND {k} < {hi} RETURNING {c}) "
            "INSERT INTO {t} ({c}) SELECT {c} FROM moved"
        ).format(
            d=default_id,
            k=sql.Identifier(declared.key),
            lo=bound_sql(scheme, point),
            hi=bound_sql(scheme, scheme.step(point)),
            c=cols,
            t=sql.Identifier(declared.schema, name),
        ),
        "move %s out of the default partition (PostgreSQL refuses the new partition while they sit there)" % counted,
        lock=planmod.ROW_EXCLUSIVE,
        targets=targets,
        group=group,
        effect=("moved", name),
    )


def _attach_step(declared, point, name, default, group, targets):
    scheme = declared.scheme
    low, high = scheme.bounds(point)
    return planmod.Step(
        sql.SQL("ALTER TABLE {} ATTACH PARTITION {} FOR VALUES FROM ({}) TO ({})").format(
            sql.Identifier(declared.schema, declared.name),
            sql.Identifier(declared.schema, name),
            bound_sql(scheme, point),
            bound_sql(scheme, scheme.step(point)),
        ),
        "attach %s FROM %s TO %s (SHARE UPDATE EXCLUSIVE on the parent%s)"
        % (
            name,
            json_value(low),
            json_value(high),
            ", ACCESS EXCLUSIVE on the default partition it scans" if default else "",
        ),
        lock=planmod.SHARE_UPDATE_EXCLUSIVE,
        targets=targets,
        group=group,
    )


def new_partition_steps(
    declared: Declared,
    point: Point,
    name: str,
    default: dict[str, Any] | None,
    default_rows: int | None,
    columns: Sequence[str],
    options: dict[str, str] | None,
    group: str | None = None,
    stat_targets: dict[str, int] | None = None,
    template: str | None = None,
    referenced: Sequence[planmod.Target] = (),
    tablespace: str | None = None,
) -> list[planmod.Step]:
    """Return the steps creating one partition the weak-lock way, moving rows out of the default partition first.

    ``tablespace`` (its tier, see ``tiering``): the table and the indexes its ATTACH builds are created there.

    ``options`` (storage parameters) and ``stat_targets`` (per-column statistics targets) are those the new table
    gets: the newest existing partition's (``template``) under the declared ``partition_options``. ``referenced``:
    the tables the parent's foreign keys reference (see ``default_move_locks``).

    With a default partition, writers are held and rows moved for every new period, even one that had no row
    there when counted: a row of the period arriving before the ATTACH would make it fail (23514). Each such
    partition gets its own short transaction, which takes its locks first thing (``default_move_locks``).
    ``group`` lets several partitions share one transaction when there is no default partition (fewer commits
    when many are missing).
    """
    scheme = declared.scheme
    parent = (declared.schema, declared.name)
    child = (declared.schema, name)
    group = "create:%s" % name if default is not None or group is None or tablespace else group
    counted = _counted(scheme, point, default_rows)
    targets = [parent, child] + ([(default["schema"], default["name"])] if default else [])
    steps = []
    if default is not None:
        steps.extend(default_move_locks(declared, default, referenced, counted, group))
        targets += [t for t in referenced if t not in targets]
    storage = with_clause(options) + tiers.tablespace_clause(tablespace)
    steps.extend(tiers.creation_steps(tablespace, name, group))
    steps.append(
        planmod.Step(
            sql.SQL("CREATE TABLE {} (LIKE {} " + LIKE_OPTIONS + "){}").format(
                sql.Identifier(*child), sql.Identifier(*parent), storage
            ),
            "period %s is missing: create its table (ACCESS SHARE on the parent)%s"
            % (scheme.label(point), " with the storage settings of %s" % template if template and options else ""),
            lock=planmod.ACCESS_SHARE,
            targets=targets,
            group=group,
            effect=("created", name),
        )
    )
    for column, target in sorted((stat_targets or {}).items()):
        steps.append(
            planmod.Step(
                sql.SQL("ALTER TABLE {} ALTER COLUMN {} SET STATISTICS {}").format(
                    sql.Identifier(*child), sql.Identifier(column), sql.Literal(int(target))
                ),
                "statistics target of %s as on %s (the newest partition)" % (column, template),
                lock=planmod.SHARE_UPDATE_EXCLUSIVE,
                targets=[child],
                group=group,
            )
        )
    if default is not None:
        steps.append(_move_step(declared, point, name, default, columns, counted, group, targets))
    steps.append(_attach_step(declared, point, name, default, group, targets))
    return steps


def template_settings(declared: Declared, lay: Layout) -> tuple[str | None, dict[str, str], dict[str, int]]:
    """The storage settings a new partition gets: ``(template name, storage parameters, statistics targets)``.

    A DBA (or a migration) tunes the partitions a set has: fillfactor, autovacuum and TOAST options, per-column
    statistics targets. A partitioned parent cannot hold most of them, so new partitions copy those of the newest
    existing leaf partition; the declared ``partition_options`` win over them.
    """
    leaves = [
        p
        for p in list(lay.adopted.values()) + lay.spanning
        if p.get("relkind", "r") == "r" and p.get("high") is not None
    ]
    if not leaves:
        return None, dict(declared.partition_options or {}), {}
    newest = max(leaves, key=lambda p: bound_rank(p["high"]))
    options = dict(newest.get("reloptions") or {})
    options.update({"toast." + k: v for k, v in (newest.get("toast_reloptions") or {}).items()})
    options.update(declared.partition_options or {})
    return newest["name"], options, dict(newest.get("stat_targets") or {})


def default_partition_steps(declared: Declared, name: str, options: dict[str, str] | None) -> list[planmod.Step]:
    """Return the steps creating the default partition (LIKE the parent, then ATTACH ... DEFAULT)."""
    parent = (declared.schema, declared.name)
    child = (declared.schema, name)
    group = "create:%s" % name
    return [
        planmod.Step(
            sql.SQL("CREATE TABLE {} (LIKE {} " + LIKE_OPTIONS + "){}").format(
                sql.Identifier(*child), sql.Identifier(*parent), with_clause(options)
            ),
            "default_partition is true and %s has none: create it" % declared.display,
            lock=planmod.ACCESS_SHARE,
            targets=[parent, child],
            group=group,
            effect=("created", name),
        ),
        planmod.Step(
            sql.SQL("ALTER TABLE {} ATTACH PARTITION {} DEFAULT").format(
                sql.Identifier(*parent), sql.Identifier(*child)
            ),
            "attach %s as the default partition (SHARE UPDATE EXCLUSIVE on the parent)" % name,
            lock=planmod.SHARE_UPDATE_EXCLUSIVE,
            targets=[parent, child],
            group=group,
        ),
    ]


def option_changes(entry: dict[str, Any], options: dict[str, str]) -> dict[str, str]:
    """Return the declared reloptions that differ on one leaf (``toast.*`` read from its TOAST relation)."""
    changes = {}
    for name, value in options.items():
        if name.startswith("toast."):
            if not entry.get("toast_oid"):
                continue  # no TOAST table: the option cannot be stored, asking again would never converge
            current = (entry.get("toast_reloptions") or {}).get(name[len("toast.") :])
        else:
            current = (entry.get("reloptions") or {}).get(name)
        if current is None or current.lower() != value.lower():
            changes[name] = value
    return changes


def retention_steps(declared: Declared, part: dict[str, Any], concurrent: bool) -> list[planmod.Step]:
    """Return the steps detaching one wholly old partition, then dropping it or moving it to the archive schema."""
    parent = (declared.schema, declared.name)
    child = (part["schema"], part["name"])
    action = declared.retention["action"]
    group = "retire:%s" % part["name"]
    steps = []
    if part.get("detach_pending"):
        # An earlier DETACH ... CONCURRENTLY was cancelled after its first transaction: the partition is hidden
        # from queries on the parent and PostgreSQL refuses a new DETACH until this one is finished.
        steps.append(
            planmod.Step(
                sql.SQL("ALTER TABLE {} DETACH PARTITION {} FINALIZE").format(
                    sql.Identifier(*parent), sql.Identifier(*child)
                ),
                "%s is pending detach (an interrupted DETACH ... CONCURRENTLY hides its rows): finish it"
                % part["name"],
                lock=planmod.SHARE_UPDATE_EXCLUSIVE,
                targets=[parent, child],
                group=group,
                effect=("detached", part["name"]),
            )
        )
    elif concurrent:
        steps.append(
            planmod.Step(
                sql.SQL("ALTER TABLE {} DETACH PARTITION {} CONCURRENTLY").format(
                    sql.Identifier(*parent), sql.Identifier(*child)
                ),
                "%s is older than the %d periods kept: detach it concurrently (SHARE UPDATE EXCLUSIVE on the parent)"
                % (part["name"], declared.retention["keep"]),
                lock=planmod.SHARE_UPDATE_EXCLUSIVE,
                targets=[parent, child],
                transactional=False,
                effect=("detached", part["name"]),
            )
        )
    else:
        steps.append(
            planmod.Step(
                sql.SQL("ALTER TABLE {} DETACH PARTITION {}").format(sql.Identifier(*parent), sql.Identifier(*child)),
                "%s is older than the %d periods kept: detach it (ACCESS EXCLUSIVE on the parent, brief; CONCURRENTLY "
                "is refused while a default partition exists)" % (part["name"], declared.retention["keep"]),
                lock=planmod.ACCESS_EXCLUSIVE,
                targets=[parent, child],
                group=group,
                effect=("detached", part["name"]),
            )
        )
    if action == "parquet" and not part.get("keep_table"):
        steps.extend(parquet_retention.drop_steps(declared, part, concurrent))
    elif action == "drop" and not part.get("keep_table"):
        steps.append(
            planmod.Step(
                sql.SQL("DROP TABLE {}").format(sql.Identifier(*child)),
                "retention.action drop: drop the detached %s" % part["name"],
                lock=planmod.ACCESS_EXCLUSIVE,
                targets=[child],
                group=group,
                effect=("dropped", part["name"]),
            )
        )
    elif action == "archive":
        steps.append(
            planmod.Step(
                sql.SQL("ALTER TABLE {} SET SCHEMA {}").format(
                    sql.Identifier(*child), sql.Identifier(declared.retention["archive_schema"])
                ),
                "retention.action archive: move the detached %s to schema %s"
                % (part["name"], declared.retention["archive_schema"]),
                lock=planmod.ACCESS_EXCLUSIVE,
                targets=[child],
                group=group,
                effect=("archived", part["name"]),
            )
        )
    return steps


def _wall_clock(value):
    # timestamptz bounds are reported as wall-clock times of the session's TimeZone, like new ones are written
    if isinstance(value, datetime.datetime) and value.tzinfo is not None:
        return value.replace(tzinfo=None)
    return value


def _entry(name, low, high, is_default=False):
    low, high = _wall_clock(low), _wall_clock(high)
    return {
        "name": name,
        "low": json_value(low) if not is_default else None,
        "high": json_value(high) if not is_default else None,
        "default": is_default,
    }


def partition_list(parts: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """Return partition entries sorted by low bound, the default last; for results and diff."""

    def order(p):
        if p["default"]:
            return (1, (0, 0))
        return (0, bound_rank(p["low"]))

    return [dict(p.items()) for p in sorted(parts, key=order)]


def _check_new_name(declared: Declared, point: Point, name: str, taken: set, own_names: set) -> None:
    if (declared.schema, name) in taken and (declared.schema, name) not in own_names:
        raise InvalidInput(
            "cannot create partition %s of %s: a relation of that name already exists and is not a partition "
            "of it. Rename it, or attach it yourself with the bounds FROM %s TO %s; nothing was changed."
            % (
                display_name(declared.schema, name),
                declared.display,
                declared.scheme.literal(point),
                declared.scheme.literal(declared.scheme.step(point)),
            )
        )
    if (declared.schema, name) in own_names:
        raise InvalidInput(
            "cannot create partition %s of %s: that name is taken by another partition of it with other bounds; "
            "nothing was changed." % (display_name(declared.schema, name), declared.display)
        )


def _plan_periods(declared, table, lay, extras, result, after):
    """Every declared period: kept when a partition covers it, else created (rows moved out of the default)."""
    scheme = declared.scheme
    taken = extras.get("existing_names") or set()
    counts = extras.get("default_counts") or {}
    own_names = {(p["schema"], p["name"]) for p in existing_partitions(table)}
    template, new_options, stat_targets = template_settings(declared, lay)
    columns = _insertable_columns(table, declared)
    listed = {e["name"] for e in after}  # a spanning partition covers several periods: listed once
    for point in lay.periods:
        part = lay.covered.get(point) or lay.adopted.get(point)
        if part is not None:
            if part["name"] not in listed:
                listed.add(part["name"])
                after.append(_entry(part["name"], part["low"], part["high"]))
            continue
        name = partition_name(declared, point)
        _check_new_name(declared, point, name, taken, own_names)
        rows = counts.get(point, 0) if lay.default is not None else 0
        result.moved_rows += rows
        batch = "create-batch:%d" % (len(result.created) // CREATE_BATCH)
        space = tiers.creation_tablespace(declared.tiers, scheme, lay.current, point)
        result.plan.extend(
            new_partition_steps(
                declared,
                point,
                name,
                lay.default,
                rows,
                columns,
                new_options,
                batch,
                stat_targets,
                template,
                referenced=extras.get("referenced") or (),
                tablespace=space,
            )
        )
        result.created.append(name)
        low, high = scheme.bounds(point)
        after.append(_entry(name, low, high))


def _plan_default(declared, lay, extras, result, after):
    """Create the declared default partition, or keep the one there (never dropped: it may hold rows)."""
    taken = extras.get("existing_names") or set()
    if lay.default is None and declared.default_partition:
        name = default_name(declared)
        if (declared.schema, name) in taken:
            raise InvalidInput(
                "cannot create the default partition %s of %s: a relation of that name already exists; rename it "
                "or attach it as the default partition; nothing was changed."
                % (display_name(declared.schema, name), declared.display)
            )
        result.plan.extend(default_partition_steps(declared, name, declared.partition_options))
        result.created.append(name)
        after.append(_entry(name, None, None, True))
    elif lay.default is not None:
        after.append(_entry(lay.default["name"], None, None, True))
        if not declared.default_partition:
            result.warnings.append(
                "default_partition is false but %s has the default partition %s: it is kept (the module never drops "
                "data on its own); detach it yourself if it is empty and unwanted"
                % (declared.display, lay.default["name"])
            )


def _options_step(leaf: dict[str, Any], changes: dict[str, str]) -> planmod.Step:
    return planmod.Step(
        sql.SQL("ALTER TABLE {} SET ({})").format(
            sql.Identifier(leaf["schema"], leaf["name"]),
            sql.SQL(", ").join(
                sql.SQL("{} = {}").format(sql.SQL(k), sql.Literal(v)) for k, v in sorted(changes.items())
            ),
        ),
        "partition_options differ on %s: %s"
        % (leaf["name"], ", ".join("%s=%s" % kv for kv in sorted(changes.items()))),
        lock=planmod.SHARE_UPDATE_EXCLUSIVE,
        targets=[(leaf["schema"], leaf["name"])],
    )


def _plan_staying(declared, table, lay, extras, result):
    """Partitions that stay: the parent's indexes on each (invalid ones rebuilt) and the declared reloptions."""
    staying = staying_partitions(lay)
    check_pending_detaches(declared, staying)
    result.plan.extend(
        index_steps(
            declared, table, staying, extras.get("index_tails"), result.warnings, extras.get("index_names_taken")
        )
    )
    retired_oids = {p["oid"] for p in lay.retired}
    for leaf in (e for e in table["partitions"] if e["relkind"] == "r"):
        if leaf["oid"] in retired_oids or leaf.get("parent_oid") in retired_oids:
            continue
        changes = option_changes(leaf, declared.partition_options)
        if changes:
            result.plan.add(_options_step(leaf, changes))


def _archive_schema_steps(declared, lay, extras):
    archive = declared.retention["archive_schema"]
    taken = extras.get("existing_names") or set()
    clashes = [p["name"] for p in lay.retired if (archive, p["name"]) in taken]
    if clashes:
        raise InvalidInput(
            "cannot archive %s of %s: schema %s already has relations named %s. Rename or drop them; "
            "nothing was changed." % (", ".join(clashes), declared.display, archive, ", ".join(clashes))
        )
    if archive in (extras.get("schemas") or set()):
        return []
    return [
        planmod.Step(
            sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(archive)),
            "archive schema %s does not exist" % archive,
        )
    ]


def _plan_retention(declared, lay, extras, result, after):
    """Detach (and drop or archive) the retired partitions; keep those a view or key depends on, saying why."""
    retention = declared.retention
    if not retention or not lay.retired:
        return
    if retention["action"] == "archive":
        result.plan.extend(_archive_schema_steps(declared, lay, extras))
    concurrent = not (lay.default is not None or declared.default_partition)
    acting = retirable(declared, lay.retired, extras.get("dependents") or {}, result.warnings)
    acting_oids = {p["oid"] for p in acting}
    after.extend(_entry(p["name"], p["low"], p["high"]) for p in lay.retired if p["oid"] not in acting_oids)
    for part in acting:
        result.plan.extend(retention_steps(declared, part, concurrent))
        if part.get("detach_pending"):
            result.finished_detaches.append(part["name"])
        result.detached.append(part["name"])
        if retention["action"] in ("drop", "parquet") and not part.get("keep_table"):
            result.dropped.append(part["name"])
        if retention["action"] in ("archive", "parquet") and not part.get("keep_table"):
            result.archived.append(part["name"])


def build_plan(declared: Declared, table: dict[str, Any] | None, lay: Layout, extras: dict[str, Any]) -> Result:
    """Return the Result (plan + predictions) of a layout.

    ``extras``: ``default_rows`` (rows now in the default partition), ``default_counts`` (point -> rows of
    that missing period sitting in the default), ``existing_names`` (set of ``(schema, name)`` already
    taken), ``schemas`` (set of existing schema names), ``index_tails`` (index oid -> ``USING ...``),
    ``index_names_taken`` (``(schema, name)`` of planned index names -> the relation holding it),
    ``dependents`` (retired partition oid -> objects whose dependency makes DROP TABLE fail) and ``referenced``
    (``(schema, name)`` of the tables the parent's foreign keys reference, locked first beside a default partition;
    ``referenced_unlockable``: those this role may not lock, left to the ATTACH).
    """
    result = Result()
    result.warnings.extend(lay.warnings)
    exists = bool(table and table.get("exists"))
    if not exists:
        result.plan.extend(create_table_steps(declared, declared.schema in (extras.get("schemas") or set())))
    for part in existing_partitions(table):
        result.before.append(_entry(part["name"], part.get("low"), part.get("high"), part["is_default"]))
    after = []
    _plan_periods(declared, table, lay, extras, result, after)
    _plan_default(declared, lay, extras, result, after)
    for part in lay.others + lay.partly_old + lay.waiting:
        after.append(_entry(part["name"], part["low"], part["high"]))
    if exists:
        _plan_staying(declared, table, lay, extras, result)
    else:
        check_pending_detaches(declared, staying_partitions(lay))
    _plan_retention(declared, lay, extras, result, after)
    result.retention_remaining = len(lay.waiting)
    result.current, result.scheme = lay.current, declared.scheme
    result.bound = bound_report(lay)
    result.partitions = partition_list(after)
    result.before = partition_list(result.before)
    result.default_rows_after = max(0, (extras.get("default_rows") or 0) - result.moved_rows)
    result.referenced = list(extras.get("referenced") or [])
    result.unlockable = list(extras.get("referenced_unlockable") or [])
    return result


def deadlock_cause(shown: str, referenced: Sequence[planmod.Target], unlockable: Sequence[planmod.Target] = ()) -> str:
    """Return why a transaction creating a partition beside a default partition can meet a deadlock (SQLSTATE 40P01),
    in words for the message, or "" when the parent ``shown`` has no foreign key. ``referenced``: the tables they
    reference that the run locks first; ``unlockable``: those this role may not lock (the ATTACH takes them)."""
    if not referenced and not unlockable:
        return ""
    names = ", ".join(display_name(*t) for t in list(referenced) + list(unlockable))
    text = (
        "Why: the foreign keys of %s reference %s; attaching a partition clones them onto it, which locks those "
        "tables (SHARE ROW EXCLUSIVE), and the writers of %s hold them (they update their rows) while they wait for "
        "%s, held by this run so that no row reaches the default partition meanwhile." % (shown, names, shown, shown)
    )
    if referenced:
        text += (
            " The run takes %s first (else right after %s) and does not wait into a deadlock; an application locking "
            "them in yet another order still meets one." % (", ".join(display_name(*t) for t in referenced), shown)
        )
    if unlockable:
        text += (
            " This role may not lock %s itself (LOCK TABLE needs UPDATE, DELETE, TRUNCATE or, on PostgreSQL 17 and "
            "later, MAINTAIN there; a foreign key only REFERENCES), so the ATTACH takes that lock last: grant it "
            "MAINTAIN (or UPDATE) on them and the run takes them first."
            % ", ".join(display_name(*t) for t in unlockable)
        )
    return text


def bound_report(lay: Layout) -> dict[str, Any] | None:
    """The table's own bound for results, when it is a partition whose ancestors bound its key: ``low``, ``high``,
    ``parents`` (nearest first) and ``periods_outside``, the periods start and premake reach that it leaves out."""
    if lay.bound is None:
        return None
    return {
        "low": json_value(_wall_clock(lay.bound.low)),
        "high": json_value(_wall_clock(lay.bound.high)),
        "parents": list(lay.bound.parents),
        "periods_outside": lay.clipped,
    }


def check_pending_detaches(declared: Declared, staying: Iterable[dict[str, Any]]) -> None:
    """Return nothing; refuse, in words, a pending detach (an interrupted DETACH ... CONCURRENTLY) of a partition the declared set
    keeps: finishing it would take a kept period out of the set, cancelling it is not possible."""
    pending = [p for p in staying if p.get("detach_pending")]
    if pending:
        raise InvalidInput(
            "partition(s) %s of %s are pending detach (an interrupted ALTER TABLE ... DETACH PARTITION ... "
            "CONCURRENTLY; their rows are hidden from queries on %s) but retention keeps their periods. Finish it "
            "with ALTER TABLE %s DETACH PARTITION <partition> FINALIZE and re-attach the table if the detach was a "
            "mistake; nothing was changed."
            % (", ".join(p["name"] for p in pending), declared.display, declared.display, declared.display)
        )


def retirable(
    declared: Declared, retired: Sequence[dict[str, Any]], dependents: dict[int, list[str]], warnings: list[str]
) -> list[dict[str, Any]]:
    """Return the retired partitions retention may act on now. With action drop, one that a view or a foreign key
    depends on is kept attached with a warning: detached first, its DROP would fail and leave it outside the set."""
    if declared.retention["action"] not in ("drop", "parquet"):
        return list(retired)
    kept = []
    for part in retired:
        blockers = dependents.get(part["oid"])
        if blockers and part.get("detach_pending"):
            warnings.append(
                "partition %s of %s was pending detach: the detach is finished but the table is kept, because %s "
                "depend(s) on it; drop it yourself once they are gone"
                % (part["name"], declared.display, ", ".join(blockers))
            )
            kept.append(dict(part, keep_table=True))
            continue
        if blockers:
            warnings.append(
                "retention.action %s: partition %s of %s is older than the %d periods kept but is left attached, "
                "because %s depend(s) on it and DROP TABLE would fail after the detach. Drop or change those objects "
                "(or use action detach/archive), then run again."
                % (
                    declared.retention["action"],
                    part["name"],
                    declared.display,
                    declared.retention["keep"],
                    ", ".join(blockers),
                )
            )
            continue
        kept.append(part)
    return kept


def diff_text(entries: Iterable[dict[str, Any]]) -> str:
    """Return one line per partition, for ``diff`` before/after."""
    lines = []
    for e in entries:
        if e["default"]:
            lines.append("%s DEFAULT" % e["name"])
        else:
            lines.append("%s FROM (%s) TO (%s)" % (e["name"], e["low"], e["high"]))
    return "\n".join(lines) + ("\n" if lines else "")


def candidate_names(declared: Declared, lay: Layout) -> list[tuple[str, str]]:
    """Return the ``(schema, name)`` pairs the plan may create: new partitions, the default, archived tables."""
    names = [(declared.schema, partition_name(declared, p)) for p in lay.missing]
    if lay.default is None and declared.default_partition:
        names.append((declared.schema, default_name(declared)))
    if declared.retention and declared.retention["action"] == "archive":
        names.extend((declared.retention["archive_schema"], p["name"]) for p in lay.retired)
    return names
