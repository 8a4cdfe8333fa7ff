"""The tiers planner on plain values: validation, which tier a partition belongs to, moves, bounds, refusals."""

import datetime

import pytest

from ansible_collections.sigeti.dwh.plugins.module_utils.core import periods
from ansible_collections.sigeti.dwh.plugins.module_utils.core.bounds import MAXVALUE
from ansible_collections.sigeti.dwh.plugins.module_utils.core.errors import InvalidInput
from ansible_collections.sigeti.dwh.plugins.module_utils.partitioning import planner as partitioning
from ansible_collections.sigeti.dwh.plugins.module_utils.tiering import planner as tiers
from tests.unit.plugins.module_utils.test_partitioning import part, table, text

D = datetime.date
MONTHS = periods.Scheme("date", "month", "date")
YEARS = periods.Scheme("yyyymmdd", "year", "integer")
TIERS = (tiers.Tier(12, "archive"), tiers.Tier(3, "cold"))


def place(name, high, tablespace="pg_default", indexes=(), size=1000, row_key=True):
    placed = tuple(tiers.Placed("dwh", i, s) for i, s in indexes)
    return tiers.PartitionPlace("dwh", name, high, tablespace, size, placed, row_key)


def test_tiers_are_checked_and_sorted_largest_after_first():
    got = tiers.validate_tiers([{"after": 3, "tablespace": "cold"}, {"after": 12, "tablespace": "archive"}], "dwh.f")
    assert got == TIERS
    assert tiers.validate_tiers(None, "dwh.f") == ()


@pytest.mark.parametrize(
    "given, words",
    [
        ([{"after": -1, "tablespace": "cold"}], ["tiers.after=-1", "dwh.f", "0 or more"]),
        ([{"after": True, "tablespace": "cold"}], ["tiers.after=True"]),
        ([{"after": "3", "tablespace": "cold"}], ["tiers.after='3'"]),
        ([{"after": 3, "tablespace": "a"}, {"after": 3, "tablespace": "b"}], ["after=3 more than once", "dwh.f"]),
        ([{"after": 3, "tablespace": ""}], ["tiers.tablespace=''", "give the name"]),
        ([{"after": 3, "tablespace": "x" * 64}], ["not a valid tablespace name", "63 bytes"]),
        ([{"after": 3, "tablespace": "bad\nname"}], ["not a valid tablespace name"]),
        ([{"after": 3, "tablespace": "pg_global"}], ["reserved"]),
        (["cold"], ["is not a dict", "{after: N, tablespace: NAME}"]),
    ],
)
def test_bad_tiers_are_refused_naming_table_value_and_what_to_do(given, words):
    with pytest.raises(InvalidInput) as raised:
        tiers.validate_tiers(given, "dwh.f")
    for word in words:
        assert word in raised.value.msg
    assert "nothing was changed" in raised.value.msg


def test_pg_default_is_a_valid_tier():
    assert tiers.validate_tiers([{"after": 0, "tablespace": "pg_default"}], "t") == (tiers.Tier(0, "pg_default"),)


@pytest.mark.parametrize(
    "high, expected",
    [
        (D(2025, 12, 1), None),  # November ended less than 3 months ago (current December)
        (D(2025, 9, 1), "cold"),  # August ended more than 3 periods ago: the cutoff is 2025-09-01
        (D(2025, 10, 1), None),  # September: not yet
        (D(2024, 12, 1), "archive"),  # the 12 periods cutoff is 2024-12-01: the largest after wins
        (D(2025, 1, 1), "cold"),
        (D(2026, 2, 1), None),  # ahead
        (MAXVALUE, None),
        (None, None),
    ],
)
def test_the_tier_with_the_largest_after_that_applies_wins(high, expected):
    tier = tiers.tier_of(TIERS, MONTHS, D(2025, 12, 1), high)
    assert (tier.tablespace if tier else None) == expected


def test_after_zero_covers_every_period_before_the_current_one():
    zero = (tiers.Tier(0, "cold"),)
    assert tiers.tier_of(zero, YEARS, D(2025, 1, 1), 20250101).tablespace == "cold"
    assert tiers.tier_of(zero, YEARS, D(2025, 1, 1), 20260101) is None


