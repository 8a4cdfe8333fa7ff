# Copyright: (c) 2026, SIGETI data platform team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Vacuum, analyze, freeze and rewrite decisions from statistics, as pure functions.

Each decision returns its reason and the numbers it compared; the bloat estimate and the disk check are here.
"""

from __future__ import annotations

import datetime
import math
from typing import Any, Sequence

from ansible_collections.sigeti.dwh.plugins.module_utils.core.units import format_bytes
from ansible_collections.sigeti.dwh.plugins.module_utils.vacuum.options import (
    Triggers,
    VacuumOptions,
    as_number,
)

# Heap page layout used by the catalog estimate (bufpage.h / htup_details.h).
PAGE_HEADER_BYTES = 24
ITEM_POINTER_BYTES = 4
TUPLE_HEADER_BYTES = 23
MAXALIGN = 8


def _never_analyzed(stats):
    return not (stats or {}).get("last_analyze") and not (stats or {}).get("last_autoanalyze")


def analyze_decision(mode: str, stats: dict[str, Any] | None, triggers: Triggers) -> dict[str, Any]:
    """Decide ANALYZE for a leaf from its statistics.

    ``mode`` auto|always|never; ``stats`` the pg_stat_all_tables row (dict, may be empty); ``triggers`` from
    ``autovacuum_triggers``. Returns ``{"due": bool, "reason": text, "n_mod_since_analyze": n, "trigger": n}``.
    """
    stats = stats or {}
    mods = stats.get("n_mod_since_analyze") or 0
    result = {"due": False, "n_mod_since_analyze": mods, "trigger": triggers["analyze"]}
    if mode == "never":
        result["reason"] = "analyze: never"
    elif mode == "always":
        result.update(due=True, reason="analyze: always")
    elif _never_analyzed(stats):
        result.update(due=True, reason="never analyzed (no last_analyze nor last_autoanalyze)")
    elif mods > triggers["analyze"]:
        result.update(
            due=True, reason="%d rows changed since the last analyze > analyze trigger %d" % (mods, triggers["analyze"])
        )
    else:
        result["reason"] = "%d rows changed since the last analyze <= analyze trigger %d" % (mods, triggers["analyze"])
    return result


def vacuum_decision(
    mode: str,
    stats: dict[str, Any] | None,
    triggers: Triggers,
    inserts_trigger: int | None = None,
    toast_stats: dict[str, Any] | None = None,
    toast_triggers: Triggers | None = None,
) -> dict[str, Any]:
    """Decide a plain VACUUM for a leaf: dead tuples of the heap or of its TOAST relation, or inserts.

    Mirrors autovacuum's own tests (dead tuples > threshold + scale x reltuples, 13+'s insert trigger), with
    the TOAST relation's own stats and triggers. Returns ``{"due", "reason", numbers...}``.
    """
    stats = stats or {}
    dead = stats.get("n_dead_tup") or 0
    inserted = stats.get("n_ins_since_vacuum") or 0
    result = {
        "due": False,
        "n_dead_tup": dead,
        "trigger": triggers["vacuum"],
        "n_ins_since_vacuum": inserted,
        "insert_trigger": inserts_trigger,
    }
    toast_dead = None
    if toast_stats is not None and toast_triggers is not None:
        toast_dead = toast_stats.get("n_dead_tup") or 0
        result["toast_n_dead_tup"] = toast_dead
        result["toast_trigger"] = toast_triggers["vacuum"]
    if mode == "never":
        result["reason"] = "vacuum: never"
        return result
    if mode == "always":
        result.update(due=True, reason="vacuum: always")
        return result
    reasons = []
    if dead > triggers["vacuum"]:
        reasons.append("%d dead rows > vacuum trigger %d" % (dead, triggers["vacuum"]))
    if toast_dead is not None and toast_dead > toast_triggers["vacuum"]:
        reasons.append("TOAST: %d dead chunks > TOAST vacuum trigger %d" % (toast_dead, toast_triggers["vacuum"]))
    if inserts_trigger is not None and inserted > inserts_trigger:
        reasons.append("%d rows inserted since the last vacuum > insert trigger %d" % (inserted, inserts_trigger))
    if reasons:
        result.update(due=True, reason="; ".join(reasons))
    else:
        text = "%d dead rows <= vacuum trigger %d" % (dead, triggers["vacuum"])
        if toast_dead is not None:
            text += ", TOAST %d <= %d" % (toast_dead, toast_triggers["vacuum"])
        if inserts_trigger is not None:
            text += ", %d inserts <= %d" % (inserted, inserts_trigger)
        result["reason"] = text
    return result


def _align(value):
    return int(math.ceil(value / float(MAXALIGN)) * MAXALIGN)


def estimate_bloat(
    heap_bytes: int | None,
    live_tuples: float | None,
    data_width: float | None,
    columns: int,
    has_nulls: bool | None,
    block_size: int = 8192,
    fillfactor: float = 100,
) -> dict[str, Any] | None:
    """Estimate the dead + free share of a heap from the catalog, without reading it.

    Expected pages = live tuples / tuples per page, where a tuple takes its header (23 bytes + null bitmap,
    aligned), its data (the sum of ``(1 - null_frac) * avg_width`` over ``pg_stats``, aligned) and a 4-byte
    line pointer, and a page holds ``(block_size - 24) * fillfactor%`` bytes. Bloat = 1 - expected / actual
    pages, floored at 0. Returns ``None`` when the statistics are missing (never analyzed).
    """
    pages = int(heap_bytes or 0) // int(block_size)
    if pages == 0:
        return {"bloat": 0.0, "expected_pages": 0, "pages": 0}
    if data_width is None or live_tuples is None or live_tuples < 0:
        return None
    bitmap = int(math.ceil(columns / 8.0)) if has_nulls else 0
    tuple_bytes = _align(TUPLE_HEADER_BYTES + bitmap) + _align(data_width) + ITEM_POINTER_BYTES
    usable = (block_size - PAGE_HEADER_BYTES) * (fillfactor / 100.0)
    per_page = max(1, int(usable // tuple_bytes))
    expected = int(math.ceil(live_tuples / float(per_page)))
    bloat = max(0.0, 1.0 - expected / float(pages))
    return {"bloat": round(bloat, 4), "expected_pages": expected, "pages": pages, "tuple_bytes": tuple_bytes}


def leaf_bloat_estimate(entry: dict[str, Any], extra: dict[str, Any], block_size: int) -> dict[str, Any] | None:
    """Return the catalog estimate of one leaf's bloat (``estimate_bloat``), or None without pg_stats for it."""
    # n_live_tup follows every write; reltuples only the last VACUUM/ANALYZE (-1: never)
    live = entry["stats"].get("n_live_tup")
    if live is None:
        live = entry["reltuples"] if (entry["reltuples"] or 0) >= 0 else None
    if not extra["stats_columns"]:
        return None
    return estimate_bloat(
        entry["heap_bytes"],
        live,
        extra["data_width"],
        extra["columns"],
        extra["has_nulls"],
        block_size,
        as_number(entry["reloptions"].get("fillfactor"), 100),
    )


