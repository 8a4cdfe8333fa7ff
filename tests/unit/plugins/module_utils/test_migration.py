"""Pure logic of the migration planner: names, layout checks, refusals before any change, phases."""

import datetime

import pytest
from psycopg2 import sql

from ansible_collections.sigeti.dwh.plugins.module_utils.core.errors import DwhError, InvalidInput
from ansible_collections.sigeti.dwh.plugins.module_utils.migration import api as migration
from ansible_collections.sigeti.dwh.plugins.module_utils.migration import facts as migration_facts
from tests.support.migration_driver import yearly_layout


def render(node):
    """Render a psycopg2.sql composable without a connection (identifiers double-quoted, literals quoted)."""
    if isinstance(node, sql.Composed):
        return "".join(render(part) for part in node.seq)
    if isinstance(node, sql.Identifier):
        return ".".join('"%s"' % s.replace('"', '""') for s in node.strings)
    if isinstance(node, sql.Literal):
        return "'%s'" % node.wrapped.replace("'", "''") if isinstance(node.wrapped, str) else str(node.wrapped)
    if isinstance(node, sql.SQL):
        return node.string
    raise TypeError(node)


def _column(name, type_="integer", not_null=True, identity=""):
    return {
        "name": name,
        "type": type_,
        "not_null": not_null,
        "identity": identity,
        "generated": "",
        "statistics_target": None,
    }


def _table(**extra):
    table = {
        "oid": 4242,
        "schema": "dwh_facts",
        "name": "fait",
        "relkind": "r",
        "owner": "dwh",
        "comment": None,
        "reltuples": 1000.0,
        "relpages": 10,
        "heap_bytes": 80000,
        "toast_bytes": 0,
        "index_bytes": 20000,
        "reloptions": {},
        "toast_reloptions": {},
        "partitions": [],
        "columns": [_column("id", "bigint"), _column("date_key"), _column("note", "text", False)],
        "indexes": [
            {
                "name": "fait_pkey",
                "definition": "CREATE UNIQUE INDEX fait_pkey ON dwh_facts.fait USING btree (id)",
                "is_unique": True,
            }
        ],
    }
    table.update(extra)
    return table


def _facts(**extra):
    facts = {
        "flags": {"persistence": "p", "row_security": False, "force_row_security": False},
        "constraints": [
            {
                "name": "fait_pkey",
                "type": "p",
                "columns": ["id"],
                "index": "fait_pkey",
                "definition": "PRIMARY KEY (id)",
                "validated": True,
                "comment": None,
            }
        ],
        "foreign_keys_in": [],
        "grants": [],
        "column_grants": [],
        "triggers": [],
        "policies": [],
        "sequences": [],
        "column_options": [],
        "index_comments": [],
        "views": [],
        "index_tails": {"fait_pkey": "USING btree (id)"},
        "state": None,
        "taken": [],
        "out_of_range": {"rows": 0, "min": None, "max": None},
        "key_min": 20200101,
        "key_max": 20261231,
        "free_bytes": None,
    }
    facts.update(extra)
    return facts


def _plan(table=None, facts=None, layout=None, **options):
    opts = {"key": "date_key", "extend_primary_key": True}
    opts.update(options)
    return migration.plan_migration(
        table or _table(), layout or yearly_layout("fait"), opts, {}, facts=facts or _facts()
    )


def test_derived_names_stay_within_63_bytes_and_unique():
    assert migration.derived_name("fait", "_unpartitioned") == "fait_unpartitioned"
    long_a, long_b = "a" * 60 + "x", "a" * 60 + "y"
    one, two = migration.derived_name(long_a, "_unpartitioned"), migration.derived_name(long_b, "_unpartitioned")
    assert len(one) <= 63 and len(two) <= 63 and one != two and one.endswith("_unpartitioned")
    assert len(migration.derived_name("é" * 40, "_sgt_new").encode("utf-8")) <= 63


