# Copyright: (c) 2026, SIGETI data platform team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The one executor: runs a plan's steps on one connection with bounded lock waits and retries.

- every statement runs under the session's ``lock_timeout``; a transaction that hits it (or a deadlock) is rolled
  back and retried (``plan.retry.retrying``), then the executor gives up naming who holds the lock, or, for a
  deadlock, the sessions of its cycle;
- autocommit where PostgreSQL demands it (VACUUM, CONCURRENTLY), transactions where it allows them (``transactions``);
- ``Batches`` items run batch after batch, each batch made from what the previous one returned;
- ``Executor.read`` runs a catalog read that must lock under the same policy.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, Callable, Iterable, Mapping, Sequence, TypedDict, TypeVar

from ansible_collections.sigeti.dwh.plugins.module_utils.core.errors import DwhError, LockNotGranted
from ansible_collections.sigeti.dwh.plugins.module_utils.core.identifiers import display_name
from ansible_collections.sigeti.dwh.plugins.module_utils.plan.retry import (
    describe_deadlock,
    is_lock_error,
    own_message,
    parse_deadlock,
    retrying,
)
from ansible_collections.sigeti.dwh.plugins.module_utils.plan.steps import (
    Batches,
    Item,
    Plan,
    Step,
    Target,
    transactions,
)

if TYPE_CHECKING:  # names used in annotations only
    from ansible_collections.sigeti.dwh.plugins.module_utils.session.connection import Connection

try:
    import psycopg2
    import psycopg2.extensions
except ImportError:  # reported by the connection layer
    psycopg2 = None

T = TypeVar("T")


BLOCKERS_QUERY = """
SELECT DISTINCT l.pid, a.usename::text, a.state, left(a.query, 200) AS query,
       now() - a.xact_start AS xact_age, l.mode
FROM pg_locks l
JOIN pg_stat_activity a ON a.pid = l.pid
WHERE l.granted AND l.pid <> pg_backend_pid() AND l.locktype = 'relation'
  AND l.relation IN (SELECT c.oid FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                     WHERE (n.nspname, c.relname) IN (SELECT * FROM unnest(%s::text[], %s::text[])))
ORDER BY l.pid
"""


# CREATE INDEX CONCURRENTLY waits for every transaction of the database holding a snapshot older than its build,
# whatever table it reads: such a session holds no lock on our tables, so BLOCKERS_QUERY cannot name it.
SNAPSHOT_HOLDERS_QUERY = """
SELECT pid, usename::text, state, left(query, 200) AS query, now() - xact_start AS xact_age,
       'a snapshot (xmin ' || backend_xmin || ')' AS mode
FROM pg_stat_activity
WHERE datname = current_database() AND pid <> pg_backend_pid() AND backend_type = 'client backend'
  AND (backend_xmin IS NOT NULL OR backend_xid IS NOT NULL)
ORDER BY xact_start, pid
"""


class Blocker(TypedDict):
    """A session holding what we waited for, as ``Executor.blockers`` / ``snapshot_holders`` describe it.

    A dict and not a record: it goes into module results and messages as it is.
    """

    pid: int
    user: str
    state: str
    query: str
    xact_age: str
    mode: str


def publish_statistics(conn: Connection) -> None:
    """Publish this session's pending table counters to the server's statistics now (PostgreSQL 15 and later).

    A session keeps its insert/update/delete counts for itself until it is idle and a second has passed since its
    last flush (longer on a busy server). An ANALYZE run before they land is followed by counts "modified since
    analyze" that it already saw, and the next run analyzes again: no second run would converge. Best effort: the
    function is PostgreSQL's own (``pg_stat_force_next_flush``), and without the right to call it the counters
    land on the server's schedule. Only between transactions (it flushes when the session goes idle).
    """
    if getattr(conn, "server_version", 0) < 150000:
        return  # PostgreSQL 14's collector is asynchronous anyway (vacuum_run waits for it)
    if conn.get_transaction_status() != psycopg2.extensions.TRANSACTION_STATUS_IDLE:
        return
    was = conn.autocommit
    try:
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute("SELECT pg_stat_force_next_flush()")
    except psycopg2.Error:
        pass  # no EXECUTE right on it: the counters land a little later, as they always did
    finally:
        conn.autocommit = was


