# -*- coding: utf-8 -*-
# Copyright: (c) 2026, SIGETI data platform team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Vacuum and analyze decisions from statistics (pure functions)."""

from __future__ import annotations


def _number(value, default):
    try:
        return float(value)
    except (TypeError, ValueError):
        return float(default)


def autovacuum_triggers(reloptions, settings, reltuples, toast=False):
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
