# Copyright: (c) 2026, SIGETI data platform team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The deadlock-safe lock order (pure): which relations a strong-lock transaction takes, in which order, and how every
lock after the first is taken so that no writer is ever ended by a deadlock this collection caused. Shared by the
migration (its offline transaction, online and attach swaps) and the partition maintenance (the transaction moving
rows out of the default partition and attaching a new partition of a parent with foreign keys).

PostgreSQL looks for a deadlock only once a session has waited ``deadlock_timeout`` (1 s by default), in the session
whose timer fires first, and ends that one: when it is an application's, the application gets SQLSTATE 40P01. An
application using foreign keys takes its locks in its own order (TPC-B: the accounts, tellers and branches it
updates, then the history row it inserts; any insert: the row's table, then ``ROW SHARE`` on every table its
foreign keys reference), so a transaction that locks two of those tables can wait for one while holding the other
that the application waits for. The rule, for every transaction that locks several relations other sessions use:

1. its relations are locked first thing (``lock_set``: one DO block, ``first_locks``): the tables the table's
   foreign keys reference (where this transaction adds or clones them: ``ADD FOREIGN KEY``, ``ATTACH PARTITION``),
   then the table, then the relations depending on it (tables whose foreign keys reference it, views and rules
   reading it, its default partition): the order of an application writing the referenced rows before the row
   referencing them (TPC-B's history). When that order meets a deadlock (or a later lock is not granted in its
   bounded wait), its subtransaction is rolled back (the locks it took are released) and the table goes first: the
   order of an application writing the table before the tables it references (TPC-B updates an account, then its
   branch);
2. the first lock of an order waits up to ``lock_timeout`` (the transaction holds nothing yet: waiting cannot be a
   deadlock);