def test_yearly_layout_for_yyyymmdd_keys():
    layout = yearly_layout("fait", 2020, 2030)
    assert layout[0] == {"name": "fait_2020", "low": 20200101, "high": 20210101}
    assert layout[-2] == {"name": "fait_2030", "low": 20300101, "high": 20310101}
    assert layout[-1] == {"name": "fait_default", "default": True}


@pytest.mark.parametrize(
    "layout, message",
    [
        ([], "no target partitions"),
        ([{"name": "a", "low": 20200101, "high": 20200101}], "low 20200101 >= high"),
        (
            [{"name": "a", "low": 20200101, "high": 20210101}, {"name": "b", "low": 20200601, "high": 20220101}],
            "overlap",
        ),
        ([{"name": "a", "low": datetime.date(2020, 1, 1), "high": datetime.date(2021, 1, 1)}], "must be integers"),
        ([{"name": "a", "default": True}, {"name": "b", "default": True}], "two default partitions"),
        ([{"name": "a", "low": 1, "high": 2}, {"name": "a", "low": 2, "high": 3}], "declared twice"),
    ],
)
def test_layout_errors(layout, message):
    with pytest.raises(InvalidInput) as err:
        migration.validate_layout(layout, "integer", "dwh_facts.fait")
    assert message in err.value.msg


def test_date_and_timestamp_keys_take_dates():
    layout = [{"name": "p", "low": datetime.date(2020, 1, 1), "high": datetime.date(2021, 1, 1)}]
    ranges, default = migration.validate_layout(layout, "date", "t")
    assert ranges == layout and default is None
    migration.validate_layout(
        [{"name": "p", "low": datetime.datetime(2020, 1, 1), "high": datetime.datetime(2021, 1, 1)}],
        "timestamp with time zone",
        "t",
    )
    with pytest.raises(InvalidInput):
        migration.validate_layout(layout, "text", "t")


def test_primary_key_without_the_partition_key_is_refused_unless_extended():
    with pytest.raises(InvalidInput) as err:
        _plan(extend_primary_key=False)
    assert "does not include the partition key date_key" in err.value.msg and "(id, date_key)" in err.value.msg
    plan = _plan()
    assert plan.mode == "online" and plan.replay_key == ["id"]
    assert any("extended to (id, date_key)" in w for w in plan.warnings)
    assert [p["name"] for p in plan.phases] == ["prepare", "copy", "build", "catchup", "swap", "post"]


def test_rows_outside_every_period_need_a_default_partition():
    facts = _facts(out_of_range={"rows": 12, "min": 20190105, "max": 20191231})
    with pytest.raises(InvalidInput) as err:
        _plan(facts=facts, layout=yearly_layout("fait", default=False))
    assert "12 rows" in err.value.msg and "min 20190105" in err.value.msg and "max 20191231" in err.value.msg
    plan = _plan(facts=facts)
    assert plan.default_rows == 12 and any("default partition fait_default" in w for w in plan.warnings)


def test_refusals_name_the_object_and_what_to_do():
    with pytest.raises(InvalidInput) as err:
        _plan(mode="never")
    assert "migrate is 'never'" in err.value.msg
    with pytest.raises(InvalidInput) as err:
        _plan(key="nope")
    assert "'nope' is not a column" in err.value.msg
    unique = {
        "name": "fait_note_key",
        "type": "u",
        "columns": ["note"],
        "index": "fait_note_key",
        "definition": "UNIQUE (note)",
        "validated": True,
    }
    with pytest.raises(InvalidInput) as err:
        _plan(facts=_facts(constraints=_facts()["constraints"] + [unique]))
    assert "fait_note_key" in err.value.msg
    fk = {"name": "child_fk", "schema": "s", "table": "child", "columns": ["id"], "definition": "FOREIGN KEY ..."}
    with pytest.raises(InvalidInput) as err:
        _plan(facts=_facts(foreign_keys_in=[fk]))
    assert "s.child" in err.value.msg and "(id, date_key)" in err.value.msg
    keyless = _table(indexes=[])
    with pytest.raises(InvalidInput) as err:
        _plan(table=keyless, facts=_facts(constraints=[]), mode="online")
    assert "needs a primary key" in err.value.msg
    assert _plan(table=keyless, facts=_facts(constraints=[]), mode="offline").mode == "offline"
    with pytest.raises(InvalidInput) as err:
        _plan(facts=_facts(taken=["fait_2024"]))
    assert "fait_2024" in err.value.msg
    with pytest.raises(InvalidInput) as err:
        _plan(facts=_facts(free_bytes=1000))
    assert "free disk" in err.value.msg and "has 1000 bytes free" in err.value.msg  # units.format_bytes
    with pytest.raises(InvalidInput):
        _plan(mode="sideways")
    with pytest.raises(DwhError):
        migration.plan_migration(_table(), yearly_layout("fait"), {"key": "date_key"}, {})


