# Copyright: (c) 2026, SIGETI data platform team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The phases of ``attach`` (pure): the original becomes the partition covering its key range. A NOT VALID range
CHECK, validated online, lets ATTACH PARTITION skip its scan; later periods get new partitions.
"""

from __future__ import annotations

from ansible_collections.sigeti.dwh.plugins.module_utils.errors import InvalidInput
from ansible_collections.sigeti.dwh.plugins.module_utils.plan import (
    ACCESS_EXCLUSIVE,
    SHARE_UPDATE_EXCLUSIVE,
    Step,
)

try:
    from psycopg2 import sql
except ImportError:  # reported by the connection layer
    sql = None
from ansible_collections.sigeti.dwh.plugins.module_utils.migration_build import (
    _post_units,
    _shadow_steps,
)
from ansible_collections.sigeti.dwh.plugins.module_utils.migration_sql import (
    STATE_SCHEMA,
    STATE_TABLE,
    _bound_literal,
    _cols,
    _drop_index_steps,
    _ident,
    _json_value,
    _state_steps,
    derived_name,
)
from ansible_collections.sigeti.dwh.plugins.module_utils.migration_swap import (
    _swap_steps,
)


def _attach_phases(ctx):
    """Attach mode: the original becomes the partition covering its key range; later periods get new partitions."""
    names, facts, key, display = ctx["names"], ctx["facts"], ctx["key"], ctx["display"]
    schema, name = names["schema"], names["name"]
    if any(s["kind"] == "identity" for s in facts["sequences"]):
        raise InvalidInput("attach mode cannot move the identity column of %s; use migrate: online" % display)
    if ctx["user_triggers"]:
        raise InvalidInput(
            "attach mode does not move user triggers of %s (%s); use migrate: online"
            % (display, ", ".join(t["name"] for t in ctx["user_triggers"]))
        )
    ranges = ctx["ranges"]
    kmin, kmax = facts.get("key_min"), facts.get("key_max")
    if kmin is None:
        low, high, covered = ranges[0]["low"], ranges[0]["high"], [ranges[0]]
    else:
        covered = [e for e in ranges if e["high"] > kmin and e["low"] <= kmax]
        if not covered or (facts.get("out_of_range") or {}).get("rows"):
            raise InvalidInput(
                "attach mode needs every key of %s inside the declared periods (found %s..%s outside "
                "or NULL): use migrate: online with a default partition"
                % (display, _json_value(kmin), _json_value(kmax))
            )
        low, high = covered[0]["low"], covered[-1]["high"]
        for a, b in zip(covered, covered[1:]):
            if a["high"] != b["low"]:
                raise InvalidInput(
                    "attach mode needs contiguous periods over the key range of %s (gap %s..%s)"
                    % (display, _json_value(a["high"]), _json_value(b["low"]))
                )
    ctx["partitions_to_create"] = [e for e in ranges if e not in covered]
    attached = names["unpartitioned"]
    ctx["attach_range"] = (low, high, covered)
    shadow = names["shadow"]
    src = _ident(schema, name)
    check_name = derived_name(name, "_sgt_range")
    ctx["range_check"] = check_name
    existing = [c for c in facts["constraints"] if c["name"] == check_name]
    pre = (
        []
        if existing
        else [
            Step(
                sql.SQL(
                    "ALTER TABLE {} ADD CONSTRAINT {} CHECK ({k} IS NOT NULL AND {k} >= {lo} AND {k} < {hi}) NOT VALID"
                ).format(
                    src,
                    sql.Identifier(check_name),
                    k=sql.Identifier(key),
                    lo=_bound_literal(low),
                    hi=_bound_literal(high),
                ),
                "range check (NOT VALID: a brief lock, no scan) so ATTACH PARTITION skips its scan",
                lock=ACCESS_EXCLUSIVE,
                targets=[(schema, name)],
            )
        ]
    )
    validate = [
        Step(
            sql.SQL("ALTER TABLE {} VALIDATE CONSTRAINT {}").format(src, sql.Identifier(check_name)),
            "validate the range online (SHARE UPDATE EXCLUSIVE: readers and writers go on)",
            lock=SHARE_UPDATE_EXCLUSIVE,
            targets=[(schema, name)],
        )
    ]
    ctx["concurrent_indexes"] = []
    validate.extend(_rebuild_invalid_steps(ctx, src))
    pk = ctx["pk"]
    pk_index_tmp = None
    if pk is not None and key not in pk["columns"]:
        pk_index_tmp = derived_name(pk["name"], "_sgt_pk")
        if any(i["name"] == pk_index_tmp and not i.get("is_valid", True) for i in ctx["table"]["indexes"]):
            # an interrupted CREATE INDEX CONCURRENTLY left it INVALID: IF NOT EXISTS would keep it, and
            # PRIMARY KEY USING INDEX would fail on it at every run
            validate.extend(_drop_index_steps(names, [pk_index_tmp], "INVALID prebuilt index %s"))
        validate.append(
            Step(
                sql.SQL("CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS {} ON {} ({})").format(
                    sql.Identifier(pk_index_tmp), src, _cols(ctx["new_pk_columns"])
                ),
                "the extended primary key's index, built without blocking writers",
                transactional=False,
            )
        )
        ctx["concurrent_indexes"].append(pk_index_tmp)
    target = _ident(schema, shadow)
    swap = [
        Step(
            sql.SQL("LOCK TABLE {} IN ACCESS EXCLUSIVE MODE").format(src),
            "the swap: writers wait until commit",
            lock=ACCESS_EXCLUSIVE,
            targets=[(schema, name)],
        )
    ]
    swap += _state_steps()
    if pk_index_tmp:
        swap.append(
            Step(
                sql.SQL("ALTER TABLE {} DROP CONSTRAINT {}").format(src, sql.Identifier(pk["name"])),
                "the old primary key without the partition key",
            )
        )
        swap.append(
            Step(
                sql.SQL("ALTER TABLE {} ADD CONSTRAINT {} PRIMARY KEY USING INDEX {}").format(
                    src, sql.Identifier(pk["name"]), sql.Identifier(pk_index_tmp)
                ),
                "extended primary key from the prebuilt index (NOT NULL proven by the range check)",
            )
        )
    for index in ctx["table"]["indexes"]:
        if index["name"] in ctx["own_indexes"]:
            continue  # the prebuilt primary-key index became the primary key's index above
        swap.append(
            Step(
                sql.SQL("ALTER INDEX {} RENAME TO {}").format(
                    _ident(schema, index["name"]), sql.Identifier(derived_name(index["name"], "_unpartitioned"))
                ),
                "the partition's index frees its name for the parent's",
            )
        )
    swap += _shadow_steps(ctx, shadow)
    for con in facts["constraints"]:
        if con["type"] == "p":
            swap.append(
                Step(
                    sql.SQL("ALTER TABLE {} ADD CONSTRAINT {} PRIMARY KEY ({})").format(
                        target, sql.Identifier(con["name"]), _cols(ctx["new_pk_columns"])
                    ),
                    "primary key on the parent",
                )
            )
        elif con["type"] == "u":
            swap.append(
                Step(
                    sql.SQL("ALTER TABLE {} ADD CONSTRAINT {} {}").format(
                        target, sql.Identifier(con["name"]), sql.SQL(con["definition"])
                    ),
                    "unique constraint on the parent",
                )
            )
        elif con["type"] == "f":
            swap.append(
                Step(
                    sql.SQL("ALTER TABLE {} ADD CONSTRAINT {} {}").format(
                        target, sql.Identifier(con["name"]), sql.SQL(con["definition"])
                    ),
                    "foreign key on the parent (the partition's own matches and is attached, not re-checked)",
                )
            )
    tails = facts.get("index_tails") or {}
    for index in ctx["plain_indexes"]:
        swap.append(
            Step(
                sql.SQL("CREATE {}INDEX {} ON {} {}").format(
                    sql.SQL("UNIQUE " if index["is_unique"] else ""),
                    sql.Identifier(index["name"]),
                    target,
                    sql.SQL(tails[index["name"]]),
                ),
                "index on the parent (the partition's existing one is attached)",
            )
        )
    swap.append(
        Step(
            sql.SQL("ALTER TABLE {} RENAME TO {}").format(src, sql.Identifier(attached)),
            "the original becomes a partition",
        )
    )
    swap.append(
        Step(
            sql.SQL("ALTER TABLE {} RENAME TO {}").format(target, sql.Identifier(name)),
            "the partitioned table takes the name",
        )
    )
    swap.append(
        Step(
            sql.SQL("ALTER TABLE {} ATTACH PARTITION {} FOR VALUES FROM ({}) TO ({})").format(
                _ident(schema, name), _ident(schema, attached), _bound_literal(low), _bound_literal(high)
            ),
            "attach without a scan: the validated CHECK proves the bounds",
            lock=ACCESS_EXCLUSIVE,
            targets=[(schema, attached)],
        )
    )
    inner, lock_targets = _swap_steps(ctx, shadow, renames=False)
    swap.extend(inner)
    swap[0].targets = tuple(list(swap[0].targets) + lock_targets)
    swap.append(
        Step(
            sql.SQL(
                "INSERT INTO {} (schema_name, table_name, source_oid, mode, phase) VALUES ({}, {}, {}, 'attach', 'post')"
            ).format(
                _ident(STATE_SCHEMA, STATE_TABLE),
                sql.Literal(schema),
                sql.Literal(name),
                sql.Literal(int(ctx["table"]["oid"])),
            ),
            "remember the phases after the swap",
        )
    )
    post = _post_units(ctx, drop_log=False)
    return [
        {"name": "check", "description": "add the range CHECK without a scan", "steps": pre},
        {
            "name": "validate",
            "description": "validate it online (and prebuild the extended primary key)",
            "units": [("validate %d" % i, [s]) for i, s in enumerate(validate)],
        },
        {
            "name": "swap",
            "description": "one short transaction: create the parent and future partitions, attach "
            "the original as partition %s for [%s, %s)" % (attached, _json_value(low), _json_value(high)),
            "steps": swap,
        },
        {"name": "post", "description": "rebuild materialized views, ANALYZE", "units": post},
    ]


def _rebuild_invalid_steps(ctx, src):
    """An INVALID index (a concurrent build cancelled) is absent for PostgreSQL's planner and would be attached to
    the parent's index as if it were built: drop it and build it again, both without blocking writers."""
    names, tails = ctx["names"], ctx["facts"].get("index_tails") or {}
    steps = []
    for index in ctx["plain_indexes"]:
        if index.get("is_valid", True):
            continue
        steps.extend(_drop_index_steps(names, [index["name"]], "INVALID index %s (a cancelled concurrent build)"))
        ctx["concurrent_indexes"].append(index["name"])
        steps.append(
            Step(
                sql.SQL("CREATE {}INDEX CONCURRENTLY {} ON {} {}").format(
                    sql.SQL("UNIQUE " if index["is_unique"] else ""),
                    sql.Identifier(index["name"]),
                    src,
                    sql.SQL(tails[index["name"]]),
                ),
                "rebuild INVALID index %s before it becomes the partition's" % index["name"],
                transactional=False,
            )
        )
    return steps
