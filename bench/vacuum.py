"""Vacuum: the module's weekly pass against a DBA's threshold script, and rewrites with a writer probing.

Method of bench/common.py (durable server, autovacuum off so only the method under test vacuums, interleaved
repetitions, server-side counts, ansible-playbook end to end beside database time).

1. ``weekly``: the SIGETI sample warehouse (partitioned by year) plus a daily-partitioned fact table, at least
   ``--relations`` (500) relations in all. Two weeks, each method in interleaved order:
   * ``unchanged``: nothing happened since the last pass;
   * ``changed``: before each measurement, two partitions are brought to a clean state (VACUUM ANALYZE by the
     harness), then 15% of their rows are updated. Not 10%: autovacuum's analyze trigger is 10% + 50 rows, so a 10%
     week is due for neither method, and changes piling up across measurements made one method or the other act
     by chance (seen in a run: the first method after the change found nothing due, the second did).
   Methods: the ``vacuum`` module through ``ansible-playbook`` (schemas of the warehouse, ``full: never`` as in
   the weekly playbook) vs a psql script a DBA writes: a ``pg_stat_user_tables`` threshold query (autovacuum's
   own triggers) whose output runs as plain ``VACUUM (ANALYZE)`` through ``\\gexec``.
2. ``rewrite``: a 50%-dead table rewritten by ``full: auto`` with ``vacuum_full`` and with ``pg_repack``, a
   writer inserting every 10 ms into it; its longest stall is reported.

    .venv/bin/python bench/vacuum.py [--scale 2000000] [--relations 500] [--bloat-rows 1000000] [--repeat 3]

Writes bench/results/vacuum.json.
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from bench import common  # noqa: E402
from tests.support.warehouse import load_warehouse  # noqa: E402

DEFAULTS = {"scale": 2000000, "relations": 500, "bloat_rows": 1000000, "repeat": 3}
SCHEMAS = ["dwh_dim", "dwh_facts", "dwh_marts"]
CHANGED = ("dwh_facts.fait_attributions_2025", "dwh_facts.fait_factures_2025")

# The DBA's weekly script: autovacuum's own triggers read from pg_stat_user_tables, plain VACUUM on what is due.
DBA_SCRIPT = r"""
SELECT format('VACUUM (ANALYZE) %I.%I', s.schemaname, s.relname)
FROM pg_stat_user_tables s JOIN pg_class c ON c.oid = s.relid
WHERE s.schemaname IN ('dwh_dim', 'dwh_facts', 'dwh_marts') AND c.relkind <> 'p'
  AND (s.n_dead_tup > 50 + 0.2 * greatest(c.reltuples, 0)
       OR s.n_mod_since_analyze > 50 + 0.1 * greatest(c.reltuples, 0)
       OR coalesce(s.last_analyze, s.last_autoanalyze) IS NULL)
\gexec
"""


def add_daily_table(conn, partitions, rows):
    """A daily-partitioned fact table with ``partitions`` partitions and ``rows`` rows spread over them."""
    common.run_sql(
        conn,
        "CREATE TABLE dwh_facts.fait_mouvements (id bigint NOT NULL, jour date NOT NULL, lot_id int, "
        "quantite numeric(12,2), note text) PARTITION BY RANGE (jour)",
    )
    with conn.cursor() as cur:
        cur.execute(
            "SELECT format('CREATE TABLE dwh_facts.fait_mouvements_%%s PARTITION OF dwh_facts.fait_mouvements "
            "FOR VALUES FROM (%%L) TO (%%L)', to_char(d, 'YYYYMMDD'), d::date, d::date + 1) "
            "FROM generate_series(date '2024-01-01', date '2024-01-01' + %d, interval '1 day') d" % (partitions - 1)
        )
        for (statement,) in cur.fetchall():
            cur.execute(statement)
        cur.execute(
            "INSERT INTO dwh_facts.fait_mouvements SELECT g, date '2024-01-01' + (g %% %d), g %% 997, g %% 1000, "
            "'mouvement ' || g FROM generate_series(1, %d) g" % (partitions, rows)
        )


def relations(conn):
    return common.one(
        conn,
        "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname = ANY(%s) AND c.relkind IN ('r', 'p', 'm')",
        (SCHEMAS,),
    )


def flush(conn):
    """Publish this session's table counters now (PostgreSQL 15 flushes them at most once a second)."""
    common.one(conn, "SELECT pg_stat_force_next_flush()")
    time.sleep(0.6)  # other sessions' counters (the methods') reach the shared stats within a second


