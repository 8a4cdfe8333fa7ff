"""Shared machinery of the reliability campaigns: reader probes, a logged writer, a module child process that
can be killed at a chosen statement, crash scenarios, convergence proofs and the figures report.

Adding a scenario to the crash, server-crash and load campaigns is one entry in ``SCENARIOS``.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import tempfile
import threading
import time

import psycopg2
from psycopg2 import sql

from tests.support import fingerprint as fp

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SEED = int(os.environ.get("SIGETI_CAMPAIGN_SEED", "20260101"))
APPLICATION_NAME = "sigeti.dwh"


# ---------------------------------------------------------------------------------------------------------------
# Figures: every campaign records its numbers; scripts/campaign.py prints them, the fast run prints them too
# ---------------------------------------------------------------------------------------------------------------


def record(campaign, **figures):
    """Append one line of figures to $SIGETI_CAMPAIGN_REPORT (when set) and print it (pytest -s / -rA shows it)."""
    line = dict(campaign=campaign, **figures)
    print("FIGURES " + json.dumps(line, sort_keys=True, default=str))
    path = os.environ.get("SIGETI_CAMPAIGN_REPORT")
    if path:
        with open(path, "a") as handle:
            handle.write(json.dumps(line, sort_keys=True, default=str) + "\n")


# ---------------------------------------------------------------------------------------------------------------
# Readers and writers running beside a module
# ---------------------------------------------------------------------------------------------------------------


class Probe:
    """A reader: runs ``query`` every ``interval`` seconds on its own connection, measures the longest stall.

    A stall is the time one query took to answer. Errors (the table missing, a lock timeout...) are collected:
    "usable at every moment" means no error and a bounded stall. ``tolerate_errors`` is for server crashes.
    """

    def __init__(self, dsn, query, interval=0.01, tolerate_errors=False):
        self.dsn, self.query, self.interval, self.tolerate = dsn, query, interval, tolerate_errors
        self.max_stall = 0.0
        self.queries = 0
        self.errors = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _connect(self):
        conn = psycopg2.connect(self.dsn, application_name="reliability-probe")
        conn.autocommit = True
        return conn

    def _run(self):
        conn = self._connect()
        try:
            while not self._stop.is_set():
                started = time.monotonic()
                try:
                    with conn.cursor() as cur:
                        cur.execute(self.query)
                        cur.fetchall()
                    self.queries += 1
                except psycopg2.Error as error:
                    self.errors.append(str(error).strip().splitlines()[0])
                    if conn.closed or isinstance(error, psycopg2.OperationalError):
                        conn = self._reconnect()
                self.max_stall = max(self.max_stall, time.monotonic() - started)
                time.sleep(self.interval)
        finally:
            if conn is not None:
                conn.close()

    def _reconnect(self):
        while not self._stop.is_set():
            try:
                return self._connect()
            except psycopg2.Error:
                time.sleep(0.05)
        return None

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self.stop()

    def stop(self):
        """Stop the thread; return the figures."""
        self._stop.set()
        self._thread.join(30)
        return self.figures()

    def figures(self):
        """max_stall_ms, queries and errors so far."""
        return {"max_stall_ms": round(self.max_stall * 1000, 1), "queries": self.queries, "errors": list(self.errors)}


class Writer:
    """A steady writer mix on ``schema.table(id, jour, val, note)``: inserts, updates and deletes, one per
    ``interval`` seconds, each its own transaction. ``expected`` holds what was *committed*: id -> val.

    A statement that fails (it should not: the writer has no lock_timeout, it waits) is rolled back and not logged.
    ``days`` is the range of ``jour`` values inserted, ``note_size`` the size of ``note`` (large = TOASTed).
    """

    def __init__(self, dsn, table, days, expected, interval=0.005, note_size=0, seed=SEED):
        self.dsn, self.table, self.days, self.interval = dsn, table, days, interval
        self.note_size = note_size
        self.expected = dict(expected)
        self.rng = random.Random(seed)
        self.max_latency = 0.0
        self.committed = {"insert": 0, "update": 0, "delete": 0}
        self.errors = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._next_id = max(self.expected or [0]) + 1

    def _note(self, ident):
        if not self.note_size:
            return None
        token = "%032x" % (ident * 2654435761 % (1 << 128))
        return (token + " lot %d " % ident) * (self.note_size // 40)

    def _run(self):
        conn = psycopg2.connect(self.dsn, application_name="reliability-writer")
        schema, name = self.table.split(".")
        target = sql.Identifier(schema, name)
        try:
            while not self._stop.is_set():
                kind = self.rng.choice(("insert", "insert", "update", "delete"))
                if kind != "insert" and not self.expected:
                    kind = "insert"
                started = time.monotonic()
                try:
                    with conn.cursor() as cur:
                        if kind == "insert":
                            ident = self._next_id
                            self._next_id += 1
                            val = self.rng.randint(0, 10**6)
                            cur.execute(
                                sql.SQL("INSERT INTO {} (id, jour, val, note) VALUES (%s, %s, %s, %s)").format(target),
                                (ident, self.rng.choice(self.days), val, self._note(ident)),
                            )
                        else:
                            ident = self.rng.choice(sorted(self.expected))
                            val = self.rng.randint(0, 10**6)
                            if kind == "update":
                                cur.execute(
                                    sql.SQL("UPDATE {} SET val = %s WHERE id = %s").format(target), (val, ident)
                                )
                            else:
                                cur.execute(sql.SQL("DELETE FROM {} WHERE id = %s").format(target), (ident,))
                            if cur.rowcount != 1:
                                raise AssertionError("%s of id %s touched %s rows" % (kind, ident, cur.rowcount))
                    conn.commit()
                except (psycopg2.Error, AssertionError) as error:
                    conn.rollback()
                    self.errors.append("%s: %s" % (kind, str(error).strip().splitlines()[0]))
                    continue
                finally:
                    self.max_latency = max(self.max_latency, time.monotonic() - started)
                if kind == "delete":
                    del self.expected[ident]
                else:
                    self.expected[ident] = val
                self.committed[kind] += 1
                time.sleep(self.interval)
        finally:
            conn.close()

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self.stop()

    def stop(self):
        """Stop the writer thread."""
        self._stop.set()
        self._thread.join(30)

    def compare(self, conn):
        """What is in the table vs what was committed: lost, duplicated, wrong values and unexpected ids."""
        schema, name = self.table.split(".")
        with conn.cursor() as cur:
            cur.execute(
                sql.SQL("SELECT id, val, count(*) OVER (PARTITION BY id) FROM {}").format(sql.Identifier(schema, name))
            )
            rows = cur.fetchall()
        actual = {r[0]: r[1] for r in rows}
        return {
            "lost": sorted(set(self.expected) - set(actual)),
            "unexpected": sorted(set(actual) - set(self.expected)),
            "duplicated": sorted({r[0] for r in rows if r[2] > 1}),
            "wrong_value": sorted(i for i in self.expected if i in actual and actual[i] != self.expected[i]),
        }

    def figures(self):
        """Committed operations, the longest writer latency and errors."""
        return {
            "committed": dict(self.committed),
            "max_writer_stall_ms": round(self.max_latency * 1000, 1),
            "writer_errors": list(self.errors),
        }


# ---------------------------------------------------------------------------------------------------------------
# A module (or the migration engine) in a child process, with a hook at its k-th statement
# ---------------------------------------------------------------------------------------------------------------

CHILD = r"""
import json, os, sys, threading
spec = json.loads(sys.argv[1])
sys.path.insert(0, spec["root"])
os.chdir(spec["root"])
import conftest  # noqa: F401  (ansible_collections.sigeti.dwh on sys.path)
import psycopg2, psycopg2.extensions

