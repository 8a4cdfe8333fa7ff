"""Migration: turning a live SIGETI-shaped fact table into yearly partitions, every method in the same run.

Method of bench/common.py (durable server, data larger than shared_buffers, interleaved repetitions, server-side
counts, ansible-playbook end to end beside database time). Each measurement starts from a fresh copy of the
same plain table (bigserial primary key, two indexes) and ends with the partitioned table under the original
name, checked (partitioned, every row there):

  hand      the hand-written best, one psql script: CREATE partitioned + partitions, INSERT ... SELECT, then
            primary key and indexes, ANALYZE, rename (no verification: the floor)
  offline   ``partitioned_table`` with ``migrate: offline`` through ansible-playbook (verification included)
  online    ``migrate: online``, with a writer inserting every 10 ms into the table (its longest stall and
            lost rows are reported)
  pg_partman  pg_partman 4.7: rename the old table away, create the partitioned one with its keys,
            ``create_parent`` then ``CALL partman.partition_data_proc(... p_source_table ...)``, ANALYZE

The module's peak RSS is read from its own process (bench/rss_python.py).

    .venv/bin/python bench/migration.py [--scale 5000000] [--batch-rows 200000] [--repeat 3]

Writes bench/results/migration.json.
"""

from __future__ import annotations

import argparse
import datetime
import os
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from bench import common  # noqa: E402

DEFAULTS = {"scale": 5000000, "repeat": 3}
PREMAKE = 2
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


def years():
    return list(range(2020, datetime.date.today().year + PREMAKE + 1))


def hand_script():
    """What a DBA types: build beside, load, then keys and indexes, statistics, swap names; one transaction."""
    lines = [
        "BEGIN;",
        "CREATE TABLE bench.fait_new (LIKE bench.fait INCLUDING DEFAULTS) PARTITION BY RANGE (date_key);",
    ]
    lines += [
        "CREATE TABLE bench.fait_new_%d PARTITION OF bench.fait_new FOR VALUES FROM (%d0101) TO (%d0101);"
        % (y, y, y + 1)
        for y in years()
    ]
    lines += [
        "CREATE TABLE bench.fait_new_default PARTITION OF bench.fait_new DEFAULT;",
        "INSERT INTO bench.fait_new SELECT * FROM bench.fait;",
        "ALTER TABLE bench.fait_new ADD PRIMARY KEY (id, date_key);",
        "CREATE INDEX ON bench.fait_new (date_key);",
        "CREATE INDEX ON bench.fait_new (entreprise_id);",
        "ANALYZE bench.fait_new;",
        "ALTER TABLE bench.fait RENAME TO fait_old;",
        "ALTER TABLE bench.fait_new RENAME TO fait;",
        "COMMIT;",
    ]
    return "\n".join(lines) + "\n"


def partman_script(major):
    """pg_partman's way: the old table renamed away, the new one created with its keys, data moved by the proc."""
    if major >= 5:
        create = "SELECT partman.create_parent('bench.fait', 'date_key', '10000', p_start_partition := '20200101', p_premake := %d);"
    else:
        create = (
            "SELECT partman.create_parent('bench.fait', 'date_key', 'native', '10000', "
            "p_start_partition := '20200101', p_premake := %d);"
        )
    return "\n".join(
        [
            "ALTER TABLE bench.fait RENAME TO fait_old;",
            "CREATE TABLE bench.fait (LIKE bench.fait_old INCLUDING DEFAULTS) PARTITION BY RANGE (date_key);",
            "ALTER TABLE bench.fait ADD PRIMARY KEY (id, date_key);",
            "CREATE INDEX ON bench.fait (date_key);",
            "CREATE INDEX ON bench.fait (entreprise_id);",
            create % PREMAKE,
            "CALL partman.partition_data_proc('bench.fait', p_batch := 1000000, p_wait := 0, "
            "p_source_table := 'bench.fait_old');",
            "ANALYZE bench.fait;",
        ]
    )


def fresh_fact(conn):
    common.run_sql(
        conn,
        "DROP TABLE IF EXISTS bench.fait, bench.fait_old, bench.fait_new, bench.fait_unpartitioned CASCADE",
        "DROP TABLE IF EXISTS partman.template_bench_fait",
        "DELETE FROM partman.part_config WHERE parent_table = 'bench.fait'",
        "DROP SCHEMA IF EXISTS sigeti_dwh CASCADE",
        """CREATE TABLE bench.fait (id bigserial PRIMARY KEY, date_key int NOT NULL, entreprise_id int,
           lot_id int, montant numeric(14,2), statut varchar(20) NOT NULL, commentaire text,
           created_at timestamptz NOT NULL DEFAULT now())""",
        "INSERT INTO bench.fait SELECT * FROM bench.src",
        "SELECT setval('bench.fait_id_seq', (SELECT max(id) FROM bench.fait))",
        "CREATE INDEX fait_date_key_idx ON bench.fait (date_key)",
        "CREATE INDEX fait_entreprise_idx ON bench.fait (entreprise_id)",
        "VACUUM ANALYZE bench.fait",
        "CHECKPOINT",
    )


class Probe(threading.Thread):
    """Writes one row every 10 ms into the table being migrated; records the longest wait and any error."""

    def __init__(self, server):
        super().__init__(daemon=True)
        self.conn = common.connect(server, "bench", app=common.PROBE_APP)
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
                except Exception as error:  # counted and reported
                    self.errors.append(str(error).strip())
                self.longest = max(self.longest, time.monotonic() - started)
                time.sleep(0.01)
        self.conn.close()


