"""Roll-up: 365 daily partitions of a year merged into 12 monthly ones, the module against hand-written SQL.

Method of bench/common.py (durable server, data larger than shared_buffers, interleaved repetitions, server-side
counts, ansible-playbook end to end beside database time). The source is built once as a template database: a
daily set ``bench.ev`` (primary key (id, k), an index on ``entreprise_id``) from 2025-01-01 to two days ahead,
made by ``partitioned_table`` itself, with ``--rows`` rows spread over 2025 only. Each measurement starts from a
fresh copy of it and ends with the twelve months of 2025 as one partition each, checked (partition count, every row
there):

  hand      what a DBA types, one psql script, one transaction per month: CREATE the month's table, INSERT ...
            SELECT through the parent, primary key and index, a CHECK matching the month (so ATTACH skips its
            scan), DETACH the days, DROP them, ATTACH the month, drop the CHECK (no verification: the floor)
  module    ``partitioned_table`` with ``rollup: {after: 30, interval: month, max_per_run: 12}`` through
            ansible-playbook (row count and whole-row checksum verified for each month)

Both run with a writer inserting into today's partition every 10 ms (its longest wait and its errors are
reported). The planning time of two queries is read before and after (median of 15 ``EXPLAIN (SUMMARY)``): a range
query on one month of 2025 (pruned at plan time) and a lookup by ``id`` alone (every partition planned).

    .venv/bin/python bench/rollup.py [--rows 2000000] [--repeat 3]

Writes bench/results/rollup.json.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import statistics
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from bench import common  # noqa: E402

DEFAULTS = {"rows": 2_000_000, "repeat": 3}
TEMPLATE = "rollup_src"
DB = "bench"
YEAR = 2025
PREMAKE = 2
QUERIES = {
    "range": "SELECT count(*) FROM bench.ev WHERE k >= DATE '2025-03-01' AND k < DATE '2025-04-01'",
    "lookup": "SELECT * FROM bench.ev WHERE id = 123457",
}
LOAD = """
INSERT INTO bench.ev (k, entreprise_id, montant, libelle)
SELECT DATE '2025-01-01' + (g % 365), 1 + g % 5000, round((g % 100000) * 1.37, 2),
       'attribution ' || g || ' ' || md5(g::text)
FROM generate_series(1, {rows}) g
"""


def module_args(server, dbname, **extra):
    return dict(
        server.params(dbname),
        name="bench.ev",
        key="k",
        interval="day",
        start="%d-01-01" % YEAR,
        premake=PREMAKE,
        lock_timeout="2s",
        lock_retries=5,
        max_new_partitions=1000,
        **extra,
    )


def build_template(server, rows):
    """The template database: the daily set made by the module, 2025's rows loaded, vacuumed, analyzed."""
    server.create_database(TEMPLATE)
    conn = common.connect(server, TEMPLATE)
    common.run_sql(
        conn,
        "CREATE SCHEMA bench",
        """CREATE TABLE bench.ev (id bigserial, k date NOT NULL, entreprise_id int, montant numeric(14,2),
           libelle text, PRIMARY KEY (id, k)) PARTITION BY RANGE (k)""",
        "CREATE INDEX ev_entreprise_idx ON bench.ev (entreprise_id)",
    )
    common.run_module(server, "partitioned_table", module_args(server, TEMPLATE))
    common.run_sql(conn, LOAD.format(rows=int(rows)), "VACUUM ANALYZE bench.ev")
    parts = common.one(conn, "SELECT count(*) FROM pg_inherits WHERE inhparent = 'bench.ev'::regclass")
    size_mb = common.one(
        conn,
        "SELECT sum(pg_total_relation_size(inhrelid)) / 1048576.0 FROM pg_inherits "
        "WHERE inhparent = 'bench.ev'::regclass",
    )
    conn.close()
    return parts, float(size_mb)


def fresh_copy(server):
    """``bench``: a file copy of the template, then a checkpoint so no run pays the last one's writes."""
    conn = common.connect(server)
    common.run_sql(
        conn, "DROP DATABASE IF EXISTS %s WITH (FORCE)" % DB, "CREATE DATABASE %s TEMPLATE %s" % (DB, TEMPLATE)
    )
    common.run_sql(conn, "CHECKPOINT")
    conn.close()


