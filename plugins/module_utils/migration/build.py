# Copyright: (c) 2026, SIGETI data platform team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What every mode builds (pure): the partitioned shadow and its partitions (``shadow_steps``), its indexes,
keys and foreign keys once filled (``build_units``), and the units run after the swap (``post_units``:
validate re-pointed foreign keys, rebuild materialized views, ANALYZE, cleanup).
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

from ansible_collections.sigeti.dwh.plugins.module_utils.core.bounds import json_value
from ansible_collections.sigeti.dwh.plugins.module_utils.core.errors import InvalidInput
from ansible_collections.sigeti.dwh.plugins.module_utils.core.identifiers import display_name
from ansible_collections.sigeti.dwh.plugins.module_utils.migration.sql import (
    STATE_SCHEMA,
    bound_literal,
    derived_name,
    grant_steps,
    identifier,
    join_sql,
    key_definition,
)
from ansible_collections.sigeti.dwh.plugins.module_utils.plan.steps import (
    ACCESS_EXCLUSIVE,
    SHARE_UPDATE_EXCLUSIVE,
    Step,
)

if TYPE_CHECKING:  # names used in annotations only
    from psycopg2.sql import Composable

try:
    from psycopg2 import sql
except ImportError:  # reported by the connection layer
    sql = None


@dataclasses.dataclass(frozen=True)
class MigrationContext:
    """What the phase builders of every mode read, built once by ``plan_migration`` (catalog facts as dicts).

    The attach mode derives its own copy (``dataclasses.replace``) naming the partitions it creates beside the
    attached original and its range check; nothing writes into a context.
    """

    table: dict
    facts: dict
    options: dict
    names: dict
    key: str
    ranges: list
    default: dict | None
    pk: dict | None
    new_pk_columns: list | None
    plain_indexes: list
    own_indexes: set
    user_triggers: list
    replay_key: list | None
    replay_key_types: list | None
    columns: dict
    display: str
    server: dict
    insert_cols: list
    overriding: Any
    # attach mode only: the periods not covered by the attached original, and its range CHECK's name
    partitions_to_create: list | None = None
    range_check: str | None = None


def _matview_index_steps(schema, index, target):
    """One index of a materialized view: built on the replacement, then (at the swap) renamed and commented."""
    tmp_index = derived_name(index["name"], "_sgt_new")
    build = Step(
        sql.SQL("CREATE {}INDEX {} ON {} {}").format(
            sql.SQL("UNIQUE " if index["unique"] else ""), sql.Identifier(tmp_index), target, sql.SQL(index["tail"])
        ),
        "index %s of the materialized view" % index["name"],
    )
    renames = [
        Step(
            sql.SQL("ALTER INDEX {} RENAME TO {}").format(identifier(schema, tmp_index), sql.Identifier(index["name"])),
            "index keeps its name",
        )
    ]
    if index.get("comment"):
        renames.append(
            Step(
                sql.SQL("COMMENT ON INDEX {} IS {}").format(
                    identifier(schema, index["name"]), sql.Literal(index["comment"])
                ),
                "index comment",
            )
        )
    return build, renames


