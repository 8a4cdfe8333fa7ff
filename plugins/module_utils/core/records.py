# Copyright: (c) 2026, SIGETI data platform team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Facts that cross files are frozen records: what every record shares (pure).

A record is a ``@dataclasses.dataclass(frozen=True)``: read from the catalog once, never written back (a decision
is a new value). ``as_data`` turns one into the plain data a module result holds.

``MappingAccess`` is the bridge of the restructuring (issue 29): a record that replaced a dict also answers
``record["field"]`` and ``record.get("field")`` until every reader uses attributes; it is removed then.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Dict

# Catalog facts still read as plain dicts (catalog.tables); each becomes a record as the restructuring reaches it.
Facts = Dict[str, Any]


class MappingAccess:
    """Read-only dict-style access to a record's fields (``record["name"]``, ``.get``, ``in``), for readers not yet
    moved to attributes. Writing stays refused: records are frozen."""

    def __getitem__(self, key: str) -> Any:
        try:
            return getattr(self, key)
        except AttributeError:
            raise KeyError(key) from None

    def get(self, key: str, default: Any = None) -> Any:
        """The field ``key``, or ``default`` when the record has none."""
        return getattr(self, key, default)

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and hasattr(self, key)


def as_data(value: Any) -> Any:
    """Plain data (dicts, lists, scalars) of a record, or of lists/tuples/dicts holding records, for a module result."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: as_data(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        return {k: as_data(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [as_data(v) for v in value]
    return value
