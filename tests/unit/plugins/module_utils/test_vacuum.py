"""Pure logic of sigeti.dwh.vacuum: triggers, decisions with their numbers, bloat estimate, freeze periods, plans."""

import datetime
import itertools

import psycopg2.extensions
import pytest

from ansible_collections.sigeti.dwh.plugins.module_utils.core.errors import InvalidInput
from ansible_collections.sigeti.dwh.plugins.module_utils.vacuum import decisions as vd
from ansible_collections.sigeti.dwh.plugins.module_utils.vacuum import options as vo
from ansible_collections.sigeti.dwh.plugins.module_utils.vacuum import planner as v
from ansible_collections.sigeti.dwh.plugins.module_utils.vacuum import repack as vr
from ansible_collections.sigeti.dwh.plugins.module_utils.vacuum import run as vacuum_run

SETTINGS = {
    "autovacuum_vacuum_threshold": "50",
    "autovacuum_vacuum_scale_factor": "0.2",
    "autovacuum_analyze_threshold": "50",
    "autovacuum_analyze_scale_factor": "0.1",
    "autovacuum_vacuum_insert_threshold": "1000",
    "autovacuum_vacuum_insert_scale_factor": "0.2",
    "autovacuum": "on",
    "block_size": "8192",
}
T0 = datetime.datetime(2026, 1, 1, 12, 0)


def render(composable):
    """Render psycopg2.sql without a connection (identifiers and literals only)."""

    class _Conn:
        encoding = "UTF8"

    text = []

    def walk(part):
        from psycopg2 import sql

        if isinstance(part, sql.Composed):
            for sub in part:
                walk(sub)
        elif isinstance(part, sql.SQL):
            text.append(part.string)
        elif isinstance(part, sql.Identifier):
            text.append(".".join('"%s"' % s.replace('"', '""') for s in part.strings))
        elif isinstance(part, sql.Literal):
            text.append(psycopg2.extensions.adapt(part.wrapped).getquoted().decode())
        else:
            raise AssertionError(part)

    walk(composable)
    return "".join(text)


# --- existing behaviour kept --------------------------------------------------------------------


def test_autovacuum_triggers_unchanged():
    assert vo.autovacuum_triggers({}, SETTINGS, 10000) == {"vacuum": 2050, "analyze": 1050, "enabled": True}
    assert vo.autovacuum_triggers({"autovacuum_vacuum_scale_factor": "0.01"}, SETTINGS, -1)["vacuum"] == 50
    assert vo.autovacuum_triggers({"autovacuum_enabled": "false"}, SETTINGS, 0)["enabled"] is False
    assert vo.autovacuum_triggers({}, SETTINGS, 100, toast=True)["analyze"] is None


# --- sizes and option validation ------------------------------------------------------------------


def test_sizes_come_from_the_shared_units():
    # parse_size and format_bytes are tested exactly in test_units.py; vacuum reads its options through them
    assert vo.parse_size("100MB", "min_size") == 100 * 1024**2
    assert vd.format_bytes(100 * 1024**2) == "100.0 MiB"


def _params(**kw):
    base = {
        "analyze": "auto",
        "vacuum": "auto",
        "full": "auto",
        "full_method": "auto",
        "bloat_threshold": 0.3,
        "min_size": "100MB",
        "min_free_space": "0",
        "freeze_older_than": None,
        "autovacuum": None,
    }
    base.update(kw)
    return base


@pytest.mark.parametrize("value", [-0.01, 1.01, "x", None, float("nan")])
def test_bloat_threshold_out_of_range(value):
    with pytest.raises(InvalidInput, match="bloat_threshold"):
        vo.validate_options(_params(bloat_threshold=value))


@pytest.mark.parametrize("value", [0, 0.3, 1])
def test_bloat_threshold_in_range(value):
    assert vo.validate_options(_params(bloat_threshold=value))["bloat_threshold"] == float(value)


