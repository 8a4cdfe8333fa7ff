# Copyright: (c) 2026, SIGETI data platform team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Vacuum and analyze decisions from statistics, as pure functions.

Triggers, decisions with their numbers, the bloat estimate, freeze periods, the per-table plan, the pg_repack
command line and the module's report. Reading the facts and running the plan is ``vacuum_run``'s job.
"""

from __future__ import annotations

import datetime
import math
import re
from typing import TYPE_CHECKING, Any, NamedTuple, Sequence, TypedDict

from ansible_collections.sigeti.dwh.plugins.module_utils.errors import InvalidInput
from ansible_collections.sigeti.dwh.plugins.module_utils.identifiers import display_name
from ansible_collections.sigeti.dwh.plugins.module_utils.plan import (
    ACCESS_EXCLUSIVE,
    SHARE_UPDATE_EXCLUSIVE,
    Step,
)
from ansible_collections.sigeti.dwh.plugins.module_utils.units import format_bytes, parse_size

try:
    from psycopg2 import sql
except ImportError:  # reported by the connection layer
    sql = None

if TYPE_CHECKING:  # names used in annotations only
    from psycopg2.sql import Composed

    from ansible_collections.sigeti.dwh.plugins.module_utils.connection import Connection


class Triggers(TypedDict):
    """Where autovacuum would act on a relation (``autovacuum_triggers``); reported as it is."""

    vacuum: int  # dead tuples
    analyze: int | None  # changed tuples; None for a TOAST relation (never analyzed)
    enabled: bool


class _VacuumOptions(TypedDict):
    analyze: str  # auto | always | never
    vacuum: str
    full: str
    full_method: str  # auto | vacuum_full | pg_repack
    bloat_threshold: float  # share, 0..1
    min_size: int  # bytes
    min_free_space: int  # bytes
    freeze_older_than: int | None  # periods
    autovacuum: dict[str, str | None]  # declared reloptions, None = reset


class VacuumOptions(_VacuumOptions, total=False):
    """The module's options once checked (``validate_options``), as the planners read them."""

    covered_by_parent: str  # set by ``table_plan``: the parent whose ANALYZE also analyzes this leaf (< 18)


class Action(TypedDict, total=False):
    """One action of a vacuum plan, in execution order. A dict: the run adds ``duration_ms`` and ``output`` to it,
    and ``report`` turns it into the module result."""

    action: str  # reloptions | vacuum | freeze | analyze | full
    reason: str
    step: Step  # an SQL action
    method: str  # full: vacuum_full | pg_repack
    command: list[str]  # pg_repack's argv
    lock: str
    targets: list[tuple[str, str]]
    duration_ms: int
    output: str


class RepackProbe(TypedDict, total=False):
    """Whether pg_repack can rewrite in this run (``vacuum_run.probe_repack``); returned as the ``repack`` result."""

    available: bool
    reason: str  # why (not)
    path: str | None  # the pg_repack program found
    version: str | None  # its version


class Gathered(TypedDict):
    """What ``vacuum_run.gather`` read and planned; ``all_actions``, ``counted_before`` and ``report`` read it."""

    tables: list[dict[str, Any]]  # per requested table: {"table": catalog facts, "plan": table_plan(...)}
    bloat_method: str  # pgstattuple | estimate
    repack: RepackProbe
    disk: list[dict[str, Any]]  # the disk check of each leaf due a rewrite
    extras: dict[int, dict[str, Any]]  # per relation oid: the values only the vacuum module reads
    repack_env_kwargs: dict[str, Any]  # connection kwargs pg_repack connects with


class RepackAvailability(NamedTuple):
    """``repack_availability``'s answer; a tuple, so ``ok, reason = repack_availability(...)`` reads as before."""

    ok: bool
    reason: str


def _number(value: Any, default: float) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return float(default)


def autovacuum_triggers(
    reloptions: dict[str, str] | None, settings: dict[str, str] | None, reltuples: float | None, toast: bool = False
) -> Triggers:
    """Return the dead-tuple and changed-tuple counts at which autovacuum would vacuum / analyze a relation.

    ``threshold + scale_factor * reltuples``, each taken from the relation's reloptions when set
    (``toast.`` options for a TOAST relation), else from the server settings. ``reltuples`` of -1 (never
    analyzed) counts as 0. Returns ``{"vacuum": n, "analyze": n, "enabled": bool}``.
    """
    reloptions = reloptions or {}
    settings = settings or {}
    tuples = max(_number(reltuples, 0), 0.0)

    def option(name, default):
        return _number(reloptions.get(name, settings.get(name, default)), default)

    vacuum = option("autovacuum_vacuum_threshold", 50) + option("autovacuum_vacuum_scale_factor", 0.2) * tuples
    analyze = option("autovacuum_analyze_threshold", 50) + option("autovacuum_analyze_scale_factor", 0.1) * tuples
    enabled = str(reloptions.get("autovacuum_enabled", "true")).lower() not in ("false", "off", "0", "no")
    enabled = enabled and str(settings.get("autovacuum", "on")).lower() in ("on", "true", "1", "yes")
    return {"vacuum": int(vacuum), "analyze": None if toast else int(analyze), "enabled": enabled}