def full_decision(
    mode: str,
    size_bytes: int,
    bloat: dict[str, Any] | None,
    threshold: float,
    min_size: int,
    method_note: str | None = None,
) -> dict[str, Any]:
    """Return the rewrite decision (VACUUM FULL or pg_repack) from the measured or estimated bloat and the size.

    ``bloat`` is ``{"bloat": share, "method": "pgstattuple"|"estimate", ...}`` or None when unknown.
    ``full: always`` rewrites whatever the numbers; ``auto`` needs bloat > threshold and size >= min_size.
    """
    share = bloat.get("bloat") if bloat else None
    result = {
        "due": False,
        "size_bytes": size_bytes,
        "min_size": min_size,
        "bloat": share,
        "bloat_threshold": threshold,
        "measured_by": bloat.get("method") if bloat else None,
    }
    if mode == "never":
        result["reason"] = "full: never"
    elif mode == "always":
        result.update(due=True, reason="full: always")
    elif size_bytes < min_size:
        result["reason"] = "size %s < min_size %s" % (format_bytes(size_bytes), format_bytes(min_size))
    elif share is None:
        result["reason"] = "bloat unknown (%s): not rewritten" % (method_note or "no statistics: ANALYZE it first")
    elif share > threshold:
        result.update(
            due=True,
            reason="bloat %.1f%% (%s) > bloat_threshold %.1f%%, size %s >= min_size %s"
            % (100 * share, result["measured_by"], 100 * threshold, format_bytes(size_bytes), format_bytes(min_size)),
        )
    else:
        result["reason"] = "bloat %.1f%% (%s) <= bloat_threshold %.1f%%" % (
            100 * share,
            result["measured_by"],
            100 * threshold,
        )
    return result


