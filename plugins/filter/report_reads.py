# Copyright: (c) 2026, SIGETI data platform team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What the report role reads, from the declared tables (dwh_tables): one sigeti.dwh.table_info call each (pure)."""

from __future__ import annotations

from ansible.errors import AnsibleFilterError

from ansible_collections.sigeti.dwh.plugins.module_utils.core.identifiers import InvalidName, display_name, split_name
from ansible_collections.sigeti.dwh.plugins.module_utils.migration.sql import derived_name

DOCUMENTATION = r"""
name: report_reads
short_description: The sigeti.dwh.table_info reads of the report role, from the declared tables
version_added: 0.2.0
description:
  - One read per declared table and per extra table, in that order (an absent one is reported missing, the others
    are still read).
  - One per table declaring a C(migrate) that keeps its original (C(online), C(offline); not C(drop_source)), for
    C(<table>_unpartitioned), and one per C(archive_schema) of a C(retention.action=archive), so that the disk they
    take counts in the report's sizes. These are absent until a migration or an archiving ran, which is no error.
  - Each item has C(label), C(role) (declared, extra, kept, archive), C(of) (the declared table(s) it belongs to),
    C(tables), C(schemas), C(compression) and C(count_default_rows), the options of table_info.
options:
  _input:
    description: The declared tables (C(dwh_tables)).
    type: list
    elements: dict
    required: true
  extra:
    description: Other tables reported (C(dwh_report_extra_tables)).
    type: list
    elements: str
    default: []
  compression:
    description: table_info's C(compression) for the declared and extra tables (the others are not measured).
    type: str
    default: sample
author:
  - SIGETI data platform team
"""

EXAMPLES = r"""
- sigeti.dwh.table_info:
    tables: "{{ item.tables }}"
    schemas: "{{ item.schemas }}"
    compression: "{{ item.compression }}"
    count_default_rows: "{{ item.count_default_rows }}"
  loop: "{{ dwh_tables | sigeti.dwh.report_reads(dwh_report_extra_tables, dwh_report_compression) }}"
  loop_control:
    label: "{{ item.label }}"
"""

RETURN = r"""
_value:
  description: The reads, in order.
  type: list
  elements: dict
"""

KEEPS_ORIGINAL = ("online", "offline")


def _read(label, role, of=None, tables=(), schemas=(), compression="none"):
    return {
        "label": label,
        "role": role,
        "of": of,
        "tables": list(tables),
        "schemas": list(schemas),
        "compression": compression,
        "count_default_rows": role in ("declared", "extra"),
    }


def kept_original(table):
    """``schema.<table>_unpartitioned`` (quoted as needed) when ``table`` declares a migration that keeps it."""
    if table.get("migrate") not in KEEPS_ORIGINAL or table.get("drop_source"):
        return None
    try:
        schema, name = split_name(str(table["name"]))
    except InvalidName:
        return None
    return display_name(schema, derived_name(name, "_unpartitioned"))


def report_reads(declared, extra=None, compression="sample"):
    """The report role's reads: declared tables, extra tables, kept originals, archive schemas."""
    if not isinstance(declared, list):
        raise AnsibleFilterError("report_reads: dwh_tables must be a list of tables, not %r" % (declared,))
    tables = [t for t in declared if isinstance(t, dict) and t.get("name")]
    reads = [_read(str(t["name"]), "declared", tables=[t["name"]], compression=compression) for t in tables]
    reads += [_read(str(name), "extra", tables=[name], compression=compression) for name in extra or []]
    for table in tables:
        original = kept_original(table)
        if original:
            reads.append(_read(original, "kept", of=table["name"], tables=[original]))
    archives = {}
    for table in tables:
        retention = table.get("retention") or {}
        if retention.get("action") == "archive" and retention.get("archive_schema"):
            archives.setdefault(str(retention["archive_schema"]), []).append(table["name"])
    for schema, owners in archives.items():
        reads.append(_read("schema %s" % schema, "archive", of=owners, schemas=[schema]))
    return reads


class FilterModule:
    """sigeti.dwh filters."""

    def filters(self):
        return {"report_reads": report_reads}
