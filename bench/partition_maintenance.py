"""Partition maintenance: sigeti.dwh.partitioned_table vs pg_partman on the same shape, measured in one run.

1. Create N daily partitions from scratch (module) vs ``partman.create_parent(... 'daily' ...)``.
2. A no-op run on those N daily partitions: database time and round trips of the module vs pg_partman's
   ``run_maintenance()`` (which does the same check inside the database, one round trip).

pg_partman 4.7 ships with Debian's PostgreSQL 15: run with ``PG_BIN=/usr/lib/postgresql/15/bin`` to compare;
without it the pg_partman columns say "absent".

    .venv/bin/python bench/partition_maintenance.py [--scale N]      # N partitions, default 1000
"""

from __future__ import annotations

import argparse
import datetime
import os
import statistics
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
# conftest makes the collection importable: makes ansible_collections.sigeti.dwh importable
import psycopg2  # noqa: E402
import psycopg2.extensions  # noqa: E402

import conftest  # noqa: E402,F401  # pylint: disable=unused-import
from tests.support.modules import run_module  # noqa: E402
from tests.support.pgserver import PostgresServer  # noqa: E402

STATS = {"round_trips": 0, "db_seconds": 0.0}


class CountingMixin:
    """Counts statements sent and the time spent waiting for the server (client-side, includes latency)."""

    def execute(self, query, vars=None):
        started = time.perf_counter()
        try:
            return super().execute(query, vars)
        finally:
            STATS["round_trips"] += 1
            STATS["db_seconds"] += time.perf_counter() - started
            if os.environ.get("BENCH_TRACE"):
                sys.stderr.write(
                    "  %.1f ms  %s\n" % ((time.perf_counter() - started) * 1000, str(query)[:90].replace("\n", " "))
                )


_COUNTING = {}


def counting_class(factory):
    """A subclass of ``factory`` (any cursor class, RealDictCursor included) that counts its executes."""
    if factory not in _COUNTING:
        _COUNTING[factory] = type("Counting" + factory.__name__, (CountingMixin, factory), {})
    return _COUNTING[factory]


class CountingConnection(psycopg2.extensions.connection):
    """A connection whose cursors count round trips; commits count too."""

    def cursor(self, *args, **kwargs):
        kwargs["cursor_factory"] = counting_class(kwargs.get("cursor_factory") or psycopg2.extensions.cursor)
        return super().cursor(*args, **kwargs)

    def commit(self):
        started = time.perf_counter()
        super().commit()
        STATS["round_trips"] += 1
        STATS["db_seconds"] += time.perf_counter() - started


_real_connect = psycopg2.connect


def counting_connect(*args, **kwargs):
    kwargs["connection_factory"] = CountingConnection
    return _real_connect(*args, **kwargs)


def run_counted(args):
    """Run the module in-process; return (wall seconds, database seconds, round trips, result)."""
    STATS.update(round_trips=0, db_seconds=0.0)
    psycopg2.connect = counting_connect
    try:
        started = time.perf_counter()
        result = run_module("partitioned_table", args)
        wall = time.perf_counter() - started
    finally:
        psycopg2.connect = _real_connect
    if result.get("failed"):
        raise SystemExit("module failed: %s" % result["msg"])
    return wall, STATS["db_seconds"], STATS["round_trips"], result


def timed(conn, statement, repeat=1):
    times = []
    with conn.cursor() as cur:
        for _round in range(repeat):
            started = time.perf_counter()
            cur.execute(statement)
            if cur.description:
                cur.fetchall()
            times.append(time.perf_counter() - started)
    return times


