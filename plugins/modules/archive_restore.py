#!/usr/bin/python
# Copyright: (c) 2026, SIGETI data platform team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: archive_restore
short_description: Bring partitions archived to Parquet back into their partition set, verified
version_added: 0.2.0
description:
  - Recreates partitions that C(sigeti.dwh.partitioned_table)'s retention action V(parquet) archived, each from its
    Parquet file and manifest under C(<archive_dir>/<schema>.<table>/<partition>.parquet) (see C(docs/archive.md)),
    and attaches it to O(table) with the bound the manifest recorded.
  - Each partition is restored in one transaction committed only when the rows read back from the file have the
    manifest's content checksum (the file's SHA-256 is checked before reading it); the ATTACH runs under
    O(lock_timeout) with retries and builds the set's indexes on it.
  - Every period is checked before anything changes - its manifest and file exist, the archive is one of O(table),
    and a table already under the partition's name holds exactly the archive's rows (by the content checksum);
    anything else is refused, naming the table, the file and what to do.
  - A period whose table is already attached with the archive's checksum is left alone; a second run changes nothing.
    A table restored by a run whose ATTACH failed is attached by the next run.
  - The files are read on the host that runs the module (the database host in this collection's playbooks); the
    Python package C(pyarrow) (>= 14) must be installed for the module's interpreter there.
author:
  - SIGETI data platform team (@sigeti)
extends_documentation_fragment:
  - sigeti.dwh.connection
options:
  table:
    description: The partitioned table the archives came from, as C(schema.table).
    type: str
    required: true
  periods:
    description:
      - The archived partitions to restore, by partition name (C(fait_2019)), as C(partitioned_table) returned them in
        C(archived) and C(archive_files) - the name of the Parquet file without C(.parquet).
    type: list
    elements: str
    required: true
  archive_dir:
    description: The folder O(table)'s archives were written to (O(sigeti.dwh.partitioned_table#module:retention.archive_dir)).
    type: path
    required: true
  into:
    description:
      - Restore into this plain side table (C(schema.table), or a name in O(table)'s schema) instead of attaching the
        partition to O(table); the set is not touched. One period only.
      - An existing side table holding exactly the archive's rows is left alone.
    type: str
attributes:
  check_mode:
    description:
      - Reads the manifests and the tables found under the partitions' names (their content checksum, a read of each);
        returns what would be restored and attached, and the ATTACH statements. Writes nothing.
    support: full
  diff_mode:
    description: The periods' tables present before, and after.
    support: full
notes:
  - Takes the run lock of O(table) (as C(partitioned_table) does), so a restore never overlaps a retention run.
seealso:
  - module: sigeti.dwh.partitioned_table
"""

EXAMPLES = r"""
- name: The attributions of 2019 back into the fact table
  sigeti.dwh.archive_restore:
    login_db: sigeti_node_db
    table: dwh_facts.fait_attributions
    periods: [fait_attributions_2019]
    archive_dir: /srv/dwh_archive

- name: 2018 beside the fact table, for a one-off query
  sigeti.dwh.archive_restore:
    login_db: sigeti_node_db
    table: dwh_facts.fait_attributions
    periods: [fait_attributions_2018]
    archive_dir: /srv/dwh_archive
    into: dwh_archive.attributions_2018
"""

RETURN = r"""
restored:
  description:
    - One entry per period - C(period), C(table) (where its rows are), C(parquet) and C(manifest) (the files),
      C(rows), C(checksum) and C(bound) (the manifest's), C(action) (V(present) nothing to do, V(restore) recreated
      from the file, V(attach) already restored, only attached), C(attached) (false with O(into)) and C(done) (this
      run changed it; false in check mode).
  type: list
  elements: dict
  returned: always
  sample: [{period: fait_2019, table: dwh_facts.fait_2019, action: restore, rows: 160000, attached: true, done: true}]
plan:
  description: Per period, what the run does (would do in check mode), in words.
  type: list
  elements: dict
  returned: always
queries:
  description: The ATTACH statements run (or that would run in check mode); the restores are COPY streams.
  type: list
  elements: str
  returned: always
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.sigeti.dwh.plugins.module_utils.archive import restore_run
from ansible_collections.sigeti.dwh.plugins.module_utils.session.connection import (
    connection_argument_spec,
    module_errors,
    open_session,
)
from ansible_collections.sigeti.dwh.plugins.module_utils.session.context import RunContext


def main():
    argument_spec = connection_argument_spec()
    argument_spec.update(
        table=dict(type="str", required=True),
        periods=dict(type="list", elements="str", required=True),
        archive_dir=dict(type="path", required=True),
        into=dict(type="str"),
    )
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)
    context = RunContext(module.params, module.check_mode, module._diff, module.warn, module.run_command)
    holder = []
    with module_errors(module.fail_json, module.exit_json, holder):
        conn, _server = open_session(module.params, holder, False)
        output = restore_run.run(context, conn)
        conn.close()
        module.exit_json(**output)


if __name__ == "__main__":
    main()
