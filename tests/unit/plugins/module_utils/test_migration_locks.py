"""Pure logic of the migration's lock order, of its catch-up's judgement and of the deadlock report."""

import pytest

from ansible_collections.sigeti.dwh.plugins.module_utils.migration import api as migration
from ansible_collections.sigeti.dwh.plugins.module_utils.migration import catchup as migration_catchup
from ansible_collections.sigeti.dwh.plugins.module_utils.plan import locks as plan_locks
from ansible_collections.sigeti.dwh.plugins.module_utils.plan.retry import (
    describe_deadlock,
    own_message,
    parse_deadlock,
)
from tests.support.migration_driver import yearly_layout
from tests.unit.plugins.module_utils.test_migration import _facts, _table
from tests.unit.plugins.module_utils.test_migration import render as render_plain


def render(node):
    """``render_plain``, and the body of a DO block (a composed text passed as a literal) rendered as it is."""
    if type(node).__name__ == "AsLiteral":
        return "'%s'" % render(node._wrapped)
    if hasattr(node, "seq"):
        return "".join(render(part) for part in node.seq)
    return render_plain(node)


def _fk(name, schema, table):
    return {
        "name": name,
        "type": "f",
        "columns": ["ref"],
        "index": None,
        "definition": "FOREIGN KEY (ref) REFERENCES %s.%s(id)" % (schema, table),
        "validated": True,
        "comment": None,
        "references": {"schema": schema, "name": table},
    }


def _plan(mode, **facts):
    base = _facts()
    base["constraints"] = base["constraints"] + [
        _fk("fait_dim_b", "dwh_dim", "b"),
        _fk("fait_dim_a", "dwh_dim", "a"),
    ]
    base["foreign_keys_in"] = [
        {"name": "child_fk", "schema": "dwh_marts", "table": "child", "definition": "x", "columns": ["id", "date_key"]}
    ]
    base["views"] = [{"kind": "view", "schema": "dwh_marts", "name": "v", "definition": "SELECT 1"}]
    base.update(facts)
    options = {"key": "date_key", "extend_primary_key": True, "mode": mode}
    return migration.plan_migration(_table(), yearly_layout("fait"), options, {}, facts=base)


def _first(steps):
    """The orders the transaction's first-locks step tries, as its reason lists them."""
    step = next(s for s in steps if "first thing" in s.reason)
    described = step.reason.split("first thing: ", 1)[1].split(";", 1)[0]
    return [
        order.split(", ")
        for order in described.replace(" (the second order when the first would deadlock)", "").split(" / then ")
    ]


def _later(steps):
    """(relation, mode) of the deadlock-safe locks taken later in the transaction."""
    return [(".".join(s.targets[0]), s.lock) for s in steps if "locked after" in s.reason]


def _phase(plan, name):
    return next(p for p in plan.phases if p["name"] == name)


def test_offline_locks_referenced_tables_first_then_the_table_then_its_children():
    steps = _phase(_plan("offline"), "offline")["steps"]
    assert _first(steps) == [
        # the first waits lock_timeout (it holds nothing yet); referenced tables before the table (TPC-B's history)
        [
            "dwh_dim.a (SHARE ROW EXCLUSIVE)",
            "dwh_dim.b (SHARE ROW EXCLUSIVE)",
            "dwh_facts.fait (EXCLUSIVE)",
            "dwh_marts.child (SHARE ROW EXCLUSIVE)",
        ],
        # or, when that would deadlock, the table first (an application writing it before the tables it references)
        [
            "dwh_facts.fait (EXCLUSIVE)",
            "dwh_dim.a (SHARE ROW EXCLUSIVE)",
            "dwh_dim.b (SHARE ROW EXCLUSIVE)",
            "dwh_marts.child (SHARE ROW EXCLUSIVE)",
        ],
    ]
    # the swap's upgrade, late in the transaction, is deadlock-safe too
    assert _later(steps) == [
        ("dwh_facts.fait", "ACCESS EXCLUSIVE"),
        ("dwh_marts.child", "ACCESS EXCLUSIVE"),
        ("dwh_marts.v", "ACCESS EXCLUSIVE"),
    ]


