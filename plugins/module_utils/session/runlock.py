# Copyright: (c) 2026, SIGETI data platform team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""One changing run per table at a time.

Two runs of the same maintenance on one table (an AWX schedule and a cron line, a rerun while the first still
copies) would plan from the same facts and apply twice: two copies of the same pages into one shadow table, two
moves of the same default rows. Like pg_partman, every changing module first takes a session-level advisory lock per
table. It is held until the module's connection closes (also across the commits of a resumed migration) and vanishes
with the session when a run is killed, so it can never be left behind.

The key is ``(RUN_LOCK_CLASS, hashtext('schema.table'))``: the two-key form, so the lock is found in ``pg_locks`` by
``classid``/``objid`` and the other run can be named.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Iterable

from ansible_collections.sigeti.dwh.plugins.module_utils.core.errors import LockNotGranted
from ansible_collections.sigeti.dwh.plugins.module_utils.core.identifiers import display_name
from ansible_collections.sigeti.dwh.plugins.module_utils.session.connection import Connection, parse_duration_ms

if TYPE_CHECKING:  # names used in annotations only
    from ansible_collections.sigeti.dwh.plugins.module_utils.session.context import RunContext

RUN_LOCK_CLASS = 0x5347  # "SG": keeps our keys apart from other tools' advisory locks
POLL_SECONDS = 0.2

TRY_LOCK_SQL = "SELECT pg_try_advisory_lock(%s, hashtext(%s))"
HOLDER_SQL = """
SELECT a.pid, coalesce(a.application_name, ''), coalesce(host(a.client_addr), 'local socket'),
       a.usename::text, a.backend_start, a.state, left(a.query, 200)
FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
WHERE l.locktype = 'advisory' AND l.granted AND l.pid <> pg_backend_pid()
  AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
  AND l.classid = %s::int::oid AND l.objid = hashtext(%s)::oid AND l.objsubid = 2
"""


@dataclass(frozen=True)
class Holder:
    """The session holding a table's run lock, as ``pg_stat_activity`` shows it."""

    pid: int
    application_name: str
    client: str
    user: str
    since: str
    state: str
    query: str

    def describe(self) -> str:
        """Return one phrase naming the other run: pid, application, client, user and since when."""
        return "pid %d (application_name %r, client %s, user %s, connected since %s, %s: %s)" % (
            self.pid,
            self.application_name,
            self.client,
            self.user,
            self.since,
            self.state,
            self.query,
        )


def lock_key(schema: str, name: str) -> str:
    """Return the text hashed into the advisory key: schema and table as stored in the catalog."""
    return "%s.%s" % (schema, name)


def budget_seconds(params: dict[str, Any]) -> float:
    """Return how many seconds a run waits for another run's lock: the budget its lock retries would spend.

    That is ``lock_timeout`` for each of the ``lock_retries + 1`` attempts plus the growing delays between them.
    """
    timeout = parse_duration_ms(params.get("lock_timeout", "5s"), "lock_timeout") / 1000.0
    retries = max(0, int(params.get("lock_retries", 3)))
    delay = max(0.0, float(params.get("lock_retry_delay", 2.0)))
    return timeout * (retries + 1) + sum(delay * 2**i for i in range(retries))


def try_lock(conn: Connection, schema: str, name: str) -> bool:
    """Try once to take the run lock of one table; return True when this session holds it now."""
    with conn.cursor() as cur:
        cur.execute(TRY_LOCK_SQL, (RUN_LOCK_CLASS, lock_key(schema, name)))
        granted = cur.fetchone()[0]
    _end_read(conn)
    return bool(granted)


def holders(conn: Connection, schema: str, name: str) -> list[Holder]:
    """Return the other sessions holding the run lock of one table (none, or the one other run)."""
    with conn.cursor() as cur:
        cur.execute(HOLDER_SQL, (RUN_LOCK_CLASS, lock_key(schema, name)))
        rows = cur.fetchall()
    _end_read(conn)
    return [Holder(r[0], r[1], r[2], r[3], str(r[4]), r[5] or "", r[6] or "") for r in rows]


def acquire(
    conn: Connection,
    tables: Iterable[tuple[str, str]],
    budget: float,
    sleep: Callable[[float], Any] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> list[tuple[str, str]]:
    """Take the run lock of every ``(schema, table)``, waiting at most ``budget`` seconds in all.

    Tables are locked in sorted order so two runs over overlapping lists cannot wait on each other. Raises
    ``LockNotGranted`` naming the other run when a lock stays taken; locks already taken are released then.
    Returns the ``(schema, table)`` pairs locked, in the order they were taken.
    """
    ordered = sorted(set(tables))
    deadline = clock() + max(0.0, budget)
    taken = []
    for schema, name in ordered:
        while not try_lock(conn, schema, name):
            if clock() >= deadline:
                others = holders(conn, schema, name)
                release(conn, taken)
                raise _busy(schema, name, others, budget)
            sleep(POLL_SECONDS)
        taken.append((schema, name))
    return taken


def hold(context: RunContext, conn: Connection, tables: Iterable[tuple[str, str]]) -> None:
    """Take the run locks a changing module needs before it reads the facts it plans from; return nothing.

    Check mode changes nothing, so it does not wait: when another run holds a table it warns that the plan shown is
    read from a state that run is still changing.
    """
    if context.check_mode:
        for schema, name in sorted(set(tables)):
            if not try_lock(conn, schema, name):
                others = "; ".join(h.describe() for h in holders(conn, schema, name))
                context.warn(
                    "another sigeti.dwh run is changing %s (%s): this check shows the plan from the state as it is "
                    "now, which that run is still changing" % (display_name(schema, name), others or "just ended")
                )
        return
    acquire(conn, tables, budget_seconds(context.params))


def release(conn: Connection, tables: Iterable[tuple[str, str]]) -> None:
    """Release run locks taken by ``acquire`` (closing the connection releases them too); return nothing."""
    if conn.closed:
        return
    with conn.cursor() as cur:
        for schema, name in tables:
            cur.execute("SELECT pg_advisory_unlock(%s, hashtext(%s))", (RUN_LOCK_CLASS, lock_key(schema, name)))
    _end_read(conn)


def _busy(schema, name, others, budget):
    shown = display_name(schema, name)
    who = "; ".join(h.describe() for h in others) or "a session that has just ended (try again)"
    return LockNotGranted(
        "Another sigeti.dwh run is changing %s: %s. This run waited %.0f s for it and changed nothing. "
        "What to do: let that run finish (schedule the runs apart), or end it with pg_terminate_backend(pid): "
        "an interrupted migration resumes at the next run." % (shown, who, budget),
        blocking_pids=[h.pid for h in others],
    )


def _end_read(conn):
    # a session-level advisory lock survives the end of the transaction that took it
    if not conn.autocommit:
        conn.rollback()