counter = {"n": 0}
point = spec.get("point") or 0

class Counting(psycopg2.extensions.cursor):
    def execute(self, query, vars=None):
        counter["n"] += 1
        if counter["n"] == point:
            # the parent acts on this line (kill -9 of this process, pg_terminate_backend, server crash)
            sys.stderr.write("AT %d\n" % point)
            sys.stderr.flush()
        return super(Counting, self).execute(query, vars)

_connect = psycopg2.connect
def connect(*args, **kwargs):
    kwargs.setdefault("cursor_factory", Counting)
    return _connect(*args, **kwargs)
psycopg2.connect = connect

if spec["kind"] == "module":
    from tests.support.modules import run_module
    result = run_module(spec["name"], spec["args"])
else:
    from tests.support.migration_driver import migrate
    conn = psycopg2.connect(spec["dsn"], application_name="sigeti.dwh")
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute("SET lock_timeout = '2s'")
    try:
        result = migrate(conn, spec["name"], **spec["args"])
        result.pop("queries", None)
    except Exception as error:
        result = {"failed": True, "msg": str(error)}
sys.stderr.write("COUNT %d\n" % counter["n"])
print(json.dumps(result, default=str))
"""


def start_child(spec):
    """Start the child process for ``spec`` (kind, name, args, dsn, point); stderr carries AT/COUNT lines."""
    spec = dict(spec, root=ROOT)
    return subprocess.Popen(
        [sys.executable, "-c", CHILD, json.dumps(spec)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def run_child(spec, on_point=None, rng=None, timeout=300):
    """Run the child; when it reaches its point call ``on_point(proc)`` after a random 0-20 ms.

    Returns ``{"returncode", "result", "count", "hit", "stderr"}``; ``hit`` says whether the point was reached.
    """
    proc = start_child(spec)
    hit = False
    count = None
    err_lines = []
    deadline = time.time() + timeout
    # stdout is read meanwhile: a result larger than the pipe's buffer (64 KiB: a roll-up's queries) would block the
    # child on its last print, and stderr would never end
    out_parts = []
    reader = threading.Thread(target=lambda: out_parts.append(proc.stdout.read()), daemon=True)
    reader.start()
    for line in proc.stderr:
        err_lines.append(line)
        if line.startswith("AT ") and on_point is not None and not hit:
            hit = True
            time.sleep((rng or random).uniform(0, 0.02))
            on_point(proc)
        elif line.startswith("COUNT "):
            count = int(line.split()[1])
        if time.time() > deadline:
            proc.kill()
            break
    proc.wait(timeout=60)
    reader.join(60)
    out = "".join(out_parts)
    result = None
    for text in reversed(out.strip().splitlines()):
        try:
            result = json.loads(text)
            break
        except ValueError:
            continue
    return {
        "returncode": proc.returncode,
        "result": result,
        "count": count,
        "hit": hit,
        "stderr": "".join(err_lines)[-3000:],
    }


def terminate_module_backends(dsn, db):
    """pg_terminate_backend every session of the module (application_name = 'sigeti.dwh') in ``db``."""
    conn = psycopg2.connect(dsn, application_name="reliability-killer")
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            cur.execute(
                "SELECT pid, pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE application_name = %s AND datname = %s",
                (APPLICATION_NAME, db),
            )
            return [r[0] for r in cur.fetchall()]
    finally:
        conn.close()


# ---------------------------------------------------------------------------------------------------------------
# Scenarios: a source built in SQL, the call that changes it, and what "converged" means beyond the fingerprint
# ---------------------------------------------------------------------------------------------------------------


def _exec(conn, *statements):
    with conn.cursor() as cur:
        for statement in statements:
            cur.execute(statement)


def _one(conn, query, params=None):
    with conn.cursor() as cur:
        cur.execute(query, params)
        return cur.fetchone()


NOTE = (
    "(SELECT string_agg(substr(md5((g %% 40 + %s)::text), 1, 16) || ' lot ' || (g %% 7), ' ') "
    "FROM generate_series(1, 200) g)"
)


def setup_recompression(conn, rows=1200):
    """rc.t: ~4.6 kB pglz-compressed notes, a primary key; the call converts them to lz4 online in batches."""
    _exec(
        conn,
        "CREATE SCHEMA rc",
        "CREATE TABLE rc.t (id int PRIMARY KEY, jour date NOT NULL, val int, note text)",
        "INSERT INTO rc.t SELECT i, date '2024-01-01' + i %% 300, i, %s FROM generate_series(1, %d) i"
        % (NOTE % "i", rows),
    )


def setup_vacuum_full(conn, rows=6000):
    """vf.p: 4 yearly partitions with a third of their rows deleted (bloat), autovacuum off on them."""
    _exec(
        conn,
        "CREATE SCHEMA vf",
        "CREATE TABLE vf.p (id int NOT NULL, jour date NOT NULL, val int, note text, PRIMARY KEY (id, jour)) "
        "PARTITION BY RANGE (jour)",
    )
    for year in range(2021, 2025):
        _exec(
            conn,
            "CREATE TABLE vf.p_%d PARTITION OF vf.p FOR VALUES FROM ('%d-01-01') TO ('%d-01-01') "
            "WITH (autovacuum_enabled = false)" % (year, year, year + 1),
        )
    _exec(
        conn,
        "CREATE INDEX p_val ON vf.p (val)",
        "INSERT INTO vf.p SELECT i, date '2021-01-01' + i %% 1460, i, repeat(md5(i::text), 8) "
        "FROM generate_series(1, %d) i" % rows,
        "DELETE FROM vf.p WHERE id % 3 = 0",
    )


def setup_partition_maintenance(conn, rows=3000):
    """pm.p monthly on a date key: months -8..-1 exist, rows of months 0..+1 wait in the default partition;
    the call creates months 0..+2 (moving those rows) and drops months older than 3 behind."""
    _exec(
        conn,
        "CREATE SCHEMA pm",
        "CREATE TABLE pm.p (id int NOT NULL, jour date NOT NULL, val int, note text, PRIMARY KEY (id, jour)) "
        "PARTITION BY RANGE (jour)",
        "CREATE TABLE pm.p_default PARTITION OF pm.p DEFAULT",
    )
    for back in range(8, 0, -1):
        low = "date_trunc('month', current_date)::date - interval '%d month'" % back
        high = "date_trunc('month', current_date)::date - interval '%d month'" % (back - 1)
        bounds = _one(conn, "SELECT (%s)::date::text, (%s)::date::text" % (low, high))
        _exec(conn, "CREATE TABLE pm.p_m%d PARTITION OF pm.p FOR VALUES FROM ('%s') TO ('%s')" % ((back,) + bounds))
    _exec(
        conn,
        "INSERT INTO pm.p SELECT i, date_trunc('month', current_date)::date - 240 + (i %% 300), i, "
        "md5(i::text) FROM generate_series(1, %d) i" % rows,
    )


def partition_maintenance_start(conn):
    """The declared start: the first day of the month 8 months ago."""
    return _one(conn, "SELECT (date_trunc('month', current_date) - interval '8 month')::date::text")[0]


def setup_migration(conn, rows=3000):
    """mg.fait: a plain fact table on an integer YYYYMMDD key, with a view; the call partitions it online."""
    _exec(
        conn,
        "CREATE SCHEMA mg",
        "CREATE TABLE mg.fait (id bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY, date_key int NOT NULL, "
        "montant numeric(12,2), note text)",
        "INSERT INTO mg.fait (date_key, montant, note) SELECT to_char(date '2020-01-01' + (i * 7919) %% 2500, "
        "'YYYYMMDD')::int, i * 1.5, md5(i::text) FROM generate_series(1, %d) i" % rows,
        "CREATE INDEX fait_date ON mg.fait (date_key)",
        "CREATE VIEW mg.v_fait AS SELECT date_key, sum(montant) AS total FROM mg.fait GROUP BY date_key",
    )


def _months(conn, first, last):
    """``[(back, low, high)]`` month bounds (text) from ``first`` months back to ``last`` months back."""
    out = []
    for back in range(first, last - 1, -1):
        low = "date_trunc('month', current_date)::date - interval '%d month'" % back
        high = "date_trunc('month', current_date)::date - interval '%d month'" % (back - 1)
        out.append((back,) + _one(conn, "SELECT (%s)::date::text, (%s)::date::text" % (low, high)))
    return out


def _monthly_set(conn, schema, first=6, rows=400, default=False):
    """``schema.p`` monthly on a date key, months ``first`` back .. 1 ahead, ``rows`` rows a month, a second index."""
    _exec(
        conn,
        "CREATE SCHEMA %s" % schema,
        "CREATE TABLE %s.p (id int NOT NULL, jour date NOT NULL, val int, note text, PRIMARY KEY (id, jour)) "
        "PARTITION BY RANGE (jour)" % schema,
        "CREATE INDEX p_val ON %s.p (val)" % schema,
    )
    if default:
        _exec(conn, "CREATE TABLE %s.p_default PARTITION OF %s.p DEFAULT" % (schema, schema))
    for back, low, high in _months(conn, first, -1):
        name = "p_m%d" % back if back >= 0 else "p_a%d" % -back
        _exec(
            conn,
            "CREATE TABLE %s.%s PARTITION OF %s.p FOR VALUES FROM ('%s') TO ('%s')" % (schema, name, schema, low, high),
        )
        _exec(
            conn,
            "INSERT INTO %s.p SELECT i, '%s'::date + (i %% 28), i, repeat(md5(i::text), 4) "
            "FROM generate_series(%d, %d) i" % (schema, low, (back + 2) * rows, (back + 3) * rows - 1),
        )


def setup_rollup(conn, rows=4000):
    """ru.p by day from the first day of 4 months ago to 2 days ahead, a default partition, ``rows`` rows spread
    over those days; the call merges every month that ended more than 20 days ago into one partition."""
    _exec(
        conn,
        "CREATE SCHEMA ru",
        "CREATE TABLE ru.p (id int NOT NULL, jour date NOT NULL, val int, note text, PRIMARY KEY (id, jour)) "
        "PARTITION BY RANGE (jour)",
        "CREATE INDEX p_val ON ru.p (val)",
        "CREATE TABLE ru.p_default PARTITION OF ru.p DEFAULT",
        "DO $$ DECLARE d date; BEGIN FOR d IN SELECT generate_series(%s::date, current_date + 2, '1 day') LOOP "
        "EXECUTE format('CREATE TABLE ru.%%I PARTITION OF ru.p FOR VALUES FROM (%%L) TO (%%L)', "
        "'p_' || to_char(d, 'YYYYMMDD'), d, d + 1); END LOOP; END $$" % ("'%s'" % rollup_start(conn)),
        "INSERT INTO ru.p SELECT i, %s::date + (i %% (current_date - %s::date + 1)), i, md5(i::text) "
        "FROM generate_series(1, %d) i" % ("'%s'" % rollup_start(conn), "'%s'" % rollup_start(conn), rows),
    )


def rollup_start(conn):
    """The declared start of ru.p: the first day of the month 4 months ago."""
    return _one(conn, "SELECT (date_trunc('month', current_date) - interval '4 month')::date::text")[0]


def _no_rollup_leftovers(conn):
    rels = _all(conn, "SELECT relname FROM pg_class WHERE relname LIKE '%%sgt%%'")
    checks = _all(conn, "SELECT conname FROM pg_constraint WHERE conname LIKE '%%sgt%%'")
    return ["leftover relations or constraints %r" % (rels + checks)] if rels or checks else []


TIER_TABLESPACE = "crash_cold"


def setup_tier_move(conn):
    """tr.p: 6 old months and the current ones in pg_default, and the cluster's tablespace crash_cold (made once, in
    a folder the server's user owns); the call moves the months older than 2 there, with their indexes."""
    if not _one(conn, "SELECT count(*) FROM pg_tablespace WHERE spcname = %s", (TIER_TABLESPACE,))[0]:
        from tests.support.pgserver import shared_root

        data = os.stat(_one(conn, "SHOW data_directory")[0])
        folder = tempfile.mkdtemp(prefix="sigeti-crash-ts-", dir=shared_root((data.st_uid, data.st_gid)))
        os.chown(folder, data.st_uid, data.st_gid)
        _exec(conn, "CREATE TABLESPACE %s LOCATION '%s'" % (TIER_TABLESPACE, folder))
    _monthly_set(conn, "tr")


