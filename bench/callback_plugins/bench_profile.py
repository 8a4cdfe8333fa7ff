"""Ansible callback for the benchmarks: where the time of a playbook goes, per task, written as JSON.

Enabled by bench/weekly_playbook.py (ANSIBLE_CALLBACK_PLUGINS=bench/callback_plugins,
ANSIBLE_CALLBACKS_ENABLED=bench_profile, BENCH_PROFILE_FILE=<path>): the role and task name, how many times it
ran (hosts x loop items count once per host) and its wall time from start to the last host's result, like
ansible.posix's profile_tasks (not installed with ansible-core), in a file the benchmark reads.
"""

from __future__ import annotations

import json
import os
import time

from ansible.plugins.callback import CallbackBase

DOCUMENTATION = """
name: bench_profile
type: aggregate
short_description: per-task wall time as JSON, for bench/
description: Writes each task's wall time, run count and status to $BENCH_PROFILE_FILE at the end of the playbook.
"""


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "aggregate"
    CALLBACK_NAME = "bench_profile"
    CALLBACK_NEEDS_ENABLED = True

    def __init__(self):
        super().__init__()
        self.tasks = []
        self.current = None
        self.started = time.monotonic()

    def _close(self):
        if self.current is not None:
            self.current["seconds"] = time.monotonic() - self.current.pop("_start")
            self.tasks.append(self.current)
            self.current = None

    def v2_playbook_on_task_start(self, task, is_conditional):
        self._close()
        role = getattr(task, "_role", None)  # the role a task came from: no public accessor in ansible-core
        role = role.get_name() if role else ""
        self.current = {"role": role, "task": task.get_name(), "action": task.action, "_start": time.monotonic()}
        self.current.update(ok=0, changed=0, skipped=0, failed=0)

    def _count(self, key, result):
        if self.current is not None:
            self.current[key] += 1
            if key == "ok" and result._result.get("changed"):
                self.current["changed"] += 1

    def v2_runner_on_ok(self, result):
        self._count("ok", result)

    def v2_runner_on_skipped(self, result):
        self._count("skipped", result)

    def v2_runner_on_failed(self, result, ignore_errors=False):
        self._count("failed", result)

    def v2_playbook_on_stats(self, stats):
        self._close()
        out = os.environ.get("BENCH_PROFILE_FILE")
        if out:
            with open(out, "w") as handle:
                json.dump({"total_s": time.monotonic() - self.started, "tasks": self.tasks}, handle)
