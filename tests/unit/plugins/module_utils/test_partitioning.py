"""The planner on plain values: adoption, overlaps, default rows, retention, indexes, options, names."""

import datetime

import pytest
from psycopg2 import sql

from ansible_collections.sigeti.dwh.plugins.module_utils.core import periods
from ansible_collections.sigeti.dwh.plugins.module_utils.core.errors import InvalidInput
from ansible_collections.sigeti.dwh.plugins.module_utils.partitioning import indexes as partition_indexes
from ansible_collections.sigeti.dwh.plugins.module_utils.partitioning import planner as partitioning
from ansible_collections.sigeti.dwh.plugins.module_utils.plan import steps as plan

D = datetime.date


def text(composable):
    """Render a psycopg2.sql composable without a connection (identifiers quoted, literals repr'd)."""
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


_oid = [1000]


def part(name, low=None, high=None, default=False, level=1, relkind="r", indexes=None, reloptions=None, toast=None):
    _oid[0] += 1
    bound = {"kind": "default"} if default else {"kind": "range", "low": [low], "high": [high]}
    entry = {
        "oid": _oid[0],
        "parent_oid": 1,
        "schema": "dwh",
        "name": name,
        "level": level,
        "relkind": relkind,
        "bound": bound,
        "bound_expr": "DEFAULT" if default else "FOR VALUES FROM (%s) TO (%s)" % (low, high),
        "indexes": indexes or [],
        "reloptions": reloptions or {},
        "toast_reloptions": toast or {},
        "toast_oid": 77 if toast is not None else None,
    }
    if not default:
        entry["low"], entry["high"] = low, high
    return entry


def table(parts, relkind="p", strategy="range", columns=("dk",), indexes=None):
    return {
        "exists": True,
        "schema": "dwh",
        "name": "fait",
        "relkind": relkind,
        "oid": 1,
        "partition_key": {
            "strategy": strategy,
            "columns": list(columns),
            "types": ["integer"],
            "has_expressions": False,
            "definition": "RANGE (%s)" % ", ".join(columns),
        },
        "partitions": parts,
        "columns": [{"name": "id", "generated": ""}, {"name": "dk", "generated": ""}, {"name": "g", "generated": "s"}],
        "indexes": indexes or [],
    }


def declared(interval="year", fmt="yyyymmdd", start=None, premake=1, default=True, retention=None, options=None):
    scheme = periods.Scheme(fmt, interval, "integer")
    return partitioning.Declared(
        "dwh",
        "fait",
        "dk",
        scheme,
        start=start,
        premake=premake,
        default_partition=default,
        retention=retention,
        partition_options=options or {},
    )


def plan_for(dec, tab, current, **extras):
    lay = partitioning.layout(dec, tab, current)
    extras.setdefault("schemas", {"dwh"})
    return lay, partitioning.build_plan(dec, tab, lay, extras)


def test_everything_present_gives_an_empty_plan():
    tab = table(
        [
            part("fait_2025", 20250101, 20260101),
            part("fait_2026", 20260101, 20270101),
            part("fait_default", default=True),
        ]
    )
    _lay, result = plan_for(declared(), tab, D(2025, 1, 1), default_rows=0)
    assert not result.plan and result.created == [] and result.default_rows_after == 0
    assert [p["name"] for p in result.partitions] == ["fait_2025", "fait_2026", "fait_default"]


def test_partitions_with_other_names_and_right_bounds_are_adopted():
    tab = table([part("y2025", 20250101, 20260101), part("fait_default", default=True)])
    lay, result = plan_for(declared(), tab, D(2025, 1, 1))
    assert lay.adopted[D(2025, 1, 1)]["name"] == "y2025"
    assert result.created == ["fait_2026"]


def test_weak_lock_path_create_like_then_attach_in_one_group():
    tab = table([])
    _lay, result = plan_for(declared(default=False), tab, D(2025, 1, 1))
    steps = result.plan.steps
    assert len(steps) == 4
    assert text(steps[0].sql).startswith('CREATE TABLE "dwh"."fait_2025" (LIKE "dwh"."fait" INCLUDING DEFAULTS')
    assert steps[0].lock == plan.ACCESS_SHARE
    assert (
        text(steps[1].sql)
        == 'ALTER TABLE "dwh"."fait" ATTACH PARTITION "dwh"."fait_2025" FOR VALUES FROM (20250101) TO (20260101)'
    )
    assert steps[1].lock == plan.SHARE_UPDATE_EXCLUSIVE
    assert steps[0].group == steps[1].group == steps[2].group, "empty partitions are created in batches"
    assert ("dwh", "fait") in steps[1].targets


def test_date_bounds_are_cast_literals():
    scheme = periods.Scheme("date", "month", "date")
    assert text(partitioning.bound_sql(scheme, D(2024, 2, 1))) == "'2024-02-01'::date"
    scheme = periods.Scheme("timestamptz", "day", "timestamp with time zone")
    assert text(partitioning.bound_sql(scheme, D(2024, 2, 29))) == "'2024-02-29 00:00:00'::timestamptz"


def test_rows_in_the_default_move_in_the_same_transaction():
    default = part("fait_default", default=True)
    tab = table([part("fait_2025", 20250101, 20260101), default])
    _lay, result = plan_for(declared(), tab, D(2025, 1, 1), default_rows=10, default_counts={D(2026, 1, 1): 7})
    steps = result.plan.steps
    assert [s.lock for s in steps] == [
        plan.SHARE_ROW_EXCLUSIVE,  # the transaction's locks first thing: the parent, then the default partition
        plan.ACCESS_SHARE,
        plan.ROW_EXCLUSIVE,
        plan.SHARE_UPDATE_EXCLUSIVE,
    ]
    assert _orders(steps[0]) == [["dwh.fait (SHARE ROW EXCLUSIVE)", "dwh.fait_default (ACCESS EXCLUSIVE)"]]
    assert steps[0].reason.startswith("hold writers (not readers) at the parent"), "writers wait at the parent"
    assert len({s.group for s in steps}) == 1 and all(s.transactional for s in steps)
    assert steps[0].group == "create:fait_2026", "a move runs in its own transaction"
    move = text(steps[2].sql)
    assert move.startswith('WITH moved AS (DELETE FROM "dwh"."fait_default" WHERE "dk" >= 20260101 AND "dk" < 20270101')
    assert '"g"' not in move, "generated columns are recomputed, never inserted"
    assert result.moved_rows == 7 and result.default_rows_after == 3


def _orders(step):
    """The orders a first-locks step tries, as its reason lists them."""
    described = step.reason.split("first thing: ", 1)[1].split(";", 1)[0]
    described = described.replace(" (the second order when the first would deadlock)", "")
    return [order.split(", ") for order in described.split(" / then ")]


