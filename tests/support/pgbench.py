"""pgbench, PostgreSQL's own client, as the application writing while a module runs (tests and bench/).

The binary is the one beside the server's (``server.bin_dir``): every server build the harness starts ships it.

* ``Pgbench(server, dbname, workdir)``; ``init(scale)`` runs ``pgbench -i --foreign-keys`` (TPC-B's four tables,
  history referencing accounts, tellers and branches); ``seed_history(rows)`` spreads history rows over the 24
  months up to now, in pairs of opposite deltas of the same account, teller and branch, so that the balance
  invariant (sum of abalance = bbalance = tbalance = history delta) holds from the start; ``add_history_key()``
  gives history a bigserial primary key (the online mode needs one).
* ``with bench.running(clients=2) as run:`` runs the built-in TPC-B script (``-b tpcb-like``, ``--max-tries 1``:
  an application without retry logic, ``-n``: history is not truncated) in the background for as long as the
  block lasts. pgbench has no clean way to stop before ``-T`` (SIGINT loses its summary and logs), so a tiny second
  script (weight 5 of 100) reads a control row and aborts its client once the block asks it to; the run then ends
  with its summary and per-transaction logs, which ``run.result`` parses (``PgbenchResult``).
* ``invariant(conn)`` / ``history_rows(conn)``: what a test checks after the run.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import glob
import os
import re
import shutil
import subprocess
import tempfile
import time
from typing import Iterator, Sequence

CONTROL_TABLE = "sigeti_pgbench_control"
STOP_SCRIPT = "SELECT go FROM %s \\gset\n\\set stop_requested 1 / :go\n" % CONTROL_TABLE
STOP_WEIGHT = 5  # of 100: a client stops within ~20 transactions of the request, 5% of them a one-row SELECT
_SCRIPT_COUNT = re.compile(r"SQL script (\d+): (.*)\n - weight: \d+.*\n - (\d+) transactions")
_ABORT = re.compile(r"client (\d+) aborted in command (\d+) \(set\) of script (\d+); evaluation of meta-command failed")


@dataclasses.dataclass(frozen=True)
class Transaction:
    """One line of pgbench's per-transaction log: when it ended (epoch seconds), its latency, script, outcome."""

    client: int
    end: float
    latency: float | None  # seconds; None for a failed transaction
    script: int
    failure: str | None  # None, or "failed" / "serialization" / "deadlock"


@dataclasses.dataclass
class PgbenchResult:
    """What one background pgbench run did (``PgbenchRunning.result`` once its block ended)."""

    returncode: int
    stdout: str
    stderr: str
    # transactions of the main script that committed (per the logs): TPC-B in ``running`` (each inserted one history
    # row), the script given to ``timed``
    tpcb_transactions: int
    failed: int  # transactions that failed (serialization or deadlock: --max-tries 1 retries none)
    deadlock_failures: int
    serialization_failures: int
    unexpected_errors: list  # stderr lines that are not the requested stop (a client aborted by an error)
    transactions: list  # Transaction, every client, in log order
    started: float
    stopped: float

    @property
    def tps(self) -> float:
        """Committed transactions of the main script per second over the whole run (from the logs)."""
        return self.tps_between(self.started, self.stopped)

    def latencies(self, since: float | None = None, until: float | None = None) -> list[float]:
        """Latencies (s) of the TPC-B transactions ending between ``since`` and ``until`` (epoch seconds)."""
        return [
            t.latency
            for t in self.transactions
            if t.script == 0
            and t.latency is not None
            and (since is None or t.end >= since)
            and (until is None or t.end <= until)
        ]

    def max_latency(self, since: float | None = None, until: float | None = None) -> float:
        """The longest TPC-B transaction ending in the window, in seconds (0 when none ended there)."""
        values = self.latencies(since, until)
        return max(values) if values else 0.0

    def tps_between(self, since: float, until: float) -> float:
        """TPC-B transactions per second that ended in ``[since, until]``."""
        if until <= since:
            return 0.0
        return len(self.latencies(since, until)) / (until - since)

    def longest_gap(self, since: float | None = None, until: float | None = None) -> float:
        """The longest time (s) in the window when no TPC-B transaction committed, client by client: how long an
        application was stalled (a transaction waiting on a lock ends late, the ones behind it never start)."""
        longest = 0.0
        by_client = {}
        for t in self.transactions:
            if t.script == 0 and (since is None or t.end >= since) and (until is None or t.end <= until):
                by_client.setdefault(t.client, []).append(t.end)
        for ends in by_client.values():
            ends.sort()
            longest = max([longest] + [b - a for a, b in zip(ends, ends[1:])])
        return longest

    def problems(self) -> list[str]:
        """What makes the run not clean: failed transactions, a client aborted by anything but the stop request."""
        found = []
        if self.failed:
            found.append(
                "%d failed transaction(s) (%d deadlock, %d serialization)"
                % (self.failed, self.deadlock_failures, self.serialization_failures)
            )
        found.extend(self.unexpected_errors)
        if self.tpcb_transactions == 0:
            found.append("no TPC-B transaction committed:\n%s\n%s" % (self.stdout, self.stderr))
        return found


