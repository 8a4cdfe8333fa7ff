# Copyright: (c) 2026, SIGETI data platform team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Turn catalog facts about one table into the report ``table_info`` returns (pure)."""

from __future__ import annotations

import datetime
from typing import Any, Iterable, NamedTuple, Sequence

from ansible_collections.sigeti.dwh.plugins.module_utils.catalog.tables import (
    MAXVALUE,
    MINVALUE,
    coverage,
    json_value,
    tree_totals,
)
from ansible_collections.sigeti.dwh.plugins.module_utils.core.periods import (
    EPOCH_DAY,
    KEY_FORMATS,
    TimeZoneDays,
    plausible_epoch,
)
from ansible_collections.sigeti.dwh.plugins.module_utils.vacuum.options import autovacuum_triggers


class PeriodsAhead(NamedTuple):
    """``periods_ahead``'s answer; a tuple, so ``current, ahead, until = periods_ahead(...)`` reads as before."""

    current: str | None  # name of the partition holding today
    ahead: int  # contiguous partitions after it
    covered_until: str | None  # ISO date where the last of them ends


def bound_as_date(value: Any) -> datetime.date | None:
    """Return a bound as a calendar date when it is one (date, timestamp, or integer YYYYMMDD / YYYYMM), else None."""
    if isinstance(value, datetime.datetime):
        return value.date()
    if isinstance(value, datetime.date):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        text = str(value)
        try:
            if len(text) == 8:
                return datetime.date(int(text[:4]), int(text[4:6]), int(text[6:]))
            if len(text) == 6:
                return datetime.date(int(text[:4]), int(text[4:]), 1)
        except ValueError:
            return None
    return None


def periods_ahead(ranges: Sequence[tuple[Any, Any, str]], today: datetime.date) -> PeriodsAhead:
    """Count the contiguous partitions after the one holding ``today``.

    ``ranges`` is ``[(low, high, name)]`` of typed bounds. Returns ``(current_name, count, covered_until)``;
    ``(None, 0, None)`` when no partition holds today or the bounds are not dates.
    """
    dated = []
    for low, high, name in ranges:
        low_date, high_date = bound_as_date(low), bound_as_date(high)
        if low_date is None or high_date is None:
            continue
        dated.append((low_date, high_date, name))
    dated.sort()
    current = None
    for index, (low, high, _name) in enumerate(dated):
        if low <= today < high:
            current = index
            break
    if current is None:
        return PeriodsAhead(None, 0, None)
    count, edge = 0, dated[current][1]
    for low, high, _name in dated[current + 1 :]:
        if low != edge:
            break
        count += 1
        edge = high
    return PeriodsAhead(dated[current][2], count, edge.isoformat())


def _stamp(value: Any) -> Any:
    return value.isoformat(sep=" ") if isinstance(value, datetime.datetime) else value


def _stats(entry: dict[str, Any]) -> dict[str, Any]:
    return {k: _stamp(v) for k, v in entry["stats"].items()}


def _sizes(heap: float, toast: float, index: float) -> dict[str, float]:
    return {"heap_bytes": heap, "toast_bytes": toast, "index_bytes": index, "total_bytes": heap + toast + index}


def partition_report(entry: dict[str, Any]) -> dict[str, Any]:
    """Return one partition's report: bounds as JSON values, size and rows."""
    bound = entry["bound"] or {}
    return {
        "schema": entry["schema"],
        "name": entry["name"],
        "level": entry["level"],
        # with parent_oid, tells a leaf from a partition that is itself partitioned (the report sums leaves)
        "oid": entry["oid"],
        "parent_oid": entry["parent_oid"],
        "is_default": bound.get("kind") == "default",
        "bound": entry["bound_expr"],
        "low": json_value(entry.get("low")),
        "high": json_value(entry.get("high")),
        "rows": max(int(entry["reltuples"] or 0), 0) if entry["relkind"] == "r" else None,
        "sizes": _sizes(entry["heap_bytes"], entry["toast_bytes"], entry["index_bytes"]),
        "tablespace": entry.get("tablespace"),
        "reloptions": entry["reloptions"],
    }