def _tiers_placed(conn):
    """Every table and index of the months older than 2 in crash_cold, the others in pg_default."""
    old = {"p_m%d" % back for back in range(3, 7)}
    placed = _all(
        conn,
        "SELECT c.relname, coalesce(t.spcname, 'pg_default') FROM pg_class c "
        "JOIN pg_namespace n ON n.oid = c.relnamespace LEFT JOIN pg_tablespace t ON t.oid = c.reltablespace "
        "WHERE n.nspname = 'tr' AND c.relkind IN ('r', 'i') ORDER BY 1",
    )
    wrong = [
        (relation, space)
        for relation, space in placed
        if space
        != (TIER_TABLESPACE if any(relation == p or relation.startswith(p + "_") for p in old) else "pg_default")
    ]
    return ["misplaced after the re-run: %r" % wrong] if wrong else []


# Archive folders of the parquet scenario: one per database (its oid, the same for a crashed run and its re-run,
# another for each crash point's fresh copy), under one folder of this process.
ARCHIVE_ROOT = []


def archive_dir(conn):
    """The archive folder of the database ``conn`` is connected to."""
    if not ARCHIVE_ROOT:
        ARCHIVE_ROOT.append(tempfile.mkdtemp(prefix="sigeti-crash-archive-"))
    oid = _one(conn, "SELECT oid FROM pg_database WHERE datname = current_database()")[0]
    folder = os.path.join(ARCHIVE_ROOT[0], str(oid))
    os.makedirs(folder, exist_ok=True)
    return folder


