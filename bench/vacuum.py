"""Benchmark: the vacuum module's weekly pass against the guide's "VACUUM ANALYZE everything", and rewrites.

Claims checked (issue 6), as ratios measured in this run, never as pass/fail timings:
- on an unchanged warehouse (nothing due) the module's pass takes >= 10x less time than running
  ``VACUUM ANALYZE`` on every table, and stays flat as the warehouse grows (two scales, ``--scale`` and
  ``--factor`` times it);
- a 50%-dead table rewritten by ``full: auto``: time of VACUUM FULL and of pg_repack (when installed, on Debian's
  PostgreSQL 15), and the longest stall a concurrent writer saw (a probe thread inserting one row every 10 ms
  into that table and recording the slowest insert).

    .venv/bin/python bench/vacuum.py [--scale 500000] [--factor 4] [--bloat-rows 400000] [--repeat 3]
"""

import argparse
import os
import statistics
import sys
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
# conftest makes ansible_collections.sigeti.dwh importable
# conftest makes the collection importable: import path for ansible_collections.sigeti.dwh
import conftest  # noqa: E402,F401  # pylint: disable=unused-import
from tests.support.modules import run_module  # noqa: E402
from tests.support.pgserver import PostgresServer  # noqa: E402
from tests.support.warehouse import load_warehouse  # noqa: E402

SCHEMAS = ["dwh_dim", "dwh_facts", "dwh_marts"]
PG15_BIN = "/usr/lib/postgresql/15/bin"


def one(conn, statement):
    with conn.cursor() as cur:
        cur.execute(statement)
        return cur.fetchone()[0]


def mb(value):
    return "%.1f MB" % (value / 1048576.0)


def module_pass(server, db, **extra):
    args = server.params(db)
    args.update(extra)
    start = time.monotonic()
    result = run_module("vacuum", args)
    seconds = time.monotonic() - start
    if result.get("failed"):
        raise SystemExit("module failed: %s" % result["msg"])
    return seconds, result


def guide_pass(conn):
    """The guide's weekly step: VACUUM ANALYZE on every table of the warehouse schemas, whatever their state."""
    with conn.cursor() as cur:
        cur.execute(
            "SELECT format('%%I.%%I', n.nspname, c.relname) FROM pg_class c "
            "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = ANY(%s) "
            "AND c.relkind IN ('r', 'p') AND NOT c.relispartition ORDER BY 1",
            (SCHEMAS,),
        )
        tables = [r[0] for r in cur.fetchall()]
        start = time.monotonic()
        for table in tables:
            cur.execute("VACUUM ANALYZE %s" % table)
    return time.monotonic() - start, len(tables)


def weekly(server, scale, repeat):
    db = server.create_database("wh_%d" % scale)
    conn = server.connect(db)
    loaded = load_warehouse(conn, scale=scale, partitioned=True)
    catch_up, first = module_pass(server, db, schemas=SCHEMAS)
    module_times, guide_times = [], []
    for _round in range(repeat):
        seconds, result = module_pass(server, db, schemas=SCHEMAS)
        if result["changed"]:
            raise SystemExit("unchanged warehouse, but the module ran: %s" % result["queries"])
        module_times.append(seconds)
        guide_times.append(guide_pass(conn)[0])
    _seconds, after_guide = module_pass(server, db, schemas=SCHEMAS)
    relations = sum(len(t["relations"]) for t in first["tables"])
    conn.close()
    return {
        "scale": scale,
        "bytes": loaded["total_bytes"],
        "load_s": loaded["seconds"],
        "relations": relations,
        "catch_up_s": catch_up,
        "catch_up_statements": len(first["queries"]),
        "module_s": statistics.median(module_times),
        "guide_s": statistics.median(guide_times),
        "changed_after_guide": after_guide["changed"],
    }


class WriterProbe(threading.Thread):
    """Inserts one row every 10 ms into the table and records the slowest insert (the stall a writer sees)."""

    def __init__(self, server, db, table):
        threading.Thread.__init__(self, daemon=True)
        self.conn = server.connect(db)
        self.table = table
        self.stop = threading.Event()
        self.latencies = []

    def run(self):
        with self.conn.cursor() as cur:
            cur.execute("SET lock_timeout = 0")
            while not self.stop.is_set():
                start = time.monotonic()
                cur.execute("INSERT INTO %s (k, payload) VALUES (0, 'probe')" % self.table)
                elapsed = time.monotonic() - start
                self.latencies.append(elapsed)
                time.sleep(max(0.0, 0.01 - elapsed))
        self.conn.close()


def make_bloated(conn, table, rows):
    with conn.cursor() as cur:
        cur.execute("CREATE SCHEMA IF NOT EXISTS bench")
        cur.execute("DROP TABLE IF EXISTS %s" % table)
        cur.execute(
            "CREATE TABLE %s (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, k int, payload text) "
            "WITH (autovacuum_enabled = off)" % table
        )
        cur.execute(
            "INSERT INTO %s (k, payload) SELECT i %% 1000, repeat(md5(i::text), 3) "
            "FROM generate_series(1, %d) i" % (table, rows)
        )
        flush(conn)  # else the insert counts land after the VACUUM below and n_live_tup reads 1.5x too high
        cur.execute("VACUUM ANALYZE %s" % table)
        cur.execute("DELETE FROM %s WHERE id %% 2 = 0" % table)
    flush(conn)


