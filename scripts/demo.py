"""The demo: embedded PostgreSQL + sample SIGETI warehouse + the collection's playbooks. Run through ``./dev demo``.

Steps: start a throwaway server in .demo/pg (kept running; ``./dev stop`` stops it), load the sample
warehouse into database ``sigeti_demo`` (once), then the guide end to end with ansible-playbook: info,
setup (unattended: dwh_confirm=true, verified backup into .demo/backups), weekly, monthly, printing before/after
(the guide's date-range query: plan and time, measured the same way both times; sizes), each command as it can be
pasted, and where the HTML reports are (index.html and the setup's page). A module that has not landed
yet is skipped (its role disabled), and the demo says so.
"""

import argparse
import glob
import json
import os
import shlex
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
# conftest links this checkout as sigeti.dwh under .venv/collections (ansible.cfg's collections_path) and keeps
# Ansible's home and the tools' caches under .venv
import conftest  # noqa: E402
from tests.support.pgserver import PostgresServer  # noqa: E402

DEMO_DIR = os.path.join(ROOT, ".demo", "pg")
DATABASE = "sigeti_demo"


def start_server():
    """Start (or reuse) the demo server; return it."""
    state = os.path.join(DEMO_DIR, "server.json")
    port = None
    if os.path.exists(state):
        with open(state) as handle:
            port = json.load(handle)["port"]
    os.makedirs(DEMO_DIR, exist_ok=True)
    server = PostgresServer(base_dir=DEMO_DIR, port=port)
    try:
        server.connect().close()  # already running (a previous ./dev demo): reuse it
    except Exception:
        server.start()
        server.wait_ready()
    with open(state, "w") as handle:
        json.dump(server.info(), handle)
    os.chmod(state, 0o600)
    return server


def ensure_warehouse(server, scale, reload, partitioned=True):
    """Load the sample warehouse unless it is there already (partitioned by year 2020-2026 unless migration exists)."""
    from tests.support.warehouse import load_warehouse

    conn = server.connect()
    with conn.cursor() as cur:
        cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (DATABASE,))
        exists = cur.fetchone() is not None
    conn.close()
    if exists and partitioned and not reload:
        conn = server.connect(DATABASE)
        with conn.cursor() as cur:
            cur.execute("SELECT relkind FROM pg_class WHERE oid = to_regclass('dwh_facts.fait_attributions')")
            row = cur.fetchone()
        conn.close()
        if not row or row[0] != "p":
            print("the loaded sample warehouse is not partitioned: reloading it partitioned")
            reload = True
    if exists and not reload:
        print("sample warehouse already loaded in database %s (use --reload to start over)" % DATABASE)
        return
    server.create_database(DATABASE)
    conn = server.connect(DATABASE)
    started = time.time()
    summary = load_warehouse(conn, scale=scale, partitioned=partitioned)
    conn.close()
    print("loaded the sample SIGETI warehouse (scale %d) in %.1fs" % (scale, time.time() - started))
    print(json.dumps(summary, indent=2, default=str)[:2000])


def shown(path):
    """``path`` as typed from the checkout root: relative when it is inside it."""
    relative = os.path.relpath(path, ROOT)
    return path if relative.startswith("..") else relative


def playbook_command(playbook, extra_vars=None):
    """The ansible-playbook command line of one demo step, as a user types it from the checkout root (the root
    ansible.cfg finds the collection, the demo inventory reads .demo/pg/server.json: nothing to set)."""
    command = [
        shown(os.path.join(os.path.dirname(sys.executable), "ansible-playbook")),
        "-i",
        "inventories/demo",
        "playbooks/" + playbook,
    ]
    if extra_vars:
        command += ["-e", json.dumps(extra_vars)]
    return command


def run_playbook(playbook, extra_vars=None):
    """Run one playbook of the collection against the demo inventory, printing the command shell-quoted, so that it
    can be pasted as it is (the password is never on a command line)."""
    env = dict(os.environ)
    env.pop("DWH_DEMO_DIR", None)
    env["ANSIBLE_NOCOLOR"] = "1"
    env["ANSIBLE_PIPELINING"] = "1"
    env["ANSIBLE_COLLECTIONS_PATH"] = conftest.COLLECTIONS_PATH
    env.setdefault("ANSIBLE_STDOUT_CALLBACK", "default")
    command = playbook_command(playbook, extra_vars)
    print("\n$ %s" % shlex.join(command), flush=True)
    return subprocess.call(command, cwd=ROOT, env=env, stdin=subprocess.DEVNULL)


