"""The roll-up planner on plain values: which coarser periods are due, what is refused, the steps of a merge."""

import datetime

import pytest
from psycopg2 import sql

from ansible_collections.sigeti.dwh.plugins.module_utils.core import periods
from ansible_collections.sigeti.dwh.plugins.module_utils.core.bounds import MAXVALUE, MINVALUE
from ansible_collections.sigeti.dwh.plugins.module_utils.core.errors import InvalidInput
from ansible_collections.sigeti.dwh.plugins.module_utils.plan import steps as plan
from ansible_collections.sigeti.dwh.plugins.module_utils.rollup import planner as rollups

D = datetime.date
DAY = periods.Scheme("date", "day", "date")
MONTH = periods.Scheme("date", "month", "date")


def text(composable):
    """Render a psycopg2.sql composable without a connection (identifiers quoted, literals repr'd)."""
    if isinstance(composable, plan.AsLiteral):
        return "'%s'" % text(composable._wrapped)
    if isinstance(composable, sql.Composed):
        return "".join(text(c) for c in composable.seq)
    if isinstance(composable, sql.SQL):
        return composable.string
    if isinstance(composable, sql.Identifier):
        return ".".join('"%s"' % s for s in composable.strings)
    if isinstance(composable, sql.Literal):
        value = composable.wrapped
        return "'%s'" % value if isinstance(value, str) else str(value)
    return str(composable)


def days(first, last, **extra):
    """Daily pieces from ``first`` to ``last`` inclusive."""
    out, day = [], first
    while day <= last:
        out.append(rollups.Piece("dwh", "fact_%s" % day.strftime("%Y%m%d"), day, day + datetime.timedelta(1), **extra))
        day += datetime.timedelta(1)
    return out


def due(pieces, after=30, interval="month", current=None, scheme=DAY, retiring=frozenset()):
    current = current or D(2025, 6, 15)
    rollup = rollups.Rollup(after, interval, 10)
    return rollups.due_periods(rollup, scheme, current, "fact", pieces, retiring, "dwh.fact")


def facts(**extra):
    values = dict(
        schema="dwh",
        name="fact",
        key="d",
        columns=(rollups.Column("id", "bigint", "int8"), rollups.Column("d", "date", "date")),
        indexes=(
            rollups.ParentIndex("fact_pkey", "USING btree (id, d)", True, "PRIMARY KEY (id, d)"),
            rollups.ParentIndex("fact_v", "USING btree (v)"),
        ),
        default=("dwh", "fact_default"),
    )
    values.update(extra)
    return rollups.SetFacts(**values)


# -- validation


def test_a_valid_rollup_is_returned_with_its_default_max_per_run():
    assert rollups.validate_rollup({"after": 90, "interval": "month"}, DAY, "dwh.fact") == rollups.Rollup(
        90, "month", 1
    )
    assert rollups.validate_rollup(None, DAY, "dwh.fact") is None
    assert rollups.validate_rollup({"after": 0, "interval": "year", "max_per_run": 4}, MONTH, "t").max_per_run == 4


@pytest.mark.parametrize(
    "value, words",
    [
        ({"after": -1, "interval": "month"}, "rollup.after=-1 for dwh.fact"),
        ({"after": True, "interval": "month"}, "rollup.after=True"),
        ({"after": 3, "interval": "week"}, "rollup.interval='week' for dwh.fact: choose one of month, quarter, year"),
        ({"after": 3, "interval": "month", "max_per_run": 0}, "rollup.max_per_run=0"),
        ([1], "must be a dict"),
    ],
)
def test_bad_values_are_refused_naming_table_and_value(value, words):
    with pytest.raises(InvalidInput) as refused:
        rollups.validate_rollup(value, DAY, "dwh.fact")
    assert words in refused.value.msg and "nothing was changed" in refused.value.msg


@pytest.mark.parametrize(
    "declared, interval", [("month", "month"), ("quarter", "month"), ("quarter", "quarter"), ("year", "quarter")]
)
def test_an_interval_not_coarser_than_the_declared_one_is_refused(declared, interval):
    scheme = periods.Scheme("date", declared, "date")
    with pytest.raises(InvalidInput) as refused:
        rollups.validate_rollup({"after": 1, "interval": interval}, scheme, "dwh.fact")
    assert "rollup.interval=%s for dwh.fact is not coarser than the declared interval %s" % (interval, declared) in (
        refused.value.msg
    )


