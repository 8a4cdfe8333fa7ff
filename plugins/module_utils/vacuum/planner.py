# Copyright: (c) 2026, SIGETI data platform team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The vacuum planner, as pure functions: each table's steps from its facts, and the module's report.

The decisions it combines are in ``vacuum_decisions`` (analyze, vacuum, freeze, rewrite, disk, with their numbers),
the options and storage parameters in ``vacuum_options``, pg_repack's command line in ``vacuum_repack``. Reading
the facts and running the plan is ``vacuum_run``'s job.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Sequence, TypedDict

from ansible_collections.sigeti.dwh.plugins.module_utils.core.identifiers import display_name
from ansible_collections.sigeti.dwh.plugins.module_utils.plan.steps import (
    ACCESS_EXCLUSIVE,
    SHARE_UPDATE_EXCLUSIVE,
    Step,
)
from ansible_collections.sigeti.dwh.plugins.module_utils.vacuum.decisions import (
    analyze_decision,
    freeze_decision,
    parent_analyze_decision,
    rewrite_decision,
    vacuum_decision,
)
from ansible_collections.sigeti.dwh.plugins.module_utils.vacuum.options import (
    Triggers,
    VacuumOptions,
    autovacuum_triggers,
    effective_reloptions,
    insert_trigger,
    reloption_changes,
    toast_options,
)
from ansible_collections.sigeti.dwh.plugins.module_utils.vacuum.repack import (
    RepackProbe,
    render_command,
)

try:
    from psycopg2 import sql
except ImportError:  # reported by the connection layer
    sql = None

if TYPE_CHECKING:  # names used in annotations only
    from psycopg2.sql import Composed

    from ansible_collections.sigeti.dwh.plugins.module_utils.session.connection import Connection


class Action(TypedDict, total=False):
    """One action of a vacuum plan, in execution order. A dict: the run adds ``duration_ms`` and ``output`` to it,
    and ``report`` turns it into the module result."""

    action: str  # reloptions | vacuum | freeze | analyze | full
    reason: str
    step: Step  # an SQL action
    method: str  # full: vacuum_full | pg_repack
    command: list[str]  # pg_repack's argv
    lock: str
    targets: list[tuple[str, str]]
    duration_ms: int
    output: str


class Gathered(TypedDict):
    """What ``vacuum_run.gather`` read and planned; ``all_actions``, ``counted_before`` and ``report`` read it."""

    tables: list[dict[str, Any]]  # per requested table: {"table": catalog facts, "plan": table_plan(...)}
    bloat_method: str  # pgstattuple | estimate
    repack: RepackProbe
    disk: list[dict[str, Any]]  # the disk check of each leaf due a rewrite
    extras: dict[int, dict[str, Any]]  # per relation oid: the values only the vacuum module reads
    repack_env_kwargs: dict[str, Any]  # connection kwargs pg_repack connects with


# ---------------------------------------------------------------------------------------------
# SQL of the steps (psycopg2.sql only)
# ---------------------------------------------------------------------------------------------


def vacuum_sql(schema: str, name: str, options: Sequence[str] = ()) -> Composed:
    """Return ``VACUUM (opt, ...) schema.name`` with constant option words (FULL, FREEZE, ANALYZE)."""
    target = sql.Identifier(schema, name)
    if not options:
        return sql.SQL("VACUUM {}").format(target)
    return sql.SQL("VACUUM ({}) {}").format(sql.SQL(", ").join(sql.SQL(o) for o in options), target)


def analyze_sql(schema: str, name: str, only: bool = False) -> Composed:
    """Return ``ANALYZE [ONLY] schema.name`` (ONLY exists from PostgreSQL 18)."""
    return sql.SQL("ANALYZE {}{}").format(sql.SQL("ONLY ") if only else sql.SQL(""), sql.Identifier(schema, name))


