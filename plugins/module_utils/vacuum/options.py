# Copyright: (c) 2026, SIGETI data platform team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The vacuum module's options and per-table storage parameters, as pure functions.

Validation of the options, autovacuum triggers from the reloptions, and the reloption changes to make.
"""

from __future__ import annotations

import math
from typing import Any, TypedDict

from ansible_collections.sigeti.dwh.plugins.module_utils.core.errors import InvalidInput
from ansible_collections.sigeti.dwh.plugins.module_utils.core.units import parse_size


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


def as_number(value: Any, default: float) -> float:
    """``value`` as a float (a reloption or setting is text), ``default`` when it is missing or not a number."""
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
    tuples = max(as_number(reltuples, 0), 0.0)

    def option(name, default):
        return as_number(reloptions.get(name, settings.get(name, default)), default)

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
    tuples = max(as_number(reltuples, 0), 0.0)
    threshold = as_number(
        reloptions.get("autovacuum_vacuum_insert_threshold", settings.get("autovacuum_vacuum_insert_threshold", 1000)),
        1000,
    )
    if threshold < 0:
        return None
    scale = as_number(
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
