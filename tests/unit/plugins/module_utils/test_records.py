"""The typed records of module_utils: tuples keep reading as tuples, documented dict shapes match what is built."""

import datetime
import re

import pytest

from ansible_collections.sigeti.dwh.plugins.module_utils.catalog import trials as server_checks
from ansible_collections.sigeti.dwh.plugins.module_utils.compression import planner as compression
from ansible_collections.sigeti.dwh.plugins.module_utils.partitioning import planner as partitioning
from ansible_collections.sigeti.dwh.plugins.module_utils.plan import executor as plan
from ansible_collections.sigeti.dwh.plugins.module_utils.report import table as table_report
from ansible_collections.sigeti.dwh.plugins.module_utils.session import connection
from ansible_collections.sigeti.dwh.plugins.module_utils.vacuum import options as vacuum_options
from ansible_collections.sigeti.dwh.plugins.module_utils.vacuum import repack as vacuum_repack
from ansible_collections.sigeti.dwh.plugins.module_utils.vacuum import run as vacuum_run


def test_named_tuples_unpack_and_compare_as_plain_tuples():
    ahead = table_report.PeriodsAhead("t_2026", 2, "2027-01-01")
    current, count, until = ahead
    assert (current, count, until) == ("t_2026", 2, "2027-01-01")
    assert ahead == ("t_2026", 2, "2027-01-01")
    assert ahead.ahead == 2
    assert vacuum_run.FreeSpace(False, None, "why") == (False, None, "why")
    assert vacuum_run.RepackProgram("/bin/pg_repack", "1.5.0").version == "1.5.0"
    assert server_checks.RangePlan({"Plan": {}}, "SELECT 1").query == "SELECT 1"


def test_functions_return_their_records():
    ranges = [(datetime.date(2026, 1, 1), datetime.date(2027, 1, 1), "t_2026")]
    assert isinstance(table_report.periods_ahead(ranges, datetime.date(2026, 6, 1)), table_report.PeriodsAhead)
    assert table_report.periods_ahead(ranges, datetime.date(2030, 1, 1)) == (None, 0, None)
    free = vacuum_run.filesystem_free(None, None, 5432)
    assert isinstance(free, vacuum_run.FreeSpace)
    assert free.visible is False and free.free_bytes is None
    ok, reason = vacuum_repack.repack_availability(None, None, None, True, 150000)
    assert isinstance(
        vacuum_repack.repack_availability(None, None, None, True, 150000), vacuum_repack.RepackAvailability
    )
    assert ok is False and "extension is not installed" in reason


def test_server_facts_keys_are_the_query_columns():
    query = connection.SERVER_FACTS_QUERY
    columns = set(re.findall(r"\bAS (\w+)", query)) - {"enumvals"}
    assert columns == set(connection.ServerFacts.__annotations__)


def test_documented_dict_shapes_match_what_is_built():
    assert set(compression.declared_state({})) == set(compression.DeclaredCompression.__annotations__)
    options = vacuum_options.validate_options({})
    assert set(options) == set(vacuum_options.VacuumOptions.__required_keys__)
    assert set(vacuum_options.VacuumOptions.__optional_keys__) == {"covered_by_parent"}
    assert set(vacuum_options.autovacuum_triggers({}, {}, 100)) == set(vacuum_options.Triggers.__annotations__)
    retention = partitioning.validate_retention({"keep": 1}, "public.t")
    assert set(retention) == set(partitioning.Retention.__annotations__)
    columns = partitioning.validate_columns(["day date", {"name": "v", "type": "text"}], "day", "public.t")
    assert all(set(c) == set(partitioning.ColumnDef.__annotations__) for c in columns)


def test_blockers_are_described_with_the_blocker_keys():
    class Cursor:
        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

        def execute(self, query, params=None):
            pass

        def fetchall(self):
            return [(42, "etl", "idle in transaction", "SELECT 1", datetime.timedelta(seconds=5), "AccessShareLock")]

    class Conn:
        autocommit = True

        def cursor(self):
            return Cursor()

    executor = plan.Executor(Conn())
    for found in (executor.blockers([("public", "t")]), executor.snapshot_holders()):
        assert [set(b) for b in found] == [set(plan.Blocker.__annotations__)]
        assert "pid 42 (etl, idle in transaction" in plan.describe_blockers(found)


def test_a_record_reads_like_the_dict_it_replaced_but_cannot_be_written():
    import dataclasses
    from typing import Optional

    from ansible_collections.sigeti.dwh.plugins.module_utils.core.records import MappingAccess, as_data

    @dataclasses.dataclass(frozen=True)
    class Part(MappingAccess):
        name: str
        low: Optional[int] = None

    @dataclasses.dataclass(frozen=True)
    class Whole(MappingAccess):
        parts: tuple

    part = Part("p_2024", 20240101)
    assert part["name"] == "p_2024" and part.get("low") == 20240101 and part.get("absent", 7) == 7
    assert "name" in part and "absent" not in part
    with pytest.raises(KeyError):
        part["absent"]
    with pytest.raises(TypeError):
        part["name"] = "other"  # no item assignment
    with pytest.raises(dataclasses.FrozenInstanceError):
        part.name = "other"
    assert as_data(Whole((part, Part("p_2025")))) == {
        "parts": [{"name": "p_2024", "low": 20240101}, {"name": "p_2025", "low": None}]
    }