def test_foreign_keys_of_the_parent_lock_the_referenced_tables_first():
    # ATTACH PARTITION clones the parent's foreign keys onto the new partition: SHARE ROW EXCLUSIVE on the tables
    # they reference, which writers of the parent hold while they wait for it (TPC-B's accounts, history)
    default = part("fait_default", default=True)
    tab = table([part("fait_2025", 20250101, 20260101), default])
    referenced = [("dwh", "dim_a"), ("dwh", "dim_b")]
    _lay, result = plan_for(declared(), tab, D(2025, 1, 1), default_rows=1, referenced=referenced)
    steps = result.plan.steps
    assert _orders(steps[0]) == [
        [
            "dwh.dim_a (SHARE ROW EXCLUSIVE)",
            "dwh.dim_b (SHARE ROW EXCLUSIVE)",
            "dwh.fait (SHARE ROW EXCLUSIVE)",
            "dwh.fait_default (ACCESS EXCLUSIVE)",
        ],
        # when that order would deadlock (writers taking the parent before the tables it references)
        [
            "dwh.fait (SHARE ROW EXCLUSIVE)",
            "dwh.dim_a (SHARE ROW EXCLUSIVE)",
            "dwh.dim_b (SHARE ROW EXCLUSIVE)",
            "dwh.fait_default (ACCESS EXCLUSIVE)",
        ],
    ]
    assert steps[0].group == steps[-1].group and text(steps[-1].sql).startswith('ALTER TABLE "dwh"."fait" ATTACH')
    assert ("dwh", "dim_a") in steps[-1].targets, "a lock given up on names the sessions holding those tables"
    assert result.referenced == referenced
    cause = partitioning.deadlock_cause("dwh.fait", result.referenced)
    assert "foreign keys of dwh.fait reference dwh.dim_a, dwh.dim_b" in cause and "lock_timeout" not in cause
    assert partitioning.deadlock_cause("dwh.fait", []) == ""
    # a table this role may not LOCK (it has REFERENCES only) is left to the ATTACH: the message says what to grant
    cause = partitioning.deadlock_cause("dwh.fait", [("dwh", "dim_a")], [("ref", "dim_c")])
    assert "reference dwh.dim_a, ref.dim_c" in cause and "The run takes dwh.dim_a first" in cause
    assert "may not lock ref.dim_c itself" in cause and "MAINTAIN" in cause and "lock_timeout" not in cause


def test_without_a_default_partition_no_lock_is_taken_before_the_attach():
    tab = table([part("fait_2025", 20250101, 20260101)])
    _lay, result = plan_for(declared(default=False), tab, D(2025, 1, 1), referenced=[("dwh", "dim_a")])
    assert [s.lock for s in result.plan.steps] == [plan.ACCESS_SHARE, plan.SHARE_UPDATE_EXCLUSIVE]


def test_overlapping_partition_is_refused():
    tab = table([part("fait_h1", 20250101, 20250701)])
    with pytest.raises(InvalidInput) as err:
        plan_for(declared(), tab, D(2025, 1, 1))
    assert "overlap" in err.value.msg and "fait_h1" in err.value.msg and "nothing was changed" in err.value.msg


def test_partitions_outside_the_set_are_kept():
    tab = table([part("fait_h1_2019", 20190101, 20190701), part("fait_2025", 20250101, 20260101)])
    lay, result = plan_for(declared(default=False), tab, D(2025, 1, 1))
    assert [p["name"] for p in lay.others] == ["fait_h1_2019"]
    assert [p["name"] for p in result.partitions] == ["fait_h1_2019", "fait_2025", "fait_2026"]


@pytest.mark.parametrize("has_default, concurrent", [(True, False), (False, True)])
def test_retention_detach_concurrently_only_without_default(has_default, concurrent):
    parts = [
        part("fait_2020", 20200101, 20210101),
        part("fait_2023", 20230101, 20240101),
        part("fait_2024", 20240101, 20250101),
        part("fait_2025", 20250101, 20260101),
        part("fait_2026", 20260101, 20270101),
    ]
    if has_default:
        parts.append(part("fait_default", default=True))
    ret = {"keep": 1, "action": "drop", "archive_schema": None}
    lay, result = plan_for(declared(default=has_default, retention=ret), table(parts), D(2025, 1, 1))
    assert [p["name"] for p in lay.retired] == ["fait_2020", "fait_2023"]
    assert result.detached == ["fait_2020", "fait_2023"] and result.dropped == result.detached
    detach = result.plan.steps[0]
    assert ("CONCURRENTLY" in text(detach.sql)) is concurrent
    assert detach.transactional is not concurrent
    assert detach.lock == (plan.SHARE_UPDATE_EXCLUSIVE if concurrent else plan.ACCESS_EXCLUSIVE)
    assert text(result.plan.steps[1].sql) == 'DROP TABLE "dwh"."fait_2020"'


def test_partly_old_partition_straddling_the_cutoff_is_kept_with_a_warning():
    # keep 1 month behind March 2025: the cutoff is 2025-02-01, which this partition straddles
    parts = [part("fait_2024h2_2025", 20240701, 20250215)]
    ret = {"keep": 1, "action": "drop", "archive_schema": None}
    lay, result = plan_for(
        declared(interval="month", default=False, retention=ret, premake=0, start=D(2025, 3, 1)),
        table(parts),
        D(2025, 3, 1),
    )
    assert lay.retired == [] and [p["name"] for p in lay.partly_old] == ["fait_2024h2_2025"]
    assert result.dropped == [] and any("partly old" in w for w in result.warnings)


def test_archive_needs_a_free_name_and_creates_the_schema():
    parts = [
        part("fait_2020", 20200101, 20210101),
        part("fait_2025", 20250101, 20260101),
        part("fait_2026", 20260101, 20270101),
    ]
    ret = {"keep": 0, "action": "archive", "archive_schema": "arch"}
    dec = declared(default=False, retention=ret)
    _lay, result = plan_for(dec, table(parts), D(2025, 1, 1))
    texts = [text(s.sql) for s in result.plan.steps]
    assert texts[0] == 'CREATE SCHEMA IF NOT EXISTS "arch"'
    assert texts[-1] == 'ALTER TABLE "dwh"."fait_2020" SET SCHEMA "arch"'
    with pytest.raises(InvalidInput) as err:
        plan_for(dec, table(parts), D(2025, 1, 1), existing_names={("arch", "fait_2020")}, schemas={"dwh", "arch"})
    assert "already has relations named fait_2020" in err.value.msg


def test_name_taken_by_a_stray_table_is_refused():
    with pytest.raises(InvalidInput) as err:
        plan_for(declared(default=False), table([]), D(2025, 1, 1), existing_names={("dwh", "fait_2026")})
    assert "fait_2026" in err.value.msg and "already exists" in err.value.msg


def test_partition_options_apply_only_where_they_differ():
    parts = [
        part("fait_2025", 20250101, 20260101, reloptions={"fillfactor": "90"}, toast={}),
        part("fait_2026", 20260101, 20270101, reloptions={"fillfactor": "80"}),
    ]
    options = {"fillfactor": "90", "toast.autovacuum_enabled": "false"}
    _lay, result = plan_for(declared(default=False, options=options), table(parts), D(2025, 1, 1))
    texts = [text(s.sql) for s in result.plan.steps]
    assert texts == [
        'ALTER TABLE "dwh"."fait_2025" SET (toast.autovacuum_enabled = \'false\')',
        'ALTER TABLE "dwh"."fait_2026" SET (fillfactor = \'90\')',  # no TOAST table: toast.* cannot be stored
    ]


