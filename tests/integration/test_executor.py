"""The plan executor against a real server: transactions, autocommit steps, lock timeouts and retries."""

import threading

import psycopg2
import pytest
from psycopg2 import sql

from ansible_collections.sigeti.dwh.plugins.module_utils.core.errors import DwhError, LockNotGranted
from ansible_collections.sigeti.dwh.plugins.module_utils.plan.executor import Executor
from ansible_collections.sigeti.dwh.plugins.module_utils.plan.steps import (
    ACCESS_EXCLUSIVE,
    Batches,
    Plan,
    ResultOf,
    Step,
)


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


def _marking_batches(size, what="marking t"):
    """Mark the rows of t by id in batches of ``size``: each batch reads its upper id, then updates (lower, upper]."""

    def batch(lower):
        low = sql.SQL("") if lower is None else sql.SQL(" WHERE id > {}").format(sql.Literal(lower))
        bound = Step(
            sql.SQL("SELECT id FROM t{} ORDER BY id OFFSET {} LIMIT 1").format(low, sql.Literal(size - 1)), "bound"
        )

        def update(rows):
            where = [sql.SQL("id > {}").format(sql.Literal(lower))] if lower is not None else []
            if rows:
                where.append(sql.SQL("id <= {}").format(sql.Literal(rows[0][0])))
            return sql.SQL("UPDATE t SET marked = true WHERE {}").format(
                sql.SQL(" AND ").join(where or [sql.SQL("true")])
            )

        return [bound, Step(ResultOf(bound, update, "/* update */"), "mark", targets=[("public", "t")])]

    def next_batch(previous):
        if previous is None:
            return batch(None)
        rows = previous[0].rows
        return batch(rows[0][0]) if rows else None

    template = Step(sql.SQL("UPDATE t SET marked = true WHERE id > :lower AND id <= :upper"), "mark")
    return Batches([template], next_batch, what, "run again to continue.", targets=[("public", "t")])


def test_batches_run_one_transaction_each_until_done_and_render_their_template(pg_server, db, conn):
    with conn.cursor() as cur:
        cur.execute("CREATE TABLE t (id int PRIMARY KEY, marked bool NOT NULL DEFAULT false)")
        cur.execute("INSERT INTO t (id) SELECT g FROM generate_series(1, 25) g")
    work = _conn(pg_server, db)
    batches = _marking_batches(10)
    plan = Plan([batches, Step(sql.SQL("ANALYZE t"), "after")])
    assert plan.queries(work) == ["UPDATE t SET marked = true WHERE id > :lower AND id <= :upper", "ANALYZE t"]
    ran = Executor(work, retries=0).run(plan)
    # three batches (ids 1-10, 11-20, then the rest: no row 10 further), each a bound read and an update
    assert [q.split(" ")[0] for q in ran] == ["SELECT", "UPDATE"] * 3 + ["ANALYZE"]
    assert (
        ran[1] == "UPDATE t SET marked = true WHERE id <= 10" and ran[5] == "UPDATE t SET marked = true WHERE id > 20"
    )
    assert batches.batches == 3 and batches.rows == 25
    with conn.cursor() as cur:
        cur.execute("SELECT count(*) FILTER (WHERE marked), count(*) FROM t")
        assert cur.fetchone() == (25, 25)


def test_batches_interrupted_say_what_committed_and_keep_it(pg_server, db, conn):
    with conn.cursor() as cur:
        cur.execute("CREATE TABLE t (id int PRIMARY KEY, marked bool NOT NULL DEFAULT false)")
        cur.execute("INSERT INTO t (id) SELECT g FROM generate_series(1, 25) g")
        # the third batch fails: a row it marks is refused by a trigger
        cur.execute(
            "CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
            "IF NEW.id = 23 THEN RAISE EXCEPTION 'row 23 refused'; END IF; RETURN NEW; END $$"
        )
        cur.execute("CREATE TRIGGER refuse BEFORE UPDATE ON t FOR EACH ROW EXECUTE FUNCTION refuse()")
    work = _conn(pg_server, db)
    batches = _marking_batches(10, what="marking public.t")
    with pytest.raises(DwhError) as raised:
        Executor(work, retries=0).run(Plan([batches]))
    message = raised.value.msg
    assert message.startswith("marking public.t was interrupted: row 23 refused")
    assert "2 batch(es) of marking public.t were committed (20 row(s)) and stay done; run again to continue." in message
    assert raised.value.details == {"batches_committed": 2, "rows_rewritten": 20}
    with conn.cursor() as cur:
        cur.execute("SELECT count(*) FILTER (WHERE marked) FROM t")
        assert cur.fetchone()[0] == 20