# =============================================================================================
# Everything below extends the module with the decisions of ``sigeti.dwh.vacuum``: pure functions
# first (unit-tested on plain values), then the few I/O helpers the module needs (disk, pg_repack).
# =============================================================================================

MODES = ("auto", "always", "never")
FULL_METHODS = ("auto", "vacuum_full", "pg_repack")

# Heap page layout used by the catalog estimate (bufpage.h / htup_details.h).
PAGE_HEADER_BYTES = 24
ITEM_POINTER_BYTES = 4
TUPLE_HEADER_BYTES = 23
MAXALIGN = 8

# autovacuum reloptions a leaf may declare, and how to check their values. ``toast.`` variants take the
# same types, except the analyze ones (a TOAST relation is never analyzed).
_BOOL = "bool"
_INT = "int"
_REAL = "real"
AUTOVACUUM_OPTIONS = {
    "autovacuum_enabled": _BOOL,
    "autovacuum_vacuum_threshold": _INT,
    "autovacuum_vacuum_scale_factor": _REAL,
    "autovacuum_vacuum_insert_threshold": _INT,
    "autovacuum_vacuum_insert_scale_factor": _REAL,
    "autovacuum_analyze_threshold": _INT,
    "autovacuum_analyze_scale_factor": _REAL,
    "autovacuum_vacuum_cost_delay": _REAL,
    "autovacuum_vacuum_cost_limit": _INT,
    "autovacuum_freeze_min_age": _INT,
    "autovacuum_freeze_max_age": _INT,
    "autovacuum_freeze_table_age": _INT,
    "autovacuum_multixact_freeze_min_age": _INT,
    "autovacuum_multixact_freeze_max_age": _INT,
    "autovacuum_multixact_freeze_table_age": _INT,
    "log_autovacuum_min_duration": _INT,
}
_TOAST_REJECTS = ("autovacuum_analyze_threshold", "autovacuum_analyze_scale_factor")
_TRUE = ("true", "on", "yes", "1", "t", "y")
_FALSE = ("false", "off", "no", "0", "f", "n")


def insert_trigger(
    reloptions: dict[str, str] | None, settings: dict[str, str] | None, reltuples: float | None
) -> int | None:
    """Return the inserted-tuple count at which autovacuum (13+) vacuums an insert-only relation.

    ``autovacuum_vacuum_insert_threshold + autovacuum_vacuum_insert_scale_factor * reltuples``, reloptions
    first; ``None`` when the threshold is -1 (insert vacuums disabled).
    """
    reloptions = reloptions or {}
    settings = settings or {}
    tuples = max(_number(reltuples, 0), 0.0)
    threshold = _number(
        reloptions.get("autovacuum_vacuum_insert_threshold", settings.get("autovacuum_vacuum_insert_threshold", 1000)),
        1000,
    )
    if threshold < 0:
        return None
    scale = _number(
        reloptions.get(
            "autovacuum_vacuum_insert_scale_factor", settings.get("autovacuum_vacuum_insert_scale_factor", 0.2)
        ),
        0.2,
    )
    return int(threshold + scale * tuples)


def toast_options(toast_reloptions: dict[str, str] | None) -> dict[str, str]:
    """Return a TOAST relation's reloptions as ``autovacuum_triggers`` reads them (``toast.`` dropped)."""
    return {k[len("toast.") :] if k.startswith("toast.") else k: v for k, v in (toast_reloptions or {}).items()}


