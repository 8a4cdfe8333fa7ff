"""The method every benchmark of bench/ shares (issue 20): durable server, interleaved repetitions, spreads,
round trips counted by the server, end-to-end ``ansible-playbook`` time beside database time, and provenance.

* :func:`durable_server` starts a throwaway PostgreSQL with fsync, synchronous_commit and full_page_writes on,
  a small ``shared_buffers`` (data must not fit in cache) and every statement logged with its duration
  (``log_min_duration_statement = 0``) and every connection (``log_connections``), so round trips and database
  time are read from the server's log, not guessed by the client. The log rather than pg_stat_statements:
  it sees the connection, BEGIN/ROLLBACK, and which client sent what (application_name).
* :func:`interleaved` gives the order of each repetition: A B C, B C A, C A B, ... (a fixed order favours
  whoever runs second on a warm cache).
* :func:`summary` and :func:`compare` give median and min-max, and a ratio whose spread crosses 1 is called
  "no difference", never a gain.
* :class:`ServerLog` counts the statements, connections and summed statement durations of one run, leaving
  out the harness's own connections (application_name ``bench-*``).
* :func:`run_playbook` runs one module through ``ansible-playbook`` (what the user waits for); the module's
  peak RSS is read by a wrapper interpreter (``bench/rss_python.py``).
* :func:`write_results` writes ``bench/results/<claim>.json``: commit, PostgreSQL version, settings, cores,
  parameters, every repetition's raw numbers, medians and spreads, and the README rows it backs.

Standard library plus psycopg2 and the test support of this repository (the throwaway server).
"""

from __future__ import annotations

import datetime
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time

BENCH = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(BENCH)
RESULTS = os.path.join(BENCH, "results")
PG15_BIN = "/usr/lib/postgresql/15/bin"
HARNESS_APP = "bench-harness"
PROBE_APP = "bench-probe"

if ROOT not in sys.path:
    sys.path.insert(0, ROOT)
from bench.report import compare, ratio_text, summarize  # noqa: E402

# Durable: what a production server runs with. Small shared_buffers so the data of a full-scale run does not fit.
DURABLE = {
    "fsync": "on",
    "synchronous_commit": "on",
    "full_page_writes": "on",
    "shared_buffers": "128MB",
    "max_wal_size": "2GB",
    "log_min_duration_statement": "0",
    "log_connections": "on",
    "log_line_prefix": "'%m [%p] %a| '",
    "log_min_messages": "warning",
}
RECORDED_SETTINGS = (
    "server_version",
    "fsync",
    "synchronous_commit",
    "full_page_writes",
    "shared_buffers",
    "effective_cache_size",
    "work_mem",
    "maintenance_work_mem",
    "max_wal_size",
    "checkpoint_timeout",
    "max_parallel_maintenance_workers",
    "max_parallel_workers_per_gather",
    "default_toast_compression",
    "log_min_duration_statement",
    "autovacuum",
)


# -- the server -------------------------------------------------------------------------------------------------


def collections_path():
    """The folder holding ansible_collections/sigeti/dwh for ansible-playbook (conftest makes it; imported late so
    the statistics of this file load without the test support)."""
    import conftest

    return conftest.COLLECTIONS_PATH


def pick_bin_dir():
    """Debian's PostgreSQL 15 with pg_partman (the baselines need it): the system's when it has the extension, else
    the checkout's private copy with Debian's postgresql-15-partman and -repack placed into it
    (tests/support/repack.py, nothing installed into the system); else what the tests use."""
    if os.environ.get("PG_BIN"):
        return os.environ["PG_BIN"]
    if os.path.exists("/usr/share/postgresql/15/extension/pg_partman.control"):
        return PG15_BIN
    from tests.support.repack import RepackUnavailable, pg15_repack_bin_dir

    try:
        return pg15_repack_bin_dir(partman=True)
    except RepackUnavailable as error:
        print("pg_partman baselines unavailable: %s" % error, file=sys.stderr)
        return None