def flush(conn):
    """Publish this session's table counters now (PostgreSQL 15+ flushes them at most once a second)."""
    if one(conn, "SELECT current_setting('server_version_num')::int") >= 150000:
        one(conn, "SELECT pg_stat_force_next_flush()")


def rewrite(server, db, table, method):
    conn = server.connect(db)
    before = one(conn, "SELECT pg_total_relation_size('%s')" % table)
    probe = WriterProbe(server, db, table)
    probe.start()
    time.sleep(0.3)
    seconds, result = module_pass(server, db, tables=[table], min_size="0", full_method=method, lock_timeout="30s")
    time.sleep(0.3)
    probe.stop.set()
    probe.join()
    after = one(conn, "SELECT pg_total_relation_size('%s')" % table)
    conn.close()
    rel = result["tables"][0]["relations"][0]
    full = rel["decisions"]["full"]
    return {
        "method": full.get("method"),
        "bloat": full.get("bloat"),
        "measured_by": full.get("measured_by"),
        "seconds": seconds,
        "rewrite_ms": rel["actions"][0].get("duration_ms") if rel["actions"] else None,
        "before": before,
        "after": after,
        "max_stall_ms": 1000 * max(probe.latencies or [0]),
        "inserts": len(probe.latencies),
        "ran": [a.get("sql") or a.get("command") for a in rel["actions"]],
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=int, default=500000, help="fact rows of the smaller warehouse")
    parser.add_argument("--factor", type=int, default=4, help="the larger warehouse is this many times bigger")
    parser.add_argument("--bloat-rows", type=int, default=400000, help="rows of the 50%%-dead table")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    server = PostgresServer().start()
    server.wait_ready()
    try:
        version = one(server.connect(), "SHOW server_version")
        print("PostgreSQL %s, warehouse partitioned by year, schemas %s" % (version, ", ".join(SCHEMAS)))
        results = [weekly(server, s, args.repeat) for s in (args.scale, args.scale * args.factor)]
    finally:
        server.destroy()
    print("\n== Weekly pass on an unchanged warehouse (median of %d) ==" % args.repeat)
    header = ("fact rows", "size", "relations", "catch-up", "module", "VACUUM ANALYZE", "ratio")
    print("%10s %10s %9s %11s %12s %12s %8s" % header)
    for r in results:
        print(
            "%10d %10s %9d %9.2f s %10.3f s %12.2f s %7.1fx"
            % (
                r["scale"],
                mb(r["bytes"]),
                r["relations"],
                r["catch_up_s"],
                r["module_s"],
                r["guide_s"],
                r["guide_s"] / r["module_s"],
            )
        )
        if r["changed_after_guide"]:
            print("   note: the module found work after the guide's pass")
    small, large = results
    print(
        "growth x%d data: module %.2fx time, VACUUM ANALYZE everything %.2fx time"
        % (args.factor, large["module_s"] / small["module_s"], large["guide_s"] / small["guide_s"])
    )

    print("\n== 50%%-dead table of %d rows, full: auto, writer probe inserting every 10 ms ==" % args.bloat_rows)
    repack = os.path.exists(os.path.join(PG15_BIN, "pg_repack")) and os.path.exists(
        "/usr/share/postgresql/15/extension/pg_repack.control"
    )
    server = PostgresServer(bin_dir=PG15_BIN if repack else None).start()
    server.wait_ready()
    try:
        db = server.create_database("bloat")
        conn = server.connect(db)
        print("PostgreSQL %s" % one(conn, "SHOW server_version"))
        runs = []
        make_bloated(conn, "bench.vf", args.bloat_rows)
        runs.append(rewrite(server, db, "bench.vf", "vacuum_full"))
        if repack:
            with conn.cursor() as cur:
                cur.execute("CREATE EXTENSION pg_repack")
            make_bloated(conn, "bench.rp", args.bloat_rows)
            runs.append(rewrite(server, db, "bench.rp", "pg_repack"))
        else:
            print("pg_repack not measured: apt-get install postgresql-15-repack")
        conn.close()
    finally:
        server.destroy()
    header = ("method", "bloat", "module", "rewrite", "before", "after", "max stall", "inserts")
    print("%12s %8s %9s %9s %11s %11s %13s %8s" % header)
    for r in runs:
        print(
            "%12s %7.0f%% %7.2f s %7.2f s %11s %11s %10.0f ms %8d"
            % (
                r["method"],
                100 * (r["bloat"] or 0),
                r["seconds"],
                (r["rewrite_ms"] or 0) / 1000.0,
                mb(r["before"]),
                mb(r["after"]),
                r["max_stall_ms"],
                r["inserts"],
            )
        )
        print("   measured by %s; ran: %s" % (r["measured_by"], "; ".join(x[:90] for x in r["ran"])))
    if len(runs) == 2:
        print(
            "pg_repack vs VACUUM FULL: %.1fx the time, writer stall %.1fx shorter"
            % (runs[1]["seconds"] / runs[0]["seconds"], runs[0]["max_stall_ms"] / max(runs[1]["max_stall_ms"], 0.001))
        )


if __name__ == "__main__":
    main()
