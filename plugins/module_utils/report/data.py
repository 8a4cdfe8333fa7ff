# Copyright: (c) 2026, SIGETI data platform team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The health report's document (report.json), built from what ``table_info`` read and this run's results (pure).

The report role reads (one ``table_info`` per declared table, per kept original, per archive schema) and writes;
everything between is decided here: what was read, missing or unreadable; each table's figures; a migration named
as such (partitions created, rows moved, the original kept, its size and how to drop it); the disk the kept
originals and archive schemas take; the size history. Linear in partitions: one pass over each table's
partitions and vacuum entries, dictionaries for every lookup.
"""

from __future__ import annotations

import dataclasses
import datetime
from typing import Any, Iterable, Mapping, Sequence

from ansible_collections.sigeti.dwh.plugins.module_utils.core.identifiers import InvalidName, split_name
from ansible_collections.sigeti.dwh.plugins.module_utils.core.units import format_bytes

# What each read of the report role is for (plugins/filter/report_reads.py names them).
DECLARED, EXTRA, KEPT, ARCHIVE = "declared", "extra", "kept", "archive"
ABSENT = "do not exist"  # table_info's message for an absent table or schema
NAMES_SHOWN = 3  # names spelled out in a one-line summary of a list (the first ones and the last)


@dataclasses.dataclass(frozen=True)
class RunResults:
    """What this run's roles registered (each may be absent: the report runs alone too)."""

    partitioning: Sequence[Mapping[str, Any]] = ()
    compression: Sequence[Mapping[str, Any]] = ()
    vacuum: Sequence[Mapping[str, Any]] = ()
    range_queries: Sequence[Mapping[str, Any]] = ()
    backup: str | None = None
    planned: Sequence[Any] = ()


@dataclasses.dataclass(frozen=True)
class ReportContext:
    """Everything the document needs besides the reads: the host, the declared tables, the time, the run."""

    title: str
    host: str
    database: str
    now: datetime.datetime  # timezone-aware
    declared: Sequence[Mapping[str, Any]] = ()
    extra_tables: Sequence[str] = ()
    sizes_before: Mapping[str, int] = dataclasses.field(default_factory=dict)
    history: Sequence[Any] = ()
    history_days: int = 400
    check_mode: bool = False
    playbook: str = ""
    run: RunResults = RunResults()


@dataclasses.dataclass(frozen=True)
class ReadOutcome:
    """The report role's reads sorted: tables read (with what each was read for), the absent, the unreadable."""

    tables: tuple[tuple[Mapping[str, Any], Mapping[str, Any]], ...]  # (read item, table_info table)
    server: Mapping[str, Any]
    missing: tuple[str, ...]
    errors: tuple[str, ...]  # "<table>: <why>"
    unreadable: tuple[str, ...]  # the tables of errors


def resolved(name: str) -> str:
    """``schema.table`` as the catalog spells it (``dwh_weird."a""b\\c"`` -> ``dwh_weird.a"b\\c``): the one spelling
    of a table in the report and its metrics. A name that does not parse is kept as written."""
    try:
        schema, table = split_name(name)
    except InvalidName:
        return name
    return "%s.%s" % (schema, table)


def sort_reads(results: Iterable[Mapping[str, Any]]) -> ReadOutcome:
    """Sort the registered loop results of the reads: tables read, tables absent (declared or extra only: a kept
    original or archive schema that is absent is simply not there), and reads that failed otherwise."""
    tables, missing, errors, unreadable, server = [], [], [], [], {}
    for result in results:
        if result.get("skipped"):
            continue
        item = result.get("item") or {}
        if not isinstance(item, Mapping):
            item = {"label": str(item), "role": DECLARED, "tables": [str(item)]}
        role = item.get("role", DECLARED)
        if not result.get("failed") and "tables" in result:
            server = server or result.get("server") or {}
            tables.extend((item, table) for table in result["tables"])
            continue
        message = str(result.get("msg", "")).strip()
        names = [resolved(n) for n in item.get("tables") or []] or ["schema %s" % s for s in item.get("schemas") or []]
        names = names or [str(item.get("label", "?"))]
        if ABSENT in message:
            if role in (DECLARED, EXTRA):
                missing.extend(names)
            continue
        unreadable.extend(names)
        errors.append("%s: %s" % (", ".join(names), message or "unknown error"))
    return ReadOutcome(tuple(tables), server, tuple(missing), tuple(errors), tuple(unreadable))