def table_report(
    table: dict[str, Any],
    settings: dict[str, str],
    today: datetime.date,
    default_rows: int | None = None,
    compression: dict[str, Any] | None = None,
    days: TimeZoneDays | None = None,
) -> dict[str, Any]:
    """Return the per-table report of ``table_info``, built from ``catalog.read_table`` facts.

    ``settings`` are the server's autovacuum settings, ``today`` a date, ``default_rows`` the exact count
    of rows in the default partition (when there is one), ``compression`` the measured shares, ``days`` the
    session's local midnights over the table's bounds when they may be epochs (``epoch_days_span``).
    """
    root = table["root"]
    totals = tree_totals(table)
    if root["relkind"] == "p":
        kind = "partitioned"
    elif root["is_partition"]:
        kind = "partition"
    else:
        kind = "plain"
    report = {
        "schema": table["schema"],
        "name": table["name"],
        "kind": kind,
        "owner": root["owner"],
        "comment": root["comment"],
        "sizes": _sizes(totals["heap_bytes"], totals["toast_bytes"], totals["index_bytes"]),
        "rows_estimate": int(totals["reltuples"]),
        "partition_key": root["partition_key"],
        "reloptions": root["reloptions"],
        "toast_reloptions": root["toast_reloptions"],
        "columns": [
            {
                "name": c["name"],
                "type": c["type"],
                "not_null": c["not_null"],
                "compression": c["compression"],
                "storage": c["storage"],
                "toastable": c["toastable"],
            }
            for c in root["columns"]
        ],
        "compression_measured": compression,
        "indexes": [],
        "unused_indexes": [],
        "invalid_indexes": [],
        "dependents": table["dependents"],
    }
    leaves = [e for e in table["relations"].values() if e["relkind"] == "r"]
    for entry in table["relations"].values():
        for index in entry["indexes"]:
            item = {
                "table": entry["name"],
                "name": index["name"],
                "definition": index["definition"],
                "valid": index["is_valid"],
                "unique": index["is_unique"],
                "primary": index["is_primary"],
                "idx_scan": index["idx_scan"],
                "bytes": index["bytes"],
            }
            report["indexes"].append(item)
            if not index["is_valid"]:  # a cancelled concurrent build: it serves no query and enforces nothing
                report["invalid_indexes"].append(index["name"])
            if entry["relkind"] == "r" and index["idx_scan"] == 0 and not (index["is_unique"] or index["is_primary"]):
                report["unused_indexes"].append(index["name"])
    report["tablespaces"] = tablespace_bytes(table["relations"].values())
    report["vacuum"] = [vacuum_report(e, settings) for e in sorted(leaves, key=lambda e: (e["level"], e["name"]))]
    report["stats"] = _stats(root)
    if kind == "partitioned":
        report.update(partitioned_report(table, today, default_rows, days))
    return report


def tablespace_bytes(relations: Iterable[dict[str, Any]]) -> dict[str, int]:
    """Bytes of a table's tree per tablespace: each relation's heap and TOAST where it is, each index where it is
    (a TOAST table follows its table: ALTER TABLE ... SET TABLESPACE moves both)."""
    found: dict[str, int] = {}
    for entry in relations:
        if entry.get("tablespace") is not None and entry["relkind"] == "r":
            found[entry["tablespace"]] = found.get(entry["tablespace"], 0) + int(
                (entry["heap_bytes"] or 0) + (entry["toast_bytes"] or 0)
            )
        for index in entry["indexes"]:
            if index.get("tablespace") is not None:
                found[index["tablespace"]] = found.get(index["tablespace"], 0) + int(index["bytes"] or 0)
    return dict(sorted(found.items()))


def vacuum_report(entry: dict[str, Any], settings: dict[str, str]) -> dict[str, Any]:
    """Return dead tuples, changes since analyze and autovacuum trigger points of one leaf relation (and its TOAST)."""
    triggers = autovacuum_triggers(entry["reloptions"], settings, entry["reltuples"])
    toast_options = {
        "autovacuum_" + k.split("autovacuum_", 1)[1]: v
        for k, v in entry["toast_reloptions"].items()
        if k.startswith("autovacuum_")
    }
    result = {
        "name": entry["name"],
        "n_live_tup": entry["stats"]["n_live_tup"],
        "n_dead_tup": entry["stats"]["n_dead_tup"],
        "n_mod_since_analyze": entry["stats"]["n_mod_since_analyze"],
        "last_vacuum": _stamp(entry["stats"]["last_vacuum"]),
        "last_autovacuum": _stamp(entry["stats"]["last_autovacuum"]),
        "last_analyze": _stamp(entry["stats"]["last_analyze"]),
        "last_autoanalyze": _stamp(entry["stats"]["last_autoanalyze"]),
        "vacuum_trigger": triggers["vacuum"],
        "analyze_trigger": triggers["analyze"],
        "autovacuum_enabled": triggers["enabled"],
    }
    if entry["toast_oid"]:
        toast = autovacuum_triggers(toast_options, settings, entry["toast_stats"]["reltuples"], toast=True)
        result["toast"] = {
            "n_dead_tup": entry["toast_stats"]["n_dead_tup"],
            "n_live_tup": entry["toast_stats"]["n_live_tup"],
            "vacuum_trigger": toast["vacuum"],
        }
    return result


def nested_partitions(table: dict[str, Any]) -> list[dict[str, Any]]:
    """Return the table's direct partitions as ``partition_report`` entries; one that is itself partitioned holds
    its own (``partitions``, ``partition_count``) and its sizes and rows summed over its sub-tree, so the direct
    partitions' sizes add up to the table's. One pass over the tree, deepest level first."""
    reports = {e["oid"]: partition_report(e) for e in table["partitions"]}
    children: dict[int, list[dict[str, Any]]] = {}
    for entry in table["partitions"]:
        children.setdefault(entry["parent_oid"], []).append(reports[entry["oid"]])
    for entry in sorted(table["partitions"], key=lambda e: -e["level"]):
        if entry["relkind"] != "p":
            continue
        report = reports[entry["oid"]]
        below = children.get(entry["oid"], [])
        sizes = [report["sizes"]] + [child["sizes"] for child in below]
        report["sizes"] = _sizes(*(sum(s[k] or 0 for s in sizes) for k in ("heap_bytes", "toast_bytes", "index_bytes")))
        report["rows"] = sum(child["rows"] or 0 for child in below)
        report["partitions"] = below
        report["partition_count"] = len(below)
    return children.get(table["oid"], [])