def test_validate_options_normalizes():
    out = vo.validate_options(
        _params(
            min_size="1GB",
            min_free_space="10GB",
            freeze_older_than=2,
            autovacuum={
                "autovacuum_vacuum_scale_factor": 0.02,
                "toast.autovacuum_enabled": "off",
                "autovacuum_analyze_threshold": None,
            },
        )
    )
    assert out["min_size"] == 1024**3 and out["min_free_space"] == 10 * 1024**3 and out["freeze_older_than"] == 2
    assert out["autovacuum"] == {
        "autovacuum_vacuum_scale_factor": "0.02",
        "toast.autovacuum_enabled": "false",
        "autovacuum_analyze_threshold": None,
    }


@pytest.mark.parametrize(
    "bad, match",
    [
        ({"freeze_older_than": -1}, "freeze_older_than"),
        ({"analyze": "sometimes"}, "analyze"),
        ({"full_method": "cluster"}, "full_method"),
        ({"autovacuum": {"fillfactor": 70}}, "not an autovacuum storage parameter"),
        ({"autovacuum": {"autovacuum_enabled": "maybe"}}, "true or false"),
        ({"autovacuum": {"autovacuum_vacuum_threshold": 1.5}}, "whole number"),
        ({"autovacuum": {"autovacuum_vacuum_threshold": -5}}, ">= -1"),
        ({"autovacuum": {"autovacuum_vacuum_scale_factor": 101}}, "out of range"),
        ({"autovacuum": {"autovacuum_vacuum_scale_factor": "lots"}}, "must be a number"),
        ({"autovacuum": {"toast.autovacuum_analyze_threshold": 5}}, "never analyzed"),
        ({"min_size": "big"}, "min_size"),
    ],
)
def test_validate_options_rejects(bad, match):
    with pytest.raises(InvalidInput, match=match):
        vo.validate_options(_params(**bad))


# --- reloptions -----------------------------------------------------------------------------------


def test_reloption_changes_sets_resets_and_is_idempotent():
    declared = vo.normalize_reloptions(
        {"autovacuum_vacuum_scale_factor": 0.02, "autovacuum_enabled": None, "toast.autovacuum_vacuum_threshold": 100}
    )
    current = {"autovacuum_enabled": "false", "fillfactor": "90"}
    to_set, to_reset = vo.reloption_changes(current, {}, declared)
    assert to_set == {"autovacuum_vacuum_scale_factor": "0.02", "toast.autovacuum_vacuum_threshold": "100"}
    assert to_reset == ["autovacuum_enabled"]
    after = {"autovacuum_vacuum_scale_factor": "0.02", "fillfactor": "90"}
    assert vo.reloption_changes(after, {"autovacuum_vacuum_threshold": "100"}, declared) == ({}, [])


@pytest.mark.parametrize(
    "current, wanted, same",
    [
        ("0.020", "0.02", True),
        ("off", "false", True),
        ("on", "true", True),
        ("1", "true", True),
        ("0.2", "0.02", False),
        ("false", "true", False),
        (None, "1", False),
        (None, None, True),
    ],
)
def test_same_value(current, wanted, same):
    assert vo._same_value(current, wanted) is same


def test_effective_reloptions_drive_the_triggers():
    heap, toast = vo.effective_reloptions(
        {"autovacuum_vacuum_scale_factor": "0.2"},
        {"autovacuum_enabled": "false"},
        {"autovacuum_vacuum_scale_factor": "0.01", "toast.autovacuum_enabled": None},
    )
    assert heap == {"autovacuum_vacuum_scale_factor": "0.01"} and toast == {}


def test_reloptions_sql():
    text = render(
        v.reloptions_sql(
            "dwh",
            "t",
            {"autovacuum_vacuum_scale_factor": "0.02", "toast.autovacuum_enabled": "false"},
            ["autovacuum_enabled"],
        )
    )
    assert text == (
        'ALTER TABLE "dwh"."t" SET ("autovacuum_vacuum_scale_factor" = \'0.02\', '
        '"toast"."autovacuum_enabled" = \'false\'), RESET ("autovacuum_enabled")'
    )


def test_toast_options_strip_prefix():
    assert vo.toast_options({"autovacuum_enabled": "false"}) == {"autovacuum_enabled": "false"}
    assert vo.toast_options({"toast.autovacuum_enabled": "false"}) == {"autovacuum_enabled": "false"}