def validate_options(params: dict[str, Any]) -> VacuumOptions:
    """Check the module's own options before anything is read or changed; raise InvalidInput naming the value.

    Returns a normalized dict: modes, ``bloat_threshold``, ``min_size`` and ``min_free_space`` in bytes,
    ``freeze_older_than`` and the declared ``autovacuum`` reloptions (see ``normalize_reloptions``).
    """
    out = {}
    for name, choices in (("analyze", MODES), ("vacuum", MODES), ("full", MODES), ("full_method", FULL_METHODS)):
        value = params.get(name) or "auto"
        if value not in choices:
            raise InvalidInput("%s=%r is not one of %s" % (name, value, ", ".join(choices)))
        out[name] = value
    threshold = params.get("bloat_threshold", 0.3)
    try:
        threshold = float(threshold)
    except (TypeError, ValueError):
        threshold = None
    if threshold is None or not 0.0 <= threshold <= 1.0 or math.isnan(threshold):
        raise InvalidInput(
            "bloat_threshold=%r is out of range: it is the share of a table's pages that is dead or free "
            "space, between 0 and 1 (0.3 = 30%%)" % (params.get("bloat_threshold"),)
        )
    out["bloat_threshold"] = threshold
    out["min_size"] = parse_size(params.get("min_size", "100MB"), "min_size")
    out["min_free_space"] = parse_size(params.get("min_free_space", 0) or 0, "min_free_space")
    freeze = params.get("freeze_older_than")
    if freeze is not None:
        try:
            freeze = int(freeze)
        except (TypeError, ValueError):
            freeze = -1
        if freeze < 0:
            raise InvalidInput(
                "freeze_older_than=%r must be a whole number of periods >= 0 (2 = partitions whose range "
                "ended at least two partition widths ago)" % (params.get("freeze_older_than"),)
            )
    out["freeze_older_than"] = freeze
    out["autovacuum"] = normalize_reloptions(params.get("autovacuum"))
    return out


def _canonical(kind, name, value):
    """Return a reloption value as the text PostgreSQL stores, or raise InvalidInput."""
    text = str(value).strip().lower() if not isinstance(value, bool) else ("true" if value else "false")
    if kind == _BOOL:
        if text in _TRUE:
            return "true"
        if text in _FALSE:
            return "false"
        raise InvalidInput("autovacuum option %s=%r must be true or false" % (name, value))
    try:
        number = float(text)
    except ValueError:
        raise InvalidInput("autovacuum option %s=%r must be a number" % (name, value))
    if kind == _INT:
        if number != int(number):
            raise InvalidInput("autovacuum option %s=%r must be a whole number" % (name, value))
        if number < -1:
            raise InvalidInput("autovacuum option %s=%r must be >= -1" % (name, value))
        return str(int(number))
    if number < 0 or (name.endswith("scale_factor") and number > 100):
        raise InvalidInput(
            "autovacuum option %s=%r is out of range (scale factors: 0..100, delays >= 0)" % (name, value)
        )
    return repr(number) if number != int(number) else str(int(number))


def normalize_reloptions(declared: dict[str, Any] | None) -> dict[str, str | None]:
    """Validate the ``autovacuum`` option: ``{name: value}``, ``value`` null meaning "reset to the default".

    Names are ``autovacuum_*`` / ``log_autovacuum_min_duration`` or the same with ``toast.``. Returns
    ``{name: canonical text or None}``; raises InvalidInput naming the first bad name or value.
    """
    result = {}
    for name, value in (declared or {}).items():
        key = str(name).strip().lower()
        base = key[len("toast.") :] if key.startswith("toast.") else key
        kind = AUTOVACUUM_OPTIONS.get(base)
        if kind is None:
            raise InvalidInput(
                "autovacuum option %r is not an autovacuum storage parameter: use one of %s (or toast.<name>)"
                % (name, ", ".join(sorted(AUTOVACUUM_OPTIONS)))
            )
        if key.startswith("toast.") and base in _TOAST_REJECTS:
            raise InvalidInput("autovacuum option %r does not exist: TOAST relations are never analyzed" % name)
        result[key] = None if value is None else _canonical(kind, key, value)
    return result


def _same_value(current, wanted):
    if current is None or wanted is None:
        return current is None and wanted is None
    left, right = str(current).strip().lower(), str(wanted).strip().lower()
    if left == right:
        return True
    if left in _TRUE + _FALSE and right in _TRUE + _FALSE:
        return (left in _TRUE) == (right in _TRUE)
    try:
        return float(left) == float(right)
    except ValueError:
        return False