def ms(seconds):
    return "%.1f ms" % (seconds * 1000)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=int, default=1000, help="number of daily partitions (default 1000)")
    parser.add_argument("--repeat", type=int, default=5, help="no-op runs measured (median reported)")
    options = parser.parse_args()
    n = options.scale
    server = PostgresServer().start()
    server.wait_ready()
    try:
        server.create_database("bench")
        conn = server.connect("bench")
        with conn.cursor() as cur:
            cur.execute("SELECT current_date, version()")
            today, version = cur.fetchone()
        print("server: %s" % version.split(",")[0])
        premake = 4
        start = today - datetime.timedelta(days=n - premake - 1)
        with conn.cursor() as cur:
            cur.execute("CREATE TABLE sig (id bigint, k date NOT NULL, v text) PARTITION BY RANGE (k)")
            cur.execute("CREATE INDEX ON sig (k)")
        args = dict(
            server.params("bench"),
            name="public.sig",
            key="k",
            interval="day",
            start=start.isoformat(),
            premake=premake,
            default_partition=True,
            max_new_partitions=n + 1,  # the bench creates the whole set in one run on purpose
        )
        create_wall, create_db, create_trips, result = run_counted(args)
        assert len(result["created"]) == n + 1, len(result["created"])
        noop = [run_counted(args) for _round in range(options.repeat)]
        assert all(not r[3]["changed"] for r in noop)
        noop_wall = statistics.median(r[0] for r in noop)
        noop_db = statistics.median(r[1] for r in noop)
        noop_trips = noop[0][2]

        # Round trips must not grow with the partition count: measure the no-op on a tenth of the shape too.
        small_n = max(10, n // 10)
        with conn.cursor() as cur:
            cur.execute("CREATE TABLE sig_small (id bigint, k date NOT NULL, v text) PARTITION BY RANGE (k)")
        small_args = dict(
            args, name="public.sig_small", start=(today - datetime.timedelta(days=small_n - premake - 1)).isoformat()
        )
        run_counted(small_args)
        small_trips = run_counted(small_args)[2]

        partman = None
        with conn.cursor() as cur:
            cur.execute("SELECT default_version FROM pg_available_extensions WHERE name = 'pg_partman'")
            row = cur.fetchone()
        if row:
            with conn.cursor() as cur:
                cur.execute("CREATE SCHEMA partman; CREATE EXTENSION pg_partman SCHEMA partman")
                cur.execute("CREATE TABLE pm (id bigint, k date NOT NULL, v text) PARTITION BY RANGE (k)")
                cur.execute("CREATE INDEX ON pm (k)")
            create_pm = timed(
                conn,
                "SELECT partman.create_parent(p_parent_table => 'public.pm', p_control => 'k', "
                "p_type => 'native', p_interval => 'daily', p_premake => %d, "
                "p_start_partition => '%s')" % (premake, start.isoformat()),
            )[0]
            with conn.cursor() as cur:
                cur.execute("SELECT count(*) FROM pg_inherits WHERE inhparent = 'public.pm'::regclass")
                pm_count = cur.fetchone()[0]
            timed(conn, "SELECT partman.run_maintenance(p_analyze => false)")  # first call may still have work
            maint = timed(conn, "SELECT partman.run_maintenance(p_analyze => false)", repeat=options.repeat)
            partman = {"version": row[0], "create": create_pm, "count": pm_count, "noop": statistics.median(maint)}

        print("\n%d daily partitions (+ default), index on the key, PostgreSQL %s" % (n, server.version_num()))
        print("%-44s %14s %14s %12s" % ("", "wall", "database", "round trips"))
        print("%-44s %14s %14s %12d" % ("module: create from scratch", ms(create_wall), ms(create_db), create_trips))
        print(
            "%-44s %14s %14s %12d"
            % ("module: no-op run (median of %d)" % options.repeat, ms(noop_wall), ms(noop_db), noop_trips)
        )
        print("%-44s %14s %14s %12d" % ("module: no-op run on %d partitions" % small_n, "", "", small_trips))
        if partman:
            print(
                "%-44s %14s %14s %12d"
                % (
                    "pg_partman %s create_parent (%d partitions)" % (partman["version"], partman["count"]),
                    ms(partman["create"]),
                    ms(partman["create"]),
                    1,
                )
            )
            print(
                "%-44s %14s %14s %12d"
                % ("pg_partman run_maintenance() no-op (median)", ms(partman["noop"]), ms(partman["noop"]), 1)
            )
            print("\nratios (module / pg_partman; < 1 means the module is faster):")
            print("  create from scratch, database time: %.2f" % (create_db / partman["create"]))
            print("  no-op, database time:               %.2f" % (noop_db / partman["noop"]))
            print("  no-op, module wall (Python incl.):  %.2f" % (noop_wall / partman["noop"]))
        else:
            print("\npg_partman: absent on this server (run with PG_BIN=/usr/lib/postgresql/15/bin to compare)")
        print(
            "round trips of a no-op: %d at %d partitions, %d at %d partitions (constant: %s)"
            % (noop_trips, n, small_trips, small_n, noop_trips == small_trips)
        )
        conn.close()
    finally:
        server.destroy()


if __name__ == "__main__":
    main()
