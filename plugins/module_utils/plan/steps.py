# Copyright: (c) 2026, SIGETI data platform team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Plans and the one executor that runs them.

A plan is an ordered list of steps computed from catalog facts by a pure planner. The same plan is
rendered in check mode and executed in a real run. ``queries`` is the same in both when the facts read by check mode
are the same (check mode may use estimates when a table is locked: the module then says so in a warning).

Execution rules:
- steps sharing a ``group`` run in one transaction (all or nothing); a step without a group is its own transaction;
- a step with ``transactional=False`` (VACUUM, DETACH ... CONCURRENTLY) runs in autocommit, alone unless the
  next ones are autocommit steps of the same group: those run one after another and are retried together (a
  cancelled ``CREATE INDEX CONCURRENTLY`` leaves an INVALID index that the retry must drop before building again);
- every statement runs under the session's ``lock_timeout``; a transaction that hits it (or a deadlock) is
  rolled back and retried with a growing delay, then the executor gives up naming who holds the lock; a deadlock
  (SQLSTATE 40P01) is reported as one, from PostgreSQL's report: each session, the lock it waited for and on what,
  who held it (no lock_timeout cures it), and a step's own bounded wait (``OWN_PREFIX`` messages) says its own why;
- the first step of a unit may ask for an ``isolation`` level (a verification compares two tables in one
  REPEATABLE READ snapshot); a step's ``rowcount`` and ``rows`` (what it returned) are set once it ran, and a later
  step of the same transaction can embed an earlier one's row count (``RowcountOf``: a copy batch and its progress).