def reloption_changes(
    reloptions: dict[str, str] | None, toast_reloptions: dict[str, str] | None, declared: dict[str, str | None] | None
) -> tuple[dict[str, str], list[str]]:
    """Compare a leaf's current reloptions with the declared ones.

    Returns ``(to_set, to_reset)``: ``{name: value}`` to SET and the sorted names to RESET (declared null
    and present). Options not declared are left alone. ``toast.x`` is compared with the TOAST relation's ``x``.
    """
    to_set, to_reset = {}, []
    for name, wanted in sorted((declared or {}).items()):
        if name.startswith("toast."):
            current = (toast_reloptions or {}).get(name[len("toast.") :])
        else:
            current = (reloptions or {}).get(name)
        if wanted is None:
            if current is not None:
                to_reset.append(name)
        elif not _same_value(current, wanted):
            to_set[name] = wanted
    return to_set, to_reset


def effective_reloptions(
    reloptions: dict[str, str] | None, toast_reloptions: dict[str, str] | None, declared: dict[str, str | None] | None
) -> tuple[dict[str, str], dict[str, str]]:
    """Return (heap, toast) reloptions as they will be once the declared ones are applied (for triggers)."""
    heap = dict(reloptions or {})
    toast = dict(toast_reloptions or {})
    for name, wanted in (declared or {}).items():
        target, key = (toast, name[len("toast.") :]) if name.startswith("toast.") else (heap, name)
        if wanted is None:
            target.pop(key, None)
        else:
            target[key] = wanted
    return heap, toast


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
        _number(entry["reloptions"].get("fillfactor"), 100),
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
# SQL of the steps (psycopg2.sql only)
# ---------------------------------------------------------------------------------------------


def vacuum_sql(schema: str, name: str, options: Sequence[str] = ()) -> Composed:
    """Return ``VACUUM (opt, ...) schema.name`` with constant option words (FULL, FREEZE, ANALYZE)."""
    target = sql.Identifier(schema, name)
    if not options:
        return sql.SQL("VACUUM {}").format(target)
    return sql.SQL("VACUUM ({}) {}").format(sql.SQL(", ").join(sql.SQL(o) for o in options), target)


def analyze_sql(schema: str, name: str, only: bool = False) -> Composed:
    """Return ``ANALYZE [ONLY] schema.name`` (ONLY exists from PostgreSQL 18)."""
    return sql.SQL("ANALYZE {}{}").format(sql.SQL("ONLY ") if only else sql.SQL(""), sql.Identifier(schema, name))


def reloptions_sql(schema: str, name: str, to_set: dict[str, str], to_reset: Sequence[str]) -> Composed:
    """Return ``ALTER TABLE ... SET (...), RESET (...)`` for the declared autovacuum reloptions of one leaf."""
    clauses = []

    def option_name(key):
        return sql.Identifier(*key.split(".", 1)) if key.startswith("toast.") else sql.Identifier(key)

    if to_set:
        clauses.append(
            sql.SQL("SET ({})").format(
                sql.SQL(", ").join(
                    sql.SQL("{} = {}").format(option_name(k), sql.Literal(v)) for k, v in sorted(to_set.items())
                )
            )
        )
    if to_reset:
        clauses.append(sql.SQL("RESET ({})").format(sql.SQL(", ").join(option_name(k) for k in to_reset)))
    return sql.SQL("ALTER TABLE {} {}").format(sql.Identifier(schema, name), sql.SQL(", ").join(clauses))


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


def _maintenance_step(schema: str, name: str, sql_text: Any, reason: str, lock: str = SHARE_UPDATE_EXCLUSIVE) -> Step:
    # VACUUM and ANALYZE refuse to run in a transaction block: each is its own autocommit step
    return Step(sql_text, reason, lock=lock, targets=[(schema, name)], transactional=False)


def leaf_decisions(
    entry: dict[str, Any], extra: dict[str, Any], options: VacuumOptions, settings: dict[str, str]
) -> dict[str, dict[str, Any]]:
    """Return the analyze, vacuum, freeze, full and reloptions decisions of one leaf, each with its numbers."""
    heap_opts, toast_opts = effective_reloptions(entry["reloptions"], entry["toast_reloptions"], options["autovacuum"])
    triggers = autovacuum_triggers(heap_opts, settings, entry["reltuples"])
    toast_trig = None
    if entry.get("toast_oid"):
        toast_trig = autovacuum_triggers(
            toast_options(toast_opts), settings, (entry.get("toast_stats") or {}).get("reltuples"), toast=True
        )
    decisions = {
        "analyze": analyze_decision(options["analyze"], entry["stats"], triggers),
        "vacuum": vacuum_decision(
            options["vacuum"],
            entry["stats"],
            triggers,
            insert_trigger(heap_opts, settings, entry["reltuples"]),
            entry.get("toast_stats") if toast_trig else None,
            toast_trig,
        ),
        "freeze": freeze_decision(
            options["freeze_older_than"],
            extra.get("periods_ago"),
            extra.get("relfrozenxid_age"),
            extra.get("newest_row_age"),
            entry["stats"],
        ),
        "full": rewrite_decision(extra, options),
    }
    declared = options["autovacuum"]
    if not entry.get("toast_oid"):
        # without a TOAST table PostgreSQL accepts toast.* options but stores them nowhere: setting them
        # would "change" on every run
        declared = {k: val for k, val in declared.items() if not k.startswith("toast.")}
    to_set, to_reset = reloption_changes(entry["reloptions"], entry["toast_reloptions"], declared)
    decisions["reloptions"] = {
        "due": bool(to_set or to_reset),
        "set": to_set,
        "reset": to_reset,
        "reason": (
            "reloptions differ from the declared ones" if (to_set or to_reset) else "declared reloptions already set"
        ),
    }
    return decisions


