# Copyright: (c) 2026, SIGETI data platform team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Migrations started and not finished, as every module reports them (pure).

A killed migration keeps its capture triggers logging every write and refusing TRUNCATE until a run resumes it or
``migrate: abandon`` removes it; nobody notices unless every module says so.
"""

from __future__ import annotations

from typing import Any

from ansible_collections.sigeti.dwh.plugins.module_utils.core.identifiers import display_name

STALE_SECONDS = 86400  # one day: an unattended weekly schedule would otherwise leave it a week


def describe(row: dict[str, Any]) -> dict[str, Any]:
    """Return one in-flight migration (a ``catalog.migrations_in_flight`` row) for a module result: phase, mode,
    progress of the copy and ages.

    The copy commits its progress with each batch, so ``copy_percent`` (heap pages read), ``rows_copied``,
    ``rows_per_second`` and ``eta_seconds`` are those of the last batch committed (at ``updated_at``); the rate is
    the one of the run copying (a run resumed after a kill is measured from its own start). ``rows_total`` is the planner's estimate taken when
    the copy started (or, for a state row of an older version, extrapolated from the pages read). Offline runs copy
    in their one transaction (their row, ``copy``, only says the shadow is committed) and attach runs copy nothing:
    no copy progress is visible for them.
    """
    return dict(
        table=display_name(row["schema_name"], row["table_name"]),
        mode=row["mode"],
        phase=row["phase"],
        **copy_progress(row),
        started_at=row["started_at"],
        updated_at=row["updated_at"],
        age_seconds=row["age_seconds"],
        idle_seconds=row["idle_seconds"],
    )


def copy_progress(row: dict[str, Any]) -> dict[str, Any]:
    """Return ``rows_copied``, ``rows_total``, ``copy_percent``, ``rows_per_second`` and ``eta_seconds`` of a state
    row (``total_pages``, ``next_page``, ``rows_copied``, ``rows_total``; ``progress_seconds`` since this run's copy
    started at ``since_page`` with ``since_rows`` copied): None where unknown."""
    online = row.get("mode") == "online"
    copying = online and row.get("phase") == "copy"
    total = int(row.get("total_pages") or 0)
    done = min(int(row.get("next_page") or 0), total)
    copied = int(row.get("rows_copied") or 0)
    seconds = float(row.get("progress_seconds") or 0)
    rows_total = row.get("rows_total")
    if rows_total is None and online and done:
        rows_total = int(round(copied * float(total) / done))
    if not online:
        percent = None
    elif not copying:
        percent = 100.0  # the copy is over (the pages added since are in the change log)
    else:
        percent = round(100.0 * done / total, 1) if total else 0.0
    since_page = min(int(row.get("since_page") or 0), done)
    since_rows = min(int(row.get("since_rows") or 0), copied)
    measured = copying and done > since_page and seconds > 0
    return {
        "rows_copied": copied,
        "rows_total": rows_total,
        "copy_percent": percent,
        "rows_per_second": int(round((copied - since_rows) / seconds)) if measured else None,
        "eta_seconds": int(round(seconds * (total - done) / (done - since_page))) if measured else None,
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