def setup_parquet_retention(conn):
    """pq.p: 6 old months and the current ones, a default partition; the call archives the months older than 2 to
    verified Parquet files, then detaches and drops them."""
    _monthly_set(conn, "pq", default=True)


def _archived(folder):
    """``{partition: (manifest path, Parquet path)}`` of the complete archives (manifest present) in ``folder``."""
    from ansible_collections.sigeti.dwh.plugins.module_utils.archive.parquet import read_manifest

    found = {}
    for top, _dirs, names in os.walk(folder):
        for name in names:
            if name.endswith(".manifest.json"):
                manifest = read_manifest(os.path.join(top, name))
                found[manifest.table] = (manifest, os.path.join(top, manifest.parquet_file))
    return found


def archive_content(conn):
    """``(rows, digest)`` over pq's tables and its archives together: each partition counted once, by its checksum
    in the database (attached or detached) or, once gone, by its Parquet file read back into PostgreSQL. A manifest
    whose file does not give its checksum (a half file published) shows as a different digest, as lost rows would."""
    from ansible_collections.sigeti.dwh.plugins.module_utils.archive.parquet import require_pyarrow
    from ansible_collections.sigeti.dwh.plugins.module_utils.archive.run import checksum_parquet
    from ansible_collections.sigeti.dwh.plugins.module_utils.catalog.archive import checksum_table

    entries = {}
    for (name,) in _all(
        conn,
        "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname = 'pq' AND c.relkind = 'r' AND c.relname <> 'p_default' ORDER BY 1",
    ):
        entries[name] = checksum_table(conn, "pq", name).text()
    for name, (manifest, parquet) in _archived(archive_dir(conn)).items():
        try:
            read_back = checksum_parquet(conn, require_pyarrow(), parquet, manifest.columns).text()
        except Exception as error:  # an unreadable file is a lost archive
            read_back = "unreadable: %s" % error
        if read_back != manifest.checksum:
            read_back = "manifest %s, file %s" % (manifest.checksum, read_back)
        if entries.setdefault(name, read_back) != read_back:
            entries[name] += " | archive " + read_back
    rows = sum(int(text.split(":")[1]) for text in entries.values() if text.startswith("md5-rowsum-v1:"))
    return rows, json.dumps(sorted(entries.items()))