"""

from __future__ import annotations

import re
import time
from typing import TYPE_CHECKING, Any, Callable, Iterable, Sequence, Tuple, TypedDict, TypeVar

from ansible_collections.sigeti.dwh.plugins.module_utils.core.errors import LockNotGranted
from ansible_collections.sigeti.dwh.plugins.module_utils.core.identifiers import display_name

if TYPE_CHECKING:  # names used in annotations only
    from ansible.module_utils.basic import AnsibleModule
    from psycopg2.sql import Composable

    from ansible_collections.sigeti.dwh.plugins.module_utils.session.connection import Connection

try:
    import psycopg2
    import psycopg2.extensions
    from psycopg2 import sql as _sql

    _Composable = _sql.Composable
except ImportError:  # reported by the connection layer
    psycopg2 = None
    _Composable = object

# Lock names, as PostgreSQL's documentation spells them, for the plan output.
ACCESS_SHARE = "ACCESS SHARE"
ROW_EXCLUSIVE = "ROW EXCLUSIVE"
SHARE_UPDATE_EXCLUSIVE = "SHARE UPDATE EXCLUSIVE"
SHARE = "SHARE"
SHARE_ROW_EXCLUSIVE = "SHARE ROW EXCLUSIVE"
ACCESS_EXCLUSIVE = "ACCESS EXCLUSIVE"

_RETRYABLE = ("55P03", "40P01")  # lock_not_available, deadlock_detected
ISOLATION_LEVELS = ("READ COMMITTED", "REPEATABLE READ", "SERIALIZABLE")

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


T = TypeVar("T")
# A relation a step locks or a read waits on: ``(schema, relation)`` (``typing.Tuple``: evaluated on Python 3.8 too).
Target = Tuple[str, str]


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


class Step:
    """One SQL statement of a plan, with why it runs and what it locks.

    ``sql`` is a ``psycopg2.sql.Composable`` (or a constant string without identifiers).
    ``targets`` lists the ``(schema, relation)`` pairs it locks, used to name blockers.
    """

    def __init__(
        self,
        sql: Composable | str,
        reason: str,
        lock: str | None = None,
        targets: Iterable[Target] = (),
        group: str | None = None,
        transactional: bool = True,
        params: Sequence[Any] | dict[str, Any] | None = None,
        effect: tuple[str, str] | None = None,
        snapshot_wait: bool = False,
        isolation: str | None = None,
        fresh_statistics: bool = False,
    ) -> None:
        if isolation is not None and isolation not in ISOLATION_LEVELS:
            raise ValueError("isolation must be one of %s, not %r" % (", ".join(ISOLATION_LEVELS), isolation))
        self.sql = sql
        self.reason = reason
        self.lock = lock
        self.targets = tuple(targets)
        self.group = group
        self.transactional = transactional
        self.params = params
        self.rowcount: int | None = None  # rows the statement touched, once run
        self.rows: list[tuple] | None = None  # rows the statement returned, once run (None: it returns none)
        # what the step achieves, for the module result once it committed: e.g. ("created", "fait_2026")
        self.effect = effect
        # the statement also waits for older snapshots (CREATE INDEX CONCURRENTLY), not only for locks
        self.snapshot_wait = snapshot_wait
        # the isolation level of the transaction this step starts (only read on the first step of a unit)
        self.isolation = isolation
        # the step reads or resets table counters (ANALYZE): this session's pending counters are published first
        self.fresh_statistics = fresh_statistics
        # set by a runner: called by the Executor right before it sends this step (e.g. to start or join a read
        # that a second connection runs meanwhile); never in check mode
        self.before: Callable[[], Any] | None = None

    def render(self, conn: Connection) -> str:
        """Return the statement as the exact text the server receives."""
        if hasattr(self.sql, "as_string"):
            text = self.sql.as_string(conn)
        else:
            text = self.sql
        if self.params is not None:
            with conn.cursor() as cur:
                text = cur.mogrify(text, self.params).decode()
        return text

    def describe(self, conn: Connection) -> dict[str, str | None]:
        """Return a dict for the module result: the SQL, its reason and its lock."""
        return {"sql": self.render(conn), "reason": self.reason, "lock": self.lock}


class RowcountOf(_Composable):
    """The row count of an earlier ``step`` of the same transaction, rendered when the Executor reaches the step
    embedding it (the Executor renders each statement just before sending it).

    Before ``step`` ran (check mode) it renders as ``placeholder``, e.g. ``/* rows the batch inserted */``.
    """

    def __init__(self, step: Step, placeholder: str) -> None:
        super().__init__(step)
        self.step = step
        self.placeholder = placeholder

    def as_string(self, context: Any) -> str:
        if self.step.rowcount is None:
            return self.placeholder
        return str(max(int(self.step.rowcount), 0))


class Plan:
    """An ordered list of steps; an empty plan means the declared state already holds."""

    def __init__(self, steps: Iterable[Step] | None = None) -> None:
        self.steps: list[Step] = list(steps or [])

    def add(self, step: Step) -> Step:
        """Append one step and return it."""
        self.steps.append(step)
        return step

    def extend(self, steps: Iterable[Step]) -> None:
        """Append several steps; return nothing."""
        self.steps.extend(steps)

    def __bool__(self) -> bool:
        return bool(self.steps)

    def __len__(self) -> int:
        return len(self.steps)

    def queries(self, conn: Connection) -> list[str]:
        """Return every statement rendered, for check mode and for the ``queries`` result."""
        return [step.render(conn) for step in self.steps]

    def explain(self, conn: Connection) -> list[dict[str, str | None]]:
        """Return every step rendered with its reason and lock, for the ``plan`` result."""
        return [step.describe(conn) for step in self.steps]


def transactions(steps: Iterable[Step]) -> list[list[Step]]:
    """Return the units the executor commits, in order: lists of steps sharing a group, or single steps."""
    units = []
    for step in steps:
        previous = units[-1] if units else None
        if (
            previous
            and step.group is not None
            and previous[-1].transactional == step.transactional
            and previous[-1].group == step.group
        ):
            previous.append(step)
        else:
            units.append([step])
    return units


def retrying(
    attempt: Callable[[int], T],
    retryable: Callable[[Exception], bool],
    retries: int,
    delay: float,
    sleep: Callable[[float], Any] = time.sleep,
) -> T:
    """The one retry policy: call ``attempt(n)`` (n = 1, 2, ...) until it returns, and return what it returned.

    An exception for which ``retryable(error)`` is true is retried after ``delay * 2**(n-1)`` seconds, at most
    ``retries`` times; the last one (or any other) propagates. Used for SQL units, catalog reads and pg_repack.
    """
    number = 0
    while True:
        number += 1
        try:
            return attempt(number)
        except Exception as error:
            if not retryable(error) or number > retries:
                raise
            sleep(delay * (2 ** (number - 1)))


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
    def from_module(cls, conn: Connection, module: AnsibleModule) -> Executor:
        """Return an executor with the module's ``lock_retries`` and ``lock_retry_delay``."""
        return cls(conn, module.params.get("lock_retries", 3), module.params.get("lock_retry_delay", 2.0))

    def run(self, plan: Plan | Iterable[Step]) -> list[str]:
        """Execute every step of ``plan``; return the statements that ran, in order."""
        steps = plan.steps if isinstance(plan, Plan) else list(plan)
        ran = []
        for unit in transactions(steps):
            try:
                ran.extend(self._run_unit(unit))
            except Exception:
                self.failed = unit
                raise
        if any(step.transactional for step in steps):
            # what this run wrote must count in the next module's decisions (a vacuum right after a migration)
            publish_statistics(self.conn)
        return ran

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


