"""The weekly playbook across a fleet of throwaway servers on this machine, beside the same run on one server.

Method of bench/common.py (durable servers, interleaved repetitions, ``ansible-playbook`` timed end to end).
``--servers`` (20) servers, each with a small ``shared_buffers`` (16MB) and ``max_connections`` (10), hold the
sample warehouse; after ``--catch-up`` (2) runs that leave every warehouse unchanged, the weekly playbook runs
on all of them with ``--forks`` (10), and on one of them alone (same forks), in interleaved order. Reported per
run: wall time; wall time per server; each host's busy time (its tasks' time from worker start to result,
callback_plugins/bench_hosts.py); failed and unreachable hosts; the controller's peak memory, sampled from
/proc every 200 ms: ansible-playbook and its forks (PSS, and the RSS sum that double-counts pages the forks
share), apart from the module processes, which run here because the hosts are local but run on the managed
hosts when the inventory reaches them over SSH. These are the figures docs/roles.md ("Running across a fleet")
uses to size ``forks``, ``serial`` waves or AWX instance groups for hundreds of warehouses.

Every server is stopped at the end, also on failure, Ctrl-C or SIGTERM, and the script checks that no process
of any of their clusters is left (exit 1 naming the processes otherwise).

    .venv/bin/python bench/fleet.py [--servers 20] [--forks 10] [--scale 20000] [--repeat 3] [--catch-up 2]

Writes bench/results/fleet.json.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from bench import common  # noqa: E402

DEFAULTS = {"servers": 20, "forks": 10, "scale": 20000, "repeat": 3}
# Small servers, so that 20 fit beside each other on a 2-core, 23 GB machine; durable like the other benchmarks.
SERVER_SETTINGS = {"shared_buffers": "16MB", "max_connections": "10", "autovacuum": "off"}
EXTRAPOLATE_TO = (100, 200, 500)
_RECAP = re.compile(
    r"^(\S+)\s+:\s+ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)\s+skipped=(\d+)", re.MULTILINE
)


# -- arguments and the pure summaries (tests/unit/test_bench_fleet.py) ------------------------------------------


def _count(minimum):
    def parse(text):
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError("%r is not a whole number" % text) from None
        if value < minimum:
            raise argparse.ArgumentTypeError("%d is below %d" % (value, minimum))
        return value

    return parse


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--servers", type=_count(1), default=DEFAULTS["servers"], help="servers of the fleet (20)")
    parser.add_argument("--forks", type=_count(1), default=DEFAULTS["forks"], help="ansible-playbook --forks (10)")
    parser.add_argument("--scale", type=_count(1), default=DEFAULTS["scale"], help="fact rows per warehouse")
    parser.add_argument("--repeat", type=_count(1), default=DEFAULTS["repeat"], help="interleaved repetitions (3)")
    parser.add_argument("--catch-up", type=_count(0), default=2, help="untimed fleet runs before measuring (2)")
    return parser.parse_args(argv)


def parse_recap(output):
    """{host: {ok, changed, unreachable, failed, skipped}} from the PLAY RECAP of ansible-playbook's output."""
    hosts = {}
    for match in _RECAP.finditer(output):
        numbers = [int(n) for n in match.groups()[1:]]
        hosts[match.group(1)] = dict(zip(("ok", "changed", "unreachable", "failed", "skipped"), numbers))
    return hosts


def run_numbers(wall_s, recap, busy, peaks, tasks):
    """The numbers of one run: wall time, per server, hosts' busy time, failures, changes and memory peaks (MB).

    ``recap`` from :func:`parse_recap`, ``busy`` from callback_plugins/bench_hosts.py ({host: {busy_s, ...}}),
    ``peaks`` from :func:`tree_memory` (kB). A host in the recap that the callback never saw counts 0 s busy.
    """
    hosts = len(recap)
    times = [busy.get(host, {}).get("busy_s", 0.0) for host in recap] or [0.0]
    return {
        "wall_s": wall_s,
        "per_host_s": wall_s / max(hosts, 1),
        "hosts": hosts,
        "failed_hosts": sum(1 for r in recap.values() if r["failed"]),
        "unreachable_hosts": sum(1 for r in recap.values() if r["unreachable"]),
        "changed": sum(r["changed"] for r in recap.values()),
        "host_busy_s": statistics.median(times),
        "host_busy_max_s": max(times),
        "controller_mb": peaks["pss_kb"] / 1024.0,
        "controller_rss_mb": peaks["rss_kb"] / 1024.0,
        "modules_mb": peaks["module_pss_kb"] / 1024.0,
        "processes": peaks["processes"],
        "tasks": tasks,
    }