def _rewrite_actions(schema, name, decisions, extra, covered):
    """The rewrite (pg_repack or VACUUM FULL), then the VACUUM that refreshes its statistics."""
    full = decisions["full"]
    method = (extra.get("repack") or {}).get("method", "vacuum_full")
    full["method"] = method
    full["method_reason"] = (extra.get("repack") or {}).get("reason")
    full["disk"] = extra.get("disk")
    freeze = decisions["freeze"]["due"]
    if method == "pg_repack":
        first = {
            "action": "full",
            "method": "pg_repack",
            "reason": full["reason"],
            "command": extra["repack"]["command"],
            "lock": "ACCESS EXCLUSIVE (brief, start and end)",
            "targets": [(schema, name)],
        }
        words = ["FREEZE"] if freeze else []
    else:
        first = {
            "action": "full",
            "method": "vacuum_full",
            "reason": full["reason"],
            "step": _maintenance_step(
                schema,
                name,
                vacuum_sql(schema, name, ["FULL", "FREEZE"] if freeze else ["FULL"]),
                full["reason"],
                lock=ACCESS_EXCLUSIVE,
            ),
        }
        words = []
    # VACUUM FULL leaves n_dead_tup / n_ins_since_vacuum stale (measured): a plain VACUUM (cheap on the
    # compact copy, sets the visibility map) and ANALYZE reset them, so the next run sees nothing due.
    words = words + ([] if covered else ["ANALYZE"])
    reason = "after the rewrite: refresh statistics and the visibility map"
    after = {
        "action": "vacuum",
        "reason": reason,
        "step": _maintenance_step(schema, name, vacuum_sql(schema, name, words), reason),
    }
    decisions["vacuum"]["note"] = "covered by the rewrite"
    return [first, after]


def _routine_actions(schema, name, decisions, analyze_here):
    """One VACUUM (with FREEZE / ANALYZE when due) or one ANALYZE, or nothing."""
    vac, frz = decisions["vacuum"]["due"], decisions["freeze"]["due"]
    if vac or frz:
        words = (["FREEZE"] if frz else []) + (["ANALYZE"] if analyze_here else [])
        reasons = "; ".join(
            d["reason"]
            for k, d in decisions.items()
            if k in ("vacuum", "freeze", "analyze") and d["due"] and (k != "analyze" or analyze_here)
        )
        step = _maintenance_step(schema, name, vacuum_sql(schema, name, words), reasons)
        return [{"action": "freeze" if frz else "vacuum", "reason": reasons, "step": step}]
    if analyze_here:
        reason = decisions["analyze"]["reason"]
        return [
            {
                "action": "analyze",
                "reason": reason,
                "step": _maintenance_step(schema, name, analyze_sql(schema, name), reason),
            }
        ]
    return []


