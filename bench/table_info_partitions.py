"""table_info on a table with many partitions: round trips and database time, against a DBA's one query.

Method of bench/common.py (durable server, interleaved repetitions, server-side counts, ansible-playbook end to
end beside database time). Methods:

  module_small   ``table_info`` on a daily-partitioned table of 10 partitions
  module_large   ``table_info`` on the same shape with ``--partitions`` (1,000) partitions
  psql_large     what a DBA types for the sizes of that tree: one ``pg_partition_tree`` query through psql

The claim: a constant number of statements whatever the partition count, and database time that stays under
~100 ms with 1,000 partitions.

    .venv/bin/python bench/table_info_partitions.py [--partitions 1000] [--repeat 3]

Writes bench/results/table_info_partitions.json.
"""

from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from bench import common  # noqa: E402

DEFAULTS = {"partitions": 1000, "repeat": 3}
DBA_QUERY = (
    "SELECT count(*), pg_size_pretty(sum(pg_total_relation_size(relid))) "
    "FROM pg_partition_tree('public.large') WHERE isleaf"
)


def make_table(conn, name, partitions):
    """A daily-partitioned table with ``partitions`` partitions, an index, and 5,000 rows spread over them."""
    common.run_sql(
        conn,
        "CREATE TABLE %s (id bigint, d date NOT NULL, v text) PARTITION BY RANGE (d)" % name,
        "CREATE INDEX ON %s (d)" % name,
    )
    with conn.cursor() as cur:
        cur.execute(
            "SELECT format('CREATE TABLE %%I PARTITION OF %%I FOR VALUES FROM (%%L) TO (%%L)', "
            "'%s_' || to_char(d, 'YYYYMMDD'), '%s', d::date, d::date + 1) "
            "FROM generate_series(date '2020-01-01', date '2020-01-01' + %d, interval '1 day') d"
            % (name, name, partitions - 1)
        )
        for (statement,) in cur.fetchall():
            cur.execute(statement)
    common.run_sql(
        conn,
        "INSERT INTO %s SELECT i, date '2020-01-01' + (i %% %d), 'x' FROM generate_series(1, 5000) i"
        % (name, partitions),
        "ANALYZE %s" % name,
    )


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--partitions", type=int, default=DEFAULTS["partitions"])
    parser.add_argument("--repeat", type=int, default=DEFAULTS["repeat"])
    options = parser.parse_args(argv)
    server = common.durable_server()
    try:
        server.create_database("bench")
        conn = common.connect(server, "bench")
        make_table(conn, "small", 10)
        make_table(conn, "large", options.partitions)

        def module(table, count):
            def run(_rep):
                result, counts = common.run_module(server, "table_info", dict(server.params("bench"), tables=[table]))
                assert len(result["tables"][0]["partitions"]) >= count, result["tables"][0]["partitions"][:3]
                return counts

            return run

        def dba(_rep):
            return common.measured(server, lambda: common.psql(server, "bench", DBA_QUERY))[1]

        methods = {
            "module_small": module("public.small", 10),
            "module_large": module("public.large", options.partitions),
            "psql_large": dba,
        }
        print("== table_info on 10 and %d partitions ==" % options.partitions)
        runs = common.run_interleaved(methods, options.repeat)
        info = common.server_facts(server, "bench")
        conn.close()
    finally:
        server.destroy()

    specs = [
        {"name": "large_vs_small_db", "method": "module_large", "baseline": "module_small", "metric": "db_s"},
        {"name": "large_vs_psql_db", "method": "module_large", "baseline": "psql_large", "metric": "db_s"},
        {"name": "large_vs_psql_wall", "method": "module_large", "baseline": "psql_large"},
    ]
    common.print_table(common.summarize(runs))
    rows = [
        {
            "claim": "`table_info` on %s partitions" % format(options.partitions, ","),
            "measured": "statements {num:module_large.statements} (10 partitions: {num:module_small.statements}); "
            "database time {time:module_large.db_s} ({under:module_large.db_s,0.1}) against {time:module_small.db_s} for 10 "
            "partitions ({ratio:large_vs_small_db}) and {time:psql_large.db_s} for a DBA's `pg_partition_tree` "
            "size query ({ratio:large_vs_psql_db}); end to end {time:module_large.wall_s} through `ansible-playbook`",
        }
    ]
    common.write_results(
        "table_info_partitions",
        "bench/table_info_partitions.py",
        info,
        vars(options),
        DEFAULTS,
        runs,
        specs,
        rows,
        size="%s daily partitions, 5,000 rows" % format(options.partitions, ","),
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
