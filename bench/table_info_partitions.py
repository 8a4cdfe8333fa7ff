"""table_info and a no-op partitioned_table at 365 and 3,650 daily partitions: linear in partitions, and a DBA's query.

Method of bench/common.py (durable server, interleaved repetitions, server-side counts, ansible-playbook end to
end beside database time). Two tables of the same shape (daily partitions ending two days after today, a default
partition, an index, 5,000 rows), ``--small`` and ``--large`` partitions. Methods:

  info_small / info_large       ``table_info`` (compression sampled, as the report role asks) on each table
  ensure_small / ensure_large   ``partitioned_table`` declaring what is there (day, premake 2): the weekly no-op
  psql_large                    what a DBA types for the sizes of the large tree: one ``pg_partition_tree`` query

The claim: linear in partitions (10x the partitions, at most ~10x the database time and no more statements;
the end-to-end time grows less, its fixed part being ansible-playbook's start), whatever the partition count.

    .venv/bin/python bench/table_info_partitions.py [--small 365] [--large 3650] [--repeat 3]

Writes bench/results/table_info_partitions.json.
"""

from __future__ import annotations

import argparse
import datetime
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from bench import common  # noqa: E402

DEFAULTS = {"small": 365, "large": 3650, "repeat": 3}
DBA_QUERY = (
    "SELECT count(*), pg_size_pretty(sum(pg_total_relation_size(relid))) "
    "FROM pg_partition_tree('public.large') WHERE isleaf"
)
# Partitions created per transaction: each holds locks on its new tables until the commit (the server's lock
# table holds a few thousand), and one commit per partition is minutes of fsync at 3,650.
CREATE_BATCH = 200


def first_day(partitions):
    """The first day of a table whose ``partitions`` days end two days after today (premake 2: nothing to add)."""
    return datetime.date.today() - datetime.timedelta(days=partitions - 3)


def make_table(conn, name, partitions):
    """A daily-partitioned table: ``partitions`` days ending two days after today, a default partition, an index
    and 5,000 rows spread over the days."""
    start = first_day(partitions)
    common.run_sql(
        conn,
        "CREATE TABLE %s (id bigint, d date NOT NULL, v text) PARTITION BY RANGE (d)" % name,
        "CREATE INDEX ON %s (d)" % name,
        "CREATE TABLE %s_default PARTITION OF %s DEFAULT" % (name, name),
    )
    for first in range(0, partitions, CREATE_BATCH):
        last = min(partitions, first + CREATE_BATCH) - 1
        common.run_sql(
            conn,
            "DO $$ DECLARE d date; BEGIN FOR d IN SELECT g::date FROM generate_series(date '%s' + %d, date '%s' + %d, "
            "interval '1 day') g LOOP EXECUTE format('CREATE TABLE %%I PARTITION OF %s FOR VALUES FROM (%%L) TO (%%L)', "
            "'%s_' || to_char(d, 'YYYYMMDD'), d, d + 1); END LOOP; END $$" % (start, first, start, last, name, name),
        )
    common.run_sql(
        conn,
        "INSERT INTO %s SELECT i, date '%s' + (i %% %d), 'x' FROM generate_series(1, 5000) i"
        % (name, start, partitions),
        "ANALYZE %s" % name,
    )


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", type=int, default=DEFAULTS["small"])
    parser.add_argument("--large", type=int, default=DEFAULTS["large"])
    parser.add_argument("--repeat", type=int, default=DEFAULTS["repeat"])
    options = parser.parse_args(argv)
    sizes = {"small": options.small, "large": options.large}
    server = common.durable_server()
    try:
        server.create_database("bench")
        conn = common.connect(server, "bench")
        for name, count in sizes.items():
            make_table(conn, name, count)

        def info(table, count):
            def run(_rep):
                args = dict(server.params("bench"), tables=["public." + table], compression="sample")
                result, counts = common.run_module(server, "table_info", args)
                assert result["tables"][0]["partition_count"] == count + 1, result["tables"][0]["partition_count"]
                return counts

            return run

        def ensure(table, count):
            declared = {"name": "public." + table, "key": "d", "interval": "day", "premake": 2}
            declared["start"] = first_day(count).isoformat()

            def run(_rep):
                result, counts = common.run_module(
                    server, "partitioned_table", dict(server.params("bench"), tables=[declared])
                )
                assert not result["changed"], result.get("results", result)
                return counts

            return run

        def dba(_rep):
            return common.measured(server, lambda: common.psql(server, "bench", DBA_QUERY))[1]

        methods = {}
        for name, count in sizes.items():
            methods["info_" + name] = info(name, count)
            methods["ensure_" + name] = ensure(name, count)
        methods["psql_large"] = dba
        print("== table_info and a no-op partitioned_table on %(small)d and %(large)d partitions ==" % sizes)
        runs = common.run_interleaved(methods, options.repeat)
        info_facts = common.server_facts(server, "bench")
        conn.close()
    finally:
        server.destroy()

    specs = [
        {"name": "info_large_vs_small_db", "method": "info_large", "baseline": "info_small", "metric": "db_s"},
        {"name": "info_large_vs_small_wall", "method": "info_large", "baseline": "info_small"},
        {"name": "ensure_large_vs_small_db", "method": "ensure_large", "baseline": "ensure_small", "metric": "db_s"},
        {"name": "ensure_large_vs_small_wall", "method": "ensure_large", "baseline": "ensure_small"},
        {"name": "info_large_vs_psql_db", "method": "info_large", "baseline": "psql_large", "metric": "db_s"},
    ]
    common.print_table(common.summarize(runs))
    large, small = format(options.large, ","), format(options.small, ",")
    rows = [
        {
            "claim": "`table_info` on %s partitions, linear in partitions" % large,
            "measured": "end to end {time:info_large.wall_s} through `ansible-playbook` against {time:info_small.wall_s} "
            "for %s partitions ({ratio:info_large_vs_small_wall}); database time {time:info_large.db_s} "
            "({ratio:info_large_vs_small_db} of %s partitions') in {num:info_large.statements} statements "
            "({num:info_small.statements} at %s), {time:psql_large.db_s} for a DBA's `pg_partition_tree` size query"
            % (small, small, small),
        },
        {
            "claim": "a no-op `partitioned_table` on %s daily partitions, linear in partitions" % large,
            "measured": "end to end {time:ensure_large.wall_s} against {time:ensure_small.wall_s} for %s partitions "
            "({ratio:ensure_large_vs_small_wall}); database time {time:ensure_large.db_s} "
            "({ratio:ensure_large_vs_small_db}) in {num:ensure_large.statements} statements" % small,
        },
    ]
    common.write_results(
        "table_info_partitions",
        "bench/table_info_partitions.py",
        info_facts,
        vars(options),
        DEFAULTS,
        runs,
        specs,
        rows,
        size="%s and %s daily partitions, 5,000 rows each" % (small, large),
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