_DEADLOCK_WAIT = re.compile(r"Process (\d+) waits for (\w+) on (.+?); blocked by process (\d+)\.")
_ON_RELATION = re.compile(r"relation (\d+) of database \d+$")
_ON_TUPLE = re.compile(r"tuple \(\d+,\d+\) of relation (\d+) of database \d+$")
# the collection's own messages raised inside a step (a bounded lock wait, a deadlock seen before waiting)
OWN_PREFIX = "sigeti.dwh: "


def parse_deadlock(detail: str) -> list[dict[str, Any]]:
    """The waits of a deadlock report (the DETAIL of SQLSTATE 40P01, as PostgreSQL writes it in English):
    ``[{pid, mode, what, relation, blocked_by}]``, ``relation`` the oid when the lock is on a relation or a row of
    one (``what`` keeps the server's words). Pure; an unreadable detail gives []."""
    waits = []
    for match in _DEADLOCK_WAIT.finditer(detail or ""):
        what = match.group(3)
        relation = _ON_RELATION.search(what) or _ON_TUPLE.search(what)
        waits.append(
            {
                "pid": int(match.group(1)),
                "mode": match.group(2),
                "what": what,
                "relation": int(relation.group(1)) if relation else None,
                "row": what.startswith(("tuple", "transaction")),
                "blocked_by": int(match.group(4)),
            }
        )
    return waits


def describe_deadlock(waits: Sequence[dict[str, Any]], own_pid: int, names: dict[int, str]) -> str:
    """One phrase per wait of a deadlock, in the order of the cycle: who waited for which lock on what, held by
    whom (this run is "this run"); relations by name (``names``: oid -> schema.name). Pure; "" without waits."""

    def who(pid):
        return "this run (pid %d)" % pid if pid == own_pid else "pid %d" % pid

    def on(wait):
        if wait["relation"] is not None:
            name = names.get(wait["relation"], "relation %d" % wait["relation"])
            return ("a row of %s" % name) if wait["row"] else name
        return "a row (%s)" % wait["what"] if wait["row"] else wait["what"]

    parts = [
        "%s waited for %s on %s, held by %s" % (who(w["pid"]), w["mode"], on(w), who(w["blocked_by"])) for w in waits
    ]
    return "; ".join(parts)


def own_message(error: BaseException) -> tuple[str, str] | None:
    """``(what happened, what to do)`` when the step's own SQL raised the error with a message of this collection
    (``OWN_PREFIX``; its HINT says what to do), else None."""
    diag = getattr(error, "diag", None)
    primary = getattr(diag, "message_primary", None) or ""
    if not primary.startswith(OWN_PREFIX):
        return None
    return primary[len(OWN_PREFIX) :].rstrip("."), getattr(diag, "message_hint", None) or ""


def is_lock_error(error: BaseException) -> bool:
    """Return True when a psycopg2 error is a lock timeout or a deadlock (the retryable kinds)."""
    return getattr(error, "pgcode", None) in _RETRYABLE