def extrapolate(runs, servers, counts=EXTRAPOLATE_TO):
    """{count: seconds} for ``count`` warehouses at the measured forks on this machine: one server's median wall
    time plus the median cost of each added server ((fleet - one) / (servers - 1), paired by repetition). An
    extrapolation along the measured line (the controller is CPU-bound here), never a measurement."""
    one = statistics.median(rep["wall_s"] for rep in runs["one"])
    if servers < 2:
        return {str(n): round(one * n, 1) for n in counts}
    added = statistics.median(
        (fleet["wall_s"] - alone["wall_s"]) / (servers - 1) for fleet, alone in zip(runs["fleet"], runs["one"])
    )
    return {str(n): round(one + added * (n - 1), 1) for n in counts}


def specs_and_rows(options):
    """The ratios and the README rows this run backs (report.py renders them from the repetitions)."""
    specs = [
        {"name": "fleet_wall", "method": "fleet", "baseline": "one"},
        {"name": "fleet_memory", "method": "fleet", "baseline": "one", "metric": "controller_mb"},
    ]
    added = " each added server {slope:one,fleet,%d};" % (options.servers - 1) if options.servers > 1 else ""
    rows = [
        {
            "claim": "weekly playbook on %d unchanged warehouses at once (forks %d), beside one"
            % (options.servers, options.forks),
            "measured": "fleet {time:fleet.wall_s} vs one server {time:one.wall_s} ({ratio:fleet_wall}); "
            "{time:fleet.per_host_s} per server;" + added + " a host's busy time {time:fleet.host_busy_s} "
            "vs {time:one.host_busy_s} alone; failed or unreachable hosts {num:fleet.failed_hosts} + "
            "{num:fleet.unreachable_hosts}",
        },
        {
            "claim": "controller memory for %d hosts at forks %d" % (options.servers, options.forks),
            "measured": "ansible-playbook and its forks, peak PSS {mb:fleet.controller_mb} vs {mb:one.controller_mb} "
            "for one host ({ratio:fleet_memory}; RSS sum {mb:fleet.controller_rss_mb}); module processes "
            "(on the managed hosts over SSH) {mb:fleet.modules_mb}",
        },
    ]
    return specs, rows


# -- the servers -------------------------------------------------------------------------------------------------


def cluster_processes(data_dirs):
    """Pids of the processes whose working folder is one of ``data_dirs``: every PostgreSQL process of a cluster
    (postmaster and backends) runs in its data directory, also once orphaned."""
    wanted = {os.path.realpath(d) for d in data_dirs}
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            cwd = os.readlink("/proc/%s/cwd" % entry)
        except OSError:
            continue
        if cwd.endswith(" (deleted)"):  # the folder was removed under a process still running in it
            cwd = cwd[: -len(" (deleted)")]
        if cwd in wanted:
            found.append(int(entry))
    return found


def new_server(settings):
    """A durable throwaway server (common.durable_server's settings plus ``settings``), not started yet: the fleet
    holds it before it starts, so an interrupted start is stopped and removed too."""
    conf = dict(common.DURABLE, **settings)
    common.collections_path()  # makes ansible_collections.sigeti.dwh importable for the scripts
    from tests.support.pgserver import PostgresServer

    return PostgresServer(bin_dir=common.pick_bin_dir(), settings=conf)


