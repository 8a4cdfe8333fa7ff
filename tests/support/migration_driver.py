"""Test-only helpers for the migration engine (not a module).

* ``yearly_layout(table, 2020, 2030)``: target partitions of an integer ``YYYYMMDD`` key, one per year, plus a
  default partition, without depending on ``core/periods.py``.
* ``migrate(conn, "schema.table", key, ...)``: facts -> plan -> run, as the ``partitioned_table`` module will.
* Command line, for kill tests (run in a subprocess, then SIGKILLed or its backend terminated)::

      python -m tests.support.migration_driver --dsn DSN --table s.t --key k [--mode online]
          [--first 2020 --last 2030] [--batch-rows N] [--die-at PHASE] [--die-after-batches N]
          [--die-after-sql REGEX] [--hold-at PHASE]

  ``--die-at`` SIGKILLs this process when the migration enters PHASE (the progress callback);
  ``--die-after-sql`` SIGKILLs it right after a statement matching REGEX ran (inside an open transaction:
  the server sees the client vanish and rolls back); ``--hold-at`` prints ``HOLD <backend pid>`` and waits
  for a line on stdin at PHASE, so a test can ``pg_terminate_backend`` it first. Prints the result as JSON on success.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import sys


def yearly_layout(table_name, first=2020, last=2030, default=True):
    """``[{"name": "<table>_YYYY", "low": YYYY0101, "high": (YYYY+1)0101}, ..., {"name": "<table>_default", ...}]``."""
    layout = [
        {"name": "%s_%d" % (table_name, y), "low": y * 10000 + 101, "high": (y + 1) * 10000 + 101}
        for y in range(first, last + 1)
    ]
    if default:
        layout.append({"name": "%s_default" % table_name, "default": True})
    return layout


def _modules():
    from ansible_collections.sigeti.dwh.plugins.module_utils.catalog import tables as catalog
    from ansible_collections.sigeti.dwh.plugins.module_utils.core.identifiers import split_name
    from ansible_collections.sigeti.dwh.plugins.module_utils.migration import api as migration
    from ansible_collections.sigeti.dwh.plugins.module_utils.plan import executor as plan
    from ansible_collections.sigeti.dwh.plugins.module_utils.session import connection

    return catalog, connection, migration, plan, split_name


def migrate(
    conn,
    name,
    key,
    mode="online",
    first=2020,
    last=2030,
    default=True,
    progress=None,
    retries=3,
    retry_delay=0.2,
    check_mode=False,
    layout=None,
    side_connect=None,
    **options,
):
    """Run one migration the way the module does; return the result dict (or the rendered plan in check mode)."""
    catalog, connection, migration, plan, split_name = _modules()
    schema, table_name = split_name(name)
    table = catalog.read_table(conn, schema, table_name)
    server = connection.server_facts(conn)
    layout = layout if layout is not None else yearly_layout(table_name, first, last, default)
    opts = dict(options, mode=mode, key=key)
    if check_mode:
        facts = migration.read_facts(conn, table, layout, opts, server)
        planned = migration.plan_migration(table, layout, opts, server, facts=facts)
        return migration.render_plan(conn, planned)
    executor = plan.Executor(conn, retries=retries, retry_delay=retry_delay)
    return migration.run_migration(
        conn,
        executor,
        table,
        layout,
        opts,
        server,
        progress=progress,
        side_connect=side_connect or (lambda: connect_like(conn)),
    )


def connect_like(conn, suffix="/side"):
    """A second connection to the same database as ``conn``, with its lock and statement timeouts (what
    ``connection.connect_again`` gives the module)."""
    import psycopg2

    info = conn.info
    with conn.cursor() as cur:
        cur.execute("SELECT current_setting('lock_timeout'), current_setting('statement_timeout')")
        lock_timeout, statement_timeout = cur.fetchone()
    other = psycopg2.connect(
        host=info.host,
        port=info.port,
        user=info.user,
        password=info.password,
        dbname=info.dbname,
        application_name="sigeti.dwh" + suffix,
        options="-c lock_timeout=%s -c statement_timeout=%s" % (lock_timeout, statement_timeout),
    )
    return other


def _connect(dsn, hooks):
    import psycopg2
    import psycopg2.extensions

    pattern = re.compile(hooks["die_after_sql"]) if hooks.get("die_after_sql") else None

    class KillingCursor(psycopg2.extensions.cursor):
        def execute(self, query, vars=None):
            result = super().execute(query, vars)
            text = query if isinstance(query, str) else query.as_string(self.connection)
            if pattern is not None and pattern.search(text):
                os.kill(os.getpid(), signal.SIGKILL)
            return result

    conn = psycopg2.connect(dsn, cursor_factory=KillingCursor)
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute("SET lock_timeout = '2s'")
    return conn


def main(argv=None):
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    sys.path.insert(0, root)
    import conftest  # noqa: F401  (puts ansible_collections.sigeti.dwh on sys.path)

    parser = argparse.ArgumentParser()
    parser.add_argument("--dsn", required=True)
    parser.add_argument("--table", required=True)
    parser.add_argument("--key", required=True)
    parser.add_argument("--mode", default="online")
    parser.add_argument("--first", type=int, default=2020)
    parser.add_argument("--last", type=int, default=2030)
    parser.add_argument("--batch-rows", type=int, default=1000)
    parser.add_argument("--extend-primary-key", action="store_true")
    parser.add_argument("--die-at")
    parser.add_argument("--die-after-batches", type=int)
    parser.add_argument("--die-after-sql")
    parser.add_argument("--hold-at")
    args = parser.parse_args(argv)
    conn = _connect(args.dsn, {"die_after_sql": args.die_after_sql})
    with conn.cursor() as cur:
        cur.execute("SELECT pg_backend_pid()")
        pid = cur.fetchone()[0]

    def progress(event):
        phase = event["phase"]
        if args.die_at == phase:
            os.kill(os.getpid(), signal.SIGKILL)
        if args.die_after_batches is not None and phase == "copy" and event.get("page", 0) > 0:
            progress.batches += 1
            if progress.batches >= args.die_after_batches:
                os.kill(os.getpid(), signal.SIGKILL)
        if args.hold_at == phase:
            # the test terminates our backend, then tells us to go on (and fail on the dead connection)
            print("HOLD %d" % pid, flush=True)
            sys.stdin.readline()

    progress.batches = 0
    result = migrate(
        conn,
        args.table,
        args.key,
        mode=args.mode,
        first=args.first,
        last=args.last,
        progress=progress,
        batch_rows=args.batch_rows,
        extend_primary_key=args.extend_primary_key,
    )
    result.pop("queries", None)
    print(json.dumps(result, default=str), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
