"""Benchmark: table_info's catalog cost on a table with many partitions.

Claim checked: reading a partitioned table's facts costs a constant number of round trips and stays
under ~100 ms of database time with 1,000 partitions. Printed as ratios against a baseline measured in
the same run (reading the facts of a table with 10 partitions), never as a pass/fail timing.

    .venv/bin/python bench/table_info_partitions.py [--partitions 1000] [--repeat 5]
"""

import argparse
import datetime
import os
import statistics
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
# conftest makes the collection importable: import path for ansible_collections.sigeti.dwh
import conftest  # noqa: E402,F401  # pylint: disable=unused-import
from ansible_collections.sigeti.dwh.plugins.module_utils import catalog  # noqa: E402
from tests.support.pgserver import PostgresServer  # noqa: E402


class CountingConnection:
    """Wrap a psycopg2 connection and count the statements its cursors run (round trips)."""

    def __init__(self, conn):
        self._conn = conn
        self.statements = 0
        self.db_seconds = 0.0

    def __getattr__(self, name):
        return getattr(self._conn, name)

    def cursor(self, *args, **kwargs):
        import psycopg2.extensions

        base = kwargs.pop("cursor_factory", None) or psycopg2.extensions.cursor
        owner = self

        class Counting(base):
            def execute(self, query, params=None):
                owner.statements += 1
                started = time.perf_counter()
                try:
                    return super(Counting, self).execute(query, params)
                finally:
                    owner.db_seconds += time.perf_counter() - started

        return self._conn.cursor(*args, cursor_factory=Counting, **kwargs)


def make_table(conn, name, partitions):
    """Create a daily-partitioned table with ``partitions`` partitions, an index, and a few rows."""
    from psycopg2 import sql

    table = sql.Identifier(name)
    with conn.cursor() as cur:
        cur.execute(
            sql.SQL("CREATE TABLE {} (id bigint, d date NOT NULL, v text) PARTITION BY RANGE (d)").format(table)
        )
        cur.execute(sql.SQL("CREATE INDEX ON {} (d)").format(table))
        first = datetime.date(2020, 1, 1)
        for day in range(partitions):
            low = first + datetime.timedelta(days=day)
            cur.execute(
                sql.SQL("CREATE TABLE {} PARTITION OF {} FOR VALUES FROM ({}) TO ({})").format(
                    sql.Identifier("%s_%s" % (name, low.strftime("%Y%m%d"))),
                    table,
                    sql.Literal(low),
                    sql.Literal(low + datetime.timedelta(days=1)),
                )
            )
        cur.execute(
            sql.SQL(
                "INSERT INTO {} SELECT i, date '2020-01-01' + (i %% %s), 'x' FROM generate_series(1, 5000) i"
            ).format(table),
            (partitions,),
        )
        cur.execute(sql.SQL("ANALYZE {}").format(table))


def measure(conn, name, repeat):
    """Median total and database time (ms) and round trips of read_table + compression sample."""
    times, db_times, trips = [], [], 0
    for _attempt in range(repeat):
        counting = CountingConnection(conn)
        started = time.perf_counter()
        table = catalog.read_table(counting, "public", name)
        catalog.column_compression(
            counting, "public", name, ["v"], relpages=sum(e["relpages"] or 0 for e in table["relations"].values())
        )
        times.append((time.perf_counter() - started) * 1000)
        db_times.append(counting.db_seconds * 1000)
        trips = counting.statements
    return statistics.median(times), statistics.median(db_times), trips, len(table["partitions"])


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--partitions", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    server = PostgresServer().start()
    try:
        server.wait_ready()
        conn = server.connect()
        make_table(conn, "small", 10)
        make_table(conn, "large", args.partitions)
        conn.autocommit = False
        base_ms, base_db, base_trips, base_parts = measure(conn, "small", args.repeat)
        large_ms, large_db, large_trips, large_parts = measure(conn, "large", args.repeat)
        print("PostgreSQL bin: %s, %d cores, %d repeats (medians)" % (server.bin_dir, os.cpu_count(), args.repeat))
        print("%-26s %9s %9s %7s %9s" % ("case", "total ms", "DB ms", "trips", "DB ratio"))
        print(
            "%-26s %9.1f %9.1f %7d %9.2f" % ("baseline: %d partitions" % base_parts, base_ms, base_db, base_trips, 1.0)
        )
        print(
            "%-26s %9.1f %9.1f %7d %9.2f"
            % ("%d partitions" % large_parts, large_ms, large_db, large_trips, large_db / base_db)
        )
        print("round trips constant in the number of partitions: %s" % (base_trips == large_trips))
        print("database time under 100 ms with %d partitions: %s" % (large_parts, large_db < 100))
    finally:
        server.destroy()


if __name__ == "__main__":
    main()
