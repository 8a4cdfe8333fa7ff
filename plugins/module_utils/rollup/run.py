# Copyright: (c) 2026, SIGETI data platform team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The roll-up of ``sigeti.dwh.partitioned_table``: its facts, the merges of ``rollup.planner`` (pure), their run.

``prepare`` runs before the partition plan is applied (its refusals come before any change); ``apply`` runs after
it (and after the tiers' moves): each merge is one transaction through the executor (lock_timeout, the bounded
waits of its swap locks, retries, the blocker named when it gives up). Everything runs under the table's run lock
the module holds, so two runs never merge the same period.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

from ansible_collections.sigeti.dwh.plugins.module_utils.catalog import partitions as catalog_partitions
from ansible_collections.sigeti.dwh.plugins.module_utils.catalog import rollup as catalog_rollup
from ansible_collections.sigeti.dwh.plugins.module_utils.core.bounds import parse_options
from ansible_collections.sigeti.dwh.plugins.module_utils.core.errors import DwhError, InvalidInput
from ansible_collections.sigeti.dwh.plugins.module_utils.partitioning.indexes import partition_index_name
from ansible_collections.sigeti.dwh.plugins.module_utils.partitioning.layout import existing_partitions
from ansible_collections.sigeti.dwh.plugins.module_utils.plan.executor import Executor
from ansible_collections.sigeti.dwh.plugins.module_utils.plan.steps import Plan
from ansible_collections.sigeti.dwh.plugins.module_utils.rollup import planner as rollups

if TYPE_CHECKING:  # names used in annotations only
    from ansible_collections.sigeti.dwh.plugins.module_utils.partitioning.layout import Declared
    from ansible_collections.sigeti.dwh.plugins.module_utils.session.connection import Connection
    from ansible_collections.sigeti.dwh.plugins.module_utils.session.context import RunContext


@dataclasses.dataclass
class RollupWork:
    """This run's merges (``plan``) and what ran."""

    plan: rollups.RollupPlan
    merged: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    executed: list[str] = dataclasses.field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.plan)

    def queries(self, conn: Connection) -> list[str]:
        """The statements of the merges, as check mode shows them."""
        return [step.render(conn) for merge in self.plan.merges for step in merge.steps]

    def explain(self, conn: Connection) -> list[dict[str, Any]]:
        """Each merge's statements with their reason and lock, for the ``plan`` result."""
        return [step.describe(conn) for merge in self.plan.merges for step in merge.steps]

    def result(self, check_mode: bool) -> dict[str, Any]:
        """The ``rollup`` result: the periods merged (in check mode, planned) and how many wait for the next runs."""
        merged = self.merged if not check_mode else [m.report() for m in self.plan.merges]
        return {"merged": merged, "remaining": self.plan.remaining}


def pieces_of(table: dict[str, Any]) -> list[rollups.Piece]:
    """The direct range partitions of the set as the planner takes them (the default partition left out)."""
    return [
        rollups.Piece(
            p["schema"], p["name"], p["low"], p["high"], p["oid"], p["relkind"], bool(p.get("detach_pending"))
        )
        for p in existing_partitions(table)
        if not p["is_default"] and "low" in p
    ]


def set_facts(
    conn: Connection, declared: Declared, table: dict[str, Any], periods: list[rollups.Period]
) -> rollups.SetFacts:
    """Read the catalog facts the merges of ``periods`` need (one round trip plus the index definitions)."""
    sources = [p for period in periods for p in period.sources]
    index_names = [i["name"] for i in table.get("indexes") or []]
    names = [n for period in periods for n in (period.target, rollups.helper_name(period.target))] + [
        partition_index_name(period.target, index) for period in periods for index in index_names
    ]
    read = catalog_rollup.rollup_facts(conn, table["oid"], declared.schema, [p.oid for p in sources], names)
    tails = catalog_partitions.index_tails(conn, [i["oid"] for i in read["indexes"]]) if read["indexes"] else {}
    default = next(((p["schema"], p["name"]) for p in existing_partitions(table) if p["is_default"]), None)
    storage = {
        oid: rollups.Storage(
            row["tablespace"], row["access_method"], tuple(sorted(parse_options(row["reloptions"]).items()))
        )
        for oid, row in read["storage"].items()
    }
    return rollups.SetFacts(
        declared.schema,
        declared.name,
        declared.key,
        tuple(rollups.Column(c["name"], c["type"], c["type_name"], c["generated"]) for c in read["columns"]),
        tuple(
            rollups.ParentIndex(i["name"], tails.get(i["oid"]), i["unique"], i["constraint"]) for i in read["indexes"]
        ),
        default,
        tuple(read["foreign_keys"]),
        frozenset(read["taken"]),
        frozenset(read["leftovers"]),
        storage,
    )


