# Copyright: (c) 2026, SIGETI data platform team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""``repartition: online | offline``: a partition set rebuilt under a newly declared interval.

Without it, a declared interval the existing tree is not of is refused before any change (``layout.check_interval``:
the DBA may instead attach the first partition of the new interval, and the older ones are then adopted as they
are). With it, the set goes through the two verified engines the module already has, in one run: back to a plain
table (``state: plain``, the old set kept as ``<name>_partitioned``), then forward into the declared layout (the
plain table kept as ``<name>_unpartitioned``); ``drop_source`` drops both once each step's checksum matched.

Each half is resumable on its own, so the whole is: a run killed during the way back leaves the set in use and the
next run resumes it; a run killed after it leaves a plain table (with its rows), which the next run migrates as any
plain table, in the repartition's mode. Check mode shows the way back only: the forward plan needs the plain table.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

from ansible_collections.sigeti.dwh.plugins.module_utils.core.identifiers import display_name
from ansible_collections.sigeti.dwh.plugins.module_utils.migration import undo_run
from ansible_collections.sigeti.dwh.plugins.module_utils.partitioning import planner as partitioning

if TYPE_CHECKING:  # names used in annotations only
    from ansible_collections.sigeti.dwh.plugins.module_utils.session.connection import Connection
    from ansible_collections.sigeti.dwh.plugins.module_utils.session.context import RunContext

MODES = ("online", "offline")


def forward_context(context: RunContext) -> RunContext:
    """The run's context with ``migrate`` set to the repartition's mode (the forward half migrates in it, and so does
    the next run after a kill between the halves); unchanged without ``repartition`` or with ``migrate: abandon``."""
    mode = context.params.get("repartition")
    if mode not in MODES or context.params.get("migrate") == "abandon":
        return context
    return dataclasses.replace(context, params=dict(context.params, migrate=mode))


def undo_first(
    context: RunContext, conn: Connection, declared: partitioning.Declared, table: dict[str, Any]
) -> dict[str, Any] | None:
    """When ``repartition`` is set and ``table`` (a partition set) is of another interval than declared, turn it
    back into a plain table and return that half's result (the whole result in check mode); else None."""
    mode = context.params.get("repartition")
    if mode not in MODES or not table.get("exists") or table.get("relkind") != "p":
        return None
    found = partitioning.existing_interval(declared, table)
    if found is None:
        return None
    # the old set is dropped once the plain table holds exactly its rows: its partitions' names are the forward
    # migration's to take (fait_default, and fait_2024 going from months back to years)
    back = dataclasses.replace(context, params=dict(context.params, state="plain", migrate=mode, drop_source=True))
    done = undo_run.run_undo(back, conn, declared.schema, declared.name)
    done["repartition"] = {
        "from": found,
        "to": declared.scheme.interval_name,
        "mode": mode,
        "back_to_plain": done.get("migration"),
        "note": "%s by %s -> plain table -> by %s (%s)%s"
        % (
            display_name(declared.schema, declared.name),
            found,
            declared.scheme.interval_name,
            mode,
            "; check mode shows the way back only: the forward plan is made from the plain table"
            if context.check_mode
            else "",
        ),
    }
    return done


def with_way_back(output: dict[str, Any], rebuilt: dict[str, Any] | None) -> dict[str, Any]:
    """The forward run's ``output`` with the way back's queries first and its ``repartition`` summary."""
    if rebuilt is None:
        return output
    output["queries"] = list(rebuilt.get("queries") or []) + list(output.get("queries") or [])
    output["repartition"] = rebuilt["repartition"]
    output["changed"] = True
    return output