def _archives_complete(conn):
    """After the re-run: every month older than 2 archived (manifest and file) and gone, no temporary file left."""
    problems = []
    folder = archive_dir(conn)
    left = [n for _top, _dirs, names in os.walk(folder) for n in names if ".tmp-" in n]
    if left:
        problems.append("temporary files left: %r" % left)
    archived = sorted(_archived(folder))
    if archived != sorted("p_m%d" % back for back in range(3, 7)):
        problems.append("archived %r" % archived)
    kept = _all(conn, "SELECT relname FROM pg_class WHERE relname = ANY(%s)", (archived,))
    if kept:
        problems.append("archived and still there: %r" % kept)
    return problems


class Scenario:
    """One crash-campaign scenario.

    ``setup(conn)`` builds the source; ``spec(server, db, conn)`` returns the child spec (kind module|migration,
    name, args); ``table`` is read by the probe and checksummed; ``check(conn)`` returns extra convergence
    problems (a list of strings, empty when converged).
    """

    def __init__(self, name, setup, table, spec, check=None, content=None):
        self.name, self.setup, self.table, self.spec, self.check = name, setup, table, spec, check
        self._content = content

    def content(self, conn):
        """``(rows, md5)`` of what must never be lost: the table's rows (or what ``content`` says)."""
        if self._content is not None:
            return self._content(conn)
        return fp.content(conn, *self.table.split("."))


def _module_args(server, db, **extra):
    args = server.params(db)
    args.update(lock_timeout="2s", lock_retries=3, lock_retry_delay=0.2)
    args.update(extra)
    return args


def _all_lz4(conn):
    rows = dict(_all(conn, "SELECT coalesce(pg_column_compression(note), 'none'), count(*) FROM rc.t GROUP BY 1"))
    return [] if set(rows) <= {"lz4"} else ["values not yet lz4: %r" % rows]


def _no_migration_leftovers(conn):
    problems = []
    rels = _all(conn, "SELECT relname FROM pg_class WHERE relname LIKE '%%sgt%%' OR relname LIKE 'mig_log%%'")
    if rels:
        problems.append("leftover relations %r" % rels)
    triggers = _all(conn, "SELECT tgname FROM pg_trigger WHERE tgname LIKE 'sigeti_dwh_capture%%'")
    if triggers:
        problems.append("leftover triggers %r" % triggers)
    if _one(conn, "SELECT to_regclass('sigeti_dwh.migration_state')")[0]:
        state = _all(conn, "SELECT * FROM sigeti_dwh.migration_state")
        if state:
            problems.append("leftover state rows %r" % state)
    if _one(conn, "SELECT relkind FROM pg_class WHERE oid = 'mg.fait'::regclass")[0] != "p":
        problems.append("mg.fait is not partitioned")
    return problems


