"""Migrations under pgbench: TPC-B's throughput before, during and after each mode, its longest transaction, the
module's time with and without foreign keys; and what partitioning costs an application that does not filter on
the key ("Before you partition" in docs/migration.md).

Method of bench/common.py (durable server, data larger than shared_buffers, interleaved repetitions, server-side
counts, ``ansible-playbook`` end to end). PostgreSQL's own ``pgbench`` (beside the server's binaries) is the
application: ``pgbench -i -s SCALE`` with or without ``--foreign-keys``, ``pgbench_history`` seeded with HISTORY
rows over 24 months (a bigserial key added for the online mode), then TPC-B (``-b tpcb-like``, ``--max-tries 1``:
no retries) with CLIENTS clients writing for BEFORE seconds, for the whole module run, and AFTER seconds more.
Each measurement starts from a fresh copy of its database (``CREATE DATABASE ... TEMPLATE``, untimed); every run
must end with 0 failed transactions, every row once and the balance invariant, or the script stops.

  offline_fk, online_fk, attach_fk   the migration of pgbench_history by month, foreign keys to accounts, tellers
                                     and branches (the new partitioned table gets them, validated)
  offline, online, attach            the same without foreign keys (``pgbench -i`` without ``--foreign-keys``)
  keyless_plain, keyless_partitioned, keyed_partitioned
                                     ``UPDATE pgbench_history ... WHERE hid = :hid`` on the plain table, the same on
                                     the monthly partitioned one (no partition pruning: every partition's index is
                                     probed), and with the key in the WHERE clause (pruned to one)
  key_moves, key_moves_plain         ``UPDATE ... SET mtime = <another month>`` of random rows by 4 clients: rows
                                     moving between partitions; the share of transactions failing with "tuple to be
                                     locked was already moved to another partition due to concurrent update" (on the
                                     plain table, none: READ COMMITTED follows the row)

Goal: ``online_fk`` within 1.5x of ``online`` (module time).

    .venv/bin/python bench/pgbench_migration.py [--scale 10] [--history 2000000] [--clients 4] [--repeat 3]

Writes bench/results/pgbench_migration.json.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from bench import common  # noqa: E402

DEFAULTS = {"scale": 10, "history": 2000000, "clients": 4, "repeat": 3}
MODES = ("offline", "online", "attach")
KEYLESS_SECONDS = 10


def template(server, name, scale, history, foreign_keys, workdir):
    """A database ``name`` holding pgbench's tables (with or without foreign keys), history seeded and keyed."""
    from tests.support.pgbench import Pgbench

    server.create_database(name)
    bench = Pgbench(server, name, workdir).init(scale=scale, foreign_keys=foreign_keys)
    bench.seed_history(history)
    bench.add_history_key()
    bench.sql("VACUUM ANALYZE", "CHECKPOINT")
    return bench


def fresh(server, name, source):
    """``name`` as a copy of database ``source`` (nothing connected to either)."""
    conn = common.connect(server)
    try:
        common.run_sql(conn, "DROP DATABASE IF EXISTS %s WITH (FORCE)" % name)
        common.run_sql(conn, "CREATE DATABASE %s TEMPLATE %s" % (name, source))
        common.run_sql(conn, "CHECKPOINT")
    finally:
        conn.close()


def _first_month():
    from tests.support.pgbench import first_month

    return first_month()


def module_args(server, dbname, mode):
    return dict(
        server.params(dbname),
        name="public.pgbench_history",
        key="mtime",
        key_format="timestamp",
        interval="month",
        start=str(_first_month()),
        premake=2,
        migrate=mode,
        extend_primary_key=True,
        batch_rows=200000,
    )


def check_application(server, dbname, seeded, report):
    """0 failed transactions, every row once, the balances: raise otherwise (a benchmark of a broken run is none)."""
    from tests.support.pgbench import history_rows, invariant

    conn = common.connect(server, dbname)
    try:
        rows, sums = history_rows(conn), invariant(conn)
        distinct = common.one(conn, "SELECT count(DISTINCT hid) FROM pgbench_history")
    finally:
        conn.close()
    problems = report.problems()
    if rows != seeded + report.tpcb_transactions or distinct != rows:
        problems.append(
            "history holds %d rows (%d distinct), expected %d" % (rows, distinct, seeded + report.tpcb_transactions)
        )
    if len(set(sums.values())) != 1:
        problems.append("balance invariant broken: %s" % sums)
    if problems:
        raise SystemExit("pgbench_migration: %s" % "; ".join(problems))