def leaf_plan(
    entry: dict[str, Any], extra: dict[str, Any], options: VacuumOptions, settings: dict[str, str]
) -> tuple[dict[str, dict[str, Any]], list[Action]]:
    """Decide everything for one leaf; return ``(decisions, actions)``.

    ``entry`` is a relation of ``catalog.read_tables``; ``extra`` holds the values only this module reads
    (``bloat``, ``periods_ago``, ``relfrozenxid_age``, ``newest_row_age``, ``repack``: the chosen rewrite
    method or why not, ``disk``); ``options`` the output of ``validate_options`` plus ``covered_by_parent``.
    Actions are dicts ``{"action", "step" | "command", "reason"}`` in execution order.
    """
    schema, name = entry["schema"], entry["name"]
    decisions = leaf_decisions(entry, extra, options, settings)
    actions: list[Action] = []
    reloptions = decisions["reloptions"]
    if reloptions["due"]:
        actions.append(
            {
                "action": "reloptions",
                "reason": "set %s reset %s" % (reloptions["set"], reloptions["reset"]),
                "step": Step(
                    reloptions_sql(schema, name, reloptions["set"], reloptions["reset"]),
                    "ensure autovacuum reloptions",
                    lock=SHARE_UPDATE_EXCLUSIVE,
                    targets=[(schema, name)],
                    group="reloptions",
                ),
            }
        )
    covered = options.get("covered_by_parent")
    if decisions["analyze"]["due"] and covered:
        decisions["analyze"]["note"] = "runs through ANALYZE %s (PostgreSQL < 18 analyzes partitions with it)" % covered
    if decisions["full"]["due"]:
        return decisions, actions + _rewrite_actions(schema, name, decisions, extra, covered)
    analyze_here = decisions["analyze"]["due"] and not covered
    return decisions, actions + _routine_actions(schema, name, decisions, analyze_here)


def parent_trigger(entry: dict[str, Any], leaves: Sequence[dict[str, Any]], settings: dict[str, str]) -> Triggers:
    """Return the analyze trigger of a partitioned parent, from the total rows of its partitions."""
    total = sum(max(leaf["reltuples"] or 0, 0) for leaf in leaves)
    return autovacuum_triggers(entry["reloptions"], settings, total)


def descendants(relations: dict[int, dict[str, Any]], oid: int) -> list[dict[str, Any]]:
    """Return every relation below ``oid`` in a partition tree (``relations`` by oid)."""
    children = {}
    for entry in relations.values():
        children.setdefault(entry["parent_oid"], []).append(entry)
    out, todo = [], list(children.get(oid, []))
    while todo:
        entry = todo.pop(0)
        out.append(entry)
        todo.extend(children.get(entry["oid"], []))
    return out


def table_plan(
    table: dict[str, Any],
    extras: dict[int, dict[str, Any]],
    options: VacuumOptions,
    settings: dict[str, str],
    version_num: int,
) -> dict[str, Any]:
    """Plan one requested table (plain, partition or partitioned tree).

    ``extras`` maps oid -> the per-relation values ``leaf_plan`` reads (plus ``has_inherited_stats`` for
    parents). Returns ``{"relations": [{schema, name, kind, decisions, actions}], "actions": [...]}``, with
    leaves first (in tree order) and parent ANALYZE steps last, so parents see their partitions' new state.
    """
    relations = table["relations"]
    ordered = sorted(relations.values(), key=lambda e: (e["level"], e["name"]))
    parents = [e for e in ordered if e["relkind"] == "p"]
    leaves = [e for e in ordered if e["relkind"] == "r"]
    only = version_num >= 180000
    root = table["root"] if table.get("root") else relations[table["oid"]]
    out_relations, leaf_actions = [], []
    first_pass = {}
    for leaf in leaves:
        decisions, actions = leaf_plan(leaf, extras.get(leaf["oid"], {}), options, settings)
        first_pass[leaf["oid"]] = (decisions, actions)
    parent_due = {}
    for parent in sorted(parents, key=lambda e: -e["level"]):
        below = descendants(relations, parent["oid"])
        below_leaves = [e for e in below if e["relkind"] == "r"]
        work = [
            e["name"]
            for e in below_leaves
            if any(a["action"] != "reloptions" for a in first_pass[e["oid"]][1])
            or first_pass[e["oid"]][0]["analyze"]["due"]
        ]
        work += [e["name"] for e in below if parent_due.get(e["oid"], {}).get("due")]
        parent_due[parent["oid"]] = parent_analyze_decision(
            options["analyze"],
            parent["stats"],
            extras.get(parent["oid"], {}).get("has_inherited_stats"),
            [(e["name"], e["stats"]) for e in below_leaves],
            work,
            parent_trigger(parent, below_leaves, settings),
        )
    cascade = None
    if not only and root["relkind"] == "p" and any(d["due"] for d in parent_due.values()):
        # Before 18 there is no ANALYZE ONLY: ANALYZE root analyzes every partition and sub-parent with it.
        cascade = display_name(root["schema"], root["name"])
        root_decision = parent_due[root["oid"]]
        if not root_decision["due"]:
            subs = [e["name"] for e in parents if parent_due[e["oid"]]["due"]]
            root_decision.update(due=True, reason="sub-partitioned parents due: %s" % ", ".join(sorted(subs)))
    for leaf in leaves:
        if cascade:
            decisions, actions = leaf_plan(
                leaf, extras.get(leaf["oid"], {}), dict(options, covered_by_parent=cascade), settings
            )
        else:
            decisions, actions = first_pass[leaf["oid"]]
        leaf_actions.extend(actions)
        out_relations.append(
            {
                "schema": leaf["schema"],
                "name": leaf["name"],
                "oid": leaf["oid"],
                "kind": "partition" if leaf["is_partition"] else "plain",
                "decisions": decisions,
                "actions": actions,
            }
        )
    parent_actions = []
    for parent in sorted(parents, key=lambda e: -e["level"]):
        decision = parent_due[parent["oid"]]
        actions = []
        if decision["due"] and (only or parent["oid"] == root["oid"]):
            if cascade and parent["oid"] == root["oid"]:
                decision["note"] = "PostgreSQL < 18: ANALYZE of the parent also analyzes every partition"
            actions.append(
                {
                    "action": "analyze",
                    "reason": decision["reason"],
                    "step": Step(
                        analyze_sql(parent["schema"], parent["name"], only=only),
                        decision["reason"],
                        lock=SHARE_UPDATE_EXCLUSIVE,
                        targets=[(parent["schema"], parent["name"])],
                        transactional=False,
                    ),
                }
            )
        elif decision["due"]:
            decision["note"] = "analyzed through ANALYZE %s" % cascade
        parent_actions.extend(actions)
        out_relations.append(
            {
                "schema": parent["schema"],
                "name": parent["name"],
                "oid": parent["oid"],
                "kind": "partitioned",
                "decisions": {"analyze": decision},
                "actions": actions,
            }
        )
    # reloption changes first, in one transaction: a bad value rolls them all back before any vacuum ran
    all_actions = leaf_actions + parent_actions
    settings_first = [a for a in all_actions if a["action"] == "reloptions"]
    rest = [a for a in all_actions if a["action"] != "reloptions"]
    return {"relations": out_relations, "actions": settings_first + rest}


