"""Ansible callback for bench/fleet.py: the time each host kept a worker busy, and how each host ended, as JSON.

Enabled by bench/fleet.py (ANSIBLE_CALLBACKS_ENABLED=bench_hosts, BENCH_HOSTS_FILE=<path>). A host's time is the
sum, over its tasks, of the time from its worker's start (``v2_runner_on_start``) to its result: with ``forks``
workers sharing the controller's cores it grows with the fleet, which is what bench/fleet.py reports beside
the wall time. The PLAY RECAP gives the same ok/failed/unreachable counts, but only as text.
"""

from __future__ import annotations

import json
import os
import time

from ansible.plugins.callback import CallbackBase

DOCUMENTATION = """
name: bench_hosts
type: aggregate
short_description: per-host busy time and outcome as JSON, for bench/fleet.py
description: Writes each host's summed task time and its ok/changed/failed/unreachable counts to $BENCH_HOSTS_FILE.
"""


def _host_name(result):
    host = getattr(result, "host", None) or result._host  # ``host`` from ansible-core 2.19, ``_host`` before
    return host.get_name()


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "aggregate"
    CALLBACK_NAME = "bench_hosts"
    CALLBACK_NEEDS_ENABLED = True

    def __init__(self):
        super().__init__()
        self.hosts = {}
        self.started = {}

    def _host(self, name):
        return self.hosts.setdefault(
            name, {"busy_s": 0.0, "tasks": 0, "ok": 0, "changed": 0, "failed": 0, "unreachable": 0, "skipped": 0}
        )

    def v2_runner_on_start(self, host, task):
        self.started[host.get_name()] = time.monotonic()

    def _done(self, result, key):
        name = _host_name(result)
        entry = self._host(name)
        start = self.started.pop(name, None)
        if start is not None:
            entry["busy_s"] += time.monotonic() - start
            entry["tasks"] += 1
        entry[key] += 1
        if key == "ok" and result._result.get("changed"):
            entry["changed"] += 1

    def v2_runner_on_ok(self, result):
        self._done(result, "ok")

    def v2_runner_on_skipped(self, result):
        self._done(result, "skipped")

    def v2_runner_on_failed(self, result, ignore_errors=False):
        self._done(result, "ok" if ignore_errors else "failed")

    def v2_runner_on_unreachable(self, result):
        self._done(result, "unreachable")

    def v2_playbook_on_stats(self, stats):
        out = os.environ.get("BENCH_HOSTS_FILE")
        if out:
            with open(out, "w") as handle:
                json.dump(self.hosts, handle)
