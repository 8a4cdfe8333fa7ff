# Copyright: (c) 2026, SIGETI data platform team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What the migration reads and refuses: the state row, the facts beyond ``catalog.read_table`` (one round trip
plus one scan for rows outside the periods), the layout check, and every refusal raised before any change
(each names the object, the value and the way out).
"""

from __future__ import annotations

import datetime
import os
import re
import shutil
from typing import TYPE_CHECKING, Any, Sequence

from ansible_collections.sigeti.dwh.plugins.module_utils.catalog import tables as catalog
from ansible_collections.sigeti.dwh.plugins.module_utils.core.bounds import json_value
from ansible_collections.sigeti.dwh.plugins.module_utils.core.errors import InvalidInput
from ansible_collections.sigeti.dwh.plugins.module_utils.core.identifiers import display_name
from ansible_collections.sigeti.dwh.plugins.module_utils.core.records import Facts
from ansible_collections.sigeti.dwh.plugins.module_utils.core.units import format_bytes
from ansible_collections.sigeti.dwh.plugins.module_utils.migration.sql import (
    CAPTURE_TRIGGERS,
    INTEGER_TYPES,
    MAX_NAME,
    STATE_SCHEMA,
    STATE_TABLE,
    derived_name,
    identifier,
    in_ranges,
    migration_names,
    normalize_options,
    split_key,
)

if TYPE_CHECKING:  # names used in annotations only
    from ansible_collections.sigeti.dwh.plugins.module_utils.session.connection import Connection, ServerFacts

try:
    from psycopg2 import sql
except ImportError:  # reported by the connection layer
    sql = None


def validate_layout(
    layout: Sequence[dict[str, Any]], key_type: str | None, display: str
) -> tuple[list[dict[str, Any]], dict[str, Any] | None]:
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


def read_state(conn: Connection, schema: str, name: str) -> dict[str, Any] | None:
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
                    identifier(STATE_SCHEMA, STATE_TABLE)
                ),
                (schema, name),
            )
            row = cur.fetchone()
    finally:
        conn.autocommit = was
    return row[0] if row else None


def free_disk_bytes(server: ServerFacts | None) -> int | None:
    """Free bytes under the server's data_directory when it is visible from here (module on the DB host)."""
    path = (server or {}).get("settings", {}).get("data_directory")
    if not path or not os.path.isdir(path):
        return None
    try:
        return shutil.disk_usage(path).free
    except OSError:
        return None


def read_facts(
    conn: Connection,
    table: dict[str, Any],
    layout: Sequence[dict[str, Any]],
    options: dict[str, Any] | None,
    server: ServerFacts,
) -> dict[str, Any]:
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
                    outside = sql.SQL("{} OR NOT ({})").format(outside, in_ranges(key, ranges))
                generated = _stored_generated(table)
                quick = None
                if not generated and columns[key].get("not_null") and _key_leads_an_index(facts, key):
                    quick = _key_bounds_within(cur, table, key, ranges)
                if quick is not None:
                    facts["key_min"], facts["key_max"] = quick
                    return _with_free_disk(facts, options, server)
                cur.execute(
                    sql.SQL(
                        "SELECT count(*) FILTER (WHERE {o}), min({k}) FILTER (WHERE {o}), max({k}) FILTER (WHERE {o}), "
                        "min({k}), max({k}), count(*) FILTER (WHERE {k} IS NULL){g} FROM {t}"
                    ).format(
                        o=outside,
                        k=sql.Identifier(key),
                        g=_generated_drift_sql(generated),
                        t=identifier(table["schema"], table["name"]),
                    )
                )
                out_rows, out_min, out_max, key_min, key_max, null_keys, *drift = cur.fetchone()
                facts["out_of_range"] = {"rows": out_rows, "min": out_min, "max": out_max}
                facts["key_min"], facts["key_max"] = key_min, key_max
                facts["null_keys"] = null_keys
                facts["generated_drift"] = {c["name"]: n for c, n in zip(generated, drift) if n}
    finally:
        conn.autocommit = was
    return _with_free_disk(facts, options, server)


def _with_free_disk(facts, options, server):
    facts["free_bytes"] = free_disk_bytes(server) if options.get("check_disk") else None
    return facts


def _key_leads_an_index(facts, key):
    """Whether a plain index (no predicate) starts with the key column: min() and max() then read its two ends."""
    indexes = (facts.get("hazards") or {}).get("indexes") or []
    return any((i.get("key_columns") or [])[:1] == [key] and not i.get("predicate") for i in indexes)


def _key_bounds_within(cur, table, key, ranges):
    """(min, max) of a NOT NULL, indexed key when every key between them falls in the declared ranges (then no row
    is outside them and the whole-table count is not needed), else None."""
    cur.execute(
        sql.SQL("SELECT min({k}), max({k}) FROM {t}").format(
            k=sql.Identifier(key), t=identifier(table["schema"], table["name"])
        )
    )
    low, high = cur.fetchone()
    if low is None:
        return (None, None)  # no row at all
    return (low, high) if within_ranges(ranges, low, high) else None