def repack_availability(
    extension: dict[str, Any] | None, binary: str | None, binary_version: str | None, superuser: bool, version_num: int
) -> RepackAvailability:
    """Say whether pg_repack can rewrite in this database, and if not, why and how to fix it (pure).

    ``extension`` is ``{"version", "schema"}`` or None. Returns ``(ok, reason)``.
    """
    major = int(version_num) // 10000
    install = (
        "install it on the database host (Debian/Ubuntu: apt-get install postgresql-%d-repack; "
        "RHEL: dnf install pg_repack_%d) and run CREATE EXTENSION pg_repack in the database" % (major, major)
    )
    if not extension:
        return RepackAvailability(False, "the pg_repack extension is not installed in this database: " + install)
    if not binary:
        return RepackAvailability(
            False,
            "no pg_repack program found on this host (pg_repack_path, PATH, /usr/lib/postgresql/%d/bin): " % major
            + install,
        )
    if binary_version != extension["version"]:
        return RepackAvailability(
            False,
            "pg_repack program %s does not match the extension version %s in the database: install "
            "the matching package or ALTER EXTENSION pg_repack UPDATE" % (binary_version, extension["version"]),
        )
    if not superuser:
        return RepackAvailability(False, "pg_repack needs a superuser connection (it creates triggers and swaps files)")
    return RepackAvailability(True, "pg_repack %s available" % binary_version)


def repack_argv(binary: str, conn_kwargs: dict[str, Any], schema: str, name: str, lock_timeout_ms: int) -> list[str]:
    """Return the pg_repack command line (argv) that rewrites one table online; it never holds the password.

    ``--no-kill-backend``: on lock contention pg_repack gives up instead of cancelling other sessions, and
    the module retries, then fails naming the blocker, like every other step.
    """
    argv = [
        binary,
        "--no-order",
        "--no-kill-backend",
        "--no-analyze",
        "--wait-timeout=%d" % max(1, int(math.ceil(lock_timeout_ms / 1000.0))),
        "--table=%s" % display_name(schema, name),
        "--dbname=%s" % conn_kwargs.get("dbname", "postgres"),
    ]
    for key, flag in (("host", "--host"), ("port", "--port"), ("user", "--username")):
        if conn_kwargs.get(key):
            argv.append("%s=%s" % (flag, conn_kwargs[key]))
    argv.append("--no-password")
    return argv