3. every later lock (and the offline swap's upgrade to ACCESS EXCLUSIVE, late in its transaction) is taken by
   ``safe_lock``: if a session holding a lock on that relation waits, directly or through others, for this
   transaction, waiting would be a deadlock: it raises 40P01 itself without waiting; otherwise it waits at most half
   of ``deadlock_timeout`` (``lock_timeout`` when shorter). A session that starts waiting for this transaction after
   that check runs its deadlock check ``deadlock_timeout`` later, when this transaction no longer waits: it never
   finds a cycle, so it is never the one ended. A lock not granted rolls the transaction back (the Executor retries
   it like a lock timeout) and the message says which lock, while holding what, and why it did not wait longer.
"""

from __future__ import annotations

import dataclasses
from typing import Iterable, Sequence

from ansible_collections.sigeti.dwh.plugins.module_utils.core.identifiers import display_name
from ansible_collections.sigeti.dwh.plugins.module_utils.plan.steps import (
    ACCESS_EXCLUSIVE,
    SHARE_ROW_EXCLUSIVE,
    AsLiteral,
    Step,
)

try:
    from psycopg2 import sql
except ImportError:  # reported by the connection layer
    sql = None

EXCLUSIVE = "EXCLUSIVE"
# lock modes from the weakest to the strongest (a relation wanted twice is locked in the stronger mode)
STRENGTH = (
    "ACCESS SHARE",
    "ROW SHARE",
    "ROW EXCLUSIVE",
    "SHARE UPDATE EXCLUSIVE",
    "SHARE",
    SHARE_ROW_EXCLUSIVE,
    EXCLUSIVE,
    ACCESS_EXCLUSIVE,
)


@dataclasses.dataclass(frozen=True)
class Lock:
    """One relation a transaction locks, the mode and why (shown in the plan)."""

    schema: str
    name: str
    mode: str
    why: str

    @property
    def target(self) -> tuple[str, str]:
        """``(schema, name)``, as ``Step.targets`` spells a relation."""
        return (self.schema, self.name)

    @property
    def display(self) -> str:
        """``schema.name`` as messages show it."""
        return display_name(self.schema, self.name)


def mode_name(mode: str) -> str:
    """``SHARE ROW EXCLUSIVE`` -> ``ShareRowExclusiveLock``: the name pg_locks and deadlock reports use."""
    return "".join(word.capitalize() for word in mode.split()) + "Lock"


def merge(locks: Iterable[Lock]) -> list[Lock]:
    """Each relation once, at its first place, in the strongest mode asked for it."""
    merged: dict[tuple[str, str], Lock] = {}
    for lock in locks:
        seen = merged.get(lock.target)
        if seen is None:
            merged[lock.target] = lock
        elif STRENGTH.index(lock.mode) > STRENGTH.index(seen.mode):
            merged[lock.target] = dataclasses.replace(seen, mode=lock.mode)
    return list(merged.values())


def lock_set(
    referenced: Sequence[Lock], original: Lock, dependents: Sequence[Lock], group: str | None = None
) -> list[Step]:
    """A transaction's first locks (``first_locks``): the referenced tables before the original (an application
    updating them before it writes the original: TPC-B's history), and, when that order meets a deadlock, the
    original before them (one writing the original first: TPC-B's accounts, which reference its branches); what
    depends on the original after it, in both.

    :param referenced: the tables the original's foreign keys reference (those this transaction adds or clones).
    :param original: the table the transaction changes.
    :param dependents: what depends on the original and is locked after it (its default partition, views...).
    :param group: the plan's transaction group of the step (``Step.group``).
    """
    referenced = [r for r in referenced if r.target != original.target]
    dependents = [d for d in dependents if d.target != original.target]
    orders = [merge(list(referenced) + [original] + list(dependents))]
    if referenced:
        orders.append(merge([original] + list(referenced) + list(dependents)))
    return [first_locks(orders, group=group)]


def lock_steps(locks: Sequence[Lock], held: Sequence[Lock] = ()) -> list[Step]:
    """The steps taking ``locks`` in order: at the start of a transaction (``held`` empty) one ``first_locks`` step;
    later, while ``held`` is held, one ``safe_lock`` step each."""
    if not held:
        return [first_locks([list(locks)])] if locks else []
    steps = []
    holding = list(held)
    for lock in locks:
        steps.append(safe_lock(lock, holding))
        holding.append(lock)
    return steps


def first_locks(orders: Sequence[Sequence[Lock]], group: str | None = None) -> Step:
    """One DO block taking a transaction's first locks, trying each order in turn (``orders``: lists of the same
    locks): the first lock of an order waits up to lock_timeout, the later ones as ``safe_lock`` does; an order that
    would deadlock or whose later lock is not granted in time is rolled back (its subtransaction: its locks are
    released) before the next order is tried. When every order failed, the last error is raised, saying the other's."""
    locks = list(orders[0])
    index = {lock.target: number for number, lock in enumerate(locks, 1)}
    rows = sql.SQL(", ").join(
        sql.SQL("ARRAY[{}]").format(sql.SQL(", ").join(sql.Literal(index[lock.target]) for lock in order))
        for order in orders
    )
    body = sql.SQL(_FIRST_LOCKS).format(
        declare=_declare(locks),
        orders=rows,
        wait=sql.SQL(_WAIT),
        precheck=sql.SQL(_PRECHECK),
        later=sql.SQL(_LATER_LOCK),
        hint=sql.Literal(_HINT),
    )
    described = " / then ".join(", ".join("%s (%s)" % (lock.display, lock.mode) for lock in order) for order in orders)
    return Step(
        sql.SQL("DO {}").format(AsLiteral(body)),
        "the transaction's locks, first thing: %s%s; the first waits up to lock_timeout, each later one not at all "
        "when that would be a deadlock, else at most half of deadlock_timeout"
        % (described, " (the second order when the first would deadlock)" if len(orders) > 1 else ""),
        lock=locks[0].mode,
        targets=[lock.target for lock in locks],
        group=group,
    )


def safe_lock(lock: Lock, holding: Sequence[Lock]) -> Step:
    """LOCK ``lock`` while this transaction holds ``holding``: refused at once (40P01) when a session holding a lock
    on it waits for this transaction, else waiting at most half of deadlock_timeout (see the module docstring)."""
    held = ", ".join("%s (%s)" % (h.display, h.mode) for h in holding)
    body = sql.SQL(_SAFE_LOCK).format(
        declare=_declare([lock]),
        held=sql.Literal(held),
        wait=sql.SQL(_WAIT),
        precheck=sql.SQL(_PRECHECK),
        later=sql.SQL(_LATER_LOCK),
    )
    return Step(
        sql.SQL("DO {}").format(AsLiteral(body)),
        "%s: locked after %s, without waiting when a session holding it waits for this transaction (a deadlock), "
        "else for at most half of deadlock_timeout" % (lock.why, held),
        lock=lock.mode,
        targets=[lock.target],
    )


def safe_locks(locks: Sequence[Lock], holding: Sequence[Lock], held_text: str | None = None) -> Step:
    """One DO block taking ``locks`` in order while this transaction holds ``holding``, each as ``safe_lock`` takes
    one (refused at once when waiting would be a deadlock, else waiting at most half of deadlock_timeout): one
    statement however many relations (a roll-up's swap locks the parent and every partition it merges).
    ``held_text`` says in messages what is held when listing ``holding`` would be too long."""
    held = held_text or ", ".join("%s (%s)" % (h.display, h.mode) for h in holding)
    body = sql.SQL(_SAFE_LOCKS).format(
        declare=_declare(list(locks)),
        held=sql.Literal(held),
        wait=sql.SQL(_WAIT),
        precheck=sql.SQL(_PRECHECK),
        later=sql.SQL(_LATER_LOCK),
    )
    return Step(
        sql.SQL("DO {}").format(AsLiteral(body)),
        "%s, locked in this order after %s, each without waiting when a session holding it waits for this "
        "transaction (a deadlock), else for at most half of deadlock_timeout"
        % (", ".join("%s (%s)" % (lock.display, lock.mode) for lock in locks), held),
        lock=locks[0].mode if locks else None,
        targets=[lock.target for lock in locks],
    )


def _declare(locks):
    """The DO blocks' arrays naming ``locks`` (relation, mode, its pg_locks name, how messages show it)."""
    return sql.SQL(
        "rels regclass[] := ARRAY[{}]::regclass[];\n  modes text[] := ARRAY[{}];\n  mode_names text[] := ARRAY[{}];"
        "\n  shown text[] := ARRAY[{}];"
    ).format(
        sql.SQL(", ").join(sql.Literal(_identifier_text(lock.schema, lock.name)) for lock in locks),
        sql.SQL(", ").join(sql.Literal(lock.mode) for lock in locks),
        sql.SQL(", ").join(sql.Literal(mode_name(lock.mode)) for lock in locks),
        sql.SQL(", ").join(sql.Literal(lock.display) for lock in locks),
    )


def _identifier_text(schema: str, name: str) -> str:
    """``"schema"."name"`` quoted as PostgreSQL reads it (for a ``::regclass`` literal)."""
    return ".".join('"%s"' % part.replace('"', '""') for part in (schema, name))


_HINT = (
    "sigeti.dwh locks the tables a table's foreign keys reference and the table first (in that order, else the "
    "other way round), "
    "then what depends on it; a transaction holding one of them longer, or an application taking them in yet "
    "another way, makes it give up: run again once that session's transaction has ended (or end it: SELECT "
    "pg_terminate_backend(pid)); a longer lock_timeout does not change the waits after the first lock"
)

# In a DO block, before waiting for ``rels[k]`` (mode ``modes[k]``) while holding ``held``: a session holding a lock
# on it that waits, directly or through up to 3 others, for this transaction means waiting would be a deadlock.
_PRECHECK = """
      WITH RECURSIVE chain(pid, first, depth) AS (
        SELECT l.pid, l.pid, 1 FROM pg_catalog.pg_locks l
        WHERE l.locktype = 'relation' AND l.relation = rels[k] AND l.granted AND l.pid <> pg_backend_pid()
          AND l.database = (SELECT oid FROM pg_catalog.pg_database WHERE datname = current_database())
        UNION
        SELECT b.pid, c.first, c.depth + 1 FROM chain c CROSS JOIN LATERAL unnest(pg_blocking_pids(c.pid)) AS b(pid)
        WHERE c.depth < 4 AND c.pid <> pg_backend_pid()
      )
      SELECT first INTO holder FROM chain WHERE pid = pg_backend_pid() LIMIT 1;
      IF holder IS NOT NULL THEN
        SELECT format('Process %s waits for %s on relation %s of database %s; blocked by process %s.',
                      pg_backend_pid(), mode_names[k], rels[k]::oid,
                      (SELECT oid FROM pg_catalog.pg_database WHERE datname = current_database()), holder)
               || coalesce(E'\\n' || (SELECT format('Process %s waits for %s on %s; blocked by process %s.', w.pid,
                      w.mode, CASE w.locktype
                        WHEN 'relation' THEN format('relation %s of database %s', w.relation, w.database)
                        WHEN 'transactionid' THEN format('transaction %s', w.transactionid)
                        WHEN 'tuple' THEN format('tuple (%s,%s) of relation %s of database %s', w.page, w.tuple,
                                                 w.relation, w.database)
                        ELSE w.locktype END,
                      coalesce((pg_blocking_pids(w.pid))[1], pg_backend_pid()))
                      FROM pg_catalog.pg_locks w WHERE w.pid = holder AND NOT w.granted LIMIT 1), '')
          INTO detail;
        RAISE EXCEPTION USING ERRCODE = 'deadlock_detected',
          MESSAGE = format('sigeti.dwh: waiting for %s on %s would be a deadlock: pid %s holds a lock on it and '
                           'waits for this transaction, which holds %s', modes[k], shown[k], holder, held),
          DETAIL = detail;
      END IF;
"""

# How long a lock taken while others are held may wait: half of deadlock_timeout, lock_timeout when shorter.
_WAIT = """
  wait_ms := greatest(1, floor(extract(epoch FROM current_setting('deadlock_timeout')::interval) * 500))::int;
  IF extract(epoch FROM saved::interval) > 0 AND extract(epoch FROM saved::interval) * 1000 < wait_ms THEN
    wait_ms := greatest(1, floor(extract(epoch FROM saved::interval) * 1000))::int;
  END IF;
"""

# Lock ``rels[k]`` waiting at most ``wait_ms``, while ``held`` is held (after ``_PRECHECK``).
_LATER_LOCK = """
      PERFORM set_config('lock_timeout', wait_ms || 'ms', true);
      BEGIN
        EXECUTE format('LOCK TABLE %s IN %s MODE', rels[k], modes[k]);
      EXCEPTION WHEN lock_not_available THEN
        RAISE EXCEPTION USING ERRCODE = 'lock_not_available',
          MESSAGE = format('sigeti.dwh: %s was not granted %s within %s ms while this transaction held %s (a '
                           'longer wait while holding them could make PostgreSQL end, as a deadlock, the '
                           'transaction of a session waiting for this one: the wait stays below half of '
                           'deadlock_timeout %s)', shown[k], modes[k], wait_ms, held,
                           current_setting('deadlock_timeout'));
      END;
"""

# The DO block of ``first_locks``: each order in a subtransaction; the locks of a failed one are released with it.
_FIRST_LOCKS = """
DECLARE
  {declare}
  orders int[] := ARRAY[{orders}];
  saved text := current_setting('lock_timeout');
  wait_ms int;
  holder int;
  detail text;
  held text;
  k int;
  other text;
  failed_message text;
  failed_detail text;
  failed_state text;
BEGIN
{wait}
  FOR attempt IN 1..array_length(orders, 1) LOOP
    BEGIN
      held := NULL;
      FOR i IN 1..array_length(orders, 2) LOOP
        k := orders[attempt][i];
        IF held IS NULL THEN
          -- PostgreSQL's own lock timeout: the Executor's message then says to wait, end the session or raise it
          PERFORM set_config('lock_timeout', saved, true);
          EXECUTE format('LOCK TABLE %s IN %s MODE', rels[k], modes[k]);
        ELSE
{precheck}
{later}
        END IF;
        held := coalesce(held || ', ', '') || format('%s (%s)', shown[k], modes[k]);
      END LOOP;
      PERFORM set_config('lock_timeout', saved, true);
      RETURN;
    EXCEPTION WHEN lock_not_available OR deadlock_detected THEN
      GET STACKED DIAGNOSTICS failed_message = MESSAGE_TEXT, failed_detail = PG_EXCEPTION_DETAIL,
                              failed_state = RETURNED_SQLSTATE;
      IF attempt = array_length(orders, 1) THEN
        RAISE EXCEPTION USING ERRCODE = failed_state,
          MESSAGE = failed_message || coalesce('; in the other order: ' || other, ''),
          DETAIL = coalesce(failed_detail, ''), HINT = {hint};
      END IF;
      other := replace(failed_message, 'sigeti.dwh: ', '');
    END;
  END LOOP;
END
"""

# The DO block of ``safe_lock``: one relation, locked while the transaction holds ``held``.
_SAFE_LOCK = """
DECLARE
  {declare}
  held text := {held};
  saved text := current_setting('lock_timeout');
  k int := 1;
  wait_ms int;
  holder int;
  detail text;
BEGIN
{wait}
{precheck}
{later}
  PERFORM set_config('lock_timeout', saved, true);
END
"""

# The DO block of ``safe_locks``: several relations, each locked as ``safe_lock`` does, in order.
_SAFE_LOCKS = """
DECLARE
  {declare}
  held text := {held};
  saved text := current_setting('lock_timeout');
  k int;
  wait_ms int;
  holder int;
  detail text;
BEGIN
{wait}
  FOR k IN 1..array_length(rels, 1) LOOP
{precheck}
{later}
    held := held || format(', %s (%s)', shown[k], modes[k]);
  END LOOP;
  PERFORM set_config('lock_timeout', saved, true);
END
"""