def durable_server(settings=None):
    """Start a throwaway server with the durable settings (plus ``settings``); return it, ready."""
    conf = dict(DURABLE)
    conf.update(settings or {})
    collections_path()  # makes ansible_collections.sigeti.dwh importable for the scripts
    from tests.support.pgserver import PostgresServer

    server = PostgresServer(bin_dir=pick_bin_dir(), settings=conf).start()
    server.wait_ready()
    return server


def connect(server, dbname="postgres", app=HARNESS_APP):
    """An autocommit connection tagged with a harness application_name (left out of the counts)."""
    return server.connect(dbname, application_name=app)


def server_facts(server, dbname="postgres"):
    """Version, recorded settings and installed-extension versions of the server, for provenance."""
    conn = connect(server, dbname)
    try:
        with conn.cursor() as cur:
            cur.execute(
                "SELECT name, current_setting(name) FROM pg_settings WHERE name = ANY(%s)", (list(RECORDED_SETTINGS),)
            )
            settings = dict(cur.fetchall())
            cur.execute(
                "SELECT name, default_version FROM pg_available_extensions WHERE name = ANY(%s)",
                (["pg_partman", "pg_repack", "pg_stat_statements"],),
            )
            extensions = dict(cur.fetchall())
            cur.execute("SELECT version()")
            version = cur.fetchone()[0]
    finally:
        conn.close()
    return {"version": version, "settings": settings, "extensions": extensions, "bin_dir": server.bin_dir}


def one(conn, statement, params=None):
    with conn.cursor() as cur:
        cur.execute(statement, params)
        return cur.fetchone()[0]


def run_sql(conn, *statements):
    with conn.cursor() as cur:
        for statement in statements:
            cur.execute(statement)


# -- counting on the server --------------------------------------------------------------------------------------

_LINE = re.compile(r"^\S+ \S+ \S+ \[(\d+)\] ([^|]*)\| (?:LOG|ERROR|WARNING|FATAL):\s+(.*)$")
_DURATION = re.compile(r"duration: ([\d.]+) ms\s+(?:statement|execute [^:]*):")
_AUTHORIZED = re.compile(r"connection authorized: .*application_name=(\S+)")


class ServerLog:
    """Counts what clients other than the harness sent to the server between :meth:`mark` and :meth:`read`."""

    def __init__(self, server):
        self.path = server.log_file
        self.offset = 0

    def mark(self):
        self.offset = os.path.getsize(self.path)

    def read(self):
        """Return {statements, connections, db_s, errors} since the mark (harness and probe excluded)."""
        counts = {"statements": 0, "connections": 0, "db_s": 0.0, "errors": 0}
        with open(self.path, "rb") as handle:
            handle.seek(self.offset)
            text = handle.read().decode("utf-8", "replace")
        lines = text.splitlines()
        for number, line in enumerate(lines):
            match = _LINE.match(line)
            if not match:
                continue  # continuation of a multi-line statement
            app, message = match.group(2), match.group(3)
            authorized = _AUTHORIZED.search(message)
            if authorized:
                app = authorized.group(1)
            if app.startswith("bench-"):
                continue
            if authorized:
                counts["connections"] += 1
                continue
            duration = _DURATION.search(message)
            if duration:
                counts["statements"] += 1
                seconds = float(duration.group(1)) / 1000.0
                counts["db_s"] += seconds
                if seconds > counts.get("slowest_s", -1):
                    # where the database time goes: the slowest statement, its first words
                    counts["slowest_s"] = seconds
                    counts["slowest_sql"] = statement_text(message[duration.end() :], lines[number + 1 :])
            elif line.split("| ", 1)[1].startswith(("ERROR", "FATAL")):
                counts["errors"] += 1
        return counts


def statement_text(first, following):
    """The first 160 characters of a logged statement, continuation lines included, on one line."""
    parts = [first]
    for line in following:
        if _LINE.match(line) or sum(len(p) for p in parts) > 160:
            break
        parts.append(line)
    return " ".join(" ".join(parts).split())[:160]