def test_weeks_and_integer_keys_have_no_coarser_calendar_period():
    week = periods.Scheme("date", "week", "date")
    with pytest.raises(InvalidInput) as refused:
        rollups.validate_rollup({"after": 1, "interval": "month"}, week, "dwh.fact")
    assert "none of month, quarter, year is made of whole week periods" in refused.value.msg
    integer = periods.Scheme("integer", "1000", "bigint")
    with pytest.raises(InvalidInput):
        rollups.validate_rollup({"after": 1, "interval": "month"}, integer, "dwh.fact")


@pytest.mark.parametrize(
    "declared, interval", [("day", "month"), ("day", "quarter"), ("day", "year"), ("month", "year")]
)
def test_coarser_intervals_are_accepted(declared, interval):
    scheme = periods.Scheme("date", declared, "date")
    assert rollups.validate_rollup({"after": 1, "interval": interval}, scheme, "t").interval == interval


# -- which periods are due


def test_complete_months_ended_more_than_after_days_ago_are_due_oldest_first():
    pieces = days(D(2025, 1, 1), D(2025, 6, 20))
    found = due(pieces, after=30, current=D(2025, 6, 15))  # cutoff 2025-05-16: January to April
    assert [p.target for p in found] == ["fact_202501", "fact_202502", "fact_202503", "fact_202504"]
    assert found[0].low == D(2025, 1, 1) and found[0].high == D(2025, 2, 1) and len(found[0].sources) == 31
    assert [s.name for s in found[1].sources][:2] == ["fact_20250201", "fact_20250202"]


def test_the_cutoff_is_inclusive_of_a_month_ending_exactly_there():
    pieces = days(D(2025, 1, 1), D(2025, 3, 31))
    assert [p.label for p in due(pieces, after=0, current=D(2025, 3, 1))] == ["202501", "202502"]
    assert [p.label for p in due(pieces, after=1, current=D(2025, 3, 1))] == ["202501"]
    assert due(pieces, after=60, current=D(2025, 3, 1)) == []


def test_a_merged_period_or_one_inside_a_wider_partition_is_done():
    merged = [rollups.Piece("dwh", "fact_202501", D(2025, 1, 1), D(2025, 2, 1))]
    wider = [rollups.Piece("dwh", "fact_2024", D(2024, 1, 1), D(2025, 1, 1))]
    found = due(wider + merged + days(D(2025, 2, 1), D(2025, 6, 20)))
    assert [p.label for p in found] == ["202502", "202503", "202504"]


def test_the_default_and_unbounded_partitions_are_never_merged():
    pieces = days(D(2025, 3, 1), D(2025, 6, 20)) + [
        rollups.Piece("dwh", "fact_old", MINVALUE, D(2025, 3, 1)),
        rollups.Piece("dwh", "fact_far", D(2030, 1, 1), MAXVALUE),
    ]
    assert [p.label for p in due(pieces)] == ["202503", "202504"]


def test_a_period_holding_a_partition_retention_retires_waits():
    pieces = days(D(2025, 1, 1), D(2025, 6, 20))
    assert [p.label for p in due(pieces, retiring=frozenset({"fact_20250115"}))] == ["202502", "202503", "202504"]


def test_months_into_quarters_and_years():
    months = [
        rollups.Piece("dwh", "fact_%s" % m.strftime("%Y%m"), m, MONTH.step(m))
        for m in MONTH.periods(D(2023, 1, 1), D(2025, 5, 1))
    ]
    quarters = due(months, after=2, interval="quarter", current=D(2025, 6, 1), scheme=MONTH)
    assert [p.target for p in quarters][:2] == ["fact_2023q1", "fact_2023q2"] and quarters[-1].target == "fact_2025q1"
    years = due(months, after=2, interval="year", current=D(2025, 6, 1), scheme=MONTH)
    assert [p.target for p in years] == ["fact_2023", "fact_2024"] and len(years[0].sources) == 12


def test_yyyymmdd_keys_roll_up_with_integer_bounds():
    scheme = periods.Scheme("yyyymmdd", "day", "integer")
    pieces = [
        rollups.Piece("dwh", "f_%d" % scheme.key(d), scheme.key(d), scheme.key(scheme.step(d)))
        for d in scheme.periods(D(2025, 1, 1), D(2025, 3, 10))
    ]
    found = due(pieces, after=5, current=D(2025, 3, 10), scheme=scheme)
    assert [(p.low, p.high) for p in found] == [(20250101, 20250201), (20250201, 20250301)]


# -- refusals