def test_one_move_per_partition_oldest_first_with_its_indexes_in_one_transaction():
    parts = [
        place("f_2025_02", D(2025, 3, 1), indexes=[("f_2025_02_pkey", "pg_default")]),
        place("f_2024_01", D(2024, 2, 1), indexes=[("f_2024_01_pkey", "pg_default"), ("f_2024_01_v", "archive")]),
        place("f_2025_11", D(2025, 12, 1)),
    ]
    plan = tiers.plan_moves(TIERS, MONTHS, D(2025, 12, 1), parts, table="dwh.f")
    assert [(m.name, m.tablespace, m.source) for m in plan.moves] == [
        ("f_2024_01", "archive", "pg_default"),
        ("f_2025_02", "cold", "pg_default"),
    ]
    first = plan.moves[0].steps
    assert [text(s.sql) for s in first] == [
        'LOCK TABLE "dwh"."f_2024_01" IN ACCESS EXCLUSIVE MODE',
        'ALTER TABLE "dwh"."f_2024_01" SET TABLESPACE "archive"',
        'ALTER INDEX "dwh"."f_2024_01_pkey" SET TABLESPACE "archive"',
    ]
    assert {s.group for s in first} == {"tier:f_2024_01"} and all(s.transactional for s in first)
    assert all(s.lock == "ACCESS EXCLUSIVE" for s in first)
    assert plan.remaining == 0 and not plan.warnings


def test_a_partition_in_place_with_one_index_elsewhere_moves_only_that_index():
    parts = [place("f_2024_01", D(2024, 2, 1), "archive", indexes=[("a", "archive"), ("b", "pg_default")])]
    plan = tiers.plan_moves(TIERS, MONTHS, D(2025, 12, 1), parts)
    assert [text(s.sql) for s in plan.moves[0].steps] == [
        'LOCK TABLE "dwh"."f_2024_01" IN ACCESS EXCLUSIVE MODE',
        'ALTER INDEX "dwh"."b" SET TABLESPACE "archive"',
    ]


def test_everything_in_place_plans_nothing():
    parts = [place("f_2024_01", D(2024, 2, 1), "archive", indexes=[("a", "archive")]), place("now", D(2026, 1, 1))]
    plan = tiers.plan_moves(TIERS, MONTHS, D(2025, 12, 1), parts)
    assert not plan and plan.moves == () and plan.remaining == 0


def test_max_per_run_bounds_the_moves_and_says_how_many_wait():
    parts = [place("f_%d" % y, 20000101 + (y - 1999) * 10000) for y in range(2000, 2010)]
    plan = tiers.plan_moves((tiers.Tier(1, "cold"),), YEARS, D(2025, 1, 1), parts, max_per_run=2, table="dwh.f")
    assert [m.name for m in plan.moves] == ["f_2000", "f_2001"]
    assert plan.remaining == 8
    assert "8 more partition(s) of dwh.f" in plan.warnings[0] and "tiers_max_per_run=2" in plan.warnings[0]


def test_pg_repack_moves_partitions_with_a_row_key_online_and_the_others_by_alter():
    parts = [place("a", 20200101, row_key=True), place("b", 20210101, row_key=False)]
    plan = tiers.plan_moves((tiers.Tier(1, "cold"),), YEARS, D(2025, 1, 1), parts, repack=True)
    assert [(m.name, m.method, len(m.steps)) for m in plan.moves] == [("a", "pg_repack", 0), ("b", "alter", 2)]


def test_pg_repack_is_not_given_a_tablespace_name_that_needs_quoting():
    # pg_repack 1.4 writes --tablespace unquoted into its CREATE INDEX: "Cold" would fold to cold, "cold space" fail
    assert tiers.repack_can_name("cold_2") and not tiers.repack_can_name("Cold")
    assert not tiers.repack_can_name("cold space") and not tiers.repack_can_name("froid-é")
    parts = [place("a", 20100101, row_key=True), place("b", 20200101, row_key=True), place("c", 20230101, row_key=True)]
    tiers_ = (tiers.Tier(8, "archive"), tiers.Tier(1, "Cold"))  # largest after first, as validate_tiers sorts
    plan = tiers.plan_moves(tiers_, YEARS, D(2025, 1, 1), parts, repack=True, table="dwh.f")
    assert [(m.name, m.tablespace, m.method) for m in plan.moves] == [
        ("a", "archive", "pg_repack"),
        ("b", "Cold", "alter"),
        ("c", "Cold", "alter"),
    ]
    assert len(plan.warnings) == 1 and 'pg_repack cannot move partitions to tablespace "Cold"' in plan.warnings[0]
    assert "b, c move(s) by ALTER TABLE" in plan.warnings[0]
    assert tiers.plan_moves(tiers_, YEARS, D(2025, 1, 1), parts, repack=False).warnings == ()