def reloptions_sql(schema: str, name: str, to_set: dict[str, str], to_reset: Sequence[str]) -> Composed:
    """Return ``ALTER TABLE ... SET (...), RESET (...)`` for the declared autovacuum reloptions of one leaf."""
    clauses = []

    def option_name(key):
        return sql.Identifier(*key.split(".", 1)) if key.startswith("toast.") else sql.Identifier(key)

    if to_set:
        clauses.append(
            sql.SQL("SET ({})").format(
                sql.SQL(", ").join(
                    sql.SQL("{} = {}").format(option_name(k), sql.Literal(v)) for k, v in sorted(to_set.items())
                )
            )
        )
    if to_reset:
        clauses.append(sql.SQL("RESET ({})").format(sql.SQL(", ").join(option_name(k) for k in to_reset)))
    return sql.SQL("ALTER TABLE {} {}").format(sql.Identifier(schema, name), sql.SQL(", ").join(clauses))


def _maintenance_step(schema: str, name: str, sql_text: Any, reason: str, lock: str = SHARE_UPDATE_EXCLUSIVE) -> Step:
    # VACUUM and ANALYZE refuse to run in a transaction block: each is its own autocommit step
    return Step(sql_text, reason, lock=lock, targets=[(schema, name)], transactional=False)


def leaf_decisions(
    entry: dict[str, Any], extra: dict[str, Any], options: VacuumOptions, settings: dict[str, str]
) -> dict[str, dict[str, Any]]:
    """Return the analyze, vacuum, freeze, full and reloptions decisions of one leaf, each with its numbers."""
    heap_opts, toast_opts = effective_reloptions(entry["reloptions"], entry["toast_reloptions"], options["autovacuum"])
    triggers = autovacuum_triggers(heap_opts, settings, entry["reltuples"])
    toast_trig = None
    if entry.get("toast_oid"):
        toast_trig = autovacuum_triggers(
            toast_options(toast_opts), settings, (entry.get("toast_stats") or {}).get("reltuples"), toast=True
        )
    decisions = {
        "analyze": analyze_decision(options["analyze"], entry["stats"], triggers),
        "vacuum": vacuum_decision(
            options["vacuum"],
            entry["stats"],
            triggers,
            insert_trigger(heap_opts, settings, entry["reltuples"]),
            entry.get("toast_stats") if toast_trig else None,
            toast_trig,
        ),
        "freeze": freeze_decision(
            options["freeze_older_than"],
            extra.get("periods_ago"),
            extra.get("relfrozenxid_age"),
            extra.get("newest_row_age"),
            entry["stats"],
        ),
        "full": rewrite_decision(extra, options),
    }
    declared = options["autovacuum"]
    if not entry.get("toast_oid"):
        # without a TOAST table PostgreSQL accepts toast.* options but stores them nowhere: setting them
        # would "change" on every run
        declared = {k: val for k, val in declared.items() if not k.startswith("toast.")}
    to_set, to_reset = reloption_changes(entry["reloptions"], entry["toast_reloptions"], declared)
    decisions["reloptions"] = {
        "due": bool(to_set or to_reset),
        "set": to_set,
        "reset": to_reset,
        "reason": (
            "reloptions differ from the declared ones" if (to_set or to_reset) else "declared reloptions already set"
        ),
    }
    return decisions


def _rewrite_actions(schema, name, decisions, extra, covered):
    """The rewrite (pg_repack or VACUUM FULL), then the VACUUM that refreshes its statistics."""
    full = decisions["full"]
    method = (extra.get("repack") or {}).get("method", "vacuum_full")
    full["method"] = method
    full["method_reason"] = (extra.get("repack") or {}).get("reason")
    full["disk"] = extra.get("disk")
    freeze = decisions["freeze"]["due"]
    if method == "pg_repack":
        first = {
            "action": "full",
            "method": "pg_repack",
            "reason": full["reason"],
            "command": extra["repack"]["command"],
            "lock": "ACCESS EXCLUSIVE (brief, start and end)",
            "targets": [(schema, name)],
        }
        words = ["FREEZE"] if freeze else []
    else:
        first = {
            "action": "full",
            "method": "vacuum_full",
            "reason": full["reason"],
            "step": _maintenance_step(
                schema,
                name,
                vacuum_sql(schema, name, ["FULL", "FREEZE"] if freeze else ["FULL"]),
                full["reason"],
                lock=ACCESS_EXCLUSIVE,
            ),
        }
        words = []
    # VACUUM FULL leaves n_dead_tup / n_ins_since_vacuum stale (measured): a plain VACUUM (cheap on the
    # compact copy, sets the visibility map) and ANALYZE reset them, so the next run sees nothing due.
    words = words + ([] if covered else ["ANALYZE"])
    reason = "after the rewrite: refresh statistics and the visibility map"
    after = {
        "action": "vacuum",
        "reason": reason,
        "step": _maintenance_step(schema, name, vacuum_sql(schema, name, words), reason),
    }
    decisions["vacuum"]["note"] = "covered by the rewrite"
    return [first, after]