def all_rows(conn, statement, params=None):
    with conn.cursor() as cur:
        cur.execute(statement, params)
        return cur.fetchall()


def days_of(conn, month):
    """The daily partitions of ``month`` (a date), in order."""
    low, high = month, (month.replace(day=28) + datetime.timedelta(days=4)).replace(day=1)
    rows = all_rows(
        conn,
        "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
        "WHERE i.inhparent = 'bench.ev'::regclass AND pg_get_expr(c.relpartbound, c.oid) <> 'DEFAULT' "
        "AND substring(pg_get_expr(c.relpartbound, c.oid) from $$FROM \\('([0-9-]+)'$$)::date >= %s "
        "AND substring(pg_get_expr(c.relpartbound, c.oid) from $$FROM \\('([0-9-]+)'$$)::date < %s ORDER BY 1",
        (low, high),
    )
    return [r[0] for r in rows], low, high


def hand_script(conn):
    """The DBA's script: one transaction per month of 2025, names read from the catalog beforehand."""
    lines = ["SET lock_timeout = '2s';"]
    for m in range(1, 13):
        days, low, high = days_of(conn, datetime.date(YEAR, m, 1))
        month = "ev_m%s" % low.strftime("%Y%m")
        bound = "FROM ('%s') TO ('%s')" % (low, high)
        lines += [
            "BEGIN;",
            "CREATE TABLE bench.%s (LIKE bench.ev INCLUDING DEFAULTS INCLUDING STORAGE);" % month,
            "INSERT INTO bench.%s SELECT * FROM bench.ev WHERE k >= '%s' AND k < '%s';" % (month, low, high),
            "ALTER TABLE bench.%s ADD PRIMARY KEY (id, k);" % month,
            "CREATE INDEX ON bench.%s (entreprise_id);" % month,
            "ALTER TABLE bench.%s ADD CONSTRAINT bound CHECK (k >= '%s' AND k < '%s');" % (month, low, high),
        ]
        lines += ["ALTER TABLE bench.ev DETACH PARTITION bench.%s;" % d for d in days]
        lines += ["DROP TABLE bench.%s;" % d for d in days]
        lines += [
            "ALTER TABLE bench.ev ATTACH PARTITION bench.%s FOR VALUES %s;" % (month, bound),
            "ALTER TABLE bench.%s DROP CONSTRAINT bound;" % month,
            "COMMIT;",
        ]
    return "\n".join(lines) + "\n"


class Probe(threading.Thread):
    """Inserts one row into today's partition every 10 ms; records the longest wait and any error."""

    def __init__(self, server):
        super().__init__(daemon=True)
        self.conn = common.connect(server, DB, app=common.PROBE_APP)
        self.stop = threading.Event()
        self.longest, self.writes, self.errors = 0.0, 0, []

    def run(self):
        with self.conn.cursor() as cur:
            while not self.stop.is_set():
                started = time.monotonic()
                try:
                    cur.execute("INSERT INTO bench.ev (k, libelle) VALUES (current_date, 'probe')")
                    self.writes += 1
                except Exception as error:  # counted and reported
                    self.errors.append(str(error).strip())
                self.longest = max(self.longest, time.monotonic() - started)
                time.sleep(0.01)
        self.conn.close()


def planning_ms(conn, query, times=15):
    """Median planning time of ``query`` (ms) over ``times`` EXPLAINs."""
    found = []
    for _attempt in range(times):
        plan = common.one(conn, "EXPLAIN (SUMMARY ON, FORMAT JSON) " + query)
        plan = json.loads(plan) if isinstance(plan, str) else plan
        found.append(plan[0]["Planning Time"])
    return statistics.median(found)


def state(conn):
    """(partitions, rows of 2025, partitions starting in January 2025: 31 days before, one month after)."""
    return (
        common.one(conn, "SELECT count(*) FROM pg_inherits WHERE inhparent = 'bench.ev'::regclass"),
        common.one(conn, "SELECT count(*) FROM bench.ev WHERE k < DATE '2026-01-01'"),
        len(days_of(conn, datetime.date(YEAR, 1, 1))[0]),
    )


