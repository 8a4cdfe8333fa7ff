#!/usr/bin/python
# Copyright: (c) 2026, SIGETI data platform team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: explain_info
short_description: Plan the warehouse's date-range query and report which partitions it reads
version_added: 0.1.0
description:
  - Runs C(EXPLAIN) of the guide's validation query, C(SELECT count(*) FROM table WHERE key BETWEEN low AND high),
    for each range asked, and returns the partitions the plan reads. On a well partitioned table a range within
    one period reads exactly one partition (partition pruning).
  - With O(analyze=true) the count really runs (in a read-only transaction, rolled back), so the result also
    carries the execution time.
  - Also returns a few server facts (version, standby state, lz4, data directory); pre-flight checks read them
    with M(sigeti.dwh.table_info) and O(sigeti.dwh.table_info#module:server_only=true).
  - Never changes anything.
author:
  - SIGETI data platform team (@sigeti)
extends_documentation_fragment:
  - sigeti.dwh.connection
options:
  ranges:
    description: The queries to plan. Empty returns only the server facts.
    type: list
    elements: dict
    default: []
    suboptions:
      name:
        description: Table, as C(schema.table).
        type: str
        required: true
      key:
        description: Column compared with C(BETWEEN), usually the partition key.
        type: str
        required: true
      low:
        description: Lower end, included (C(20230101) for an integer C(YYYYMMDD) key, C(2023-01-01) for a date).
        type: raw
        required: true
      high:
        description: Upper end, included.
        type: raw
        required: true
  analyze:
    description: Run the query (C(EXPLAIN ANALYZE)) to measure its time; otherwise only plan it.
    type: bool
    default: false
attributes:
  check_mode:
    description: Reads only; check mode runs the same plans (EXPLAIN ANALYZE included when asked, it changes nothing).
    support: full
  diff_mode:
    description: Nothing changes, so there is no diff.
    support: none
notes:
  - Needs C(SELECT) on the tables (only with O(analyze=true) are rows read).
seealso:
  - module: sigeti.dwh.table_info
"""

EXAMPLES = r"""
- name: The guide's date-range query reads one partition
  sigeti.dwh.explain_info:
    login_db: sigeti_node_db
    ranges:
      - {name: dwh_facts.fait_attributions, key: date_demandee_key, low: 20230101, high: 20231231}
    analyze: true
  register: plans

- ansible.builtin.assert:
    that: plans.plans[0].scanned_count == 1
"""

RETURN = r"""
server:
  description: Server facts.
  returned: always
  type: dict
  sample: {version: "17.10", version_num: 170010, in_recovery: false, lz4: true, superuser: true,
           data_directory: /var/lib/postgresql/17/main}
plans:
  description: One entry per range, in the order asked.
  returned: always
  type: list
  elements: dict
  contains:
    name: {description: The table., type: str, returned: always}
    query: {description: The exact query planned., type: str, returned: always}
    scanned: {description: "Relations the plan reads (C(schema.name)); pruned partitions are absent.", type: list, elements: str, returned: always}
    scanned_count: {description: How many relations the plan reads., type: int, returned: always}
    subplans_removed: {description: Partitions pruned when the executor started., type: int, returned: always}
    planning_ms: {description: Planning time (with O(analyze=true))., type: float, returned: always}
    execution_ms: {description: Execution time (with O(analyze=true); null otherwise)., type: float, returned: always}
    plan: {description: The plan as text lines., type: list, elements: str, returned: always}
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.sigeti.dwh.plugins.module_utils.catalog import tables as catalog
from ansible_collections.sigeti.dwh.plugins.module_utils.catalog import trials as server_checks
from ansible_collections.sigeti.dwh.plugins.module_utils.core.errors import InvalidInput
from ansible_collections.sigeti.dwh.plugins.module_utils.core.identifiers import display_name, split_name
from ansible_collections.sigeti.dwh.plugins.module_utils.report import explain
from ansible_collections.sigeti.dwh.plugins.module_utils.session.connection import (
    connection_argument_spec,
    module_errors,
    open_session,
)


def validate_ranges(ranges, tables):
    """Check every range names an existing table and one of its columns; return ``[(schema, name, key, low, high)]``.

    ``tables`` maps ``(schema, name)`` to the facts of ``catalog.read_tables``. Raises naming every problem.
    """
    problems, parsed = [], []
    for entry in ranges:
        schema, name = split_name(entry["name"])
        table = tables.get((schema, name))
        if not table or not table["exists"]:
            problems.append("table %s does not exist" % display_name(schema, name))
            continue
        if entry["key"] not in [c["name"] for c in table["columns"]]:
            problems.append("table %s has no column %s" % (display_name(schema, name), entry["key"]))
            continue
        if entry["low"] is None or entry["high"] is None:
            problems.append("range on %s needs both low and high" % display_name(schema, name))
            continue
        parsed.append((schema, name, entry["key"], entry["low"], entry["high"]))
    if problems:
        raise InvalidInput(
            "explain_info: %s. What to do: fix ranges (name: schema.table, key: an existing column)"
            % "; ".join(problems)
        )
    return parsed


def main():
    argument_spec = connection_argument_spec()
    argument_spec.update(
        ranges=dict(
            type="list",
            elements="dict",
            default=[],
            options=dict(
                name=dict(type="str", required=True),
                key=dict(type="str", required=True, no_log=False),
                low=dict(type="raw", required=True),
                high=dict(type="raw", required=True),
            ),
        ),
        analyze=dict(type="bool", default=False),
    )
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)
    holder = []
    with module_errors(module.fail_json, module.exit_json, holder):
        conn, facts = open_session(module.params, holder)
        names = [split_name(r["name"]) for r in module.params["ranges"]]
        tables = {(t["schema"], t["name"]): t for t in catalog.read_tables(conn, names)} if names else {}
        plans = []
        for schema, name, key, low, high in validate_ranges(module.params["ranges"], tables):
            plan, query = server_checks.explain_range(
                conn, schema, name, key, low, high, analyze=module.params["analyze"]
            )
            result = explain.summarize(plan, query)
            result["name"] = display_name(schema, name)
            plans.append(result)
        conn.close()
        server = {k: facts[k] for k in ("version", "version_num", "in_recovery", "lz4", "superuser")}
        server["data_directory"] = facts["settings"].get("data_directory")
        module.exit_json(changed=False, server=server, plans=plans, queries=[])


if __name__ == "__main__":
    main()