# --- analyze / vacuum decisions ------------------------------------------------------------------

TRIG = {"vacuum": 2050, "analyze": 1050, "enabled": True}


@pytest.mark.parametrize(
    "mode, stats, due, words",
    [
        ("never", {}, False, "never"),
        ("always", {"last_analyze": T0, "n_mod_since_analyze": 0}, True, "always"),
        ("auto", {}, True, "never analyzed"),
        ("auto", {"last_autoanalyze": T0, "n_mod_since_analyze": 1051}, True, "1051 rows changed"),
        (
            "auto",
            {"last_analyze": T0, "n_mod_since_analyze": 1050},
            False,
            "1050 rows changed since the last analyze <=",
        ),
        ("auto", {"last_analyze": T0, "n_mod_since_analyze": None}, False, "0 rows"),
    ],
)
def test_analyze_decision(mode, stats, due, words):
    decision = vd.analyze_decision(mode, stats, TRIG)
    assert decision["due"] is due and words in decision["reason"]
    assert decision["trigger"] == 1050


def test_vacuum_decision_every_combination():
    toast_trig = {"vacuum": 60, "analyze": None, "enabled": True}
    for dead, toast_dead, inserted in itertools.product((0, 2050, 2051), (None, 60, 61), (0, 3000, 3001)):
        stats = {"n_dead_tup": dead, "n_ins_since_vacuum": inserted}
        toast = None if toast_dead is None else {"n_dead_tup": toast_dead}
        decision = vd.vacuum_decision("auto", stats, TRIG, 3000, toast, toast_trig if toast else None)
        expected = dead > 2050 or (toast_dead or 0) > 60 or inserted > 3000
        assert decision["due"] is expected, (dead, toast_dead, inserted, decision)
        assert decision["n_dead_tup"] == dead and decision["trigger"] == 2050
        if dead > 2050:
            assert "%d dead rows > vacuum trigger 2050" % dead in decision["reason"]
        if (toast_dead or 0) > 60:
            assert "TOAST: %d dead chunks" % toast_dead in decision["reason"]
        if inserted > 3000:
            assert "inserted since the last vacuum" in decision["reason"]
    assert vd.vacuum_decision("never", {"n_dead_tup": 10**9}, TRIG)["due"] is False
    assert vd.vacuum_decision("always", {}, TRIG)["due"] is True
    assert vd.vacuum_decision("auto", {"n_ins_since_vacuum": 10**9}, TRIG, None)["due"] is False


def test_insert_trigger():
    assert vo.insert_trigger({}, SETTINGS, 10000) == 3000
    assert vo.insert_trigger({"autovacuum_vacuum_insert_threshold": "-1"}, SETTINGS, 10000) is None
    assert vo.insert_trigger({}, {}, -1) == 1000


# --- bloat ------------------------------------------------------------------------------------------


def test_estimate_bloat_packed_and_bloated():
    # 100k rows of 40 data bytes: tuple = 24 header + 40 data + 4 pointer = 68 -> 120 per page -> 834 pages
    packed = vd.estimate_bloat(834 * 8192, 100000, 40.0, 3, False)
    assert packed["expected_pages"] == 834 and packed["bloat"] == 0.0 and packed["tuple_bytes"] == 68
    doubled = vd.estimate_bloat(1668 * 8192, 100000, 40.0, 3, False)
    assert doubled["bloat"] == pytest.approx(0.5, abs=0.001)
    assert vd.estimate_bloat(0, 0, None, 3, False)["bloat"] == 0.0
    assert vd.estimate_bloat(8192, 10, None, 3, False) is None
    # fillfactor 50 expects twice the pages
    assert vd.estimate_bloat(1668 * 8192, 100000, 40.0, 3, False, fillfactor=50)["bloat"] < 0.001
    # null bitmap: 9 columns with NULLs -> header 23 + 2 = 25 -> 32
    assert vd.estimate_bloat(8192, 1, 40.0, 9, True)["tuple_bytes"] == 32 + 40 + 4