def parse_time(value: Any) -> datetime.datetime | None:
    """A timestamp as table_info writes it (ISO, space-separated) as a datetime; None when absent or unreadable."""
    if not value:
        return None
    if isinstance(value, datetime.datetime):
        return value
    try:
        return datetime.datetime.fromisoformat(str(value))
    except ValueError:
        return None


def latest(*values: Any) -> datetime.datetime | None:
    """The latest of a few timestamps (manual and automatic vacuum, say); None when none is set."""
    times = [t for t in (parse_time(v) for v in values) if t is not None]
    return max(times) if times else None


def vacuum_row(entry: Mapping[str, Any]) -> dict[str, Any]:
    """One leaf relation's vacuum figures: dead tuples against autovacuum's trigger, last (auto)vacuum/analyze."""
    live = int(entry.get("n_live_tup") or 0)
    dead = int(entry.get("n_dead_tup") or 0)
    last = latest(entry.get("last_vacuum"), entry.get("last_autovacuum"))
    analyzed = latest(entry.get("last_analyze"), entry.get("last_autoanalyze"))
    trigger = entry.get("vacuum_trigger")
    return {
        "relation": entry.get("name"),
        "n_live_tup": live,
        "n_dead_tup": dead,
        "dead_share": round(dead / float(live + dead), 4) if live + dead else 0,
        "vacuum_trigger": trigger,
        # autovacuum would have vacuumed it by now: dead tuples at or above its trigger point
        "vacuum_due": trigger is not None and dead > 0 and dead >= int(trigger),
        "last_vacuum": last.isoformat(sep=" ") if last else None,
        "last_vacuum_epoch": int(last.timestamp()) if last else None,
        "last_analyze": analyzed.isoformat(sep=" ") if analyzed else None,
        "toast_dead_tup": int((entry.get("toast") or {}).get("n_dead_tup") or 0),
    }


def partition_row(entry: Mapping[str, Any], parents: set[Any]) -> dict[str, Any]:
    """One partition: bounds, rows and bytes, and whether it holds rows itself (a leaf) or partitions."""
    oid = entry.get("oid")
    return {
        "name": entry.get("name"),
        "schema": entry.get("schema"),
        "oid": oid,
        "parent_oid": entry.get("parent_oid"),
        "level": entry.get("level"),
        "low": entry.get("low"),
        "high": entry.get("high"),
        "is_default": bool(entry.get("is_default")),
        "leaf": (oid not in parents) if oid is not None else entry.get("rows") is not None,
        "rows": entry.get("rows"),
        "total_bytes": int((entry.get("sizes") or {}).get("total_bytes") or 0),
    }


def compression_figures(table: Mapping[str, Any], declared: Mapping[str, Any] | None) -> dict[str, Any]:
    """Configured and measured compression of the columns worth showing: those holding compressed values, and
    those the declaration sets."""
    measured = table.get("compression_measured") or {}
    asked = ((declared or {}).get("compression") or {}).get("columns") or {}
    shown = {}
    for column, m in (measured.get("columns") or {}).items():
        if (m.get("pglz") or 0) + (m.get("lz4") or 0) > 0 or column in asked:
            shown[column] = {
                k: (m.get(k) or 0) if k not in ("avg_bytes", "max_bytes") else m.get(k)
                for k in ("pglz", "lz4", "uncompressed", "null", "avg_bytes", "max_bytes")
            }
    return {
        "compression_configured": {
            c["name"]: c.get("compression") for c in table.get("columns") or [] if c.get("toastable")
        },
        "compression_measured": shown,
        "compression_sample": {
            "sampled": bool(measured.get("sampled")),
            "sample_percent": measured.get("sample_percent"),
            "rows_read": measured.get("rows_read"),
        },
    }


def tablespace_rows(table: Mapping[str, Any], declared: Mapping[str, Any] | None) -> list[dict[str, Any]]:
    """Bytes of the table's tree per tablespace, each with the tier the declaration puts there (``tier_after``: the
    periods after which partitions live in it; None for a tablespace no declared tier names)."""
    tiers = {
        t.get("tablespace"): t.get("after")
        for t in (declared or {}).get("tiers") or []
        if isinstance(t, Mapping) and t.get("tablespace") is not None
    }
    rows = [
        {"tablespace": name, "bytes": int(size or 0), "tier_after": tiers.pop(name, None)}
        for name, size in (table.get("tablespaces") or {}).items()
    ]
    # a declared tier nothing lives in yet: shown empty, so the page says where the old periods will go
    rows.extend({"tablespace": name, "bytes": 0, "tier_after": after} for name, after in sorted(tiers.items()))
    return rows


