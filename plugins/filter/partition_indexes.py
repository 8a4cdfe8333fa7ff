# Copyright: (c) 2026, SIGETI data platform team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filters reading sigeti.dwh.table_info results (used by the verify and report roles; pure, no SQL)."""

from __future__ import annotations

DOCUMENTATION = r"""
name: missing_partition_indexes
short_description: Indexes of a partitioned table that some partition lacks
version_added: 0.1.0
description:
  - Takes one entry of C(sigeti.dwh.table_info)'s C(tables) and returns, for each index defined on the partitioned
    parent, the partitions holding no index with the same method, columns and uniqueness.
options:
  _input:
    description: One table entry returned by C(sigeti.dwh.table_info).
    type: dict
    required: true
author:
  - SIGETI data platform team
"""

EXAMPLES = r"""
- ansible.builtin.assert:
    that: facts.tables[0] | sigeti.dwh.missing_partition_indexes | length == 0
"""

RETURN = r"""
_value:
  description: One entry per missing index, C({index, partition}), sorted.
  type: list
  elements: dict
"""


def _shape(definition):
    """Return (unique, 'USING method (columns) ...') of a CREATE INDEX statement: what a partition's copy shares."""
    head, _sep, tail = definition.partition(" USING ")
    return head.upper().startswith("CREATE UNIQUE"), tail.strip()


def _every_partition(table):
    """The partitions of the tree, those of a sub-partitioned partition nested in its entry (table_info)."""
    for part in table.get("partitions") or []:
        yield part
        yield from _every_partition(part)


def missing_partition_indexes(table):
    """List ``{index, partition}`` for every parent index a partition of ``table`` does not have."""
    if not table or table.get("kind") != "partitioned":
        return []
    indexes = table.get("indexes") or []
    parent = [i for i in indexes if i.get("table") == table.get("name")]
    by_table = {}
    for index in indexes:
        by_table.setdefault(index.get("table"), set()).add(_shape(index.get("definition", "")))
    missing = []
    for index in parent:
        shape = _shape(index.get("definition", ""))
        for part in _every_partition(table):
            if shape not in by_table.get(part.get("name"), set()):
                missing.append({"index": index.get("name"), "partition": part.get("name")})
    return sorted(missing, key=lambda m: (m["index"], m["partition"]))


class FilterModule:
    """sigeti.dwh filters."""

    def filters(self):
        return {"missing_partition_indexes": missing_partition_indexes}