def test_missing_parent_index_is_built_concurrently_then_attached():
    parent_index = {
        "oid": 500,
        "name": "fait_id_idx",
        "schema": "dwh",
        "relkind": "I",
        "is_unique": False,
        "constraint_name": None,
    }
    parts = [
        part("fait_2025", 20250101, 20260101, indexes=[{"parent_index_oid": 500}]),
        part("fait_2026", 20260101, 20270101),
    ]
    tab = table(parts, indexes=[parent_index])
    dec = declared(default=False)
    lay = partitioning.layout(dec, tab, D(2025, 1, 1))
    assert partition_indexes.lacking_indexes(tab, lay) == {500}
    result = partitioning.build_plan(dec, tab, lay, {"schemas": {"dwh"}, "index_tails": {500: "USING btree (id)"}})
    drop, create, attach = result.plan.steps
    assert text(drop.sql) == 'DROP INDEX CONCURRENTLY IF EXISTS "dwh"."fait_2026_fait_id_idx"'
    assert text(create.sql) == 'CREATE INDEX CONCURRENTLY "fait_2026_fait_id_idx" ON "dwh"."fait_2026" USING btree (id)'
    assert create.transactional is False and drop.transactional is False and create.snapshot_wait
    assert [len(u) for u in plan.transactions(result.plan.steps)] == [2, 1], "a retry drops what a cancelled build left"
    assert text(attach.sql) == 'ALTER INDEX "dwh"."fait_id_idx" ATTACH PARTITION "dwh"."fait_2026_fait_id_idx"'


PARENT_INDEX = {
    "oid": 500,
    "name": "fait_id_idx",
    "schema": "dwh",
    "relkind": "I",
    "is_unique": True,
    "constraint_name": None,
}


def _index_plan(leaf_indexes, tails=None, taken=None):
    parts = [part("fait_2025", 20250101, 20260101, indexes=leaf_indexes)]
    tab = table(parts, indexes=[PARENT_INDEX])
    dec = declared(default=False, premake=0)
    lay = partitioning.layout(dec, tab, D(2025, 1, 1))
    extras = {"schemas": {"dwh"}, "index_tails": tails or {500: "USING btree (id)"}, "index_names_taken": taken or {}}
    result = partitioning.build_plan(dec, tab, lay, extras)
    return lay, tab, [text(s.sql) for s in result.plan.steps], result.warnings


def test_an_invalid_index_is_absent_dropped_and_rebuilt_never_attached_as_it_is():
    invalid = {"oid": 900, "name": "fait_2025_fait_id_idx", "is_valid": False, "parent_index_oid": None}
    _lay, _tab, queries, _w = _index_plan([invalid])
    assert queries == [
        'DROP INDEX CONCURRENTLY IF EXISTS "dwh"."fait_2025_fait_id_idx"',
        'CREATE UNIQUE INDEX CONCURRENTLY "fait_2025_fait_id_idx" ON "dwh"."fait_2025" USING btree (id)',
        'ALTER INDEX "dwh"."fait_id_idx" ATTACH PARTITION "dwh"."fait_2025_fait_id_idx"',
    ]
    attached_invalid = {"oid": 901, "name": "x", "is_valid": False, "parent_index_oid": 500}
    leftover = {"oid": 902, "name": "x_ccnew", "is_valid": False, "parent_index_oid": None}
    _lay, _tab, queries, _w = _index_plan([attached_invalid, leftover])
    assert queries == ['DROP INDEX CONCURRENTLY IF EXISTS "dwh"."x_ccnew"', 'REINDEX INDEX CONCURRENTLY "dwh"."x"']
    _lay, _tab, queries, _w = _index_plan([dict(attached_invalid, is_valid=True)])
    assert queries == []


def test_a_valid_unattached_index_defined_like_the_parent_one_is_adopted_whatever_its_name():
    mine = {"oid": 903, "name": "by_hand", "is_valid": True, "is_unique": True, "parent_index_oid": None}
    lay, tab, _q, _w = _index_plan([mine])
    assert partition_indexes.lacking_indexes(tab, lay) == {500, 903}
    _lay, _tab, queries, _w = _index_plan([mine], tails={500: "USING btree (id)", 903: "USING btree (id)"})
    assert queries == ['ALTER INDEX "dwh"."fait_id_idx" ATTACH PARTITION "dwh"."by_hand"']
    _lay, _tab, queries, _w = _index_plan([mine], tails={500: "USING btree (id)", 903: "USING hash (id)"})
    assert queries[1].startswith('CREATE UNIQUE INDEX CONCURRENTLY "fait_2025_fait_id_idx"')


def test_an_index_name_taken_elsewhere_is_never_dropped():
    taken = {("dwh", "fait_2025_fait_id_idx"): {"relkind": "r", "table_oid": None}}
    _lay, _tab, queries, warns = _index_plan([], taken=taken)
    assert queries == [] and any("taken by another relation" in w for w in warns)


def test_long_index_names_stay_unique_and_within_63_bytes():
    index = "fait_attributions_date_demandee_key_client_id_idx"
    names = [partition_indexes.partition_index_name("fait_attributions_%d" % y, index) for y in (2024, 2025, 2026)]
    assert len(set(names)) == 3 and all(len(n.encode()) <= 63 for n in names)
    assert names[0].startswith("fait_attributions_2024_fait_attributions_date_demandee")
    assert partition_indexes.partition_index_name("f_2024", "i") == "f_2024_i"
    assert partition_indexes.partition_index_name("é" * 40, "idx") != partition_indexes.partition_index_name(
        "é" * 41, "idx"
    )


def test_new_table_is_created_with_schema_and_default():
    dec = declared(premake=0)
    dec.columns = partitioning.validate_columns([{"name": "id", "type": "bigint"}, "dk integer"], "dk", "dwh.fait")
    dec.primary_key = ["id", "dk"]
    _lay, result = plan_for(dec, {"exists": False}, D(2025, 1, 1), schemas=set())
    texts = [text(s.sql) for s in result.plan.steps]
    assert texts[0] == 'CREATE SCHEMA IF NOT EXISTS "dwh"'
    assert (
        texts[1]
        == 'CREATE TABLE "dwh"."fait" ("id" bigint, "dk" integer NOT NULL, PRIMARY KEY ("id", "dk")) PARTITION BY RANGE ("dk")'
    )
    assert texts[-1] == 'ALTER TABLE "dwh"."fait" ATTACH PARTITION "dwh"."fait_default" DEFAULT'
    assert result.created == ["fait_2025", "fait_default"]


