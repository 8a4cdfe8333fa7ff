# Copyright: (c) 2026, SIGETI data platform team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Steps of the plan run on a second connection while the main transaction goes on: online, the original's side of
the verification (in the main transaction's snapshot); offline, the second half of the copy, then the original's
checksum while the main transaction builds the indexes (2 cores: two statements at once).

The steps come in parts, one transaction each on that connection, run one after the other; the main transaction
waits for each part right before the step that needs it. They run through their own ``plan.Executor``
(lock_timeout, retries naming blockers) in a thread: psycopg2 releases the GIL while the server works. The
connection is closed in every path; a failure of it fails the run, and the runner rolls the main transaction back.
"""

from __future__ import annotations

import contextlib
import dataclasses
import threading
from typing import TYPE_CHECKING, Callable, Iterator

from ansible_collections.sigeti.dwh.plugins.module_utils.core.errors import DwhError
from ansible_collections.sigeti.dwh.plugins.module_utils.plan.executor import Executor
from ansible_collections.sigeti.dwh.plugins.module_utils.plan.steps import Step

if TYPE_CHECKING:  # names used in annotations only
    from ansible_collections.sigeti.dwh.plugins.module_utils.session.connection import Connection


@dataclasses.dataclass(frozen=True)
class SidePart:
    """Steps run as one transaction on the second connection; the main transaction waits for them right before
    ``join_before``. ``side_only``: those of ``steps`` that only prepare that connection (e.g. import the main
    transaction's snapshot), left out when there is no second connection."""

    steps: tuple
    join_before: Step
    side_only: tuple = ()
    what: str = "verification read"  # named in the error when it fails


@dataclasses.dataclass(frozen=True)
class ConcurrentStep:
    """Parts of the plan run on a second connection, started right before ``start_before`` runs in the main
    transaction. Check mode shows their steps where the plan lists them; without a second connection they run
    there, in the main transaction. ``undo``: steps removing what the first part committed, run on a fresh
    connection before the parts run again when the main transaction is retried (a lock timeout rolled it back and
    released its locks: writers may have committed in between)."""

    start_before: Step
    parts: tuple
    undo: tuple = ()

    def side_only(self) -> list[Step]:
        """The steps that run only on a second connection."""
        return [step for part in self.parts for step in part.side_only]

    def steps(self) -> list[Step]:
        """Every step of the parts."""
        return [step for part in self.parts for step in part.steps]


def _without(steps, leave_out):
    return [s for s in steps if not any(s is x for x in leave_out)]


@contextlib.contextmanager
def side_read(
    connect: Callable[[], Connection] | None,
    concurrent: ConcurrentStep | None,
    executor: Executor,
    display: str,
    consequence: str,
) -> Iterator[tuple[Callable[[list[Step]], list[Step]], list[str]]]:
    """Yield a function filtering the steps of the main transaction (``concurrent`` runs beside it on a connection
    from ``connect()``, hooked on its steps) and the list its statements are added to once it ran; its connection is
    closed on the way out, whatever happened. With no ``concurrent`` or no ``connect``, everything but the side-only
    steps runs in the main transaction."""
    executed = []
    if concurrent is None or connect is None:
        side_only = concurrent.side_only() if concurrent else []
        yield (lambda steps: _without(steps, side_only)), executed
        return
    side = SideStep(connect, concurrent, executor, display, consequence)
    hooked = [concurrent.start_before] + [part.join_before for part in concurrent.parts]
    concurrent.start_before.before = side.start
    for index, part in enumerate(concurrent.parts):
        part.join_before.before = lambda index=index: side.wait(index)
    try:
        yield (lambda steps: _without(steps, concurrent.steps())), executed
    finally:
        side.close()
        for step in hooked:
            step.before = None
    executed.extend(side.executed)


class SideStep:
    """Runs a ``ConcurrentStep`` on a connection from ``connect()``: ``start`` (a Step's ``before`` hook) opens the
    connection and runs the parts in a thread, ``wait(i)`` (another hook) returns once part ``i`` ran, ``close``
    cancels and closes it (always)."""

    def __init__(
        self,
        connect: Callable[[], Connection],
        concurrent: ConcurrentStep,
        executor: Executor,
        display: str,
        consequence: str,
    ) -> None:
        self._connect = connect
        self._parts = [list(part.steps) for part in concurrent.parts]
        for index, steps in enumerate(self._parts):
            for step in steps:
                step.group = "sigeti-side-%d" % index  # one transaction per part
        self._what = [part.what for part in concurrent.parts]
        self._undo = list(concurrent.undo)
        self._retries = executor.retries
        self._retry_delay = executor.retry_delay
        self._display = display
        self._consequence = consequence
        self._changed = threading.Condition()
        self._finished = 0  # parts run to their commit
        self._started = False  # an earlier attempt started the parts
        self._conn = None
        self._thread = None
        self._error = None
        self.executed = []

    def start(self) -> None:
        """Open the second connection and start the parts in a thread (a Step's ``before`` hook)."""
        # a unit retried after a lock timeout starts again: what still runs is cancelled, and what the first part
        # committed is undone (run again on top of it, its rows would be there twice or stale)
        self.close()
        if self._started and self._undo:
            self._run_undo()  # even if the first part seemed not to finish: an empty shadow costs nothing to empty
        self._started = True
        self._error = None
        self._finished = 0
        try:
            # opened here, in the main thread, once the main transaction holds its lock
            self._conn = self._connect()
        except Exception as error:
            raise self._failed(error) from None
        self._thread = threading.Thread(target=self._run, name="sigeti-dwh-side-step", daemon=True)
        self._thread.start()

    def _run_undo(self):
        try:
            conn = self._connect()
        except Exception as error:
            raise self._failed(error, "emptying of the shadow") from None
        try:
            for step in self._undo:
                step.group = "sigeti-side-undo"
            self.executed += Executor(conn, self._retries, self._retry_delay).run(self._undo)
        except DwhError:
            raise
        except Exception as error:
            raise self._failed(error, "emptying of the shadow") from None
        finally:
            conn.close()

    def _run(self):
        try:
            executor = Executor(self._conn, self._retries, self._retry_delay)
            for steps in self._parts:
                self.executed += executor.run(steps)
                with self._changed:
                    self._finished += 1
                    self._changed.notify_all()
        except BaseException as error:  # re-raised in the main thread by wait()
            with self._changed:
                self._error = error
                self._changed.notify_all()
        finally:
            self._close_conn()

    def wait(self, part: int = 0) -> None:
        """Return once part ``part`` ran; re-raise a failure of the parts here, in the main thread."""
        with self._changed:
            while self._finished <= part and self._error is None and self._thread is not None:
                if not self._thread.is_alive():
                    break
                self._changed.wait(0.5)
            error, self._error = self._error, None
            finished = self._finished
        if error is not None:
            if isinstance(error, DwhError):
                raise error
            raise self._failed(error) from None
        if finished <= part:
            raise self._failed(RuntimeError("it was never started"))

    def close(self) -> None:
        """Stop parts still running (the main transaction failed) and close the connection."""
        thread = self._thread
        conn = self._conn
        if thread is not None and thread.is_alive() and conn is not None:
            try:
                conn.cancel()
            except Exception:  # the parts may have ended meanwhile; cancelling is best effort
                pass
        if thread is not None:
            thread.join()
        self._thread = None
        self._close_conn()

    def _close_conn(self):
        conn, self._conn = self._conn, None
        if conn is None:
            return
        try:
            if not conn.closed:
                conn.close()
        except Exception:  # the connection may already be gone; closing is best effort
            pass

    def _failed(self, error, what=None):
        what = what or self._what[min(self._finished, len(self._what) - 1)]
        text = str(error).strip().replace("\n", " ")
        return DwhError(
            "the %s of %s on a second connection failed: %s. %s. What to do: fix the cause above and run again"
            % (what, self._display, text, self._consequence)
        )
