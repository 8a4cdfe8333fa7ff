#!/usr/bin/python
# Copyright: (c) 2026, SIGETI data platform team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: compression
short_description: Set TOAST compression and storage per column, recompress existing values, report what it achieved
version_added: 0.1.0
description:
  - Sets the compression method (V(lz4), V(pglz), V(default)) and storage strategy of columns, idempotently,
    on a plain table or on a partitioned table and B(every) relation of its tree (the parent setting alone
    only reaches partitions created later). Each relation is altered in its own short transaction under
    O(lock_timeout) (C(SET COMPRESSION) takes a brief ACCESS EXCLUSIVE lock), with retries.
  - C(SET COMPRESSION) only changes future writes. O(recompress) converts the values already stored.
    V(online) rewrites, in batches by primary key with a commit per batch, only the values stored with
    another method, then runs a plain C(VACUUM); the space of the old row versions becomes reusable but is
    not returned to the operating system. V(rewrite) rewrites each table in one
    C(ALTER TABLE ... ALTER COLUMN ... TYPE ... USING ...) statement (compact, ACCESS EXCLUSIVE while it runs);
    a partition refuses C(ALTER COLUMN TYPE), so a partition is rewritten by one C(UPDATE) then
    C(VACUUM (FULL, ANALYZE)) of that partition alone.
  - Reports the truth, measured with C(pg_column_compression) (sampled by default) before and after, the share
    of values per method and the table sizes. Warns when no row reaches the TOAST threshold (then no
    compression setting changes anything).
author:
  - SIGETI data platform team (@sigeti)
extends_documentation_fragment:
  - sigeti.dwh.connection
options:
  name:
    description: The table, as C(schema.table). A partitioned table means the parent and every partition.
    type: str
    required: true
  columns:
    description:
      - Compression method per column, V(lz4), V(pglz) or V(default) (the writing session's
        C(default_toast_compression)). Only variable-length (toastable) columns are accepted.
    type: dict
    default: {}
  storage:
    description: Storage strategy per column, V(plain), V(main), V(external) or V(extended).
    type: dict
    default: {}
  toast_tuple_target:
    description: Row width in bytes (128-8160) above which PostgreSQL compresses and moves values out of line; set per leaf table.
    type: int
  recompress:
    description:
      - What to do with values already stored. V(none) leaves them (only new writes use the new method).
      - V(online) updates them in batches (needs a primary key or a unique index over NOT NULL columns), then VACUUM.
      - V(rewrite) rewrites each table in one statement under ACCESS EXCLUSIVE.
    type: str
    choices: [none, online, rewrite]
    default: none
  batch_size:
    description: Rows per batch of O(recompress=online) (one transaction per batch).
    type: int
    default: 5000
  database_default:
    description: Set C(default_toast_compression) for the current database (C(ALTER DATABASE ... SET)), used by new sessions.
    type: str
    choices: [lz4, pglz]
  measure:
    description: How to count values per method, V(sample) (C(TABLESAMPLE), about 2000 pages per table) or V(exact).
    type: str
    choices: [sample, exact]
    default: sample
  skip_on_standby:
    description: On a standby, exit unchanged instead of failing.
    type: bool
    default: false
attributes:
  check_mode:
    description: Can run in check_mode and return the planned statements without running them.
    support: full
    details: Reads the catalog and a sample of the table (ACCESS SHARE); takes no other lock and changes nothing.
  diff_mode:
    description: Shows each column's compression and storage before and after.
    support: full
notes:
  - lz4 is a speed choice (faster to write and read), not a space choice; on large values it is usually larger
    than pglz. The module reports the sizes it measured, never an expected saving.
  - Rows narrower than about 2 kB are never compressed; such tables do not change at all.
  - "One run per table at a time: before reading anything it plans from, the module takes a session-level
    advisory lock per table (key C(hashtext('schema.table')) in class 21319). A second run waits up to its lock
    budget (O(lock_timeout) for each of O(lock_retries)+1 attempts plus the retry delays), then fails naming the
    other run (pid, application_name, client, since when). The lock goes with the session, so a killed run never
    leaves it behind. Check mode does not wait: it warns when another run is changing the table."
seealso:
  - module: sigeti.dwh.table_info
"""

EXAMPLES = r"""
- name: Comments of the attributions fact table in lz4, existing values converted online
  sigeti.dwh.compression:
    login_db: sigeti_node_db
    name: dwh_facts.fait_attributions
    columns:
      commentaire: lz4
    storage: {commentaire: extended}
    recompress: online
    batch_size: 2000
  register: result

