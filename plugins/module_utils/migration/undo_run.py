# Copyright: (c) 2026, SIGETI data platform team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The run of ``state: plain``: facts, the undo's refusals and plan (``migration.undo``, ``migration.undo_online``,
pure), executed through the one Executor (lock_timeout, retries, the blocker named).

Called by ``partitioning.run`` under the table's run lock. A partition set becomes one plain table (offline: one
transaction; online: capture, copy, catch-up, verify, short swap); a plain table is left alone (``changed: false``),
except that ``drop_source`` drops the set an earlier undo kept. What an online run killed before its swap left (change
log, capture trigger, shadow) is dropped by the next run, which starts again (``migrate: abandon`` drops only that).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from ansible_collections.sigeti.dwh.plugins.module_utils.catalog import migration as catalog_migration
from ansible_collections.sigeti.dwh.plugins.module_utils.catalog import undo as catalog_undo
from ansible_collections.sigeti.dwh.plugins.module_utils.core.errors import DwhError, InvalidInput, LockNotGranted
from ansible_collections.sigeti.dwh.plugins.module_utils.core.identifiers import display_name
from ansible_collections.sigeti.dwh.plugins.module_utils.migration import undo, undo_online
from ansible_collections.sigeti.dwh.plugins.module_utils.plan.executor import Executor

if TYPE_CHECKING:  # names used in annotations only
    from ansible_collections.sigeti.dwh.plugins.module_utils.plan.steps import Step
    from ansible_collections.sigeti.dwh.plugins.module_utils.session.connection import Connection
    from ansible_collections.sigeti.dwh.plugins.module_utils.session.context import RunContext

try:
    import psycopg2
except ImportError:  # reported by the connection layer
    psycopg2 = None

MODES = ("offline", "online")


def run_undo(context: RunContext, conn: Connection, schema: str, name: str) -> dict[str, Any]:
    """``state: plain`` for ``schema.name``: return the module result (the plan only, in check mode)."""
    params = context.params
    names = undo.undo_names(schema, name)
    shown = display_name(schema, name)
    kinds = catalog_undo.relation_kinds(conn, schema, [name, names["kept"], names["log"]])
    if name not in kinds:
        raise InvalidInput(
            "table %s does not exist: state plain turns an existing partition set into a plain table" % shown
        )
    if kinds[name] == "r":
        return _apply(context, conn, names, *_plain_table_steps(conn, names, kinds, bool(params.get("drop_source"))))
    if kinds[name] != "p":
        raise InvalidInput("%s is not a table (relkind %s): state plain needs a partition set" % (shown, kinds[name]))
    mode = params.get("migrate")
    if mode not in MODES + ("abandon",):
        raise InvalidInput(
            "state plain with migrate %s for %s: use migrate: offline (one transaction, writers wait for the whole "
            "copy, readers go on), online (writers go on; a short swap) or abandon; nothing was changed" % (mode, shown)
        )
    planned = _plan(conn, names, shown, mode, bool(params.get("drop_source")), bool(params.get("extend_primary_key")))
    extra = {"kept": None if params.get("drop_source") else names["kept"], "mode": mode}
    if mode == "abandon":
        return _apply(context, conn, names, planned["abandon"], {"mode": mode, "abandoned": planned["leftovers"]})
    if mode == "offline":
        return _apply(context, conn, names, planned["abandon"] + planned["steps"], extra)
    return _run_online(context, conn, names, planned, extra)


def _plain_table_steps(conn: Connection, names: dict[str, str], kinds: dict[str, str], drop_source: bool):
    """On a table already plain: what an online undo killed after its swap left to run (its change log says), and
    with ``drop_source`` the kept set's drop; return the steps and the result's ``migration`` keys."""
    steps, extra = [], {}
    if names["log"] in kinds:
        pending = undo_online.pending_post(catalog_undo.relation_comment(conn, names["schema"], names["log"]))
        if pending is not None:
            steps, extra = undo_online.post_run_steps(names, pending), {"resumed_from": "post"}
    drop = drop_source and kinds.get(names["kept"]) == "p"
    if drop:
        steps += undo.drop_kept_steps(names)
    extra["kept"] = names["kept"] if kinds.get(names["kept"]) == "p" and not drop else None
    return steps, extra