def repack_env(conn_kwargs: dict[str, Any]) -> dict[str, str]:
    """Return the libpq variables pg_repack connects with: the password and TLS settings the module uses."""
    env = {"PGPASSWORD": conn_kwargs.get("password") or ""}
    for key, var in (
        ("sslmode", "PGSSLMODE"),
        ("sslrootcert", "PGSSLROOTCERT"),
        ("sslcert", "PGSSLCERT"),
        ("sslkey", "PGSSLKEY"),
    ):
        if conn_kwargs.get(key):
            env[var] = conn_kwargs[key]
    return env


def render_command(argv: Sequence[str]) -> str:
    """Return a command line as shown in the result (it never holds the password: that travels in PGPASSWORD)."""
    return " ".join(a if re.match(r"^[\w@%+=:,./-]+$", a) else "'%s'" % a.replace("'", "'\"'\"'") for a in argv)


def all_actions(gathered: Gathered) -> list[Action]:
    """Return every action in execution order: all reloption changes first (one transaction), then the rest."""
    actions = [a for t in gathered["tables"] for a in t["plan"]["actions"]]
    return [a for a in actions if a["action"] == "reloptions"] + [a for a in actions if a["action"] != "reloptions"]


def counted_before(gathered: Gathered) -> dict[int, int]:
    """Return ``{oid: maintenance count}`` of every leaf this run vacuums or analyzes, as read before the run.

    An action on a partitioned parent counts for every leaf below it (VACUUM and, before 18, ANALYZE cascade).
    """
    leaves = {}
    for table in gathered["tables"]:
        relations = table["table"]["relations"]
        for entry in relations.values():
            below = [entry] if entry["relkind"] == "r" else descendants(relations, entry["oid"])
            leaves[(entry["schema"], entry["name"])] = [e for e in below if e["relkind"] == "r"]
    before = {}
    for action in all_actions(gathered):
        if action["action"] == "reloptions":
            continue
        for target in action.get("targets") or (action["step"].targets if "step" in action else ()):
            for entry in leaves.get(tuple(target), []):
                stats = entry["stats"]
                keys = ("vacuum_count", "autovacuum_count", "analyze_count", "autoanalyze_count")
                before[entry["oid"]] = sum(stats.get(k) or 0 for k in keys)
    return before


def _sizes(entry):
    if not entry:
        return None
    heap, toast, index = entry["heap_bytes"] or 0, entry["toast_bytes"] or 0, entry["index_bytes"] or 0
    return {"heap_bytes": heap, "toast_bytes": toast, "index_bytes": index, "total_bytes": heap + toast + index}


def _json_action(action, conn):
    out = {"action": action["action"], "reason": action["reason"]}
    if "step" in action:
        out["sql"] = action["step"].render(conn)
        out["lock"] = action["step"].lock
    else:
        out["command"] = render_command(action["command"])
        out["lock"] = action.get("lock")
    for key in ("method", "duration_ms", "output"):
        if key in action:
            out[key] = action[key]
    return out


def report(
    conn: Connection, gathered: Gathered, after: dict[int, dict[str, Any]] | None = None
) -> list[dict[str, Any]]:
    """Return the ``tables`` result: per relation its decisions (with numbers), actions (SQL, reason, lock,
    duration) and sizes before / after; ``after`` maps oid -> relation entry re-read after the run."""
    out = []
    for item in gathered["tables"]:
        table, plan = item["table"], item["plan"]
        rels = []
        for rel in plan["relations"]:
            entry = table["relations"].get(rel["oid"])
            data = {
                "schema": rel["schema"],
                "name": rel["name"],
                "kind": rel["kind"],
                "decisions": rel["decisions"],
                "actions": [_json_action(a, conn) for a in rel["actions"]],
                "sizes_before": _sizes(entry),
            }
            if after is not None:
                data["sizes_after"] = _sizes(after.get(rel["oid"]))
                later = after.get(rel["oid"])
                if later:
                    data["stats_after"] = {
                        "n_dead_tup": later["stats"]["n_dead_tup"],
                        "n_mod_since_analyze": later["stats"]["n_mod_since_analyze"],
                    }
            data["duration_ms"] = sum(a.get("duration_ms", 0) for a in rel["actions"])
            rels.append(data)
        out.append(
            {
                "schema": table["schema"],
                "name": table["name"],
                "relations": rels,
                "summary": [
                    a["action"] + " " + display_name(r["schema"], r["name"])
                    for r in plan["relations"]
                    for a in r["actions"]
                ],
                "duration_ms": sum(r["duration_ms"] for r in rels),
            }
        )
    return out
