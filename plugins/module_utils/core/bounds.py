# Copyright: (c) 2026, SIGETI data platform team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Partition bounds as PostgreSQL prints them, parsed into typed values; coverage of ranges (pure)."""

from __future__ import annotations

import datetime
import re
from typing import Any, Iterable

MINVALUE = "MINVALUE"
MAXVALUE = "MAXVALUE"

# ---------------------------------------------------------------------------------------------
# Pure parsers
# ---------------------------------------------------------------------------------------------

_TOKEN = re.compile(
    r"\s*(?:(?P<string>'(?:[^']|'')*')|(?P<number>-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?)"
    r"|(?P<word>[A-Za-z_]+)|(?P<punct>[(),]))"
)


def _tokens(text):
    pos = 0
    out = []
    text = text.strip()
    while pos < len(text):
        match = _TOKEN.match(text, pos)
        if not match:
            raise ValueError("cannot parse partition bound %r at %r" % (text, text[pos:]))
        pos = match.end()
        if match.group("string") is not None:
            out.append(("string", match.group("string")[1:-1].replace("''", "'")))
        elif match.group("number") is not None:
            raw = match.group("number")
            out.append(("number", int(raw) if re.match(r"^-?\d+$", raw) else float(raw)))
        elif match.group("word") is not None:
            out.append(("word", match.group("word")))
        else:
            out.append(("punct", match.group("punct")))
    return out


def _literal_list(tokens, start):
    """Read ``( v, v, ... )`` from tokens[start]; return (values, next index)."""
    if tokens[start] != ("punct", "("):
        raise ValueError("expected '(' in partition bound")
    values = []
    i = start + 1
    while True:
        kind, value = tokens[i]
        if kind == "word":
            upper = value.upper()
            value = {"NULL": None, "TRUE": True, "FALSE": False}.get(upper, upper)
        values.append(value)
        i += 1
        kind, value = tokens[i]
        if (kind, value) == ("punct", ")"):
            return values, i + 1
        if (kind, value) != ("punct", ","):
            raise ValueError("expected ',' or ')' in partition bound")
        i += 1


# The bound of a single-column range partition as pg_get_expr prints it, read without the tokenizer (one match per
# partition: a read of 3,650 partitions spent 0.3 s tokenizing). Anything else goes through ``_tokens``.
_VALUE = r"(?:'((?:[^']|'')*)'|(-?\d+)|(MINVALUE|MAXVALUE))"
SIMPLE_RANGE = re.compile(r"^FOR VALUES FROM \(" + _VALUE + r"\) TO \(" + _VALUE + r"\)$")


def _simple_value(text, number, word):
    if text is not None:
        return text.replace("''", "'")
    if number is not None:
        return int(number)
    return word


def parse_partition_bound(expr: str | None) -> dict[str, Any] | None:
    """Parse ``pg_get_expr(relpartbound)`` into a dict.

    Returns ``{"kind": "default"}``, ``{"kind": "range", "low": [...], "high": [...]}``,
    ``{"kind": "list", "values": [...]}`` or ``{"kind": "hash", "modulus": m, "remainder": r}``.
    Range values stay raw (str/int) here; ``typed_value`` converts them with the key's type.
    """
    if expr is None:
        return None
    text = expr.strip()
    if text.upper() == "DEFAULT":
        return {"kind": "default"}
    simple = SIMPLE_RANGE.match(text)
    if simple:
        groups = simple.groups()
        return {"kind": "range", "low": [_simple_value(*groups[:3])], "high": [_simple_value(*groups[3:])]}
    tokens = _tokens(text)
    words = [v.upper() for k, v in tokens[:3] if k == "word"]
    if words[:3] == ["FOR", "VALUES", "FROM"]:
        low, i = _literal_list(tokens, 3)
        if tokens[i] != ("word", "TO") and tokens[i][1].upper() != "TO":
            raise ValueError("expected TO in partition bound %r" % expr)
        high = _literal_list(tokens, i + 1)[0]
        return {"kind": "range", "low": low, "high": high}
    if words[:3] == ["FOR", "VALUES", "IN"]:
        values = _literal_list(tokens, 3)[0]
        return {"kind": "list", "values": values}
    if words[:3] == ["FOR", "VALUES", "WITH"]:
        parts = {tokens[j][1].lower(): tokens[j + 1][1] for j in range(4, len(tokens) - 1) if tokens[j][0] == "word"}
        return {"kind": "hash", "modulus": parts.get("modulus"), "remainder": parts.get("remainder")}
    raise ValueError("unknown partition bound %r" % expr)


_TZ_SHORT = re.compile(r"([+-]\d{2})$")


def typed_value(raw: Any, type_name: str | None) -> Any:
    """Return one raw bound value converted to the key column's Python type (MINVALUE/MAXVALUE kept as is)."""
    if raw in (MINVALUE, MAXVALUE) or raw is None:
        return raw
    base = (type_name or "").split("(")[0].strip()
    if base == "date":
        return datetime.date.fromisoformat(str(raw))
    if base.startswith("timestamp"):
        text = _TZ_SHORT.sub(r"\1:00", str(raw).replace("T", " "))
        return datetime.datetime.fromisoformat(text)
    if base in ("integer", "bigint", "smallint"):
        return int(raw)
    if base == "numeric" and not isinstance(raw, str):
        return raw
    return raw


def json_value(value: Any) -> Any:
    """Return a typed bound value as module results show it (dates as ISO text, ints as ints)."""
    if isinstance(value, datetime.datetime):
        return value.isoformat(sep=" ")
    if isinstance(value, datetime.date):
        return value.isoformat()
    return value


def parse_options(options: Iterable[str] | None) -> dict[str, str]:
    """Return ``reloptions`` (``['fillfactor=90', ...]``) as a dict of strings."""
    result = {}
    for item in options or []:
        key, _sep, value = item.partition("=")
        result[key] = value
    return result


def coverage(ranges: Iterable[tuple[Any, Any, str]]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Find gaps and overlaps in sorted single-column ranges.

    ``ranges`` is a list of ``(low, high, name)`` with comparable typed values. Returns
    ``(gaps, overlaps)``: lists of ``{"from", "to"}`` and ``{"partitions", "from", "to"}``.
    """
    gaps, overlaps = [], []
    ordered = sorted(
        (r for r in ranges if r[0] not in (MINVALUE, MAXVALUE) or r[1] not in (MINVALUE, MAXVALUE)),
        key=lambda r: (r[0] != MINVALUE, r[0] if r[0] not in (MINVALUE, MAXVALUE) else 0),
    )
    for previous, current in zip(ordered, ordered[1:]):
        prev_high, cur_low = previous[1], current[0]
        if prev_high == MAXVALUE or cur_low == MINVALUE:
            overlaps.append({"partitions": [previous[2], current[2]], "from": cur_low, "to": prev_high})
        elif prev_high < cur_low:
            gaps.append({"from": prev_high, "to": cur_low})
        elif prev_high > cur_low:
            overlaps.append({"partitions": [previous[2], current[2]], "from": cur_low, "to": prev_high})
    return gaps, overlaps