@pytest.mark.parametrize(
    "mode, size, bloat, due, words",
    [
        ("never", 10**12, {"bloat": 0.9, "method": "pgstattuple"}, False, "never"),
        ("always", 0, None, True, "always"),
        ("auto", 99, {"bloat": 0.9, "method": "pgstattuple"}, False, "< min_size"),
        ("auto", 100, None, False, "bloat unknown"),
        ("auto", 100, {"bloat": 0.31, "method": "estimate"}, True, "bloat 31.0% (estimate) > bloat_threshold 30.0%"),
        ("auto", 100, {"bloat": 0.30, "method": "pgstattuple"}, False, "<= bloat_threshold"),
    ],
)
def test_full_decision(mode, size, bloat, due, words):
    decision = vd.full_decision(mode, size, bloat, 0.3, 100)
    assert decision["due"] is due and words in decision["reason"], decision


def test_rewrite_space_and_disk_decision():
    assert vd.rewrite_space(1000, 0.5) == 1000
    assert vd.rewrite_space(1000, None) == 2000
    ok = vd.disk_decision(1000, 5000, "/data", True, "auto", 100)
    assert ok["ok"] and ok["checked"]
    short = vd.disk_decision(10 * 1024**3, int(10.5 * 1024**3), "/data", True, "auto", 1024**3)
    assert not short["ok"], short
    assert "10.50 GiB free < 10.00 GiB needed (copy and WAL) + min_free_space 1.00 GiB" in short["reason"]
    unseen = vd.disk_decision(1000, None, "/data", False, "auto", 0)
    assert unseen["ok"] and not unseen["checked"] and "not visible" in unseen["reason"]
    assert not vd.disk_decision(1000, None, "/data", False, "required", 0)["ok"]
    assert vd.disk_decision(10**15, 1, "/data", True, "never", 0)["ok"]


# --- freeze -----------------------------------------------------------------------------------------

D = datetime.date


@pytest.mark.parametrize(
    "low, high, today, expected",
    [
        (D(2024, 1, 1), D(2025, 1, 1), D(2024, 6, 1), -1),  # open
        (D(2024, 1, 1), D(2025, 1, 1), D(2025, 1, 1), 0),  # just ended
        (D(2024, 1, 1), D(2025, 1, 1), D(2025, 12, 31), 0),
        (D(2024, 1, 1), D(2025, 1, 1), D(2026, 1, 1), 1),
        (D(2024, 1, 1), D(2025, 1, 1), D(2027, 1, 1), 2),
        (D(2025, 1, 1), D(2025, 2, 1), D(2025, 3, 31), 1),  # monthly
        (D(2025, 1, 1), D(2025, 2, 1), D(2025, 4, 1), 2),
        (D(2025, 1, 1), D(2025, 4, 1), D(2025, 9, 30), 1),  # quarterly: 5 months later
        (D(2025, 1, 1), D(2025, 4, 1), D(2025, 10, 1), 2),
        (D(2025, 1, 6), D(2025, 1, 13), D(2025, 1, 27), 2),  # weekly, in days
        (D(2025, 1, 6), D(2025, 1, 13), D(2025, 1, 26), 1),
        (D(2025, 1, 1), D(2025, 1, 2), D(2025, 1, 5), 3),  # daily
        (D(2025, 1, 2), D(2025, 1, 1), D(2025, 1, 5), None),  # inverted
        (None, D(2025, 1, 1), D(2025, 1, 5), None),
    ],
)
def test_periods_since_end(low, high, today, expected):
    assert vd.periods_since_end(low, high, today) == expected


