#!/usr/bin/python
# Copyright: (c) 2026, SIGETI data platform team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: table_info
short_description: Report partitions, sizes, compression and vacuum state of warehouse tables
version_added: 0.1.0
description:
  - Reads, without changing anything, what a DBA needs to know about data warehouse tables
    before and after partitioning, compression and vacuum maintenance.
  - For a partitioned table, sizes are summed over the whole partition tree (the parent itself reads 0),
    bounds are parsed into typed values, and coverage gaps, overlaps and periods covered ahead of today
    are computed.
  - Catalog round trips do not grow with the number of partitions.
author:
  - SIGETI data platform team (@sigeti)
extends_documentation_fragment:
  - sigeti.dwh.connection
options:
  tables:
    description: Tables to report on, as C(schema.table). Quote mixed-case parts (C('"Sales"."Q1"')).
    type: list
    elements: str
    default: []
  schemas:
    description: Report on every top-level table (plain or partitioned) of these schemas, in addition to O(tables).
    type: list
    elements: str
    default: []
  compression:
    description:
      - How to measure the compression method of stored values (C(pg_column_compression)).
      - V(sample) reads a C(TABLESAMPLE SYSTEM) sample of about 2000 pages (exact for small tables),
        V(exact) reads every row, V(none) skips the measurement.
    type: str
    choices: [sample, exact, none]
    default: sample
  server_only:
    description:
      - Report only the server facts (version, standby state, lz4, extensions, superuser, data directory) and no
        table, for pre-flight checks. O(tables) and O(schemas) are then ignored.
    type: bool
    default: false
  count_default_rows:
    description: Count the rows of each default partition exactly (they block the creation of new partitions).
    type: bool
    default: true
  backup_set:
    description:
      - Also return RV(backup_set), the relations a table-scoped C(pg_dump) of O(tables) and O(schemas) must hold
        to restore into an empty database (read from the catalog only).
      - They are the tables, their partitions (default included), the views and materialized views that read them,
        and what a restore of all these needs (the tables their foreign keys point at, the relations the views read,
        the sequences their columns own or call). Tables whose foreign keys point at them are not included.
    type: bool
    default: false
attributes:
  check_mode:
    description: Reads only; check mode runs the same reads.
    support: full
  diff_mode:
    description: Nothing changes, so there is no diff.
    support: none
notes:
  - Needs only C(SELECT) on the tables (for the compression measurement and default-partition count) and
    access to the catalog.
seealso:
  - module: sigeti.dwh.partitioned_table
"""

EXAMPLES = r"""
- name: Report on SIGETI's fact tables
  sigeti.dwh.table_info:
    login_host: db.example.org
    login_user: dwh_admin
    login_password: "{{ vault_dwh_password }}"
    login_db: sigeti_node_db
    tables:
      - dwh_facts.fait_attributions
      - dwh_facts.fait_factures
  register: facts

- name: Every table of the dimensions and marts, without reading rows
  sigeti.dwh.table_info:
    login_db: sigeti_node_db
    schemas: [dwh_dim, dwh_marts]
    compression: none
"""

RETURN = r"""
server:
  description: Server facts read once per connection (C(data_directory) is null unless the role may read it).
  returned: always
  type: dict
  sample: {version: "17.10", version_num: 170010, in_recovery: false, lz4: true, extensions: [plpgsql], superuser: false, data_directory: null}