class Executor:
    """Runs plans on one connection with bounded lock waits and retries."""

    def __init__(
        self, conn: Connection, retries: int = 3, retry_delay: float = 2.0, sleep: Callable[[float], Any] = time.sleep
    ) -> None:
        self.conn = conn
        self.retries = max(0, int(retries))
        self.retry_delay = max(0.0, float(retry_delay))
        self.sleep = sleep
        self.executed: list[str] = []
        self.completed: list[
            Step
        ] = []  # the steps whose transaction committed (or autocommit statement ended), in order
        self.failed: list[Step] | None = None  # the unit that raised, if any
        self.attempts = 0

    @classmethod
    def from_options(cls, conn: Connection, params: Mapping[str, Any]) -> Executor:
        """Return an executor with the module options' ``lock_retries`` and ``lock_retry_delay``."""
        return cls(conn, params.get("lock_retries", 3), params.get("lock_retry_delay", 2.0))

    def run(self, plan: Plan | Iterable[Item]) -> list[str]:
        """Execute every step of ``plan`` (and its batched work, batch after batch); return the statements that ran,
        in order."""
        items = plan.steps if isinstance(plan, Plan) else list(plan)
        ran = []
        for run in _runs(items):
            if isinstance(run, Batches):
                ran.extend(self._run_batches(run))
                continue
            for unit in transactions(run):
                try:
                    ran.extend(self._run_unit(unit))
                except Exception:
                    self.failed = unit
                    raise
        if any(isinstance(item, Batches) or item.transactional for item in items):
            # what this run wrote must count in the next module's decisions (a vacuum right after a migration)
            publish_statistics(self.conn)
        return ran

    def _run_batches(self, work: Batches) -> list[str]:
        """Each batch of ``work`` as one unit until ``next_batch`` says it is done; an interruption says what
        committed (the batches before it stay done)."""
        ran = []
        previous = None
        while True:
            steps = work.next_batch(previous)
            if not steps:
                return ran
            try:
                ran.extend(self._run_unit(steps))
            except DwhError as error:
                self.failed = steps
                raise type(error)(error.msg + " " + work.progress(), **error.details) from None
            except Exception as error:  # a killed connection, a statement_timeout, a failing trigger...
                self.failed = steps
                self._rollback()
                raise DwhError(
                    "%s was interrupted: %s. %s" % (work.what, str(error).strip(), work.progress()),
                    batches_committed=work.batches,
                    rows_rewritten=work.rows,
                ) from None
            work.batches += 1
            work.rows += max(steps[-1].rowcount or 0, 0)
            previous = steps

    def read(self, fetch: Callable[[], T], targets: Sequence[Target]) -> T:
        """Run a catalog read ``fetch()`` under the same lock policy as the plan steps; return what it returned.

        A read that must lock (counting a default partition takes ACCESS SHARE) is rolled back and retried on
        lock_timeout, then fails naming the sessions holding ``targets`` (a list of ``(schema, relation)``).
        """
        tries = []

        def attempt(number):
            tries.append(number)
            try:
                return fetch()
            except Exception:
                self._rollback()
                raise

        try:
            return retrying(attempt, is_lock_error, self.retries, self.retry_delay, self.sleep)
        except Exception as error:
            if not is_lock_error(error):
                raise
            raise self._give_up_read(targets, tries[-1]) from None

    @property
    def committed_anything(self) -> bool:
        """Return True when the database changed: a unit committed, or an autocommit unit failed part way (a cancelled
        CREATE INDEX CONCURRENTLY leaves an INVALID index, a cancelled DETACH ... CONCURRENTLY a pending detach)."""
        return bool(self.completed) or bool(self.failed and not self.failed[0].transactional)

    def _run_unit(self, unit):
        tries = []

        def attempt(number):
            tries.append(number)
            self.attempts += 1
            try:
                return self._execute(unit)
            except psycopg2.Error:
                self._rollback()
                raise

        try:
            return retrying(attempt, is_lock_error, self.retries, self.retry_delay, self.sleep)
        except psycopg2.Error as error:
            if not is_lock_error(error):
                raise
            raise self._give_up(unit, error, tries[-1]) from None

    def _give_up_read(self, targets, attempts):
        blockers = self.blockers(targets)
        return LockNotGranted(
            "Gave up after %d attempts: could not read %s within lock_timeout. Blocked by %s. Nothing was changed. "
            "What to do: wait for or end that session (SELECT pg_terminate_backend(pid)), or raise lock_timeout / "
            "lock_retries." % (attempts, ", ".join(display_name(*t) for t in targets), describe_blockers(blockers)),
            blocking_pids=[b["pid"] for b in blockers],
        )

    def _execute(self, unit):
        if any(step.fresh_statistics for step in unit):
            publish_statistics(self.conn)
        autocommit = not unit[0].transactional
        if autocommit:
            if self.conn.get_transaction_status() != psycopg2.extensions.TRANSACTION_STATUS_IDLE:
                self.conn.commit()  # close the caller's read transaction: VACUUM refuses to run inside one
            self.conn.autocommit = True
        elif unit[0].isolation and self.conn.get_transaction_status() != psycopg2.extensions.TRANSACTION_STATUS_IDLE:
            self.conn.commit()  # SET TRANSACTION must come first: close the caller's read transaction
        texts = []
        try:
            with self.conn.cursor() as cur:
                if unit[0].isolation and not autocommit:
                    cur.execute("SET TRANSACTION ISOLATION LEVEL %s" % unit[0].isolation)
                for step in unit:
                    if step.before is not None:
                        step.before()
                    text = step.render(self.conn)
                    cur.execute(text)
                    step.rowcount = cur.rowcount
                    step.rows = cur.fetchall() if cur.description else None
                    texts.append(text)
            if not autocommit:
                self.conn.commit()
        finally:
            if autocommit:
                self.conn.autocommit = False
        self.executed.extend(texts)
        self.completed.extend(unit)
        return texts

    def _rollback(self):
        try:
            if not self.conn.autocommit:
                self.conn.rollback()
        except psycopg2.Error:
            pass

    def _give_up(self, unit, error, attempts):
        targets = []
        for step in unit:
            for target in step.targets:
                if target not in targets:
                    targets.append(target)
        applied = (
            "Nothing of this step was applied."
            if unit[0].transactional
            else "This step runs outside a transaction and may have stopped part way (a cancelled CREATE INDEX "
            "CONCURRENTLY leaves an INVALID index, a cancelled DETACH ... CONCURRENTLY a pending detach): the next "
            "run drops and rebuilds the index, or finishes the detach."
        )
        if error.pgcode == "40P01":
            return self._give_up_deadlock(unit, error, attempts, applied)
        blockers = self.blockers(targets)
        names = ", ".join(display_name(s, r) for s, r in targets) or "the relations of this step"
        who = describe_blockers(blockers)
        if any(step.snapshot_wait for step in unit):
            holders = self.snapshot_holders()
            snapshots = (
                "transactions holding an older snapshot, which CREATE INDEX CONCURRENTLY waits for whatever table "
                "they read (an open REPEATABLE READ transaction that ran one SELECT is enough): %s"
                % (describe_blockers(holders) if holders else "none is left now")
            )
            who = "%s; and by %s" % (who, snapshots) if blockers else snapshots
            blockers = blockers + [h for h in holders if h["pid"] not in {b["pid"] for b in blockers}]
        own = own_message(error)
        if own:
            # a bounded wait of the collection's own (a lock taken while others are held): its text says why
            msg = "Gave up after %d attempts: %s. Blocked by %s. %s What to do: %s" % (
                attempts,
                own[0],
                who,
                applied,
                own[1] or "wait for or end that session (SELECT pg_terminate_backend(pid)), then run again.",
            )
        else:
            msg = (
                "Gave up after %d attempts: could not lock %s within lock_timeout. Blocked by %s. "
                "%s What to do: wait for or end that session "
                "(SELECT pg_terminate_backend(pid)), or raise lock_timeout / lock_retries."
                % (attempts, names, who, applied)
            )
        return LockNotGranted(
            msg,
            blocking_pids=[b["pid"] for b in blockers],
            failed_sql=unit[0].render(self.conn),
        )

    def _give_up_deadlock(self, unit, error, attempts, applied):
        """PostgreSQL found a deadlock (or the step saw that waiting would be one): name both sessions, what each
        held and waited for, so the order of the other application's locks shows; no lock_timeout helps."""
        own_pid = self.conn.get_backend_pid()
        waits = parse_deadlock(getattr(getattr(error, "diag", None), "message_detail", None) or "")
        names = self._relation_names([w["relation"] for w in waits if w.get("relation")])
        others = sorted(({w["pid"] for w in waits} | {w["blocked_by"] for w in waits}) - {own_pid})
        sessions = self._sessions(others)
        cycle = describe_deadlock(waits, own_pid, names) or ("the server said: %s" % " ".join(str(error).split()))
        own = own_message(error)
        found = (
            "this run did not wait into a deadlock (%s)" % own[0]
            if own
            else "PostgreSQL found a deadlock (SQLSTATE 40P01) and ended this run's transaction"
        )
        others_text = "; ".join(
            "pid %s (user %s, application %s, %s, transaction open %s): %s"
            % (b["pid"], b["user"], b["mode"], b["state"], b["xact_age"], b["query"])
            for b in sessions
        )
        msg = (
            "Gave up after %d attempts: %s (the last time: %s). %s%s What to do: a deadlock is not a long wait, "
            "raising lock_timeout or lock_retries cannot help; let that session's transaction end first (run again "
            "when its application is quiet, or end it: SELECT pg_terminate_backend(pid))."
            % (attempts, found, cycle, ("The other session now: %s. " % others_text) if sessions else "", applied)
        )
        return LockNotGranted(
            msg, blocking_pids=others, failed_sql=unit[0].render(self.conn), sqlstate="40P01", deadlock=waits
        )

    def _relation_names(self, oids: Sequence[int]) -> dict[int, str]:
        """``{oid: schema.name}`` of the relations a deadlock report names (those still there)."""
        if not oids:
            return {}
        with self.conn.cursor() as cur:
            cur.execute(
                "SELECT c.oid::bigint, n.nspname::text, c.relname::text FROM pg_class c "
                "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = ANY(%s::oid[])",
                (list(oids),),
            )
            rows = cur.fetchall()
        self._rollback()
        return {int(oid): display_name(schema, name) for oid, schema, name in rows}

    def _sessions(self, pids: Sequence[int]) -> list[Blocker]:
        """The sessions ``pids`` now, like ``blockers`` but ``mode`` holding their application_name (those gone are
        left out)."""
        if not pids:
            return []
        with self.conn.cursor() as cur:
            cur.execute(
                "SELECT pid, usename::text, state, left(query, 200), now() - xact_start, "
                "coalesce(nullif(application_name, ''), 'no application_name') FROM pg_stat_activity "
                "WHERE pid = ANY(%s) ORDER BY pid",
                (list(pids),),
            )
            rows = cur.fetchall()
        self._rollback()
        return [
            {"pid": r[0], "user": r[1], "state": r[2], "query": r[3], "xact_age": str(r[4]), "mode": r[5]} for r in rows
        ]

    def snapshot_holders(self) -> list[Blocker]:
        """Return the sessions of this database holding a snapshot or a transaction id (CREATE INDEX
        CONCURRENTLY waits for them), described like ``blockers``."""
        with self.conn.cursor() as cur:
            cur.execute(SNAPSHOT_HOLDERS_QUERY)
            rows = cur.fetchall()
        self._rollback()
        return [
            {"pid": r[0], "user": r[1], "state": r[2], "query": r[3], "xact_age": str(r[4]), "mode": r[5]} for r in rows
        ]

    def blockers(self, targets: Sequence[Target]) -> list[Blocker]:
        """Return the sessions holding granted locks on ``targets`` (list of (schema, relation))."""
        if not targets:
            return []
        schemas = [t[0] for t in targets]
        names = [t[1] for t in targets]
        with self.conn.cursor() as cur:
            cur.execute(BLOCKERS_QUERY, (schemas, names))
            rows = cur.fetchall()
        self._rollback()
        return [
            {"pid": r[0], "user": r[1], "state": r[2], "query": r[3], "xact_age": str(r[4]), "mode": r[5]} for r in rows
        ]


def describe_blockers(blockers: Sequence[Blocker]) -> str:
    """Return the sessions holding a lock we gave up on, named in one phrase: pid, user, state, lock mode, transaction age, query."""
    if not blockers:
        return "no session holds it any more (it was released after the last attempt)"
    return "; ".join(
        "pid %s (%s, %s, holding %s, transaction open %s): %s"
        % (b["pid"], b["user"], b["state"], b["mode"], b.get("xact_age", "?"), b["query"])
        for b in blockers
    )


def _runs(items: Iterable[Item]) -> list[list[Step] | Batches]:
    """The items cut into runs of plain steps (cut into transactions by ``transactions``) and batched work."""
    runs: list[list[Step] | Batches] = []
    for item in items:
        if isinstance(item, Batches):
            runs.append(item)
        elif runs and isinstance(runs[-1], list):
            runs[-1].append(item)
        else:
            runs.append([item])
    return runs