def _routine_actions(schema, name, decisions, analyze_here):
    """One VACUUM (with FREEZE / ANALYZE when due) or one ANALYZE, or nothing."""
    vac, frz = decisions["vacuum"]["due"], decisions["freeze"]["due"]
    if vac or frz:
        words = (["FREEZE"] if frz else []) + (["ANALYZE"] if analyze_here else [])
        reasons = "; ".join(
            d["reason"]
            for k, d in decisions.items()
            if k in ("vacuum", "freeze", "analyze") and d["due"] and (k != "analyze" or analyze_here)
        )
        step = _maintenance_step(schema, name, vacuum_sql(schema, name, words), reasons)
        return [{"action": "freeze" if frz else "vacuum", "reason": reasons, "step": step}]
    if analyze_here:
        reason = decisions["analyze"]["reason"]
        return [
            {
                "action": "analyze",
                "reason": reason,
                "step": _maintenance_step(schema, name, analyze_sql(schema, name), reason),
            }
        ]
    return []


def leaf_plan(
    entry: dict[str, Any], extra: dict[str, Any], options: VacuumOptions, settings: dict[str, str]
) -> tuple[dict[str, dict[str, Any]], list[Action]]:
    """Decide everything for one leaf; return ``(decisions, actions)``.

    ``entry`` is a relation of ``catalog.read_tables``; ``extra`` holds the values only this module reads
    (``bloat``, ``periods_ago``, ``relfrozenxid_age``, ``newest_row_age``, ``repack``: the chosen rewrite
    method or why not, ``disk``); ``options`` the output of ``validate_options`` plus ``covered_by_parent``.
    Actions are dicts ``{"action", "step" | "command", "reason"}`` in execution order.
    """
    schema, name = entry["schema"], entry["name"]
    decisions = leaf_decisions(entry, extra, options, settings)
    actions: list[Action] = []
    reloptions = decisions["reloptions"]
    if reloptions["due"]:
        actions.append(
            {
                "action": "reloptions",
                "reason": "set %s reset %s" % (reloptions["set"], reloptions["reset"]),
                "step": Step(
                    reloptions_sql(schema, name, reloptions["set"], reloptions["reset"]),
                    "ensure autovacuum reloptions",
                    lock=SHARE_UPDATE_EXCLUSIVE,
                    targets=[(schema, name)],
                    group="reloptions",
                ),
            }
        )
    covered = options.get("covered_by_parent")
    if decisions["analyze"]["due"] and covered:
        decisions["analyze"]["note"] = "runs through ANALYZE %s (PostgreSQL < 18 analyzes partitions with it)" % covered
    if decisions["full"]["due"]:
        return decisions, actions + _rewrite_actions(schema, name, decisions, extra, covered)
    analyze_here = decisions["analyze"]["due"] and not covered
    return decisions, actions + _routine_actions(schema, name, decisions, analyze_here)


def parent_trigger(entry: dict[str, Any], leaves: Sequence[dict[str, Any]], settings: dict[str, str]) -> Triggers:
    """Return the analyze trigger of a partitioned parent, from the total rows of its partitions."""
    total = sum(max(leaf["reltuples"] or 0, 0) for leaf in leaves)
    return autovacuum_triggers(entry["reloptions"], settings, total)


def descendants(relations: dict[int, dict[str, Any]], oid: int) -> list[dict[str, Any]]:
    """Return every relation below ``oid`` in a partition tree (``relations`` by oid)."""
    children = {}
    for entry in relations.values():
        children.setdefault(entry["parent_oid"], []).append(entry)
    out, todo = [], list(children.get(oid, []))
    while todo:
        entry = todo.pop(0)
        out.append(entry)
        todo.extend(children.get(entry["oid"], []))
    return out