def spaces(**changes):
    base = dict(name="cold", exists=True, owner_can_create=True, user_can_create=True, free_bytes=10**9)
    base.update(changes)
    return [tiers.TablespaceFacts(**base)]


def moves(size=1000):
    return tiers.plan_moves(
        (tiers.Tier(1, "cold"),), YEARS, D(2025, 1, 1), [place("f_2020", 20210101, size=size)]
    ).moves


def test_refusals_name_table_tablespace_and_what_to_do():
    one = (tiers.Tier(1, "cold"),)
    assert tiers.refusals(one, spaces(), moves(), "dwh.f", "owner", "me") == []
    missing = tiers.refusals(one, spaces(exists=False), moves(), "dwh.f", "owner", "me")
    assert "tablespace cold (after 1) of dwh.f does not exist" in missing[0] and "CREATE TABLESPACE" in missing[0]
    owner = tiers.refusals(one, spaces(owner_can_create=False), moves(), "dwh.f", "etl", "me")
    assert "etl lack(s) CREATE on tablespace cold" in owner[0] and "GRANT CREATE ON TABLESPACE cold TO etl" in owner[0]
    both = tiers.refusals(one, spaces(owner_can_create=False, user_can_create=False), moves(), "dwh.f", "etl", "me")
    assert "GRANT CREATE ON TABLESPACE cold TO etl, me" in both[0]
    full = tiers.refusals(one, spaces(free_bytes=10, free_note="statvfs(/x)"), moves(5000), "dwh.f", "o", "me")
    assert "needs 5000 bytes but cold has 10 free (statvfs(/x))" in full[0] and "tiers_max_per_run" in full[0]


def test_the_database_default_needs_no_create_privilege_and_an_unseen_filesystem_is_not_checked():
    one = (tiers.Tier(1, "cold"),)
    default = spaces(database_default=True, owner_can_create=False, user_can_create=False, free_bytes=None)
    assert tiers.refusals(one, default, moves(10**12), "dwh.f", "etl", "me") == []


def test_new_partitions_of_old_periods_are_created_in_their_tier_with_their_indexes():
    dec = partitioning.Declared(
        "dwh", "fait", "dk", YEARS, start=D(2019, 1, 1), premake=1, tiers=(tiers.Tier(2, "cold"),)
    )
    tab = table([part("fait_default", default=True)])
    lay = partitioning.layout(dec, tab, D(2025, 1, 1))
    result = partitioning.build_plan(dec, tab, lay, {"schemas": {"dwh"}})
    created = {}
    for step in result.plan.steps:
        created.setdefault(step.group, []).append(text(step.sql))
    old = [t for t in created["create:fait_2022"] if not t.startswith("DO ")]  # the default's locks come first
    assert old[0] == "SELECT set_config('default_tablespace', 'cold', true)"
    assert created["create:fait_2022"][0].startswith("DO ")
    assert old[1].endswith(' TABLESPACE "cold"') and old[1].startswith('CREATE TABLE "dwh"."fait_2022"')
    recent = created["create:fait_2023"]
    assert "TABLESPACE" not in " ".join(recent) and "default_tablespace" not in " ".join(recent)
    assert result.current == D(2025, 1, 1)


def test_diff_lines_show_each_move():
    assert tiers.diff_lines(moves()) == ("f_2020 TABLESPACE pg_default\n", "f_2020 TABLESPACE cold\n")


def test_tiers_max_per_run_is_one_or_more():
    assert tiers.validate_max_moves(None, "t") == tiers.DEFAULT_MAX_MOVES and tiers.validate_max_moves(5, "t") == 5
    for bad in (0, -1, True, "2"):
        with pytest.raises(InvalidInput) as raised:
            tiers.validate_max_moves(bad, "dwh.f")
        assert "tiers_max_per_run=%r for dwh.f" % (bad,) in raised.value.msg
