"""Benchmark: migrating a live SIGETI-shaped fact table into yearly partitions, every method in one run.

    .venv/bin/python bench/migration.py [--scale 5000000]      (PG_BIN=/usr/lib/postgresql/15/bin for pg_partman)

Methods, each on a fresh copy of the same table (PK, two indexes, FK-free to keep copies cheap):
  floor     INSERT ... SELECT into an unindexed plain table
  offline   sigeti.dwh migrate: offline (one transaction: load, then index)
  naive     partitioned target with its indexes created first, one INSERT ... SELECT
  online    sigeti.dwh migrate: online, with a probe writing every 10 ms (longest stall measured)
  attach    sigeti.dwh migrate: attach (no copy): swap time and probe stall
  pg_partman partition_data_proc from the old table (when the extension is available on the server)
Prints the ratios table with the machine and the scale.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
# conftest makes the collection importable: ansible_collections.sigeti.dwh importable
import conftest  # noqa: E402,F401  # pylint: disable=unused-import
from tests.support.migration_driver import migrate  # noqa: E402
from tests.support.pgserver import PostgresServer  # noqa: E402

SOURCE = """
CREATE TABLE bench.src AS
SELECT g::bigint AS id,
       to_char(date '2020-01-01' + floor(2557 * sqrt(random()))::int, 'YYYYMMDD')::int AS date_key,
       1 + (g % 5000) AS entreprise_id, 1 + (g % 20000) AS lot_id,
       round((random() * 1e7)::numeric, 2) AS montant,
       (ARRAY['DEMANDEE','EN_COURS','ATTRIBUEE','REJETEE','ANNULEE'])[1 + g % 5]::varchar(20) AS statut,
       CASE WHEN g % 50 = 0 THEN repeat(md5(g::text), 60) WHEN g % 2 = 0 THEN 'dossier ' || g END AS commentaire,
       timestamptz '2020-01-01' + g * interval '1 minute' AS created_at