def test_start_before_cutoff_is_clipped_and_future_start_still_makes_one_period():
    dec = declared(
        start=D(2020, 1, 1), retention={"keep": 2, "action": "detach", "archive_schema": None}, default=False
    )
    lay = partitioning.layout(dec, table([]), D(2025, 1, 1))
    assert lay.periods == [D(2023, 1, 1), D(2024, 1, 1), D(2025, 1, 1), D(2026, 1, 1)]
    lay = partitioning.layout(declared(start=D(2030, 1, 1), premake=0), table([]), D(2025, 1, 1))
    assert lay.periods == [D(2030, 1, 1)]


@pytest.mark.parametrize(
    "kwargs, words",
    [
        ({"relkind": "r"}, "not partitioned: set migrate"),
        ({"strategy": "list"}, "not by RANGE"),
        ({"columns": ("other",)}, "not by the key column dk"),
        ({"columns": ("dk", "id")}, "not by the key column dk"),
    ],
)
def test_partition_key_checks(kwargs, words):
    with pytest.raises(InvalidInput) as err:
        partitioning.check_partition_key(declared(), table([], **kwargs))
    assert words in err.value.msg


@pytest.mark.parametrize(
    "retention, words",
    [
        ({"keep": -1}, "would drop the current period"),
        ({"keep": "x"}, "not a whole number"),
        ({"keep": 1, "action": "archive"}, "needs archive_schema"),
        ({"keep": 1, "action": "shred"}, "choose one of"),
        ({"action": "drop"}, "needs keep"),
    ],
)
def test_bad_retention(retention, words):
    with pytest.raises(InvalidInput) as err:
        partitioning.validate_retention(retention, "dwh.fait")
    assert words in err.value.msg


def test_bad_partition_options_and_columns():
    with pytest.raises(InvalidInput):
        partitioning.validate_partition_options({"fill factor; drop": 1}, "t")
    assert partitioning.validate_partition_options({"autovacuum_enabled": False, "fillfactor": 90}, "t") == {
        "autovacuum_enabled": "false",
        "fillfactor": "90",
    }
    with pytest.raises(InvalidInput) as err:
        partitioning.validate_columns([{"name": "a", "type": "int); DROP TABLE x; --"}], "a", "t")
    assert "not a type name" in err.value.msg
    with pytest.raises(InvalidInput) as err:
        partitioning.validate_columns([{"name": "a", "type": "int"}], "dk", "t")
    assert "key column dk" in err.value.msg
    with pytest.raises(InvalidInput) as err:
        partitioning.validate_columns(None, "dk", "dwh.t")
    assert "does not exist" in err.value.msg and "columns" in err.value.msg


def test_names_are_cut_to_63_bytes_keeping_the_suffix():
    name = partitioning.truncate_name("é" * 40, "_2023w05")
    assert len(name.encode()) <= 63 and name.endswith("_2023w05")


def test_retention_never_reaches_the_current_period():
    # A partition that ends after the current period's start but got classified old would be a bug: the guard fires.
    dec = declared(retention={"keep": 0, "action": "drop", "archive_schema": None}, default=False)
    lay = partitioning.layout(dec, table([part("fait_2024", 20240101, 20250101)]), D(2025, 1, 1))
    assert [p["name"] for p in lay.retired] == ["fait_2024"]


def _retention_parts():
    return [
        part("fait_2020", 20200101, 20210101),
        part("fait_2023", 20230101, 20240101),
        part("fait_2025", 20250101, 20260101),
        part("fait_2026", 20260101, 20270101),
    ]


def test_a_pending_detach_is_finished_with_finalize_in_the_retirement_transaction():
    parts = _retention_parts()
    parts[0]["detach_pending"] = True
    ret = {"keep": 1, "action": "archive", "archive_schema": "arch"}
    _lay, result = plan_for(
        declared(default=False, retention=ret), table(parts), D(2025, 1, 1), schemas={"dwh", "arch"}
    )
    finalize, archive = result.plan.steps[:2]
    assert text(finalize.sql) == 'ALTER TABLE "dwh"."fait" DETACH PARTITION "dwh"."fait_2020" FINALIZE'
    assert finalize.transactional and finalize.group == archive.group, "finished and archived together"
    assert "CONCURRENTLY" in text(result.plan.steps[2].sql), "the next old partition detaches as usual"
    assert result.finished_detaches == ["fait_2020"] and result.archived == ["fait_2020", "fait_2023"]


def test_a_pending_detach_of_a_kept_partition_is_refused_in_words():
    parts = _retention_parts()
    parts[2]["detach_pending"] = True
    with pytest.raises(InvalidInput) as err:
        plan_for(declared(default=False), table(parts), D(2025, 1, 1))
    assert "fait_2025" in err.value.msg and "FINALIZE" in err.value.msg and "nothing was changed" in err.value.msg


def test_retention_drop_leaves_a_partition_with_dependents_attached_and_says_why():
    parts = _retention_parts()
    ret = {"keep": 1, "action": "drop", "archive_schema": None}
    dependents = {parts[0]["oid"]: ["view public.v"]}
    _lay, result = plan_for(declared(default=False, retention=ret), table(parts), D(2025, 1, 1), dependents=dependents)
    assert result.detached == result.dropped == ["fait_2023"]
    assert not any("fait_2020" in text(s.sql) for s in result.plan.steps)
    assert "fait_2020" in [p["name"] for p in result.partitions]
    assert any("fait_2020" in w and "view public.v" in w for w in result.warnings)
    parts[0]["detach_pending"] = True  # already half detached: finish, keep the table
    _lay, result = plan_for(declared(default=False, retention=ret), table(parts), D(2025, 1, 1), dependents=dependents)
    assert result.detached == ["fait_2020", "fait_2023"] and result.dropped == ["fait_2023"]
    assert text(result.plan.steps[0].sql).endswith("FINALIZE") and 'DROP TABLE "dwh"."fait_2020"' not in [
        text(s.sql) for s in result.plan.steps
    ]


def test_with_a_default_every_new_period_locks_and_moves_even_when_none_was_counted():
    tab = table([part("fait_2025", 20250101, 20260101), part("fait_default", default=True)])
    _lay, result = plan_for(declared(premake=2), tab, D(2025, 1, 1), default_rows=0, default_counts={})
    units = plan.transactions(result.plan.steps)
    assert len(units) == 2, "one short transaction per new period"
    for unit in units:
        assert [text(s.sql).split(" ")[0] for s in unit] == ["DO", "CREATE", "WITH", "ALTER"], "locks first"
    assert result.moved_rows == 0


def test_results_come_from_the_steps_that_committed():
    tab = table([part("fait_2025", 20250101, 20260101), part("fait_default", default=True)])
    _lay, result = plan_for(declared(premake=2), tab, D(2025, 1, 1), default_rows=5, default_counts={D(2026, 1, 1): 5})
    assert result.created == ["fait_2026", "fait_2027"] and result.moved_rows == 5
    first = plan.transactions(result.plan.steps)[0]
    first[2].rowcount = 9  # rows that arrived after the count moved too
    result.record(first)
    assert result.created == ["fait_2026"] and result.moved_rows == 9


