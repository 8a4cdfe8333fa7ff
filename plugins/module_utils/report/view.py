# Copyright: (c) 2026, SIGETI data platform team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What the report page shows of a table with many partitions: periods (years, then months) summing their
partitions, every partition on demand, the relations vacuum should look at (pure).

A page listing every partition as a chart bar grows without bound (3,650 daily partitions made charts 80,000 px
tall); summed by period it shows a decade in a dozen bars, and the months and partitions behind each bar are one
click away (``<details>``). One pass over the partitions, dictionaries for every lookup.
"""

from __future__ import annotations

import dataclasses
import datetime
from typing import Any, Iterable, Mapping, Sequence

from ansible_collections.sigeti.dwh.plugins.module_utils.report.table import bound_as_date

FLAT_LIMIT = 40  # up to this many partitions, one bar each (SIGETI's yearly tables)
PERIOD_FLAT_LIMIT = 31  # a year holding up to this many partitions lists them without a month level
BLOCK = 100  # partitions without a date bound, listed in blocks of this many
TOP_DEAD = 10  # relations with the most dead tuples, charted
LABEL_LIMIT = 30  # characters of a chart label (the label column is 230 px wide at 12 px)


@dataclasses.dataclass(frozen=True)
class Leaf:
    """A partition that holds rows (a leaf of the tree), with its vacuum state."""

    name: str
    bytes: int
    rows: int | None
    dead: int
    last_vacuum: str | None  # the date of the last (auto)vacuum
    due: bool  # dead tuples at or above autovacuum's trigger
    default: bool
    period: datetime.date | None  # the date its range starts at (its parent's for a sub-partition without one)


@dataclasses.dataclass(frozen=True)
class Period:
    """A year, a month or a block of partitions: sums over its partitions, and what is inside it."""

    key: str
    bytes: int
    rows: int
    dead: int
    count: int
    never_vacuumed: int
    due: int
    months: tuple[Period, ...]  # a year with many partitions: its months
    leaves: tuple[Leaf, ...]  # else its partitions


@dataclasses.dataclass(frozen=True)
class TableView:
    """One table's partition and vacuum sections of the page."""

    name: str
    leaf_count: int
    flat: tuple[Leaf, ...]  # few partitions: each one
    periods: tuple[Period, ...]  # many: by year (blocks for partitions without a date, the default last)
    top_dead: tuple[Mapping[str, Any], ...]  # vacuum rows with the most dead tuples
    due: tuple[Mapping[str, Any], ...]  # vacuum rows over autovacuum's trigger
    never_vacuumed: int
    relations: int


def short_label(text: Any, limit: int = LABEL_LIMIT) -> str:
    """``text`` cut in its middle to ``limit`` characters (partition names differ at their end), newlines shown as
    spaces; the page puts the whole text in a tooltip."""
    text = " ".join(str(text).split()) if text is not None else ""
    if len(text) <= limit:
        return text
    head = (limit - 1) // 3
    return text[:head] + "…" + text[len(text) - (limit - 1 - head) :]


def bound_date(value: Any) -> datetime.date | None:
    """A bound as table_info returns it (JSON: an integer YYYYMMDD / YYYYMM, an ISO date or timestamp) as a date."""
    if isinstance(value, str):
        try:
            return datetime.date.fromisoformat(value[:10])
        except ValueError:
            return None
    return bound_as_date(value)


def _date_of(partition: Mapping[str, Any], by_oid: Mapping[Any, Mapping[str, Any]]) -> datetime.date | None:
    seen = set()
    while partition is not None and id(partition) not in seen:
        seen.add(id(partition))
        found = bound_date(partition.get("low"))
        if found is not None:
            return found
        partition = by_oid.get(partition.get("parent_oid"))
    return None


def leaves_of(entry: Mapping[str, Any]) -> list[Leaf]:
    """The table's leaf partitions, each with its vacuum row's figures."""
    vacuum = {v["relation"]: v for v in entry.get("vacuum") or []}
    partitions = entry.get("partitions") or []
    by_oid = {p["oid"]: p for p in partitions if p.get("oid") is not None}
    leaves = []
    for p in partitions:
        if not p.get("leaf"):
            continue
        v = vacuum.get(p["name"], {})
        last = v.get("last_vacuum")
        leaves.append(
            Leaf(
                name=p["name"],
                bytes=int(p.get("total_bytes") or 0),
                rows=p.get("rows"),
                dead=int(v.get("n_dead_tup") or 0),
                last_vacuum=last[:10] if last else None,
                due=bool(v.get("vacuum_due")),
                default=bool(p.get("is_default")),
                period=None if p.get("is_default") else _date_of(p, by_oid),
            )
        )
    return leaves


def period(key: str, leaves: Sequence[Leaf], months: Sequence[Period] = ()) -> Period:
    """Sums over ``leaves``; ``months`` when the page shows them instead of the leaves."""
    return Period(
        key=key,
        bytes=sum(x.bytes for x in leaves),
        rows=sum(x.rows or 0 for x in leaves),
        dead=sum(x.dead for x in leaves),
        count=len(leaves),
        never_vacuumed=sum(1 for x in leaves if x.last_vacuum is None),
        due=sum(1 for x in leaves if x.due),
        months=tuple(months),
        leaves=() if months else tuple(leaves),
    )


def _grouped(leaves: Iterable[Leaf], key) -> list[tuple[str, list[Leaf]]]:
    groups: dict[str, list[Leaf]] = {}
    for leaf in leaves:
        groups.setdefault(key(leaf), []).append(leaf)
    return sorted(groups.items())


def periods_of(leaves: Sequence[Leaf]) -> list[Period]:
    """Years (with their months when a year holds many partitions), then blocks of partitions without a date,
    then the default partition."""
    dated = sorted((x for x in leaves if x.period is not None), key=lambda x: (x.period, x.name))
    undated = [x for x in leaves if x.period is None and not x.default]
    result = []
    for year, members in _grouped(dated, lambda x: "%04d" % x.period.year):
        months = []
        if len(members) > PERIOD_FLAT_LIMIT:
            months = [period(k, m) for k, m in _grouped(members, lambda x: x.period.strftime("%Y-%m"))]
        result.append(period(year, members, months))
    for start in range(0, len(undated), BLOCK):
        block = undated[start : start + BLOCK]
        key = "other" if len(undated) <= BLOCK else "other %d–%d" % (start + 1, start + len(block))
        result.append(period(key, block))
    defaults = [x for x in leaves if x.default]
    if defaults:
        result.append(period("default", defaults))
    return result


def table_view(entry: Mapping[str, Any]) -> TableView:
    """One table's sections: its partitions (each, or by period) and the relations vacuum should look at."""
    leaves = leaves_of(entry)
    vacuum = list(entry.get("vacuum") or [])
    ordered = sorted(leaves, key=lambda x: (x.default, x.period is None, x.period or datetime.date.min, x.name))
    few = len(leaves) <= FLAT_LIMIT
    return TableView(
        name=entry["name"],
        leaf_count=len(leaves),
        flat=tuple(ordered) if few else (),
        periods=() if few else tuple(periods_of(leaves)),
        top_dead=tuple(sorted((v for v in vacuum if v["n_dead_tup"] > 0), key=lambda v: -v["n_dead_tup"])[:TOP_DEAD]),
        due=tuple(v for v in vacuum if v.get("vacuum_due")),
        never_vacuumed=sum(1 for v in vacuum if not v.get("last_vacuum")),
        relations=len(vacuum),
    )
