# Copyright: (c) 2026, SIGETI data platform team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""A step of the plan run on a second connection while the main transaction goes on: online, the original's side
of the verification (in the main transaction's snapshot); offline, the second half of the copy (2 cores, two
``INSERT ... SELECT`` at once, the main transaction holding ``LOCK ... IN EXCLUSIVE MODE`` so no writer can commit).

The step runs through its own ``plan.Executor`` (lock_timeout, retries naming blockers, its own transaction) in a
thread: psycopg2 releases the GIL while the server works. Its connection is closed in every path; a failure of it
fails the run, and the runner rolls the main transaction back.
"""

from __future__ import annotations

import contextlib
import dataclasses
import threading
from typing import TYPE_CHECKING, Callable, Iterator

from ansible_collections.sigeti.dwh.plugins.module_utils.errors import DwhError
from ansible_collections.sigeti.dwh.plugins.module_utils.plan import Executor, Step

if TYPE_CHECKING:  # names used in annotations only
    from ansible_collections.sigeti.dwh.plugins.module_utils.connection import Connection


@dataclasses.dataclass(frozen=True)
class ConcurrentStep:
    """A step of the plan run on a second connection: ``setup`` then ``step`` (one transaction there), started right
    before ``start_before`` runs in the main transaction, awaited right before ``join_before``. Check mode shows
    them where they start; without a second connection ``step`` runs in the main transaction, ``setup`` not at all
    (it only prepares the second connection, e.g. imports the main transaction's snapshot). ``undo``: steps removing
    what ``step`` committed there, run on a fresh connection before it runs again when the main transaction is
    retried (a lock timeout rolled it back and released its locks: writers may have committed in between)."""

    step: Step
    start_before: Step
    join_before: Step
    setup: tuple = ()
    what: str = "verification read"  # named in the error when it fails
    undo: tuple = ()


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
    closed on the way out, whatever happened. With no ``concurrent`` or no ``connect``, everything but the setup
    steps runs in the main transaction."""
    executed = []
    if concurrent is None or connect is None:
        setup = concurrent.setup if concurrent else ()
        yield (lambda steps: [s for s in steps if not any(s is x for x in setup)]), executed
        return
    side = SideStep(connect, concurrent, executor, display, consequence)
    concurrent.start_before.before = side.start
    concurrent.join_before.before = side.wait
    mine = concurrent.setup + (concurrent.step,)
    try:
        yield (lambda steps: [s for s in steps if not any(s is x for x in mine)]), executed
    finally:
        side.close()
        concurrent.start_before.before = concurrent.join_before.before = None
    executed.extend(side.executed)


class SideStep:
    """Runs a ``ConcurrentStep`` on a connection from ``connect()``: ``start`` (a Step's ``before`` hook) opens the connection
    and sends the statement, ``wait`` (another hook) returns once it ran, ``close`` cancels and closes it (always)."""

    def __init__(
        self,
        connect: Callable[[], Connection],
        concurrent: ConcurrentStep,
        executor: Executor,
        display: str,
        consequence: str,
    ) -> None:
        self._connect = connect
        self.steps = list(concurrent.setup) + [concurrent.step]
        for step in self.steps:
            step.group = "sigeti-side-step"  # one transaction: e.g. the read runs in the snapshot its setup imported
        self.step = concurrent.step
        self._what = concurrent.what
        self._undo = list(concurrent.undo)
        self._done = False  # the step ran to its commit
        self._retries = executor.retries
        self._retry_delay = executor.retry_delay
        self._display = display
        self._consequence = consequence
        self._conn = None
        self._thread = None
        self._error = None
        self.executed = []

    def start(self) -> None:
        """Open the second connection and start the step in a thread (a Step's ``before`` hook)."""
        # a unit retried after a lock timeout starts again: the previous read (if any) is discarded first, and a
        # write that committed is undone (run again on top of it, its rows would be there twice or stale)
        self.close()
        if self._done and self._undo:
            self._run_undo()
        self._error = None
        self._done = False
        self.step.rows = None
        try:
            # opened here, in the main thread, once the main transaction holds its lock
            self._conn = self._connect()
        except Exception as error:
            raise self._failed(error) from None
        self._thread = threading.Thread(target=self._read, name="sigeti-dwh-side-step", daemon=True)
        self._thread.start()

    def _run_undo(self):
        try:
            conn = self._connect()
        except Exception as error:
            raise self._failed(error) from None
        try:
            for step in self._undo:
                step.group = "sigeti-side-undo"
            self.executed += Executor(conn, self._retries, self._retry_delay).run(self._undo)
        except DwhError:
            raise
        except Exception as error:
            raise self._failed(error) from None
        finally:
            conn.close()
        self._done = False

    def _read(self):
        try:
            executor = Executor(self._conn, self._retries, self._retry_delay)
            self.executed += executor.run(self.steps)
            self._done = True
        except BaseException as error:  # re-raised in the main thread by wait()
            self._error = error
        finally:
            self._close_conn()

    def wait(self) -> None:
        """Return once the step ran; re-raise its failure here, in the main thread."""
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        if self._error is not None:
            error, self._error = self._error, None
            if isinstance(error, DwhError):
                raise error
            raise self._failed(error) from None
        if not self._done:
            raise self._failed(RuntimeError("it was never started"))

    def close(self) -> None:
        """Stop a step still running (the main transaction failed) and close its connection."""
        thread = self._thread
        if thread is not None and thread.is_alive() and self._conn is not None:
            try:
                self._conn.cancel()
            except Exception:  # the read may have ended meanwhile; cancelling is best effort
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

    def _failed(self, error):
        text = str(error).strip().replace("\n", " ")
        return DwhError(
            "the %s of %s on a second connection failed: %s. %s. What to do: fix the cause above and run again"
            % (self._what, self._display, text, self._consequence)
        )
