# Copyright: (c) 2026, SIGETI data platform team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Byte counts read from options and written in messages: one rule for the whole collection, pure.

Sizes are powers of 1024 both ways. Options are read as PostgreSQL's ``pg_size_bytes`` reads them (``100MB`` is
100 MiB, as in postgresql.conf); messages name the units as what they are (KiB, MiB, GiB, TiB), like the report
role's pages (plugins/plugin_utils/report_render.py), so a figure reads the same in a message and in the report.
"""

from __future__ import annotations

import re
from typing import Any

from ansible_collections.sigeti.dwh.plugins.module_utils.core.errors import InvalidInput

# Units as PostgreSQL's pg_size_bytes() reads them: powers of 1024, case-insensitive.
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(b|bytes|kb|mb|gb|tb|pb)?\s*$", re.IGNORECASE)
_SIZE_FACTORS = {None: 1, "b": 1, "bytes": 1, "kb": 1024, "mb": 1024**2, "gb": 1024**3, "tb": 1024**4, "pb": 1024**5}

KIB = 1024
# (unit, bytes in it, decimals): the report's rule, one decimal below a GiB, two from there
_BINARY_UNITS = (("KiB", KIB, 1), ("MiB", KIB**2, 1), ("GiB", KIB**3, 2), ("TiB", KIB**4, 2))


def parse_size(value: Any, option: str) -> int:
    """Return bytes from ``100MB``, ``1.5 GB``, ``512kB``, ``0`` or an integer number of bytes.

    Units are powers of 1024, as PostgreSQL's ``pg_size_bytes`` reads them. ``option`` names the module
    option in the error message.
    """
    if isinstance(value, bool):
        value = None
    if isinstance(value, (int, float)) and value >= 0:
        return int(value)
    match = _SIZE.match(str(value)) if value is not None else None
    if not match:
        raise InvalidInput(
            "%s=%r is not a size: write bytes (1048576) or a number with a unit (512kB, 100MB, 2GB, 1TB)"
            % (option, value)
        )
    unit = match.group(2).lower() if match.group(2) else None
    return int(float(match.group(1)) * _SIZE_FACTORS[unit])


def format_bytes(value: float | None) -> str:
    """Return a byte count for a message: ``512 bytes``, ``1.5 KiB``, ``100.0 MiB``, ``1.50 GiB``; ``unknown`` for None.

    Below 1 KiB the exact count; above, the largest binary unit the value reaches (TiB at most).
    """
    if value is None:
        return "unknown"
    if abs(value) < KIB:
        return "%d bytes" % value
    # the largest unit the value reaches: the first one it stays below 1024 of, else TiB
    unit, size, decimals = next((u for u in _BINARY_UNITS if abs(value) < u[1] * KIB), _BINARY_UNITS[-1])
    return "%.*f %s" % (decimals, value / float(size), unit)