def table_entry(
    table: Mapping[str, Any], declared: Mapping[str, Any] | None, before: Mapping[str, int]
) -> dict[str, Any]:
    """One declared or extra table of the report: its figures, partitions and vacuum state."""
    name = "%s.%s" % (table["schema"], table["name"])
    partitions = table.get("partitions") or []
    parents = {p.get("parent_oid") for p in partitions}
    vacuum = [vacuum_row(v) for v in table.get("vacuum") or []]
    entry = {
        "name": name,
        "comment": table.get("comment"),
        "kind": table.get("kind"),
        "sizes": table.get("sizes") or {},
        "total_bytes": int((table.get("sizes") or {}).get("total_bytes") or 0),
        "before_bytes": before.get(name),
        "rows_estimate": table.get("rows_estimate"),
        "declared": declared is not None,
    }
    for key in ("partition_count", "periods_ahead", "covered_until", "current_partition", "default_partition"):
        entry[key] = table.get(key)
    entry.update(
        default_rows=table.get("default_rows"),
        gaps=table.get("gaps") or [],
        overlaps=table.get("overlaps") or [],
        partitions=[partition_row(p, parents) for p in partitions],
        vacuum=vacuum,
        dead_tuples=sum(v["n_dead_tup"] for v in vacuum),
        vacuum_due=[v["relation"] for v in vacuum if v["vacuum_due"]],
        unused_indexes=table.get("unused_indexes") or [],
        invalid_indexes=table.get("invalid_indexes") or [],
        tablespaces=tablespace_rows(table, declared),
    )
    # worth a section when the tree spans tablespaces or the declaration names tiers
    entry["tablespaces_shown"] = len(entry["tablespaces"]) > 1 or any(
        r["tier_after"] is not None for r in entry["tablespaces"]
    )
    entry.update(compression_figures(table, declared))
    return entry