@pytest.mark.parametrize(
    "older, ago, frozen_age, row_age, stats, due, words",
    [
        (None, 5, 10, 20, {}, False, "not set"),
        (2, None, 10, 20, {}, False, "not a range partition"),
        (2, -1, 10, 20, {}, False, "still open"),
        (2, 1, 10, 20, {}, False, "1 periods ago < freeze_older_than 2"),
        (2, 2, 10, 20, {}, False, "already frozen"),  # relfrozenxid newer than every row
        (2, 2, 20, 20, {}, True, "age(relfrozenxid) 20 >= newest row age 20"),  # plain vacuum leaves it at the row
        (2, 3, 90, 20, {}, True, "not frozen"),
        (2, 2, 10, 20, {"n_ins_since_vacuum": 5}, True, "5 writes since the last vacuum"),
        (2, 2, 10, None, {}, False, "no rows"),
        (0, 0, 10, None, {"n_dead_tup": 3}, True, "not frozen"),
    ],
)
def test_freeze_decision(older, ago, frozen_age, row_age, stats, due, words):
    decision = vd.freeze_decision(older, ago, frozen_age, row_age, stats)
    assert decision["due"] is due and words in decision["reason"], decision


# --- parent analyze -----------------------------------------------------------------------------------

PTRIG = {"analyze": 100, "vacuum": 0, "enabled": True}


@pytest.mark.parametrize(
    "mode, parent, inherited, leaves, work, due, words",
    [
        ("never", {}, False, [], ["p1"], False, "never"),
        ("always", {"last_analyze": T0}, True, [], [], True, "always"),
        ("auto", {}, False, [], [], True, "never analyzed"),
        ("auto", {}, True, [("p1", {"n_mod_since_analyze": 0})], [], False, "unchanged"),
        ("auto", {"last_analyze": T0}, True, [("p1", {})], ["p1"], True, "processed in this run: p1"),
        (
            "auto",
            {"last_analyze": T0},
            True,
            [("p1", {"last_autoanalyze": T0 + datetime.timedelta(seconds=1)})],
            [],
            True,
            "after the parent's last analyze: p1",
        ),
        (
            "auto",
            {"last_analyze": T0},
            True,
            [("p1", {"last_autovacuum": T0 + datetime.timedelta(seconds=1)})],
            [],
            True,
            "p1",
        ),
        # a manual ANALYZE of the partitions right after the parent is what ANALYZE parent itself does (< 18)
        (
            "auto",
            {"last_analyze": T0},
            True,
            [("p1", {"last_analyze": T0 + datetime.timedelta(seconds=1)})],
            [],
            False,
            "unchanged",
        ),
        (
            "auto",
            {"last_analyze": T0},
            True,
            [("p1", {"last_vacuum": T0 + datetime.timedelta(seconds=1)})],
            [],
            False,
            "unchanged",
        ),
        (
            "auto",
            {"last_analyze": T0},
            True,
            [("p1", {"n_mod_since_analyze": 60}), ("p2", {"n_mod_since_analyze": 41})],
            [],
            True,
            "101 rows changed in the partitions > parent analyze trigger 100",
        ),
        (
            "auto",
            {"last_analyze": T0},
            True,
            [("p1", {"n_mod_since_analyze": 100})],
            [],
            False,
            "100 changes <= trigger",
        ),
    ],
)
def test_parent_analyze_decision(mode, parent, inherited, leaves, work, due, words):
    decision = vd.parent_analyze_decision(mode, parent, inherited, leaves, work, PTRIG)
    assert decision["due"] is due and words in decision["reason"], decision


# --- whole plans ----------------------------------------------------------------------------------------


def _entry(oid, name, relkind="r", parent=None, level=0, stats=None, reltuples=10000.0, **kw):
    entry = {
        "oid": oid,
        "parent_oid": parent,
        "schema": "dwh",
        "name": name,
        "relkind": relkind,
        "is_leaf": relkind == "r",
        "level": level,
        "is_partition": parent is not None,
        "reltuples": reltuples,
        "relpages": 100,
        "reloptions": {},
        "toast_reloptions": {},
        "toast_oid": None,
        "heap_bytes": 819200,
        "toast_bytes": 0,
        "index_bytes": 0,
        "stats": stats or {},
        "toast_stats": {},
    }
    entry.update(kw)
    return entry


def _table(*entries):
    relations = {e["oid"]: e for e in entries}
    root = entries[0]
    return {
        "schema": root["schema"],
        "name": root["name"],
        "oid": root["oid"],
        "root": root,
        "relations": relations,
        "partitions": list(entries[1:]),
    }


