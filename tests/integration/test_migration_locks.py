"""Deadlocks against a real server: the Executor names one as such, the migration's later locks never wait into one
(nor longer than half of deadlock_timeout), and a writer taking the tables in the opposite order is never the one
PostgreSQL ends."""

import threading
import time

import psycopg2
import pytest
from psycopg2 import sql

from ansible_collections.sigeti.dwh.plugins.module_utils.core.errors import LockNotGranted
from ansible_collections.sigeti.dwh.plugins.module_utils.plan.executor import Executor
from ansible_collections.sigeti.dwh.plugins.module_utils.plan.locks import Lock, lock_steps
from ansible_collections.sigeti.dwh.plugins.module_utils.plan.steps import Step
from tests.support.migration_driver import migrate
from tests.support.pgbench import Pgbench


def _session(pg_server, db, lock_timeout="5s"):
    conn = pg_server.connect(db, autocommit=False)
    with conn.cursor() as cur:
        cur.execute("SET lock_timeout = %s", (lock_timeout,))
    conn.commit()
    return conn


def _pid(conn):
    with conn.cursor() as cur:
        cur.execute("SELECT pg_backend_pid()")
        return cur.fetchone()[0]


def _wait_until(conn, query, params=(), timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with conn.cursor() as cur:
            cur.execute(query, params)
            if cur.fetchone()[0]:
                return
        time.sleep(0.02)
    raise AssertionError("never true: %s" % query)


WAITING = "SELECT count(*) > 0 FROM pg_locks WHERE pid = %s AND NOT granted"


def test_a_deadlock_is_reported_as_one_naming_both_sessions_and_their_locks(pg_server, db, conn):
    with conn.cursor() as cur:
        cur.execute("CREATE TABLE a (x int); CREATE TABLE b (x int)")
    work, other = _session(pg_server, db), _session(pg_server, db)
    with other.cursor() as cur:
        cur.execute("INSERT INTO b VALUES (1)")  # holds ROW EXCLUSIVE on b
    other_pid, work_pid = _pid(other), _pid(work)

    def close_the_cycle():
        # once this run waits for b (holding a), the other session asks for a: this run waited first, so its
        # deadlock check runs first and PostgreSQL ends this run's transaction, not the other's
        _wait_until(conn, WAITING, (work_pid,))
        time.sleep(0.3)
        with other.cursor() as cur:
            cur.execute("INSERT INTO a VALUES (1)")
        other.commit()

    thread = threading.Thread(target=close_the_cycle)
    thread.start()
    steps = [
        Step(sql.SQL("LOCK TABLE a IN ACCESS EXCLUSIVE MODE"), "r", targets=[("public", "a")], group="g"),
        Step(sql.SQL("LOCK TABLE b IN ACCESS EXCLUSIVE MODE"), "r", targets=[("public", "b")], group="g"),
    ]
    with pytest.raises(LockNotGranted) as raised:
        Executor(work, retries=0).run(steps)
    thread.join(10)
    msg = raised.value.msg
    assert "deadlock (SQLSTATE 40P01)" in msg and "a deadlock is not a long wait" in msg, msg
    assert "this run (pid %d) waited for AccessExclusiveLock on public.b, held by pid %d" % (work_pid, other_pid) in msg
    assert "pid %d waited for RowExclusiveLock on public.a, held by this run" % other_pid in msg, msg
    assert "raise lock_timeout" not in msg and raised.value.details["sqlstate"] == "40P01"
    assert raised.value.details["blocking_pids"] == [other_pid]


def test_a_later_lock_does_not_wait_into_a_deadlock(pg_server, db, conn):
    with conn.cursor() as cur:
        cur.execute("CREATE TABLE a (x int); CREATE TABLE b (x int)")
    work, other = _session(pg_server, db), _session(pg_server, db)
    held = Lock("public", "a", "EXCLUSIVE", "first")
    (first,) = lock_steps([held])
    (second,) = lock_steps([Lock("public", "b", "ACCESS EXCLUSIVE", "second")], held=[held])
    with work.cursor() as cur:
        cur.execute(first.render(work))
    with other.cursor() as cur:
        cur.execute("LOCK TABLE b IN ACCESS SHARE MODE")
    other_pid = _pid(other)
    failures = []

    def write_a():
        try:
            with other.cursor() as cur:
                cur.execute("INSERT INTO a VALUES (1)")  # waits for this run's EXCLUSIVE on a
            other.commit()
        except psycopg2.Error as error:
            failures.append(error)

    thread = threading.Thread(target=write_a)
    thread.start()
    _wait_until(conn, WAITING, (other_pid,))
    with pytest.raises(psycopg2.Error) as raised, work.cursor() as cur:
        cur.execute(second.render(work))
    work.rollback()  # the Executor does this: the other session goes on
    thread.join(10)
    assert raised.value.pgcode == "40P01" and "would be a deadlock" in raised.value.diag.message_primary
    assert "blocked by process %d" % other_pid in raised.value.diag.message_detail
    assert failures == [], "the other session is never the one ended"


def test_a_later_lock_waits_at_most_half_of_deadlock_timeout(pg_server, db, conn):
    with conn.cursor() as cur:
        cur.execute("CREATE TABLE a (x int); CREATE TABLE b (x int)")
    holder = _session(pg_server, db)
    with holder.cursor() as cur:
        cur.execute("LOCK TABLE b IN ACCESS SHARE MODE")  # a long reader, waiting for nothing
    work = _session(pg_server, db, lock_timeout="10s")
    steps = lock_steps([Lock("public", "a", "EXCLUSIVE", "first"), Lock("public", "b", "ACCESS EXCLUSIVE", "second")])
    with pytest.raises(LockNotGranted) as raised:
        Executor(work, retries=1, retry_delay=0.01).run(_grouped(steps))
    msg = raised.value.msg
    assert "public.b was not granted ACCESS EXCLUSIVE within 500 ms while this transaction held public.a" in msg
    assert "a longer lock_timeout does not change" in msg and raised.value.details["blocking_pids"] == [_pid(holder)]
    with work.cursor() as cur:
        cur.execute("SHOW lock_timeout")
        assert cur.fetchone()[0] == "10s", "the session's lock_timeout is as it was"
    holder.rollback()


def _grouped(steps):
    """The steps as one transaction (the first lock, then the later one)."""
    for step in steps:
        step.group = "locks"
    return steps


def test_offline_migration_never_ends_a_writer_taking_the_tables_in_the_opposite_order(pg_server, db, conn, tmp_path):
    """A writer inserting history, then updating accounts (the reverse of TPC-B and of the migration's first order):
    the migration does not wait into the deadlock; it releases its locks and takes them the other way round, the
    table first, once the writer committed."""
    Pgbench(pg_server, db, str(tmp_path)).init(scale=1).seed_history(2000)
    writer = _session(pg_server, db)
    with writer.cursor() as cur:
        cur.execute("INSERT INTO pgbench_history (tid, bid, aid, delta, mtime) VALUES (1, 1, 1, 5, localtimestamp)")
    failures = []

    def update_accounts_once_locked():
        try:
            _wait_until(
                conn,
                "SELECT count(*) > 0 FROM pg_locks WHERE relation = 'pgbench_accounts'::regclass AND granted "
                "AND mode = 'ShareRowExclusiveLock'",
            )
            with writer.cursor() as cur:
                cur.execute("UPDATE pgbench_accounts SET abalance = abalance + 5 WHERE aid = 1")
            writer.commit()
        except psycopg2.Error as error:
            failures.append(error)

    thread = threading.Thread(target=update_accounts_once_locked)
    thread.start()
    work = _session(pg_server, db, lock_timeout="5s")
    result = migrate(work, "public.pgbench_history", "mtime", mode="offline", layout=_monthly(conn), retries=3)
    thread.join(30)
    assert failures == [], "the writer is never the one PostgreSQL ends"
    assert result["swap_attempts"] <= 2, result["swap_attempts"]
    with conn.cursor() as cur:
        cur.execute("SELECT relkind FROM pg_class WHERE oid = 'pgbench_history'::regclass")
        assert cur.fetchone()[0] == "p"
        cur.execute("SELECT count(*), sum(delta) FROM pgbench_history")
        assert cur.fetchone() == (2001, 5)


def _monthly(conn):
    """Monthly partitions of pgbench_history's mtime over the seeded 24 months and the next two, plus a default."""
    with conn.cursor() as cur:
        cur.execute(
            "SELECT g::timestamp, (g + interval '1 month')::timestamp, to_char(g, 'YYYYMM') FROM generate_series("
            "date_trunc('month', localtimestamp) - interval '23 months', date_trunc('month', localtimestamp) "
            "+ interval '2 months', interval '1 month') g"
        )
        rows = cur.fetchall()
    layout = [{"name": "pgbench_history_%s" % label, "low": low, "high": high} for low, high, label in rows]
    return layout + [{"name": "pgbench_history_default", "default": True}]