def _parent_decisions(relations, parents, first_pass, extras, options, settings):
    """The ANALYZE decision of each parent, deepest first: due when its statistics are stale or work below it is."""
    parent_due = {}
    for parent in sorted(parents, key=lambda e: -e["level"]):
        below = descendants(relations, parent["oid"])
        below_leaves = [e for e in below if e["relkind"] == "r"]
        work = [
            e["name"]
            for e in below_leaves
            if any(a["action"] != "reloptions" for a in first_pass[e["oid"]][1])
            or first_pass[e["oid"]][0]["analyze"]["due"]
        ]
        work += [e["name"] for e in below if parent_due.get(e["oid"], {}).get("due")]
        parent_due[parent["oid"]] = parent_analyze_decision(
            options["analyze"],
            parent["stats"],
            extras.get(parent["oid"], {}).get("has_inherited_stats"),
            [(e["name"], e["stats"]) for e in below_leaves],
            work,
            parent_trigger(parent, below_leaves, settings),
        )
    return parent_due


def _cascade(root, parents, parent_due, only):
    """Before 18 there is no ANALYZE ONLY: ANALYZE root analyzes every partition and sub-parent with it. Returns the
    root's display name when that cascade happens (the root then due), else ``None``."""
    if only or root["relkind"] != "p" or not any(d["due"] for d in parent_due.values()):
        return None
    root_decision = parent_due[root["oid"]]
    if not root_decision["due"]:
        subs = [e["name"] for e in parents if parent_due[e["oid"]]["due"]]
        root_decision.update(due=True, reason="sub-partitioned parents due: %s" % ", ".join(sorted(subs)))
    return display_name(root["schema"], root["name"])


def _relation_entry(entry, kind, decisions, actions):
    return {
        "schema": entry["schema"],
        "name": entry["name"],
        "oid": entry["oid"],
        "kind": kind,
        "decisions": decisions,
        "actions": actions,
    }


def _parent_actions(parent, decision, root, cascade, only):
    """The ANALYZE step of one parent when it is due and analyzable on its own (or is the cascading root)."""
    if decision["due"] and (only or parent["oid"] == root["oid"]):
        if cascade and parent["oid"] == root["oid"]:
            decision["note"] = "PostgreSQL < 18: ANALYZE of the parent also analyzes every partition"
        step = Step(
            analyze_sql(parent["schema"], parent["name"], only=only),
            decision["reason"],
            lock=SHARE_UPDATE_EXCLUSIVE,
            targets=[(parent["schema"], parent["name"])],
            transactional=False,
        )
        return [{"action": "analyze", "reason": decision["reason"], "step": step}]
    if decision["due"]:
        decision["note"] = "analyzed through ANALYZE %s" % cascade
    return []


def table_plan(
    table: dict[str, Any],
    extras: dict[int, dict[str, Any]],
    options: VacuumOptions,
    settings: dict[str, str],
    version_num: int,
) -> dict[str, Any]:
    """Plan one requested table (plain, partition or partitioned tree).

    ``extras`` maps oid -> the per-relation values ``leaf_plan`` reads (plus ``has_inherited_stats`` for
    parents). Returns ``{"relations": [{schema, name, kind, decisions, actions}], "actions": [...]}``, with
    leaves first (in tree order) and parent ANALYZE steps last, so parents see their partitions' new state.
    """
    relations = table["relations"]
    ordered = sorted(relations.values(), key=lambda e: (e["level"], e["name"]))
    parents = [e for e in ordered if e["relkind"] == "p"]
    leaves = [e for e in ordered if e["relkind"] == "r"]
    only = version_num >= 180000
    root = table["root"] if table.get("root") else relations[table["oid"]]
    first_pass = {leaf["oid"]: leaf_plan(leaf, extras.get(leaf["oid"], {}), options, settings) for leaf in leaves}
    parent_due = _parent_decisions(relations, parents, first_pass, extras, options, settings)
    cascade = _cascade(root, parents, parent_due, only)
    out_relations, planned = [], []
    for leaf in leaves:
        if cascade:
            covered = dict(options, covered_by_parent=cascade)
            decisions, actions = leaf_plan(leaf, extras.get(leaf["oid"], {}), covered, settings)
        else:
            decisions, actions = first_pass[leaf["oid"]]
        planned.extend(actions)
        kind = "partition" if leaf["is_partition"] else "plain"
        out_relations.append(_relation_entry(leaf, kind, decisions, actions))
    for parent in sorted(parents, key=lambda e: -e["level"]):
        decision = parent_due[parent["oid"]]
        actions = _parent_actions(parent, decision, root, cascade, only)
        planned.extend(actions)
        out_relations.append(_relation_entry(parent, "partitioned", {"analyze": decision}, actions))
    # reloption changes first, in one transaction: a bad value rolls them all back before any vacuum ran
    settings_first = [a for a in planned if a["action"] == "reloptions"]
    rest = [a for a in planned if a["action"] != "reloptions"]
    return {"relations": out_relations, "actions": settings_first + rest}