def weekly(server, conn, options):
    args = dict(server.params("bench"), schemas=SCHEMAS, full="never")

    def module(_rep):
        result, counts = common.run_module(server, "vacuum", args)
        ran = sum(len(r.get("actions", [])) for t in result["tables"] for r in t["relations"])
        return dict(counts, actions=ran, changed=result["changed"])

    def dba(_rep):
        return common.measured(server, lambda: common.psql(server, "bench", DBA_SCRIPT))[1]

    methods = {"module": module, "dba_script": dba}
    # Catch up after the load, twice: the module analyzes parents after the DBA's pass vacuumed partitions.
    for _round in range(2):
        module(0)
        dba(0)
        flush(conn)
    print("== unchanged week ==")
    unchanged = common.run_interleaved(methods, options.repeat, prepare=lambda _n, _r: flush(conn))
    for rep in unchanged["module"]:
        if rep["changed"]:
            raise SystemExit("unchanged warehouse, but the module ran something: rerun the catch-up")

    def change(_name, _rep):
        # the same state before every measurement: nothing due, then the week's change
        common.run_sql(conn, *["VACUUM ANALYZE %s" % table for table in CHANGED])
        for table in CHANGED:
            key = "attribution_id" if "attributions" in table else "facture_id"
            common.run_sql(conn, "UPDATE %s SET %s = %s WHERE %s %% 20 < 3" % (table, key, key, key))
        flush(conn)

    print("== a week where 15%% of %s changed ==" % " and ".join(CHANGED))
    changed = common.run_interleaved(methods, options.repeat, prepare=change)
    runs = {"unchanged_" + k: v for k, v in unchanged.items()}
    runs.update({"changed_" + k: v for k, v in changed.items()})
    return runs


class WriterProbe(threading.Thread):
    """Inserts one row every 10 ms into the table and records the slowest insert (the stall a writer sees)."""

    def __init__(self, server, table):
        threading.Thread.__init__(self, daemon=True)
        self.conn = common.connect(server, "bench", app=common.PROBE_APP)
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
    common.run_sql(
        conn,
        "DROP TABLE IF EXISTS %s" % table,
        "CREATE TABLE %s (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, k int, payload text) "
        "WITH (autovacuum_enabled = off)" % table,
        "INSERT INTO %s (k, payload) SELECT i %% 1000, repeat(md5(i::text), 3) FROM generate_series(1, %d) i"
        % (table, rows),
    )
    flush(conn)  # else the insert counts land after the VACUUM below and n_live_tup reads too high
    common.run_sql(conn, "VACUUM ANALYZE %s" % table, "DELETE FROM %s WHERE id %% 2 = 0" % table, "CHECKPOINT")
    flush(conn)


