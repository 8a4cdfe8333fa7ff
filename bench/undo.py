"""Undo: a yearly partition set turned back into one plain table, the module against hand-written SQL and
pg_partman's ``undo_partition_proc``, in the same run.

Method of bench/common.py (durable server, data larger than shared_buffers, interleaved repetitions, server-side
counts, ansible-playbook end to end beside database time). Each measurement starts from a fresh copy (a template
database) of the same set ``bench.fait``: yearly partitions 2020 to two years ahead and a default, primary key
(id, date_key), two indexes, ``--rows`` rows; it ends with a plain ``bench.fait`` holding every row, checked:

  hand       the hand-written best, one psql script in one transaction: CREATE the plain table, INSERT ... SELECT,
             primary key and indexes, ANALYZE, rename the set away and the table in (no verification: the floor)
  offline    ``partitioned_table`` with ``state: plain, migrate: offline`` through ansible-playbook (whole-row
             checksum verified; the set kept as ``fait_partitioned``)
  online     ``state: plain, migrate: online``, with a writer inserting every 10 ms (its longest stall and lost
             rows are reported)
  pg_partman pg_partman's way: the set registered with ``create_parent`` beforehand (untimed), then
             ``CALL partman.undo_partition_proc(... p_target_table ..., p_keep_table := false)`` into a new plain
             table, then the renames; measured only where the extension is installed (Debian's
             postgresql-15-partman), else left out and said so

    .venv/bin/python bench/undo.py [--rows 2000000] [--repeat 3]

Writes bench/results/undo.json.
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

DEFAULTS = {"rows": 2_000_000, "repeat": 3}
TEMPLATE = "undo_src"
DB = "bench"
PREMAKE = 2
FIRST_YEAR = 2020
SOURCE = """
INSERT INTO bench.fait (date_key, entreprise_id, lot_id, montant, statut, commentaire)
SELECT to_char(date '2020-01-01' + (g % 2500), 'YYYYMMDD')::int, 1 + (g % 5000), 1 + (g % 20000),
       round((g % 1000000) * 9.7, 2), (ARRAY['DEMANDEE','EN_COURS','ATTRIBUEE','REJETEE','ANNULEE'])[1 + g % 5],
       CASE WHEN g % 2 = 0 THEN 'dossier ' || g END
FROM generate_series(1, {rows}) g
"""
COLUMNS = """id bigserial, date_key int NOT NULL, entreprise_id int, lot_id int, montant numeric(14,2),
             statut varchar(20) NOT NULL, commentaire text, created_at timestamptz NOT NULL DEFAULT now()"""


def years():
    return list(range(FIRST_YEAR, datetime.date.today().year + PREMAKE + 1))


def build_template(server, rows, partman):
    """The template: the yearly set (made by pg_partman's ``create_parent`` where it is installed, so that its undo
    finds a set of its own, else by hand), its rows, vacuumed and analyzed."""
    server.create_database(TEMPLATE)
    conn = common.connect(server, TEMPLATE)
    common.run_sql(
        conn,
        "CREATE SCHEMA bench",
        "CREATE TABLE bench.fait (%s, PRIMARY KEY (id, date_key)) PARTITION BY RANGE (date_key)" % COLUMNS,
        "CREATE INDEX fait_date_key_idx ON bench.fait (date_key)",
        "CREATE INDEX fait_entreprise_idx ON bench.fait (entreprise_id)",
    )
    if partman:
        common.run_sql(
            conn,
            "CREATE SCHEMA partman",
            "CREATE EXTENSION pg_partman SCHEMA partman",
            "CREATE TABLE bench.fait_plain (%s)" % COLUMNS.replace("bigserial", "bigint"),
            "SELECT partman.create_parent('bench.fait', 'date_key', 'native', '10000', "
            "p_start_partition := '%d0101', p_premake := %d)" % (FIRST_YEAR, PREMAKE),
        )
    else:
        common.run_sql(
            conn,
            *[
                "CREATE TABLE bench.fait_%d PARTITION OF bench.fait FOR VALUES FROM (%d0101) TO (%d0101)"
                % (y, y, y + 1)
                for y in years()
            ],
            "CREATE TABLE bench.fait_default PARTITION OF bench.fait DEFAULT",
        )
    common.run_sql(conn, SOURCE.format(rows=int(rows)), "VACUUM ANALYZE bench.fait")
    size = common.one(
        conn,
        "SELECT sum(pg_total_relation_size(inhrelid)) FROM pg_inherits WHERE inhparent = 'bench.fait'::regclass",
    )
    conn.close()
    return float(size) / 1048576.0


def fresh_copy(server):
    conn = common.connect(server)
    common.run_sql(
        conn, "DROP DATABASE IF EXISTS %s WITH (FORCE)" % DB, "CREATE DATABASE %s TEMPLATE %s" % (DB, TEMPLATE)
    )
    common.run_sql(conn, "CHECKPOINT")
    conn.close()


HAND = """BEGIN;
CREATE TABLE bench.fait_new (LIKE bench.fait INCLUDING DEFAULTS INCLUDING STORAGE INCLUDING COMMENTS);
INSERT INTO bench.fait_new SELECT * FROM bench.fait;
ALTER TABLE bench.fait_new ADD PRIMARY KEY (id, date_key);
CREATE INDEX ON bench.fait_new (date_key);
CREATE INDEX ON bench.fait_new (entreprise_id);
ALTER SEQUENCE bench.fait_id_seq OWNED BY bench.fait_new.id;
ANALYZE bench.fait_new;
ALTER TABLE bench.fait RENAME TO fait_partitioned;
ALTER TABLE bench.fait_new RENAME TO fait;
COMMIT;
"""

PARTMAN = """CALL partman.undo_partition_proc('bench.fait', p_batch := 1000000, p_wait := 0,
    p_target_table := 'bench.fait_plain', p_keep_table := false);
