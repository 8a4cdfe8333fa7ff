#!/usr/bin/python
# Copyright: (c) 2026, SIGETI data platform team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: disk_space
short_description: Check the database server has free disk for the rewrites a run plans
version_added: 0.2.0
description:
  - For each table of O(tables) (a migration, a recompression or a VACUUM FULL writes a new copy of it beside the
    old one), the filesystem of its tablespace must have O(required_ratio) x the table's size free (tablespaces on
    one filesystem are summed). Fails, naming free and needed bytes, when one is short.
  - Runs on the host the module runs on. A tablespace's folder comes from the catalog; the data directory (the default
    tablespace) from O(data_directory), else the server's C(data_directory) setting (superuser or
    C(pg_read_all_settings)), else the working directory of this session's server process when the server runs on
    this host (root or the server's own user). A folder counts only when its C(postmaster.pid) names the server's
    port and start time.
  - What cannot be seen from here (a remote or managed database, an unknown data directory) gives a warning saying
    exactly which right or option is missing, and the bytes to make sure of by other means.
  - Reads only; never changes anything.
author:
  - SIGETI data platform team (@sigeti)
extends_documentation_fragment:
  - sigeti.dwh.connection
options:
  tables:
    description:
      - The tables rewritten (C(schema.table)), each with what rewrites it (V(migrate), V(recompress), V(full), as the
        changing modules return in their C(rewrites)); the kinds only word the messages.
    type: dict
    default: {}
  required_ratio:
    description: Free bytes needed = this ratio x the tables' total size (indexes and TOAST included).
    type: float
    default: 1.0
  data_directory:
    description: The server's data directory on this host, when the role cannot read the setting.
    type: path
    default: ''
attributes:
  check_mode:
    description: Reads only; runs the same in check mode.
    support: full
  diff_mode:
    description: Returns no diff.
    support: none
seealso:
  - module: sigeti.dwh.partitioned_table
  - module: sigeti.dwh.vacuum
"""

EXAMPLES = r"""
- name: Room for the migration of the fact table
  sigeti.dwh.disk_space:
    login_db: warehouse
    tables:
      dwh_facts.fait_attributions: [migrate]
    required_ratio: 1.2
"""

RETURN = r"""
changed: {description: Always false., type: bool, returned: always}
checks:
  description: One entry per filesystem (or per place that could not be seen).
  type: list
  elements: dict
  returned: always
  contains:
    folder: {description: The folder measured (null when not visible from here)., type: str}
    tables: {description: The tables living there., type: list, elements: str}
    required_bytes: {description: Bytes needed there., type: int}
    free_bytes: {description: Bytes free there (when measured)., type: int}
    reason: {description: Why it could not be measured., type: str}
data_directory: {description: The data directory used (null when not found)., type: str, returned: when tables are given}
found_by: {description: How the data directory was found., type: str, returned: when tables are given}
msg: {description: What was measured in one line., type: str, returned: always}
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.sigeti.dwh.plugins.module_utils.backup import disk_space
from ansible_collections.sigeti.dwh.plugins.module_utils.session.connection import (
    connection_argument_spec,
    module_errors,
    open_session,
)


def main():
    argument_spec = connection_argument_spec()
    argument_spec.update(
        tables=dict(type="dict", default={}),
        required_ratio=dict(type="float", default=1.0),
        data_directory=dict(type="path", default=""),
    )
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)
    holder = []
    with module_errors(module.fail_json, module.exit_json, holder):
        conn, _facts = open_session(module.params, holder)
        result = disk_space.check(conn, module.params, module.warn)
        conn.close()
        module.exit_json(**result)


if __name__ == "__main__":
    main()
