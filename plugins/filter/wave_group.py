# Copyright: (c) 2026, SIGETI data platform team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The group name that records one host's wave setting (read back by the sigeti.dwh.wave filter) (pure)."""

from __future__ import annotations

import json

DOCUMENTATION = r"""
name: wave_group
short_description: Group name recording a host's wave setting (dwh_serial, dwh_max_fail_percentage)
version_added: 0.1.0
description:
  - Returns C(dwh_wave_<setting>_<hex of the JSON value>), a valid group name for C(ansible.builtin.group_by). The
    C(sigeti.dwh.wave) filter reads the value back in the next play, where host variables are not available.
options:
  _input:
    description: The value (an int, a percentage string, or a list of them).
    type: raw
    required: true
  setting:
    description: C(serial) or C(max_fail_percentage).
    type: str
    required: true
author:
  - SIGETI data platform team
"""

EXAMPLES = r"""
- ansible.builtin.group_by:
    key: "{{ dwh_serial | sigeti.dwh.wave_group('serial') }}"
"""

RETURN = r"""
_value:
  description: The group name.
  type: str
"""

PREFIX = "dwh_wave_"


def wave_group(value, setting):
    """Return the group name that records ``setting`` = ``value`` (hex of its JSON: valid group-name characters)."""
    return "%s%s_%s" % (PREFIX, setting, json.dumps(value, sort_keys=True).encode("utf-8").hex())


class FilterModule:
    def filters(self):
        return {"wave_group": wave_group}
