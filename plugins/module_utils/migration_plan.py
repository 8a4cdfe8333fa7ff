# Copyright: (c) 2026, SIGETI data platform team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""``plan_migration``: validate everything, build the context once and hand it to the mode's phases (pure);
``render_plan`` / ``plan_queries`` show a plan in check mode.
"""

from __future__ import annotations

from ansible_collections.sigeti.dwh.plugins.module_utils.errors import DwhError, InvalidInput
from ansible_collections.sigeti.dwh.plugins.module_utils.identifiers import display_name

try:
    from psycopg2 import sql
except ImportError:  # reported by the connection layer
    sql = None
from ansible_collections.sigeti.dwh.plugins.module_utils.migration_attach import (
    _attach_phases,
)
from ansible_collections.sigeti.dwh.plugins.module_utils.migration_facts import (
    _hazard_warnings,
    _own_leftover_indexes,
    _refuse_hazards,
    _refuse_unique_without_key,
    validate_layout,
)
from ansible_collections.sigeti.dwh.plugins.module_utils.migration_online import (
    _copy_phases,
)
from ansible_collections.sigeti.dwh.plugins.module_utils.migration_sql import (
    CAPTURE_TRIGGERS,
    _human_bytes,
    _json_value,
    migration_names,
    normalize_options,
)


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