def test_a_gap_in_a_due_period_is_refused_naming_the_missing_range():
    pieces = [p for p in days(D(2025, 1, 1), D(2025, 6, 20)) if p.low != D(2025, 2, 10)]
    with pytest.raises(InvalidInput) as refused:
        due(pieces)
    msg = refused.value.msg
    assert "period 202502 of dwh.fact" in msg and "FROM '2025-02-10' TO '2025-02-11'" in msg
    assert "nothing was changed" in msg


def test_a_partition_straddling_a_period_bound_is_refused():
    pieces = days(D(2025, 1, 1), D(2025, 1, 30)) + [rollups.Piece("dwh", "fact_odd", D(2025, 1, 31), D(2025, 2, 2))]
    pieces += days(D(2025, 2, 2), D(2025, 6, 20))
    with pytest.raises(InvalidInput) as refused:
        due(pieces)
    assert "fact_odd" in refused.value.msg and "straddles" in refused.value.msg


@pytest.mark.parametrize(
    "extra, words", [({"relkind": "p"}, "partitioned or foreign"), ({"detach_pending": True}, "pending detach")]
)
def test_partitions_that_are_no_plain_partitions_are_refused(extra, words):
    pieces = days(D(2025, 1, 1), D(2025, 1, 31), **extra) + days(D(2025, 2, 1), D(2025, 6, 20))
    with pytest.raises(InvalidInput) as refused:
        due(pieces)
    assert words in refused.value.msg


def test_foreign_keys_and_taken_names_are_refused_before_any_change():
    periods_ = due(days(D(2025, 1, 1), D(2025, 2, 28)), current=D(2025, 6, 15))
    assert rollups.refusals(facts(), periods_) == []
    errors = rollups.refusals(facts(foreign_keys=("fact_client_fk",), taken=frozenset({"fact_202501"})), periods_)
    assert "foreign key(s) fact_client_fk" in errors[0]
    assert "fact_202501" in errors[1] and "rename or drop them" in errors[1]
    # a leftover helper is no clash: the merge drops it
    assert (
        rollups.refusals(
            facts(taken=frozenset({"fact_202501_sgt_rollup"}), leftovers=frozenset({"fact_202501_sgt_rollup"})),
            periods_,
        )
        == []
    )
    assert rollups.refusals(facts(foreign_keys=("x",)), []) == []


# -- the plan


def test_max_per_run_bounds_the_merges_and_says_how_many_wait():
    found = due(days(D(2025, 1, 1), D(2025, 6, 20)))
    planned = rollups.plan_rollup(rollups.Rollup(30, "month", 1), DAY, facts(), found)
    assert [m.period.target for m in planned.merges] == ["fact_202501"] and planned.remaining == 3
    assert "3 more period(s) of dwh.fact" in planned.warnings[0] and "202502, 202503, 202504" in planned.warnings[0]
    assert planned.merges[0].report()["sources"][0] == "fact_20250101"
    assert not rollups.plan_rollup(rollups.Rollup(30, "month", 1), DAY, facts(), [])


def test_one_merge_is_one_transaction_in_the_right_order():
    period = due(days(D(2025, 1, 1), D(2025, 1, 31)))[0]
    steps = rollups.merge_steps(MONTH, facts(), period)
    texts = [text(s.sql) for s in steps]
    assert {s.group for s in steps[:-1]} == {"rollup:fact_202501"} and steps[-1].group is None
    assert texts[0] == "SELECT set_config('default_tablespace', '', true)"
    order = [
        "DO ",  # SHARE on the sources
        'CREATE TABLE "dwh"."fact_202501_sgt_rollup" (LIKE "dwh"."fact_20250131"',
        'INSERT INTO "dwh"."fact_202501_sgt_rollup" ("id", "d") SELECT "id", "d" FROM "dwh"."fact" WHERE "d" >= '
        "'2025-01-01'::date AND \"d\" < '2025-02-01'::date",
        'ALTER TABLE "dwh"."fact_202501_sgt_rollup" ADD CONSTRAINT "fact_202501_fact_pkey" PRIMARY KEY (id, d)',
        'CREATE INDEX "fact_202501_fact_v" ON "dwh"."fact_202501_sgt_rollup" USING btree (v)',
        "DO ",  # the checksum
        "DO ",  # the swap locks
        'ALTER TABLE "dwh"."fact" DETACH PARTITION "dwh"."fact_20250101"',
    ]
    for number, start in enumerate(order, 1):
        assert texts[number].startswith(start), (number, texts[number][:200])
    assert "SHARE" in texts[1] and "hash_record_extended" in texts[6] and "RAISE EXCEPTION" in texts[6]
    assert "ACCESS EXCLUSIVE" in texts[7] and '"dwh"."fact_default"' in texts[7]
    assert 'CHECK ("d" IS NOT NULL AND "d" >= \'2025-01-01\'::date AND "d" < \'2025-02-01\'::date)' in texts[2]
    tail = texts[-5:]
    assert tail[0] == (
        'ALTER TABLE "dwh"."fact" ATTACH PARTITION "dwh"."fact_202501_sgt_rollup" '
        "FOR VALUES FROM ('2025-01-01'::date) TO ('2025-02-01'::date)"
    )
    assert tail[1].startswith('DROP TABLE "dwh"."fact_20250101", "dwh"."fact_20250102"')
    assert tail[2] == 'ALTER TABLE "dwh"."fact_202501_sgt_rollup" RENAME TO "fact_202501"'
    assert tail[3] == 'ALTER TABLE "dwh"."fact_202501" DROP CONSTRAINT "fact_202501_sgt_bounds"'
    assert tail[4] == 'ANALYZE "dwh"."fact_202501"'
    assert sum(t.startswith('ALTER TABLE "dwh"."fact" DETACH') for t in texts) == 31


