# Copyright: (c) 2026, SIGETI data platform team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Carry dwh_serial / dwh_max_fail_percentage from inventory variables to the play keywords (pure).

Ansible templates ``serial`` and ``max_fail_percentage`` before host and group variables exist: only extra vars and
the inventory's group names reach them. The sigeti.dwh.wave role puts each host in a group whose name encodes its
setting (wave_group); the next play reads the setting back from the group names (wave).
"""

from __future__ import annotations

import json

from ansible.errors import AnsibleFilterError

from ansible_collections.sigeti.dwh.plugins.filter.wave_group import PREFIX

DOCUMENTATION = r"""
name: wave
short_description: Read a wave setting (serial, max_fail_percentage) back from the groups made by sigeti.dwh.wave
version_added: 0.1.0
description:
  - Takes the C(groups) magic variable and returns the value of O(setting) that the C(sigeti.dwh.wave) role recorded
    for the hosts of the run (from C(dwh_serial) or C(dwh_max_fail_percentage) in inventory, group, host or extra
    variables).
  - Fails when the hosts disagree (a wave is one setting per play).
  - When the wave role did not run (C(--skip-tags always), or a syntax check that runs no play) it returns one batch
    for C(serial) and 100 for C(max_fail_percentage); no change can happen then, since the changing roles refuse to
    run without this play's preflight.
options:
  _input:
    description: The C(groups) magic variable.
    type: dict
    required: true
  setting:
    description: C(serial) or C(max_fail_percentage).
    type: str
    required: true
author:
  - SIGETI data platform team
"""

EXAMPLES = r"""
- name: Weekly maintenance in the inventory's waves
  hosts: dwh_servers
  serial: "{{ groups | sigeti.dwh.wave('serial') }}"
  max_fail_percentage: "{{ groups | sigeti.dwh.wave('max_fail_percentage') }}"
  roles: [sigeti.dwh.preflight]
"""

RETURN = r"""
_value:
  description: The setting (an int, a percentage string, or a list of them for serial).
  type: raw
"""


def wave(groups, setting):
    """Return the one value of ``setting`` recorded in ``groups``; fail when none or several."""
    prefix = "%s%s_" % (PREFIX, setting)
    values = {}
    for name, hosts in (groups or {}).items():
        if name.startswith(prefix) and hosts:
            values[name] = json.loads(bytes.fromhex(name[len(prefix) :]).decode("utf-8"))
    if not values:
        # no wave play ran: --skip-tags always (the preflight, tagged always too, is skipped with it and the
        # changing roles then refuse) or a syntax check, which templates play keywords without running any play
        return "100%" if setting == "serial" else 100
    distinct = sorted({json.dumps(v, sort_keys=True) for v in values.values()})
    if len(distinct) > 1:
        raise AnsibleFilterError(
            "dwh_%s differs between the hosts of this run (%s: %s): a wave is one setting per run; set it once, "
            "in group_vars/all" % (setting, ", ".join(distinct), ", ".join("%s" % groups[n] for n in sorted(values)))
        )
    return json.loads(distinct[0])


class FilterModule:
    def filters(self):
        return {"wave": wave}