def _all(conn, query, params=None):
    with conn.cursor() as cur:
        cur.execute(query, params)
        return cur.fetchall()


def leaves_content(schema):
    """Content of every plain table of ``schema`` together: rows detached by retention still count as kept."""

    def content(conn):
        query = sql.SQL("SELECT count(*), coalesce(md5(string_agg(h, ',' ORDER BY h)), '') FROM ({}) s").format(
            sql.SQL(" UNION ALL ").join(
                sql.SQL("SELECT md5(t::text) AS h FROM {} t").format(sql.Identifier(schema, r[0]))
                for r in _all(
                    conn,
                    "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                    "WHERE n.nspname = %s AND c.relkind = 'r' ORDER BY 1",
                    (schema,),
                )
            )
        )
        count, digest = _one(conn, query)
        return int(count), digest

    return content


def setup_undo(conn):
    """un.p: a monthly set (months 6 back .. 1 ahead) with a default partition holding rows; the call makes it plain."""
    _monthly_set(conn, "un", first=6, rows=200, default=True)
    _exec(
        conn,
        "INSERT INTO un.p SELECT i, date '2001-01-01' + i % 400, i, md5(i::text) FROM generate_series(90001, 90150) i",
    )


def _no_undo_leftovers(conn):
    """The state of an uninterrupted undo: un.p plain, the set kept as un.p_partitioned, no capture, log nor state."""
    problems = []
    rels = _all(conn, "SELECT relname FROM pg_class WHERE relname LIKE '%%sgt%%'")
    if rels:
        problems.append("leftover relations %r" % rels)
    triggers = _all(conn, "SELECT DISTINCT tgname FROM pg_trigger WHERE tgname LIKE 'sigeti_undo_capture%%'")
    functions = _all(conn, "SELECT proname FROM pg_proc WHERE proname LIKE 'sigeti_undo_capture%%'")
    if triggers or functions:
        problems.append("leftover capture %r %r" % (triggers, functions))
    if _one(conn, "SELECT to_regclass('sigeti_dwh.migration_state')")[0]:
        state = _all(conn, "SELECT * FROM sigeti_dwh.migration_state")
        if state:
            problems.append("leftover state rows %r" % state)
    kinds = dict(_all(conn, "SELECT relname, relkind::text FROM pg_class WHERE relname IN ('p', 'p_partitioned')"))
    if kinds != {"p": "r", "p_partitioned": "p"}:
        problems.append("un.p is not plain beside the kept un.p_partitioned: %r" % kinds)
    return problems


def _module_undo(migrate, **extra):
    """The spec of un.p's undo (``state: plain``) through ``partitioned_table``."""
    return lambda server, db, conn: {
        "kind": "module",
        "name": "partitioned_table",
        "args": _module_args(server, db, name="un.p", state="plain", migrate=migrate, **extra),
    }


def _module_migration(**extra):
    """The spec of mg.fait's migration through ``partitioned_table`` (``extra``: the mode and its options)."""
    return lambda server, db, conn: {
        "kind": "module",
        "name": "partitioned_table",
        "args": _module_args(
            server,
            db,
            name="mg.fait",
            key="date_key",
            key_format="yyyymmdd",
            interval="year",
            start="2020-01-01",
            premake=1,
            extend_primary_key=True,
            **extra,
        ),
    }