class PgbenchRunning:
    """A pgbench run in the background (``Pgbench.running``); ``result`` is set once the block ended."""

    def __init__(self, bench: Pgbench, clients: int, threads: int, extra: list[str]) -> None:
        self.bench = bench
        self.folder = tempfile.mkdtemp(prefix="pgbench-", dir=bench.workdir)
        script = os.path.join(self.folder, "stop.sql")
        with open(script, "w") as handle:
            handle.write(STOP_SCRIPT)
        self.command = bench.command(
            [
                "-n",  # no vacuum: pgbench would TRUNCATE pgbench_history first
                "-c",
                str(clients),
                "-j",
                str(threads),
                "-T",
                "900",  # a bound only: the block ends the run
                "--max-tries",
                "1",
                "--failures-detailed",
                "-l",
                "-b",
                "tpcb-like@%d" % (100 - STOP_WEIGHT),
                "-f",
                "%s@%d" % (script, STOP_WEIGHT),
            ]
            + list(extra)
        )
        self.clients = clients
        self.process = None
        self.result: PgbenchResult | None = None
        self.started = 0.0

    def start(self) -> PgbenchRunning:
        """Let the clients run, start pgbench, return once its first transactions committed."""
        self.bench.sql("DELETE FROM %s" % CONTROL_TABLE, "INSERT INTO %s VALUES (1)" % CONTROL_TABLE)
        self.started = time.time()
        self.process = subprocess.Popen(
            self.command,
            cwd=self.folder,
            env=self.bench.env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and self.process.poll() is None:
            if self._connected() >= self.clients:
                time.sleep(0.5)  # their first transactions commit: the application is "running"
                return self
            time.sleep(0.05)
        result = self.stop()
        raise RuntimeError("pgbench did not start:\n%s" % result.stderr)

    def _connected(self) -> int:
        """pgbench's sessions connected to the database now."""
        query = "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s AND datname = %s"
        return int(self.bench.sql(query, params=(self.bench.application_name, self.bench.dbname))[0][0])

    def stop(self) -> PgbenchResult:
        """Ask every client to stop, wait for pgbench's summary and parse it (and its logs)."""
        if self.result is not None:
            return self.result
        stopped = time.time()
        try:
            self.bench.sql("UPDATE %s SET go = 0" % CONTROL_TABLE)
        finally:
            try:
                stdout, stderr = self.process.communicate(timeout=120)
            except subprocess.TimeoutExpired:
                self.process.kill()
                stdout, stderr = self.process.communicate()
        self.result = parse_result(self.process.returncode, stdout, stderr, self.folder, self.started, stopped)
        shutil.rmtree(self.folder, ignore_errors=True)
        return self.result


def parse_result(
    returncode: int, stdout: str, stderr: str, folder: str, started: float, stopped: float
) -> PgbenchResult:
    """The summary (per-script counts, failures) and the per-transaction logs of a run stopped by ``STOP_SCRIPT``."""
    tpcb = 0
    for match in _SCRIPT_COUNT.finditer(stdout):
        if "TPC-B" in match.group(2):
            tpcb = int(match.group(3))
    if not tpcb:  # one script only: the totals
        found = re.search(r"number of transactions actually processed: (\d+)", stdout)
        tpcb = int(found.group(1)) if found else 0

    def count(label):
        found = re.search(r"^number of %s: (\d+)" % label, stdout, re.M)
        return int(found.group(1)) if found else 0

    unexpected = []
    for raw in stderr.splitlines():
        line = raw.strip()
        if not line or line in ("starting vacuum...end.", "pgbench: error: division by zero"):
            continue
        if "Run was aborted; the above results are incomplete" in line:
            continue  # the clients stopped on request: that is how a run ends here
        aborted = _ABORT.search(line)
        if aborted and aborted.group(3) == "1":
            continue
        unexpected.append(line)
    transactions = []
    for path in sorted(glob.glob(os.path.join(folder, "pgbench_log.*"))):
        with open(path) as handle:
            for line in handle:
                parts = line.split()
                if len(parts) < 6:
                    continue
                failure = None if parts[2].isdigit() else parts[2]
                transactions.append(
                    Transaction(
                        client=int(parts[0]),
                        end=int(parts[4]) + int(parts[5]) / 1e6,
                        latency=None if failure else int(parts[2]) / 1e6,
                        script=int(parts[3]),
                        failure=failure,
                    )
                )
    transactions.sort(key=lambda t: t.end)
    logged = sum(1 for t in transactions if t.script == 0 and t.failure is None)
    return PgbenchResult(
        returncode=returncode,
        stdout=stdout,
        stderr=stderr,
        # from the logs: the summary of a run whose clients were stopped can miss their last transactions
        # (seen: 138,591 in the summary, 138,593 in the logs and in the table)
        tpcb_transactions=logged or tpcb,
        failed=max(count("failed transactions"), sum(1 for t in transactions if t.failure)),
        deadlock_failures=count("deadlock failures"),
        serialization_failures=count("serialization failures"),
        unexpected_errors=unexpected,
        transactions=transactions,
        started=started,
        stopped=stopped,
    )


class Pgbench:
    """pgbench against one database of a ``tests.support.pgserver.PostgresServer``."""

    def __init__(self, server, dbname: str, workdir: str | None = None, application_name: str = "pgbench") -> None:
        self.server = server
        # bench/ names it bench-pgbench: its statements are then left out of the module's server-side counts
        self.application_name = application_name
        self.dbname = dbname
        self.workdir = workdir or tempfile.gettempdir()
        self.binary = os.path.join(server.bin_dir, "pgbench")
        if not os.path.exists(self.binary):
            raise RuntimeError("no pgbench beside the server's binaries in %s" % server.bin_dir)
        self.scale = 1

    def env(self) -> dict[str, str]:
        """pgbench's environment: the password through PGPASSWORD, never on its command line."""
        return dict(os.environ, PGPASSWORD=self.server.password, PGAPPNAME=self.application_name)

    def command(self, arguments: list[str]) -> list[str]:
        """``pgbench`` with the connection options and ``arguments``, the database last."""
        return (
            [
                self.binary,
                "-h",
                "127.0.0.1",
                "-p",
                str(self.server.port),
                "-U",
                "postgres",
            ]
            + arguments
            + [self.dbname]
        )

    def sql(self, *statements: str, params: tuple | None = None) -> list[tuple] | None:
        """Run ``statements`` on a fresh autocommit connection; return the last one's rows (None without rows)."""
        conn = self.server.connect(self.dbname, application_name="bench-pgbench-control")
        try:
            rows = None
            with conn.cursor() as cur:
                for statement in statements:
                    cur.execute(statement, params)
                    rows = cur.fetchall() if cur.description else None
            return rows
        finally:
            conn.close()

    def init(self, scale: int = 1, foreign_keys: bool = True, fillfactor: int | None = None) -> Pgbench:
        """``pgbench -i -s scale [--foreign-keys] [-F fillfactor]`` and the control table of the background runs."""
        self.scale = scale
        arguments = ["-i", "-q", "-s", str(scale)] + (["--foreign-keys"] if foreign_keys else [])
        arguments += ["-F", str(fillfactor)] if fillfactor else []
        done = subprocess.run(self.command(arguments), env=self.env(), capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise RuntimeError("pgbench -i failed:\n%s" % done.stderr)
        self.sql("CREATE TABLE IF NOT EXISTS %s (go int NOT NULL)" % CONTROL_TABLE)
        return self

    def seed_history(self, rows: int, months: int = 24) -> int:
        """Insert ``rows`` history rows (rounded down to pairs) spread over the ``months`` months up to now, each pair
        the same account, teller and branch with opposite deltas (so the balances stay consistent with the
        history). Returns the rows inserted."""
        pairs = rows // 2
        accounts, tellers, branches = 100000 * self.scale, 10 * self.scale, self.scale
        self.sql(
            "INSERT INTO pgbench_history (tid, bid, aid, delta, mtime) "
            "SELECT 1 + g %% %d, 1 + g %% %d, 1 + (g::bigint * 7919) %% %d, s.sign * (1 + g %% 5000), "
            "f.first + (f.last - f.first) * (g::float8 / %d) + CASE s.sign WHEN 1 THEN interval '0' "
            "ELSE interval '1 second' END "
            "FROM generate_series(0, %d) g "
            "CROSS JOIN (VALUES (1), (-1)) s(sign) "
            "CROSS JOIN (SELECT date_trunc('month', localtimestamp) - interval '%d months' AS first, "
            "localtimestamp - interval '1 minute' AS last) f"
            % (tellers, branches, accounts, pairs, pairs - 1, months - 1),
            "ANALYZE pgbench_history",
        )
        return pairs * 2

    def add_history_key(self) -> None:
        """A bigserial primary key on history (TPC-B's INSERT names its columns: the default fills it)."""
        self.sql("ALTER TABLE pgbench_history ADD COLUMN hid bigserial PRIMARY KEY", "ANALYZE pgbench_history")

    def timed(
        self, script: str, seconds: int, clients: int = 2, threads: int = 2, extra: Sequence[str] = ()
    ) -> PgbenchResult:
        """Run ``script`` (pgbench script text) for ``seconds`` (``-T``), ``--max-tries 1``; return the result (the
        script's committed transactions, failures, latencies from the per-transaction logs)."""
        folder = tempfile.mkdtemp(prefix="pgbench-", dir=self.workdir)
        path = os.path.join(folder, "script.sql")
        with open(path, "w") as handle:
            handle.write(script)
        command = self.command(
            [
                "-n",
                "-c",
                str(clients),
                "-j",
                str(threads),
                "-T",
                str(int(seconds)),
                "--max-tries",
                "1",
                "--failures-detailed",
                "-l",
                "-f",
                path,
            ]
            + list(extra)
        )
        started = time.time()
        done = subprocess.run(command, cwd=folder, env=self.env(), capture_output=True, text=True, check=False)
        result = parse_result(done.returncode, done.stdout, done.stderr, folder, started, time.time())
        shutil.rmtree(folder, ignore_errors=True)
        return result

    @contextlib.contextmanager
    def running(self, clients: int = 2, threads: int = 2, extra: list[str] | tuple = ()) -> Iterator[PgbenchRunning]:
        """TPC-B in the background for the duration of the block; ``.result`` once it ended (see the docstring)."""
        run = PgbenchRunning(self, clients, threads, list(extra)).start()
        try:
            yield run
        finally:
            run.stop()


def first_month(months: int = 24) -> datetime.date:
    """The first day of the month ``months - 1`` months ago: where ``seed_history``'s rows start."""
    today = datetime.date.today().replace(day=1)
    month = today.month - 1 - (months - 1)
    return datetime.date(today.year + month // 12, month % 12 + 1, 1)


def invariant(conn) -> dict[str, int]:
    """TPC-B's balance sums: every one must equal ``history`` (the sum of the history's deltas)."""
    with conn.cursor() as cur:
        cur.execute(
            "SELECT (SELECT coalesce(sum(abalance), 0) FROM pgbench_accounts), "
            "(SELECT coalesce(sum(bbalance), 0) FROM pgbench_branches), "
            "(SELECT coalesce(sum(tbalance), 0) FROM pgbench_tellers), "
            "(SELECT coalesce(sum(delta), 0) FROM pgbench_history)"
        )
        accounts, branches, tellers, history = cur.fetchone()
    if not conn.autocommit:
        conn.rollback()
    return {"accounts": int(accounts), "branches": int(branches), "tellers": int(tellers), "history": int(history)}


def history_rows(conn) -> int:
    """Rows of pgbench_history now."""
    with conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM pgbench_history")
        found = cur.fetchone()[0]
    if not conn.autocommit:
        conn.rollback()
    return int(found)
