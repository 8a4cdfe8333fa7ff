#!/usr/bin/python
# Copyright: (c) 2026, SIGETI data platform team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: backup
short_description: Take a verified pg_dump of warehouse tables (with what their restore needs) or of the database
version_added: 0.2.0
description:
  - Runs C(pg_dump -Fc) on the host the module runs on, into O(backup_dir), connecting with the connection options
    (TLS included; the password goes through a private pgpass file, never on a command line or in the output).
  - With O(scope=tables), the dump restores alone into an empty database (C(createdb x; pg_restore -d x <dump>)), as it
    holds the database's schemas, types, domains, functions and the extensions they use, the tables of O(tables)
    with their partitions, the views and materialized views over them, and every relation a restore of those needs
    (the tables their foreign keys point at, what the views read, sequences, parents); every other relation and the
    large objects are left out. With O(scope=database), the whole database.
  - Checks first that O(backup_dir) has room for the dumped relations' size times O(required_ratio).
  - Writes C(<database>@<host>_<UTC time>_<random>.dump.partial), reads it back in full (C(pg_restore -f /dev/null))
    and lists it; with O(verify=restore), also creates an empty database, restores the dump into it with a plain
    C(pg_restore -d) (what a DBA types, nothing prepared beforehand), compares the row count of every dumped table
    with the source's, counted in the snapshot pg_dump read, and drops that database, also on failure. Only then the
    dump gets its final name (never over an existing file) and its manifest C(<dump>.json) is written beside it (who
    took it - O(host_label), the database, the server's system identifier - a sequence number, when, what it holds).
  - Rotation (O(keep)) reads only manifests. It removes the oldest dumps of the same host label, database and server
    beyond O(keep), never the dump of this run, never another's, never a file without a manifest, and only when the
    archive's header names the manifest's database and its size is the recorded one.
  - Never changes the database (C(changed) is always false). What an interrupted run left (partial dumps older than
    an hour, password folders older than ten minutes, its scratch databases older than an hour) is removed.
author:
  - SIGETI data platform team (@sigeti)
extends_documentation_fragment:
  - sigeti.dwh.connection
options:
  backup_dir:
    description: Folder receiving the dumps (created 0700 when absent), on the host the module runs on.
    type: path
    required: true
  scope:
    description: V(tables) dumps O(tables) and what their restore needs; V(database) the whole database.
    type: str
    choices: [tables, database]
    default: tables
  tables:
    description: The tables to dump (C(schema.table); quote mixed-case parts), for O(scope=tables).
    type: list
    elements: str
    default: []
  verify:
    description:
      - V(list) reads the archive back in full and lists it.
      - V(restore) also restores it into an empty scratch database of the same server (needs CREATEDB) and compares
        row counts.
    type: str
    choices: [list, restore]
    default: list
  keep:
    description: Dumps of this host label, database and server kept, the newest, this run's included (0 keeps all).
    type: int
    default: 3
  required_ratio:
    description: Free bytes needed in O(backup_dir) before the dump = this ratio x the size of what is dumped.
    type: float
    default: 1.0
  pg_bin_dir:
    description: Folder holding pg_dump and pg_restore (of the server's major version or newer); empty = PATH.
    type: path
    default: ''
  host_label:
    description:
      - Who takes the dump, recorded in its manifest and in its name (the roles pass C(inventory_hostname)).
      - Rotation compares only dumps of the same label. Empty = this machine's host name.
    type: str
    default: ''
attributes:
  check_mode:
    description: Says what the dump would hold and whether it fits; writes nothing.
    support: full
  diff_mode:
    description: Returns no diff.
    support: none
notes:
  - Roles (owners, grantees) belong to the server, not to a database, and no pg_dump of a database holds them. On a new
    server, create them first (C(pg_dumpall --roles-only) on the old one) or restore with C(--no-owner --no-privileges).
  - An extension the dump holds must be installable on the server it is restored to.
seealso:
  - module: sigeti.dwh.table_info
"""

EXAMPLES = r"""
- name: Dump the fact table and what its restore needs, restore it as a check, keep three
  sigeti.dwh.backup:
    login_db: warehouse
    backup_dir: /var/backups/sigeti-dwh
    tables: [dwh_facts.fait_attributions]
    verify: restore
    keep: 3
    host_label: "{{ inventory_hostname }}"
  register: dump

- name: Restore it elsewhere
  ansible.builtin.command:
    argv: [pg_restore, -d, restored, "{{ dump.file }}"]
"""

RETURN = r"""
changed: {description: Always false (a backup never changes the database)., type: bool, returned: always}
file:
  description: The dump (in check mode, the name it would get).
  type: str
  returned: always
manifest: {description: The manifest written beside the dump (null when it could not be written)., type: str, returned: success}
sequence:
  description: The dump's sequence number among the dumps of this host label, database and server.
  type: int
  returned: success
identity:
  description: Who the dump belongs to, as its manifest records it.
  type: dict
  returned: always
  contains:
    host: {description: O(host_label)., type: str}
    database: {description: The database dumped., type: str}
    system_identifier: {description: The server's system identifier (null when the role cannot read pg_control_system())., type: str}
scope: {description: O(scope)., type: str, returned: always}
contents:
  description: What the dump holds counted by kind (V(the database) for O(scope=database)).
  type: str
  returned: always
  sample: "partitioned table 1, table 12, view 1, materialized view 2, sequence 3"
relations:
  description: The relations a table-scoped dump holds, in the order they were found, each with why.
  type: list
  elements: dict
  returned: always
  contains:
    schema: {description: Schema name., type: str}
    name: {description: Relation name., type: str}
    kind: {description: "V(table), V(partitioned table), V(view), V(materialized view), V(sequence) or V(foreign table).", type: str}
    reason: {description: "Why it is in the dump (V(touched by this run), C(partition of ...), C(referenced by foreign key ...))", type: str}
    bytes: {description: Total bytes on disk (0 for a partitioned table or a view)., type: int}
extensions: {description: The extensions a table-scoped dump holds (those its definitions use)., type: list, elements: str, returned: always}
excluded: {description: How many relations of the database a table-scoped dump leaves out., type: int, returned: always}
database_bytes: {description: Bytes in the database of what is dumped., type: int, returned: always}
required_bytes: {description: Free bytes required in O(backup_dir)., type: int, returned: always}
free_bytes: {description: Free bytes found in O(backup_dir) before the dump., type: int, returned: always}
bytes: {description: Size of the dump file., type: int, returned: success}
objects: {description: Entries C(pg_restore --list) shows., type: int, returned: success}
verified: {description: O(verify)., type: str, returned: success}
restore:
  description: With O(verify=restore), the empty database restored into and what it held (null otherwise).
  type: dict
  returned: success
  contains:
    database: {description: The scratch database (dropped)., type: str}
    tables: {description: Tables compared., type: int}
    rows:
      description: Rows restored, equal to the source's.
      type: int
removed: {description: The older dumps the rotation removed (with their manifests)., type: list, elements: str, returned: success}
commands:
  description: The pg_dump and pg_restore command lines run (never the password; long exclusion lists abbreviated).
  type: list
  elements: str
  returned: always
msg: {description: One line saying what was dumped and how it was verified., type: str, returned: always}
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.sigeti.dwh.plugins.module_utils.backup import run as backup_run
from ansible_collections.sigeti.dwh.plugins.module_utils.session.connection import (
    connection_argument_spec,
    module_errors,
    open_session,
)
from ansible_collections.sigeti.dwh.plugins.module_utils.session.context import RunContext


def main():
    argument_spec = connection_argument_spec()
    argument_spec.update(
        backup_dir=dict(type="path", required=True),
        scope=dict(type="str", choices=["tables", "database"], default="tables"),
        tables=dict(type="list", elements="str", default=[]),
        verify=dict(type="str", choices=["list", "restore"], default="list"),
        keep=dict(type="int", default=3),
        required_ratio=dict(type="float", default=1.0),
        pg_bin_dir=dict(type="path", default=""),
        host_label=dict(type="str", default=""),
    )
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)
    context = RunContext(module.params, module.check_mode, module._diff, module.warn, module.run_command)
    holder = []
    with module_errors(module.fail_json, module.exit_json, holder):
        conn, facts = open_session(module.params, holder)
        result = backup_run.backup(conn, facts["version_num"], context)
        conn.close()
        module.exit_json(**result)


if __name__ == "__main__":
    main()