class Fleet:
    """``count`` throwaway servers, started one after the other; all stopped on exit, also when a start fails.

    ``leftover`` holds, after exit, the pids of any process of their clusters still running (the test and
    :func:`main` fail on it)."""

    def __init__(self, count, settings=None, make=new_server, log=print):
        self.count = count
        self.settings = dict(SERVER_SETTINGS, **(settings or {}))
        self.make = make
        self.log = log
        self.servers = []
        self.data_dirs = []
        self.leftover = []

    def __enter__(self):
        try:
            for number in range(self.count):
                server = self.make(self.settings)
                self.servers.append(server)
                self.data_dirs.append(server.data_dir)
                server.start()
                server.wait_ready()
                self.log("  server %d/%d on port %d, data %s" % (number + 1, self.count, server.port, server.data_dir))
        except BaseException:
            self.stop()
            raise
        return list(self.servers)

    def __exit__(self, *_exc):
        self.stop()
        return False

    def stop(self):
        errors = []
        for server in self.servers:
            try:
                server.destroy()
            except Exception as error:  # stop the others; say which one failed below
                errors.append("port %d: %s" % (server.port, error))
        self.servers = []
        self.leftover = cluster_processes(self.data_dirs)
        if errors:
            self.log("could not stop %d server(s): %s" % (len(errors), "; ".join(errors)))
        if self.leftover:
            self.log("PostgreSQL processes left running: %s" % " ".join(map(str, self.leftover)))
        return self.leftover


# -- running the playbook and sampling the controller ------------------------------------------------------------


def tree_memory(root):
    """Memory of ``root`` and its descendants now, in kB: {rss_kb, pss_kb} of the controller side (ansible-playbook
    and its forks), {module_rss_kb, module_pss_kb} of the module processes (an AnsiballZ_ command line, and
    their children), and the number of processes."""
    children = common.process_children()
    totals = {"rss_kb": 0, "pss_kb": 0, "module_rss_kb": 0, "module_pss_kb": 0, "processes": 0}
    todo = [(root, False)]
    while todo:
        pid, module = todo.pop()
        try:
            with open("/proc/%d/cmdline" % pid, "rb") as handle:
                module = module or b"AnsiballZ_" in handle.read()
            rollup = smaps_rollup(pid)
        except OSError:
            continue  # ended meanwhile
        prefix = "module_" if module else ""
        totals[prefix + "rss_kb"] += rollup.get("Rss", 0)
        totals[prefix + "pss_kb"] += rollup.get("Pss", 0)
        totals["processes"] += 1
        todo.extend((child, module) for child in children.get(pid, []))
    return totals


def smaps_rollup(pid):
    """{Rss, Pss, ...} in kB of one process (PSS shares a page among the processes mapping it)."""
    values = {}
    with open("/proc/%d/smaps_rollup" % pid) as handle:
        for line in handle:
            parts = line.split()
            if len(parts) == 3 and parts[2] == "kB":
                values[parts[0].rstrip(":")] = int(parts[1])
    return values


def run_sampled(command, env, interval=0.2):
    """Run ``command``; return (exit code, output, peak of each :func:`tree_memory` figure)."""
    peaks = {}
    with tempfile.TemporaryFile(mode="w+") as out:
        child = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        while child.poll() is None:
            for key, value in tree_memory(child.pid).items():
                peaks[key] = max(peaks.get(key, 0), value)
            time.sleep(interval)
        out.seek(0)
        return child.returncode, out.read(), peaks


def run_weekly(server, inventory_path, workdir, forks):
    """Run playbooks/weekly.yml on ``inventory_path`` with ``forks``; return (numbers, output)."""
    from bench.weekly_playbook import weekly_command

    profile_path = os.path.join(workdir, "profile.json")
    hosts_path = os.path.join(workdir, "hosts.json")
    for path in (profile_path, hosts_path):
        if os.path.exists(path):
            os.remove(path)
    command, env = weekly_command(server, inventory_path, profile_path, ["--forks", str(forks)])
    env.update(ANSIBLE_CALLBACKS_ENABLED="bench_profile,bench_hosts", BENCH_HOSTS_FILE=hosts_path)
    started = time.perf_counter()
    code, output, peaks = run_sampled(command, env)
    wall = time.perf_counter() - started
    busy, tasks = {}, 0
    if os.path.exists(hosts_path):
        with open(hosts_path) as handle:
            busy = json.load(handle)
    if os.path.exists(profile_path):
        with open(profile_path) as handle:
            tasks = len(json.load(handle)["tasks"])
    recap = parse_recap(output)
    if not recap:
        raise RuntimeError("weekly.yml printed no PLAY RECAP (exit %d):\n%s" % (code, output[-4000:]))
    numbers = run_numbers(wall, recap, busy, peaks, tasks)
    numbers["exit_code"] = code
    numbers["load_1m"] = os.getloadavg()[0]  # the machine is shared: how busy it was when this run ended
    numbers["host_busy"] = {host: round(busy.get(host, {}).get("busy_s", 0.0), 3) for host in recap}
    return numbers, output