- name: Show what it achieved
  ansible.builtin.debug:
    msg: "{{ result.columns.commentaire.before.shares }} -> {{ result.columns.commentaire.after.shares }}, {{ result.sizes }}"

- name: Database default and a compact rewrite in a maintenance window
  sigeti.dwh.compression:
    login_db: sigeti_node_db
    name: dwh_facts.fait_documents
    columns: {contenu: default, meta: lz4}
    database_default: lz4
    recompress: rewrite
    lock_timeout: 2s
"""

RETURN = r"""
changed: {description: True when the plan was not empty., type: bool, returned: always}
rewrites:
  description:
    - What the run does (in check mode, would do) that rewrites the table's existing data - V(recompress) when
      values are rewritten with another method (O(recompress) other than V(none)); empty when it only sets the
      method for new values, the storage or C(toast_tuple_target).
    - The preflight role takes its backup (C(dwh_backup=auto)) before such a change.
  type: list
  elements: str
  returned: always
queries:
  description: The statements run (in check mode, that would run; a batched phase shows its template with :lower/:upper).
  type: list
  elements: str
  returned: always
plan:
  description: Each step with its SQL, reason and lock.
  type: list
  elements: dict
  returned: always
columns:
  description:
    - Per declared column, the values per method before and after (counts, shares of non-NULL values, widths),
      and C(values_to_rewrite) (estimated from the sample when sampled).
  type: dict
  returned: always
  sample: {commentaire: {declared: lz4, values_to_rewrite: 1200, before: {pglz: 1200, lz4: 0, shares: {pglz: 1.0}}, after: {pglz: 0, lz4: 1200}}}
sizes:
  description: Heap, TOAST, index and total bytes of the whole tree before and after (after is null in check mode).
  type: dict
  returned: always
recompress:
  description: Mode, per-leaf batches and rows rewritten, and a note on where the space went.
  type: dict
  returned: always
warnings_detail:
  description: The warnings (also emitted as Ansible warnings), e.g. no row exceeding the TOAST threshold.
  type: list
  elements: str
  returned: always
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.sigeti.dwh.plugins.module_utils.backup import rewrites as backup_rewrites
from ansible_collections.sigeti.dwh.plugins.module_utils.catalog import tables as catalog
from ansible_collections.sigeti.dwh.plugins.module_utils.compression import planner as compression
from ansible_collections.sigeti.dwh.plugins.module_utils.compression import run as compression_run
from ansible_collections.sigeti.dwh.plugins.module_utils.core.identifiers import split_name
from ansible_collections.sigeti.dwh.plugins.module_utils.report import inflight
from ansible_collections.sigeti.dwh.plugins.module_utils.session import runlock
from ansible_collections.sigeti.dwh.plugins.module_utils.session.connection import (
    connection_argument_spec,
    module_errors,
    open_session,
)
from ansible_collections.sigeti.dwh.plugins.module_utils.session.context import RunContext


def main():
    argument_spec = connection_argument_spec()
    argument_spec.update(
        name=dict(type="str", required=True),
        columns=dict(type="dict", default={}),
        storage=dict(type="dict", default={}),
        toast_tuple_target=dict(type="int"),
        recompress=dict(type="str", choices=list(compression.RECOMPRESS_MODES), default="none"),
        batch_size=dict(type="int", default=compression.DEFAULT_BATCH_SIZE),
        database_default=dict(type="str", choices=["lz4", "pglz"]),
        measure=dict(type="str", choices=["sample", "exact"], default="sample"),
        skip_on_standby=dict(type="bool", default=False),
    )
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)
    context = RunContext(module.params, module.check_mode, module._diff, module.warn, module.run_command)
    holder = []
    with module_errors(module.fail_json, module.exit_json, holder):
        declared = compression.declared_state(module.params)
        conn, facts = open_session(module.params, holder, module.params["skip_on_standby"])
        schema, name = split_name(module.params["name"])
        runlock.hold(context, conn, [(schema, name)])
        for warning in inflight.stale_warnings(catalog.migrations_in_flight(conn, [(schema, name)])[0]):
            module.warn(warning)
        result = compression_run.run(context, conn, facts, schema, name, declared)
        conn.close()
        module.exit_json(**backup_rewrites.mark(result, backup_rewrites.compression))


if __name__ == "__main__":
    main()