def migration_method(server, options, mode, foreign_keys, seeded, workdir):
    """One measurement: TPC-B before, during and after the module's run."""
    from tests.support.pgbench import Pgbench

    dbname = "run_%s%s" % (mode, "_fk" if foreign_keys else "")

    def run(_rep):
        bench = Pgbench(server, dbname, workdir, application_name=common.PROBE_APP)
        bench.scale = options.scale
        with bench.running(clients=options.clients, threads=2) as running:
            time.sleep(options.before)
            started = time.time()
            result, counts = common.run_module(server, "partitioned_table", module_args(server, dbname, mode))
            ended = time.time()
            time.sleep(options.after)
        report = running.result
        check_application(server, dbname, seeded, report)
        migration = result["migration"]
        counts.update(
            tps_before=report.tps_between(report.started, started),
            tps_during=report.tps_between(started, ended),
            tps_after=report.tps_between(ended, report.stopped),
            longest_transaction_s=report.max_latency(started, ended),
            longest_stall_s=report.longest_gap(started, ended),
            failed_transactions=report.failed,
            swap_s=migration.get("swap_seconds"),
            swap_attempts=migration.get("swap_attempts"),
            rows_moved=migration.get("rows_moved"),
        )
        counts["during_vs_before"] = counts["tps_during"] / counts["tps_before"] if counts["tps_before"] else None
        return counts

    return dbname, run


def keyless_method(server, dbname, script, clients, workdir):
    """One pgbench run of ``script`` for KEYLESS_SECONDS on database ``dbname``."""
    from tests.support.pgbench import Pgbench

    def run(_rep):
        bench = Pgbench(server, dbname, workdir, application_name=common.PROBE_APP)
        report = bench.timed(script, KEYLESS_SECONDS, clients=clients)
        if report.unexpected_errors:
            raise SystemExit("pgbench_migration: %s" % "; ".join(report.unexpected_errors))
        total = report.tpcb_transactions + report.failed
        return {
            "wall_s": report.stopped - report.started,
            "tps": report.tps,
            "failed_share": report.failed / float(total) if total else 0.0,
            "serialization_failures": report.serialization_failures,
        }

    return run


def dates_table(server, name):
    """The application's own knowledge of each history row's date: a plain table (hid PRIMARY KEY, mtime)."""
    conn = common.connect(server, name)
    try:
        common.run_sql(
            conn,
            "CREATE TABLE sigeti_history_dates AS SELECT hid, mtime FROM pgbench_history",
            "ALTER TABLE sigeti_history_dates ADD PRIMARY KEY (hid)",
            "VACUUM ANALYZE sigeti_history_dates",
        )
    finally:
        conn.close()


def partitioned_copy(server, source, name, seeded, workdir):
    """``name``: a copy of ``source`` whose history was migrated (offline, by month) with nothing writing."""
    fresh(server, name, source)
    dates_table(server, name)
    result, _counts = common.run_module(server, "partitioned_table", module_args(server, name, "offline"))
    if result["migration"].get("rows_moved") != seeded:
        raise SystemExit(
            "pgbench_migration: the partitioned copy holds %s rows" % result["migration"].get("rows_moved")
        )