def _plan(
    conn: Connection, names: dict[str, str], shown: str, mode: str, drop_source: bool, narrow: bool
) -> dict[str, Any]:
    """Read the set's facts, refuse what cannot be carried (before any change), return the undo's steps: what an
    earlier online run left (``abandon``), then the mode's steps (offline) or phases (online); ``narrow``
    (``extend_primary_key``): the keys without the partition key."""
    oid = catalog_undo.relation_oid(conn, names["schema"], names["name"])
    names.update(undo_online.capture_names(names, oid))
    facts = catalog_migration.migration_facts(conn, oid)
    hazards = catalog_migration.migration_hazards(conn, oid)
    found = catalog_undo.undo_facts(conn, oid)
    taken = list(catalog_undo.relation_kinds(conn, names["schema"], [names["kept"]]))
    leftovers = sorted(catalog_undo.relation_kinds(conn, names["schema"], [names["log"], names["shadow"]]))
    resume = (
        mode == "online"
        and len(leftovers) == 2
        and catalog_undo.relation_comment(conn, names["schema"], names["log"]) == undo_online.BUILT
    )
    planned = {
        "abandon": [] if resume else undo_online.abandon_steps(names, leftovers),
        "leftovers": leftovers,
        "resume": resume,
    }
    if mode == "abandon":
        return planned
    refused = undo.refusals(names, facts, hazards, found, taken, narrow)
    if mode == "online":
        refused += undo_online.online_refusals(found)
    if refused:
        raise InvalidInput(
            "%s cannot go back to a plain table as it is: %s. Nothing was changed." % (shown, "; ".join(refused)),
            refused=refused,
        )
    if mode == "offline":
        planned["steps"] = undo.plan_undo(names, facts, found, drop_source=drop_source, narrow=narrow)
        return planned
    planned.update(
        prepare=undo_online.prepare_steps(names, found),
        build=undo_online.copy_and_build_steps(names, facts, found, narrow),
        replay=lambda: undo_online.replay_steps(names, found),
        verify=lambda: undo_online.verification_steps(names, found),
        swap=undo_online.online_swap_steps(names, facts, found, drop_source),
        post=undo_online.post_steps(names, facts),
    )
    return planned


def _result(context: RunContext, conn: Connection, names: dict[str, str], steps: list[Step], extra: dict[str, Any]):
    shown = display_name(names["schema"], names["name"])
    result = {
        "changed": bool(steps),
        "queries": [s.render(conn) for s in steps],
        "plan": [s.describe(conn) for s in steps],
        "migration": dict(extra, direction="plain", table=shown),
    }
    if context.diff:
        result["diff"] = {
            "before": "%s: partition set\n" % shown if steps else "",
            "after": "%s: plain table\n" % shown if steps else "",
        }
    return result


def _apply(context: RunContext, conn: Connection, names: dict[str, str], steps: list[Step], extra: dict[str, Any]):
    result = _result(context, conn, names, steps, extra)
    if context.check_mode or not steps:
        return result
    executor = Executor.from_options(conn, context.params)
    try:
        result["queries"] = executor.run(steps)
    except psycopg2.Error as error:
        raise _failed(names, error, "Its transaction was rolled back: the partition set is unchanged and in use")
    _checksums(result, steps)
    return result


def _failed(names, error, consequence):
    return DwhError(
        "back to a plain table failed for %s: %s. %s; fix the cause and run again"
        % (display_name(names["schema"], names["name"]), str(error).strip(), consequence),
        sqlstate=getattr(error, "pgcode", None),
    )


def _checksums(result, steps):
    """The rows and checksums the verification compared, for the result."""
    totals = [s.rows[0] for s in steps if s.rows and s.reason.startswith("rows and ") and len(s.rows[0]) == 2]
    if len(totals) < 2:
        return
    (rows, total), (plain_rows, plain_total) = totals[:2]
    result["migration"]["rows_copied"] = plain_rows
    result["migration"]["checksums"] = {  # the forward migration's shape (no partitions on the plain side)
        "total": {
            "source_rows": rows,
            "target_rows": plain_rows,
            "source_checksum": None if total is None else str(total),
            "target_checksum": None if plain_total is None else str(plain_total),
        },
        "partitions": {},
    }


