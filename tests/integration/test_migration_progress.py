"""The online copy as check mode shows it and as it runs: one batch statement through the Executor, the batch count
check mode announces, and the progress a running migration shows in ``table_info``."""

import subprocess

import psycopg2
import pytest

from ansible_collections.sigeti.dwh.plugins.module_utils.core.errors import LockNotGranted
from ansible_collections.sigeti.dwh.plugins.module_utils.migration.sql import state_steps
from ansible_collections.sigeti.dwh.plugins.module_utils.plan.executor import Executor
from ansible_collections.sigeti.dwh.plugins.module_utils.plan.steps import Step
from tests.integration.test_migration import NOTHING_LEFT, _one, checksum, leftovers, make_fact
from tests.integration.test_migration_resume import _driver
from tests.support.migration_driver import migrate
from tests.support.modules import run_module


def _phase(plan, name):
    return next(p for p in plan["phases"] if p["phase"] == name)


def test_check_mode_shows_the_batch_statement_and_count_the_run_executes(conn):
    make_fact(conn, rows=3000, extra=False)
    plan = migrate(conn, "s.fait", "date_key", check_mode=True, extend_primary_key=True, batch_rows=400)
    copy = _phase(plan, "copy")
    batches = copy["batches"]
    assert batches["batches"] > 1 and batches["batches"] == plan["copy"]["batches_estimate"]
    assert batches["batches"] == -(-batches["total_pages"] // batches["pages_per_batch"])
    start, first, progress = (step["sql"] for step in copy["steps"][:3])
    assert "copy_since" in start, "the run notes where its copy starts, for the rate"
    assert first.startswith('INSERT INTO "s"."fait_sgt_new"') and "ctid >= '(0,0)'::tid" in first, first
    assert "ctid < '(%d,0)'::tid" % batches["pages_per_batch"] in first
    assert '"rows_copied" = rows_copied + /* rows the batch inserted */ 0' in progress, progress
    assert '"next_page" = %d' % batches["pages_per_batch"] in progress
    assert "%d batch(es)" % batches["batches"] in copy["description"]

    result = migrate(conn, "s.fait", "date_key", extend_primary_key=True, batch_rows=400)
    assert result["batches"] == batches["batches"], "the run executes the batches check mode announced"
    assert first in result["queries"], "the first batch runs as check mode showed it"
    # the progress of the first batch carries the rows that batch inserted, in its transaction
    first_progress = result["queries"][result["queries"].index(first) + 1]
    assert '"rows_copied" = rows_copied + ' in first_progress and "/*" not in first_progress
    assert int(first_progress.split("rows_copied + ")[1].split(",")[0].split()[0]) > 0
    assert result["rows_copied"] == 3000
    assert checksum(conn, "s.fait") == checksum(conn, "s.fait_unpartitioned")
    assert leftovers(conn) == NOTHING_LEFT


def _table_info(pg_server, db):
    args = pg_server.params(db)
    args.update(tables=["s.fait"])
    return run_module("table_info", args)["tables"][0]["migration"]


def test_a_running_migration_paused_between_batches_shows_its_progress(pg_server, db, conn):
    make_fact(conn, rows=3000, extra=False)
    # the driver stops before each batch until it reads a line: after three lines, three batches committed
    proc = _driver(pg_server, db, "--hold-at", "copy", stdin=subprocess.PIPE)
    try:
        for _batch in range(4):
            line = proc.stdout.readline()
            assert line.startswith("HOLD "), (line, proc.stderr.read() if proc.poll() is not None else "")
            if _batch < 3:
                proc.stdin.write("go\n")
                proc.stdin.flush()
        migration = _table_info(pg_server, db)
        assert proc.poll() is None, "the migration is alive, between two batches"
        assert migration["phase"] == "copy" and migration["mode"] == "online"
        state = _one(conn, "SELECT next_page, total_pages, rows_copied FROM sigeti_dwh.migration_state")
        assert migration["rows_copied"] == state[2] > 0
        assert 2900 <= migration["rows_total"] <= 3100, migration
        assert (
            migration["copy_percent"] == round(100.0 * state[0] / state[1], 1) and 0 < migration["copy_percent"] < 100
        )
        assert migration["rows_per_second"] > 0 and migration["eta_seconds"] >= 0
        assert migration["started_at"] and migration["age_seconds"] >= 0
        out, err = proc.communicate("go\n" * 200, timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, (out, err)
    assert _table_info(pg_server, db) is None
    assert leftovers(conn) == NOTHING_LEFT


def test_a_killed_migration_after_its_copy_shows_the_copy_done(pg_server, db, conn):
    make_fact(conn, rows=2000, extra=False)
    proc = _driver(pg_server, db, "--die-at", "build")
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == -9, (out, err)
    migration = _table_info(pg_server, db)
    assert migration["phase"] == "build" and migration["copy_percent"] == 100.0
    assert migration["rows_copied"] == 2000 and migration["eta_seconds"] is None


def test_attach_mode_stores_the_result_it_returns(pg_server, db, conn):
    """The state row stored by the swap says what the live result says (no renamed source in attach mode), and a
    run resuming after the swap returns the same."""
    make_fact(conn, rows=1000, extra=False)
    seen = []
    other = psycopg2.connect(pg_server.dsn(db))
    other.autocommit = True

    def progress(event):
        if event["phase"] == "post" and not seen:
            seen.append(_one(other, "SELECT result FROM sigeti_dwh.migration_state")[0])

    try:
        result = migrate(conn, "s.fait", "date_key", mode="attach", extend_primary_key=True, progress=progress)
    finally:
        other.close()
    assert result["renamed_source"] is None
    assert seen == [
        {
            "renamed_source": None,
            "attached_partition": "s.fait_unpartitioned",
            "attached_range": result["attached_range"],
            "created": result["created"],  # what a run resuming after the swap reports too
        }
    ]


def test_attach_mode_resumed_after_its_swap_returns_what_the_swap_said(pg_server, db, conn):
    make_fact(conn, rows=1000, extra=False)
    proc = _driver(pg_server, db, "--mode", "attach", "--die-at", "post")
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == -9, (out, err)
    assert _one(conn, "SELECT phase FROM sigeti_dwh.migration_state") == ("post",)
    result = migrate(conn, "s.fait", "date_key", mode="attach", extend_primary_key=True)
    assert result["resumed_from"] == "post"
    assert result["renamed_source"] is None
    assert result["attached_partition"] == "s.fait_unpartitioned"
    assert "fait_default" in result["created"] and result["kept_original"] is None and result["rows_moved"] == 0
    assert leftovers(conn) == NOTHING_LEFT


def test_a_batch_waits_under_lock_timeout_names_its_blocker_and_keeps_the_progress(pg_server, db, conn):
    """Each batch goes through the Executor: a lock held on the shadow makes it retry, then give up naming the
    session; the batches committed before stay counted and the next run resumes from them."""
    make_fact(conn, rows=3000, extra=False)
    with conn.cursor() as cur:
        cur.execute("SET lock_timeout = '100ms'")
    other = psycopg2.connect(pg_server.dsn(db))
    events = []

    def progress(event):
        if event["phase"] == "copy":
            events.append(event)
            if len(events) == 3:  # two batches committed: a session takes the shadow
                with other.cursor() as cur:
                    cur.execute("LOCK TABLE s.fait_sgt_new IN ACCESS EXCLUSIVE MODE")
                    cur.execute("SELECT pg_backend_pid()")
                    events.append(cur.fetchone()[0])

    try:
        with pytest.raises(LockNotGranted) as raised:
            migrate(
                conn,
                "s.fait",
                "date_key",
                extend_primary_key=True,
                batch_rows=200,
                retries=1,
                retry_delay=0.01,
                progress=progress,
            )
        blocker = events[-1]
        assert "pid %d" % blocker in str(raised.value) and raised.value.details["blocking_pids"] == [blocker]
        assert "Gave up after 2 attempts" in str(raised.value)
    finally:
        other.rollback()
        other.close()
    state = _one(conn, "SELECT phase, next_page, rows_copied FROM sigeti_dwh.migration_state")
    assert state[0] == "copy" and state[1] == events[2]["page"] and state[2] == events[2]["rows_copied"] > 0
    result = migrate(conn, "s.fait", "date_key", extend_primary_key=True, batch_rows=200)
    assert result["resumed_from"] == "copy" and result["rows_copied"] == 3000
    assert checksum(conn, "s.fait") == checksum(conn, "s.fait_unpartitioned")
    assert leftovers(conn) == NOTHING_LEFT


def test_executor_runs_a_unit_at_its_isolation_level_and_keeps_what_steps_return(conn):
    conn.autocommit = False
    with conn.cursor() as cur:
        cur.execute("SELECT 1")  # a read transaction left open by the caller
    show = Step("SHOW transaction_isolation", "level", isolation="REPEATABLE READ", group="g")
    count = Step("SELECT count(*) FROM generate_series(1, 5)", "rows", group="g")
    Executor(conn).run([show, count])
    assert show.rows == [("repeatable read",)] and count.rows == [(5,)]
    plain = Step("SHOW transaction_isolation", "default level")
    Executor(conn).run([plain])
    assert plain.rows == [("read committed",)]


def test_a_state_row_of_an_older_version_without_rows_total_is_reported(pg_server, db, conn):
    with conn.cursor() as cur:
        cur.execute("CREATE SCHEMA s")
        cur.execute("CREATE TABLE s.fait (id int)")
        for step in state_steps():  # the state table as an older version created it: no rows_total
            cur.execute(step.render(conn))
        assert _one(
            conn,
            "SELECT count(*) FROM pg_attribute WHERE attrelid = %s::regclass AND attname = %s",
            ("sigeti_dwh.migration_state", "rows_total"),
        ) == (0,)
        cur.execute(
            "INSERT INTO sigeti_dwh.migration_state (schema_name, table_name, source_oid, mode, phase, total_pages, "
            "next_page, rows_copied) VALUES ('s', 'fait', 's.fait'::regclass, 'online', 'copy', 10, 5, 500)"
        )
    migration = _table_info(pg_server, db)
    assert migration["rows_total"] == 1000 and migration["copy_percent"] == 50.0 and migration["rows_copied"] == 500