def test_online_swap_locks_referenced_tables_then_the_table_and_adds_foreign_keys_after_its_replay():
    plan = _plan("online")
    steps = _phase(plan, "swap")["steps"]
    assert _first(steps)[0] == [
        "dwh_dim.a (SHARE ROW EXCLUSIVE)",
        "dwh_dim.b (SHARE ROW EXCLUSIVE)",
        "dwh_facts.fait (ACCESS EXCLUSIVE)",
        "dwh_marts.child (ACCESS EXCLUSIVE)",
        "dwh_marts.v (ACCESS EXCLUSIVE)",
    ]
    assert render(steps[0].sql).startswith("DO "), "the locks come first thing"
    texts = [render(s.sql) for s in steps]
    replayed = max(i for i, t in enumerate(texts) if t.startswith('INSERT INTO "dwh_facts"."fait_sgt_new"'))
    fks = [i for i, t in enumerate(texts) if "ADD CONSTRAINT" in t and "NOT VALID" in t and "fait_dim" in t]
    assert fks and min(fks) > replayed, "no replayed row is checked against the referenced tables"
    # no foreign key is built before the swap: the catch-up replays without them
    build = [render(s.sql) for _label, unit in _phase(plan, "build")["units"] for s in unit]
    assert not [t for t in build if "FOREIGN KEY" in t]
    post = [render(s.sql) for _label, unit in _phase(plan, "post")["units"] for s in unit]
    validations = [t for t in post if 'VALIDATE CONSTRAINT "fait_dim_a"' in t]
    assert len(validations) == len(yearly_layout("fait")), "each partition validated on its own"
    parent = next(
        i for i, t in enumerate(post) if t.startswith('ALTER TABLE "dwh_facts"."fait" ADD CONSTRAINT "fait_dim_a"')
    )
    assert post[parent - 1].startswith("DO ") and "dwh_dim" in post[parent - 1], "its locks first"


def test_attach_locks_referenced_tables_access_exclusive_first():
    steps = _phase(_plan("attach", key_min=20200101, key_max=20261231), "swap")["steps"]
    assert _first(steps)[0][:3] == [
        "dwh_dim.a (ACCESS EXCLUSIVE)",
        "dwh_dim.b (ACCESS EXCLUSIVE)",
        "dwh_facts.fait (ACCESS EXCLUSIVE)",
    ]


def test_without_referenced_tables_there_is_one_order():
    facts = _facts(foreign_keys_in=[], views=[])
    plan = migration.plan_migration(
        _table(), yearly_layout("fait"), {"key": "date_key", "extend_primary_key": True}, {}, facts=facts
    )
    assert _first(_phase(plan, "swap")["steps"]) == [["dwh_facts.fait (ACCESS EXCLUSIVE)"]]


def test_a_relation_wanted_twice_is_locked_once_in_the_stronger_mode():
    merged = plan_locks.merge(
        [
            plan_locks.Lock("s", "a", "SHARE ROW EXCLUSIVE", "x"),
            plan_locks.Lock("s", "b", "EXCLUSIVE", "y"),
            plan_locks.Lock("s", "a", "ACCESS EXCLUSIVE", "z"),
        ]
    )
    assert [(m.name, m.mode) for m in merged] == [("a", "ACCESS EXCLUSIVE"), ("b", "EXCLUSIVE")]
    assert plan_locks.mode_name("SHARE ROW EXCLUSIVE") == "ShareRowExclusiveLock"


def test_check_mode_predicts_the_partitions_and_what_is_created():
    partitions, created = migration.planned_partitions(_plan("online"))
    assert created == ["fait_%d" % y for y in range(2020, 2031)] + ["fait_default"]
    assert partitions[0] == {"name": "fait_2020", "low": 20200101, "high": 20210101, "default": False}
    assert partitions[-1] == {"name": "fait_default", "low": None, "high": None, "default": True}
    partitions, created = migration.planned_partitions(_plan("attach", key_min=20200101, key_max=20261231))
    assert "fait_unpartitioned" not in created
    attached = next(p for p in partitions if p["name"] == "fait_unpartitioned")
    assert (attached["low"], attached["high"]) == (20200101, 20270101)


# -- the catch-up ---------------------------------------------------------------------------------------------------


def _sample(at, left, logged, consumed, limit=1000, took=0.5):
    return migration_catchup.Sample(at, left, logged, consumed, took, limit)


