"""Retention action parquet and archive_restore on plain values (issue 31): the option's rules, the plan's steps and
groups, the predicted archive files, the ATTACH composed from a manifest's bound."""

import datetime

import pytest
from psycopg2 import sql
from psycopg2.extensions import adapt

from ansible_collections.sigeti.dwh.plugins.module_utils.archive import restore
from ansible_collections.sigeti.dwh.plugins.module_utils.archive import retention as parquet_retention
from ansible_collections.sigeti.dwh.plugins.module_utils.archive.manifest import archive_paths
from ansible_collections.sigeti.dwh.plugins.module_utils.core.errors import InvalidInput
from ansible_collections.sigeti.dwh.plugins.module_utils.partitioning import planner as partitioning
from ansible_collections.sigeti.dwh.plugins.module_utils.plan import steps as plan
from tests.unit.plugins.module_utils.test_partitioning import declared, part, plan_for, table, text

D = datetime.date


def parts_2020_to_2026():
    return [
        part("fait_2020", 20200101, 20210101),
        part("fait_2023", 20230101, 20240101),
        part("fait_2025", 20250101, 20260101),
        part("fait_2026", 20260101, 20270101),
    ]


def quoted(composable):
    """Render as the server would receive it, literals escaped as psycopg2 does."""
    if isinstance(composable, sql.Composed):
        return "".join(quoted(c) for c in composable.seq)
    if isinstance(composable, sql.Literal):
        return adapt(composable.wrapped).getquoted().decode()
    return text(composable)


RETENTION = {"keep": 1, "action": "parquet", "archive_schema": None, "archive_dir": "/srv/a", "max_per_run": 3}


@pytest.mark.parametrize(
    "given, words",
    [
        ({"keep": 1, "action": "parquet"}, "needs archive_dir: the absolute path"),
        ({"keep": 1, "action": "parquet", "archive_dir": "srv/a"}, "retention.archive_dir='srv/a' for dwh.fait is not"),
        ({"keep": 1, "action": "parquet", "archive_dir": "./a"}, "not an absolute path"),
        ({"keep": 1, "action": "drop", "archive_dir": "/srv/a"}, "only read by action parquet (action is drop)"),
    ],
)
def test_archive_dir_is_required_absolute_and_only_for_parquet(given, words):
    with pytest.raises(InvalidInput) as raised:
        partitioning.validate_retention(given, "dwh.fait")
    assert words in raised.value.msg and "nothing was changed" in raised.value.msg


def test_a_valid_parquet_retention_keeps_the_folder_normalised():
    checked = partitioning.validate_retention({"keep": 2, "action": "parquet", "archive_dir": "/srv//a/"}, "dwh.fait")
    assert checked["archive_dir"] == "/srv/a" and checked["action"] == "parquet"
    assert partitioning.validate_retention({"keep": 2}, "dwh.fait")["archive_dir"] is None


@pytest.mark.parametrize("has_default", [True, False])
def test_each_partition_is_detached_then_checked_and_dropped_in_a_transaction_of_its_own(has_default):
    parts = parts_2020_to_2026() + ([part("fait_default", default=True)] if has_default else [])
    dec = declared(default=has_default, retention=dict(RETENTION))
    _lay, result = plan_for(dec, table(parts), D(2025, 1, 1))
    assert result.detached == result.dropped == result.archived == ["fait_2020", "fait_2023"]
    retire = [s for s in result.plan.steps if "fait_2020" in str(s.targets)]
    detach, check, drop = retire
    assert "DETACH PARTITION" in text(detach.sql) and detach.effect == ("detached", "fait_2020")
    assert isinstance(check.sql, parquet_retention.ArchiveCheck) and check.effect == ("archived", "fait_2020")
    assert text(drop.sql) == 'DROP TABLE "dwh"."fait_2020"' and drop.effect == ("dropped", "fait_2020")
    assert check.group == drop.group != detach.group, "the check never holds the detach's lock on the parent"
    assert check.lock == plan.ACCESS_EXCLUSIVE and check.targets == (("dwh", "fait_2020"),)
    assert check.sql.as_string(None).startswith("/* check the detached dwh.fait_2020 against the checksum in ")
    files = parquet_retention.archive_files(result.plan.steps, result.archived)
    assert files[0] == {
        "partition": "fait_2020",
        "parquet": "/srv/a/dwh.fait/fait_2020.parquet",
        "manifest": "/srv/a/dwh.fait/fait_2020.manifest.json",
        "rows": None,
        "checksum": None,
    }


def test_a_partition_a_view_depends_on_is_left_attached_as_with_drop():
    parts = parts_2020_to_2026()
    dependents = {parts[0]["oid"]: ["view public.v"]}
    _lay, result = plan_for(
        declared(default=False, retention=dict(RETENTION)), table(parts), D(2025, 1, 1), dependents=dependents
    )
    assert result.archived == ["fait_2023"]
    assert any("retention.action parquet: partition fait_2020" in w for w in result.warnings)


class Manifest:
    def __init__(self, bound):
        self.bound = bound


@pytest.mark.parametrize(
    "bound, clause",
    [
        ("FOR VALUES FROM (20190101) TO (20200101)", "FOR VALUES FROM (20190101) TO (20200101)"),
        ("FOR VALUES FROM ('2019-01-01') TO ('2020-01-01')", "FOR VALUES FROM ('2019-01-01') TO ('2020-01-01')"),
        ("FOR VALUES FROM (MINVALUE) TO ('x'' OR 1=1')", "FOR VALUES FROM (MINVALUE) TO ('x'' OR 1=1')"),
        ("FOR VALUES IN ('a', NULL)", "FOR VALUES IN ('a', NULL)"),
        ("DEFAULT", "DEFAULT"),
    ],
)
def test_the_attach_bound_is_composed_from_the_parsed_values(bound, clause):
    assert quoted(restore.bound_clause(Manifest(bound), "m.json")) == clause


@pytest.mark.parametrize("bound", [None, "FOR VALUES FROM (1) TO (2); DROP TABLE x", "garbage"])
def test_a_bound_that_is_no_partition_bound_is_refused(bound):
    with pytest.raises(InvalidInput, match="no partition bound this collection reads"):
        restore.bound_clause(Manifest(bound), "m.json")


def test_paths_match_the_engine_layout():
    dec = declared(retention=dict(RETENTION))
    assert parquet_retention.partition_archive(dec, {"name": "a/b"}) == archive_paths("/srv/a", "dwh", "fait", "a/b")
