"""The report playbook at 365 and 3,650 daily partitions: end to end, where its time goes, and the page's size.

Method of bench/common.py (durable server, interleaved repetitions, statements, connections and database time
read from the server log, the whole ``ansible-playbook playbooks/report.yml`` timed as the user waits for it).

Each size is a database of its own holding one fact table partitioned by day on an integer ``YYYYMMDD`` key
(SIGETI's shape) with ``N`` partitions ending today, a few rows in each, some dead tuples and some vacuumed
partitions (so every chart and table of the page has something to show), declared in ``dwh_tables``. A callback
(bench/callback_plugins/bench_profile.py) records every task's time: the read (``table_info``) and what comes after
it (building and writing the report) are reported apart, ``table_info``'s own speed being another claim
(bench/table_info_partitions.py). Methods:

  report_<N>     ``ansible-playbook playbooks/report.yml`` on the N-partition database
  psql_<largest> what a DBA types for the same figures: one query for the partitions' sizes, rows and last
                 vacuum (``pg_partition_tree`` joined to ``pg_stat_user_tables``) through psql

The claim (issue 27): at 3,650 partitions the report playbook within 3× its time at 365, the page under 500 KB.

    .venv/bin/python bench/report_scale.py [--partitions 365,3650] [--rows 20] [--repeat 3]

Writes bench/results/report_scale.json.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from bench import common  # noqa: E402
from bench.weekly_playbook import slowest, weekly_command  # noqa: E402
from tests.integration.test_roles_helpers import write_inventory  # noqa: E402

DEFAULTS = {"largest": 3650, "rows": 20, "repeat": 3}
DEFAULT_SIZES = "365,3650"
TABLE = "dwh_facts.fait_events"
# The report role's tasks: the read (table_info, another claim) and everything after it (building and writing).
ROLE = "sigeti.dwh.report : "
READ_TASK = "Read the tables to report on"
DBA_QUERY = (
    """
SELECT t.relid::regclass, pg_total_relation_size(t.relid), s.n_live_tup, s.n_dead_tup,
       greatest(s.last_vacuum, s.last_autovacuum)
