"""bench/fleet.py starts its throwaway servers and stops every one of them: on a normal exit, when a start fails
half-way, and when the script is sent SIGTERM; no PostgreSQL process of their clusters is left running."""

import os
import re
import signal
import subprocess
import sys

import pytest

from bench import common, fleet

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_fleet_starts_servers_and_stops_every_process():
    pool = fleet.Fleet(3, log=lambda _line: None)
    with pool as servers:
        assert len(servers) == 3
        for server in servers:
            conn = common.connect(server)
            assert common.one(conn, "SELECT current_setting('shared_buffers')") == "16MB"
            assert common.one(conn, "SELECT current_setting('max_connections')") == "10"
            conn.close()
        running = fleet.cluster_processes(pool.data_dirs)
        # each cluster's postmaster and its background processes run in its data directory
        assert len(running) >= 3 * 2
    assert pool.leftover == []
    assert fleet.cluster_processes(pool.data_dirs) == []
    assert not any(os.path.exists(path) for path in pool.data_dirs)


def test_a_failed_start_stops_the_servers_already_started():
    made = []

    def make(settings):
        made.append(settings)
        if len(made) == 3:
            settings = dict(settings, shared_buffers="1kB")  # below PostgreSQL's minimum: pg_ctl start fails
        return fleet.new_server(settings)

    pool = fleet.Fleet(4, make=make, log=lambda _line: None)
    with pytest.raises(RuntimeError, match="pg_ctl"), pool:
        pytest.fail("the body must not run when a start failed")
    assert len(made) == 3 and len(pool.data_dirs) == 3
    assert pool.leftover == []
    assert fleet.cluster_processes(pool.data_dirs) == []
    assert not any(os.path.exists(path) for path in pool.data_dirs)


def test_sigterm_stops_every_server_of_the_script():
    command = [sys.executable, "-u", os.path.join(ROOT, "bench", "fleet.py"), "--servers", "2", "--scale", "200"]
    script = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    data_dirs, lines = [], []
    try:
        for line in script.stdout:
            lines.append(line)
            found = re.search(r"server \d+/2 on port \d+, data (\S+)", line)
            if found:
                data_dirs.append(found.group(1))
            if len(data_dirs) == 2:
                break
        assert len(data_dirs) == 2, "".join(lines)
        assert fleet.cluster_processes(data_dirs)
        script.send_signal(signal.SIGTERM)
        rest = script.communicate(timeout=120)[0]
    finally:
        if script.poll() is None:
            script.kill()
            script.wait()
    assert script.returncode == 128 + signal.SIGTERM, "".join(lines) + rest
    # pg_ctl stop -w returns once the postmaster, which waits for its children, has exited
    assert fleet.cluster_processes(data_dirs) == []