def test_autocommit_steps_of_one_group_are_one_unit():
    steps = [
        plan.Step("DROP INDEX CONCURRENTLY IF EXISTS i", "r", transactional=False, group="b"),
        plan.Step("CREATE INDEX CONCURRENTLY i", "r", transactional=False, group="b"),
        plan.Step("VACUUM x", "r", transactional=False),
        plan.Step("VACUUM y", "r", transactional=False),
        plan.Step("ALTER INDEX", "r", group="b"),
    ]
    assert [len(u) for u in plan.transactions(steps)] == [2, 1, 1, 1]


def test_one_leaf_index_is_adopted_by_one_parent_index_only():
    twin = dict(PARENT_INDEX, oid=501, name="fait_id_twin")
    mine = {"oid": 903, "name": "by_hand", "is_valid": True, "is_unique": True, "parent_index_oid": None}
    tab = table([part("fait_2025", 20250101, 20260101, indexes=[mine])], indexes=[PARENT_INDEX, twin])
    dec = declared(default=False, premake=0)
    lay = partitioning.layout(dec, tab, D(2025, 1, 1))
    tails = {500: "USING btree (id)", 501: "USING btree (id)", 903: "USING btree (id)"}
    result = partitioning.build_plan(dec, tab, lay, {"schemas": {"dwh"}, "index_tails": tails})
    queries = [text(s.sql) for s in result.plan.steps]
    assert queries[0] == 'ALTER INDEX "dwh"."fait_id_idx" ATTACH PARTITION "dwh"."by_hand"'
    assert queries[2].startswith('CREATE UNIQUE INDEX CONCURRENTLY "fait_2025_fait_id_twin"')


# --- issue 12 item 6: limits on what one run does, integer "now" -----------------------------------------------


def test_retention_retires_at_most_max_per_run_oldest_first_and_the_rest_wait():
    parts = [part("fait_%d" % y, y * 10000 + 101, (y + 1) * 10000 + 101) for y in range(2015, 2027)]
    ret = {"keep": 1, "action": "drop", "archive_schema": None, "max_per_run": 2}
    lay, result = plan_for(declared(default=False, retention=ret), table(parts), D(2025, 1, 1))
    assert [p["name"] for p in lay.retired] == ["fait_2015", "fait_2016"]
    assert [p["name"] for p in lay.waiting] == ["fait_%d" % y for y in range(2017, 2024)]
    assert result.dropped == ["fait_2015", "fait_2016"] and result.retention_remaining == 7
    assert any("7 more partition(s)" in w and "max_per_run=2" in w for w in result.warnings)
    assert "fait_2017" in [p["name"] for p in result.partitions], "waiting partitions stay in the set"


def test_retention_default_max_per_run_is_small():
    assert partitioning.validate_retention({"keep": 2}, "t")["max_per_run"] == partitioning.DEFAULT_MAX_PER_RUN == 3
    for bad in (0, -1, "x", True):
        with pytest.raises(InvalidInput) as err:
            partitioning.validate_retention({"keep": 2, "max_per_run": bad}, "dwh.fait")
        assert "max_per_run" in err.value.msg and "dwh.fait" in err.value.msg


def test_a_flood_of_new_partitions_is_refused_naming_table_count_and_range():
    dec = declared(interval="day", start=D(2024, 1, 1), default=False)
    with pytest.raises(InvalidInput) as err:
        partitioning.layout(dec, table([]), D(2025, 1, 1))
    msg = err.value.msg
    assert "dwh.fait" in msg and "368 new partitions" in msg and "20240101 to 20250102" in msg
    assert "max_new_partitions=100" in msg and "Nothing was changed" in msg
    dec.max_new_partitions = 400
    assert len(partitioning.layout(dec, table([]), D(2025, 1, 1)).missing) == 368


def test_migration_layout_cap():
    dec = declared(fmt="integer", interval="100", start=0, premake=2)
    entries = partitioning.migration_layout(dec, 9999900)
    with pytest.raises(InvalidInput) as err:
        partitioning.check_migration_layout(dec, entries)
    assert "100002 partitions" in err.value.msg and "stray keys" in err.value.msg
    partitioning.check_migration_layout(dec, partitioning.migration_layout(dec, 1000))


def test_newest_first_and_stray_partitions():
    parts = [
        part("p20800", 20800, 20900),
        part("p9999900", 9999900, 10000000),
        part("p20900", 20900, 21000),
        part("fait_default", default=True),
    ]
    dec = declared(fmt="integer", interval="100", premake=2)
    order = partitioning.newest_first(table(parts))
    assert [p["name"] for p in order] == ["p9999900", "p20900", "p20800"]
    assert partitioning.is_stray(dec, order[0], 20999), "far beyond the newest rows + premake"
    assert not partitioning.is_stray(dec, order[1], 20899)
    # premake partitions are within reach: rows there move "now" normally
    assert not partitioning.is_stray(dec, part("p21100", 21100, 21200), 20950)
    assert partitioning.is_stray(dec, part("p21200", 21200, 21300), 20950)


# --- issue 14 item 2: a partition covering whole periods (migrate: attach) -----------------------------------------


def test_partition_covering_whole_periods_is_adopted_as_it_is():
    old = part("f_unpartitioned", 20240101, 20260101)
    tab = table([old, part("fait_default", default=True)])
    lay, result = plan_for(declared(start=D(2024, 1, 1)), tab, D(2026, 1, 1))
    assert [p["name"] for p in lay.spanning] == ["f_unpartitioned"] and set(lay.covered) == {
        D(2024, 1, 1),
        D(2025, 1, 1),
    }
    assert lay.missing == [D(2026, 1, 1), D(2027, 1, 1)]
    assert result.created == ["fait_2026", "fait_2027"]
    assert [p["name"] for p in result.partitions] == ["f_unpartitioned", "fait_2026", "fait_2027", "fait_default"]
    assert partitioning.staying_partitions(lay)[0]["name"] == "f_unpartitioned"


def test_partition_cutting_a_period_is_still_refused():
    tab = table([part("f_half", 20230701, 20250101)])
    with pytest.raises(InvalidInput) as err:
        plan_for(declared(start=D(2023, 1, 1)), tab, D(2025, 1, 1))
    assert "f_half" in err.value.msg and "whole periods" in err.value.msg


def test_spanning_partition_straddling_the_cutoff_is_kept_and_said():
    ret = {"keep": 1, "action": "drop", "archive_schema": None}
    tab = table([part("f_old", 20230101, 20260101)])
    lay, result = plan_for(declared(start=D(2023, 1, 1), default=False, retention=ret), tab, D(2026, 1, 1))
    assert lay.spanning and not lay.retired and result.dropped == []
    assert any("f_old" in w and "partly old" in w for w in result.warnings)


# --- issue 14 item 4: timestamptz bounds as the server normalises them ------------------------------------------