def within_ranges(ranges: Sequence[dict[str, Any]], low: Any, high: Any) -> bool:
    """Whether every key from ``low`` to ``high`` (both included) falls in ``ranges`` (sorted by low, as
    ``validate_layout`` returns them; adjacent ranges chain). Values of different kinds never match (pure)."""
    start = end = None
    try:
        for entry in ranges:
            if end is not None and entry["low"] == end:
                end = entry["high"]  # the next range continues the run
            else:
                start, end = entry["low"], entry["high"]
            if start <= low and high < end:
                return True
    except TypeError:  # a date bound against a timestamp value: let the full count decide
        return False
    return False


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


def refuse_unique_without_key(facts: Facts, key: str, display: str) -> None:
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


def own_leftover_indexes(table: Facts, pk: Facts | None) -> set[str]:
    """Names of indexes an interrupted attach migration built on the table (never carried as the user's)."""
    if pk is None:
        return set()
    tmp = derived_name(pk["name"], "_sgt_pk")
    return {i["name"] for i in table["indexes"] if i["name"] == tmp}


def assigns_column(source: str, column: str) -> bool:
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


def hazard_warnings(table: Facts, facts: Facts, display: str) -> list[str]:
    """What the migration cannot carry and only reports (each named, with what to do after it)."""
    hazards = facts.get("hazards") or {}
    warnings = []
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


def refuse_hazards(
    table: Facts, facts: Facts, options: Facts, key: str, display: str, new_pk_columns: Sequence[str] | None
) -> None:
    """Refuse, before any change, what a partitioned copy cannot carry; each message names the object and the way out."""
    hazards = facts.get("hazards") or {}
    _refuse_structure(table, hazards, key, display)
    _refuse_constraints(table, facts, hazards, options["mode"], display)
    _refuse_key_triggers(hazards, key, display)
    _refuse_state_privileges(hazards, facts, display)
    _refuse_publications(hazards, display)
    _refuse_data(table, facts, key, display, new_pk_columns)


def _refuse_publications(hazards, display):
    """A publication keeps publishing under the table's name only with publish_via_partition_root; the swap moves
    the membership to the partitioned table, which needs the publication's owner."""
    for publication in hazards.get("publications") or []:
        name = publication["name"]
        if not publication["via_root"]:
            raise InvalidInput(
                "%s is in publication %s, which publishes a partitioned table's changes under each partition's name: "
                "subscribers would stop receiving %s after the migration. Run ALTER PUBLICATION %s SET "
                "(publish_via_partition_root = true) (or remove %s from it) first; nothing was changed"
                % (display, name, display, name, display)
            )
        if not publication["owned"]:
            raise InvalidInput(
                "%s is in publication %s, whose membership the swap moves to the partitioned table: that needs the "
                "publication's owner. Run the migration as its owner (or a member of it); nothing was changed"
                % (display, name)
            )


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
    if pk is not None and mode == "attach" and split_key(pk["definition"])[1].strip():
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
        if assigns_column(trig.get("source") or "", key):
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


# --- the checks of plan_migration, in the order it makes them (the first refusal met is the one reported) ---


def refuse_table(table: Facts, mode: str, display: str) -> None:
    """Only a plain table migrates, and only when a migrate mode other than ``never`` is declared."""
    if table.get("relkind") != "r":
        raise InvalidInput("%s is not a plain table: nothing to migrate" % display)
    if mode == "never":
        raise InvalidInput(
            "%s is a plain (unpartitioned) table and migrate is 'never': set migrate to online (copy beside it, "
            "writers blocked about a second), offline (one transaction, writes blocked) or attach (the table "
            "becomes one partition, no copy)" % display
        )


def refuse_taken(table: Facts, layout: Sequence[Facts], facts: Facts, names: Facts, display: str) -> None:
    """Names the migration creates must be free (its own, from a run in progress, aside); a permanent table only."""
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


def new_primary_key(pk: Facts | None, key: str, options: Facts, display: str) -> tuple[list[str] | None, list[str]]:
    """The partitioned table's primary key columns (the key appended when allowed) and the warning it gives."""
    if pk is None:
        return None, []
    new_pk_columns = list(pk["columns"])
    if key in pk["columns"]:
        return new_pk_columns, []
    if not options["extend_primary_key"]:
        raise InvalidInput(
            "the primary key of %s is (%s) and does not include the partition key %s: PostgreSQL requires a "
            "partitioned table's primary key to include it. Set extend_primary_key: true to make it (%s), "
            "nothing was changed" % (display, ", ".join(pk["columns"]), key, ", ".join(pk["columns"] + [key]))
        )
    new_pk_columns.append(key)
    warning = "primary key of %s extended to (%s): uniqueness of (%s) alone is no longer enforced" % (
        display,
        ", ".join(new_pk_columns),
        ", ".join(pk["columns"]),
    )
    return new_pk_columns, [warning]