FROM pg_partition_tree('%s') t LEFT JOIN pg_stat_user_tables s ON s.relid = t.relid
WHERE t.isleaf ORDER BY 1
"""
    % TABLE
)


def make_table(conn, partitions, rows):
    """``dwh_facts.fait_events``, one partition per day for the ``partitions`` days up to today, ``rows`` rows in
    each; every 10th partition gets dead tuples, every 7th is vacuumed. Returns the first day (ISO)."""
    today = datetime.date.today()
    first = today - datetime.timedelta(days=partitions - 1)
    common.run_sql(
        conn,
        "DROP SCHEMA IF EXISTS dwh_facts CASCADE",
        "CREATE SCHEMA dwh_facts",
        "CREATE TABLE %s (event_id bigint NOT NULL, date_key integer NOT NULL, montant numeric(14,2), "
        "commentaire text, PRIMARY KEY (event_id, date_key)) PARTITION BY RANGE (date_key)" % TABLE,
        "COMMENT ON TABLE %s IS 'Events, one partition a day'" % TABLE,
    )
    with conn.cursor() as cur:
        cur.execute(
            "SELECT format('CREATE TABLE dwh_facts.%%I PARTITION OF ' || %s || ' FOR VALUES FROM (%%s) TO (%%s)', "
            "'fait_events_p' || to_char(d, 'YYYYMMDD'), to_char(d, 'YYYYMMDD'), to_char(d + 1, 'YYYYMMDD')) "
            "FROM generate_series(%s::date, %s::date, interval '1 day') g(t), LATERAL (SELECT t::date AS d) x",
            (TABLE, first, today),
        )
        for (statement,) in cur.fetchall():
            cur.execute(statement)
    common.run_sql(
        conn,
        "INSERT INTO %s SELECT i, to_char(%s::date + (i %% %d), 'YYYYMMDD')::int, i, repeat('x', 40) "
        "FROM generate_series(1, %d) i" % (TABLE, "'%s'" % first, partitions, partitions * rows),
        "ANALYZE %s" % TABLE,
    )
    with conn.cursor() as cur:
        cur.execute(
            "SELECT c.relname FROM pg_partition_tree(%s) t JOIN pg_class c ON c.oid = t.relid WHERE t.isleaf "
            "ORDER BY 1",
            (TABLE,),
        )
        names = [r[0] for r in cur.fetchall()]
    for number, name in enumerate(names):
        if number % 10 == 0:
            common.run_sql(conn, "UPDATE dwh_facts.%s SET montant = montant" % name)
        elif number % 7 == 0:
            common.run_sql(conn, "VACUUM dwh_facts.%s" % name)
    return first.isoformat()


def inventory(path, server, db, first, workdir):
    """An inventory of one local-connection host declaring the daily table."""
    declared = [
        {"name": TABLE, "key": "date_key", "key_format": "yyyymmdd", "interval": "day", "start": first, "premake": 0}
    ]
    return write_inventory(
        path, {db: (server, db)}, {"dwh_tables": declared, "dwh_report_dir": os.path.join(workdir, db)}
    )


def report(server, inventory_path, profile_path, folder):
    """Run playbooks/report.yml; return ({read_s (table_info), after_read_s (the role's other tasks: building and
    writing the report), tasks, page_kb, controller_mb}, profile)."""
    command, env = weekly_command(server, inventory_path, profile_path, playbook="report.yml")
    done, peak = common.run_sampled(command, env)
    if done.returncode != 0:
        raise RuntimeError("report.yml failed:\n%s" % done.stdout[-4000:])
    with open(profile_path) as handle:
        profile = json.load(handle)
    role = [t for t in profile["tasks"] if t["task"].startswith(ROLE)]
    read = sum(t["seconds"] for t in role if READ_TASK in t["task"])
    total = sum(t["seconds"] for t in role)
    page = os.path.getsize(os.path.join(folder, "report.html"))
    return {
        "read_s": read,
        "after_read_s": total - read,
        "tasks": len(profile["tasks"]),
        "page_kb": page / 1024.0,
        "controller_mb": peak,
    }, profile


def claims(sizes):
    """The ratios and the README rows of the results: the largest size against the smallest, and against psql."""
    small, large = "report_%d" % sizes[0], "report_%d" % sizes[-1]
    specs = [
        {"name": "large_vs_small_wall", "method": large, "baseline": small},
        {"name": "large_vs_small_after_read", "method": large, "baseline": small, "metric": "after_read_s"},
        {"name": "large_vs_psql_wall", "method": large, "baseline": "psql_%d" % sizes[-1]},
    ]
    rows = [
        {
            "claim": "report playbook at %s daily partitions (goal ≤ 3× its time at %s, page < 500 KB)"
            % (format(sizes[-1], ","), format(sizes[0], ",")),
            "measured": "{time:%s.wall_s} against {time:%s.wall_s} ({ratio:large_vs_small_wall}, "
            "{atmost:large_vs_small_wall,3}); after table_info {time:%s.after_read_s} against "
            "{time:%s.after_read_s} ({ratio:large_vs_small_after_read}); page {num:%s.page_kb} KiB "
            "({num:%s.page_kb} KiB at %s); a DBA's psql size query {time:psql_%d.wall_s}"
            % (large, small, large, small, large, small, format(sizes[0], ","), sizes[-1]),
        },
        {
            "claim": "where the report playbook's time goes (%s partitions, last repetition)" % format(sizes[-1], ","),
            "measured": "slowest tasks: {value:slowest}",
        },
    ]
    return specs, rows


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--partitions", default=DEFAULT_SIZES, help="partition counts (default 365,3650)")
    parser.add_argument("--rows", type=int, default=DEFAULTS["rows"], help="rows per partition")
    parser.add_argument("--repeat", type=int, default=DEFAULTS["repeat"])
    options = parser.parse_args(argv)
    sizes = [int(n) for n in options.partitions.split(",")]
    workdir = tempfile.mkdtemp(prefix="bench-report-")
    # autovacuum off: the dead tuples and vacuum times the page shows stay as made
    server = common.durable_server({"autovacuum": "off"})
    profiles = {}
    try:
        methods = {}
        for size in sizes:
            db = server.create_database("r%d" % size)
            conn = common.connect(server, db)
            first = make_table(conn, size, options.rows)
            conn.close()
            path = inventory(os.path.join(workdir, "%s.yml" % db), server, db, first, workdir)
            profile_path = os.path.join(workdir, "%s.profile.json" % db)
            folder = os.path.join(workdir, db, db)
            report(server, path, profile_path, folder)  # warm-up: history.json and runs/ exist from here on

            def run(_rep, path=path, profile_path=profile_path, folder=folder, size=size):
                (numbers, profile), counts = common.measured(server, lambda: report(server, path, profile_path, folder))
                profiles.setdefault("report_%d" % size, []).append(profile)
                return dict(counts, **numbers)

            methods["report_%d" % size] = run
        largest = "r%d" % sizes[-1]

        def dba(_rep):
            return common.measured(server, lambda: common.psql(server, largest, DBA_QUERY))[1]

        methods["psql_%d" % sizes[-1]] = dba
        print("== report.yml at %s daily partitions ==" % options.partitions)
        runs = common.run_interleaved(methods, options.repeat)
        info = common.server_facts(server)
    finally:
        server.destroy()
        subprocess.run(["rm", "-rf", workdir], check=False)

    common.print_table(
        common.summarize(runs), metrics=("wall_s", "read_s", "after_read_s", "db_s", "page_kb", "controller_mb")
    )
    where = {name: slowest(reps[-1]) for name, reps in profiles.items()}
    for name, lines in where.items():
        print("%s slowest tasks (last repetition): %s" % (name, "; ".join(lines[:5])))
    specs, rows = claims(sizes)
    common.write_results(
        "report_scale",
        "bench/report_scale.py",
        info,
        dict(vars(options), sizes=sizes, largest=max(sizes)),
        DEFAULTS,
        runs,
        specs,
        rows,
        size="one table of %s daily partitions, %d rows each" % (options.partitions, options.rows),
        extra={"slowest_tasks": where, "values": {"slowest": "; ".join(where["report_%d" % sizes[-1]][:4])}},
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