def _run_online(context: RunContext, conn: Connection, names: dict[str, str], planned: dict[str, Any], extra):
    """The online phases (from the catch-up when an earlier run built the shadow); a failure before the swap
    committed drops what the run built (the set is as it was), a lock not granted keeps it for the next run."""
    first = [] if planned["resume"] else planned["abandon"] + planned["prepare"] + planned["build"]
    shown_steps = first + planned["replay"]() + planned["verify"]() + planned["swap"] + planned["post"]
    extra = dict(extra, phases_run=[], replayed_keys=0, resumed_from="catchup" if planned["resume"] else None)
    result = _result(context, conn, names, shown_steps, extra)
    if context.check_mode:
        return result
    executor = Executor.from_options(conn, context.params)
    info = result["migration"]
    try:
        if first:
            executor.run(first)
            info["phases_run"] += ["prepare", "copy", "build"]
        info["catchup_rounds"] = _catch_up(executor, planned, info)
        verify = planned["verify"]()
        executor.run(verify)
        _checksums(result, verify)
        info["replayed_keys"] += verify[0].rowcount or 0
        info["phases_run"].append("catchup")
        statements = [s.render(conn) for s in planned["post"]]
        swap = undo_online.with_post_mark(planned["swap"], names, statements)
        started = time.monotonic()
        executor.run(swap)
        info["swap_seconds"] = round(time.monotonic() - started, 3)
        info["replayed_keys"] += swap[1].rowcount or 0
    except LockNotGranted as error:
        raise DwhError(
            "back to a plain table (online) stopped for %s before its swap: %s. The partition set is unchanged and in "
            "use; the capture goes on: the next run resumes (at the catch-up once the copy is built), or migrate: "
            "abandon drops what this run built" % (display_name(names["schema"], names["name"]), error.msg),
            **error.details,
        ) from None
    except (psycopg2.Error, DwhError) as error:
        raise _abandon_after_failure(executor, names, error) from None
    info["phases_run"].append("swap")
    try:
        executor.run(undo_online.post_run_steps(names, statements))
    except (psycopg2.Error, DwhError) as error:
        raise _failed(
            names, error, "The plain table is in place; its foreign key validation or ANALYZE is left to the next run"
        )
    info["phases_run"].append("post")
    result["queries"] = executor.executed
    return result


def _catch_up(executor: Executor, planned: dict[str, Any], info: dict[str, Any]) -> int:
    """Replay batches until at most ``CATCHUP_DONE`` keys were logged since the last one (or ``CATCHUP_ROUNDS``)."""
    for rounds in range(1, undo_online.CATCHUP_ROUNDS + 1):
        steps = planned["replay"]()
        for step in steps:
            step.group = "sigeti-undo-replay"
        executor.run(steps)
        info["replayed_keys"] += steps[0].rowcount or 0
        if (steps[0].rowcount or 0) <= undo_online.CATCHUP_DONE:
            return rounds
    return undo_online.CATCHUP_ROUNDS


def _abandon_after_failure(executor: Executor, names: dict[str, str], error: BaseException) -> DwhError:
    """Drop the change log, capture trigger and shadow of the failed run; return the error to raise."""
    message = getattr(error, "msg", None) or str(error).strip()
    try:
        executor.run(undo_online.abandon_steps(names, [names["log"], names["shadow"]]))
        left = "the change log, capture trigger and shadow were dropped"
    except (psycopg2.Error, DwhError) as second:
        left = (
            "dropping the change log, capture trigger and shadow failed too (%s): run again with migrate: abandon"
            % (getattr(second, "msg", None) or str(second).strip())
        )
    details = dict(getattr(error, "details", None) or {})
    return DwhError(
        "back to a plain table (online) failed for %s before its swap: %s. The partition set is unchanged and in "
        "use; %s. Fix the cause and run again" % (display_name(names["schema"], names["name"]), message, left),
        **details,
    )
