"""Pure logic of the online copy's batches and of the progress a state row shows."""

import types

import pytest

from ansible_collections.sigeti.dwh.plugins.module_utils.migration.online import CopyBatches, copy_batches
from ansible_collections.sigeti.dwh.plugins.module_utils.plan.steps import RowcountOf, Step
from ansible_collections.sigeti.dwh.plugins.module_utils.report.inflight import copy_progress, describe


def _ctx(reltuples, relpages, heap_bytes, batch_rows, block_size="8192"):
    return types.SimpleNamespace(
        table={"reltuples": reltuples, "relpages": relpages, "heap_bytes": heap_bytes},
        options={"batch_rows": batch_rows},
        server={"settings": {"block_size": block_size}},
    )


def test_batches_are_cut_by_rows_per_page_over_the_heap_size():
    batches = copy_batches(_ctx(10000.0, 100, 100 * 8192, 1000))
    assert (batches.pages, batches.total_pages, batches.batches) == (10, 100, 10)
    assert batches.ranges()[0] == (0, 10) and batches.ranges()[-1] == (90, 100)


def test_the_last_batch_is_short_and_a_resumed_copy_counts_what_is_left():
    batches = copy_batches(_ctx(10000.0, 100, 0, 1000), total_pages=105, first_page=40)
    assert batches.batches == 7
    assert batches.ranges() == [(40, 50), (50, 60), (60, 70), (70, 80), (80, 90), (90, 100), (100, 105)]
    assert CopyBatches(pages=10, first_page=105, total_pages=105).batches == 0


@pytest.mark.parametrize("reltuples, relpages", [(-1.0, 0), (0.0, 0), (None, None)])
def test_a_table_never_analyzed_copies_batch_rows_pages_at_a_time(reltuples, relpages):
    batches = copy_batches(_ctx(reltuples, relpages, 50 * 8192, 20))
    assert (batches.pages, batches.total_pages, batches.batches) == (20, 50, 3)


def test_rowcount_of_renders_a_placeholder_until_the_step_ran():
    step = Step("INSERT ...", "batch")
    count = RowcountOf(step, "/* rows */ 0")
    assert count.as_string(None) == "/* rows */ 0"
    step.rowcount = 1234
    assert count.as_string(None) == "1234"
    step.rowcount = -1  # a statement without a row count
    assert count.as_string(None) == "0"


def test_step_refuses_an_unknown_isolation_level():
    with pytest.raises(ValueError, match="REPEATABLE READ"):
        Step("SELECT 1", "x", isolation="REPEATABLE READS")


def _row(**values):
    row = {
        "schema_name": "s",
        "table_name": "fait",
        "mode": "online",
        "phase": "copy",
        "total_pages": 200,
        "next_page": 50,
        "rows_copied": 5000,
        "rows_total": 20000,
        "progress_seconds": 10.0,
        "started_at": "2026-01-01 00:00:00+00",
        "updated_at": "2026-01-01 00:00:10+00",
        "age_seconds": 12,
        "idle_seconds": 2,
    }
    row.update(values)
    return row


def test_progress_of_a_copy_in_flight():
    shown = describe(_row())
    assert shown["table"] == "s.fait" and shown["phase"] == "copy"
    assert shown["copy_percent"] == 25.0 and shown["rows_total"] == 20000
    assert shown["rows_per_second"] == 500 and shown["eta_seconds"] == 30
    assert shown["age_seconds"] == 12 and shown["started_at"].startswith("2026")


def test_progress_before_the_first_batch_and_after_the_copy():
    before = copy_progress(_row(next_page=0, rows_copied=0))
    assert before["copy_percent"] == 0.0 and before["rows_per_second"] is None and before["eta_seconds"] is None
    after = copy_progress(_row(phase="build", next_page=200, rows_copied=20010))
    assert after["copy_percent"] == 100.0 and after["eta_seconds"] is None and after["rows_per_second"] is None


def test_progress_of_an_older_state_row_extrapolates_the_total():
    assert copy_progress(_row(rows_total=None))["rows_total"] == 20000


def test_offline_and_attach_show_no_copy_progress():
    shown = copy_progress(_row(mode="offline", phase="post", next_page=0, rows_copied=0))
    assert shown["copy_percent"] is None and shown["rows_total"] == 20000 and shown["eta_seconds"] is None


def test_a_resumed_copy_is_measured_from_its_own_start():
    # 50 pages and 5000 rows copied before the kill; this run copied 50 pages, 5000 rows in 10 s
    shown = copy_progress(_row(next_page=100, rows_copied=10000, since_page=50, since_rows=5000))
    assert shown["rows_per_second"] == 500 and shown["eta_seconds"] == 20 and shown["copy_percent"] == 50.0
    # resumed, no batch committed yet: no rate
    assert copy_progress(_row(since_page=50, since_rows=5000, progress_seconds=0.0))["rows_per_second"] is None