def test_resume_accepts_its_own_leftovers():
    state = {"phase": "copy", "source_oid": 4242}
    plan = _plan(facts=_facts(state=state, taken=["fait_sgt_new", "fait_2020"]))
    assert plan.names["shadow"] == "fait_sgt_new"


def test_attach_covers_the_key_range_and_creates_later_periods():
    plan = _plan(mode="attach")
    low, high, covered = plan.attach_range
    assert (low, high) == (20200101, 20270101)
    assert [e["name"] for e in plan.ctx.partitions_to_create] == ["fait_%d" % y for y in range(2027, 2031)]
    assert [p["name"] for p in plan.phases] == ["check", "validate", "swap", "post"]
    with pytest.raises(InvalidInput):
        _plan(mode="attach", facts=_facts(out_of_range={"rows": 1, "min": None, "max": None}))


@pytest.mark.parametrize(
    "definition, reloptions, expected",
    [
        ("PRIMARY KEY (id)", None, 'PRIMARY KEY ("id", "k")'),
        (
            "PRIMARY KEY (id) INCLUDE (v) DEFERRABLE INITIALLY DEFERRED",
            ["fillfactor=60"],
            'PRIMARY KEY ("id", "k") INCLUDE (v) WITH (fillfactor = \'60\') DEFERRABLE INITIALLY DEFERRED',
        ),
        ('UNIQUE NULLS NOT DISTINCT ("a)b", id)', None, 'UNIQUE NULLS NOT DISTINCT ("id", "k")'),
        ("PRIMARY KEY (id) USING INDEX TABLESPACE fast", None, 'PRIMARY KEY ("id", "k") USING INDEX TABLESPACE fast'),
    ],
)
def test_key_definition_keeps_everything_but_the_columns(definition, reloptions, expected):
    assert render(migration.key_definition(definition, ["id", "k"], reloptions)) == expected


@pytest.mark.parametrize(
    "source, expected",
    [
        ("BEGIN NEW.k := to_char(NEW.ts, 'YYYYMMDD')::int; RETURN NEW; END", True),
        ('BEGIN new . "k" = 5; RETURN NEW; END', True),
        ("BEGIN IF NEW.k = 3 THEN NEW.v := 1; END IF; RETURN NEW; END", False),
        ("BEGIN NEW.kk := 1; RETURN NEW; END", False),
    ],
)
def test_a_trigger_setting_the_key_is_recognised(source, expected):
    assert migration.assigns_column(source, "k") is expected