OPTS = vo.validate_options(_params(min_size="0"))
QUIET = {"last_analyze": T0, "last_vacuum": T0, "n_mod_since_analyze": 0, "n_dead_tup": 0, "n_ins_since_vacuum": 0}


def _sqls(plan):
    return [render(a["step"].sql) for a in plan["actions"] if "step" in a]


def test_plan_quiet_table_is_empty():
    plan = v.table_plan(_table(_entry(1, "t", stats=QUIET)), {}, OPTS, SETTINGS, 170000)
    assert plan["actions"] == []


def test_plan_dead_rows_and_changes_combine_into_one_vacuum_analyze():
    stats = dict(QUIET, n_dead_tup=5000, n_mod_since_analyze=5000)
    plan = v.table_plan(_table(_entry(1, "t", stats=stats)), {}, OPTS, SETTINGS, 170000)
    assert _sqls(plan) == ['VACUUM (ANALYZE) "dwh"."t"']
    assert "5000 dead rows > vacuum trigger 2050" in plan["actions"][0]["reason"]
    assert plan["actions"][0]["step"].transactional is False


def test_plan_full_with_freeze_then_vacuum_analyze():
    extras = {
        1: {
            "size_bytes": 10**9,
            "bloat": {"bloat": 0.6, "method": "pgstattuple"},
            "periods_ago": 3,
            "relfrozenxid_age": 100,
            "newest_row_age": 50,
        }
    }
    opts = dict(OPTS, freeze_older_than=2)
    plan = v.table_plan(_table(_entry(1, "t", stats=QUIET)), extras, opts, SETTINGS, 170000)
    assert _sqls(plan) == ['VACUUM (FULL, FREEZE) "dwh"."t"', 'VACUUM (ANALYZE) "dwh"."t"']
    assert plan["actions"][0]["step"].lock == "ACCESS EXCLUSIVE"
    assert plan["relations"][0]["decisions"]["full"]["method"] == "vacuum_full"


def test_plan_full_with_pg_repack():
    extras = {
        1: {
            "size_bytes": 10**9,
            "bloat": {"bloat": 0.6, "method": "pgstattuple"},
            "repack": {"method": "pg_repack", "reason": "ok", "command": ["pg_repack", "--table=dwh.t"]},
        }
    }
    plan = v.table_plan(_table(_entry(1, "t", stats=QUIET)), extras, OPTS, SETTINGS, 170000)
    assert plan["actions"][0]["command"] == ["pg_repack", "--table=dwh.t"]
    assert _sqls(plan) == ['VACUUM (ANALYZE) "dwh"."t"']


def _tree(p1_stats, p2_stats, parent_stats=None):
    return _table(
        _entry(
            1, "f", relkind="p", stats=parent_stats if parent_stats is not None else {"last_analyze": T0}, reltuples=-1
        ),
        _entry(2, "f_2024", parent=1, level=1, stats=p1_stats),
        _entry(3, "f_2025", parent=1, level=1, stats=p2_stats),
    )


def test_plan_parent_analyzed_after_partition_work_pg17_cascades():
    plan = v.table_plan(
        _tree(dict(QUIET, n_dead_tup=5000, n_mod_since_analyze=5000), QUIET),
        {1: {"has_inherited_stats": True}},
        OPTS,
        SETTINGS,
        170000,
    )
    # < 18: ANALYZE parent analyzes the partitions too, so the leaf runs a plain VACUUM and the parent goes last
    assert _sqls(plan) == ['VACUUM "dwh"."f_2024"', 'ANALYZE "dwh"."f"']
    leaf = [r for r in plan["relations"] if r["name"] == "f_2024"][0]
    assert "runs through ANALYZE dwh.f" in leaf["decisions"]["analyze"]["note"]


def test_plan_parent_analyze_only_on_pg18():
    plan = v.table_plan(
        _tree(dict(QUIET, n_dead_tup=5000, n_mod_since_analyze=5000), QUIET),
        {1: {"has_inherited_stats": True}},
        OPTS,
        SETTINGS,
        180000,
    )
    assert _sqls(plan) == ['VACUUM (ANALYZE) "dwh"."f_2024"', 'ANALYZE ONLY "dwh"."f"']