def measure(server, rows, action):
    """Run ``action`` on a fresh copy with the probe writing; return its numbers, planning times around it."""
    fresh_copy(server)
    conn = common.connect(server, DB)
    before = {name: planning_ms(conn, q) for name, q in QUERIES.items()}
    parts_before = state(conn)[0]
    script = hand_script(conn) if action == "hand" else None
    probe = Probe(server)
    probe.start()
    time.sleep(0.1)
    try:
        if action == "hand":
            counts = common.measured(server, lambda: common.psql(server, DB, script))[1]
        else:
            rollup = {"after": 30, "interval": "month", "max_per_run": 12}
            counts = common.run_module(server, "partitioned_table", module_args(server, DB, rollup=rollup))[1]
    finally:
        time.sleep(0.1)
        probe.stop.set()
        probe.join(30)
    parts_after, rows_2025, january = state(conn)
    if rows_2025 != rows or parts_after != parts_before - 365 + 12 or january != 1:
        raise SystemExit(
            "%s left %d partitions (expected %d), %d rows of 2025 (expected %d), %d partitions in January (expected 1)"
            % (action, parts_after, parts_before - 365 + 12, rows_2025, rows, january)
        )
    after = {name: planning_ms(conn, q) for name, q in QUERIES.items()}
    conn.close()
    counts.update(stall_s=probe.longest, probe_writes=probe.writes, probe_errors=len(probe.errors))
    for name in QUERIES:
        counts["plan_%s_before_ms" % name], counts["plan_%s_after_ms" % name] = before[name], after[name]
    return counts


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=DEFAULTS["rows"], help="rows over 2025 (default 2M)")
    parser.add_argument("--repeat", type=int, default=DEFAULTS["repeat"])
    options = parser.parse_args(argv)
    server = common.durable_server()
    try:
        parts, size_mb = build_template(server, options.rows)
        print("source: %d partitions, %d rows over %d, %.0f MB with indexes" % (parts, options.rows, YEAR, size_mb))
        methods = {name: (lambda _rep, name=name: measure(server, options.rows, name)) for name in ("hand", "module")}
        print("== roll-up of the 365 days of %d into 12 months ==" % YEAR)
        runs = common.run_interleaved(methods, options.repeat)
        info = common.server_facts(server, DB)
    finally:
        server.destroy()
    specs = [
        {"name": "module_vs_hand", "method": "module", "baseline": "hand"},
        {"name": "module_vs_hand_db", "method": "module", "baseline": "hand", "metric": "db_s"},
    ]
    common.print_table(
        common.summarize(runs),
        metrics=("wall_s", "db_s", "stall_s", "plan_range_before_ms", "plan_range_after_ms", "plan_lookup_after_ms"),
    )
    rows = [
        {
            "claim": "rolling up the 365 daily partitions of a year into 12 monthly ones (%s rows)"
            % format(options.rows, ","),
            "measured": "hand-written psql, one transaction per month, no verification {time:hand.wall_s}; module "
            "through `ansible-playbook`, each month verified by row count and checksum {time:module.wall_s} = "
            "{ratio:module_vs_hand} of it (database time {ratio:module_vs_hand_db}); longest wait of a writer "
            "inserting every 10 ms: module {time:module.stall_s}, hand {time:hand.stall_s}",
        },
        {
            "claim": "planning time on that set before and after the roll-up (%d partitions before)" % parts,
            "measured": "a month's range query {num:module.plan_range_before_ms} ms → "
            "{num:module.plan_range_after_ms} ms; a lookup by id alone (every partition planned) "
            "{num:module.plan_lookup_before_ms} ms → {num:module.plan_lookup_after_ms} ms",
        },
    ]
    common.write_results(
        "rollup",
        "bench/rollup.py",
        info,
        vars(options),
        DEFAULTS,
        runs,
        specs,
        rows,
        size="%d partitions, %s rows, %.0f MB with indexes" % (parts, format(options.rows, ","), size_mb),
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
