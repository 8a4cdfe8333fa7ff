# Copyright: (c) 2026, SIGETI data platform team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""A byte count in binary units for the roles' messages: the modules' and the report's rule (core/units.py), pure.

Ansible's ``human_readable`` writes powers of 1024 as "KB", "MB": a DBA comparing a message with the report page
(KiB, MiB) would read two different figures for one size.
"""

from __future__ import annotations

from ansible.errors import AnsibleFilterError

from ansible_collections.sigeti.dwh.plugins.module_utils.core.units import format_bytes

DOCUMENTATION = r"""
name: binary_bytes
short_description: Write a byte count in binary units (KiB, MiB, GiB, TiB), as the modules and the report do
version_added: 0.1.0
description:
  - Returns C(N bytes) below 1 KiB, then KiB and MiB with one decimal, GiB and TiB with two.
  - The same rule as the modules' messages and the report role's pages, so one size reads the same everywhere.
options:
  _input:
    description: A number of bytes (int, float or a string of digits).
    type: raw
    required: true
author:
  - SIGETI data platform team
"""

EXAMPLES = r"""
- name: Say how much is free
  ansible.builtin.debug:
    msg: "{{ 1073741824 | sigeti.dwh.binary_bytes }} free"  # 1.00 GiB free
"""

RETURN = r"""
_value:
  description: The size with its unit.
  type: str
"""


def binary_bytes(value):
    """Return ``value`` (bytes) written with a binary unit; fail naming the value when it is not a number."""
    try:
        number = float(value)
    except (TypeError, ValueError) as exc:
        raise AnsibleFilterError("binary_bytes: %r is not a number of bytes" % (value,)) from exc
    return format_bytes(number)


class FilterModule:
    """The binary_bytes filter."""

    def filters(self):
        return {"binary_bytes": binary_bytes}
