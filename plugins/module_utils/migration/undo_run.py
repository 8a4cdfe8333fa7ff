# Copyright: (c) 2026, SIGETI data platform team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The run of ``state: plain``: facts, the undo's refusals and plan (``migration.undo``, pure), one transaction.

Called by ``partitioning.run`` under the table's run lock. A partition set becomes one plain table (offline); a
plain table is left alone (``changed: false``), except that ``drop_source`` drops the set an earlier undo kept.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ansible_collections.sigeti.dwh.plugins.module_utils.catalog import migration as catalog_migration
from ansible_collections.sigeti.dwh.plugins.module_utils.catalog import undo as catalog_undo
from ansible_collections.sigeti.dwh.plugins.module_utils.core.errors import DwhError, InvalidInput
from ansible_collections.sigeti.dwh.plugins.module_utils.core.identifiers import display_name
from ansible_collections.sigeti.dwh.plugins.module_utils.migration import undo
from ansible_collections.sigeti.dwh.plugins.module_utils.plan.executor import Executor

if TYPE_CHECKING:  # names used in annotations only
    from ansible_collections.sigeti.dwh.plugins.module_utils.plan.steps import Step
    from ansible_collections.sigeti.dwh.plugins.module_utils.session.connection import Connection
    from ansible_collections.sigeti.dwh.plugins.module_utils.session.context import RunContext

try:
    import psycopg2
except ImportError:  # reported by the connection layer
    psycopg2 = None

MODES = ("offline",)


def run_undo(context: RunContext, conn: Connection, schema: str, name: str) -> dict[str, Any]:
    """``state: plain`` for ``schema.name``: return the module result (the plan only, in check mode)."""
    params = context.params
    names = undo.undo_names(schema, name)
    shown = display_name(schema, name)
    kinds = catalog_undo.relation_kinds(conn, schema, [name, names["kept"]])
    if name not in kinds:
        raise InvalidInput(
            "table %s does not exist: state plain turns an existing partition set into a plain table" % shown
        )
    if kinds[name] == "r":
        steps = undo.drop_kept_steps(names) if params.get("drop_source") and kinds.get(names["kept"]) == "p" else []
        return _apply(context, conn, names, steps, {"kept": None if steps else _kept(kinds, names)})
    if kinds[name] != "p":
        raise InvalidInput("%s is not a table (relkind %s): state plain needs a partition set" % (shown, kinds[name]))
    if params.get("migrate") not in MODES:
        raise InvalidInput(
            "state plain with migrate %s for %s is not available yet: use migrate: offline (one transaction, writers "
            "wait for the whole copy, readers go on); nothing was changed" % (params.get("migrate"), shown)
        )
    steps = _plan(conn, names, shown, bool(params.get("drop_source")))
    return _apply(context, conn, names, steps, {"kept": None if params.get("drop_source") else names["kept"]})


def _kept(kinds, names):
    return names["kept"] if kinds.get(names["kept"]) == "p" else None


def _plan(conn: Connection, names: dict[str, str], shown: str, drop_source: bool) -> list[Step]:
    """Read the set's facts, refuse what cannot be carried (before any change), return the undo's steps."""
    oid = catalog_undo.relation_oid(conn, names["schema"], names["name"])
    facts = catalog_migration.migration_facts(conn, oid)
    hazards = catalog_migration.migration_hazards(conn, oid)
    found = catalog_undo.undo_facts(conn, oid)
    taken = list(catalog_undo.relation_kinds(conn, names["schema"], [names["kept"]]))
    refused = undo.refusals(names, facts, hazards, found, taken)
    if refused:
        raise InvalidInput(
            "%s cannot go back to a plain table as it is: %s. Nothing was changed." % (shown, "; ".join(refused)),
            refused=refused,
        )
    return undo.plan_undo(names, facts, found, drop_source=drop_source)


def _apply(context: RunContext, conn: Connection, names: dict[str, str], steps: list[Step], extra: dict[str, Any]):
    shown = display_name(names["schema"], names["name"])
    result = {
        "changed": bool(steps),
        "queries": [s.render(conn) for s in steps],
        "plan": [s.describe(conn) for s in steps],
        "migration": dict(extra, direction="plain", mode="offline", table=shown),
    }
    if context.diff:
        result["diff"] = {
            "before": "%s: partition set\n" % shown if steps else "",
            "after": "%s: plain table\n" % shown if steps else "",
        }
    if context.check_mode or not steps:
        return result
    executor = Executor.from_options(conn, context.params)
    try:
        result["queries"] = executor.run(steps)
    except psycopg2.Error as error:
        raise DwhError(
            "back to a plain table failed for %s: %s. Its transaction was rolled back: the partition set is "
            "unchanged and in use; fix the cause and run again" % (shown, str(error).strip()),
            sqlstate=getattr(error, "pgcode", None),
        ) from None
    checksums = [s.rows[0] for s in steps if s.rows and "checksum" in s.reason and len(s.rows[0]) == 2]
    if len(checksums) == 2:
        (rows, total), (plain_rows, plain_total) = checksums
        result["migration"]["rows_copied"] = plain_rows
        result["migration"]["checksums"] = {
            "source_rows": rows,
            "target_rows": plain_rows,
            "source_checksum": None if total is None else str(total),
            "target_checksum": None if plain_total is None else str(plain_total),
        }
    return result