def _add_months(day, months):
    month = day.month - 1 + months
    year = day.year + month // 12
    return datetime.date(year, month % 12 + 1, 1)


def periods_since_end(low: Any, high: Any, today: datetime.date) -> int | None:
    """How many whole partition widths have passed since a range partition ended.

    ``low``/``high`` are dates (the caller converts YYYYMMDD integers and timestamps). Month-aligned ranges
    (both bounds on the 1st) count in months, others in days. Returns -1 while the range has not ended,
    None when the bounds are not usable dates.
    """
    if not isinstance(low, datetime.date) or not isinstance(high, datetime.date) or high <= low:
        return None
    if today < high:
        return -1
    if low.day == 1 and high.day == 1:
        width = (high.year - low.year) * 12 + high.month - low.month
        elapsed = (today.year - high.year) * 12 + today.month - high.month
        if today.day < high.day:
            elapsed -= 1
        return max(0, elapsed) // width
    width = (high - low).days
    return (today - high).days // width


def freeze_decision(
    older_than: int | None,
    periods_ago: int | None,
    relfrozenxid_age: int | None,
    newest_row_age: int | None,
    stats: dict[str, Any] | None,
) -> dict[str, Any]:
    """Return the VACUUM FREEZE decision for a range partition (``{"due", "reason", numbers...}``), due once.

    Due when the range ended at least ``older_than`` periods ago and the partition is not frozen yet.
    Frozen means: ``relfrozenxid`` is newer than every row seen (``age(relfrozenxid) < min(age(xmin))``
    over a sample) and no row was inserted, updated or deleted since the last vacuum. Only a VACUUM that
    froze every row moves relfrozenxid past the newest row (a plain vacuum leaves it at or before the
    oldest unfrozen row), so this reads back, from the catalog, that the freeze already happened.
    """
    stats = stats or {}
    result = {
        "due": False,
        "periods_ago": periods_ago,
        "older_than": older_than,
        "relfrozenxid_age": relfrozenxid_age,
        "newest_row_xid_age": newest_row_age,
    }
    if older_than is None:
        result["reason"] = "freeze_older_than not set"
        return result
    if periods_ago is None:
        result["reason"] = "not a range partition with date bounds"
        return result
    if periods_ago < older_than:
        result["reason"] = "range ended %s periods ago < freeze_older_than %d" % (
            "0 (still open)" if periods_ago < 0 else periods_ago,
            older_than,
        )
        return result
    writes = (stats.get("n_ins_since_vacuum") or 0) + (stats.get("n_dead_tup") or 0)
    if newest_row_age is None and writes == 0:
        result["reason"] = "no rows: nothing to freeze"
        return result
    frozen = newest_row_age is not None and relfrozenxid_age is not None and relfrozenxid_age < newest_row_age
    if frozen and writes == 0:
        result["reason"] = (
            "already frozen: age(relfrozenxid) %d < newest row age %d and no writes since the "
            "last vacuum" % (relfrozenxid_age, newest_row_age)
        )
        return result
    why = (
        "%d writes since the last vacuum" % writes
        if frozen
        else ("age(relfrozenxid) %s >= newest row age %s" % (relfrozenxid_age, newest_row_age))
    )
    result.update(
        due=True,
        reason="range ended %d periods ago >= freeze_older_than %d and not frozen (%s)"
        % (periods_ago, older_than, why),
    )
    return result