def refuse_exclusion(constraints: Sequence[Facts], display: str) -> None:
    """An exclusion constraint cannot be carried to a partitioned table: refused, naming it."""
    for con in constraints:
        if con["type"] == "x":
            raise InvalidInput(
                "exclusion constraint %s of %s cannot be carried to a partitioned table automatically; "
                "drop it first" % (con["name"], display)
            )


def refuse_foreign_keys_in(facts: Facts, key: str, new_pk_columns: Sequence[str] | None, display: str) -> None:
    """A foreign key of another table must reference columns that stay unique once partitioned."""
    unique_sets = [set(c["columns"]) for c in facts["constraints"] if c["type"] == "u"]
    if new_pk_columns:
        unique_sets.append(set(new_pk_columns))
    for fk in facts["foreign_keys_in"]:
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


def refuse_self_foreign_keys(table: Facts, facts: Facts, display: str) -> None:
    """A foreign key of the table referencing the table itself is not carried: the shadow's would reference the
    original (its definition names the table, which the original still is before the swap)."""
    for con in facts["constraints"]:
        ref = con.get("references") if con["type"] == "f" else None
        if ref and (ref["schema"], ref["name"]) == (table["schema"], table["name"]):
            raise InvalidInput(
                "foreign key %s of %s references %s itself: a migration does not carry it. Drop it first (ALTER "
                "TABLE %s DROP CONSTRAINT %s) and add it back on the partitioned table afterwards if the columns it "
                "references stay unique there (a unique key of a partitioned table includes its partition key); "
                "nothing was changed" % (con["name"], display, display, display, con["name"])
            )


def refuse_stacked_matviews(facts: Facts, display: str) -> None:
    """A materialized view read by other views cannot be rebuilt beside itself and swapped."""
    for view in facts["views"]:
        if view["kind"] == "materialized view" and view.get("dependents"):
            raise InvalidInput(
                "materialized view %s depends on %s and is itself read by %s: rebuilding it would need those dropped "
                "too. Drop them first or migrate offline by hand"
                % (display_name(view["schema"], view["name"]), display, ", ".join(view["dependents"]))
            )


def user_triggers_checked(facts: Facts, display: str) -> list[Facts]:
    """The table's own triggers (not the migration's capture triggers), refused when a partitioned table can't hold them."""
    user_triggers = [t for t in facts["triggers"] if t["name"] not in CAPTURE_TRIGGERS]
    for trig in user_triggers:
        if "REFERENCING" in trig["definition"] and "FOR EACH ROW" in trig["definition"]:
            raise InvalidInput(
                "trigger %s of %s uses transition tables FOR EACH ROW, which partitioned tables refuse"
                % (trig["name"], display)
            )
    return user_triggers


def replay_key_columns(
    pk: Facts | None, constraints: Sequence[Facts], columns: Sequence[Facts], display: str
) -> list[str]:
    """The columns naming a row for the online replay: the primary key, else a unique key on NOT NULL columns."""
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
    return replay_key


def default_rows_checked(facts: Facts, default: Any, key: str, display: str) -> tuple[int, list[str]]:
    """Rows outside every period: refused without a default partition, else counted and reported."""
    out = facts.get("out_of_range") or {}
    if not out.get("rows"):
        return 0, []
    if default is None:
        raise InvalidInput(
            "%d rows of %s have a %s outside every declared period (min %s, max %s%s): add periods covering them "
            "or a default partition; nothing was changed"
            % (
                out["rows"],
                display,
                key,
                json_value(out.get("min")),
                json_value(out.get("max")),
                ", some are NULL" if out.get("min") is None else "",
            )
        )
    warning = "%d rows of %s fall outside every period and go to the default partition %s (min %s, max %s)" % (
        out["rows"],
        display,
        default["name"],
        json_value(out.get("min")),
        json_value(out.get("max")),
    )
    return out["rows"], [warning]


def disk_needed(table: Facts, facts: Facts, mode: str, display: str) -> tuple[int, int | None]:
    """``(bytes needed, bytes free)``; refused when the copy would not fit (a run in progress is not re-checked)."""
    source_bytes = (table.get("heap_bytes") or 0) + (table.get("toast_bytes") or 0) + (table.get("index_bytes") or 0)
    need = 0 if mode == "attach" else int(source_bytes * 1.1)
    free = facts.get("free_bytes")
    if free is not None and need > free and facts.get("state") is None:
        raise InvalidInput(
            "migrating %s needs about %s of free disk (a copy of the table and its indexes) but the "
            "server's data directory has %s free: free space first or use migrate: attach"
            % (display, format_bytes(need), format_bytes(free))
        )
    return need, free
