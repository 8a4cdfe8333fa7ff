"""The plan executor against a real server: transactions, autocommit steps, lock timeouts and retries."""

import threading

import psycopg2
import pytest
from psycopg2 import sql

from ansible_collections.sigeti.dwh.plugins.module_utils.core.errors import LockNotGranted
from ansible_collections.sigeti.dwh.plugins.module_utils.plan.steps import ACCESS_EXCLUSIVE, Executor, Plan, Step


def _conn(pg_server, db, lock_timeout="200ms"):
    conn = pg_server.connect(db, autocommit=False)
    with conn.cursor() as cur:
        cur.execute("SET lock_timeout = %s", (lock_timeout,))
    conn.commit()
    return conn


def test_group_is_all_or_nothing(pg_server, db, conn):
    with conn.cursor() as cur:
        cur.execute("CREATE TABLE t (x int)")
    work = _conn(pg_server, db)
    plan = Plan(
        [
            Step(sql.SQL("INSERT INTO t VALUES (1)"), "r", group="g"),
            Step(sql.SQL("INSERT INTO t VALUES ('not a number')"), "r", group="g"),
        ]
    )
    with pytest.raises(psycopg2.Error):
        Executor(work, retries=0).run(plan)
    with conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM t")
        assert cur.fetchone()[0] == 0


def test_vacuum_runs_in_autocommit(pg_server, db, conn):
    with conn.cursor() as cur:
        cur.execute("CREATE TABLE t (x int)")
    work = _conn(pg_server, db)
    ran = Executor(work).run(
        Plan([Step(sql.SQL("VACUUM (ANALYZE) {}").format(sql.Identifier("public", "t")), "r", transactional=False)])
    )
    assert ran == ['VACUUM (ANALYZE) "public"."t"']


def test_lock_timeout_retries_then_names_the_blocker(pg_server, db, conn):
    with conn.cursor() as cur:
        cur.execute("CREATE TABLE t (x int)")
    blocker = pg_server.connect(db, autocommit=False)
    with blocker.cursor() as cur:
        cur.execute("LOCK TABLE t IN ACCESS SHARE MODE")
        cur.execute("SELECT pg_backend_pid()")
        blocker_pid = cur.fetchone()[0]
    slept = []
    work = _conn(pg_server, db)
    step = Step(sql.SQL("ALTER TABLE t ADD COLUMN y int"), "r", lock=ACCESS_EXCLUSIVE, targets=[("public", "t")])
    with pytest.raises(LockNotGranted) as error:
        Executor(work, retries=2, retry_delay=0.01, sleep=slept.append).run(Plan([step]))
    assert slept == [0.01, 0.02]
    assert "pid %d" % blocker_pid in error.value.msg and "Gave up after 3 attempts" in error.value.msg
    assert error.value.details["blocking_pids"] == [blocker_pid]
    blocker.rollback()
    with conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM pg_attribute WHERE attrelid = 't'::regclass AND attname = 'y'")
        assert cur.fetchone()[0] == 0


def test_retry_succeeds_once_the_lock_is_released(pg_server, db, conn):
    with conn.cursor() as cur:
        cur.execute("CREATE TABLE t (x int)")
    blocker = pg_server.connect(db, autocommit=False)
    with blocker.cursor() as cur:
        cur.execute("LOCK TABLE t IN ACCESS SHARE MODE")
    work = _conn(pg_server, db)

    def release(_delay):
        threading.Thread(target=blocker.rollback).run()

    executor = Executor(work, retries=2, retry_delay=0.01, sleep=release)
    executor.run(Plan([Step(sql.SQL("ALTER TABLE t ADD COLUMN y int"), "r", targets=[("public", "t")])]))
    assert executor.attempts == 2


def test_a_step_hook_runs_right_before_its_step_and_its_error_ends_the_unit(pg_server, db, conn):
    with conn.cursor() as cur:
        cur.execute("CREATE TABLE hooked (x int)")
    work = _conn(pg_server, db)
    first = Step(sql.SQL("INSERT INTO hooked VALUES (1)"), "r", group="g")
    second = Step(sql.SQL("INSERT INTO hooked VALUES (2)"), "r", group="g")
    seen = []
    second.before = lambda: seen.append((first.rowcount, second.rowcount))
    Executor(work).run(Plan([first, second]))
    assert seen == [(1, None)], "called once, after the first step ran and before the second"

    def refuse():
        raise RuntimeError("the read beside failed")

    third = Step(sql.SQL("INSERT INTO hooked VALUES (3)"), "r", group="h")
    fourth = Step(sql.SQL("INSERT INTO hooked VALUES (4)"), "r", group="h")
    fourth.before = refuse
    with pytest.raises(RuntimeError):
        Executor(work).run(Plan([third, fourth]))
    work.rollback()  # the caller (the migration runner) rolls back
    with conn.cursor() as cur:
        cur.execute("SELECT array_agg(x ORDER BY x) FROM hooked")
        assert cur.fetchone()[0] == [1, 2]
    work.close()