def parent_analyze_decision(
    mode: str,
    parent_stats: dict[str, Any] | None,
    has_inherited_stats: bool | None,
    leaves: Sequence[tuple[str, dict[str, Any] | None]],
    leaf_work: Sequence[str],
    triggers: Triggers,
) -> dict[str, Any]:
    """Return the ANALYZE decision of a partitioned parent; autovacuum never analyzes one, so this module must.

    ``leaves`` is a list of ``(name, stats)`` of the partitions below it, ``leaf_work`` the names of partitions
    this run vacuums, freezes, rewrites or analyzes, ``triggers`` the parent's analyze trigger computed from
    the partitions' total rows. Due when: never analyzed (no last_analyze and no inheritance statistics),
    a partition is processed in this run, a partition was autoanalyzed or autovacuumed after the parent's
    last analyze, or the changes not yet analyzed in the partitions exceed the parent's trigger.
    """
    parent_stats = parent_stats or {}
    last = parent_stats.get("last_analyze") or parent_stats.get("last_autoanalyze")
    mods = sum((s or {}).get("n_mod_since_analyze") or 0 for _n, s in leaves)
    result = {
        "due": False,
        "n_mod_since_analyze": mods,
        "trigger": triggers["analyze"],
        "last_analyze": last.isoformat(sep=" ") if hasattr(last, "isoformat") else last,
    }
    if mode == "never":
        result["reason"] = "analyze: never"
        return result
    if mode == "always":
        result.update(due=True, reason="analyze: always")
        return result
    if last is None and not has_inherited_stats:
        result.update(due=True, reason="partitioned parent never analyzed (autovacuum never analyzes parents)")
        return result
    if leaf_work:
        result.update(due=True, reason="partitions processed in this run: %s" % ", ".join(sorted(leaf_work)))
        return result
    if last is not None:
        later = []
        for name, leaf_stats in leaves:
            stats = leaf_stats or {}
            # Only autovacuum's own runs count: they mean the partition's changes crossed its triggers. Manual
            # VACUUM/ANALYZE do not: ANALYZE parent (< 18) and VACUUM ANALYZE parent process the partitions just
            # after the parent, so counting them would make the parent due again on every run; this module's
            # own leaf work is counted above as "processed in this run".
            stamps = [stats.get(k) for k in ("last_autoanalyze", "last_autovacuum")]
            if any(s is not None and s > last for s in stamps):
                later.append(name)
        if later:
            result.update(
                due=True,
                reason="partitions vacuumed or analyzed after the parent's last analyze: %s" % ", ".join(sorted(later)),
            )
            return result
    if mods > triggers["analyze"]:
        result.update(
            due=True,
            reason="%d rows changed in the partitions > parent analyze trigger %d" % (mods, triggers["analyze"]),
        )
        return result
    result["reason"] = "partitions unchanged since the parent's last analyze (%d changes <= trigger %d)" % (
        mods,
        triggers["analyze"],
    )
    return result


def disk_decision(
    required: int, free: int | None, location: str | None, visible: bool, mode: str, min_free_space: int
) -> dict[str, Any]:
    """Check the free space where a rewrite writes its new copy.

    ``required`` is the copy + WAL estimate, ``free`` the bytes available to PostgreSQL on the filesystem of
    ``location``. Returns ``{"ok": bool, "reason": text, ...}``; not ``ok`` means refuse the rewrite.
    """
    result = {
        "ok": True,
        "required_bytes": required,
        "free_bytes": free,
        "location": location,
        "min_free_space": min_free_space,
        "checked": False,
    }
    if mode == "never":
        result["reason"] = "disk_check: never"
        return result
    if not visible:
        result["reason"] = "the filesystem of %s is not visible from this host: not checked" % (location or "the data")
        if mode == "required":
            result.update(
                ok=False,
                reason=result["reason"] + " and disk_check is required: run the module on "
                "the database host as a user that can see the data directory, or set disk_check: auto",
            )
        return result
    result["checked"] = True
    if free < required + min_free_space:
        result.update(
            ok=False,
            reason="not enough free disk on %s: %s free < %s needed (copy and WAL) + "
            "min_free_space %s" % (location, format_bytes(free), format_bytes(required), format_bytes(min_free_space)),
        )
    else:
        result["reason"] = "%s free >= %s needed + min_free_space %s" % (
            format_bytes(free),
            format_bytes(required),
            format_bytes(min_free_space),
        )
    return result


def rewrite_space(total_bytes: int, bloat_share: float | None) -> int:
    """Return the bytes a rewrite needs at its peak: the compacted copy plus about as much WAL (measured, see docs)."""
    share = bloat_share if bloat_share is not None else 0.0
    compacted = int(total_bytes * (1.0 - min(max(share, 0.0), 1.0)))
    return 2 * compacted


# ---------------------------------------------------------------------------------------------
# Planning a whole table (pure: facts in, decisions and steps out)
# ---------------------------------------------------------------------------------------------


def rewrite_decision(extra: dict[str, Any], options: VacuumOptions) -> dict[str, Any]:
    """Return the VACUUM FULL decision of one leaf, from its size and bloat (``extra``) and the options."""
    return full_decision(
        options["full"],
        extra.get("size_bytes", 0),
        extra.get("bloat"),
        options["bloat_threshold"],
        options["min_size"],
        extra.get("bloat_note"),
    )