def test_hazards_refuse_before_any_change():
    hazards = {"inherits_from": ["dwh_facts.base"], "indexes": []}
    with pytest.raises(InvalidInput) as err:
        _plan(facts=_facts(hazards=hazards))
    assert "inherits from dwh_facts.base" in err.value.msg and "NO INHERIT" in err.value.msg
    partial = {
        "name": "fait_note_recent",
        "unique": True,
        "primary": False,
        "valid": True,
        "key_columns": ["note"],
        "has_expressions": False,
        "predicate": "(date_key >= 20240101)",
        "constraint": None,
        "deferrable": False,
    }
    with pytest.raises(InvalidInput) as err:
        _plan(facts=_facts(hazards={"indexes": [partial]}))
    assert "fait_note_recent" in err.value.msg and "WHERE (date_key >= 20240101)" in err.value.msg
    with pytest.raises(InvalidInput) as err:
        _plan(facts=_facts(null_keys=4, hazards={"indexes": []}))
    assert "4 rows of dwh_facts.fait have a NULL date_key" in err.value.msg


def test_row_digest_hashes_exact_types_in_binary_and_the_rest_by_text():
    from ansible_collections.sigeti.dwh.plugins.module_utils.migration.sql import row_digest

    columns = [
        {"name": "id", "type": "bigint", "type_name": "int8"},
        {"name": "amount", "type": "numeric(14,2)", "type_name": "numeric"},
        {"name": "label", "type": "character varying(20)", "type_name": "varchar"},
        {"name": "at", "type": "timestamp(3) with time zone", "type_name": "timestamptz"},
        {"name": "ratio", "type": "double precision", "type_name": "float8"},
        {"name": "own", "type": "other.int8", "type_name": "int8"},  # a user type named like a built-in one
        {"name": "legacy", "type": "text"},  # facts without type_name: by text, never guessed
    ]
    assert render(row_digest(columns)) == (
        'hash_record_extended(ROW("t"."id", "t"."amount", scale("t"."amount"), ("t"."label" COLLATE "C"), "t"."at", '
        'ROW("t"."ratio", "t"."own", "t"."legacy")::text), 0)'
    )


def test_bucket_is_a_binary_search_of_the_bounds_with_gaps_to_the_default():
    from ansible_collections.sigeti.dwh.plugins.module_utils.migration.sql import _bucket

    ranges = [
        {"name": "p1", "low": 10, "high": 20},
        {"name": "p2", "low": 20, "high": 30},
        {"name": "p4", "low": 40, "high": 50},
    ]
    assert render(_bucket("k", ranges, {"name": "pd"}, "integer")) == (
        "coalesce((ARRAY['p1', 'p2', 'pd', 'p4']::text[])"
        '[width_bucket("t"."k", ARRAY[10, 20, 30, 40, 50]::integer[])], \'pd\')'
    )
    assert render(_bucket("k", ranges[:1], None, "integer")) == (
        'coalesce((ARRAY[\'p1\']::text[])[width_bucket("t"."k", ARRAY[10, 20]::integer[])], NULL)'
    )


def _ranges(*pairs):
    return [{"low": low, "high": high} for low, high in pairs]


@pytest.mark.parametrize(
    "ranges, low, high, expected",
    [
        (_ranges((2020, 2021), (2021, 2022)), 2020, 2021, True),  # adjacent ranges chain
        (_ranges((2020, 2021), (2021, 2022)), 2020, 2022, False),  # the upper bound is excluded
        (_ranges((2020, 2021), (2022, 2023)), 2020, 2022, False),  # a gap between them
        (_ranges((2020, 2021), (2022, 2023)), 2022, 2022, True),  # both ends in the second run
        (_ranges((2020, 2021)), 2019, 2020, False),  # below the first
        ([], 1, 1, False),
        (
            _ranges((datetime.date(2020, 1, 1), datetime.date(2021, 1, 1))),
            datetime.date(2020, 5, 1),
            datetime.date(2020, 6, 1),
            True,
        ),
        # a date bound against a timestamp value: never a match, the full count decides
        (
            _ranges((datetime.date(2020, 1, 1), datetime.date(2021, 1, 1))),
            datetime.datetime(2020, 5, 1),
            datetime.datetime(2020, 6, 1),
            False,
        ),
    ],
)
def test_within_ranges(ranges, low, high, expected):
    assert migration_facts.within_ranges(ranges, low, high) is expected