def test_plan_parent_never_analyzed_even_when_partitions_are_quiet():
    plan = v.table_plan(
        _tree(QUIET, QUIET, parent_stats={}), {1: {"has_inherited_stats": False}}, OPTS, SETTINGS, 170000
    )
    assert _sqls(plan) == ['ANALYZE "dwh"."f"']


def test_plan_quiet_tree_is_empty():
    plan = v.table_plan(_tree(QUIET, QUIET), {1: {"has_inherited_stats": True}}, OPTS, SETTINGS, 170000)
    assert plan["actions"] == []


def test_plan_reloptions_first_on_leaves_only_and_do_not_wake_the_parent():
    opts = dict(OPTS, autovacuum=vo.normalize_reloptions({"autovacuum_vacuum_scale_factor": 0.02}))
    plan = v.table_plan(_tree(QUIET, QUIET), {1: {"has_inherited_stats": True}}, opts, SETTINGS, 170000)
    assert _sqls(plan) == [
        'ALTER TABLE "dwh"."f_2024" SET ("autovacuum_vacuum_scale_factor" = \'0.02\')',
        'ALTER TABLE "dwh"."f_2025" SET ("autovacuum_vacuum_scale_factor" = \'0.02\')',
    ]
    assert all(a["step"].group == "reloptions" for a in plan["actions"])


def test_plan_declared_reloptions_change_the_trigger():
    # 600 dead rows on 10k tuples: below the default trigger (2050), above 50 + 0.02 * 10000 = 250
    stats = dict(QUIET, n_dead_tup=600)
    assert v.table_plan(_table(_entry(1, "t", stats=stats)), {}, OPTS, SETTINGS, 170000)["actions"] == []
    opts = dict(OPTS, autovacuum=vo.normalize_reloptions({"autovacuum_vacuum_scale_factor": 0.02}))
    plan = v.table_plan(_table(_entry(1, "t", stats=stats)), {}, opts, SETTINGS, 170000)
    assert _sqls(plan)[-1] == 'VACUUM "dwh"."t"'


def test_plan_modes_never_do_nothing():
    opts = vo.validate_options(_params(analyze="never", vacuum="never", full="never"))
    stats = {"n_dead_tup": 10**6, "n_mod_since_analyze": 10**6}
    plan = v.table_plan(_tree(stats, stats, parent_stats={}), {}, opts, SETTINGS, 170000)
    assert plan["actions"] == []


def test_sql_builders():
    assert render(v.vacuum_sql("a b", "T", [])) == 'VACUUM "a b"."T"'
    assert render(v.vacuum_sql("s", "t", ["FULL", "FREEZE"])) == 'VACUUM (FULL, FREEZE) "s"."t"'
    assert render(v.analyze_sql("s", "t", only=True)) == 'ANALYZE ONLY "s"."t"'


# --- pg_repack -------------------------------------------------------------------------------------------


def test_repack_availability_reasons():
    ext = {"version": "1.4.8", "schema": "public"}
    assert vr.repack_availability(None, "/bin/x", "1.4.8", True, 150000)[1].startswith(
        "the pg_repack extension is not installed"
    )
    assert "apt-get install postgresql-15-repack" in vr.repack_availability(None, None, None, True, 150018)[1]
    assert "no pg_repack program" in vr.repack_availability(ext, None, None, True, 150000)[1]
    assert "does not match" in vr.repack_availability(ext, "/x", "1.5.0", True, 150000)[1]
    assert "superuser" in vr.repack_availability(ext, "/x", "1.4.8", False, 150000)[1]
    assert vr.repack_availability(ext, "/x", "1.4.8", True, 150000)[0] is True


def test_repack_command_keeps_the_password_out_of_argv():
    kwargs = {
        "host": "127.0.0.1",
        "port": 5433,
        "user": "dba",
        "password": "s3cret",
        "dbname": "dwh",
        "sslmode": "prefer",
    }
    argv, env = vr.repack_argv("/usr/bin/pg_repack", kwargs, "Ventes", "fait 2024", 2500), vr.repack_env(kwargs)
    assert "s3cret" not in " ".join(argv) and env["PGPASSWORD"] == "s3cret"
    assert '--table="Ventes"."fait 2024"' in argv and "--wait-timeout=3" in argv and "--no-kill-backend" in argv
    assert "s3cret" not in vr.render_command(argv)
    assert vr.render_command(["a", "b c"]) == "a 'b c'"