MODULES = {"partitioning": "partitioned_table", "compression": "compression", "vacuum": "vacuum"}
RANGE_QUERY = "SELECT count(*) FROM dwh_facts.fait_attributions WHERE date_demandee_key BETWEEN 20230101 AND 20231231"


def available_roles():
    """Which roles can run: their module is in the collection (modules land one by one)."""
    found = {}
    for role, module in MODULES.items():
        found[role] = os.path.exists(os.path.join(ROOT, "plugins", "modules", module + ".py"))
        if not found[role]:
            print("NOTE: module sigeti.dwh.%s is not in the collection yet: the %s role is skipped" % (module, role))
    return found


def supports_migration():
    """True when partitioned_table documents the ``migrate`` option (issue 4)."""
    path = os.path.join(ROOT, "plugins", "modules", "partitioned_table.py")
    if not os.path.exists(path):
        return False
    with open(path) as handle:
        text = handle.read()
    return "\n  migrate:" in text.split('RETURN = r"""')[0]


TIMING_RUNS = 5
TIMING_METHOD = "EXPLAIN (ANALYZE, TIMING OFF) as the verify role runs it, median of %d runs (min-max)" % TIMING_RUNS


def time_range_query(conn, runs=TIMING_RUNS):
    """The guide's date-range query timed the one way the demo uses before and after the set-up: the verify role's
    own statement (``explain_range``: EXPLAIN ANALYZE with TIMING OFF, read-only transaction), ``runs`` times.
    Returns ``(median, min, max)`` of the server's execution times, in ms."""
    from ansible_collections.sigeti.dwh.plugins.module_utils.catalog.trials import explain_range

    times = [
        explain_range(conn, "dwh_facts", "fait_attributions", "date_demandee_key", 20230101, 20231231, True).plan[
            "Execution Time"
        ]
        for _run in range(runs)
    ]
    return statistics.median(times), min(times), max(times)


def timing_text(timing):
    return "%.1f ms (%.1f-%.1f)" % timing


def report_pages(report_dir, host="demo"):
    """``(index.html, the newest setup run's report.html)`` under ``report_dir``, each None when absent. Run folders
    are named <UTC time>-<playbook>[-check]: sorted by name = sorted by time."""
    index = os.path.join(report_dir, host, "index.html")
    setups = sorted(glob.glob(os.path.join(report_dir, host, "runs", "*-setup", "report.html")))
    return (index if os.path.exists(index) else None), (setups[-1] if setups else None)


def measure(server, title):
    """Print the guide's date-range query (plan and time) and the warehouse sizes; return (timing, bytes)."""
    conn = server.connect(DATABASE)
    timing = time_range_query(conn)
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute("EXPLAIN (COSTS OFF) " + RANGE_QUERY)
        text = [r[0] for r in cur.fetchall()]
        cur.execute("""SELECT n.nspname, sum(pg_total_relation_size(c.oid))::bigint
                       FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                       WHERE n.nspname IN ('dwh_facts', 'dwh_dim', 'dwh_marts') AND c.relkind IN ('r', 'm')
                       GROUP BY 1 ORDER BY 1""")
        sizes = cur.fetchall()
        cur.execute("""SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0)::bigint FROM pg_class c
                       JOIN pg_namespace n ON n.oid = c.relnamespace
                       WHERE n.nspname = 'dwh_facts' AND c.relkind = 'r' AND c.relname LIKE '%\\_unpartitioned'""")
        kept = cur.fetchone()[0]
    conn.close()
    print("\n=== %s" % title)
    print("the guide's date-range query: %s" % RANGE_QUERY)
    for line in text:
        print("    " + line)
    print("execution time: %s (%s)" % (timing_text(timing), TIMING_METHOD))
    print(
        "sizes: "
        + ", ".join("%s %.1f MiB" % (schema, size / 1048576.0) for schema, size in sizes)
        + " (total %.1f MiB)" % (sum(s for _schema, s in sizes) / 1048576.0)
    )
    if kept:
        print(
            "       of which %.1f MiB are the original plain tables kept by the migration as *_unpartitioned "
            "(drop_source: true in dwh_tables drops them once verified)" % (kept / 1048576.0)
        )
    return timing, sum(s for _schema, s in sizes)