SANTIAGO_SUMMER = datetime.timezone(datetime.timedelta(hours=-3))
SANTIAGO_WINTER = datetime.timezone(datetime.timedelta(hours=-4))


def tz_declared(start):
    scheme = periods.Scheme("timestamptz", "day", "timestamp with time zone")
    return partitioning.Declared("dwh", "fait", "k", scheme, start=start, premake=1, default_partition=False)


def test_dst_gap_bound_is_adopted_through_the_server_alias():
    # America/Santiago 2026-09-06: midnight does not exist, the server stores 01:00-03
    dt = datetime.datetime
    gap = dt(2026, 9, 6, 1, 0, tzinfo=SANTIAGO_SUMMER)
    parts = [
        part("fait_20260905", dt(2026, 9, 5, tzinfo=SANTIAGO_WINTER), gap),
        part("fait_20260906", gap, dt(2026, 9, 7, tzinfo=SANTIAGO_SUMMER)),
    ]
    dec = tz_declared(D(2026, 9, 5))
    with pytest.raises(InvalidInput) as err:
        partitioning.layout(dec, table(parts), D(2026, 9, 6), session_tz="America/Santiago")
    assert "overlap" in err.value.msg, "without the alias the wall clocks disagree"
    lay = partitioning.layout(
        dec, table(parts), D(2026, 9, 6), aliases={gap: dt(2026, 9, 6)}, session_tz="America/Santiago"
    )
    assert set(lay.adopted) == {D(2026, 9, 5), D(2026, 9, 6)} and lay.missing == [D(2026, 9, 7)]


def test_bounds_made_in_another_time_zone_get_a_message_saying_so():
    utc = datetime.timezone.utc
    # made at UTC midnight, read by a session in America/Santiago (-03): 21:00 the day before
    low = datetime.datetime(2026, 11, 1, tzinfo=utc).astimezone(SANTIAGO_SUMMER)
    high = datetime.datetime(2026, 11, 2, tzinfo=utc).astimezone(SANTIAGO_SUMMER)
    with pytest.raises(InvalidInput) as err:
        partitioning.layout(
            tz_declared(D(2026, 11, 1)),
            table([part("fait_20261101", low, high)]),
            D(2026, 11, 1),
            session_tz="America/Santiago",
        )
    msg = err.value.msg
    assert "America/Santiago" in msg and "UTC offset +00:00" in msg and "another TimeZone" in msg
    assert "nothing was changed" in msg


def test_new_partitions_take_the_newest_partitions_storage_settings_under_the_declared_ones():
    old = part("fait_2024", 20240101, 20250101, reloptions={"fillfactor": "90"})
    new = part("fait_2025", 20250101, 20260101, reloptions={"fillfactor": "70"}, toast={"autovacuum_enabled": "false"})
    new["stat_targets"] = {"dk": 500}
    _lay, result = plan_for(
        declared(default=False, options={"autovacuum_enabled": "true"}), table([old, new]), D(2025, 1, 1)
    )
    created = [s for s in result.plan.steps if text(s.sql).startswith('CREATE TABLE "dwh"."fait_2026"')]
    assert created and text(created[0].sql).endswith(
        "WITH (autovacuum_enabled = 'true', fillfactor = '70', toast.autovacuum_enabled = 'false')"
    ), text(created[0].sql)
    assert 'ALTER TABLE "dwh"."fait_2026" ALTER COLUMN "dk" SET STATISTICS 500' in [
        text(s.sql) for s in result.plan.steps
    ]
    assert "fait_2025" in created[0].reason


def test_without_an_existing_partition_only_the_declared_options_apply():
    template, options, targets = partitioning.template_settings(
        declared(options={"fillfactor": "60"}), partitioning.layout(declared(), table([]), D(2025, 1, 1))
    )
    assert (template, options, targets) == (None, {"fillfactor": "60"}, {})


# --- issue 27: a table that is itself a partition, and the interval of the existing tree -------------------------


def ancestor(parent, low, high, strategy="r", columns=("dk",), types=("integer",), bound=None):
    return {
        "schema": "dwh",
        "name": parent,
        "bound": bound or "FOR VALUES FROM (%s) TO (%s)" % (low, high),
        "strategy": strategy,
        "has_expressions": False,
        "columns": list(columns),
        "types": list(types),
    }


def bounded(parts, *ancestry):
    tab = table(parts)
    tab["ancestry"] = list(ancestry)
    return tab


def months(first, count):
    """Monthly partitions of yyyymmdd keys from ``first`` (a date), ``count`` of them."""
    scheme = periods.Scheme("yyyymmdd", "month", "integer")
    points = scheme.periods(first, scheme.step(first, count - 1))
    return [part("fait_%s" % scheme.label(p), *scheme.bounds(p)) for p in points]


def test_key_bound_intersects_the_range_ancestors_on_the_key_only():
    assert partitioning.key_bound(table([]), "dk") is None
    year = ancestor("fait", 20240101, 20250101)
    assert partitioning.key_bound(bounded([], year), "dk") == partitioning.KeyBound(20240101, 20250101, ("dwh.fait",))
    # a parent listing regions does not bound the date key; a half-year above a year narrows it
    region = ancestor("fait_2024", None, None, strategy="l", columns=("region",), bound="FOR VALUES IN ('nord')")
    half = ancestor("fait_2024_h2", 20240701, 20250101)
    bound = partitioning.key_bound(bounded([], region, half, year), "dk")
    assert (bound.low, bound.high, bound.parents) == (20240701, 20250101, ("dwh.fait_2024_h2", "dwh.fait"))
    assert bound.text() == "FROM (20240701) TO (20250101) in dwh.fait_2024_h2 in dwh.fait"
    # the default partition of a range parent holds what its siblings do not: no single range
    default = ancestor("fait", None, None, bound="DEFAULT")
    assert partitioning.key_bound(bounded([], default), "dk") is None
    dates = ancestor("fait", None, None, types=("date",), bound="FOR VALUES FROM (MINVALUE) TO ('2025-01-01')")
    assert partitioning.key_bound(bounded([], dates), "dk").high == D(2025, 1, 1)


def test_a_bounded_sub_tree_gets_its_periods_only_whatever_premake_and_now():
    year = ancestor("fait", 20240101, 20250101)
    tab = bounded(months(D(2024, 1, 1), 6), year)
    # now (December 2026) is past the bound: July to December 2024 are missing, nothing after the bound
    lay, result = plan_for(declared("month", start=D(2024, 1, 1), default=False), tab, D(2026, 12, 1))
    assert lay.missing == [D(2024, m, 1) for m in range(7, 13)] and lay.clipped == 25
    assert result.created == ["fait_2024%02d" % m for m in range(7, 13)] and not result.warnings
    # the live year in December: the premade January belongs to the next partition of the parent
    live = bounded(months(D(2026, 1, 1), 11), ancestor("fait", 20260101, 20270101))
    lay, result = plan_for(declared("month", start=D(2026, 1, 1), default=False), live, D(2026, 12, 1))
    assert result.created == ["fait_202612"] and lay.clipped == 1
    # a sub-tree ahead of now, without start: what premake reaches inside it
    ahead = bounded([], ancestor("fait", 20270101, 20280101))
    lay, result = plan_for(declared("month", premake=2, default=False), ahead, D(2026, 12, 1))
    assert result.created == ["fait_202701", "fait_202702"]
    # closed and no start: no period at all, and nothing fails on an empty set
    lay, result = plan_for(declared("month", premake=1), bounded(months(D(2024, 1, 1), 12), year), D(2026, 12, 1))
    assert lay.periods == [] and result.created == ["fait_default"] and partitioning.beyond_bound(lay, lay) is None