FROM generate_series(1, {rows}) g
"""


def fresh_fact(conn):
    with conn.cursor() as cur:
        cur.execute("DROP TABLE IF EXISTS bench.fait, bench.fait_unpartitioned CASCADE")
        cur.execute("DROP SCHEMA IF EXISTS sigeti_dwh CASCADE")
        cur.execute("""CREATE TABLE bench.fait (id bigserial PRIMARY KEY, date_key int NOT NULL, entreprise_id int,
                        lot_id int, montant numeric(14,2), statut varchar(20) NOT NULL, commentaire text,
                        created_at timestamptz NOT NULL DEFAULT now())""")
        cur.execute("INSERT INTO bench.fait SELECT * FROM bench.src")
        cur.execute("SELECT setval('bench.fait_id_seq', (SELECT max(id) FROM bench.fait))")
        cur.execute("CREATE INDEX fait_date_key_idx ON bench.fait (date_key)")
        cur.execute("CREATE INDEX fait_entreprise_idx ON bench.fait (entreprise_id)")
        cur.execute("VACUUM ANALYZE bench.fait")
        cur.execute("CHECKPOINT")


class Probe(threading.Thread):
    """Writes one row every 10 ms into the table being migrated; records the longest wait."""

    def __init__(self, server, db):
        super().__init__(daemon=True)
        self.conn = server.connect(db)
        self.stop = threading.Event()
        self.longest = 0.0
        self.writes = 0
        self.errors = []

    def run(self):
        with self.conn.cursor() as cur:
            while not self.stop.is_set():
                started = time.monotonic()
                try:
                    cur.execute("INSERT INTO bench.fait (date_key, statut) VALUES (20240615, 'PROBE')")
                    self.writes += 1
                except Exception as error:  # reported in the output
                    self.errors.append(str(error).strip())
                self.longest = max(self.longest, time.monotonic() - started)
                time.sleep(0.01)
        self.conn.close()


def timed(func):
    started = time.monotonic()
    value = func()
    return time.monotonic() - started, value


def run_sql(conn, *statements):
    with conn.cursor() as cur:
        for statement in statements:
            cur.execute(statement)


def yearly_ddl(conn, table):
    run_sql(conn, "CREATE TABLE %s (LIKE bench.fait INCLUDING DEFAULTS) PARTITION BY RANGE (date_key)" % table)
    for year in range(2020, 2031):
        run_sql(
            conn,
            "CREATE TABLE %s_%d PARTITION OF %s FOR VALUES FROM (%d0101) TO (%d0101)"
            % (table, year, table, year, year + 1),
        )
    run_sql(conn, "CREATE TABLE %s_default PARTITION OF %s DEFAULT" % (table, table))


def with_probe(server, db, func):
    probe = Probe(server, db)
    probe.start()
    time.sleep(0.1)
    try:
        seconds, result = timed(func)
    finally:
        probe.stop.set()
        probe.join(30)
    return seconds, result, probe


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scale", type=int, default=5000000, help="rows of the fact table (default 5M)")
    parser.add_argument("--batch-rows", type=int, default=200000)
    args = parser.parse_args(argv)
    server = PostgresServer(settings={"max_wal_size": "4GB", "shared_buffers": "512MB"}).start()
    server.wait_ready()
    results, notes = {}, []
    try:
        server.create_database("bench")
        conn = server.connect("bench")
        run_sql(conn, "SET maintenance_work_mem = '256MB'", "CREATE SCHEMA bench")
        load, _result = timed(lambda: run_sql(conn, SOURCE.format(rows=int(args.scale))))
        with conn.cursor() as cur:
            cur.execute("SELECT version(), pg_size_pretty(pg_total_relation_size('bench.src'))")
            version, size = cur.fetchone()
        print("source: %d rows, %s (generated in %.1f s)" % (args.scale, size, load), flush=True)

        fresh_fact(conn)
        results["floor"], _result = timed(
            lambda: run_sql(
                conn, "CREATE TABLE bench.floor (LIKE bench.fait)", "INSERT INTO bench.floor SELECT * FROM bench.fait"
            )
        )
        run_sql(conn, "DROP TABLE bench.floor")
        print("floor %.2f s" % results["floor"], flush=True)

        fresh_fact(conn)
        results["offline"], _result = timed(
            lambda: migrate(conn, "bench.fait", "date_key", mode="offline", extend_primary_key=True)
        )
        conn.autocommit = True
        print("offline %.2f s" % results["offline"], flush=True)

        fresh_fact(conn)

        def naive():
            yearly_ddl(conn, "bench.naive")
            run_sql(
                conn,
                "ALTER TABLE bench.naive ADD PRIMARY KEY (id, date_key)",
                "CREATE INDEX ON bench.naive (date_key)",
                "CREATE INDEX ON bench.naive (entreprise_id)",
                "INSERT INTO bench.naive SELECT * FROM bench.fait",
            )

        results["naive"], _result = timed(naive)
        run_sql(conn, "DROP TABLE bench.naive")
        print("naive %.2f s" % results["naive"], flush=True)

        fresh_fact(conn)
        expected = args.scale
        seconds, online, probe = with_probe(
            server,
            "bench",
            lambda: migrate(
                conn, "bench.fait", "date_key", mode="online", extend_primary_key=True, batch_rows=args.batch_rows
            ),
        )
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute("SELECT count(*) FROM bench.fait")
            found = cur.fetchone()[0]
        if found != expected + probe.writes:
            notes.append("ONLINE LOST ROWS: %d != %d + %d" % (found, expected, probe.writes))
        results["online"] = seconds
        results["online_stall"] = probe.longest
        results["online_swap"] = online["swap_seconds"]
        notes.append(
            "online: %d batches, %d replayed keys, %d probe writes (errors: %d), rows verified %d = %d + %d"
            % (
                online["batches"],
                online["replayed_keys"],
                probe.writes,
                len(probe.errors),
                found,
                expected,
                probe.writes,
            )
        )
        print("online %.2f s, stall %.3f s" % (seconds, probe.longest), flush=True)

        fresh_fact(conn)
        seconds, attach, probe = with_probe(
            server, "bench", lambda: migrate(conn, "bench.fait", "date_key", mode="attach", extend_primary_key=True)
        )
        conn.autocommit = True
        results["attach"] = seconds
        results["attach_swap"] = attach["swap_seconds"]
        results["attach_stall"] = probe.longest
        print("attach %.2f s, swap %.3f s, stall %.3f s" % (seconds, attach["swap_seconds"], probe.longest), flush=True)

        with conn.cursor() as cur:
            cur.execute("SELECT count(*) FROM pg_available_extensions WHERE name = 'pg_partman'")
            has_partman = cur.fetchone()[0] > 0
        if has_partman:
            fresh_fact(conn)

            def partman():
                run_sql(
                    conn,
                    "CREATE SCHEMA IF NOT EXISTS partman",
                    "CREATE EXTENSION IF NOT EXISTS pg_partman SCHEMA partman",
                    "ALTER TABLE bench.fait RENAME TO fait_old",
                )
                run_sql(
                    conn,
                    "CREATE TABLE bench.fait (LIKE bench.fait_old INCLUDING DEFAULTS) PARTITION BY RANGE (date_key)",
                    "ALTER TABLE bench.fait ADD PRIMARY KEY (id, date_key)",
                    "CREATE INDEX ON bench.fait (date_key)",
                    "CREATE INDEX ON bench.fait (entreprise_id)",
                )
                run_sql(
                    conn,
                    "SELECT partman.create_parent('bench.fait', 'date_key', 'native', '10000', "
                    "p_start_partition := '20200000', p_premake := 4)",
                )
                run_sql(
                    conn,
                    "CALL partman.partition_data_proc('bench.fait', p_batch := 1000, p_wait := 0, "
                    "p_source_table := 'bench.fait_old')",
                )

            try:
                results["pg_partman"], _result = timed(partman)
                print("pg_partman %.2f s" % results["pg_partman"], flush=True)
            except Exception as error:  # reported, not fatal
                notes.append("pg_partman failed: %s" % str(error).strip().splitlines()[0])
                conn.rollback() if not conn.autocommit else None
        else:
            notes.append("pg_partman: not available on this server (run with PG_BIN=/usr/lib/postgresql/15/bin)")
        conn.close()
    finally:
        server.destroy()

    floor, offline = results["floor"], results["offline"]
    print()
    print(
        "Migration benchmark: %d rows (%s), %s, %d CPUs, %s"
        % (args.scale, size, platform.platform(), os.cpu_count(), version.split(",")[0])
    )
    print("%-38s %10s %12s %12s" % ("method", "seconds", "vs floor", "vs offline"))
    rows = [
        ("INSERT...SELECT, unindexed (floor)", "floor"),
        ("offline (load, then index)", "offline"),
        ("naive (indexed target, one INSERT)", "naive"),
        ("online (batches, capture, swap)", "online"),
        ("attach (no copy; total incl. VALIDATE)", "attach"),
        ("pg_partman partition_data_proc", "pg_partman"),
    ]
    for label, key in rows:
        if key in results:
            print("%-38s %10.2f %11.2fx %11.2fx" % (label, results[key], results[key] / floor, results[key] / offline))
    print()
    print("online / offline = %.2f (goal <= 1.2)" % (results["online"] / offline))
    if "pg_partman" in results:
        print("pg_partman / online = %.2f (goal >= 3)" % (results["pg_partman"] / results["online"]))
    print(
        "online: longest probe stall %.3f s (goal <= 1 s), swap transaction %.3f s"
        % (results["online_stall"], results["online_swap"])
    )
    print(
        "attach: swap transaction %.3f s (goal <= 0.1 s), longest probe stall %.3f s"
        % (results["attach_swap"], results["attach_stall"])
    )
    for note in notes:
        print("note:", note)
    return 0


if __name__ == "__main__":
    sys.exit(main())
