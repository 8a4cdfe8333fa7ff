# Copyright: (c) 2026, SIGETI data platform team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Abandon a half-done migration: find what it left (``read_leftovers``), say it (``describe_leftovers``), drop it
(``abandon_migration``), before the swap only. Also the two execution primitives the runner shares: ``execute_in_units``
(a plan through the Executor, in transaction mode) and ``one_unit`` (steps made one transaction).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Sequence

from ansible_collections.sigeti.dwh.plugins.module_utils.core.errors import InvalidInput
from ansible_collections.sigeti.dwh.plugins.module_utils.core.identifiers import display_name
from ansible_collections.sigeti.dwh.plugins.module_utils.migration.facts import read_state
from ansible_collections.sigeti.dwh.plugins.module_utils.migration.sql import (
    CAPTURE_TRIGGERS,
    STATE_SCHEMA,
    STATE_TABLE,
    derived_name,
    drop_index_steps,
    identifier,
    migration_names,
)
from ansible_collections.sigeti.dwh.plugins.module_utils.plan.steps import (
    ACCESS_EXCLUSIVE,
    SHARE_ROW_EXCLUSIVE,
    Plan,
    Step,
)

if TYPE_CHECKING:  # names used in annotations only
    from ansible_collections.sigeti.dwh.plugins.module_utils.plan.executor import Executor
    from ansible_collections.sigeti.dwh.plugins.module_utils.session.connection import Connection

try:
    from psycopg2 import sql
except ImportError:  # reported by the connection layer
    sql = None


def execute_in_units(executor: Executor, plan: Plan) -> Any:
    """Run a plan through the Executor in transaction mode (it commits each unit; autocommit would split them)."""
    if executor.conn.autocommit:
        executor.conn.autocommit = False
    return executor.run(plan)


def one_unit(steps: Sequence[Step], group: str) -> Plan:
    """A Plan whose steps all run in one transaction (steps that cannot, like CREATE INDEX CONCURRENTLY, alone)."""
    for step in steps:
        step.group = group
    return Plan(steps)


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


def read_leftovers(conn: Connection, names: dict[str, str]) -> dict[str, Any]:
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
    src = identifier(names["schema"], names["name"])
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
                sql.SQL("DROP TABLE IF EXISTS {}").format(identifier(names["schema"], names["shadow"])),
                "partitioned shadow %s and its partitions" % display_name(names["schema"], names["shadow"]),
            )
        )
    if found["log"]:
        steps.append(
            Step(
                sql.SQL("DROP TABLE IF EXISTS {}").format(identifier(STATE_SCHEMA, names["log"])),
                "change log %s" % display_name(STATE_SCHEMA, names["log"]),
            )
        )
    if found["function"]:
        steps.append(
            Step(
                sql.SQL("DROP FUNCTION IF EXISTS {}()").format(identifier(STATE_SCHEMA, names["function"])),
                "capture function %s" % display_name(STATE_SCHEMA, names["function"]),
            )
        )
    if found["state"] is not None:
        steps.append(
            Step(
                sql.SQL("DELETE FROM {} WHERE schema_name = {} AND table_name = {}").format(
                    identifier(STATE_SCHEMA, STATE_TABLE), sql.Literal(names["schema"]), sql.Literal(names["name"])
                ),
                "state row (phase %s)" % found["state"]["phase"],
            )
        )
    return steps


def _names_of(table_or_names):
    return table_or_names if "shadow" in table_or_names else migration_names(table_or_names)


def plan_abandon(conn: Connection, table_or_names: dict[str, Any]) -> tuple[list[Step], list[Step]]:
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
    return _abandon_steps(names, found), drop_index_steps(names, found["indexes"])


def describe_leftovers(conn: Connection, table: dict[str, Any]) -> str | None:
    """One line naming an unfinished migration of ``table`` (phase, mode, start) and what it left, or None."""
    names = migration_names(table)
    found = read_leftovers(conn, names)
    parts = [s.reason for s in _abandon_steps(names, found) + drop_index_steps(names, found["indexes"])]
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


def abandon_migration(
    conn: Connection, executor: Executor, table_or_names: dict[str, Any]
) -> tuple[list[str], list[str]]:
    """Drop everything an unfinished (pre-swap) migration left: capture triggers, attach's range check and
    prebuilt index, shadow and its partitions, change log, capture function, state row.

    The original table keeps its rows, indexes and constraints. Returns ``(removed, queries)``: what was dropped
    (one line each, in the warehouse's words) and the statements that ran. Refuses after the swap committed.
    """
    names = _names_of(table_or_names)
    steps, index_steps = plan_abandon(conn, names)
    removed = [s.reason for s in steps]
    queries = execute_in_units(executor, one_unit(steps, "sigeti-migration-abandon")) if steps else []
    if index_steps:
        queries += execute_in_units(executor, Plan(index_steps))
        removed += [s.reason for s in index_steps]
    return removed, queries