def test_a_start_outside_the_bound_is_refused_naming_it():
    year = ancestor("fait", 20240101, 20250101)
    for start, side in ((D(2020, 1, 1), "before 20240101"), (D(2025, 1, 1), "at or after 20250101")):
        with pytest.raises(InvalidInput) as err:
            plan_for(declared("month", start=start), bounded([], year), D(2026, 12, 1))
        assert "outside its bound" in err.value.msg and side in err.value.msg and "dwh.fait" in err.value.msg
    # a week straddling the bound's first day holds some of its keys: accepted
    weekly = periods.Scheme("yyyymmdd", "week", "integer")
    dec = partitioning.Declared("dwh", "fait", "dk", weekly, start=D(2024, 12, 30), premake=0, default_partition=False)
    lay = partitioning.layout(dec, bounded([], ancestor("fait", 20250101, 20260101)), D(2025, 1, 6))
    assert lay.periods[0] == D(2024, 12, 30)


def test_partitions_outside_the_bound_are_reported_and_kept():
    tab = bounded(months(D(2024, 11, 1), 4), ancestor("fait", 20240101, 20250101))
    lay, result = plan_for(declared("month", start=D(2024, 1, 1), default=False), tab, D(2026, 12, 1))
    assert [p["name"] for p in lay.others] == ["fait_202501", "fait_202502"]
    assert result.dropped == [] and result.detached == []
    warning = [w for w in result.warnings if "outside its bound" in w]
    assert len(warning) == 1 and "fait_202501, fait_202502" in warning[0] and "no row can ever reach" in warning[0]


def test_retention_inside_a_bounded_sub_tree_counts_from_now():
    ret = {"keep": 12, "action": "drop", "archive_schema": None, "max_per_run": 3}
    tab = bounded(months(D(2024, 1, 1), 12), ancestor("fait", 20240101, 20250101))
    lay, result = plan_for(declared("month", start=D(2024, 1, 1), default=False, retention=ret), tab, D(2025, 6, 1))
    # kept: June 2024 (12 months behind June 2025) to the bound; retired three a run, oldest first
    assert lay.periods == [D(2024, m, 1) for m in range(6, 13)] and not lay.missing
    assert result.dropped == ["fait_202401", "fait_202402", "fait_202403"]
    assert [p["name"] for p in lay.waiting] == ["fait_202404", "fait_202405"]
    # once now is far past the bound, every partition of the sub-tree is old, still three a run
    lay, result = plan_for(declared("month", start=D(2024, 1, 1), default=False, retention=ret), tab, D(2026, 12, 1))
    assert lay.periods == [] and len(result.dropped) == 3 and len(lay.waiting) == 9


@pytest.mark.parametrize(
    "interval, low, high",
    [("year", 20240101, 20250101), ("quarter", 20240401, 20240701), ("month", 20240201, 20240301),
     ("week", 20240101, 20240108), ("day", 20240229, 20240301), (None, 20240101, 20260101), (None, 20240102, 20240202)],
)  # fmt: skip
def test_interval_of_a_partition(interval, low, high):
    scheme = periods.Scheme("yyyymmdd", "day", "integer")
    assert partitioning.interval_of(scheme, part("p", low, high)) == interval
    integer = periods.Scheme("integer", "1000", "integer")
    assert partitioning.interval_of(integer, part("p", 5000, 10000)) == "5000"
    assert partitioning.interval_of(integer, part("p", 5000, 7000)) is None


def test_an_interval_the_tree_does_not_have_is_refused_naming_both():
    years = [part("fait_%d" % y, y * 10000 + 101, (y + 1) * 10000 + 101) for y in range(2023, 2028)]
    with pytest.raises(InvalidInput) as err:
        plan_for(declared("month", start=D(2023, 1, 1)), table(years), D(2026, 12, 1))
    msg = err.value.msg
    assert "are by year (5, the newest" in msg and "not by the declared interval month" in msg
    assert "Declare interval: year" in msg and "FROM (20280101) TO (20280201)" in msg
    # the tree switched from a date on: its first month exists, the years are adopted as they are
    switched = table(years + months(D(2028, 1, 1), 1))
    lay, result = plan_for(declared("month", start=D(2023, 1, 1), default=False), switched, D(2028, 1, 1))
    assert len(lay.spanning) == 5 and result.created == ["fait_202802"]
    # a monthly tree declared by year: said in the same words, not as a bare overlap
    with pytest.raises(InvalidInput) as err:
        plan_for(declared("year", start=D(2024, 1, 1)), table(months(D(2024, 1, 1), 6)), D(2024, 6, 1))
    assert "are by month (6" in err.value.msg and "declared interval year" in err.value.msg


# ---------------------------------------------------------------------------------------------
# Epoch keys: the days a plan reads, bounds of another format, 2038, another TimeZone
# ---------------------------------------------------------------------------------------------


def _last_sunday(year, month):
    day = D(year, month, 31)
    return day - datetime.timedelta(days=(day.weekday() + 1) % 7)


# Paris: UTC+1 in winter, +2 in summer, from the Monday after the last Sunday of March to the one of October (the
# midnights of those Sundays are still at the old offset).
PARIS = periods.TimeZoneDays(
    "Europe/Paris",
    D(2020, 1, 1),
    D(2040, 12, 31),
    ((D(2020, 1, 1), -3600),)
    + tuple(
        run
        for year in range(2020, 2041)
        for run in (
            (_last_sunday(year, 3) + datetime.timedelta(days=1), -7200),
            (_last_sunday(year, 10) + datetime.timedelta(days=1), -3600),
        )
    ),
)


def epoch_declared(interval="day", fmt="epoch", column="bigint", start=None, premake=2, retention=None, days=PARIS):
    scheme = periods.Scheme(fmt, interval, column, days)
    return partitioning.Declared("dwh", "fait", "dk", scheme, start=start, premake=premake, retention=retention)


