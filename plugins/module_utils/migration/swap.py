# Copyright: (c) 2026, SIGETI data platform team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The swap (pure): what changes together when the partitioned table takes the original's name.

``swap_steps`` = ``_rename_steps`` (original -> ``<table>_unpartitioned``, shadow -> ``<table>``, index names)
+ ``_carry_steps`` (sequences, grants, replica identity, row security, policies, triggers, rules)
+ ``_repoint_steps`` (incoming foreign keys, dependent views, other tables' rules: each adds its lock target).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ansible_collections.sigeti.dwh.plugins.module_utils.core.identifiers import display_name
from ansible_collections.sigeti.dwh.plugins.module_utils.migration.build import (
    add_constraint,
    new_partitions,
)
from ansible_collections.sigeti.dwh.plugins.module_utils.migration.sql import (
    derived_name,
    grant_steps,
    identifier,
    join_sql,
    policy_step,
    rule_text,
)
from ansible_collections.sigeti.dwh.plugins.module_utils.plan.steps import (
    ACCESS_EXCLUSIVE,
    SHARE_ROW_EXCLUSIVE,
    AsLiteral,
    Step,
)

if TYPE_CHECKING:  # names used in annotations only
    from ansible_collections.sigeti.dwh.plugins.module_utils.migration.build import MigrationContext

try:
    from psycopg2 import sql
except ImportError:  # reported by the connection layer
    sql = None


def _view_steps(views, swap_lock_targets):
    """CREATE OR REPLACE VIEW keeps each view's oid, grants, owner and comment and rebinds it to the new table."""
    steps = []
    for view in views:
        if view["kind"] != "view":
            continue
        options = sql.SQL("")
        if view.get("options"):
            options = sql.SQL(" WITH ({})").format(join_sql([sql.SQL(o) for o in view["options"]]))
        definition = view["definition"].strip().rstrip(";")
        steps.append(
            Step(
                sql.SQL("CREATE OR REPLACE VIEW {}{} AS {}").format(
                    identifier(view["schema"], view["name"]), options, sql.SQL(definition)
                ),
                "view %s read the old table by oid: rebind it to the partitioned table"
                % display_name(view["schema"], view["name"]),
                lock=ACCESS_EXCLUSIVE,
                targets=[(view["schema"], view["name"])],
            )
        )
        swap_lock_targets.append((view["schema"], view["name"]))
    return steps


def swap_steps(ctx: MigrationContext, shadow: str, renames: bool = True) -> tuple[list[Step], list[tuple[str, str]]]:
    """Everything that must change together when the partitioned table takes the name (cheap catalog work)."""
    names = ctx.names
    schema, name = names["schema"], names["name"]
    new = identifier(schema, name)
    steps = []
    if renames:
        steps.extend(_rename_steps(ctx, shadow))
    steps.extend(_carry_steps(ctx, new))
    lock_targets = []
    steps.extend(_repoint_steps(ctx, lock_targets))
    return steps, lock_targets


def _rename_steps(ctx, shadow):
    names, table = ctx.names, ctx.table
    schema, name = names["schema"], names["name"]
    steps = []
    for index in table["indexes"]:
        steps.append(
            Step(
                sql.SQL("ALTER INDEX {} RENAME TO {}").format(
                    identifier(schema, index["name"]), sql.Identifier(derived_name(index["name"], "_unpartitioned"))
                ),
                "the original's index frees its name",
            )
        )
    steps.append(
        Step(
            sql.SQL("ALTER TABLE {} RENAME TO {}").format(
                identifier(schema, name), sql.Identifier(names["unpartitioned"])
            ),
            "keep the original until drop_source",
        )
    )
    steps.append(
        Step(
            sql.SQL("ALTER TABLE {} RENAME TO {}").format(identifier(schema, shadow), sql.Identifier(name)),
            "the partitioned table takes the name",
        )
    )
    for index in table["indexes"]:
        steps.append(
            Step(
                sql.SQL("ALTER INDEX {} RENAME TO {}").format(
                    identifier(schema, derived_name(index["name"], "_sgt_new")), sql.Identifier(index["name"])
                ),
                "indexes keep their names",
            )
        )
    return steps


def _carry_steps(ctx, new):
    """What the partitioned table carries over from the original: comments, sequences, grants, replica identity,
    row-level security, policies, triggers and rules."""
    facts, schema = ctx.facts, ctx.names["schema"]
    steps = []
    for item in facts.get("index_comments") or []:
        steps.append(
            Step(
                sql.SQL("COMMENT ON INDEX {} IS {}").format(
                    identifier(schema, item["name"]), sql.Literal(item["comment"])
                ),
                "index comment",
            )
        )
    for con in facts["constraints"]:
        if con.get("comment") and con["type"] in ("p", "u", "f"):
            steps.append(
                Step(
                    sql.SQL("COMMENT ON CONSTRAINT {} ON {} IS {}").format(
                        sql.Identifier(con["name"]), new, sql.Literal(con["comment"])
                    ),
                    "constraint comment",
                )
            )
    steps.extend(_sequence_steps(ctx))
    steps.extend(grant_steps(facts["grants"], facts["column_grants"], new, "same grants"))
    for entry in new_partitions(ctx, with_default=True):
        steps.extend(
            grant_steps(facts["grants"], [], identifier(schema, entry["name"]), "same grants on the partition")
        )
    identity = {"f": "FULL", "n": "NOTHING"}.get(facts["flags"].get("replica_identity"))
    if identity:
        for target in [new] + [identifier(schema, e["name"]) for e in new_partitions(ctx, with_default=True)]:
            steps.append(
                Step(
                    sql.SQL("ALTER TABLE {} REPLICA IDENTITY {}").format(target, sql.SQL(identity)),
                    "same replica identity (logical replication reads each partition's own)",
                )
            )
    if facts["flags"].get("row_security"):
        steps.append(Step(sql.SQL("ALTER TABLE {} ENABLE ROW LEVEL SECURITY").format(new), "row-level security"))
    if facts["flags"].get("force_row_security"):
        steps.append(Step(sql.SQL("ALTER TABLE {} FORCE ROW LEVEL SECURITY").format(new), "forced row-level security"))
    for policy in facts["policies"]:
        steps.append(policy_step(policy, new))
    steps.extend(_trigger_steps(ctx, new))
    steps.extend(_rule_steps(ctx, new))
    steps.extend(_publication_steps(ctx, new))
    return steps


def _publication_steps(ctx, new):
    """The partitioned table takes the original's place in its publications (publish_via_partition_root, checked
    before any change, keeps the changes published under the table's name)."""
    old = identifier(ctx.names["schema"], ctx.names["unpartitioned"])
    steps = []
    for publication in (ctx.facts.get("hazards") or {}).get("publications") or []:
        pub = sql.Identifier(publication["name"])
        steps.append(
            Step(
                sql.SQL("ALTER PUBLICATION {} DROP TABLE {}").format(pub, old),
                "the original leaves publication %s" % publication["name"],
            )
        )
        steps.append(
            Step(
                sql.SQL("ALTER PUBLICATION {} ADD TABLE {}").format(pub, new),
                "same publication %s" % publication["name"],
            )
        )
    return steps


def _sequence_steps(ctx):
    """A serial's sequence follows its column; an identity continues where the original stopped and keeps its name."""
    schema, name = ctx.names["schema"], ctx.names["name"]
    steps = []
    for seq in ctx.facts["sequences"]:
        if seq["kind"] == "serial":
            steps.append(
                Step(
                    sql.SQL("ALTER SEQUENCE {} OWNED BY {}").format(
                        identifier(seq["schema"], seq["name"]), identifier(schema, name, seq["column"])
                    ),
                    "the sequence follows its column (dropping the old table will not drop it)",
                )
            )
        else:
            steps.append(
                Step(
                    sql.SQL(
                        "SELECT setval(pg_get_serial_sequence({t}, {c}), s.last_value, s.is_called) FROM {s} s"
                    ).format(
                        t=sql.Literal(display_name(schema, name)),
                        c=sql.Literal(seq["column"]),
                        s=identifier(seq["schema"], seq["name"]),
                    ),
                    "identity %s continues where the original stopped" % seq["column"],
                )
            )
            # the identity sequence created with the shadow takes the original's name
            steps.append(
                Step(
                    sql.SQL("ALTER SEQUENCE {} RENAME TO {}").format(
                        identifier(seq["schema"], seq["name"]),
                        sql.Identifier(derived_name(seq["name"], "_unpartitioned")),
                    ),
                    "the original's identity sequence frees its name",
                )
            )
            body = sql.SQL(
                "BEGIN EXECUTE format('ALTER SEQUENCE %s RENAME TO %I', pg_get_serial_sequence({t}, {c}), {n}); END"
            ).format(
                t=sql.Literal(display_name(schema, name)), c=sql.Literal(seq["column"]), n=sql.Literal(seq["name"])
            )
            steps.append(Step(sql.SQL("DO {}").format(AsLiteral(body)), "the new identity sequence takes its name"))
    return steps


def _trigger_steps(ctx, new):
    """The user's triggers, created by name on the renamed table, with their enabled state and comment."""
    steps = []
    for trig in ctx.user_triggers:
        steps.append(
            Step(sql.SQL(trig["definition"]), "user trigger %s (created by name on the renamed table)" % trig["name"])
        )
        state = {"D": "DISABLE", "R": "ENABLE REPLICA", "A": "ENABLE ALWAYS"}.get(trig.get("enabled"))
        if state:
            steps.append(
                Step(
                    sql.SQL("ALTER TABLE {} {} TRIGGER {}").format(new, sql.SQL(state), sql.Identifier(trig["name"])),
                    "same state",
                )
            )
        if trig.get("comment"):
            steps.append(
                Step(
                    sql.SQL("COMMENT ON TRIGGER {} ON {} IS {}").format(
                        sql.Identifier(trig["name"]), new, sql.Literal(trig["comment"])
                    ),
                    "trigger comment",
                )
            )
    return steps


def _rule_steps(ctx, new):
    """The table's own rules, created again on the partitioned table (the old table keeps its copies)."""
    steps = []
    for rule in (ctx.facts.get("hazards") or {}).get("rules") or []:
        steps.append(Step(rule_text(rule["definition"]), "rule %s, created on the partitioned table" % rule["name"]))
        state = {"D": "DISABLE", "R": "ENABLE REPLICA", "A": "ENABLE ALWAYS"}.get(rule.get("enabled"))
        if state:
            steps.append(
                Step(
                    sql.SQL("ALTER TABLE {} {} RULE {}").format(new, sql.SQL(state), sql.Identifier(rule["name"])),
                    "same rule state",
                )
            )
    return steps


def _foreign_rule_steps(ctx, lock_targets):
    """Rules of other relations that read or write the table name it by oid: CREATE OR REPLACE RULE rebinds them."""
    steps = []
    for rule in (ctx.facts.get("hazards") or {}).get("foreign_rules") or []:
        steps.append(
            Step(
                rule_text(rule["definition"], replace=True),
                "rule %s on %s referred to the old table: rebind it" % (rule["name"], rule["table"]),
                lock=ACCESS_EXCLUSIVE,
                targets=[(rule["schema"], rule["relation"])],
            )
        )
        lock_targets.append((rule["schema"], rule["relation"]))
    return steps


def _repoint_steps(ctx, lock_targets):
    facts = ctx.facts
    steps = []
    for fk in facts["foreign_keys_in"]:
        child = identifier(fk["schema"], fk["table"])
        steps.append(
            Step(
                sql.SQL("ALTER TABLE {} DROP CONSTRAINT {}").format(child, sql.Identifier(fk["name"])),
                "foreign key %s pointed at the old table" % fk["name"],
                lock=SHARE_ROW_EXCLUSIVE,
                targets=[(fk["schema"], fk["table"])],
            )
        )
        steps.append(
            add_constraint(
                child,
                fk["name"],
                sql.SQL(fk["definition"] + " NOT VALID"),
                "re-point %s at the partitioned table (validated after the swap)" % fk["name"],
                targets=[(fk["schema"], fk["table"])],
            )
        )
        lock_targets.append((fk["schema"], fk["table"]))
    # a relation with a rule on the table shows up among its "views" (pg_rewrite) without a view definition
    steps.extend(_view_steps([v for v in facts["views"] if v.get("definition")], lock_targets))
    steps.extend(_foreign_rule_steps(ctx, lock_targets))
    return steps