def measured(server, func):
    """Run ``func()``; return (value, {wall_s, statements, connections, db_s, errors}) read from the server log."""
    log = ServerLog(server)
    log.mark()
    started = time.perf_counter()
    value = func()
    wall = time.perf_counter() - started
    time.sleep(0.05)  # the log is written by the backends: let the last lines land
    counts = log.read()
    counts["wall_s"] = wall
    return value, counts


# -- running what the user runs ----------------------------------------------------------------------------------


def psql(server, dbname, sql, app="psql"):
    """Run ``psql -X -v ON_ERROR_STOP=1`` on a fresh connection (as a DBA would); raise on failure."""
    env = dict(os.environ, PGPASSWORD=server.password, PGAPPNAME=app)
    command = [
        os.path.join(server.bin_dir, "psql"),
        "-X",
        "-q",
        "-v",
        "ON_ERROR_STOP=1",
        "-h",
        "127.0.0.1",
        "-p",
        str(server.port),
        "-U",
        "postgres",
        "-d",
        dbname,
    ]
    if "\n" in sql.strip():
        command += ["-f", "-"]
        result = subprocess.run(command, input=sql, env=env, capture_output=True, text=True, check=False)
    else:
        result = subprocess.run(command + ["-c", sql], env=env, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise RuntimeError("psql failed: %s" % (result.stderr or result.stdout).strip())
    return result.stdout


def pipe(server, left, right, env=None):
    """Run ``left | right`` (lists of argv, binaries beside the server's); raise on failure."""
    env = dict(os.environ, PGPASSWORD=server.password, PGAPPNAME="pg_dump", **(env or {}))
    first = subprocess.Popen(left, stdout=subprocess.PIPE, env=env)
    second = subprocess.run(right, stdin=first.stdout, env=env, capture_output=True, text=True, check=False)
    first.stdout.close()
    if first.wait() != 0 or second.returncode != 0:
        raise RuntimeError("%s | %s failed: %s" % (left[0], right[0], second.stderr.strip()))


def run_playbook(server, module, args, check=False):
    """Run ``sigeti.dwh.<module>`` with ``args`` through ansible-playbook on localhost: one play, one task.

    Returns (result dict of the module, peak RSS of the module process in MB). The playbook is written to a
    temporary file with the arguments inlined as JSON (JSON is YAML); the interpreter wrapper
    (bench/rss_python.py) hands back the module's output and memory, so no extra task is timed.
    """
    play = [
        {
            "hosts": "localhost",
            # implicit localhost pins the controller's interpreter: the wrapper that reads the module's RSS goes here
            "vars": {"ansible_python_interpreter": "{{ bench_interpreter }}"},
            "gather_facts": False,
            "connection": "local",
            "tasks": [{"name": "bench", "sigeti.dwh.%s" % module: args}],
        }
    ]
    workdir = tempfile.mkdtemp(prefix="bench-play-")
    try:
        playbook = os.path.join(workdir, "play.yml")
        rss = os.path.join(workdir, "rss")
        with open(playbook, "w") as handle:
            json.dump(play, handle)
        # The wrapper as an executable of its own (ansible takes no arguments in an interpreter path).
        interpreter = os.path.join(workdir, "python")
        with open(os.path.join(BENCH, "rss_python.py")) as source, open(interpreter, "w") as handle:
            handle.write("#!%s\n%s" % (sys.executable, source.read()))
        os.chmod(interpreter, 0o755)
        env = dict(os.environ)
        env.update(
            ANSIBLE_COLLECTIONS_PATH=collections_path(),
            BENCH_RSS_FILE=rss,
            BENCH_PYTHON=sys.executable,
            ANSIBLE_NOCOLOR="1",
            ANSIBLE_LOCALHOST_WARNING="False",
            ANSIBLE_INVENTORY_UNPARSED_WARNING="False",
            ANSIBLE_RETRY_FILES_ENABLED="False",
        )
        command = [
            os.path.join(os.path.dirname(sys.executable), "ansible-playbook"),
            playbook,
            "-e",
            json.dumps({"bench_interpreter": interpreter}),
        ]
        if check:
            command.append("--check")
        done = subprocess.run(command, env=env, capture_output=True, text=True, check=False, cwd=workdir)
        runs = []
        if os.path.exists(rss):
            with open(rss) as handle:
                runs = [json.loads(line) for line in handle if line.strip()]
        runs = [r for r in runs if r["script"].startswith("AnsiballZ_%s" % module)]
        if not runs:
            raise RuntimeError("ansible-playbook ran no %s module:\n%s" % (module, done.stdout[-3000:]))
        result = json.loads(runs[-1]["output"])
        if done.returncode != 0 and not result.get("failed"):
            raise RuntimeError("ansible-playbook %s failed:\n%s" % (module, done.stdout[-3000:]))
        return result, max(r["rss_kb"] for r in runs) / 1024.0
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def process_children():
    """{parent pid: [child pids]} of every process now, read from /proc (Linux); a process gone meanwhile is skipped."""
    children = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % entry) as handle:
                fields = handle.read().rsplit(")", 1)[1].split()
            children.setdefault(int(fields[1]), []).append(int(entry))
        except (OSError, IndexError):
            continue
    return children