SCENARIOS = {
    "recompression": Scenario(
        "recompression",
        setup_recompression,
        "rc.t",
        lambda server, db, conn: {
            "kind": "module",
            "name": "compression",
            "args": _module_args(
                server, db, name="rc.t", columns={"note": "lz4"}, recompress="online", batch_size=60, measure="exact"
            ),
        },
        _all_lz4,
    ),
    "vacuum_full": Scenario(
        "vacuum_full",
        setup_vacuum_full,
        "vf.p",
        lambda server, db, conn: {
            "kind": "module",
            "name": "vacuum",
            "args": _module_args(
                server,
                db,
                tables=["vf.p"],
                full="always",
                full_method="vacuum_full",
                vacuum="never",
                analyze="never",
                disk_check="never",
            ),
        },
    ),
    "partition_maintenance": Scenario(
        "partition_maintenance",
        setup_partition_maintenance,
        "pm.p",
        lambda server, db, conn: {
            "kind": "module",
            "name": "partitioned_table",
            "args": _module_args(
                server,
                db,
                name="pm.p",
                key="jour",
                interval="month",
                start=partition_maintenance_start(conn),
                premake=2,
                # every old month in one run: with the default max_per_run (3) an interrupted run plus its re-run
                # retire more months than one uninterrupted run, a different (and also converging) state
                retention={"keep": 3, "action": "detach", "max_per_run": 12},
            ),
        },
        content=leaves_content("pm"),
    ),
    "tier_move": Scenario(
        "tier_move",
        setup_tier_move,
        "tr.p",
        lambda server, db, conn: {
            "kind": "module",
            "name": "partitioned_table",
            "args": _module_args(
                server,
                db,
                name="tr.p",
                key="jour",
                interval="month",
                start=_months(conn, 6, 6)[0][1],
                premake=1,
                tiers=[{"after": 2, "tablespace": TIER_TABLESPACE}],
                tiers_max_per_run=12,  # every old month in one run (see partition_maintenance)
            ),
        },
        _tiers_placed,
    ),
    # Killed anywhere in the export, the detach or the drop: each month stays attached (or detached with its rows)
    # or is archived complete and verified; never a manifest for a half file (archive_content reads every one back).
    # A month a kill leaves between its detach and its drop is recognised by its published manifest (same table OID,
    # intact file), checked again and dropped by the re-run, so the re-run converges to the uninterrupted state.
    "parquet_retention": Scenario(
        "parquet_retention",
        setup_parquet_retention,
        "pq.p",
        lambda server, db, conn: {
            "kind": "module",
            "name": "partitioned_table",
            "args": _module_args(
                server,
                db,
                name="pq.p",
                key="jour",
                interval="month",
                start=_months(conn, 6, 6)[0][1],
                premake=1,
                retention={"keep": 2, "action": "parquet", "archive_dir": archive_dir(conn), "max_per_run": 12},
            ),
        },
        _archives_complete,
        content=archive_content,
    ),
    "rollup": Scenario(
        "rollup",
        setup_rollup,
        "ru.p",
        lambda server, db, conn: {
            "kind": "module",
            "name": "partitioned_table",
            "args": _module_args(
                server,
                db,
                name="ru.p",
                key="jour",
                interval="day",
                start=rollup_start(conn),
                premake=2,
                max_new_partitions=400,
                rollup={"after": 20, "interval": "month", "max_per_run": 12},  # every due month in one run
            ),
        },
        _no_rollup_leftovers,
    ),
    # The live migration through the engine alone; MODULE_MIGRATION drives the same through partitioned_table.
    "migration": Scenario(
        "migration",
        setup_migration,
        "mg.fait",
        lambda server, db, conn: {
            "kind": "migration",
            "name": "mg.fait",
            "dsn": server.dsn(db),
            "args": {
                "key": "date_key",
                "extend_primary_key": True,
                "batch_rows": 150,
                "retries": 3,
                "retry_delay": 0.2,
            },
        },
        _no_migration_leftovers,
    ),
    # offline through the module: its shadow is committed before the copy (the second half is copied on a second
    # connection), so a crash between that commit and the swap leaves a shadow the next run must drop
    "offline_migration": Scenario(
        "offline_migration", setup_migration, "mg.fait", _module_migration(migrate="offline"), _no_migration_leftovers
    ),
    # state: plain, offline (one transaction: a kill before its commit leaves the set in use) and online (capture,
    # batched copy, catch-up, short swap; a kill past the swap leaves the post-swap statements to the next run)
    "undo_offline": Scenario("undo_offline", setup_undo, "un.p", _module_undo("offline"), _no_undo_leftovers),
    "undo_online": Scenario(
        "undo_online", setup_undo, "un.p", _module_undo("online", batch_rows=150), _no_undo_leftovers
    ),
}


# The migration through the module itself (the full campaign runs it;
# the fast subset keeps the engine entry above, which does not depend on the module's option parsing).
MODULE_MIGRATION = Scenario(
    "migration_module",
    setup_migration,
    "mg.fait",
    _module_migration(migrate="online", batch_rows=150),
    _no_migration_leftovers,
)


# ---------------------------------------------------------------------------------------------------------------
# Databases: one template per scenario, one copy per crash point
# ---------------------------------------------------------------------------------------------------------------


def quote(identifier):
    """A double-quoted identifier (for the probe's constant query text)."""
    return '"%s"' % identifier.replace('"', '""')


def create_from_template(server, name, template):
    """``CREATE DATABASE name TEMPLATE template`` (a file copy: much faster than building the source again)."""
    conn = server.connect()
    try:
        with conn.cursor() as cur:
            cur.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
            cur.execute(
                sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(sql.Identifier(name), sql.Identifier(template))
            )
    finally:
        conn.close()
    return name


def drop_database(server, name):
    """Drop a campaign database (closing its sessions)."""
    conn = server.connect()
    try:
        with conn.cursor() as cur:
            cur.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
    finally:
        conn.close()


def run_in_process(spec):
    """Run a spec here (no kill hook): what a person does after a crash, re-running the same task."""
    if spec["kind"] == "module":
        from tests.support.modules import run_module

        return run_module(spec["name"], spec["args"])
    from tests.support.migration_driver import migrate

    conn = psycopg2.connect(spec["dsn"], application_name=APPLICATION_NAME)
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            cur.execute("SET lock_timeout = '2s'")
        return migrate(conn, spec["name"], **spec["args"])
    except Exception as error:  # reported as a failed run, like a module's fail_json
        return {"failed": True, "msg": str(error)}
    finally:
        conn.close()


def rerun(scenario, server, db, attempts=3):
    """Run the call again, uninterrupted, until it succeeds (a lock still held by the dying session may need a
    second try); return its result."""
    conn = server.connect(db)
    try:
        spec = scenario.spec(server, db, conn)
    finally:
        conn.close()
    last = None
    for _attempt in range(attempts):
        last = run_in_process(spec)
        if not last.get("failed"):
            return last
        if spec["kind"] == "migration" and "no migration of it is in progress" in last.get("msg", ""):
            # The crash hit after the migration's last commit: the engine alone has nothing left to do (the module
            # then manages the partitions). Whether it really finished cleanly is for the fingerprint to say.
            return {"changed": False, "finished_before_the_crash": True}
        time.sleep(0.5)
    raise AssertionError("%s: the re-run did not succeed: %r" % (scenario.name, last))


