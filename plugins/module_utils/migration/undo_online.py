# Copyright: (c) 2026, SIGETI data platform team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Back to a plain table online (pure): the steps of each phase; ``migration.undo_run`` runs them in order.

1. ``prepare`` (one short transaction, SHARE ROW EXCLUSIVE on the set: it waits for the writes in flight): the
   change log ``<name>_sgt_plog`` (the key of every row written), its capture function and one row-level capture
   trigger on the parent, AFTER INSERT OR UPDATE OR DELETE. A row trigger on a partitioned parent is cloned to every
   partition (and to partitions attached later), so a write that goes straight into a partition is logged too; a
   statement-level trigger on the parent would not fire for it. Then the empty plain shadow (``undo.shadow_steps``).
2. ``copy`` (one transaction, ACCESS SHARE only): ``INSERT ... SELECT`` of every row; then ``build``: the indexes,
   primary key and unique constraints, the foreign keys out ``NOT VALID`` (validated after the swap).
3. ``catchup``: replay batches (``replay_steps``: the logged keys taken out of the log, their shadow rows deleted
   and copied again from the set as it is now) until few keys are left; then ``verify``: one more replay and the
   whole-row checksum of the set and of the shadow in one REPEATABLE READ snapshot (the shadow then holds every
   change committed before it, so both must be equal).