BEGIN;
ALTER TABLE bench.fait_plain ADD PRIMARY KEY (id, date_key);
CREATE INDEX ON bench.fait_plain (date_key);
CREATE INDEX ON bench.fait_plain (entreprise_id);
ALTER TABLE bench.fait_plain ALTER COLUMN id SET DEFAULT nextval('bench.fait_id_seq');
ALTER SEQUENCE bench.fait_id_seq OWNED BY bench.fait_plain.id;
ANALYZE bench.fait_plain;
ALTER TABLE bench.fait RENAME TO fait_partitioned;
ALTER TABLE bench.fait_plain RENAME TO fait;
COMMIT;
"""


class Probe(threading.Thread):
    """Inserts one row every 10 ms; records the longest wait and any error."""

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
                    cur.execute("INSERT INTO bench.fait (date_key, statut) VALUES (20240615, 'PROBE')")
                    self.writes += 1
                except Exception as error:  # counted and reported
                    self.errors.append(str(error).strip())
                self.longest = max(self.longest, time.monotonic() - started)
                time.sleep(0.01)
        self.conn.close()


def check_plain(server, expected):
    conn = common.connect(server, DB)
    kind = common.one(conn, "SELECT relkind FROM pg_class WHERE oid = 'bench.fait'::regclass")
    found = common.one(conn, "SELECT count(*) FROM bench.fait")
    conn.close()
    if kind != "r" or found != expected:
        raise SystemExit("undo left bench.fait relkind %s with %d rows, expected %d" % (kind, found, expected))


def method(server, rows, name):
    def run(_rep):
        fresh_copy(server)
        if name in ("hand", "pg_partman"):
            script = HAND if name == "hand" else PARTMAN
            counts = common.measured(server, lambda: common.psql(server, DB, script))[1]
            check_plain(server, rows)
            return counts
        args = dict(
            server.params(DB),
            name="bench.fait",
            key="date_key",
            key_format="yyyymmdd",
            interval="year",
            state="plain",
            migrate=name,
            lock_timeout="2s",
            lock_retries=5,
        )
        probe = Probe(server) if name == "online" else None
        if probe:
            probe.start()
            time.sleep(0.1)
        try:
            counts = common.run_module(server, "partitioned_table", args)[1]
        finally:
            if probe:
                time.sleep(0.1)
                probe.stop.set()
                probe.join(30)
        check_plain(server, rows + (probe.writes if probe else 0))
        if probe:
            counts.update(stall_s=probe.longest, probe_writes=probe.writes, probe_errors=len(probe.errors))
        return counts

    return run


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=DEFAULTS["rows"])
    parser.add_argument("--repeat", type=int, default=DEFAULTS["repeat"])
    options = parser.parse_args(argv)
    server = common.durable_server()
    try:
        probe_conn = common.connect(server)
        partman = bool(common.one(probe_conn, "SELECT count(*) FROM pg_available_extensions WHERE name = 'pg_partman'"))
        probe_conn.close()
        size_mb = build_template(server, options.rows, partman)
        print("source: %d rows, %.0f MB with indexes; pg_partman %s" % (options.rows, size_mb, partman or "absent"))
        names = ["hand", "offline", "online"] + (["pg_partman"] if partman else [])
        methods = {name: method(server, options.rows, name) for name in names}
        runs = common.run_interleaved(methods, options.repeat)
        info = common.server_facts(server, DB)
    finally:
        server.destroy()
    specs = [
        {"name": "offline_vs_hand", "method": "offline", "baseline": "hand"},
        {"name": "online_vs_hand", "method": "online", "baseline": "hand"},
    ]
    if partman:
        specs.append({"name": "partman_vs_online", "method": "pg_partman", "baseline": "online"})
    common.print_table(common.summarize(runs), metrics=("wall_s", "db_s", "statements", "rss_mb", "stall_s"))
    partman_text = (
        "; pg_partman `undo_partition_proc` + keys + swap {time:pg_partman.wall_s} = {ratio:partman_vs_online} of online"
        if partman
        else "; pg_partman not installed on the benchmark server: not measured"
    )
    rows = [
        {
            "claim": "turning a yearly partition set of %s rows back into one plain table" % format(options.rows, ","),
            "measured": "hand-written psql, no verification {time:hand.wall_s}; module through `ansible-playbook`, "
            "whole-row checksum verified: `offline` {time:offline.wall_s} = {ratio:offline_vs_hand}, `online` "
            "{time:online.wall_s} = {ratio:online_vs_hand}, longest wait of a writer inserting every 10 ms "
            "{time:online.stall_s}" + partman_text,
        }
    ]
    common.write_results(
        "undo",
        "bench/undo.py",
        info,
        vars(options),
        DEFAULTS,
        runs,
        specs,
        rows,
        size="%s rows, %.0f MB with indexes" % (format(options.rows, ","), size_mb),
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
