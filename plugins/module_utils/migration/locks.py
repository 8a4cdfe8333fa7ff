# Copyright: (c) 2026, SIGETI data platform team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The relations the migration's strong-lock transactions lock, read from its facts (pure): the tables the original
references, the tables referencing it, the views and rules reading it. The order they are locked in, and how, is
``plan.locks`` (shared with the partition maintenance)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ansible_collections.sigeti.dwh.plugins.module_utils.plan.locks import Lock, merge
from ansible_collections.sigeti.dwh.plugins.module_utils.plan.steps import ACCESS_EXCLUSIVE

if TYPE_CHECKING:  # names used in annotations only
    from ansible_collections.sigeti.dwh.plugins.module_utils.migration.build import MigrationContext


def referenced_tables(ctx: MigrationContext, mode: str) -> list[Lock]:
    """The tables the original's foreign keys reference (each once, by name; the table itself left out): a
    transaction adding those foreign keys to the partitioned table locks them (``ADD FOREIGN KEY`` takes SHARE ROW
    EXCLUSIVE on them, ``ATTACH PARTITION`` adopting one ACCESS EXCLUSIVE)."""
    own = (ctx.names["schema"], ctx.names["name"])
    found = []
    for con in ctx.facts["constraints"]:
        ref = con.get("references") if con["type"] == "f" else None
        if ref and (ref["schema"], ref["name"]) != own and (ref["schema"], ref["name"]) not in found:
            found.append((ref["schema"], ref["name"]))
    return [
        Lock(schema, name, mode, "referenced by the foreign keys the partitioned table gets")
        for schema, name in sorted(found)
    ]


def child_tables(ctx: MigrationContext, mode: str = ACCESS_EXCLUSIVE) -> list[Lock]:
    """The tables whose foreign keys reference the original (the swap drops and adds their foreign key again:
    ACCESS EXCLUSIVE there; the offline transaction blocks their writes from its start: SHARE ROW EXCLUSIVE)."""
    return merge(
        Lock(fk["schema"], fk["table"], mode, "its foreign key %s is re-pointed at the swap" % fk["name"])
        for fk in ctx.facts["foreign_keys_in"]
    )


def dependent_relations(ctx: MigrationContext) -> list[Lock]:
    """What the swap changes beside the original and other sessions use: ``child_tables``, views and other
    relations' rules reading it (CREATE OR REPLACE: ACCESS EXCLUSIVE)."""
    facts = ctx.facts
    locks = child_tables(ctx)
    locks += [
        Lock(view["schema"], view["name"], ACCESS_EXCLUSIVE, "view rebound to the partitioned table")
        for view in facts["views"]
        if view["kind"] == "view" and view.get("definition")
    ]
    locks += [
        Lock(rule["schema"], rule["relation"], ACCESS_EXCLUSIVE, "its rule %s is rebound" % rule["name"])
        for rule in (facts.get("hazards") or {}).get("foreign_rules") or []
    ]
    # sequences are left out: LOCK TABLE refuses them, and their writers take them (nextval) after the table
    return merge(locks)