def test_a_leftover_helper_is_dropped_first_and_storage_follows_the_newest_source():
    period = due(days(D(2025, 1, 1), D(2025, 1, 31), oid=7))[0]
    storage = {7: rollups.Storage("cold", "heap", (("fillfactor", "70"), ("toast.autovacuum_enabled", "false")))}
    steps = rollups.merge_steps(MONTH, facts(leftovers=frozenset({"fact_202501_sgt_rollup"}), storage=storage), period)
    texts = [text(s.sql) for s in steps]
    assert texts[0] == "SELECT set_config('default_tablespace', 'cold', true)"
    assert texts[1] == 'DROP TABLE IF EXISTS "dwh"."fact_202501_sgt_rollup"'
    create = [t for t in texts if t.startswith("CREATE TABLE")][0]
    assert create.endswith(' USING "heap" WITH ("fillfactor" = \'70\', "toast"."autovacuum_enabled" = \'false\')')


def test_generated_columns_are_computed_again_not_copied():
    columns = (
        rollups.Column("id", "bigint", "int8"),
        rollups.Column("d", "date", "date"),
        rollups.Column("g", "int", "int4", True),
    )
    period = due(days(D(2025, 1, 1), D(2025, 1, 31)))[0]
    copy = text(rollups.copy_step(MONTH, facts(columns=columns), period, "g").sql)
    assert copy.startswith('INSERT INTO "dwh"."fact_202501_sgt_rollup" ("id", "d") SELECT "id", "d" FROM "dwh"."fact"')


def test_diff_lines_show_the_sources_then_the_merged_partition():
    found = due(days(D(2025, 1, 1), D(2025, 1, 31)))
    planned = rollups.plan_rollup(rollups.Rollup(30, "month", 1), DAY, facts(), found)
    before, after = rollups.diff_lines(planned.merges)
    assert (
        before.splitlines()[0] == "fact_20250101 FROM (2025-01-01) TO (2025-01-02)" and len(before.splitlines()) == 31
    )
    assert after == "fact_202501 FROM (2025-01-01) TO (2025-02-01) (rollup of 31 partitions)\n"


def test_names_follow_the_naming_scheme_within_63_bytes():
    long = "f" * 60
    assert rollups.target_name(long, MONTH, D(2025, 1, 1)).endswith("_202501")
    assert len(rollups.helper_name(rollups.target_name(long, MONTH, D(2025, 1, 1))).encode()) <= 63


def test_the_module_documents_rollup_as_its_argument_spec_declares_it():
    import yaml

    from ansible_collections.sigeti.dwh.plugins.modules import partitioned_table as module

    docs = yaml.safe_load(module.DOCUMENTATION)["options"]
    spec = module.table_options(required=False)["rollup"]["options"]
    for documented in (docs["rollup"], docs["tables"]["suboptions"]["rollup"]):
        assert set(documented["suboptions"]) == set(spec) == {"after", "interval", "max_per_run"}
        assert documented["suboptions"]["interval"]["choices"] == spec["interval"]["choices"]
        assert documented["suboptions"]["max_per_run"]["default"] == spec["max_per_run"]["default"] == 1
    assert "rollup" in yaml.safe_load(module.RETURN)