4. ``swap`` (one short transaction): ACCESS EXCLUSIVE on the set (and its views), the last replay, the checksum
   of the rows it replayed on both sides, the renames and everything ``undo.swap_steps`` carries, the capture
   trigger and function dropped (dropping the parent's trigger drops its clones on the partitions), the change
   log's comment listing the post-swap statements (``with_post_mark``);
5. ``post``: each foreign key validated, ANALYZE, then the log dropped: a run killed in between is finished by
   the next one from the log's comment (``pending_post``).

The key replayed is the set's primary key (or a unique index without predicate on NOT NULL columns): without one,
online is refused. A run stopped after the build (the change log's comment says ``BUILT``) resumes at the catch-up;
stopped before, the next run drops what it left (``abandon_steps``) and starts again.
"""

from __future__ import annotations

import json
from typing import Any, Sequence

from ansible_collections.sigeti.dwh.plugins.module_utils.core.identifiers import display_name
from ansible_collections.sigeti.dwh.plugins.module_utils.migration.sql import (
    checksum_total,
    identifier,
    join_sql,
    verify_totals_block,
)
from ansible_collections.sigeti.dwh.plugins.module_utils.migration.undo import (
    ANALYZE_REASON,
    TRIGGER_PREFIX,
    child_locks,
    copy_steps,
    drop_kept_steps,
    foreign_key_steps,
    index_steps,
    insert_columns,
    shadow_steps,
    swap_steps,
    validate_incoming_steps,
)
from ansible_collections.sigeti.dwh.plugins.module_utils.plan.locks import Lock, lock_steps, merge
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

KEYS = "sigeti_undo_keys"  # the temporary table of one replay's keys (dropped at its commit)
CATCHUP_DONE = 1000  # keys left in the log when the catch-up stops replaying and verifies
CATCHUP_ROUNDS = 50  # replay batches at most before the verification, converging or not
BUILT = "sigeti.dwh undo: copied and built"
POST_MARK = "sigeti.dwh undo"  # the change log's comment once the shadow is filled and indexed


def capture_names(names: dict[str, str], oid: int) -> dict[str, str]:
    """The change log, capture function and trigger of an online undo of the set ``oid``."""
    return dict(
        names,
        function="sigeti_undo_capture_%d" % oid,
        trigger="%s%d" % (TRIGGER_PREFIX, oid),
    )


def replay_key(undo: dict[str, Any]) -> list[dict[str, str]] | None:
    """The key an online undo replays by (``[{"name", "type"}]``): the primary key, else a unique index without
    predicate nor expression whose columns are all NOT NULL; None when the set has none."""
    types = {c["name"]: c for c in undo["columns"]}
    candidates = sorted(
        (i for i in undo.get("indexes") or [] if i["unique"] and not i.get("partial") and i.get("columns")),
        key=lambda i: (i.get("constraint_type") != "p", i["name"]),
    )
    for index in candidates:
        columns = [types.get(c) for c in index["columns"]]
        if all(c is not None and c.get("not_null") for c in columns):
            return [{"name": c["name"], "type": c["type"]} for c in columns]
    return None


def online_refusals(undo: dict[str, Any]) -> list[str]:
    """What online mode needs beyond the offline refusals: a key to replay by."""
    if replay_key(undo) is None:
        return [
            "online needs a primary key (or a unique index without predicate on NOT NULL columns) to replay the "
            "changes writers make during the copy: add one, or use migrate: offline"
        ]
    return []


def prepare_steps(names: dict[str, str], undo: dict[str, Any]) -> list[Step]:
    """The change log, the capture trigger on the parent and the empty shadow, in one short transaction."""
    schema, key = names["schema"], replay_key(undo)
    log = identifier(schema, names["log"])
    keys = join_sql([sql.Identifier(c["name"]) for c in key])
    lock = lock_steps([Lock(schema, names["name"], SHARE_ROW_EXCLUSIVE, "capture starts after the writes in flight")])
    body = sql.SQL(
        "BEGIN IF TG_OP <> 'INSERT' THEN INSERT INTO {log} ({keys}) VALUES ({old}); END IF; "
        "IF TG_OP <> 'DELETE' THEN INSERT INTO {log} ({keys}) VALUES ({new}); END IF; RETURN NULL; END"
    ).format(
        log=log,
        keys=keys,
        old=join_sql([sql.SQL("OLD.{}").format(sql.Identifier(c["name"])) for c in key]),
        new=join_sql([sql.SQL("NEW.{}").format(sql.Identifier(c["name"])) for c in key]),
    )
    steps = lock + [
        Step(
            sql.SQL("CREATE TABLE {} (seq bigserial PRIMARY KEY, {})").format(
                log, join_sql([sql.SQL("{} {}").format(sql.Identifier(c["name"]), sql.SQL(c["type"])) for c in key])
            ),
            "the change log: the key of every row written while the copy runs",
        ),
        Step(
            sql.SQL(
                "CREATE FUNCTION {}() RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER "
                "SET search_path = pg_catalog, pg_temp AS {}"
            ).format(identifier(schema, names["function"]), AsLiteral(body)),
            "the capture function: logs the old and the new key of each row written (as its owner: the writers need "
            "no right on the log)",
        ),
        Step(
            sql.SQL(
                "CREATE TRIGGER {} AFTER INSERT OR UPDATE OR DELETE ON {} FOR EACH ROW EXECUTE FUNCTION {}()"
            ).format(
                sql.Identifier(names["trigger"]),
                identifier(schema, names["name"]),
                identifier(schema, names["function"]),
            ),
            "row-level capture on the parent: cloned to every partition, so writes straight into a partition are "
            "logged too",
            lock=SHARE_ROW_EXCLUSIVE,
            targets=[(schema, names["name"])],
        ),
    ]
    return _grouped(steps + shadow_steps(names, undo), "sigeti-undo-prepare")


def copy_and_build_steps(
    names: dict[str, str], facts: dict[str, Any], undo: dict[str, Any], narrow: bool = False
) -> list[Step]:
    """The copy (one transaction, reads only), then the indexes and NOT VALID foreign keys (one transaction)."""
    build = index_steps(names, undo, narrow) + foreign_key_steps(names, facts, not_valid=True)
    build.append(
        Step(
            sql.SQL("COMMENT ON TABLE {} IS {}").format(identifier(names["schema"], names["log"]), sql.Literal(BUILT)),
            "a run stopped from here on resumes at the catch-up",
        )
    )
    return _grouped(copy_steps(names, undo), "sigeti-undo-copy") + _grouped(build, "sigeti-undo-build")


def replay_steps(names: dict[str, str], undo: dict[str, Any]) -> list[Step]:
    """One replay (run in a transaction): the logged keys taken out of the log (the first step's row count is how
    many), their shadow rows deleted, and copied again from the set as it is now."""
    schema, key = names["schema"], [c["name"] for c in replay_key(undo)]
    keys = join_sql([sql.Identifier(c) for c in key])
    columns, overriding = insert_columns(undo["columns"])
    match = join_sql([sql.SQL("t.{} = x.{}").format(sql.Identifier(c), sql.Identifier(c)) for c in key], " AND ")
    return [
        Step(
            sql.SQL(
                "CREATE TEMPORARY TABLE {k} ON COMMIT DROP AS WITH d AS (DELETE FROM {log} RETURNING {keys}) "
                "SELECT DISTINCT {keys} FROM d"
            ).format(k=sql.Identifier(KEYS), log=identifier(schema, names["log"]), keys=keys),
            "take the logged keys out of the change log",
        ),
        Step(
            sql.SQL("DELETE FROM {} t USING pg_temp.{} x WHERE {}").format(
                identifier(schema, names["shadow"]), sql.Identifier(KEYS), match
            ),
            "their rows in the shadow go",
        ),
        Step(
            sql.SQL("INSERT INTO {} ({}){} SELECT {} FROM {} t JOIN pg_temp.{} x ON {}").format(
                identifier(schema, names["shadow"]),
                join_sql([sql.Identifier(c) for c in columns]),
                sql.SQL(" OVERRIDING SYSTEM VALUE" if overriding else ""),
                join_sql([sql.Identifier("t", c) for c in columns]),
                identifier(schema, names["name"]),
                sql.Identifier(KEYS),
                match,
            ),
            "and are copied again from the set as it is now",
        ),
    ]


def verify_steps(names: dict[str, str], undo: dict[str, Any], keys_only: bool = False) -> list[Step]:
    """The whole-row checksum of the set and of the shadow (``keys_only``: of the rows the replay just before
    replayed), and the block raising when they differ."""
    schema, columns = names["schema"], undo["columns"]
    display = display_name(schema, names["name"])

    def relation(name):
        if not keys_only:
            return identifier(schema, name)
        match = join_sql(
            [
                sql.SQL("r.{} = x.{}").format(sql.Identifier(c["name"]), sql.Identifier(c["name"]))
                for c in replay_key(undo)
            ],
            " AND ",
        )
        return sql.SQL("(SELECT r.* FROM {} r JOIN pg_temp.{} x ON {})").format(
            identifier(schema, name), sql.Identifier(KEYS), match
        )

    what = "the rows replayed at the swap" if keys_only else "every row"
    source = Step(checksum_total(relation(names["name"]), columns), "rows and checksum of %s in the set" % what)
    target = Step(checksum_total(relation(names["shadow"]), columns), "rows and checksum of %s in the shadow" % what)

    def whole(name):
        return sql.SQL("SELECT 'whole table'::text AS b, n, h FROM ({}) c(n, h)").format(
            checksum_total(relation(name), columns)
        )

    verify = Step(
        verify_totals_block(display, source, target, whole(names["name"]), whole(names["shadow"]), what),
        "verify: rows and checksum of both must be equal",
    )
    return [source, target, verify]


def verification_steps(names: dict[str, str], undo: dict[str, Any]) -> list[Step]:
    """One REPEATABLE READ transaction: a replay, then the whole-row checksum of both sides."""
    steps = _grouped(replay_steps(names, undo) + verify_steps(names, undo), "sigeti-undo-verify")
    steps[0].isolation = "REPEATABLE READ"
    return steps


def online_swap_steps(
    names: dict[str, str], facts: dict[str, Any], undo: dict[str, Any], drop_source: bool
) -> list[Step]:
    """The swap transaction: locks, the last replay and its checksum, the renames and what the plain table carries,
    the capture removed; ``drop_source`` drops the kept set last."""
    schema = names["schema"]
    at_swap = [Lock(schema, names["name"], ACCESS_EXCLUSIVE, "the swap needs the set alone")]
    at_swap += [
        Lock(v["schema"], v["name"], ACCESS_EXCLUSIVE, "view %s is rebound to the plain table" % v["name"])
        for v in facts.get("views") or []
        if v["kind"] == "view" and v.get("definition")
    ]
    steps = lock_steps(merge(at_swap + child_locks(facts)))
    steps += replay_steps(names, undo) + verify_steps(names, undo, keys_only=True)
    steps += swap_steps(names, facts, undo, validate=False)
    steps += capture_drop_steps(names, on=names["kept"], log=False)
    if drop_source:
        steps += drop_kept_steps(names)
    return _grouped(steps, "sigeti-undo-swap")


def post_steps(names: dict[str, str], facts: dict[str, Any]) -> list[Step]:
    """After the swap, each its own transaction: the foreign keys validated (SHARE UPDATE EXCLUSIVE: writers go on),
    ANALYZE."""
    table = identifier(names["schema"], names["name"])
    steps = [
        Step(
            sql.SQL("ALTER TABLE {} VALIDATE CONSTRAINT {}").format(table, sql.Identifier(con["name"])),
            "validate foreign key %s (writers go on)" % con["name"],
            targets=[(names["schema"], names["name"])],
        )
        for con in facts.get("constraints") or []
        if con["type"] == "f" and con.get("validated", True)
    ]
    steps += validate_incoming_steps(facts)
    return steps + [Step(sql.SQL("ANALYZE {}").format(table), ANALYZE_REASON, fresh_statistics=True)]


def capture_drop_steps(names: dict[str, str], on: str, log: bool = True) -> list[Step]:
    """The capture trigger (on ``on``: its clones on the partitions go with it), its function and (``log``) the
    log."""
    schema = names["schema"]
    steps = [
        Step(
            sql.SQL("DROP TRIGGER IF EXISTS {} ON {}").format(sql.Identifier(names["trigger"]), identifier(schema, on)),
            "the capture trigger (and its clones on every partition)",
            lock=ACCESS_EXCLUSIVE,
            targets=[(schema, on)],
        ),
        Step(sql.SQL("DROP FUNCTION IF EXISTS {}()").format(identifier(schema, names["function"])), "capture function"),
    ]
    if log:
        steps.append(drop_log_step(names))
    return steps


def drop_log_step(names: dict[str, str]) -> Step:
    """The change log (after the swap: the list of what was left to run) goes."""
    return Step(sql.SQL("DROP TABLE IF EXISTS {}").format(identifier(names["schema"], names["log"])), "the change log")


def with_post_mark(swap: list[Step], names: dict[str, str], statements: Sequence[str]) -> list[Step]:
    """The swap's transaction and, last in it, the change log's comment listing the post-swap ``statements``, so a
    run killed after the swap finishes them (``pending_post``, ``post_run_steps``)."""
    mark = json.dumps({POST_MARK: "swapped", "post": list(statements)})
    step = Step(
        sql.SQL("COMMENT ON TABLE {} IS {}").format(identifier(names["schema"], names["log"]), sql.Literal(mark)),
        "what is left after the swap, for a run killed before it ran",
        group=swap[-1].group,
    )
    return list(swap) + [step]


def post_run_steps(names: dict[str, str], statements: Sequence[str]) -> list[Step]:
    """The post-swap ``statements`` (as the swap stored them), each its own transaction, then the change log."""
    return [Step(text, "after the swap") for text in statements] + [drop_log_step(names)]


def pending_post(comment: str | None) -> list[str] | None:
    """The post-swap statements a change log's comment lists (None: not a swapped undo's log)."""
    try:
        found = json.loads(comment or "")
    except ValueError:
        return None
    if not isinstance(found, dict) or found.get(POST_MARK) != "swapped":
        return None
    return [str(text) for text in found.get("post") or []]


def abandon_steps(names: dict[str, str], leftovers: Sequence[str]) -> list[Step]:
    """What an online undo left before its swap (``leftovers``: the names among the log and the shadow that
    exist): dropped in one transaction; the set keeps every row and its writers."""
    if not leftovers:
        return []
    steps = capture_drop_steps(names, on=names["name"])
    steps.append(
        Step(
            sql.SQL("DROP TABLE IF EXISTS {}").format(identifier(names["schema"], names["shadow"])),
            "the shadow of the unfinished undo",
        )
    )
    return _grouped(steps, "sigeti-undo-abandon")


def _grouped(steps: list[Step], group: str) -> list[Step]:
    for step in steps:
        step.group = group
    return steps