# keys 1-200 are the ones key_moves moves around. Each script first looks the row's date up in a plain table of
# its own (as an application that knows it: one index probe, the same in the three), then updates by hid alone or
# by hid and date
LOOKUP = (
    "\\set hid random(201, {rows})\n"
    "SELECT (extract(epoch FROM mtime) * 1000000)::bigint AS us FROM sigeti_history_dates WHERE hid = :hid \\gset\n"
)
KEYLESS = LOOKUP + "UPDATE pgbench_history SET delta = delta + 1 WHERE hid = :hid;\n"
KEYED = (
    LOOKUP + "UPDATE pgbench_history SET delta = delta + 1 WHERE hid = :hid "
    "AND mtime = timestamp 'epoch' + :us * interval '1 microsecond';\n"
)
# half the clients move the row of a random key into the month before, half back: concurrent key updates of the
# same rows (a small key range so they meet)
MOVES = (
    "\\set hid random(1, 200)\n"
    "UPDATE pgbench_history SET mtime = CASE WHEN mtime >= date_trunc('month', localtimestamp) "
    "THEN mtime - interval '1 month' ELSE mtime + interval '1 month' END, delta = delta WHERE hid = :hid;\n"
)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=int, default=DEFAULTS["scale"], help="pgbench scale (accounts = 100,000 x it)")
    parser.add_argument("--history", type=int, default=DEFAULTS["history"], help="history rows seeded (24 months)")
    parser.add_argument("--clients", type=int, default=DEFAULTS["clients"])
    parser.add_argument("--repeat", type=int, default=DEFAULTS["repeat"])
    parser.add_argument("--before", type=float, default=10.0, help="seconds of TPC-B before the module runs")
    parser.add_argument("--after", type=float, default=10.0, help="seconds of TPC-B after it")
    parser.add_argument("--modes", default=",".join(MODES))
    parser.add_argument("--only", default="", help="comma-separated methods to run (default: all)")
    options = parser.parse_args(argv)
    modes = [m for m in options.modes.split(",") if m]
    server = common.durable_server({"max_connections": "100"})
    workdir = tempfile.mkdtemp(prefix="bench-pgbench-")
    try:
        seeded = (options.history // 2) * 2
        print("pgbench scale %d, %d history rows over 24 months, %d clients" % (options.scale, seeded, options.clients))
        if modes:
            template(server, "tpl_fk", options.scale, options.history, True, workdir)
        template(server, "tpl", options.scale, options.history, False, workdir)
        conn = common.connect(server, "tpl")
        history_mb = common.one(conn, "SELECT pg_total_relation_size('pgbench_history')") / 1048576.0
        accounts_mb = common.one(conn, "SELECT pg_total_relation_size('pgbench_accounts')") / 1048576.0
        conn.close()
        partitioned_copy(server, "tpl", "keyless_partitioned", seeded, workdir)
        fresh(server, "keyless_plain", "tpl")
        dates_table(server, "keyless_plain")
        methods, sources = {}, {}
        for mode in modes:
            for foreign_keys in (True, False):
                dbname, run = migration_method(server, options, mode, foreign_keys, seeded, workdir)
                name = mode + ("_fk" if foreign_keys else "")
                methods[name] = run
                sources[name] = (dbname, "tpl_fk" if foreign_keys else "tpl")
        rows = seeded
        methods["keyless_plain"] = keyless_method(server, "keyless_plain", KEYLESS.format(rows=rows), 2, workdir)
        methods["keyless_partitioned"] = keyless_method(
            server, "keyless_partitioned", KEYLESS.format(rows=rows), 2, workdir
        )
        methods["keyed_partitioned"] = keyless_method(
            server, "keyless_partitioned", KEYED.format(rows=rows), 2, workdir
        )
        methods["key_moves"] = keyless_method(server, "keyless_partitioned", MOVES, 4, workdir)
        methods["key_moves_plain"] = keyless_method(server, "keyless_plain", MOVES, 4, workdir)
        if options.only:
            methods = {name: run for name, run in methods.items() if name in options.only.split(",")}

        def prepare(name, _rep):
            if name in sources:
                fresh(server, *sources[name])

        print("== migrations of pgbench_history under TPC-B, and UPDATEs without the key ==")
        runs = common.run_interleaved(methods, options.repeat, prepare=prepare)
        info = common.server_facts(server)
    finally:
        server.destroy()

    specs = []
    for mode in modes:
        specs.append({"name": "%s_fk_vs_without" % mode, "method": mode + "_fk", "baseline": mode})
    specs.append(
        {
            "name": "keyless_partitioned_vs_plain",
            "method": "keyless_partitioned",
            "baseline": "keyless_plain",
            "metric": "tps",
        }
    )
    specs.append(
        {
            "name": "keyed_partitioned_vs_plain",
            "method": "keyed_partitioned",
            "baseline": "keyless_plain",
            "metric": "tps",
        }
    )
    common.print_table(
        common.summarize(runs),
        metrics=("wall_s", "tps_before", "tps_during", "tps_after", "longest_transaction_s", "tps"),
    )
    rows = []
    for mode in modes:
        rows.append(
            {
                "claim": "`%s` migration of pgbench_history under TPC-B (%d clients, --max-tries 1)"
                % (mode, options.clients),
                "measured": (
                    "TPC-B tps before / during / after: {num:%(m)s_fk.tps_before} / {num:%(m)s_fk.tps_during} / "
                    "{num:%(m)s_fk.tps_after} with foreign keys (during the run {pct:%(m)s_fk.during_vs_before} of "
                    "before), {num:%(m)s.tps_before} / {num:%(m)s.tps_during} / "
                    "{num:%(m)s.tps_after} without; longest transaction {time:%(m)s_fk.longest_transaction_s} "
                    "(without keys {time:%(m)s.longest_transaction_s}); failed transactions "
                    "{num:%(m)s_fk.failed_transactions}; module {time:%(m)s_fk.wall_s} with foreign keys, "
                    "{time:%(m)s.wall_s} without: {ratio:%(m)s_fk_vs_without}"
                )
                % {"m": mode}
                + (" ({atmost:online_fk_vs_without,1.5})" if mode == "online" else ""),
            }
        )
    rows.append(
        {
            "claim": "an UPDATE by a key other than the partition key, once pgbench_history is partitioned by month",
            "measured": "plain {num:keyless_plain.tps} tps; partitioned, without the partition key in the WHERE "
            "clause {num:keyless_partitioned.tps} tps ({ratio:keyless_partitioned_vs_plain}), with it "
            "{num:keyed_partitioned.tps} tps ({ratio:keyed_partitioned_vs_plain}); each after the same lookup of the row's "
            "date in a plain table; rows "
            "moved between partitions by 4 clients: {pct:key_moves.failed_share} of transactions failed (moved by a "
            "concurrent update), {pct:key_moves_plain.failed_share} on the plain table",
        }
    )
    common.write_results(
        "pgbench_migration",
        "bench/pgbench_migration.py",
        info,
        vars(options),
        {"scale": DEFAULTS["scale"], "history": DEFAULTS["history"], "repeat": DEFAULTS["repeat"]},
        runs,
        specs,
        rows,
        size="pgbench scale %d (accounts %.0f MB), history %s rows (%.0f MB)"
        % (options.scale, accounts_mb, format(seeded, ","), history_mb),
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
