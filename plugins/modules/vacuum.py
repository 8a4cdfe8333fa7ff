#!/usr/bin/python
# Copyright: (c) 2026, SIGETI data platform team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: vacuum
short_description: Ensure the vacuum and analyze state of warehouse tables, doing only the work that is due
version_added: 0.1.0
description:
  - Reads each table's statistics and decides, with numbers, whether it needs C(ANALYZE), C(VACUUM),
    C(VACUUM FREEZE) or a rewrite that returns space (C(VACUUM FULL) or pg_repack). Runs only that, and
    reports for each relation what ran, why, sizes before and after, and how long it took.
  - C(analyze=auto) analyzes a table never analyzed, or whose C(n_mod_since_analyze) exceeds the autovacuum
    analyze trigger. Partitioned parents are analyzed whenever one of their partitions changed or is processed,
    because autovacuum never analyzes a parent.
  - C(vacuum=auto) vacuums when C(n_dead_tup) exceeds C(threshold + scale_factor * reltuples) (reloptions
    first, then server settings), for the heap or its TOAST relation, or when inserts since the last vacuum
    exceed the insert trigger.
  - C(full=auto) rewrites a leaf at least O(min_size) large whose bloat (dead + free share) exceeds
    O(bloat_threshold), measured by C(pgstattuple_approx) when the extension is installed and the role may call
    it, else estimated from the catalog. Before a rewrite it checks free disk where it can see it, and it
    rewrites one partition per statement under C(lock_timeout) with retries, then vacuums and analyzes it.
  - A second run right after the first finds nothing due and reports C(changed=false).
author:
  - SIGETI data platform team (@sigeti)
extends_documentation_fragment:
  - sigeti.dwh.connection
options:
  tables:
    description:
      - Tables to maintain, as C(schema.table). A partitioned table means its whole partition tree.
      - Give O(tables) and/or O(schemas), or O(policies).
    type: list
    elements: str
    default: []
  schemas:
    description: Maintain every top-level table (plain or partitioned) of these schemas, in addition to O(tables).
    type: list
    elements: str
    default: []
  policies:
    description:
      - Several tables, each with its own policy, in one call. Each entry names one table (C(schema.table)) and may
        set the per-table options O(analyze), O(vacuum), O(freeze_older_than), O(full), O(full_method),
        O(bloat_threshold), O(min_size) and O(autovacuum) (same meaning and defaults). Each table is run in turn on
        one connection, as if called alone with O(tables) naming it, under its own run lock (taken just before it
        and released after it).
      - Mutually exclusive with O(tables), O(schemas) and the per-table options above (they go in the entries).
        O(disk_check), O(min_free_space), O(pg_repack_path), O(skip_on_standby) and the connection options apply to
        every entry.
      - Every entry's options are checked before anything runs. The first table that fails stops the list, as a
        loop over the tables would; the message names it, the tables done before it and those not run, RV(results)
        holds the results so far (the failed one last) and C(changed) is true when anything ran.
    type: list
    elements: dict
    suboptions:
      name: {description: The table (a partitioned table means its whole partition tree)., type: str, required: true}
      analyze: {description: See O(analyze)., type: str, choices: [auto, always, never], default: auto}
      vacuum: {description: See O(vacuum)., type: str, choices: [auto, always, never], default: auto}
      freeze_older_than: {description: See O(freeze_older_than)., type: int}
      full: {description: See O(full)., type: str, choices: [auto, always, never], default: auto}
      full_method:
        description: See O(full_method).
        type: str
        choices: [auto, vacuum_full, pg_repack]
        default: auto
      bloat_threshold: {description: See O(bloat_threshold)., type: float, default: 0.3}
      min_size: {description: See O(min_size)., type: str, default: 100MB}
      autovacuum: {description: See O(autovacuum)., type: dict}
  analyze:
    description: V(auto) analyzes what is due (see above), V(always) everything, V(never) nothing.
    type: str
    choices: [auto, always, never]
    default: auto
  vacuum:
    description: V(auto) vacuums what is due, V(always) every leaf, V(never) nothing.
    type: str
    choices: [auto, always, never]
    default: auto
  freeze_older_than:
    description:
      - Run C(VACUUM FREEZE) once on partitions whose range ended at least this many partition widths ago
        (month-aligned ranges count in months, others in days). Not set means never freeze.
      - Once means the module reads back, from the catalog, that the partition is already frozen
        (C(age(relfrozenxid)) lower than the age of the newest row of a small sample, and no write since the
        last vacuum) and then skips it.
    type: int
  full:
    description:
      - Rewrite leaves to return space to the filesystem. V(auto) when bloat exceeds O(bloat_threshold) and the
        table is at least O(min_size); V(always) every leaf (not idempotent); V(never) no rewrite.
    type: str
    choices: [auto, always, never]
    default: auto
  full_method:
    description:
      - V(auto) uses pg_repack (online, brief locks) when its extension is in the database, a matching
        C(pg_repack) program exists on this host, the role is superuser and the table has a primary key or
        unique NOT NULL index; else C(VACUUM FULL) (ACCESS EXCLUSIVE for the whole rewrite).
      - V(pg_repack) fails, changing nothing, when pg_repack cannot be used and says how to install it.
    type: str
    choices: [auto, vacuum_full, pg_repack]
    default: auto
  bloat_threshold:
    description: Dead + free share of the heap (0 to 1) above which O(full=auto) rewrites.
    type: float
    default: 0.3
  min_size:
    description: Leaves smaller than this (heap + TOAST) are not rewritten by O(full=auto). Units as C(pg_size_bytes).
    type: str
    default: 100MB
  autovacuum:
    description:
      - Autovacuum storage parameters ensured on every leaf (a partitioned parent rejects them), e.g.
        C(autovacuum_vacuum_scale_factor=0.02) or C(toast.autovacuum_enabled=false). A null value resets the
        parameter. Parameters not listed are left alone. Changes run first, in one transaction.
    type: dict
  disk_check:
    description:
      - Before a rewrite, compare the free space of the data directory's (or tablespace's) filesystem with the
        rewrite's peak need (compacted copy plus as much WAL) plus O(min_free_space).
      - V(auto) checks when the module runs on the database host and sees the folder, and says so when it
        cannot; V(required) refuses rewrites it cannot check; V(never) skips the check.
    type: str
    choices: [auto, required, never]
    default: auto
  min_free_space:
    description: Space that must stay free after a rewrite's peak (e.g. C(10GB)).
    type: str
    default: '0'
  pg_repack_path:
    description: The C(pg_repack) program; default searches PATH and C(/usr/lib/postgresql/<major>/bin).
    type: path
  skip_on_standby:
    description: On a standby, exit unchanged instead of failing.
    type: bool
    default: false
