# Copyright: (c) 2026, SIGETI data platform team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The one retry policy, and how lock failures and deadlocks are told apart and named (pure).

``retrying`` retries what ``is_lock_error`` calls retryable (a lock not granted within ``lock_timeout``, a deadlock)
with a growing delay; SQL units, catalog reads and pg_repack all go through it. A deadlock (SQLSTATE 40P01) is
reported as one, from PostgreSQL's report (``parse_deadlock``, ``describe_deadlock``): each session, the lock it waited
for and on what, who held it (no lock_timeout cures it); a step's own bounded wait (``OWN_PREFIX`` messages) says its
own why (``own_message``).
"""

from __future__ import annotations

import re
import time
from typing import Any, Callable, Sequence, TypeVar

_RETRYABLE = ("55P03", "40P01")  # lock_not_available, deadlock_detected


T = TypeVar("T")


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