@pytest.mark.parametrize(
    "batch, took, expected",
    [
        (1000, 3.0, 500),  # more than twice the target: halve
        (1000, 0.2, 2000),  # less than half: double
        (1000, 1.0, 1000),
        (150, 5.0, migration_catchup.MIN_BATCH),
        (150000, 0.1, 200000),
    ],
)
def test_next_batch_follows_the_time_a_batch_takes(batch, took, expected):
    assert migration_catchup.next_batch(batch, took, 1.0, 200000) == expected


def test_judge_done_converging_slow_and_stalled():
    threshold, patience = 50, 10.0
    # one batch left: the verification's replay takes it
    assert migration_catchup.judge([_sample(0, 900, 1000, 400)], threshold, patience).done
    # few keys left
    assert migration_catchup.judge([_sample(0, 40, 1000, 1000, limit=10)], threshold, patience).done
    # converging: the keys left shrink
    shrinking = [_sample(t, 12000 - 800 * t, 1000 + 200 * t, 1000) for t in range(12)]
    verdict = migration_catchup.judge(shrinking, threshold, patience)
    assert not verdict.done and not verdict.slow and not verdict.stalled
    # writers faster than the replay: warn at half the patience, give up at the whole
    growing = [_sample(t, 1000 + 500 * t, 1000 + 1500 * t, 1000) for t in range(7)]
    verdict = migration_catchup.judge(growing, threshold, patience)
    assert verdict.slow and not verdict.stalled
    assert verdict.change_rate == pytest.approx(1500) and verdict.replay_rate == pytest.approx(1000)
    growing += [_sample(t, 1000 + 500 * t, 1000 + 1500 * t, 1000) for t in range(7, 12)]
    assert migration_catchup.judge(growing, threshold, patience).stalled
    figs = migration_catchup.figures(growing, migration_catchup.judge(growing, threshold, patience), 0.0)
    text = migration_catchup.not_converging("s.t", figs, patience, gave_up=True)
    assert "1500 keys/s" in text and "1000 keys/s" in text and "migrate: abandon" in text and "resumes" in text


# -- the deadlock report -------------------------------------------------------------------------------------------

DETAIL = (
    "Process 123 waits for ShareRowExclusiveLock on relation 16390 of database 5; blocked by process 456.\n"
    "Process 456 waits for RowExclusiveLock on relation 16384 of database 5; blocked by process 123."
)


def test_a_deadlock_report_names_both_sides_and_their_locks():
    waits = parse_deadlock(DETAIL)
    assert [(w["pid"], w["mode"], w["relation"], w["blocked_by"]) for w in waits] == [
        (123, "ShareRowExclusiveLock", 16390, 456),
        (456, "RowExclusiveLock", 16384, 123),
    ]
    text = describe_deadlock(waits, 123, {16390: "public.pgbench_accounts", 16384: "public.pgbench_history"})
    assert text == (
        "this run (pid 123) waited for ShareRowExclusiveLock on public.pgbench_accounts, held by pid 456; "
        "pid 456 waited for RowExclusiveLock on public.pgbench_history, held by this run (pid 123)"
    )
    rows = parse_deadlock(
        "Process 1 waits for ShareLock on transaction 999; blocked by process 2.\n"
        "Process 2 waits for ExclusiveLock on tuple (0,1) of relation 77 of database 5; blocked by process 1."
    )
    assert describe_deadlock(rows, 1, {77: "s.t"}) == (
        "this run (pid 1) waited for ShareLock on a row (transaction 999), held by pid 2; "
        "pid 2 waited for ExclusiveLock on a row of s.t, held by this run (pid 1)"
    )
    assert parse_deadlock("not a report") == [] and describe_deadlock([], 1, {}) == ""


def test_own_messages_are_told_apart_from_the_servers():
    class Diag:
        message_primary = "sigeti.dwh: s.t was not granted EXCLUSIVE within 500 ms."
        message_hint = "run again"

    class Error:
        diag = Diag()

    assert own_message(Error()) == ("s.t was not granted EXCLUSIVE within 500 ms", "run again")
    Diag.message_primary = "canceling statement due to lock timeout"
    assert own_message(Error()) is None