class _Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now

    def sleep(self, seconds):
        self.now += seconds


def test_wait_for_statistics_returns_once_every_relation_is_counted():
    clock = _Clock()
    reads = [{1: 3, 2: 7}, {1: 4, 2: 7}, {1: 4, 2: 8}]
    seen = []

    def read(oids):
        seen.append(sorted(oids))
        return reads.pop(0)

    assert vacuum_run.wait_for_statistics(read, {1: 3, 2: 7}, sleep=clock.sleep, clock=clock) == []
    assert seen == [[1, 2], [1, 2], [2]]  # a relation already counted is not asked for again


def test_wait_for_statistics_gives_up_after_its_timeout_and_names_what_is_late():
    clock = _Clock()
    late = vacuum_run.wait_for_statistics(
        lambda oids: {1: 5}, {1: 5, 2: 1}, timeout=1.0, sleep=clock.sleep, clock=clock
    )
    assert late == [1, 2] and 1.0 <= clock.now <= 1.2


def test_counted_before_covers_the_leaves_below_an_analyzed_parent():
    def entry(oid, name, relkind, parent=None, count=0):
        stats = {"vacuum_count": count, "autovacuum_count": 0, "analyze_count": 1, "autoanalyze_count": 0}
        return {"oid": oid, "parent_oid": parent, "schema": "s", "name": name, "relkind": relkind, "stats": stats}

    relations = {10: entry(10, "p", "p"), 11: entry(11, "p_1", "r", 10, 2), 12: entry(12, "p_2", "r", 10, 5)}
    step = v.Step("ANALYZE s.p", "why", targets=[("s", "p")], transactional=False)
    gathered = {
        "tables": [{"table": {"relations": relations}, "plan": {"actions": [{"action": "analyze", "step": step}]}}]
    }
    assert v.counted_before(gathered) == {11: 3, 12: 6}


def _fake_repack(outputs):
    calls = []

    def run_command(argv, environ_update=None):
        calls.append(environ_update)
        return outputs.pop(0)

    return run_command, calls


def test_run_repack_retries_a_lock_wait_like_the_executor_then_names_the_blocker():
    clock = _Clock()
    run_command, calls = _fake_repack([(1, "", "WARNING: timed out, do not cancel conflicting backends")] * 3)

    def blockers(targets):
        return [{"pid": 42, "user": "u", "state": "idle in transaction", "query": "q", "mode": "m"}]

    with pytest.raises(vacuum_run.LockNotGranted) as raised:
        vacuum_run.run_repack(["pg_repack"], {}, 2, 0.5, blockers, [("s", "t")], run_command, sleep=clock.sleep)
    assert "Gave up after 3 attempts" in raised.value.msg and "pid 42" in raised.value.msg
    assert raised.value.details["blocking_pids"] == [42]
    assert clock.now == 0.5 + 1.0  # the executor's growing delays
    assert all(c["PGPASSWORD"] == "" for c in calls)  # an inherited password never reaches pg_repack


def test_run_repack_returns_after_a_retry_and_fails_at_once_on_another_error():
    clock = _Clock()
    run_command, _calls = _fake_repack([(1, "", "lock timeout"), (0, "INFO: repacking table", "")])
    out = vacuum_run.run_repack(["pg_repack"], {}, 3, 0.1, None, [("s", "t")], run_command, sleep=clock.sleep)
    assert out == "INFO: repacking table"
    run_command, calls = _fake_repack([(1, "", "ERROR: pg_repack failed with error: no such table")])
    with pytest.raises(InvalidInput):
        vacuum_run.run_repack(["pg_repack"], {}, 3, 0.1, None, [("s", "t")], run_command, sleep=clock.sleep)
    assert len(calls) == 1