def kept_and_archives(
    reads: Sequence[tuple[Mapping[str, Any], Mapping[str, Any]]],
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The kept originals (``<table>_unpartitioned``) and archive schemas that were found, with their sizes."""
    kept, archives = [], {}
    for item, table in reads:
        size = int((table.get("sizes") or {}).get("total_bytes") or 0)
        if item.get("role") == KEPT:
            kept.append(
                {
                    "name": "%s.%s" % (table["schema"], table["name"]),
                    "of": resolved(item.get("of") or ""),
                    "total_bytes": size,
                    "rows_estimate": table.get("rows_estimate"),
                    "kind": table.get("kind"),
                }
            )
        elif item.get("role") == ARCHIVE:
            entry = archives.setdefault(
                table["schema"],
                {"schema": table["schema"], "of": [resolved(n) for n in item.get("of") or []], "tables": 0},
            )
            entry["tables"] += 1
            entry["total_bytes"] = entry.get("total_bytes", 0) + size
    return kept, list(archives.values())


def declared_by_name(declared: Iterable[Mapping[str, Any]]) -> dict[str, Mapping[str, Any]]:
    """The declared tables by their resolved name."""
    return {resolved(str(t.get("name", ""))): t for t in declared or [] if isinstance(t, Mapping)}


def build_report(results: Iterable[Mapping[str, Any]], context: ReportContext) -> dict[str, Any]:
    """The report's document: every figure the pages, the metrics and report.json show."""
    outcome = sort_reads(results)
    declared = declared_by_name(context.declared)
    tables = [
        table_entry(table, declared.get("%s.%s" % (table["schema"], table["name"])), context.sizes_before)
        for item, table in outcome.tables
        if item.get("role", DECLARED) in (DECLARED, EXTRA)
    ]
    kept, archives = kept_and_archives(outcome.tables)
    requested = [resolved(str(t.get("name", ""))) for t in context.declared or [] if isinstance(t, Mapping)]
    requested += [resolved(str(n)) for n in context.extra_tables or []]
    totals = {
        "tables_bytes": sum(t["total_bytes"] for t in tables),
        "kept_bytes": sum(k["total_bytes"] for k in kept),
        "archive_bytes": sum(a["total_bytes"] for a in archives),
    }
    totals["all_bytes"] = sum(totals.values())
    document = {
        "title": context.title,
        "host": context.host,
        "database": context.database,
        "generated_at": context.now.astimezone(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "generated_epoch": int(context.now.timestamp()),
        "check_mode": bool(context.check_mode),
        "playbook": context.playbook,
        "server": dict(outcome.server),
        "tables": tables,
        "kept": kept,
        "archives": archives,
        "totals": totals,
        "missing": list(outcome.missing),
        "errors": list(outcome.errors),
        "unreadable": list(outcome.unreadable),
        "requested": requested,
        "run": run_results(context.run, kept),
    }
    document["history"] = updated_history(
        context.history, snapshot(document), document["generated_at"][:10], context.history_days
    )
    document["summary"] = run_lines(document)
    return document


# -- this run --------------------------------------------------------------------------------------------------


def run_results(run: RunResults, kept: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """This run's results, per role, as the report shows them."""
    partitioning = []
    for r in _per_table(run.partitioning):
        partitioning.append(
            {
                "name": resolved(r["item"]["name"]),
                "changed": bool(r.get("changed")),
                "failed": bool(r.get("failed")),
                "msg": r.get("msg") if r.get("failed") else None,
                "created": list(r.get("created") or []),
                "detached": list(r.get("detached") or []),
                "dropped": list(r.get("dropped") or []),
                "archived": list(r.get("archived") or []),
                "moved_rows": r.get("moved_rows") or 0,
                "default_rows": r.get("default_rows"),
                "warnings": list(r.get("warnings") or []),
                "migration": migration_entry(r, kept),
            }
        )
    compression = [
        {
            "name": resolved(r["item"]["name"]),
            "changed": bool(r.get("changed")),
            "columns": r.get("columns"),
            "sizes": r.get("sizes"),
            "warnings": list(r.get("warnings") or []),
        }
        for r in _per_table(run.compression)
    ]
    vacuum = [
        {
            "name": resolved(r["item"]["name"]),
            "changed": bool(r.get("changed")),
            "tables": r.get("tables"),
            "warnings": list(r.get("warnings") or []),
        }
        for r in _per_table(run.vacuum)
    ]
    return {
        "partitioning": partitioning,
        "compression": compression,
        "vacuum": vacuum,
        "range_queries": [dict(q) for q in run.range_queries or []],
        "backup": run.backup,
        "planned": list(run.planned or []),
    }


def _per_table(results: Iterable[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    return [
        r
        for r in results or []
        if isinstance(r, Mapping)
        and isinstance(r.get("item"), Mapping)
        and "name" in r["item"]
        and not r.get("skipped")
    ]


def migration_entry(result: Mapping[str, Any], kept: Sequence[Mapping[str, Any]]) -> dict[str, Any] | None:
    """A migration named as such: its mode, the partitions it created, the rows it moved, the original it kept
    (its name and size, and how to drop it) or the partition the original became (attach). None without one.

    Reads the keys of the helpers' contract (``rows_moved``, ``kept_original``, ``drop_hint``) and, while a
    partitioned_table that predates them runs, what it returns instead (``rows_copied``, ``renamed_source``, the
    partitions as created)."""
    migration = result.get("migration")
    if not isinstance(migration, Mapping):
        return None
    if migration.get("abandoned") is not None and not migration.get("mode"):
        return {"mode": "abandon", "abandoned": list(migration.get("abandoned") or [])}
    created = list(result.get("created") or [])
    if not created:
        created = [p.get("name") for p in result.get("partitions") or [] if isinstance(p, Mapping) and p.get("name")]
    rows = migration.get("rows_moved", migration.get("rows_copied"))
    original = migration.get("kept_original")
    if original is None and "kept_original" not in migration and migration.get("renamed_source"):
        original = {"name": migration["renamed_source"], "bytes": None}
    if isinstance(original, Mapping):
        name = resolved(str(original.get("name") or ""))
        found = next((k for k in kept if k["name"] == name), None)
        size = original.get("bytes")
        original = {
            "name": name,
            "bytes": found["total_bytes"] if found and size is None else size,
            "drop_hint": migration.get("drop_hint")
            or "set drop_source: true for %s in dwh_tables and run setup again, or DROP TABLE %s once checked"
            % (resolved(result["item"]["name"]), original.get("name")),
        }
    else:
        original = None
    return {
        "mode": migration.get("mode"),
        "created": created,
        "rows_moved": rows,
        "kept_original": original,
        "attached_partition": migration.get("attached_partition"),
    }


def names_text(names: Sequence[str]) -> str:
    """``none``, ``a, b``, or ``3,650 (a, b, c … z)``: a list of names on one line, whatever its length."""
    if not names:
        return "none"
    if len(names) <= NAMES_SHOWN + 1:
        return ", ".join(names)
    return "%s (%s … %s)" % (format(len(names), ","), ", ".join(names[:NAMES_SHOWN]), names[-1])


def migration_text(name: str, migration: Mapping[str, Any], would: bool) -> str:
    """One line naming a migration: mode, partitions, rows moved, what became of the original."""
    if migration["mode"] == "abandon":
        return "%s: an unfinished migration %s abandoned (removed %s)" % (
            name,
            "would be" if would else "was",
            names_text(migration.get("abandoned") or []),
        )
    rows = migration.get("rows_moved")
    text = "%s: %s a plain table (%s) into %s partitions: %s; %s rows moved" % (
        name,
        "would migrate" if would else "migrated",
        migration.get("mode") or "?",
        format(len(migration["created"]), ","),
        names_text(migration["created"]),
        format(rows, ",") if isinstance(rows, int) else "?",
    )
    kept = migration.get("kept_original")
    if kept:
        text += "; the original is kept as %s (%s): %s" % (kept["name"], format_bytes(kept["bytes"]), kept["drop_hint"])
    elif migration.get("attached_partition"):
        text += "; the original became the partition %s" % migration["attached_partition"]
    return text


def run_lines(document: Mapping[str, Any]) -> list[str]:
    """What this run changed (or would change, in check mode), one line each, for summary.json, index.html and
    the role's last message."""
    would = document["check_mode"]
    lines = []
    for r in document["run"]["partitioning"]:
        if r["failed"]:
            lines.append("partitioning %s failed: %s" % (r["name"], r.get("msg") or "see the task's output"))
        elif r["migration"]:
            lines.append(migration_text(r["name"], r["migration"], would))
        elif r["changed"]:
            parts = ["created %s" % names_text(r["created"]), "detached %s" % names_text(r["detached"])]
            parts.append("dropped %s" % names_text(r["dropped"]))
            if r["archived"]:
                parts.append("archived %s" % names_text(r["archived"]))
            if r["moved_rows"]:
                parts.append("%s rows moved out of the default partition" % format(r["moved_rows"], ","))
            lines.append("%spartitioning %s: %s" % ("would: " if would else "", r["name"], "; ".join(parts)))
    for r in document["run"]["compression"]:
        if r["changed"]:
            lines.append("%scompression %s changed" % ("would: " if would else "", r["name"]))
    for r in document["run"]["vacuum"]:
        if r["changed"]:
            lines.append("vacuum %s: work was %s" % (r["name"], "due (would run)" if would else "due and ran"))
    return lines


# -- history ---------------------------------------------------------------------------------------------------


def snapshot(document: Mapping[str, Any]) -> dict[str, Any]:
    """Today's sizes: each table's total, and the disk of everything reported (kept originals, archives)."""
    return {
        "tables": {t["name"]: {"total_bytes": t["total_bytes"]} for t in document["tables"]},
        "all_bytes": document["totals"]["all_bytes"],
    }


def updated_history(old: Sequence[Any], today: Mapping[str, Any], date: str, keep_days: int) -> list[dict[str, Any]]:
    """The size history with today's snapshot replacing any earlier one of the same day, oldest first, the
    ``keep_days`` newest kept (0 = all). Entries of older reports (per-partition sizes) are cut to the totals."""
    entries = {}
    for entry in old or []:
        if not isinstance(entry, Mapping) or not isinstance(entry.get("date"), str):
            continue
        tables = entry.get("tables") if isinstance(entry.get("tables"), Mapping) else {}
        entries[entry["date"]] = {
            "date": entry["date"],
            "tables": {
                name: {"total_bytes": sizes.get("total_bytes")}
                for name, sizes in tables.items()
                if isinstance(sizes, Mapping)
            },
            "all_bytes": entry.get("all_bytes"),
        }
    entries[date] = dict(today, date=date)
    history = [entries[d] for d in sorted(entries)]
    return history[-keep_days:] if keep_days > 0 else history