def prepare(
    conn: Connection, context: RunContext, declared: Declared, table: dict[str, Any], result: Any
) -> RollupWork | None:
    """Find the periods due for their merge, plan this run's and refuse, before any change, what cannot be done.

    Periods holding a partition the partition plan retires this run wait for the next run. Returns None without
    ``rollup``."""
    if declared.rollup is None:
        return None
    retiring = frozenset(result.detached) | frozenset(result.dropped) | frozenset(result.archived)
    table = catalog_partitions.partition_set_details(conn, table)  # detach_pending (catalog only)
    periods = rollups.due_periods(
        declared.rollup,
        result.scheme,
        result.current,
        declared.name,
        pieces_of(table),
        retiring,
        declared.display,
    )
    facts = set_facts(conn, declared, table, periods[: declared.rollup.max_per_run]) if periods else None
    if facts is None:
        return RollupWork(rollups.RollupPlan())
    errors = rollups.refusals(facts, periods[: declared.rollup.max_per_run])
    if errors:
        raise InvalidInput(" ".join(errors) + ". Nothing was changed.")
    plan = rollups.plan_rollup(declared.rollup, result.scheme, facts, periods)
    for warning in plan.warnings:
        context.warn(warning)
    return RollupWork(plan)


def apply(conn: Connection, context: RunContext, work: RollupWork | None, committed: bool) -> None:
    """Run the merges, oldest first; fill ``work.merged``. A merge that fails (a lock kept through every retry, a
    mismatch) stops the run: its transaction rolled back, the DwhError names the blocker or the cause, the merges
    before it stay done and ``changed`` is true when anything (``committed``: what ran before) committed."""
    if not work or context.check_mode:
        return
    for merge in work.plan.merges:
        executor = Executor.from_options(conn, context.params)
        swap = [s for s in merge.steps if s.group is not None]
        try:
            executor.run(Plan(swap))
        except Exception as error:  # a lock kept through every retry, a mismatch, a refused statement
            if isinstance(error, DwhError):
                msg, details = error.msg, dict(error.details)
            else:
                msg = "PostgreSQL error %s: %s" % (getattr(error, "pgcode", "") or "", str(error).strip())
                details = {"sqlstate": getattr(error, "pgcode", None)}
            raise failure(details, msg, merge, work, committed or executor.committed_anything) from None
        finally:
            work.executed.extend(executor.executed)
        work.merged.append(merge.report())
        analyze(conn, context, merge, work)


def analyze(conn: Connection, context: RunContext, merge: rollups.Merge, work: RollupWork) -> None:
    """The steps after a merge's commit (its ANALYZE): a failure there is a warning, the merge stays done (autovacuum
    analyzes the new partition later)."""
    after = [s for s in merge.steps if s.group is None]
    executor = Executor.from_options(conn, context.params)
    try:
        executor.run(Plan(after))
    except Exception as error:  # a lock kept through every retry, a statement_timeout
        context.warn(
            "rollup: %s is merged, but its ANALYZE did not run (%s): autovacuum analyzes it later, or run ANALYZE %s"
            % (merge.period.target, str(getattr(error, "msg", None) or error).strip(), merge.period.target)
        )
    finally:
        work.executed.extend(executor.executed)


def failure(details: dict[str, Any], msg: str, merge: rollups.Merge, work: RollupWork, committed: bool) -> DwhError:
    """The DwhError of a merge that did not commit: what happened, what stays as it was, what merged before it."""
    done = ", ".join(m["partition"] for m in work.merged)
    text = (
        "rollup: merging period %s into %s failed, its %d partitions stay as they were: %s%s A next run merges "
        "what is left."
        % (
            merge.period.label,
            merge.period.target,
            len(merge.period.sources),
            msg,
            (" Merged before it (changed): %s." % done) if done else "",
        )
    )
    details.update(
        changed=committed or bool(work.merged), rollup={"merged": work.merged, "failed": merge.period.target}
    )
    return DwhError(text, **details)


def partitions_after(
    partitions: list[dict[str, Any]], work: RollupWork | None, check_mode: bool
) -> list[dict[str, Any]]:
    """The ``partitions`` result once the merges are done (or, in check mode, planned): each merged period's sources
    replaced, at the place of the first, by its one partition."""
    if not work:
        return partitions
    done = {m["partition"] for m in work.merged} if not check_mode else {m.period.target for m in work.plan.merges}
    into = {}
    for merge in work.plan.merges:
        if merge.period.target in done:
            shown = merge.report()
            entry = {"name": shown["partition"], "low": shown["from"], "high": shown["to"], "default": False}
            into.update((p.name, entry) for p in merge.period.sources)
    out, placed = [], set()
    for part in partitions:
        entry = into.get(part["name"])
        if entry is None:
            out.append(part)
        elif entry["name"] not in placed:
            placed.add(entry["name"])
            out.append(entry)
    return out
