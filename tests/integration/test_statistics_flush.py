"""What a run wrote counts at once in the server's statistics (PostgreSQL 15+ keeps a session's counters for
itself up to a second after a commit, longer on a busy server): an ANALYZE or the next module's vacuum decision
that ran before they landed left "modified since analyze" rows, and the second run analyzed again."""

from psycopg2 import sql

from ansible_collections.sigeti.dwh.plugins.module_utils.plan.executor import Executor
from ansible_collections.sigeti.dwh.plugins.module_utils.plan.steps import Plan, Step


def _inserted(conn, table):
    conn.rollback()  # a fresh transaction: statistics are read once per transaction
    with conn.cursor() as cur:
        cur.execute("SELECT n_tup_ins, n_mod_since_analyze FROM pg_stat_user_tables WHERE relname = %s", (table,))
        row = cur.fetchone()
    conn.rollback()
    return row


def test_a_run_publishes_what_it_wrote_before_it_returns(pg_server, db, conn):
    with conn.cursor() as cur:
        cur.execute("CREATE TABLE counted (x int)")
    work = pg_server.connect(db, autocommit=False)
    try:
        # a first write, flushed when the session goes idle: the next one falls inside the server's 1 s interval
        with work.cursor() as cur:
            cur.execute("INSERT INTO counted SELECT generate_series(1, 10)")
        work.commit()
        Executor(work).run(Plan([Step(sql.SQL("INSERT INTO counted SELECT generate_series(1, 990)"), "write")]))
        reader = pg_server.connect(db, autocommit=False)
        try:
            assert _inserted(reader, "counted")[0] == 1000
        finally:
            reader.close()
    finally:
        work.close()


def test_analyze_after_a_write_leaves_nothing_modified_since_analyze(pg_server, db, conn):
    with conn.cursor() as cur:
        cur.execute("CREATE TABLE analyzed (x int)")
    work = pg_server.connect(db, autocommit=False)
    try:
        with work.cursor() as cur:
            cur.execute("INSERT INTO analyzed SELECT generate_series(1, 10)")
        work.commit()
        # the write and the ANALYZE in two transactions of one run, as a migration's copy and its final ANALYZE
        Executor(work).run(
            Plan(
                [
                    Step(sql.SQL("INSERT INTO analyzed SELECT generate_series(1, 990)"), "write", group="copy"),
                    Step(sql.SQL("ANALYZE analyzed"), "statistics", group="stats", fresh_statistics=True),
                ]
            )
        )
        reader = pg_server.connect(db, autocommit=False)
        try:
            assert _inserted(reader, "analyzed") == (1000, 0)
        finally:
            reader.close()
    finally:
        work.close()