def test_epoch_layout_names_partitions_by_date_and_adopts_its_own_bounds():
    dec = epoch_declared("day", start=D(2024, 3, 30), premake=1)
    existing = [part("fait_20240330", 1711753200, 1711839600), part("fait_default", default=True)]
    lay, result = plan_for(dec, table(existing), D(2024, 3, 31), default_rows=0)
    assert lay.adopted[D(2024, 3, 30)]["name"] == "fait_20240330"
    assert result.created == ["fait_20240331", "fait_20240401"]
    attach = [text(s.sql) for s in result.plan.steps if "ATTACH PARTITION" in text(s.sql)]
    assert attach[0].endswith("FOR VALUES FROM (1711839600) TO (1711922400)"), "23 hours: summer time starts"
    after = {p["name"]: (p["low"], p["high"]) for p in result.partitions}
    assert after["fait_20240331"] == (1711839600, 1711922400)
    ms = epoch_declared("month", fmt="epoch_ms", start=D(2024, 3, 1), premake=0)
    lay, result = plan_for(ms, table([]), D(2024, 3, 15))
    attach = [text(s.sql) for s in result.plan.steps if "ATTACH PARTITION" in text(s.sql)]
    assert result.created[0] == "fait_202403" and attach[0].endswith("FROM (1709247600000) TO (1711922400000)")


def test_days_span_reaches_start_retention_premake_and_every_existing_bound():
    margin = datetime.timedelta(days=partitioning.DAYS_MARGIN)
    dec = epoch_declared("month", start=D(2023, 1, 1), premake=3, retention={"keep": 12, "action": "drop"})
    existing = [part("old", 1577833200, 1580511600), part("far", 2145913200, 2148591600), part("d", default=True)]
    first, last = partitioning.days_span(dec, table(existing), D(2024, 6, 15))
    assert first == D(2019, 12, 31) - margin, "the oldest bound: 2020-01-01 local midnight is 2019-12-31 UTC"
    assert last == D(2038, 1, 31) + margin, "the newest bound (2038-02-01 local, 2038-01-31 23:00 UTC)"
    first, last = partitioning.days_span(dec, table([]), D(2024, 6, 15))
    assert (first, last) == (D(2023, 1, 1) - margin, D(2024, 10, 1) + margin), "start; premake + 1 months"
    dec = epoch_declared("month", premake=3, retention={"keep": 12, "action": "drop"})
    assert partitioning.days_span(dec, table([]), D(2024, 6, 15))[0] == D(2023, 5, 1) - margin, "keep + 1 months"
    first, last = partitioning.days_span(epoch_declared("day", premake=7), table([]), D(2024, 6, 15))
    assert (first, last) == (D(2024, 6, 14) - margin, D(2024, 6, 23) + margin)
    stray = [part("zero", 0, 1577833200), part("huge", 1577833200, 10**15), part("min", "MINVALUE", 1577833200)]
    first, last = partitioning.days_span(epoch_declared("day", premake=7), table(stray), D(2024, 6, 15))
    assert (first, last) == (D(2019, 12, 31) - margin, D(2024, 6, 23) + margin), (
        "bounds that are no epochs are left out"
    )


def test_an_epoch_key_over_partitions_of_another_format_is_refused():
    yyyymmdd = table([part("fait_2023", 20230101, 20240101), part("fait_2024", 20240101, 20250101)])
    with pytest.raises(InvalidInput) as err:
        partitioning.layout(epoch_declared("year"), yyyymmdd, D(2024, 6, 15))
    msg = err.value.msg
    assert "dwh.fait" in msg and "20230101 to 20250101" in msg and "key_format yyyymmdd" in msg, msg
    seconds = table([part("fait_20240330", 1711753200, 1711839600)])
    with pytest.raises(InvalidInput) as err:
        partitioning.layout(epoch_declared("day", fmt="epoch_ms"), seconds, D(2024, 3, 30))
    assert "use key_format epoch" in err.value.msg
    # a catch-all partition from 0 beside real ones is no other format
    catch_all = table([part("fait_old", 0, 1711753200), part("fait_20240330", 1711753200, 1711839600)])
    lay = partitioning.layout(epoch_declared("day", premake=0), catch_all, D(2024, 3, 30))
    assert lay.adopted[D(2024, 3, 30)]["name"] == "fait_20240330"


def test_an_epoch_set_made_in_another_time_zone_is_named():
    # Tokyo midnights (UTC+9, 15:00 UTC the day before) declared in a Paris session
    tokyo = [part("fait_20240330", 1711724400, 1711810800), part("fait_20240331", 1711810800, 1711897200)]
    with pytest.raises(InvalidInput) as err:
        partitioning.layout(
            epoch_declared("day", start=D(2024, 3, 30)), table(tokyo), D(2024, 3, 30), session_tz="Europe/Paris"
        )
    msg = err.value.msg
    assert "Europe/Paris" in msg and "+09:00" in msg and "another TimeZone" in msg, msg


def test_integer_epoch_seconds_are_warned_a_year_before_2038_and_refused_past_it():
    utc = periods.TimeZoneDays.uniform("UTC", 0, D(2030, 1, 1), D(2040, 12, 31))
    quiet = partitioning.layout(epoch_declared("month", column="integer", days=utc), table([]), D(2036, 6, 15))
    assert not quiet.warnings
    near = partitioning.layout(epoch_declared("month", column="integer", days=utc), table([]), D(2037, 3, 15))
    assert any("2038-01-19 03:14:07 UTC" in w and "bigint" in w for w in near.warnings), near.warnings
    with pytest.raises(InvalidInput) as err:
        partitioning.layout(epoch_declared("month", column="integer", days=utc), table([]), D(2037, 12, 15))
    assert "does not fit key column dk (integer)" in err.value.msg and "bigint" in err.value.msg
    assert not partitioning.layout(epoch_declared("month", days=utc), table([]), D(2037, 12, 15)).warnings, "bigint"


def test_a_deadlock_names_the_foreign_keys_and_never_advises_a_longer_lock_timeout():
    from ansible_collections.sigeti.dwh.plugins.module_utils.core.errors import LockNotGranted
    from ansible_collections.sigeti.dwh.plugins.module_utils.partitioning import run as partition_run

    result = partitioning.Result()
    result.referenced = [("public", "pgbench_accounts"), ("public", "pgbench_branches")]
    error = LockNotGranted(
        "Gave up after 4 attempts: PostgreSQL found a deadlock (SQLSTATE 40P01) and ended this run's transaction (the "
        "last time: ...). Nothing of this step was applied. What to do: a deadlock is not a long wait, raising "
        "lock_timeout or lock_retries cannot help; let that session's transaction end first.",
        sqlstate="40P01",
        blocking_pids=[42],
    )
    failure = partition_run.run_failure(None, "public.pgbench_history", error, result, [], [], None)
    head, todo = failure.msg.split(" What to do: ")
    assert "found a deadlock" in head and failure.details["sqlstate"] == "40P01"
    assert "Why: the foreign keys of public.pgbench_history reference public.pgbench_accounts, " in head
    assert "writers of public.pgbench_history hold them" in head and "lock_timeout" not in head
    assert todo.startswith("a deadlock is not a long wait") and failure.details["blocking_pids"] == [42]
    # a lock timeout is not a deadlock: no foreign-key story there
    timeout = partition_run.run_failure(
        None, "public.h", LockNotGranted("Gave up.", sqlstate="55P03"), result, [], [], None
    )
    assert "Why:" not in timeout.msg