attributes:
  check_mode:
    description: Can run in check_mode and return the plan, with its reasons, without running it.
    support: full
    details: >-
      Reads statistics (and samples with pgstattuple_approx when allowed) and returns the plan with reasons;
      nothing runs.
  diff_mode:
    description: The result lists decisions and sizes before and after instead of a diff.
    support: none
notes:
  - VACUUM and ANALYZE run in autocommit (they cannot run in a transaction block).
  - "Privileges: the table owner (or C(MAINTAIN)/C(pg_maintain) on 17+) can vacuum and analyze. Measuring bloat
    with pgstattuple needs membership in C(pg_stat_scan_tables) (or superuser), else the catalog estimate is used.
    Seeing the data directory for the disk check needs superuser or C(pg_read_all_settings). pg_repack needs a
    superuser."
  - "One run per table at a time: before reading anything it plans from, the module takes a session-level
    advisory lock per table (key C(hashtext('schema.table')) in class 21319). A second run waits up to its lock
    budget (O(lock_timeout) for each of O(lock_retries)+1 attempts plus the retry delays), then fails naming the
    other run (pid, application_name, client, since when). The lock goes with the session, so a killed run never
    leaves it behind. Check mode does not wait: it warns when another run is changing the table."
seealso:
  - module: sigeti.dwh.table_info
"""

EXAMPLES = r"""
- name: Weekly pass on the facts and dimensions, only what is due
  sigeti.dwh.vacuum:
    login_db: sigeti_node_db
    schemas: [dwh_facts, dwh_dim]

- name: Monthly - freeze closed partitions once, rewrite badly bloated ones online when pg_repack is there
  sigeti.dwh.vacuum:
    login_db: sigeti_node_db
    tables: [dwh_facts.fait_attributions, dwh_facts.fait_factures]
    freeze_older_than: 2
    full: auto
    bloat_threshold: 0.3
    min_size: 100MB
    min_free_space: 20GB
    autovacuum:
      autovacuum_vacuum_scale_factor: 0.02
      autovacuum_analyze_scale_factor: 0.01
  register: vacuum_result
