# Copyright: (c) 2026, SIGETI data platform team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Turn the declared tables (dwh_tables) into sigeti.dwh.explain_info ranges (pure)."""

from __future__ import annotations

DOCUMENTATION = r"""
name: range_queries
short_description: The guide's date-range queries declared in dwh_tables, as explain_info ranges
version_added: 0.1.0
description:
  - Takes the list of declared tables (C(dwh_tables)) and returns one C({name, key, low, high}) per table whose
    C(verify) sets C(low) and C(high), ready for the O(sigeti.dwh.explain_info#module:ranges) option.
options:
  _input:
    description: The declared tables.
    type: list
    elements: dict
    required: true
author:
  - SIGETI data platform team
"""

EXAMPLES = r"""
- sigeti.dwh.explain_info:
    ranges: "{{ dwh_tables | sigeti.dwh.range_queries }}"
"""

RETURN = r"""
_value:
  description: One range per table with C(verify.low) and C(verify.high).
  type: list
  elements: dict
"""


def range_queries(tables):
    """Return ``[{name, key, low, high}]`` for every declared table whose ``verify`` has ``low`` and ``high``."""
    ranges = []
    for table in tables or []:
        verify = table.get("verify") or {}
        if verify.get("low") is None or verify.get("high") is None:
            continue
        ranges.append({"name": table["name"], "key": table["key"], "low": verify["low"], "high": verify["high"]})
    return ranges


class FilterModule:
    """sigeti.dwh filters."""

    def filters(self):
        return {"range_queries": range_queries}