def prepare(server, scale):
    from tests.support.warehouse import load_warehouse

    server.create_database("sigeti")
    conn = common.connect(server, "sigeti")
    try:
        load_warehouse(conn, scale=scale, partitioned=True)
    finally:
        conn.close()


def _terminate(signum, _frame):
    raise SystemExit(128 + signum)  # unwinds through Fleet.__exit__: the servers are stopped


def main(argv=None):
    options = parse_args(argv)
    from bench.weekly_playbook import inventory

    signal.signal(signal.SIGTERM, _terminate)
    workdir = tempfile.mkdtemp(prefix="bench-fleet-")
    fleet = Fleet(options.servers)
    try:
        print("== %d servers (%s) ==" % (options.servers, ", ".join("%s %s" % kv for kv in fleet.settings.items())))
        with fleet as servers:
            for server in servers:
                prepare(server, options.scale)
            hosts = [(server, "sigeti") for server in servers]
            fleet_inventory = inventory(os.path.join(workdir, "fleet.yml"), hosts, [], workdir)
            one_inventory = inventory(os.path.join(workdir, "one.yml"), hosts[:1], [], workdir)
            for number in range(options.catch_up):  # partitions ahead, backups, statistics: then nothing to do
                numbers, output = run_weekly(servers[0], fleet_inventory, workdir, options.forks)
                print("  catch-up %d: %.1f s, changed %d" % (number + 1, numbers["wall_s"], numbers["changed"]))
                if numbers["failed_hosts"] or numbers["unreachable_hosts"] or numbers["exit_code"]:
                    raise RuntimeError("catch-up run failed:\n%s" % output[-4000:])

            def run(path):
                def measure(_rep):
                    numbers, output = run_weekly(servers[0], path, workdir, options.forks)
                    if numbers["failed_hosts"] or numbers["unreachable_hosts"] or numbers["exit_code"]:
                        print(output[-3000:])  # recorded, not hidden: the row prints the failed hosts
                    return numbers

                return measure

            print("== weekly.yml on 1 and %d servers, forks %d ==" % (options.servers, options.forks))
            runs = common.run_interleaved({"one": run(one_inventory), "fleet": run(fleet_inventory)}, options.repeat)
            info = common.server_facts(servers[0])
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    if fleet.leftover:
        print("bench/fleet.py: PostgreSQL processes still running after the stop: %s" % fleet.leftover)
        return 1
    print("all %d servers stopped, no PostgreSQL process left" % options.servers)

    common.print_table(
        common.summarize(runs),
        metrics=("wall_s", "per_host_s", "host_busy_s", "controller_mb", "controller_rss_mb", "modules_mb"),
    )
    specs, rows = specs_and_rows(options)
    projection = extrapolate(runs, options.servers)
    print("extrapolated (not measured), forks %d on this machine: %s" % (options.forks, projection))
    path = common.write_results(
        "fleet",
        "bench/fleet.py",
        info,
        vars(options),
        DEFAULTS,
        runs,
        specs,
        rows,
        size="%d servers (shared_buffers %s, max_connections %s), %s fact rows each"
        % (
            options.servers,
            SERVER_SETTINGS["shared_buffers"],
            SERVER_SETTINGS["max_connections"],
            format(options.scale, ","),
        ),
        extra={"extrapolated_wall_s": projection, "stopped_cleanly": True},
    )
    print("results: %s" % path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