def tree_rss_kb(root):
    """Summed RSS (kB) of ``root`` and all its descendants, read from /proc (Linux)."""
    children = process_children()
    total, todo = 0, [root]
    while todo:
        pid = todo.pop()
        todo.extend(children.get(pid, []))
        try:
            with open("/proc/%d/status" % pid) as handle:
                total += next((int(line.split()[1]) for line in handle if line.startswith("VmRSS:")), 0)
        except OSError:
            continue
    return total


def run_sampled(command, env, interval=0.2):
    """Run ``command``; return (CompletedProcess-like with stdout and returncode, peak RSS in MB of its process tree:
    the controller and its forks together, sampled every ``interval`` seconds)."""
    with tempfile.TemporaryFile(mode="w+") as out:
        child = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        peak = 0
        while child.poll() is None:
            peak = max(peak, tree_rss_kb(child.pid))
            time.sleep(interval)
        out.seek(0)
        return subprocess.CompletedProcess(command, child.returncode, out.read()), peak / 1024.0


def run_module(server, module, args, check=False):
    """Run a module through ansible-playbook; return (result, {wall_s, db_s, statements, connections, rss_mb})."""
    (result, rss), counts = measured(server, lambda: run_playbook(server, module, args, check=check))
    counts["rss_mb"] = rss
    if result.get("failed"):
        raise RuntimeError("%s failed: %s" % (module, result.get("msg")))
    return result, counts


# -- repetitions and statistics ----------------------------------------------------------------------------------


def interleaved(methods, repetitions):
    """Order of each repetition: rotate the list by one each time (A B C, B C A, C A B, A B C, ...)."""
    methods = list(methods)
    return [methods[r % len(methods) :] + methods[: r % len(methods)] for r in range(repetitions)]


def run_interleaved(methods, repetitions, prepare=None, log=print):
    """Run ``methods`` ({name: func(rep) -> dict of numbers}) in interleaved order.

    ``prepare(name, rep)`` runs untimed before each measurement (fresh copy of the data, CHECKPOINT...).
    Returns {name: [dict per repetition, in repetition order]}, each dict also holding ``rep`` and ``position``.
    """
    runs = {name: [] for name in methods}
    for rep, order in enumerate(interleaved(methods, repetitions)):
        for position, name in enumerate(order):
            if prepare:
                prepare(name, rep)
            numbers = dict(methods[name](rep))
            numbers.update(rep=rep, position=position)
            runs[name].append(numbers)
            log("  rep %d  %-28s %s" % (rep + 1, name, brief(numbers)))
    return runs


def brief(numbers):
    keys = ("wall_s", "db_s", "statements", "connections", "rss_mb", "stall_s")
    return "  ".join("%s=%s" % (k, fmt(numbers[k])) for k in keys if k in numbers)


