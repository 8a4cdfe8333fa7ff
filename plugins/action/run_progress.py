# Copyright: (c) 2026, SIGETI data platform team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""One poll of a sigeti.dwh module running in the background (``async``): its job status, and while it runs the
progress of the migrations it carries (``sigeti.dwh.table_info``'s ``migration`` entries).

Ansible prints nothing while an async job runs and its ``until`` retries cannot show a changing message, so the
partitioning role loops over this action with ``loop_control.pause`` (the poll interval), a label built from
``progress`` and ``break_when: finished``: one line per poll, and no include recursion however long the migration.
"""

from __future__ import annotations

import time

from ansible.plugins.action import ActionBase
from ansible.utils.vars import merge_hash

JOB_FILE_WAIT = 30
PROGRESS_KEYS = ("table", "phase", "rows_copied", "rows_total", "copy_percent", "rows_per_second", "eta_seconds")


class ActionModule(ActionBase):
    TRANSFERS_FILES = False

    def run(self, tmp=None, task_vars=None):
        result = super().run(tmp, task_vars)
        args = dict(self._task.args)
        jid = args.pop("jid", None)
        results_file = args.pop("results_file", None)
        tables = args.pop("tables", None) or []
        if not jid:
            return dict(result, failed=True, msg="run_progress needs jid: the ansible_job_id of the async task")
        # The job's own folder when the async task said where it is: the wrapper expands ~ with the HOME it runs
        # with, while expanding it here asks the shell for the login user's home (they differ when HOME is set).
        if results_file:
            async_dir = results_file.rsplit("/", 1)[0]
        else:
            async_dir = self._remote_expand_user(self.get_shell_option("async_dir", default="~/.ansible_async"))
        status = self._status(jid, async_dir, task_vars)
        if status.get("finished"):
            # the job's own result (its changed, failed, msg, results ...), as async_status returns it
            return merge_hash(result, dict(status, finished=True, progress=[]))
        if status.get("failed"):
            return merge_hash(result, dict(status, finished=True, progress=[]))
        result.update(finished=False, changed=False, ansible_job_id=jid, progress=[])
        if tables:
            # the remaining args are the connection options (module_defaults of the sigeti.dwh.dwh group)
            info = self._execute_module(
                module_name="sigeti.dwh.table_info",
                module_args=dict(args, tables=list(tables), compression="none", count_default_rows=False),
                task_vars=task_vars,
            )
            if info.get("failed"):
                # a poll that cannot read the progress must not stop the job it watches
                result["progress_error"] = info.get("msg")
            else:
                # keys table_info does not give (or gives as null) are left out: the role prints them as "?"
                result["progress"] = [
                    {key: report["migration"][key] for key in PROGRESS_KEYS if report["migration"].get(key) is not None}
                    for report in info.get("tables") or []
                    if report.get("migration")
                ]
        return result

    def _status(self, jid, async_dir, task_vars):
        """The job's status. On a loaded host the async wrapper may return before its job file exists (it waits
        2.5 s for it): "could not find job" is asked again for up to JOB_FILE_WAIT seconds before it counts."""
        deadline = time.monotonic() + JOB_FILE_WAIT
        while True:
            status = self._execute_module(
                module_name="ansible.legacy.async_status",
                module_args={"jid": jid, "_async_dir": async_dir},
                task_vars=task_vars,
            )
            missing = status.get("failed") and "could not find job" in str(status.get("msg", ""))
            if not missing or time.monotonic() >= deadline:
                return status
            time.sleep(1)