def _matview_build(view, target):
    """The replacement of one materialized view built beside it: dropped if left over, created, owned, granted."""
    schema, name = view["schema"], view["name"]
    options = sql.SQL("")
    if view.get("options"):
        options = sql.SQL(" WITH ({})").format(join_sql([sql.SQL(o) for o in view["options"]]))
    return [
        Step(
            sql.SQL("DROP MATERIALIZED VIEW IF EXISTS {}").format(target), "leftover of an interrupted rebuild, if any"
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


def _matview_finish(view, target):
    """Owner, grants and comment of the replacement, as the original's."""
    steps = [
        Step(
            sql.SQL("ALTER MATERIALIZED VIEW {} OWNER TO {}").format(target, sql.Identifier(view["owner"])),
            "same owner",
        )
    ]
    steps.extend(grant_steps(view.get("grants") or [], [], target, "same grants"))
    if view.get("comment"):
        steps.append(
            Step(
                sql.SQL("COMMENT ON MATERIALIZED VIEW {} IS {}").format(target, sql.Literal(view["comment"])),
                "same comment",
            )
        )
    return steps


def _matview_units(views):
    """Per materialized view: build its replacement beside it (no lock on readers), then swap the names."""
    units = []
    for view in views:
        if view["kind"] != "materialized view":
            continue
        schema, name = view["schema"], view["name"]
        target = identifier(schema, derived_name(name, "_sgt_new"))
        build, renames = _matview_build(view, target), []
        for index in view.get("indexes") or []:
            index_build, index_renames = _matview_index_steps(schema, index, target)
            build.append(index_build)
            renames.extend(index_renames)
        build.extend(_matview_finish(view, target))
        swap = [
            Step(
                sql.SQL("DROP MATERIALIZED VIEW {}").format(identifier(schema, name)),
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


def new_partitions(ctx: MigrationContext, with_default: bool = False) -> list[dict[str, Any]]:
    """The partitions the migration creates (``{name, low, high}``; the default's ``{name, default}`` last with
    ``with_default``): every declared one, or in attach mode those beside the attached original."""
    entries = list(ctx.ranges if ctx.partitions_to_create is None else ctx.partitions_to_create)
    if with_default and ctx.default:
        entries.append(ctx.default)
    return entries


def shadow_steps(ctx: MigrationContext, shadow: str) -> list[Step]:
    """Create the partitioned shadow and its partitions, with leaf-level reloptions, owner and comment."""
    table, names, key = ctx.table, ctx.names, ctx.key
    target = identifier(names["schema"], shadow)
    steps = [
        Step(
            sql.SQL(
                "CREATE TABLE {} (LIKE {} INCLUDING DEFAULTS INCLUDING CONSTRAINTS INCLUDING GENERATED INCLUDING IDENTITY "
                "INCLUDING STATISTICS INCLUDING STORAGE INCLUDING COMPRESSION INCLUDING COMMENTS) PARTITION BY RANGE ({})"
            ).format(target, identifier(names["schema"], names["name"]), sql.Identifier(key)),
            "partitioned copy of %s: same columns, defaults, NOT NULL and CHECK constraints, no index yet"
            % ctx.display,
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
            join_sql(
                [
                    sql.SQL("{} = {}").format(sql.SQL(o.split("=", 1)[0]), sql.Literal(o.split("=", 1)[1]))
                    for o in options
                ]
            )
        )
    if ctx.range_check:
        steps.append(
            Step(
                sql.SQL("ALTER TABLE {} DROP CONSTRAINT IF EXISTS {}").format(target, sql.Identifier(ctx.range_check)),
                "the attach range check belongs to the old table only",
            )
        )
    for entry in new_partitions(ctx):
        steps.append(
            Step(
                sql.SQL("CREATE TABLE {} PARTITION OF {} FOR VALUES FROM ({}) TO ({}){}").format(
                    identifier(names["schema"], entry["name"]),
                    target,
                    bound_literal(entry["low"]),
                    bound_literal(entry["high"]),
                    with_clause,
                ),
                "partition for [%s, %s)" % (json_value(entry["low"]), json_value(entry["high"])),
            )
        )
    if ctx.default:
        steps.append(
            Step(
                sql.SQL("CREATE TABLE {} PARTITION OF {} DEFAULT{}").format(
                    identifier(names["schema"], ctx.default["name"]), target, with_clause
                ),
                "default partition: rows outside every period",
            )
        )
    for entry in new_partitions(ctx, with_default=True):
        steps.append(
            Step(
                sql.SQL("ALTER TABLE {} OWNER TO {}").format(
                    identifier(names["schema"], entry["name"]), sql.Identifier(table["owner"])
                ),
                "same owner on the partition",
            )
        )
    return steps


def _index_reloptions(ctx, index_name):
    for index in (ctx.facts.get("hazards") or {}).get("indexes") or []:
        if index["name"] == index_name:
            return index.get("reloptions") or []
    return []


def _not_valid_checks(ctx):
    """CHECK constraints the original holds NOT VALID: old rows may break them, so the copy must not check them."""
    own = derived_name(ctx.names["name"], "_sgt_range")
    return [c for c in ctx.facts["constraints"] if c["type"] == "c" and not c["validated"] and c["name"] != own]


def add_constraint(target: Composable, name: str, definition: Composable, reason: str, **step: Any) -> Step:
    """``ALTER TABLE target ADD CONSTRAINT name definition``: every key, check and foreign key the migration adds."""
    return Step(
        sql.SQL("ALTER TABLE {} ADD CONSTRAINT {} {}").format(target, sql.Identifier(name), definition), reason, **step
    )


# the most memory an index build of the migration asks for (never less than the server's maintenance_work_mem)
BUILD_MEMORY_CAP = 256 * 1024 * 1024


def build_memory_step(ctx: MigrationContext) -> Step:
    """SET LOCAL maintenance_work_mem for the index builds: the server's value, raised up to the table's heap size
    (at most ``BUILD_MEMORY_CAP``), so a partition's sort stays in memory and the build may take parallel workers
    (each needs 32 MB of it); the transaction's end restores it."""
    heap = max(int(ctx.table.get("heap_bytes") or 0), 0)
    wanted = min(heap, BUILD_MEMORY_CAP)
    return Step(
        sql.SQL(
            "SELECT set_config('maintenance_work_mem', (greatest(pg_size_bytes(current_setting('maintenance_work_mem')), "
            "{}::bigint) / 1024)::bigint || 'kB', true)"
        ).format(sql.Literal(wanted)),
        "memory for the index builds: up to %d MB (the table's heap size), never less than the server's, for this "
        "transaction only" % (wanted // (1024 * 1024)),
    )


def build_units(
    ctx: MigrationContext,
    shadow: str,
    validate_separately: bool = True,
    memory: bool = True,
    foreign_keys: bool = True,
) -> list[list[Step]]:
    """Indexes, keys and foreign keys on the filled shadow, under temporary names, one unit each; each key or index
    unit first sizes its memory (``memory``; the offline mode does it once for its one transaction). Without
    ``foreign_keys`` they are left out (the online mode adds them last: ``foreign_key_units``)."""
    target = identifier(ctx.names["schema"], shadow)
    steps = []
    for con in _not_valid_checks(ctx):
        # pg_get_constraintdef ends with NOT VALID: no scan, new rows are checked as on the original
        steps.append(
            add_constraint(
                target, con["name"], sql.SQL(con["definition"]), "check %s, NOT VALID as on the original" % con["name"]
            )
        )
    builds = _key_steps(ctx, target) + _index_steps(ctx, target)
    sized = {id(step) for step in builds} if memory else set()
    steps.extend(builds)
    if foreign_keys:
        for con in ctx.facts["constraints"]:
            if con["type"] == "f":
                steps.extend(_foreign_key_steps(ctx, target, con, validate_separately))
    steps.extend(_column_setting_steps(ctx, target))
    return [[build_memory_step(ctx), step] if id(step) in sized else [step] for step in steps]


def outgoing_foreign_keys(ctx: MigrationContext) -> list[dict[str, Any]]:
    """The original's foreign keys (to other tables or itself): the partitioned table gets them too."""
    return [con for con in ctx.facts["constraints"] if con["type"] == "f"]


def leaf_foreign_key_steps(ctx: MigrationContext) -> list[Step]:
    """The online swap's foreign keys: on each new partition, NOT VALID (catalog work, no scan: new rows are checked
    from the commit on; the rows copied are the original's, which satisfy them, and ``foreign_key_post_units``
    proves it after the swap). Added after the swap's replay: no replayed row is checked one by one against the
    referenced table (against its hot rows, that check is what stalled the catch-up)."""
    steps = []
    for con in outgoing_foreign_keys(ctx):
        for entry in new_partitions(ctx, with_default=True):
            steps.append(
                add_constraint(
                    identifier(ctx.names["schema"], entry["name"]),
                    con["name"],
                    sql.SQL(con["definition"]) + sql.SQL(" NOT VALID"),
                    "foreign key %s on partition %s, NOT VALID: validated after the swap"
                    % (con["name"], entry["name"]),
                )
            )
    return steps


def foreign_key_post_units(ctx: MigrationContext, parent_lock: list[Step]) -> list[tuple[str, list[Step]]]:
    """After the online swap, per foreign key: VALIDATE on each partition (one transaction each: SHARE UPDATE
    EXCLUSIVE on it, ROW SHARE on the referenced table, writers of both go on), then the constraint on the parent,
    which adopts the validated ones (a partitioned table takes no NOT VALID foreign key before PostgreSQL 18):
    ``parent_lock`` (the referenced tables, then the parent: ``plan.locks``) first, for the little time it
    takes (no scan)."""
    schema, parent = ctx.names["schema"], ctx.names["name"]
    units = []
    for con in outgoing_foreign_keys(ctx):
        for entry in new_partitions(ctx, with_default=True):
            units.append(
                (
                    "validate %s on %s" % (con["name"], entry["name"]),
                    [
                        Step(
                            sql.SQL("ALTER TABLE {} VALIDATE CONSTRAINT {}").format(
                                identifier(schema, entry["name"]), sql.Identifier(con["name"])
                            ),
                            "validate %s on partition %s without blocking writers" % (con["name"], entry["name"]),
                            lock=SHARE_UPDATE_EXCLUSIVE,
                        )
                    ],
                )
            )
        units.append(
            (
                "foreign key %s" % con["name"],
                list(parent_lock)
                + [
                    add_constraint(
                        identifier(schema, parent),
                        con["name"],
                        sql.SQL(con["definition"]),
                        "foreign key %s on the parent: adopts the partitions' validated constraints" % con["name"],
                    )
                ],
            )
        )
    return units


def _key_steps(ctx, target):
    """Primary key and unique constraints under temporary names (they take the original's at the swap)."""
    steps = []
    for con in ctx.facts["constraints"]:
        if con["type"] == "p":
            steps.append(
                add_constraint(
                    target,
                    derived_name(con["name"], "_sgt_new"),
                    key_definition(con["definition"], ctx.new_pk_columns, _index_reloptions(ctx, con["index"])),
                    "primary key (%s), with the original's INCLUDE, storage parameters and deferrability"
                    % ", ".join(ctx.new_pk_columns),
                )
            )
        elif con["type"] == "u":
            steps.append(
                add_constraint(
                    target,
                    derived_name(con["name"], "_sgt_new"),
                    key_definition(con["definition"], con["columns"], _index_reloptions(ctx, con["index"])),
                    "unique constraint %s" % con["name"],
                )
            )
    return steps


def _index_steps(ctx, target):
    tails = ctx.facts.get("index_tails") or {}
    steps = []
    for index in ctx.plain_indexes:
        tail = tails.get(index["name"])
        if not tail:
            raise InvalidInput("cannot read the definition of index %s of %s" % (index["name"], ctx.display))
        steps.append(
            Step(
                sql.SQL("CREATE {}INDEX {} ON {} {}").format(
                    sql.SQL("UNIQUE " if index["is_unique"] else ""),
                    sql.Identifier(derived_name(index["name"], "_sgt_new")),
                    target,
                    sql.SQL(tail),
                ),
                "index %s, built once on the filled partitions" % index["name"],
            )
        )
    return steps


def _foreign_key_steps(ctx, target, con, validate_separately):
    """A foreign key on the filled shadow in one statement (offline: its transaction holds the referenced tables
    already); ``validate_separately`` (the online mode) leaves it out: ``leaf_foreign_key_steps`` at the swap."""
    if validate_separately:
        return []
    suffix = sql.SQL("" if con["validated"] else " NOT VALID")
    return [add_constraint(target, con["name"], sql.SQL(con["definition"]) + suffix, "foreign key %s" % con["name"])]


def _column_setting_steps(ctx, target):
    """Per-column statistics targets and options (n_distinct...), as on the original."""
    steps = []
    for column in ctx.table["columns"]:
        if column.get("statistics_target") is not None:
            steps.append(
                Step(
                    sql.SQL("ALTER TABLE {} ALTER COLUMN {} SET STATISTICS {}").format(
                        target, sql.Identifier(column["name"]), sql.Literal(int(column["statistics_target"]))
                    ),
                    "same statistics target",
                )
            )
    for item in ctx.facts.get("column_options") or []:
        steps.append(
            Step(
                sql.SQL("ALTER TABLE {} ALTER COLUMN {} SET ({})").format(
                    target,
                    sql.Identifier(item["column"]),
                    join_sql(
                        [
                            sql.SQL("{} = {}").format(sql.SQL(o.split("=", 1)[0]), sql.Literal(o.split("=", 1)[1]))
                            for o in item["options"]
                        ]
                    ),
                ),
                "same column options",
            )
        )
    return steps


def analyze_unit(ctx: MigrationContext, relation: str) -> tuple[str, list[Step]]:
    """ANALYZE of the new partitioned table (it recurses into the partitions): autovacuum never analyzes a parent."""
    return (
        "analyze",
        [
            Step(
                sql.SQL("ANALYZE {}").format(identifier(ctx.names["schema"], relation)),
                "autovacuum never analyzes a partitioned parent",
                fresh_statistics=True,  # the copy's counters first, or the next run finds them unanalyzed
            )
        ],
    )


def post_units(ctx: MigrationContext, drop_log: bool, analyze: bool = True) -> list[tuple[str, list[Step]]]:
    """Units that run after the swap committed; rendered into the state row by the swap itself. ``analyze``: the
    ANALYZE of the new table is one of them (online mode runs it before its swap instead)."""
    names, facts = ctx.names, ctx.facts
    units = []
    for fk in facts["foreign_keys_in"]:
        if fk.get("validated", True):
            units.append(
                (
                    "validate %s" % fk["name"],
                    [
                        Step(
                            sql.SQL("ALTER TABLE {} VALIDATE CONSTRAINT {}").format(
                                identifier(fk["schema"], fk["table"]), sql.Identifier(fk["name"])
                            ),
                            "validate the re-pointed foreign key (SHARE UPDATE EXCLUSIVE: writers go on)",
                            lock=SHARE_UPDATE_EXCLUSIVE,
                        )
                    ],
                )
            )
    units.extend(_matview_units(facts["views"]))
    if analyze:
        units.append(analyze_unit(ctx, names["name"]))
    cleanup = []
    if drop_log:
        cleanup.append(
            Step(
                sql.SQL("DROP TABLE IF EXISTS {}").format(identifier(STATE_SCHEMA, names["log"])),
                "the change log is no longer needed",
            )
        )
        cleanup.append(
            Step(
                sql.SQL("DROP FUNCTION IF EXISTS {}()").format(identifier(STATE_SCHEMA, names["function"])),
                "the capture function is no longer needed",
            )
        )
    if ctx.options["drop_source"] and ctx.options["mode"] != "attach":
        cleanup.append(
            Step(
                sql.SQL("DROP TABLE {}").format(identifier(names["schema"], names["unpartitioned"])),
                "drop_source: the original is no longer kept",
                lock=ACCESS_EXCLUSIVE,
                targets=[(names["schema"], names["unpartitioned"])],
            )
        )
    units.append(("cleanup", cleanup))
    return units