"""

RETURN = r"""
results:
  description:
    - With O(policies), one result per table in the order given, each with the keys below as a call for that table
      alone returns them, plus C(name) (as given) and C(warnings) (that table's). A failed table's result is last,
      with C(failed) and C(msg).
    - The top-level RV(changed), RV(queries), RV(commands) and RV(tables) then cover every table.
  returned: when O(policies) is given
  type: list
  elements: dict
changed: {description: True when something ran (or would run in check mode)., type: bool, returned: always}
rewrites:
  description:
    - What the run does (in check mode, would do) that rewrites the table's data - V(full) when a relation of it gets
      a VACUUM FULL or a pg_repack; empty for VACUUM, ANALYZE, FREEZE and reloptions. With O(policies), per table in
      RV(results), and at the top every kind listed.
    - The preflight role takes its backup (C(dwh_backup=auto)) before such a change.
  type: list
  elements: str
  returned: always
queries:
  description: The SQL that ran (or would run in check mode), in order.
  type: list
  elements: str
  returned: always
commands:
  description: pg_repack command lines (the password is passed in the environment, never here).
  type: list
  elements: str
  returned: always
bloat_method: {description: V(pgstattuple) or V(estimate)., type: str, returned: with O(tables) or O(schemas) and per table in RV(results)}
repack: {description: Whether pg_repack is usable and why not., type: dict, returned: with O(tables) or O(schemas) and per table in RV(results)}
disk:
  description: The free-space check of each rewrite (numbers in bytes).
  type: list
  elements: dict
  returned: with O(tables) or O(schemas) and per table in RV(results)
tables:
  description: Per requested table, per relation of its tree, the decisions with numbers and the actions.
  type: list
  elements: dict
  returned: always
  sample:
    - schema: dwh_facts
      name: fait_factures
      summary: ["vacuum dwh_facts.fait_factures"]
      relations:
        - name: fait_factures
          kind: plain
          decisions:
            vacuum: {due: true, reason: "30000 dead rows > vacuum trigger 20050", n_dead_tup: 30000, trigger: 20050}
            analyze: {due: false, reason: "0 rows changed since the last analyze <= analyze trigger 10050"}
            full: {due: false, reason: "size 7.3 MiB < min_size 100.0 MiB"}
          actions:
            - {action: vacuum, sql: "VACUUM \"dwh_facts\".\"fait_factures\"", lock: SHARE UPDATE EXCLUSIVE,
               duration_ms: 52}
          sizes_before: {heap_bytes: 7634944, toast_bytes: 0, index_bytes: 2269184, total_bytes: 9904128}
          sizes_after: {heap_bytes: 7634944, toast_bytes: 0, index_bytes: 2269184, total_bytes: 9904128}
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.sigeti.dwh.plugins.module_utils.backup import rewrites as backup_rewrites
from ansible_collections.sigeti.dwh.plugins.module_utils.catalog import tables as catalog
from ansible_collections.sigeti.dwh.plugins.module_utils.report import inflight
from ansible_collections.sigeti.dwh.plugins.module_utils.session import runlock
from ansible_collections.sigeti.dwh.plugins.module_utils.session.connection import (
    connection_argument_spec,
    module_errors,
    open_session,
)
from ansible_collections.sigeti.dwh.plugins.module_utils.session.context import RunContext
from ansible_collections.sigeti.dwh.plugins.module_utils.vacuum import options as vacuum_options
from ansible_collections.sigeti.dwh.plugins.module_utils.vacuum import run as vacuum_run


def policy_options():
    """The options that make one table's policy: the module's own, and those of each ``policies`` entry."""
    return dict(
        analyze={"type": "str", "choices": list(vacuum_options.MODES), "default": "auto"},
        vacuum={"type": "str", "choices": list(vacuum_options.MODES), "default": "auto"},
        freeze_older_than={"type": "int"},
        full={"type": "str", "choices": list(vacuum_options.MODES), "default": "auto"},
        full_method={"type": "str", "choices": list(vacuum_options.FULL_METHODS), "default": "auto"},
        bloat_threshold={"type": "float", "default": 0.3},
        min_size={"type": "str", "default": "100MB"},
        autovacuum={"type": "dict"},
    )


def main():
    argument_spec = connection_argument_spec()
    argument_spec.update(
        tables={"type": "list", "elements": "str", "default": []},
        schemas={"type": "list", "elements": "str", "default": []},
        policies={
            "type": "list",
            "elements": "dict",
            "options": dict(name={"type": "str", "required": True}, **policy_options()),
        },
        disk_check={"type": "str", "choices": ["auto", "required", "never"], "default": "auto"},
        min_free_space={"type": "str", "default": "0"},
        pg_repack_path={"type": "path"},
        skip_on_standby={"type": "bool", "default": False},
    )
    argument_spec.update(policy_options())
    module = AnsibleModule(
        argument_spec=argument_spec,
        supports_check_mode=True,
        # with policies each table's policy goes in its entry
        mutually_exclusive=[["policies", option] for option in ["tables", "schemas"] + list(policy_options())],
    )
    context = RunContext(module.params, module.check_mode, module._diff, module.warn, module.run_command)
    holder = []
    with module_errors(module.fail_json, module.exit_json, holder):
        if module.params["policies"] is not None:
            vacuum_run.validate_policies(module.params)
            conn, server = open_session(module.params, holder, module.params["skip_on_standby"])
            result = vacuum_run.run_policies(context, conn, server)
        else:
            options = vacuum_options.validate_options(module.params)
            conn, server = open_session(module.params, holder, module.params["skip_on_standby"])
            names = catalog.requested_tables(conn, module.params["tables"], module.params["schemas"])
            runlock.hold(context, conn, names)
            for warning in inflight.stale_warnings(catalog.migrations_in_flight(conn, names)[0]):
                module.warn(warning)
            result = vacuum_run.run(context, conn, server, names, options)
        conn.close()
        module.exit_json(**backup_rewrites.mark(result, backup_rewrites.vacuum))


if __name__ == "__main__":
    main()
