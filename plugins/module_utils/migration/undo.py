# Copyright: (c) 2026, SIGETI data platform team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Back to a plain table (pure): the refusals and the one offline transaction turning a partition set into one
plain table of the same name (``state: plain``).

The transaction, every step in one group (all or nothing; a run killed anywhere leaves the set as it was):

1. the first locks (``plan.locks``): SHARE ROW EXCLUSIVE on the tables the set's foreign keys reference (adding them
   to the plain table needs it), EXCLUSIVE on the set (writers wait, readers go on; ``LOCK TABLE`` recurses to the
   partitions, so a write straight into a partition waits too);
2. the plain shadow ``<name>_sgt_plain`` (``CREATE TABLE ... (LIKE set INCLUDING ...)``: columns, defaults,
   identity, generated columns, NOT NULL and CHECK constraints, column comments, storage, compression, statistics),
   its owner and the reloptions every leaf shares;
3. ``INSERT ... SELECT`` of every row, then the set's indexes, primary key and unique constraints under temporary
   names, then the foreign keys out (validated: the referenced tables are locked);
4. the whole-row checksum of both (``migration.sql.checksum_total``, the forward migration's digest): different
   totals raise, rolling everything back;
5. the swap, under ACCESS EXCLUSIVE (``safe_lock``: no wait into a deadlock): the set and its indexes take the
   suffix ``_partitioned``, the shadow and its indexes the names; identity sequences continue and keep their names,
   serial sequences follow their column, then the table comment, index and constraint comments, grants, replica
   identity, row security and policies, triggers (their definitions name the table, which is now the plain one)
   and dependent views (``CREATE OR REPLACE VIEW`` rebinds them); ``drop_source`` drops the kept set last.
"""

from __future__ import annotations

from typing import Any, Sequence

from ansible_collections.sigeti.dwh.plugins.module_utils.core.identifiers import display_name
from ansible_collections.sigeti.dwh.plugins.module_utils.migration.sql import (
    checksum_total,
    derived_name,
    grant_steps,
    identifier,
    join_sql,
    key_definition,
    policy_step,
    row_digest,
    verify_totals_block,
)
from ansible_collections.sigeti.dwh.plugins.module_utils.plan.locks import EXCLUSIVE, Lock, lock_set, lock_steps, merge
from ansible_collections.sigeti.dwh.plugins.module_utils.plan.steps import (
    ACCESS_EXCLUSIVE,
    SHARE_ROW_EXCLUSIVE,
    AsLiteral,
    Step,
)

try:
    from psycopg2 import sql
except ImportError:  # reported by the connection layer
    sql = None

SHADOW_SUFFIX = "_sgt_plain"
KEPT_SUFFIX = "_partitioned"
LOG_SUFFIX = "_sgt_plog"
INDEX_SUFFIX = "_sgt_plain"
GROUP = "sigeti-undo"
LIKE_OPTIONS = (
    "INCLUDING DEFAULTS INCLUDING CONSTRAINTS INCLUDING IDENTITY INCLUDING GENERATED INCLUDING COMMENTS "
    "INCLUDING STORAGE INCLUDING COMPRESSION INCLUDING STATISTICS EXCLUDING INDEXES"
)
TRIGGER_PREFIX = "sigeti_undo_capture_"  # the online undo's capture trigger: never carried
ANALYZE_REASON = "statistics of the plain table"
TRIGGER_STATES = {"D": "DISABLE", "R": "ENABLE REPLICA", "A": "ENABLE ALWAYS"}


def undo_names(schema: str, name: str) -> dict[str, str]:
    """The names an undo of ``schema.name`` uses: the shadow it builds, the name the set is kept under and the
    online mode's change log (which, after the swap, holds the statements left to run)."""
    return {
        "schema": schema,
        "name": name,
        "shadow": derived_name(name, SHADOW_SUFFIX),
        "kept": derived_name(name, KEPT_SUFFIX),
        "log": derived_name(name, LOG_SUFFIX),
    }


def refusals(
    names: dict[str, str],
    facts: dict[str, Any],
    hazards: dict[str, Any],
    undo: dict[str, Any],
    taken: Sequence[str],
    narrow: bool = False,
) -> list[str]:
    """What this undo cannot carry, each naming the property and what to do (empty: it can run).

    :param facts: ``catalog.migration.migration_facts`` of the set's parent.
    :param hazards: ``catalog.migration.migration_hazards`` of the set's parent.
    :param undo: ``catalog.undo.undo_facts`` of the set.
    :param taken: the names among ``names["kept"]`` that already exist.
    :param narrow: ``extend_primary_key``: the keys lose the partition key (a foreign key into them then cannot
        follow).
    """
    found = []
    if names["kept"] in taken:
        found.append(
            "a relation named %s already exists, and the set is kept under that name: rename or drop it first"
            % display_name(names["schema"], names["kept"])
        )
    key = set(undo.get("partition_key") or [])
    for fk in facts.get("foreign_keys_in") or []:
        if narrow and key & set(fk.get("columns") or []):
            found.append(
                "foreign key %s of %s.%s references the partition key %s, which extend_primary_key takes out of the "
                "keys: run without extend_primary_key, or drop that foreign key first"
                % (fk["name"], fk["schema"], fk["table"], ", ".join(sorted(key)))
            )
    for fk in undo.get("partition_foreign_keys") or []:
        found.append(
            "foreign key %s of %s references its partition %s: drop it first"
            % (fk["name"], fk["table"], fk["partition"])
        )
    for publication in undo.get("publications") or []:
        found.append(
            "it (or a partition) is in publication %s: ALTER PUBLICATION %s DROP TABLE it, run again, then add the "
            "plain table (subscribers must resynchronize it)" % (publication, publication)
        )
    for view in facts.get("views") or []:
        if view["kind"] != "view":
            found.append(
                "materialized view %s reads it: drop it, run again, then create it again"
                % display_name(view["schema"], view["name"])
            )
    for view in undo.get("partition_views") or []:
        found.append("view %s reads a partition directly: drop it or make it read the table first" % view)
    found.extend(_hazard_refusals(hazards, undo))
    return found


def _hazard_refusals(hazards, undo):
    found = []
    for rule in (hazards.get("rules") or []) + (hazards.get("foreign_rules") or []):
        found.append("rule %s refers to it: drop it, run again, then create it again" % rule["name"])
    for column in hazards.get("rowtype_columns") or []:
        found.append("column %s is typed by its row type: change that column's type first" % column)
    if undo.get("replica_identity") == "i":
        found.append("its replica identity is an index: set REPLICA IDENTITY DEFAULT or FULL first")
    for index in undo.get("indexes") or []:
        if index.get("constraint_type") == "x":
            found.append("exclusion constraint %s: drop it first, create it again after" % index["constraint"])
        elif not index["definition"].startswith(index["prefix"]):
            found.append("index %s has a definition this module cannot read: %s" % (index["name"], index["definition"]))
    return found


def common_reloptions(partitions: Sequence[dict[str, Any]]) -> list[str]:
    """The storage options (``name=value``) every leaf partition has: the plain table takes those (a partitioned
    parent cannot hold fillfactor or autovacuum settings; options that differ between leaves are left out)."""
    leaves = [p for p in partitions if p.get("leaf")]
    if not leaves:
        return []
    first = list(leaves[0].get("reloptions") or [])
    return [o for o in first if all(o in (p.get("reloptions") or []) for p in leaves[1:])]


def insert_columns(columns: Sequence[dict[str, Any]]) -> tuple[list[str], bool]:
    """The columns an INSERT ... SELECT writes (generated ones are computed again) and whether it must say
    OVERRIDING SYSTEM VALUE (an identity GENERATED ALWAYS column)."""
    written = [c["name"] for c in columns if not c.get("generated")]
    return written, any(c.get("identity") == "a" for c in columns)


def plan_undo(
    names: dict[str, str],
    facts: dict[str, Any],
    undo: dict[str, Any],
    drop_source: bool = False,
    narrow: bool = False,
) -> list[Step]:
    """The offline undo's steps, one transaction (see the module docstring). Refusals are checked before.
    ``narrow`` (``extend_primary_key``): the primary key and unique constraints without the partition key."""
    referenced, original = _first_locks(names, facts)
    children = child_locks(facts)
    steps = lock_set(referenced, original, children)
    steps += shadow_steps(names, undo)
    steps += copy_steps(names, undo)
    steps += index_steps(names, undo, narrow)
    steps += foreign_key_steps(names, facts)
    steps += _verify_steps(names, undo)
    at_swap = [Lock(names["schema"], names["name"], ACCESS_EXCLUSIVE, "the swap needs the set alone")]
    at_swap += [
        Lock(v["schema"], v["name"], ACCESS_EXCLUSIVE, "view %s is rebound to the plain table" % v["name"])
        for v in facts.get("views") or []
        if v["kind"] == "view" and v.get("definition")
    ]
    steps += lock_steps(merge(at_swap), held=merge(referenced + [original] + children))
    steps += swap_steps(names, facts, undo, validate=True)
    if drop_source:
        steps += drop_kept_steps(names)
    for step in steps:
        step.group = GROUP
    return steps


def child_locks(facts: dict[str, Any]) -> list[Lock]:
    """SHARE ROW EXCLUSIVE on each table whose foreign keys reference the set: they are re-pointed at the plain
    table (and their inserts would otherwise wait for the set while holding them)."""
    return merge(
        Lock(
            fk["schema"],
            fk["table"],
            SHARE_ROW_EXCLUSIVE,
            "foreign key %s is re-pointed at the plain table" % fk["name"],
        )
        for fk in facts.get("foreign_keys_in") or []
    )


def _first_locks(names, facts):
    referenced = []
    for con in facts.get("constraints") or []:
        target = con.get("references")
        if con["type"] == "f" and target and (target["schema"], target["name"]) != (names["schema"], names["name"]):
            referenced.append(
                Lock(
                    target["schema"],
                    target["name"],
                    SHARE_ROW_EXCLUSIVE,
                    "foreign key %s is added to the plain table" % con["name"],
                )
            )
    original = Lock(names["schema"], names["name"], EXCLUSIVE, "block writes (readers go on) for the whole build")
    return merge(referenced), original


def shadow_steps(names: dict[str, str], undo: dict[str, Any]) -> list[Step]:
    """The empty plain shadow (a leftover one dropped first), its owner and the options every leaf shares."""
    schema, shadow = names["schema"], identifier(names["schema"], names["shadow"])
    steps = [
        Step(
            sql.SQL("DROP TABLE IF EXISTS {}").format(shadow),
            "a shadow left by another run is dropped (nothing uses it)",
        ),
        Step(
            sql.SQL("CREATE TABLE {} (LIKE {} {})").format(
                shadow, identifier(schema, names["name"]), sql.SQL(LIKE_OPTIONS)
            ),
            "the plain shadow: columns, defaults, identity, NOT NULL and CHECK constraints, column comments, storage "
            "and compression of the set",
            lock=ACCESS_EXCLUSIVE,
            targets=[(schema, names["shadow"])],
        ),
    ]
    if undo.get("owner"):
        steps.append(
            Step(sql.SQL("ALTER TABLE {} OWNER TO {}").format(shadow, sql.Identifier(undo["owner"])), "same owner")
        )
    options = list(undo.get("reloptions") or []) + [
        o for o in common_reloptions(undo.get("partitions") or []) if o not in (undo.get("reloptions") or [])
    ]
    if options:
        steps.append(
            Step(
                sql.SQL("ALTER TABLE {} SET ({})").format(shadow, join_sql([sql.SQL(o) for o in options])),
                "the storage options every partition has: %s" % ", ".join(options),
            )
        )
    return steps


def copy_steps(names: dict[str, str], undo: dict[str, Any]) -> list[Step]:
    """Every row of the set into the shadow."""
    columns, overriding = insert_columns(undo["columns"])
    listed = join_sql([sql.Identifier(c) for c in columns])
    return [
        Step(
            sql.SQL("INSERT INTO {} ({}){} SELECT {} FROM {}").format(
                identifier(names["schema"], names["shadow"]),
                listed,
                sql.SQL(" OVERRIDING SYSTEM VALUE" if overriding else ""),
                listed,
                identifier(names["schema"], names["name"]),
            ),
            "copy every row of the set, default partition included (writes wait on the EXCLUSIVE lock)",
            targets=[(names["schema"], names["name"])],
        )
    ]


def temporary_index_name(index_name: str) -> str:
    """The name an index of the set has on the shadow until the swap."""
    return derived_name(index_name, INDEX_SUFFIX)


def constraint_columns(index: dict[str, Any], partition_key: Sequence[str], narrow: bool) -> list[str]:
    """The columns of a primary key or unique constraint on the plain table: the set's, or with ``narrow``
    (``extend_primary_key``: undo what the forward migration appended) without the partition key's columns, unless
    nothing would be left."""
    columns = list(index.get("columns") or [])
    if not narrow:
        return columns
    kept = [c for c in columns if c not in partition_key]
    return kept or columns


def index_steps(names: dict[str, str], undo: dict[str, Any], narrow: bool = False) -> list[Step]:
    """The set's indexes, primary key and unique constraints on the shadow, under temporary names (``narrow``:
    the constraints without the partition key, see ``constraint_columns``)."""
    shadow = identifier(names["schema"], names["shadow"])
    steps = []
    for index in undo.get("indexes") or []:
        temporary = sql.Identifier(temporary_index_name(index["name"]))
        if index.get("constraint_type") in ("p", "u"):
            columns = constraint_columns(index, undo.get("partition_key") or [], narrow)
            definition = key_definition(index["constraint_definition"], columns, index.get("reloptions"))
            text = sql.SQL("ALTER TABLE {} ADD CONSTRAINT {} {}").format(shadow, temporary, definition)
            reason = "constraint %s on (%s)%s" % (
                index["constraint"],
                ", ".join(columns),
                " (extend_primary_key: without the partition key)" if columns != index.get("columns") else "",
            )
        else:
            text = sql.SQL("CREATE {}INDEX {} ON {} {}").format(
                sql.SQL("UNIQUE " if index["unique"] else ""),
                temporary,
                shadow,
                sql.SQL(index["definition"][len(index["prefix"]) :]),
            )
            reason = "index %s as on the set" % index["name"]
        steps.append(Step(text, reason + ", built after the copy"))
    return steps


def foreign_key_steps(names: dict[str, str], facts: dict[str, Any], not_valid: bool = False) -> list[Step]:
    """The set's foreign keys out, added to the shadow (``not_valid``: validated after the swap)."""
    shadow = identifier(names["schema"], names["shadow"])
    return [
        Step(
            sql.SQL("ALTER TABLE {} ADD CONSTRAINT {} {}{}").format(
                shadow,
                sql.Identifier(con["name"]),
                sql.SQL(con["definition"]),
                sql.SQL(" NOT VALID" if not_valid or not con.get("validated", True) else ""),
            ),
            "foreign key %s, %s"
            % (con["name"], "validated after the swap" if not_valid else "validated (the referenced table is locked)"),
            lock=SHARE_ROW_EXCLUSIVE,
        )
        for con in facts.get("constraints") or []
        if con["type"] == "f"
    ]


def _verify_steps(names, undo):
    schema, columns = names["schema"], undo["columns"]
    display = display_name(schema, names["name"])
    source = Step(
        checksum_total(identifier(schema, names["name"]), columns),
        "rows and whole-row checksum of the set (the EXCLUSIVE lock is held: the rows the copy read)",
    )
    target = Step(
        checksum_total(identifier(schema, names["shadow"]), columns),
        "rows and whole-row checksum of the plain shadow",
    )

    def whole(relation):
        return sql.SQL("SELECT 'whole table'::text AS b, count(*) AS n, sum({}) AS h FROM {} t").format(
            row_digest(columns), identifier(schema, relation)
        )

    verify = Step(
        verify_totals_block(display, source, target, whole(names["name"]), whole(names["shadow"]), "back to plain"),
        "verify before the swap: rows and checksum of both must be equal",
    )
    return [source, target, verify]


def swap_steps(names: dict[str, str], facts: dict[str, Any], undo: dict[str, Any], validate: bool) -> list[Step]:
    """The renames and everything the plain table carries over from the set (cheap catalog work, under the
    ACCESS EXCLUSIVE lock the step before took); ``validate``: the re-pointed foreign keys are checked here (else
    NOT VALID, validated after the swap)."""
    schema, name = names["schema"], names["name"]
    new = identifier(schema, name)
    steps = []
    for index in undo.get("indexes") or []:
        steps.append(
            Step(
                sql.SQL("ALTER INDEX {} RENAME TO {}").format(
                    identifier(schema, index["name"]), sql.Identifier(derived_name(index["name"], KEPT_SUFFIX))
                ),
                "the set's index frees its name",
            )
        )
    steps.append(
        Step(
            sql.SQL("ALTER TABLE {} RENAME TO {}").format(new, sql.Identifier(names["kept"])),
            "keep the set (and its partitions) as %s until drop_source" % names["kept"],
        )
    )
    steps.append(
        Step(
            sql.SQL("ALTER TABLE {} RENAME TO {}").format(identifier(schema, names["shadow"]), sql.Identifier(name)),
            "the plain table takes the name",
        )
    )
    for index in undo.get("indexes") or []:
        steps.append(
            Step(
                sql.SQL("ALTER INDEX {} RENAME TO {}").format(
                    identifier(schema, temporary_index_name(index["name"])), sql.Identifier(index["name"])
                ),
                "indexes keep their names",
            )
        )
    steps += _sequence_steps(names, facts)
    steps += _comment_steps(schema, new, facts, undo)
    steps += grant_steps(facts.get("grants") or [], facts.get("column_grants") or [], new, "same grants")
    steps += _security_steps(new, facts, undo)
    steps += _trigger_steps(new, facts)
    steps += _view_steps(facts)
    steps += _column_option_steps(new, facts)
    steps += _repoint_steps(facts, validate)
    return steps


def _repoint_steps(facts, validate):
    """Foreign keys of other tables: dropped from the kept set and added again (their definition names the table,
    now the plain one); one NOT VALID on the set stays so."""
    steps = []
    for fk in facts.get("foreign_keys_in") or []:
        child = identifier(fk["schema"], fk["table"])
        later = not validate or not fk.get("validated", True)
        steps.append(
            Step(
                sql.SQL("ALTER TABLE {} DROP CONSTRAINT {}").format(child, sql.Identifier(fk["name"])),
                "foreign key %s pointed at the set" % fk["name"],
                lock=SHARE_ROW_EXCLUSIVE,
                targets=[(fk["schema"], fk["table"])],
            )
        )
        steps.append(
            Step(
                sql.SQL("ALTER TABLE {} ADD CONSTRAINT {} {}{}").format(
                    child, sql.Identifier(fk["name"]), sql.SQL(fk["definition"]), sql.SQL(" NOT VALID" if later else "")
                ),
                "re-point %s at the plain table%s"
                % (fk["name"], " (validated after the swap)" if later and fk.get("validated", True) else ""),
                lock=SHARE_ROW_EXCLUSIVE,
                targets=[(fk["schema"], fk["table"])],
            )
        )
    return steps


def validate_incoming_steps(facts: dict[str, Any]) -> list[Step]:
    """After an online swap: each re-pointed foreign key validated (SHARE UPDATE EXCLUSIVE on its table: its
    writers go on), unless it was NOT VALID on the set."""
    return [
        Step(
            sql.SQL("ALTER TABLE {} VALIDATE CONSTRAINT {}").format(
                identifier(fk["schema"], fk["table"]), sql.Identifier(fk["name"])
            ),
            "validate the re-pointed foreign key %s" % fk["name"],
            targets=[(fk["schema"], fk["table"])],
        )
        for fk in facts.get("foreign_keys_in") or []
        if fk.get("validated", True)
    ]


def _sequence_steps(names, facts):
    """A serial's sequence follows its column; an identity continues where the set's stopped and keeps its name."""
    schema, name = names["schema"], names["name"]
    shown = sql.Literal(display_name(schema, name))
    steps = []
    for seq in facts.get("sequences") or []:
        if seq["kind"] == "serial":
            steps.append(
                Step(
                    sql.SQL("ALTER SEQUENCE {} OWNED BY {}").format(
                        identifier(seq["schema"], seq["name"]), identifier(schema, name, seq["column"])
                    ),
                    "sequence %s follows its column (dropping the kept set will not drop it)" % seq["name"],
                )
            )
            continue
        kept = derived_name(seq["name"], KEPT_SUFFIX)
        steps.append(
            Step(
                sql.SQL("ALTER SEQUENCE {} RENAME TO {}").format(
                    identifier(seq["schema"], seq["name"]), sql.Identifier(kept)
                ),
                "the set's identity sequence frees its name",
            )
        )
        steps.append(
            Step(
                sql.SQL("SELECT setval(pg_get_serial_sequence({t}, {c}), s.last_value, s.is_called) FROM {s} s").format(
                    t=shown, c=sql.Literal(seq["column"]), s=identifier(seq["schema"], kept)
                ),
                "identity %s continues where the set stopped" % seq["column"],
            )
        )
        body = sql.SQL(
            "BEGIN EXECUTE format('ALTER SEQUENCE %s RENAME TO %I', pg_get_serial_sequence({t}, {c}), {n}); END"
        ).format(t=shown, c=sql.Literal(seq["column"]), n=sql.Literal(seq["name"]))
        steps.append(Step(sql.SQL("DO {}").format(AsLiteral(body)), "the new identity sequence takes its name"))
    return steps


def _comment_steps(schema, new, facts, undo):
    steps = []
    if undo.get("comment"):
        steps.append(Step(sql.SQL("COMMENT ON TABLE {} IS {}").format(new, sql.Literal(undo["comment"])), "comment"))
    for index in undo.get("indexes") or []:
        if index.get("comment"):
            steps.append(
                Step(
                    sql.SQL("COMMENT ON INDEX {} IS {}").format(
                        identifier(schema, index["name"]), sql.Literal(index["comment"])
                    ),
                    "index comment",
                )
            )
    for con in facts.get("constraints") or []:
        if con.get("comment") and con["type"] in ("p", "u", "f"):
            steps.append(
                Step(
                    sql.SQL("COMMENT ON CONSTRAINT {} ON {} IS {}").format(
                        sql.Identifier(con["name"]), new, sql.Literal(con["comment"])
                    ),
                    "constraint comment",
                )
            )
    return steps


def _security_steps(new, facts, undo):
    steps = []
    identity = {"f": "FULL", "n": "NOTHING"}.get(undo.get("replica_identity"))
    if identity:
        steps.append(Step(sql.SQL("ALTER TABLE {} REPLICA IDENTITY {}").format(new, sql.SQL(identity)), "same"))
    flags = facts.get("flags") or {}
    if flags.get("row_security"):
        steps.append(Step(sql.SQL("ALTER TABLE {} ENABLE ROW LEVEL SECURITY").format(new), "row-level security"))
    if flags.get("force_row_security"):
        steps.append(Step(sql.SQL("ALTER TABLE {} FORCE ROW LEVEL SECURITY").format(new), "forced row security"))
    return steps + [policy_step(policy, new) for policy in facts.get("policies") or []]


def _trigger_steps(new, facts):
    """The set's own triggers, created by name: their definitions name the table, which is now the plain one."""
    steps = []
    for trig in facts.get("triggers") or []:
        if trig["name"].startswith(TRIGGER_PREFIX):
            continue
        steps.append(Step(sql.SQL(trig["definition"]), "trigger %s, created on the plain table" % trig["name"]))
        state = TRIGGER_STATES.get(trig.get("enabled"))
        if state:
            steps.append(
                Step(
                    sql.SQL("ALTER TABLE {} {} TRIGGER {}").format(new, sql.SQL(state), sql.Identifier(trig["name"])),
                    "same trigger state",
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


def _view_steps(facts):
    """CREATE OR REPLACE VIEW keeps each view's oid, grants, owner and comment and rebinds it to the plain table."""
    steps = []
    for view in facts.get("views") or []:
        if view["kind"] != "view" or not view.get("definition"):
            continue
        options = sql.SQL("")
        if view.get("options"):
            options = sql.SQL(" WITH ({})").format(join_sql([sql.SQL(o) for o in view["options"]]))
        steps.append(
            Step(
                sql.SQL("CREATE OR REPLACE VIEW {}{} AS {}").format(
                    identifier(view["schema"], view["name"]), options, sql.SQL(view["definition"].strip().rstrip(";"))
                ),
                "view %s read the set by oid: rebind it to the plain table"
                % display_name(view["schema"], view["name"]),
                lock=ACCESS_EXCLUSIVE,
                targets=[(view["schema"], view["name"])],
            )
        )
    return steps


def _column_option_steps(new, facts):
    return [
        Step(
            sql.SQL("ALTER TABLE {} ALTER COLUMN {} SET ({})").format(
                new, sql.Identifier(item["column"]), join_sql([sql.SQL(o) for o in item["options"]])
            ),
            "column options of %s" % item["column"],
        )
        for item in facts.get("column_options") or []
    ]


def drop_kept_steps(names: dict[str, str]) -> list[Step]:
    """``drop_source``: the kept set and its partitions go (its identity sequences with it)."""
    return [
        Step(
            sql.SQL("DROP TABLE {}").format(identifier(names["schema"], names["kept"])),
            "drop_source: the kept partition set %s and its partitions" % names["kept"],
            lock=ACCESS_EXCLUSIVE,
            targets=[(names["schema"], names["kept"])],
        )
    ]