def check_result(conn, expected):
    """The table under the original name is partitioned and holds every row: raise otherwise."""
    kind = common.one(conn, "SELECT relkind FROM pg_class WHERE oid = 'bench.fait'::regclass")
    found = common.one(conn, "SELECT count(*) FROM bench.fait")
    if kind != "p" or found != expected:
        raise SystemExit("migration left bench.fait relkind %s with %d rows, expected %d" % (kind, found, expected))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=int, default=DEFAULTS["scale"], help="rows of the fact table (default 5M)")
    parser.add_argument("--batch-rows", type=int, default=200000)
    parser.add_argument("--repeat", type=int, default=DEFAULTS["repeat"])
    options = parser.parse_args(argv)
    server = common.durable_server()
    try:
        server.create_database("bench")
        conn = common.connect(server, "bench")
        common.run_sql(
            conn, "CREATE SCHEMA bench", "CREATE SCHEMA partman", "CREATE EXTENSION pg_partman SCHEMA partman"
        )
        common.run_sql(conn, SOURCE.format(rows=int(options.scale)))
        major = int(common.one(conn, "SELECT extversion FROM pg_extension WHERE extname = 'pg_partman'").split(".")[0])
        fresh_fact(conn)
        table_mb = common.one(conn, "SELECT pg_total_relation_size('bench.fait')") / 1048576.0
        print("source: %d rows, %.0f MB with indexes" % (options.scale, table_mb))
        module_args = dict(
            server.params("bench"),
            name="bench.fait",
            key="date_key",
            key_format="yyyymmdd",
            interval="year",
            start="20200101",
            premake=PREMAKE,
            extend_primary_key=True,
            batch_rows=options.batch_rows,
        )

        def hand(_rep):
            counts = common.measured(server, lambda: common.psql(server, "bench", hand_script()))[1]
            check_result(conn, options.scale)
            return counts

        def partman(_rep):
            counts = common.measured(server, lambda: common.psql(server, "bench", partman_script(major)))[1]
            check_result(conn, options.scale)
            return counts

        def module(mode):
            def run(_rep):
                probe = Probe(server) if mode == "online" else None
                if probe:
                    probe.start()
                    time.sleep(0.1)
                try:
                    _result, counts = common.run_module(server, "partitioned_table", dict(module_args, migrate=mode))
                finally:
                    if probe:
                        time.sleep(0.1)
                        probe.stop.set()
                        probe.join(30)
                check_result(conn, options.scale + (probe.writes if probe else 0))
                if probe:
                    counts.update(stall_s=probe.longest, probe_writes=probe.writes, probe_errors=len(probe.errors))
                return counts

            return run

        methods = {"hand": hand, "offline": module("offline"), "online": module("online"), "pg_partman": partman}
        print("== migration of %d rows into yearly partitions ==" % options.scale)
        runs = common.run_interleaved(methods, options.repeat, prepare=lambda _n, _r: fresh_fact(conn))
        info = common.server_facts(server, "bench")
        info["pg_partman"] = common.one(conn, "SELECT extversion FROM pg_extension WHERE extname = 'pg_partman'")
        conn.close()
    finally:
        server.destroy()

    specs = [
        {"name": "offline_vs_hand", "method": "offline", "baseline": "hand"},
        {"name": "online_vs_hand", "method": "online", "baseline": "hand"},
        {"name": "partman_vs_online", "method": "pg_partman", "baseline": "online"},
        {"name": "partman_vs_offline", "method": "pg_partman", "baseline": "offline"},
        {"name": "offline_vs_hand_db", "method": "offline", "baseline": "hand", "metric": "db_s"},
        {"name": "online_vs_hand_db", "method": "online", "baseline": "hand", "metric": "db_s"},
    ]
    common.print_table(common.summarize(runs), metrics=("wall_s", "db_s", "statements", "rss_mb", "stall_s"))
    rows = [
        {
            "claim": "migrating a plain %s-row table into yearly partitions" % format(options.scale, ","),
            "measured": "hand-written best (psql) {time:hand.wall_s}; module through `ansible-playbook`, verification "
            "included: `offline` {time:offline.wall_s} = {ratio:offline_vs_hand} of it ({atmost:offline_vs_hand,1.25}), "
            "`online` {time:online.wall_s} = {ratio:online_vs_hand} ({atmost:online_vs_hand,1.5}); pg_partman %s "
            "`partition_data_proc` + swap {time:pg_partman.wall_s} = {ratio:partman_vs_online} of online "
            "({atleast:partman_vs_online,2}); database time ÷ hand: "
            "offline {ratio:offline_vs_hand_db}, online {ratio:online_vs_hand_db}" % info["pg_partman"],
        },
        {
            "claim": "online migration: writers and memory",
            "measured": "longest stall of a writer inserting every 10 ms {time:online.stall_s} ({under:online.stall_s,1}), "
            "probe errors {num:online.probe_errors}; module RSS {mb:online.rss_mb} online, {mb:offline.rss_mb} "
            "offline (goal < 200 MB); statements online {num:online.statements}, offline {num:offline.statements}",
        },
    ]
    common.write_results(
        "migration",
        "bench/migration.py",
        info,
        vars(options),
        DEFAULTS,
        runs,
        specs,
        rows,
        size="%s rows, %.0f MB with indexes" % (format(options.scale, ","), table_mb),
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