def fmt(value):
    if isinstance(value, float):
        return "%.3f" % value
    return str(value)


def comparisons(runs, specs):
    """[{name, method, baseline, metric, median, min, max, n, verdict}] for each spec (see report.compare)."""
    out = []
    for spec in specs:
        stats = compare(runs, spec["method"], spec["baseline"], spec.get("metric", "wall_s"))
        out.append(dict(spec, **(stats or {})))
        print("  %-34s %s" % (spec["name"], ratio_text(stats)))
    return out


def print_table(summaries, metrics=("wall_s", "db_s", "statements", "connections", "rss_mb")):
    print("%-30s" % "method" + "".join("%26s" % m for m in metrics))
    for name, stats in summaries.items():
        cells = []
        for m in metrics:
            s = stats.get(m)
            cells.append(
                "%26s" % ("-" if s is None else "%s [%s–%s]" % (fmt(s["median"]), fmt(s["min"]), fmt(s["max"])))
            )
        print("%-30s" % name + "".join(cells))


# -- provenance --------------------------------------------------------------------------------------------------


def git_commit():
    """(commit, dirty) of the checkout the benchmark ran from; results files do not make it dirty, nor does the
    interpreter's ``.venv`` (a clone made for benchmarking links the main checkout's)."""
    commit = subprocess.run(["git", "-C", ROOT, "rev-parse", "HEAD"], capture_output=True, text=True, check=False)
    status = subprocess.run(
        ["git", "-C", ROOT, "status", "--porcelain", "--", ".", ":!bench/results", ":!.venv"],
        capture_output=True,
        text=True,
        check=False,
    )
    return commit.stdout.strip() or "unknown", bool(status.stdout.strip())


def scale_label(parameters, defaults):
    """ "full" when the parameters that size the run are the script's defaults, else "tiny" (a check, not a claim)."""
    for key, default in defaults.items():
        if parameters.get(key) is not None and parameters[key] < default:
            return "tiny"
    return "full"


def write_results(claim, script, server_info, parameters, defaults, runs, specs, rows, size="", extra=None):
    """Write bench/results/<claim>.json and return its path.

    ``specs`` name the ratios: [{"name", "method", "baseline", "metric"}]. ``rows`` are the README rows this file
    backs: [{"claim": ..., "measured": "template"}], the template naming numbers as report.py renders them
    ({ratio:NAME}, {time:METHOD.METRIC}, ...), so the README is computed from the raw repetitions. ``size`` says
    the data's size in words (it is printed in the row's conditions).
    """
    commit, dirty = git_commit()
    document = {
        "claim": claim,
        "script": script,
        "date": datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0).isoformat(),
        "commit": commit,
        "dirty": dirty,
        "scale": scale_label(parameters, defaults),
        "machine": {
            "cores": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
            # a shared machine makes slow runs: the 1/5/15-minute load at the end says how busy it was
            "loadavg": [round(x, 2) for x in os.getloadavg()],
        },
        "postgresql": server_info,
        "parameters": parameters,
        "defaults": defaults,
        "method": "durable server; interleaved order; median and min–max; ratios paired by repetition, "
        "'no difference' when their spread crosses 1; statements, connections and database time read from "
        "the server log (log_min_duration_statement = 0), harness connections excluded; wall time of "
        "ansible-playbook or psql end to end",
        "repetitions": runs,
        "summaries": summarize(runs),
        "comparisons": comparisons(runs, specs),
        "rows": rows,
        "size": size,
    }
    document.update(extra or {})
    os.makedirs(RESULTS, exist_ok=True)
    path = os.path.join(RESULTS, "%s.json" % claim)
    with open(path, "w") as handle:
        json.dump(document, handle, indent=1, sort_keys=True, ensure_ascii=False)
        handle.write("\n")
    print("results written to %s (scale: %s)" % (os.path.relpath(path, ROOT), document["scale"]))
    return path