def already_set_up(server, migration):
    """True when a previous ./dev demo migrated the sample warehouse already (its facts are partitioned)."""
    if not migration:
        return False
    conn = server.connect(DATABASE)
    with conn.cursor() as cur:
        cur.execute("SELECT relkind FROM pg_class WHERE oid = to_regclass('dwh_facts.fait_attributions')")
        row = cur.fetchone()
    conn.close()
    return bool(row) and row[0] == "p"


def main(argv):
    try:
        return demo(argv)
    except RuntimeError as error:
        # e.g. no server binaries, or no folder the server user can reach: say what to do, no traceback
        print("./dev demo cannot run: %s" % error, file=sys.stderr)
        return 2


def demo(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--scale",
        type=int,
        default=int(os.environ.get("DWH_DEMO_SCALE", "1000000")),
        help="fact rows of the sample warehouse (default 1,000,000)",
    )
    parser.add_argument("--reload", action="store_true", help="drop and reload the sample warehouse")
    args = parser.parse_args(argv)
    server = start_server()
    print("embedded PostgreSQL at 127.0.0.1:%d (data in %s; stop it with ./dev stop)" % (server.port, server.data_dir))
    roles = available_roles()
    migration = supports_migration()
    if migration:
        print("the demo starts from the plain sample warehouse (the guide's 'before'): setup migrates it online")
    else:
        print(
            "NOTE: migration of plain tables is not in the collection yet: the demo starts from the sample "
            "warehouse partitioned by year 2020-2026 (setup adds the years ahead)"
        )
    ensure_warehouse(server, args.scale, args.reload, partitioned=not migration)
    if already_set_up(server, migration):
        # a re-run: the warehouse was set up by a previous ./dev demo, so this is no "before"
        first, second = "NOW (already set up by a previous ./dev demo; --reload starts over)", "now"
    else:
        first, second = "BEFORE the set-up", "before"
    before_ms, before_bytes = measure(server, first)
    # Only the roles whose module is missing are switched off on the command line (none, once every module landed).
    off = {"dwh_%s_enabled" % role: False for role, ok in roles.items() if not ok}
    steps = [
        ("info.yml", None),
        ("setup.yml", off or None),
        ("weekly.yml", {k: v for k, v in off.items() if k != "dwh_compression_enabled"} or None),
        ("monthly.yml", {k: v for k, v in off.items() if k == "dwh_vacuum_enabled"} or None),
    ]
    for playbook, extra in steps:
        code = run_playbook(playbook, extra)
        if code != 0:
            print("\n%s failed (exit %d): see above" % (playbook, code))
            return code
    after_ms, after_bytes = measure(server, "AFTER setup, weekly and monthly")
    print("\n=== summary")
    print(
        "date-range query: %s %s, %s after (%s); warehouse %.1f MiB %s, %.1f MiB after"
        % (
            timing_text(before_ms),
            second,
            timing_text(after_ms),
            TIMING_METHOD,
            before_bytes / 1048576.0,
            second,
            after_bytes / 1048576.0,
        )
    )
    print("\nnext, from %s with nothing to set:" % ROOT)
    print("  .venv/bin/ansible-doc sigeti.dwh.partitioned_table")
    print("  .venv/bin/ansible-playbook -i inventories/demo sigeti.dwh.weekly --check --diff")
    print("  ./dev navigator run playbooks/weekly.yml --ee false --mode stdout -i inventories/demo")
    for playbook, extra in steps:
        print("  " + shlex.join(playbook_command(playbook, extra)))
    print("backups: %s" % os.path.join(ROOT, ".demo", "backups"))
    index, setup_page = report_pages(os.path.join(ROOT, ".demo", "reports"))
    if index:
        print("health reports, every run: %s" % index)
    if setup_page:
        print("the setup's page (its before/after and what it changed): %s" % setup_page)
    print("(each run's folder under runs/ also holds report.md and report.json; the latest report.html, report.json")
    print(" sit beside index.html; the Prometheus textfile is sigeti_dwh_<host>.prom in the report folder)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