EPOCH_FORMATS = ("epoch", "epoch_ms")


def _epoch_candidates(table: dict[str, Any]) -> list[Any]:
    """The finite bounds of the direct range partitions when the table is partitioned by one integer column."""
    key = table["root"].get("partition_key") or {}
    if key.get("strategy") != "range" or [t.split("(")[0] for t in key.get("types") or []] not in (
        ["integer"],
        ["bigint"],
    ):
        return []
    return [
        value
        for e in table["partitions"]
        if e["parent_oid"] == table["oid"] and "low" in e
        for value in (e["low"], e["high"])
        if value not in (MINVALUE, MAXVALUE)
    ]


def epoch_days_span(table: dict[str, Any]) -> tuple[datetime.date, datetime.date] | None:
    """The days whose local midnights tell whether the table's integer bounds are epochs (``epoch_format``), or None
    when no bound can be one: read them with ``catalog.time_zone_days``."""
    days = [
        EPOCH_DAY + datetime.timedelta(days=value // KEY_FORMATS[name].epoch_unit // 86400)
        for value in _epoch_candidates(table)
        for name in EPOCH_FORMATS
        if plausible_epoch(name, value)
    ]
    if not days:
        return None
    return min(days) - datetime.timedelta(days=2), max(days) + datetime.timedelta(days=2)


def epoch_format(table: dict[str, Any], days: TimeZoneDays | None) -> str | None:
    """``epoch`` or ``epoch_ms`` when every finite bound of the table's direct range partitions is a local midnight of
    ``days`` in seconds or milliseconds (the bounds ``partitioned_table`` writes for those key formats), else None."""
    values = _epoch_candidates(table)
    if days is None or not values:
        return None
    for name in EPOCH_FORMATS:
        unit = KEY_FORMATS[name].epoch_unit
        if all(plausible_epoch(name, v) and not v % unit and days.day(v // unit) for v in values):
            return name
    return None


def epoch_local_time(value: Any, key_format: str | None, days: TimeZoneDays | None) -> str | None:
    """An epoch bound as the session shows that instant: ``2024-03-31 00:00:00+01:00``; None when it is no epoch bound."""
    if key_format is None or days is None or not isinstance(value, int):
        return None
    unit = KEY_FORMATS[key_format].epoch_unit
    day = days.day(value // unit) if not value % unit else None
    return None if day is None else "%s 00:00:00%s" % (day.isoformat(), days.utc_offset_text(day))


def _epoch_dates(ranges, key_format, days):
    if key_format is None:
        return ranges
    unit = KEY_FORMATS[key_format].epoch_unit
    return [(days.day(low // unit), days.day(high // unit), name) for low, high, name in ranges]


def partitioned_report(
    table: dict[str, Any], today: datetime.date, default_rows: int | None, days: TimeZoneDays | None = None
) -> dict[str, Any]:
    """Return the partitioned part of the report: partition list (sub-partitions nested in theirs), default partition,
    coverage gaps/overlaps and periods covered ahead of today. ``days`` are the session's local midnights over the
    bounds (``epoch_days_span``): with them, epoch bounds are shown as local times beside the numbers."""
    key_format = epoch_format(table, days)
    partitions = nested_partitions(table)
    direct = [e for e in table["partitions"] if e["parent_oid"] == table["oid"]]
    defaults = [e for e in direct if (e["bound"] or {}).get("kind") == "default"]
    ranges = [(e["low"], e["high"], e["name"]) for e in direct if "low" in e]
    gaps, overlaps = coverage(ranges)
    current, ahead, covered_until = periods_ahead(
        _epoch_dates(
            [r for r in ranges if r[0] not in (MINVALUE, MAXVALUE) and r[1] not in (MINVALUE, MAXVALUE)],
            key_format,
            days,
        ),
        today,
    )
    if key_format is not None:
        for report in partitions:
            if not report["is_default"]:
                report["low_time"] = epoch_local_time(report["low"], key_format, days)
                report["high_time"] = epoch_local_time(report["high"], key_format, days)
    return {
        "epoch_format": key_format,
        "partitions": partitions,
        "partition_count": len(direct),
        "default_partition": defaults[0]["name"] if defaults else None,
        "default_rows": default_rows,
        "gaps": [{k: json_value(v) for k, v in g.items()} for g in gaps],
        "overlaps": [{k: json_value(v) if k != "partitions" else v for k, v in o.items()} for o in overlaps],
        "current_partition": current,
        "periods_ahead": ahead,
        "covered_until": covered_until,
    }
