"""The weekly playbook across a fleet of throwaway servers on this machine, beside the same run on one server.

Method of bench/common.py (durable servers, interleaved repetitions, ``ansible-playbook`` timed end to end).
``--servers`` (20) servers with a small ``shared_buffers`` each hold the sample warehouse; after two catch-up
runs the weekly playbook runs on all of them with ``--forks`` (10), and on one of them alone, in interleaved
order. Reported: wall time and the controller's peak memory (ansible-playbook and its forks together,
sampled from /proc every 200 ms), per server and for the fleet. These are the figures docs/roles.md uses to
size ``forks``/``serial`` waves or AWX instance groups for hundreds of warehouses.

    .venv/bin/python bench/fleet.py [--servers 20] [--forks 10] [--scale 20000] [--repeat 3]

Writes bench/results/fleet.json.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from bench import common  # noqa: E402
from bench.weekly_playbook import inventory, weekly  # noqa: E402
from tests.support.warehouse import load_warehouse  # noqa: E402

DEFAULTS = {"servers": 20, "forks": 10, "scale": 20000, "repeat": 3}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--servers", type=int, default=DEFAULTS["servers"])
    parser.add_argument("--forks", type=int, default=DEFAULTS["forks"])
    parser.add_argument("--scale", type=int, default=DEFAULTS["scale"], help="fact rows per warehouse")
    parser.add_argument("--repeat", type=int, default=DEFAULTS["repeat"])
    options = parser.parse_args(argv)
    workdir = tempfile.mkdtemp(prefix="bench-fleet-")
    servers = []
    try:
        for _number in range(options.servers):
            server = common.durable_server({"shared_buffers": "32MB", "max_connections": "20", "autovacuum": "off"})
            servers.append(server)
            server.create_database("sigeti")
            conn = common.connect(server, "sigeti")
            load_warehouse(conn, scale=options.scale, partitioned=True)
            conn.close()
        hosts = [(server, "sigeti") for server in servers]
        fleet_inventory = inventory(os.path.join(workdir, "fleet.yml"), hosts, [], workdir)
        one_inventory = inventory(os.path.join(workdir, "one.yml"), hosts[:1], [], workdir)
        profile = os.path.join(workdir, "profile.json")
        forks = ["--forks", str(options.forks)]
        for _round in range(2):  # catch up: partitions ahead, backups, statistics
            weekly(servers[0], fleet_inventory, profile, forks)

        def run(path):
            def measure(_rep):
                (recap, _profile, peak), counts = common.measured(
                    servers[0], lambda: weekly(servers[0], path, profile, forks)
                )
                return {"wall_s": counts["wall_s"], "controller_mb": peak, "changed": recap["changed"]}

            return measure

        print("== weekly.yml on 1 and %d servers, forks %d ==" % (options.servers, options.forks))
        runs = common.run_interleaved({"one": run(one_inventory), "fleet": run(fleet_inventory)}, options.repeat)
        info = common.server_facts(servers[0])
    finally:
        for server in servers:
            server.destroy()
        common.shutil.rmtree(workdir, ignore_errors=True)

    specs = [
        {"name": "fleet_wall", "method": "fleet", "baseline": "one"},
        {"name": "fleet_memory", "method": "fleet", "baseline": "one", "metric": "controller_mb"},
    ]
    common.print_table(common.summarize(runs), metrics=("wall_s", "controller_mb"))
    rows = [
        {
            "claim": "weekly playbook on %d servers at once (forks %d)" % (options.servers, options.forks),
            "measured": "fleet {time:fleet.wall_s} vs one server {time:one.wall_s} ({ratio:fleet_wall}); controller "
            "peak memory (ansible-playbook and its forks) {mb:fleet.controller_mb} vs {mb:one.controller_mb}",
        }
    ]
    common.write_results(
        "fleet",
        "bench/fleet.py",
        info,
        vars(options),
        DEFAULTS,
        runs,
        specs,
        rows,
        size="%d servers (shared_buffers 32MB), %s fact rows each" % (options.servers, format(options.scale, ",")),
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
