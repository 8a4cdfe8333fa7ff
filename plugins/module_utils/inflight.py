# Copyright: (c) 2026, SIGETI data platform team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Migrations started and not finished, as every module reports them (pure).

A killed migration keeps its capture triggers logging every write and refusing TRUNCATE until a run resumes it or
``migrate: abandon`` removes it; nobody notices unless every module says so.
"""

from __future__ import annotations

from typing import Any

from ansible_collections.sigeti.dwh.plugins.module_utils.identifiers import display_name

STALE_SECONDS = 86400  # one day: an unattended weekly schedule would otherwise leave it a week


def describe(row: dict[str, Any]) -> dict[str, Any]:
    """Return one in-flight migration (a ``catalog.migrations_in_flight`` row) for a module result: phase, mode,
    progress and ages."""
    total = row.get("total_pages") or 0
    done = min(row.get("next_page") or 0, total)
    return {
        "table": display_name(row["schema_name"], row["table_name"]),
        "mode": row["mode"],
        "phase": row["phase"],
        "rows_copied": row["rows_copied"],
        "copy_percent": round(100.0 * done / total, 1) if total else None,
        "started_at": row["started_at"],
        "updated_at": row["updated_at"],
        "age_seconds": row["age_seconds"],
        "idle_seconds": row["idle_seconds"],
    }


def stale_warnings(rows: list[dict[str, Any]], limit: int = STALE_SECONDS) -> list[str]:
    """Return a warning for each migration started more than ``limit`` seconds ago: what it costs, what to do."""
    return [
        "a %s migration of %s started %s (%.1f days ago) is still at phase %s: its capture triggers log every write "
        "and refuse TRUNCATE until it ends. What to do: run partitioned_table on it again to resume, or with "
        "migrate: abandon to remove it (the original table is kept)."
        % (
            row["mode"],
            display_name(row["schema_name"], row["table_name"]),
            row["started_at"],
            row["age_seconds"] / 86400.0,
            row["phase"],
        )
        for row in rows
        if (row.get("age_seconds") or 0) > limit
    ]
