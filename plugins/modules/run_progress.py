#!/usr/bin/python
# Copyright: (c) 2026, SIGETI data platform team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: run_progress
short_description: Poll a sigeti.dwh module running in the background and report its migrations' progress
version_added: 0.2.0
description:
  - One poll of an C(async) task (started with C(poll=0)), as C(ansible.builtin.async_status), plus, while the job runs, the
    progress of the migrations of O(tables) as C(sigeti.dwh.table_info) reports them (phase, rows copied, percent,
    rows per second, ETA).
  - Once the job has finished it returns the job's result (its C(changed), C(failed), C(msg) and return values).
  - Meant to be looped with C(loop_control.pause) and C(break_when) on RV(finished); the partitioning role does so
    when an entry declares C(migrate), printing one progress line per poll.
  - An action plugin; reading the progress runs C(sigeti.dwh.table_info) on the target with the connection options.
author:
  - SIGETI data platform team (@sigeti)
extends_documentation_fragment:
  - sigeti.dwh.connection
options:
  jid:
    description: The C(ansible_job_id) returned by the async task.
    type: str
    required: true
  results_file:
    description:
      - The C(results_file) returned by the async task. Its folder is where the job's status is read; without it,
        the C(async_dir) of the shell, expanded on the target (the login user's home, which may not be C(HOME)).
    type: str
  tables:
    description: The tables whose migration progress is read (C(schema.table)). None reads only the job status.
    type: list
    elements: str
    default: []
attributes:
  check_mode:
    description: Reads only; runs in check mode.
    support: full
  diff_mode:
    description: Returns no diff.
    support: none
seealso:
  - module: sigeti.dwh.partitioned_table
  - module: sigeti.dwh.table_info
"""

EXAMPLES = r"""
- name: Migrate in the background
  sigeti.dwh.partitioned_table:
    name: dwh_facts.events
    key: occurred_at
    interval: month
    migrate: online
  async: 86400
  poll: 0
  register: job

- name: Show the progress every 10 seconds until it ends
  sigeti.dwh.run_progress:
    jid: "{{ job.ansible_job_id }}"
    results_file: "{{ job.results_file }}"
    tables: [dwh_facts.events]
  loop: "{{ range(8640) | list }}"
  loop_control:
    pause: 10
    break_when: poll.finished
    label: "{{ poll.progress | map(attribute='copy_percent') | list }}"
  register: poll
"""

RETURN = r"""
finished: {description: Whether the job has ended (then the job's own result keys are returned too)., type: bool, returned: always}
ansible_job_id: {description: The job polled., type: str, returned: always}
progress:
  description: While the job runs, one entry per table of O(tables) with a migration in flight.
  type: list
  elements: dict
  returned: always
  contains:
    table: {description: The table., type: str}
    phase: {description: The migration's phase., type: str}
    rows_copied: {description: Rows copied so far., type: int}
    rows_total: {description: Rows to copy (null when table_info does not say)., type: int}
    copy_percent: {description: Share copied (null before the copy)., type: float}
    rows_per_second: {description: Copy speed (null when table_info does not say)., type: float}
    eta_seconds: {description: Estimated seconds left (null when table_info does not say)., type: float}
progress_error: {description: Why the progress could not be read (the poll goes on)., type: str, returned: when it failed}
"""
