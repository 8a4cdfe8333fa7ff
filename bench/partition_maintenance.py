"""Partition maintenance: sigeti.dwh.partitioned_table against what a DBA runs, in the same run.

Method of bench/common.py (durable server, interleaved repetitions, server-side counts, ansible-playbook end to
end beside database time). Two claims, each against pg_partman (4.7 on Debian's PostgreSQL 15; 5.x syntax when
5.x is installed) called the way a DBA does, ``psql -c`` on a fresh connection:

1. ``create``: N daily partitions (+ default) from scratch: the module vs ``partman.create_parent(...)``.
2. ``noop``: a maintenance run that has nothing to do on those N partitions: the module vs
   ``psql -c "SELECT partman.run_maintenance()"``; and the module's statements on N/10 partitions (round trips
   must not grow with the partition count).

    .venv/bin/python bench/partition_maintenance.py [--scale 1000] [--repeat 3]

Writes bench/results/partition_maintenance.json.
"""

from __future__ import annotations

import argparse
import datetime
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from bench import common  # noqa: E402

DEFAULTS = {"scale": 1000, "repeat": 3}
PREMAKE = 4


def partman_major(conn):
    return int(common.one(conn, "SELECT extversion FROM pg_extension WHERE extname = 'pg_partman'").split(".")[0])


def create_parent_sql(table, start, major):
    """The DBA's call, in the syntax of the installed pg_partman."""
    if major >= 5:
        return (
            "SELECT partman.create_parent(p_parent_table => '%s', p_control => 'k', p_interval => '1 day', "
            "p_premake => %d, p_start_partition => '%s')" % (table, PREMAKE, start)
        )
    return (
        "SELECT partman.create_parent(p_parent_table => '%s', p_control => 'k', p_type => 'native', "
        "p_interval => 'daily', p_premake => %d, p_start_partition => '%s')" % (table, PREMAKE, start)
    )


def fresh_table(conn, table):
    common.run_sql(
        conn,
        "DELETE FROM partman.part_config WHERE parent_table = '%s'" % table,
        "DROP TABLE IF EXISTS %s CASCADE" % table,
        "CREATE TABLE %s (id bigint, k date NOT NULL, v text) PARTITION BY RANGE (k)" % table,
        "CREATE INDEX ON %s (k)" % table,
    )


def module_args(server, table, start):
    return dict(
        server.params("bench"),
        name=table,
        key="k",
        interval="day",
        start=start.isoformat(),
        premake=PREMAKE,
        default_partition=True,
        max_new_partitions=100000,  # the bench creates the whole set in one run on purpose (default limit 100)
    )


def partitions(conn, table):
    return common.one(conn, "SELECT count(*) FROM pg_inherits WHERE inhparent = '%s'::regclass" % table)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=int, default=DEFAULTS["scale"], help="daily partitions (default 1000)")
    parser.add_argument("--repeat", type=int, default=DEFAULTS["repeat"], help="repetitions (>= 3 for a claim)")
    options = parser.parse_args(argv)
    n = options.scale
    server = common.durable_server()
    try:
        server.create_database("bench")
        conn = common.connect(server, "bench")
        common.run_sql(conn, "CREATE SCHEMA partman", "CREATE EXTENSION pg_partman SCHEMA partman")
        major = partman_major(conn)
        today = common.one(conn, "SELECT current_date")
        start = today - datetime.timedelta(days=n - PREMAKE - 1)
        small_n = max(10, n // 10)
        small_start = today - datetime.timedelta(days=small_n - PREMAKE - 1)

        def module_create(_rep):
            result, counts = common.run_module(server, "partitioned_table", module_args(server, "public.sig", start))
            assert len(result["created"]) == n + 1, len(result["created"])
            return counts

        def partman_create(_rep):
            _out, counts = common.measured(
                server, lambda: common.psql(server, "bench", create_parent_sql("public.pm", start.isoformat(), major))
            )
            return dict(counts, partitions=partitions(conn, "public.pm"))

        def prepare_create(name, _rep):
            fresh_table(conn, "public.sig" if name == "module" else "public.pm")
            common.run_sql(conn, "CHECKPOINT")

        print("== create %d daily partitions from scratch ==" % n)
        create = common.run_interleaved(
            {"module": module_create, "pg_partman": partman_create}, options.repeat, prepare=prepare_create
        )

        # The no-op claim runs on the state the last creation left (both tables hold n partitions + default).
        fresh_table(conn, "public.sig_small")
        common.run_module(server, "partitioned_table", module_args(server, "public.sig_small", small_start))
        common.psql(server, "bench", "SELECT partman.run_maintenance()")  # the first call may still have work

        def module_noop(_rep):
            result, counts = common.run_module(server, "partitioned_table", module_args(server, "public.sig", start))
            assert not result["changed"], result
            return counts

        def module_noop_small(_rep):
            args = module_args(server, "public.sig_small", small_start)
            result, counts = common.run_module(server, "partitioned_table", args)
            assert not result["changed"], result
            return counts

        def partman_noop(_rep):
            return common.measured(server, lambda: common.psql(server, "bench", "SELECT partman.run_maintenance()"))[1]

        print("== no-op maintenance on %d daily partitions ==" % n)
        noop = common.run_interleaved(
            {"module": module_noop, "module_small": module_noop_small, "pg_partman": partman_noop}, options.repeat
        )
        info = common.server_facts(server, "bench")
        info["pg_partman"] = common.one(conn, "SELECT extversion FROM pg_extension WHERE extname = 'pg_partman'")
        conn.close()
    finally:
        server.destroy()

    runs = {"create_" + k: v for k, v in create.items()}
    runs.update({"noop_" + k: v for k, v in noop.items()})
    specs = [
        {"name": "create_wall", "method": "create_module", "baseline": "create_pg_partman", "metric": "wall_s"},
        {"name": "create_db", "method": "create_module", "baseline": "create_pg_partman", "metric": "db_s"},
        {"name": "noop_wall", "method": "noop_module", "baseline": "noop_pg_partman", "metric": "wall_s"},
        {"name": "noop_db", "method": "noop_module", "baseline": "noop_pg_partman", "metric": "db_s"},
    ]
    common.print_table(common.summarize(runs))
    rows = [
        {
            "claim": "partition maintenance with nothing to do, %s daily partitions" % format(n, ","),
            "measured": "end to end: module through `ansible-playbook` {time:noop_module.wall_s} vs "
            '`psql -c "SELECT partman.run_maintenance()"` (pg_partman %s) {time:noop_pg_partman.wall_s}: '
            "{ratio:noop_wall}; database time {ratio:noop_db}; module statements {num:noop_module.statements} "
            "(on %d partitions: {num:noop_module_small.statements}) + {num:noop_module.connections} connection; "
            "module RSS {mb:noop_module.rss_mb}" % (info["pg_partman"], small_n),
        },
        {
            "claim": "creating %s daily partitions from scratch" % format(n, ","),
            "measured": "end to end {ratio:create_wall} pg_partman's `create_parent` through psql "
            "({time:create_module.wall_s} vs {time:create_pg_partman.wall_s}); database time {ratio:create_db}",
        },
    ]
    common.write_results(
        "partition_maintenance",
        "bench/partition_maintenance.py",
        info,
        vars(options),
        DEFAULTS,
        runs,
        specs,
        rows,
        size="%s daily partitions" % format(n, ","),
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