tables:
  description: One entry per table, in the order asked.
  returned: always
  type: list
  elements: dict
  contains:
    schema: {description: Schema name., type: str, returned: always}
    name: {description: Table name., type: str, returned: always}
    kind: {description: "V(plain), V(partitioned) or V(partition).", type: str, returned: always}
    sizes:
      description: Bytes of heap, TOAST, indexes and their total, summed over the partition tree.
      type: dict
      returned: always
      sample: {heap_bytes: 8192, toast_bytes: 0, index_bytes: 16384, total_bytes: 24576}
    tablespaces:
      description:
        - Bytes of the partition tree per tablespace (heap and TOAST where each table is, each index where it is;
          the database's default tablespace by its name). Each partition in RV(tables[].partitions) names its own
          C(tablespace) (see O(sigeti.dwh.partitioned_table#module:tiers)).
      type: dict
      returned: always
      sample: {pg_default: 24576, cold: 1048576}
    rows_estimate: {description: Row estimate (sum of C(reltuples) of the leaves)., type: int, returned: always}
    partition_key:
      description: Strategy, key columns and their types; null for a plain table.
      type: dict
      returned: always
    partitions:
      description:
        - The direct partitions with their bounds (typed low/high), size and rows.
        - When the bounds are epoch seconds or milliseconds (RV(tables[].epoch_format)), each also holds C(low_time)
          and C(high_time), the instants as the session shows them (C(2024-03-31 00:00:00+01:00)).
        - A partition that is itself partitioned holds its own partitions the same way (C(partitions), nested),
          their count (C(partition_count)), and its C(sizes) and C(rows) summed over its sub-tree; the direct
          partitions' sizes add up to the table's.
      type: list
      elements: dict
      returned: when the table is partitioned
    partition_count: {description: Direct partitions of the table., type: int, returned: when partitioned}
    epoch_format:
      description:
        - V(epoch) or V(epoch_ms) when the table is partitioned by one integer or bigint column and every bound of its
          direct partitions is a midnight of the session's C(TimeZone) as epoch seconds or milliseconds (the bounds
          C(sigeti.dwh.partitioned_table) writes for those key formats), else null.
        - The current partition, periods ahead and C(covered_until) are then computed from those local dates.
      type: str
      returned: when partitioned
    default_partition: {description: Name of the default partition or null., type: str, returned: when partitioned}
    default_rows: {description: Rows sitting in the default partition., type: int, returned: when partitioned}
    gaps: {description: Key ranges no partition covers., type: list, elements: dict, returned: when partitioned}
    overlaps: {description: Partitions whose ranges overlap (should never happen)., type: list, elements: dict, returned: when partitioned}
    current_partition: {description: The partition holding today's date., type: str, returned: when partitioned}
    periods_ahead: {description: Contiguous partitions after the current one., type: int, returned: when partitioned}
    covered_until: {description: First date not covered by the contiguous run from today., type: str, returned: when partitioned}
    columns:
      description: Columns with type, configured compression (V(default) means the session's default_toast_compression) and storage.
      type: list
      elements: dict
      returned: always
    compression_measured:
      description: Per toastable column, values stored pglz / lz4 / uncompressed / NULL and their widths, sampled or exact.
      type: dict
      returned: unless O(compression=none)
    reloptions: {description: Storage parameters of the table., type: dict, returned: always}
    vacuum:
      description: Per leaf relation, dead tuples, changes since analyze, last (auto)vacuum/analyze and autovacuum trigger points.
      type: list
      elements: dict
      returned: always
    indexes: {description: Indexes of every relation of the tree with C(idx_scan) and size., type: list, elements: dict, returned: always}
    unused_indexes: {description: Non-unique indexes never scanned since statistics were reset., type: list, elements: str, returned: always}
    invalid_indexes:
      description:
        - Indexes marked invalid (C(pg_index.indisvalid) false), typically left by a cancelled C(CREATE INDEX CONCURRENTLY).
        - They serve no query and enforce no uniqueness; C(partitioned_table) drops and rebuilds them.
      type: list
      elements: str
      returned: always
    migration:
      description:
        - The migration of this table started and not finished (read from C(sigeti_dwh.migration_state)), or null.
        - A migration started more than a day ago also gives a warning (from every module).
      type: dict
      returned: always
      contains:
        table: {description: The table., type: str}
        mode: {description: 'online, offline or attach.', type: str}
        phase: {description: 'The phase it stopped in or is running: copy, build, catchup, swap or post.', type: str}
        rows_copied: {description: 'Rows copied so far (committed with each batch of the online copy).', type: int}
        rows_total: {description: 'Rows to copy, estimated from the statistics when the copy started (null when unknown).', type: int}
        copy_percent: {description: 'Share of the heap pages copied by an online migration (100 after its copy, null for offline and attach).', type: float}
        rows_per_second: {description: 'Copy rate of the run copying, as of the last batch committed (null outside the online copy).', type: int}
        eta_seconds: {description: 'Seconds of copy left at that rate, as of the last batch committed (null outside the online copy).', type: int}
        started_at: {description: When it started., type: str}
        updated_at: {description: When its state last changed., type: str}
        age_seconds: {description: Seconds since it started., type: int}
        idle_seconds: {description: Seconds since its state last changed., type: int}
    dependents: {description: Views and materialized views that read the table., type: list, elements: dict, returned: always}
backup_set:
  description: The relations a table-scoped dump of the tables must hold, in the order they were found, each with why.
  returned: when O(backup_set=true)
  type: list
  elements: dict
  contains:
    schema: {description: Schema name., type: str}
    name: {description: Relation name., type: str}
    kind: {description: "V(table), V(partitioned table), V(view), V(materialized view) or V(sequence).", type: str}
    reason: {description: "Why it is in the dump (V(touched by this run), C(partition of ...), C(referenced by foreign key ...))", type: str}
    bytes: {description: Total bytes on disk (0 for a partitioned table or a view)., type: int}
  sample:
    - {schema: dwh_dim, name: dim_lot, kind: table, bytes: 65536,
       reason: "referenced by foreign key fait_attributions_lot_id_fkey of dwh_facts.fait_attributions"}
"""

import datetime

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.sigeti.dwh.plugins.module_utils.catalog import backup as catalog_backup
from ansible_collections.sigeti.dwh.plugins.module_utils.catalog import tables as catalog
from ansible_collections.sigeti.dwh.plugins.module_utils.core.errors import InvalidInput
from ansible_collections.sigeti.dwh.plugins.module_utils.core.identifiers import display_name
from ansible_collections.sigeti.dwh.plugins.module_utils.report import inflight
from ansible_collections.sigeti.dwh.plugins.module_utils.report.table import epoch_days_span, table_report
from ansible_collections.sigeti.dwh.plugins.module_utils.session.connection import (
    connection_argument_spec,
    module_errors,
    open_session,
)


def report_tables(conn, names, measure, count_default_rows, settings):
    """Read facts for ``names`` and build each table's report; fail naming every absent table."""
    facts = catalog.read_tables(conn, names) if names else []
    missing = [display_name(t["schema"], t["name"]) for t in facts if not t["exists"]]
    if missing:
        raise InvalidInput(
            "table(s) %s do not exist in database %s: check the names (schema.table; quote mixed-case parts)"
            % (", ".join(missing), conn.info.dbname)
        )
    today = datetime.date.today()
    reports = []
    for table in facts:
        default = next((p for p in table["partitions"] if (p["bound"] or {}).get("kind") == "default"), None)
        default_rows = (
            catalog.count_rows(conn, default["schema"], default["name"]) if default and count_default_rows else None
        )
        compression = None
        if measure != "none":
            toastable = [c["name"] for c in table["columns"] if c["toastable"]]
            compression = catalog.column_compression(
                conn,
                table["schema"],
                table["name"],
                toastable,
                relpages=sum(e["relpages"] or 0 for e in table["relations"].values()),
                exact=measure == "exact",
            )
        span = epoch_days_span(table) if table["root"]["relkind"] == "p" else None
        days = catalog.time_zone_days(conn, *span) if span else None
        reports.append(table_report(table, settings, today, default_rows, compression, days))
    return reports


def main():
    argument_spec = connection_argument_spec()
    argument_spec.update(
        tables=dict(type="list", elements="str", default=[]),
        schemas=dict(type="list", elements="str", default=[]),
        compression=dict(type="str", choices=["sample", "exact", "none"], default="sample"),
        count_default_rows=dict(type="bool", default=True),
        server_only=dict(type="bool", default=False),
        backup_set=dict(type="bool", default=False),
    )
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)
    holder = []
    with module_errors(module.fail_json, module.exit_json, holder):
        conn, facts = open_session(module.params, holder)
        server = {k: facts[k] for k in ("version", "version_num", "in_recovery", "lz4", "extensions", "superuser")}
        server["data_directory"] = facts["settings"].get("data_directory")
        if module.params["server_only"]:
            conn.close()
            module.exit_json(changed=False, server=server, tables=[], queries=[])
        names = catalog.requested_tables(conn, module.params["tables"], module.params["schemas"])
        reports = report_tables(
            conn, names, module.params["compression"], module.params["count_default_rows"], facts["settings"]
        )
        migrations, unreadable = catalog.migrations_in_flight(conn, names)
        for report in reports:
            mine = [m for m in migrations if (m["schema_name"], m["table_name"]) == (report["schema"], report["name"])]
            report["migration"] = inflight.describe(mine[0]) if mine else None
        for warning in inflight.stale_warnings(migrations):
            module.warn(warning)
        if unreadable:
            module.warn(
                "in-flight migrations not reported: %s (grant USAGE on schema sigeti_dwh and SELECT)" % unreadable
            )
        extra = {"backup_set": catalog_backup.backup_set(conn, names)} if module.params["backup_set"] else {}
        conn.close()
        module.exit_json(changed=False, server=server, tables=reports, queries=[], **extra)


if __name__ == "__main__":
    main()
