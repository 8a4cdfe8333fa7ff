# Copyright: (c) 2026, SIGETI data platform team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Plans: ordered steps computed from catalog facts by a pure planner, and what each step carries.

The same plan is rendered in check mode and executed in a real run (``plan.executor.Executor``). ``queries`` is the
same in both when the facts read by check mode are the same (check mode may use estimates when a table is locked:
the module then says so in a warning).

How a plan is cut into transactions (``transactions``):
- steps sharing a ``group`` run in one transaction (all or nothing); a step without a group is its own transaction;
- a step with ``transactional=False`` (VACUUM, DETACH ... CONCURRENTLY) runs in autocommit, alone unless the
  next ones are autocommit steps of the same group: those run one after another and are retried together (a
  cancelled ``CREATE INDEX CONCURRENTLY`` leaves an INVALID index that the retry must drop before building again);
- the first step of a unit may ask for an ``isolation`` level (a verification compares two tables in one
  REPEATABLE READ snapshot); a step's ``rowcount`` and ``rows`` (what it returned) are set once it ran, and a later
  step of the same transaction can embed an earlier one's row count (``RowcountOf``: a copy batch and its progress);
- work whose statements depend on what the previous statement returned (recompression by key ranges) is a
  ``Batches`` item: its batches are made one after another while the plan runs, each its own transaction, and
  check mode shows its template.

Pure: no I/O here (planners import this file only).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Iterable, Sequence, Tuple, Union

if TYPE_CHECKING:  # names used in annotations only
    from psycopg2.sql import Composable

    from ansible_collections.sigeti.dwh.plugins.module_utils.session.connection import Connection

try:
    from psycopg2 import sql as _sql

    _Composable = _sql.Composable
except ImportError:  # reported by the connection layer
    _Composable = object

# Lock names, as PostgreSQL's documentation spells them, for the plan output.
ACCESS_SHARE = "ACCESS SHARE"


ROW_EXCLUSIVE = "ROW EXCLUSIVE"


SHARE_UPDATE_EXCLUSIVE = "SHARE UPDATE EXCLUSIVE"


SHARE = "SHARE"


SHARE_ROW_EXCLUSIVE = "SHARE ROW EXCLUSIVE"


ACCESS_EXCLUSIVE = "ACCESS EXCLUSIVE"


ISOLATION_LEVELS = ("READ COMMITTED", "REPEATABLE READ", "SERIALIZABLE")


# A relation a step locks or a read waits on: ``(schema, relation)`` (``typing.Tuple``: evaluated on Python 3.8 too).
Target = Tuple[str, str]


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
            return self.sql.as_string(conn)
        return self.sql

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


class AsLiteral(_Composable):
    """A composed SQL text passed as a string literal (function bodies, DO blocks), quoted at render time."""

    def as_string(self, context: Any) -> str:
        return _sql.Literal(self._wrapped.as_string(context)).as_string(context)


class ResultOf(_Composable):
    """SQL made from what an earlier ``step`` of the same transaction returned (its ``rows``), rendered when the
    Executor reaches the step embedding it: ``build(rows)`` returns the Composable (or text) to send.

    Before ``step`` ran (check mode) it renders as ``placeholder``, e.g. ``/* the batch's upper key */``.
    """

    def __init__(self, step: Step, build: Callable[[list[tuple]], Any], placeholder: str) -> None:
        super().__init__(step)
        self.step = step
        self.build = build
        self.placeholder = placeholder

    def as_string(self, context: Any) -> str:
        if self.step.rows is None:
            return self.placeholder
        built = self.build(self.step.rows)
        return built.as_string(context) if hasattr(built, "as_string") else str(built)


class Batches:
    """Work done one batch at a time while the plan runs, each batch its own transaction (retried as one).

    ``next_batch(previous)`` returns the steps of the next batch from the steps of the previous one, which have run
    (their ``rows`` and ``rowcount`` set; ``None`` before the first batch), or ``None`` when the work is done: a pure
    function, so the batches are planned, only their values come from the run. Check mode renders ``template`` (the
    batch statement with placeholders). ``batches`` and ``rows`` (the sum of each batch's last step's row count)
    say what committed; ``what`` names the work in the message of an interruption, with that progress and
    ``resume`` (what a next run does with it). ``targets`` are the relations the batches work on.
    """

    def __init__(
        self,
        template: Sequence[Step],
        next_batch: Callable[[list[Step] | None], list[Step] | None],
        what: str,
        resume: str,
        estimate: int | None = None,
        targets: Iterable[Target] = (),
    ) -> None:
        self.template = list(template)
        self.targets = tuple(targets)
        self.next_batch = next_batch
        self.what = what
        self.resume = resume
        self.estimate = estimate
        self.batches = 0
        self.rows = 0
        reason = self.template[0].reason if self.template else what
        self.reason = reason
        self.lock = self.template[0].lock if self.template else None

    def render(self, conn: Connection) -> str:
        """Return the batch statement(s) with placeholders, as check mode shows them."""
        return "; ".join(step.render(conn) for step in self.template)

    def describe(self, conn: Connection) -> dict[str, str | None]:
        """Return the batch as the ``plan`` result shows it: its statement, reason and lock."""
        return {"sql": self.render(conn), "reason": self.reason, "lock": self.lock}

    def progress(self) -> str:
        """Return what was committed before an interruption, and how to continue."""
        return "%d batch(es) of %s were committed (%d row(s)) and stay done; %s" % (
            self.batches,
            self.what,
            self.rows,
            self.resume,
        )


# An item of a plan: a statement, or work made one batch at a time.
Item = Union[Step, Batches]


class Plan:
    """An ordered list of steps (and batched work); an empty plan means the declared state already holds."""

    def __init__(self, steps: Iterable[Item] | None = None) -> None:
        self.steps: list[Item] = list(steps or [])

    def add(self, step: Item) -> Item:
        """Append one step (or batched work) and return it."""
        self.steps.append(step)
        return step

    def extend(self, steps: Iterable[Item]) -> None:
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
