# Copyright: (c) 2026, SIGETI data platform team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What this run would change and what must come before it, from the probe's results (module_utils/backup/preflight.py)."""

from __future__ import annotations

from ansible.errors import AnsibleFilterError

from ansible_collections.sigeti.dwh.plugins.module_utils.backup import preflight

DOCUMENTATION = r"""
name: preflight_plan
short_description: What a run would change, and whether a confirmation, a backup and a disk check come first
version_added: 0.2.0
description:
  - Reads the check-mode results of C(partitioned_table), C(compression) and C(vacuum) (each says in C(rewrites)
    what it would rewrite or remove) and the backup policy.
  - Returns C(planned) (the structural changes the confirmation lists), C(changes_planned), C(rewrites) (table ->
    kinds), C(backup_needed), C(backup_tables), C(disk_tables) (tables getting a new copy of their data), C(policy),
    C(announce) (the confirmation's backup sentence), C(summary) (one line).
options:
  _input:
    description: C(dwh_tables).
    type: list
    elements: dict
    required: true
  backup:
    description: C(dwh_backup).
    type: raw
    default: auto
  scope:
    description: C(dwh_backup_scope).
    type: str
    default: tables
  verify:
    description: C(dwh_backup_verify).
    type: str
    default: list
  keep:
    description: C(dwh_backup_keep).
    type: raw
    default: 3
  probed:
    description: Whether the modules were asked (C(dwh_preflight_probe)); without it every declared table counts.
    type: bool
    default: true
  partitioning:
    description: The partitioning role's results (C(dwh_partitioning_results)).
    type: dict
  compression:
    description: The compression role's results (C(dwh_compression_results)).
    type: dict
  vacuum:
    description: The vacuum module's check-mode result.
    type: dict
  backup_dir:
    description: C(dwh_backup_dir), for the confirmation's sentence.
    type: str
    default: ''
author:
  - SIGETI data platform team
"""

EXAMPLES = r"""
- ansible.builtin.set_fact:
    dwh_preflight: "{{ dwh_tables | sigeti.dwh.preflight_plan(partitioning=dwh_partitioning_results) }}"
"""

RETURN = r"""
_value:
  description: The decisions (see the description).
  type: dict
"""


def preflight_plan(
    tables,
    backup="auto",
    scope="tables",
    verify="list",
    keep=3,
    probed=True,
    partitioning=None,
    compression=None,
    vacuum=None,
    backup_dir="",
):
    """Return ``preflight.probe_plan`` with the backup policy read (``policy``)."""
    settings, message = preflight.backup_policy(backup, scope, verify, keep, "preflight_plan")
    if settings is None:
        raise AnsibleFilterError(message)
    plan = preflight.probe_plan(
        list(tables or []), settings, bool(probed), partitioning, compression, vacuum, str(backup_dir or "")
    )
    plan["policy"] = settings.policy
    return plan


class FilterModule:
    def filters(self):
        return {"preflight_plan": preflight_plan}