def all_actions(gathered: Gathered) -> list[Action]:
    """Return every action in execution order: all reloption changes first (one transaction), then the rest."""
    actions = [a for t in gathered["tables"] for a in t["plan"]["actions"]]
    return [a for a in actions if a["action"] == "reloptions"] + [a for a in actions if a["action"] != "reloptions"]


def counted_before(gathered: Gathered) -> dict[int, int]:
    """Return ``{oid: maintenance count}`` of every leaf this run vacuums or analyzes, as read before the run.

    An action on a partitioned parent counts for every leaf below it (VACUUM and, before 18, ANALYZE cascade).
    """
    leaves = {}
    for table in gathered["tables"]:
        relations = table["table"]["relations"]
        for entry in relations.values():
            below = [entry] if entry["relkind"] == "r" else descendants(relations, entry["oid"])
            leaves[(entry["schema"], entry["name"])] = [e for e in below if e["relkind"] == "r"]
    before = {}
    for action in all_actions(gathered):
        if action["action"] == "reloptions":
            continue
        for target in action.get("targets") or (action["step"].targets if "step" in action else ()):
            for entry in leaves.get(tuple(target), []):
                stats = entry["stats"]
                keys = ("vacuum_count", "autovacuum_count", "analyze_count", "autoanalyze_count")
                before[entry["oid"]] = sum(stats.get(k) or 0 for k in keys)
    return before


def _sizes(entry):
    if not entry:
        return None
    heap, toast, index = entry["heap_bytes"] or 0, entry["toast_bytes"] or 0, entry["index_bytes"] or 0
    return {"heap_bytes": heap, "toast_bytes": toast, "index_bytes": index, "total_bytes": heap + toast + index}


def _json_action(action, conn):
    out = {"action": action["action"], "reason": action["reason"]}
    if "step" in action:
        out["sql"] = action["step"].render(conn)
        out["lock"] = action["step"].lock
    else:
        out["command"] = render_command(action["command"])
        out["lock"] = action.get("lock")
    for key in ("method", "duration_ms", "output"):
        if key in action:
            out[key] = action[key]
    return out


def report(
    conn: Connection, gathered: Gathered, after: dict[int, dict[str, Any]] | None = None
) -> list[dict[str, Any]]:
    """Return the ``tables`` result: per relation its decisions (with numbers), actions (SQL, reason, lock,
    duration) and sizes before / after; ``after`` maps oid -> relation entry re-read after the run."""
    out = []
    for item in gathered["tables"]:
        table, plan = item["table"], item["plan"]
        rels = []
        for rel in plan["relations"]:
            entry = table["relations"].get(rel["oid"])
            data = {
                "schema": rel["schema"],
                "name": rel["name"],
                "kind": rel["kind"],
                "decisions": rel["decisions"],
                "actions": [_json_action(a, conn) for a in rel["actions"]],
                "sizes_before": _sizes(entry),
            }
            if after is not None:
                data["sizes_after"] = _sizes(after.get(rel["oid"]))
                later = after.get(rel["oid"])
                if later:
                    data["stats_after"] = {
                        "n_dead_tup": later["stats"]["n_dead_tup"],
                        "n_mod_since_analyze": later["stats"]["n_mod_since_analyze"],
                    }
            data["duration_ms"] = sum(a.get("duration_ms", 0) for a in rel["actions"])
            rels.append(data)
        out.append(
            {
                "schema": table["schema"],
                "name": table["name"],
                "relations": rels,
                "summary": [
                    a["action"] + " " + display_name(r["schema"], r["name"])
                    for r in plan["relations"]
                    for a in r["actions"]
                ],
                "duration_ms": sum(r["duration_ms"] for r in rels),
            }
        )
    return out
