# Copyright: (c) 2026, SIGETI data platform team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What is wrong with dwh_tables and the backup settings, by the modules' own rules (module_utils/backup/preflight.py)."""

from __future__ import annotations

from ansible_collections.sigeti.dwh.plugins.module_utils.backup import preflight

DOCUMENTATION = r"""
name: preflight_errors
short_description: The problems of dwh_tables and of the backup settings, one message each
version_added: 0.2.0
description:
  - Checks the declared tables as the modules will (retention with C(partitioned_table)'s rule, compression with
    C(compression)'s), that they are not empty and name no table twice, and the backup settings (C(dwh_backup) auto,
    always or never - true/false still mean always/never -, C(dwh_backup_scope), C(dwh_backup_verify),
    C(dwh_backup_keep)).
  - Returns an empty list when all is well. The preflight role fails on the first run of a play with these messages,
    before any module is called.
options:
  _input:
    description: C(dwh_tables).
    type: list
    elements: dict
    required: true
  host:
    description: The host the messages name.
    type: str
    required: true
  table_misspelt:
    description: Whether C(dwh_table) (a misspelling) is set.
    type: bool
    default: false
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
author:
  - SIGETI data platform team
"""

EXAMPLES = r"""
- ansible.builtin.assert:
    that: dwh_errors | length == 0
    fail_msg: "{{ dwh_errors | join(' ') }}"
  vars:
    dwh_errors: "{{ dwh_tables | sigeti.dwh.preflight_errors(host=inventory_hostname) }}"
"""

RETURN = r"""
_value:
  description: One message per problem (empty when none).
  type: list
  elements: str
"""


def preflight_errors(tables, host, table_misspelt=False, backup="auto", scope="tables", verify="list", keep=3):
    """Return the messages of ``preflight.entry_errors`` and ``preflight.backup_policy``."""
    errors = preflight.entry_errors(list(tables or []), host, bool(table_misspelt))
    message = preflight.backup_policy(backup, scope, verify, keep, host)[1]
    return errors + ([message] if message else [])


class FilterModule:
    def filters(self):
        return {"preflight_errors": preflight_errors}