def rewrite(server, conn, options):
    def method(full_method):
        def run(_rep):
            table = "bench.bloated"
            before = common.one(conn, "SELECT pg_total_relation_size('%s')" % table)
            probe = WriterProbe(server, table)
            probe.start()
            time.sleep(0.3)
            args = dict(
                server.params("bench"), tables=[table], min_size="0", full_method=full_method, lock_timeout="30s"
            )
            try:
                result, counts = common.run_module(server, "vacuum", args)
            finally:
                time.sleep(0.3)
                probe.stop.set()
                probe.join()
            rel = result["tables"][0]["relations"][0]
            assert rel["decisions"]["full"].get("method") == full_method, rel["decisions"]
            after = common.one(conn, "SELECT pg_total_relation_size('%s')" % table)
            return dict(
                counts,
                stall_s=max(probe.latencies or [0]),
                probe_inserts=len(probe.latencies),
                before_mb=before / 1048576.0,
                after_mb=after / 1048576.0,
            )

        return run

    common.run_sql(conn, "CREATE SCHEMA IF NOT EXISTS bench", "CREATE EXTENSION IF NOT EXISTS pg_repack")
    print("== rewrite of a 50%%-dead table of %d rows, writer probing every 10 ms ==" % options.bloat_rows)
    return common.run_interleaved(
        {"vacuum_full": method("vacuum_full"), "pg_repack": method("pg_repack")},
        options.repeat,
        prepare=lambda _n, _r: make_bloated(conn, "bench.bloated", options.bloat_rows),
    )


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=int, default=DEFAULTS["scale"], help="fact rows of the warehouse")
    parser.add_argument("--relations", type=int, default=DEFAULTS["relations"], help="relations at least")
    parser.add_argument("--bloat-rows", type=int, default=DEFAULTS["bloat_rows"], help="rows of the 50%%-dead table")
    parser.add_argument("--repeat", type=int, default=DEFAULTS["repeat"])
    options = parser.parse_args(argv)
    server = common.durable_server({"autovacuum": "off"})
    try:
        server.create_database("bench")
        conn = common.connect(server, "bench")
        loaded = load_warehouse(conn, scale=options.scale, partitioned=True)
        conn.autocommit = True
        add_daily_table(conn, max(1, options.relations - relations(conn)), options.scale // 4)
        count = relations(conn)
        size = float(
            common.one(
                conn,
                "SELECT sum(pg_total_relation_size(c.oid)) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                "WHERE n.nspname = ANY(%s) AND c.relkind IN ('r', 'm')",
                (SCHEMAS,),
            )
        )
        print("warehouse: %d relations, %.0f MB (load %.1f s)" % (count, size / 1048576.0, loaded["seconds"]))
        runs = weekly(server, conn, options)
        runs.update({"rewrite_" + k: v for k, v in rewrite(server, conn, options).items()})
        info = common.server_facts(server, "bench")
        conn.close()
    finally:
        server.destroy()

    specs = [
        {"name": "unchanged_wall", "method": "unchanged_module", "baseline": "unchanged_dba_script"},
        {"name": "unchanged_db", "method": "unchanged_module", "baseline": "unchanged_dba_script", "metric": "db_s"},
        {"name": "changed_wall", "method": "changed_module", "baseline": "changed_dba_script"},
        {"name": "changed_db", "method": "changed_module", "baseline": "changed_dba_script", "metric": "db_s"},
        {"name": "repack_stall", "method": "rewrite_pg_repack", "baseline": "rewrite_vacuum_full", "metric": "stall_s"},
    ]
    common.print_table(common.summarize(runs))
    rows = [
        {
            "claim": "weekly vacuum pass, unchanged warehouse of %d relations" % count,
            "measured": "module through `ansible-playbook` {time:unchanged_module.wall_s} vs a psql threshold "
            "script (`pg_stat_user_tables` + plain VACUUM) {time:unchanged_dba_script.wall_s}: {ratio:unchanged_wall}; "
            "database time {time:unchanged_module.db_s} vs {time:unchanged_dba_script.db_s} ({ratio:unchanged_db}); "
            "module statements {num:unchanged_module.statements}",
        },
        {
            "claim": "weekly vacuum pass, 15% of two partitions changed since their last vacuum and analyze",
            "measured": "module {time:changed_module.wall_s} vs psql threshold script "
            "{time:changed_dba_script.wall_s}: {ratio:changed_wall}; database time {time:changed_module.db_s} vs "
            "{time:changed_dba_script.db_s} ({ratio:changed_db}); module statements {num:changed_module.statements} "
            "and actions {num:changed_module.actions} (it analyzes the two partitioned parents, which autovacuum never "
            "does; before PostgreSQL 18 that ANALYZE also covers every partition), script statements "
            "{num:changed_dba_script.statements} (VACUUM (ANALYZE) of the two partitions; the parents' statistics "
            "stay as they were)",
        },
        {
            "claim": "rewriting a 50%-dead table, writer inserting every 10 ms",
            "measured": "longest writer stall: VACUUM FULL {time:rewrite_vacuum_full.stall_s}, pg_repack "
            "{time:rewrite_pg_repack.stall_s} ({ratio:repack_stall}); end to end {time:rewrite_vacuum_full.wall_s} "
            "vs {time:rewrite_pg_repack.wall_s}",
        },
    ]
    common.write_results(
        "vacuum",
        "bench/vacuum.py",
        info,
        vars(options),
        DEFAULTS,
        runs,
        specs,
        rows,
        size="%s fact rows, %d relations, %.0f MB; bloated table %s rows"
        % (format(options.scale, ","), count, size / 1048576.0, format(options.bloat_rows, ",")),
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