class Campaign:
    """A crash campaign of one scenario on one server: a template, a reference run, then ``points`` crashes.

    ``action(proc, server, db)`` is what happens at the crash point (kill -9, pg_terminate_backend, server crash).
    """

    def __init__(self, server, scenario, label):
        self.server, self.scenario, self.label = server, scenario, label
        self.template = "tmpl_%s" % scenario.name
        self.reference = None
        self.source = None
        self.count = None

    def prepare(self):
        """Build the template, run the call uninterrupted on a copy: reference fingerprint and statement count."""
        self.server.create_database(self.template)
        conn = self.server.connect(self.template)
        try:
            self.scenario.setup(conn)
            self.source = self.scenario.content(conn)
        finally:
            conn.close()
        ref = create_from_template(self.server, "ref_%s" % self.scenario.name, self.template)
        conn = self.server.connect(ref)
        try:
            spec = self.scenario.spec(self.server, ref, conn)
        finally:
            conn.close()
        done = run_child(spec)
        assert done["returncode"] == 0 and not (done["result"] or {}).get("failed"), done
        self.count = done["count"]
        conn = self.server.connect(ref)
        try:
            self.reference = fp.fingerprint(conn)
            problems = self.scenario.check(conn) if self.scenario.check else []
        finally:
            conn.close()
        assert not problems, problems
        drop_database(self.server, ref)
        return self

    def points(self, n, rng):
        """``n`` seeded random statement numbers in 1..count (distinct when possible), sorted."""
        population = range(1, self.count + 1)
        return sorted(rng.sample(population, n) if n <= self.count else [rng.choice(population) for _draw in range(n)])

    def crash_at(self, point, action, rng, tolerate_probe_errors=False):
        """One crash point: copy, probe, child with its hook, the action, checks, re-run, convergence proof."""
        db = create_from_template(self.server, "pt_%s" % self.scenario.name, self.template)
        table = self.scenario.table
        schema, name = table.split(".")
        query = "SELECT count(*) FROM %s.%s" % (quote(schema), quote(name))
        outcome = {"point": point, "problems": []}
        conn0 = self.server.connect(db)
        try:
            spec = self.scenario.spec(self.server, db, conn0)
        finally:
            conn0.close()
        spec["point"] = point
        with Probe(self.server.dsn(db), query, tolerate_errors=tolerate_probe_errors) as probe:
            crashed = run_child(spec, on_point=lambda proc: action(proc, self.server, db), rng=rng)
            outcome["hit"] = crashed["hit"]
            outcome["child_exit"] = crashed["returncode"]
            conn = self.server.connect(db)
            try:
                # the table is usable right after the crash, and still holds exactly the source rows
                after_crash = self.scenario.content(conn)
            finally:
                conn.close()
            if after_crash != self.source:
                outcome["problems"].append("content after the crash %r != source %r" % (after_crash, self.source))
            try:
                rerun(self.scenario, self.server, db)
            except AssertionError as error:
                outcome["problems"].append(str(error))
            figures = probe.stop()
        conn = self.server.connect(db)
        try:
            final = fp.fingerprint(conn)
            outcome["problems"].extend(self.scenario.check(conn) if self.scenario.check else [])
            final_content = self.scenario.content(conn)
            outcome["rows"] = final_content[0]
        finally:
            conn.close()
        outcome["problems"].extend(fp.diff(self.reference, final))
        if final_content != self.source:
            outcome["problems"].append("final content %r differs from the source %r" % (final_content, self.source))
        outcome["rows_lost"] = self.source[0] - outcome["rows"]
        outcome["max_stall_ms"] = figures["max_stall_ms"]
        errors = [] if tolerate_probe_errors else figures["errors"]
        if errors:
            outcome["problems"].append("reader errors: %r" % errors[:5])
        drop_database(self.server, db)
        return outcome

    def run(self, points, action, rng, tolerate_probe_errors=False):
        """Every point; returns the figures (also recorded) and the failed outcomes."""
        outcomes = [self.crash_at(p, action, rng, tolerate_probe_errors) for p in points]
        converged = [o for o in outcomes if not o["problems"]]
        figures = {
            "scenario": self.scenario.name,
            "action": self.label,
            "points": len(outcomes),
            "crashed": sum(1 for o in outcomes if o["hit"]),
            "converged": len(converged),
            "rows_lost": sum(max(o["rows_lost"], 0) for o in outcomes),
            "max_reader_stall_ms": max([o["max_stall_ms"] for o in outcomes] or [0]),
            "statements": self.count,
            "seed": SEED,
        }
        summary = "%s/%s: %d/%d converged, %d rows lost" % (
            self.scenario.name,
            self.label,
            figures["converged"],
            figures["points"],
            figures["rows_lost"],
        )
        figures["summary"] = summary
        print(summary)
        record("crash", **figures)
        return figures, [o for o in outcomes if o["problems"]]


def kill_process(proc, server, db):
    """kill -9 of the process running the module."""
    proc.kill()


def terminate_backend(proc, server, db):
    """pg_terminate_backend of the module's session, found by application_name."""
    terminate_module_backends(server.dsn(), db)


def crash_server(proc, server, db):
    """pg_ctl stop -m immediate, then start again."""
    server.stop("immediate")
    server.start()
    server.wait_ready()
