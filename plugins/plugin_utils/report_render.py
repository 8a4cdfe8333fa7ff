# Copyright: (c) 2026, SIGETI data platform team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The report's files from its document: HTML and Markdown pages, JSON, the Prometheus textfile (controller side).

Every value is escaped for where it goes, by the environment rather than by each template remembering to:

* HTML pages render in a Jinja environment with ``autoescape`` on: every ``{{ }}`` is escaped (text and quoted
  attributes alike), only the templates' own markup is not. Ansible's template module cannot do this (its Jinja
  ignores ``{% autoescape %}``), which is how a partition named ``<script>`` once ran in the setup page.
* Markdown renders with a ``finalize`` that escapes every value for CommonMark/GFM: HTML (``<``, ``&``), emphasis,
  links, code spans and table cells (``|``); a newline becomes a space, so a value stays in its table row.
* Prometheus label values escape ``\\``, ``"`` and newlines, as the text format asks.
* JSON is written by ``json.dumps``.
"""

from __future__ import annotations

import json
import os
import re
from typing import Any, Mapping, Sequence

from jinja2 import Environment, FileSystemLoader, StrictUndefined
from markupsafe import Markup

from ansible_collections.sigeti.dwh.plugins.module_utils.core.units import format_bytes
from ansible_collections.sigeti.dwh.plugins.module_utils.report.view import short_label, table_view

PAGES = {"report.html": "report.html.j2", "report.md": "report.md.j2"}
INDEX = "index.html.j2"
HISTORY_SHOWN = 24  # snapshots on the size-over-time chart
# Markdown characters that start markup anywhere in a line; ``_`` only matters at a word's edge (below).
_MD_SPECIAL = frozenset("\\`*[]<>&|~!#")


def md_escape(value: Any) -> str:
    """``value`` as literal text in CommonMark/GFM (tables included): no HTML, emphasis, link, code or cell break
    can come from it. Markup (the templates' own) passes unchanged."""
    if isinstance(value, Markup):
        return str(value)
    text = "" if value is None else str(value)
    out = []
    for index, char in enumerate(text):
        if char in "\r\n":
            out.append(" ")
        elif char in _MD_SPECIAL:
            out.append("\\" + char)
        elif char == "_" and not (
            index > 0 and text[index - 1].isalnum() and index + 1 < len(text) and text[index + 1].isalnum()
        ):
            out.append("\\_")  # intraword underscores (fait_attributions) start no emphasis: left as written
        else:
            out.append(char)
    return "".join(out)


def number(value: Any) -> str:
    """``12,345`` for a count; ``-`` when unknown."""
    if value is None:
        return "-"
    if isinstance(value, float) and not value.is_integer():
        return "%.1f" % value
    return format(int(value), ",")


def size(value: Any) -> str:
    """A byte count in binary units, the collection's one rule (core/units.py); ``-`` when unknown."""
    return "-" if value is None else format_bytes(float(value))


def _environment(templates: str, markdown: bool) -> Environment:
    env = Environment(
        loader=FileSystemLoader(templates),
        autoescape=not markdown,
        finalize=md_escape if markdown else None,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters.update(size=size, num=number, short=short_label, basename=lambda p: os.path.basename(str(p)))
    return env


def render_pages(document: Mapping[str, Any], templates: str) -> dict[str, str]:
    """report.html and report.md of ``document`` (templates from the folder ``templates``)."""
    views = {t["name"]: table_view(t) for t in document["tables"]}
    pages = {}
    for name, template in PAGES.items():
        env = _environment(templates, markdown=name.endswith(".md"))
        pages[name] = env.get_template(template).render(doc=document, views=views, history=history_points(document))
    return pages


def history_points(document: Mapping[str, Any], count: int = HISTORY_SHOWN) -> dict[str, list[tuple[str, int]]]:
    """Per table, ``(date, total bytes)`` of the ``count`` latest snapshots holding it: the size-over-time chart."""
    points: dict[str, list[tuple[str, int]]] = {t["name"]: [] for t in document["tables"]}
    for entry in document["history"][-count:]:
        for name, sizes in (entry.get("tables") or {}).items():
            if name in points and isinstance(sizes, Mapping) and sizes.get("total_bytes") is not None:
                points[name].append((entry["date"], int(sizes["total_bytes"])))
    return points


def render_index(document: Mapping[str, Any], runs: Sequence[Mapping[str, Any]], keep: int, templates: str) -> str:
    """index.html: the kept runs (``summary.json`` of each, newest first) and the latest report."""
    env = _environment(templates, markdown=False)
    shown = [kept_summary(run) for run in reversed(runs)]
    return env.get_template(INDEX).render(doc=document, runs=shown, keep=keep)


def kept_summary(run: Mapping[str, Any]) -> dict[str, Any]:
    """A run's summary.json as index.html reads it, whatever version of the report wrote it (or a hand edit):
    every key present, lists as lists, one size before the run per table."""
    tables = [t for t in run.get("tables") or [] if isinstance(t, (list, tuple)) and len(t) == 2]
    before = list(run.get("before") or [])
    return {
        "folder": str(run.get("folder") or ""),
        "generated_at": str(run.get("generated_at") or ""),
        "playbook": str(run.get("playbook") or ""),
        "check_mode": bool(run.get("check_mode")),
        "changed": [str(c) for c in run.get("changed") or []],
        "backup": run.get("backup"),
        "tables": tables,
        "before": (before + [None] * len(tables))[: len(tables)],
        "kept": [k for k in run.get("kept") or [] if isinstance(k, (list, tuple)) and len(k) == 2],
        "all_bytes": run.get("all_bytes"),
    }


def data_files(document: Mapping[str, Any], summary: Mapping[str, Any]) -> dict[str, str]:
    """report.json (the document, but the history, kept in its own file), history.json and summary.json."""
    report = {k: v for k, v in document.items() if k != "history"}
    return {
        "report.json": json.dumps(report, indent=1, ensure_ascii=False, default=str) + "\n",
        "history.json": json.dumps(document["history"], indent=1, ensure_ascii=False) + "\n",
        "summary.json": json.dumps(summary, ensure_ascii=False) + "\n",
    }


def run_summary(document: Mapping[str, Any], folder: str) -> dict[str, Any]:
    """What index.html shows of one run: playbook, time, what changed, the backup, sizes before and after."""
    return {
        "playbook": document["playbook"],
        "check_mode": document["check_mode"],
        "generated_at": document["generated_at"],
        "folder": folder,
        "changed": document["summary"],
        "backup": document["run"]["backup"],
        "tables": [[t["name"], t["total_bytes"]] for t in document["tables"]],
        "before": [t["before_bytes"] for t in document["tables"]],
        "kept": [[k["name"], k["total_bytes"]] for k in document["kept"]],
        "all_bytes": document["totals"]["all_bytes"],
    }


def run_folder(document: Mapping[str, Any]) -> str:
    """``<UTC time>-<playbook>``: sorted by name is sorted by age."""
    stamp = document["generated_at"].replace("-", "").replace(":", "")
    playbook = re.sub(r"[^a-z0-9_.-]+", "-", (document["playbook"] or "run").lower()).strip("-")[:40] or "run"
    return "%s-%s" % (stamp, playbook)


def textfile_name(host: str) -> str:
    """The Prometheus textfile of one inventory host: one flat folder holds every host's (node_exporter's textfile
    collector reads no sub-folder), and two hosts never share a file."""
    return "sigeti_dwh_%s.prom" % re.sub(r"[^A-Za-z0-9_.-]", "_", host)


# -- Prometheus textfile ------------------------------------------------------------------------------------------

METRICS = (
    ("sigeti_dwh_report_timestamp_seconds", "When this report was generated."),
    (
        "sigeti_dwh_report_success",
        "1 when every requested table was read by this run, 0 otherwise (alert on 0 and on an old timestamp).",
    ),
    ("sigeti_dwh_table_present", "1 when a requested table exists, 0 when it is missing."),
    ("sigeti_dwh_table_bytes", "Total bytes (heap, TOAST, indexes) of a table, summed over its partitions."),
    (
        "sigeti_dwh_kept_original_bytes",
        "Total bytes of the original a migration kept (<table>_unpartitioned) until drop_source.",
    ),
    ("sigeti_dwh_archive_bytes", "Total bytes of the tables in an archive schema (retention action archive)."),
    ("sigeti_dwh_partition_bytes", "Total bytes (heap, TOAST, indexes) of one leaf partition."),
    ("sigeti_dwh_partitions", "Partitions of a partitioned table."),
    ("sigeti_dwh_periods_ahead", "Periods covered by partitions after the current one (alert when below premake)."),
    ("sigeti_dwh_default_partition_rows", "Rows sitting in the default partition (they block new partitions)."),
    ("sigeti_dwh_dead_tuples", "Dead tuples (n_dead_tup) of each leaf relation."),
    (
        "sigeti_dwh_vacuum_trigger_tuples",
        "Dead tuples at which autovacuum vacuums each leaf relation (threshold + scale factor x rows).",
    ),
    (
        "sigeti_dwh_last_vacuum_age_seconds",
        "Seconds since the last (auto)vacuum of each leaf relation; +Inf when never vacuumed.",
    ),
)


def label_value(value: Any) -> str:
    """A label value in the Prometheus text format: backslash, double quote and newline escaped."""
    return str(value).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _labels(base: str, **labels: Any) -> str:
    extra = ",".join('%s="%s"' % (k, label_value(v)) for k, v in labels.items())
    return "{%s%s}" % (base, ("," + extra) if extra else "")


def _samples(document: Mapping[str, Any], base: str) -> dict[str, list[str]]:
    samples: dict[str, list[str]] = {name: [] for name, _help in METRICS}

    def add(metric: str, value: Any, **labels: Any) -> None:
        samples[metric].append("%s%s %s" % (metric, _labels(base, **labels), value))

    ok = not document["errors"] and not document["missing"]
    add("sigeti_dwh_report_timestamp_seconds", document["generated_epoch"])
    add("sigeti_dwh_report_success", 1 if ok else 0)
    for name in document["requested"]:
        if name not in document["unreadable"]:
            add("sigeti_dwh_table_present", 0 if name in document["missing"] else 1, table=name)
    for kept in document["kept"]:
        add("sigeti_dwh_kept_original_bytes", kept["total_bytes"], table=kept["of"], original=kept["name"])
    for archive in document["archives"]:
        add("sigeti_dwh_archive_bytes", archive["total_bytes"], schema=archive["schema"])
    for t in document["tables"]:
        _table_samples(add, t, document["generated_epoch"])
    return samples


def _table_samples(add, t: Mapping[str, Any], now: int) -> None:
    name = t["name"]
    add("sigeti_dwh_table_bytes", t["total_bytes"], table=name)
    for p in t["partitions"]:
        if p["leaf"]:
            add("sigeti_dwh_partition_bytes", p["total_bytes"], table=name, partition=p["name"])
    if t["kind"] == "partitioned":
        add("sigeti_dwh_partitions", t["partition_count"] or 0, table=name)
        add("sigeti_dwh_periods_ahead", t["periods_ahead"] or 0, table=name)
        if t["default_partition"]:
            add("sigeti_dwh_default_partition_rows", t["default_rows"] or 0, table=name)
    for v in t["vacuum"]:
        add("sigeti_dwh_dead_tuples", v["n_dead_tup"], table=name, relation=v["relation"])
        if v["vacuum_trigger"] is not None:
            add("sigeti_dwh_vacuum_trigger_tuples", int(v["vacuum_trigger"]), table=name, relation=v["relation"])
        age = "+Inf" if v["last_vacuum_epoch"] is None else max(now - v["last_vacuum_epoch"], 0)
        add("sigeti_dwh_last_vacuum_age_seconds", age, table=name, relation=v["relation"])


def prometheus_text(document: Mapping[str, Any]) -> str:
    """The textfile node_exporter's textfile collector serves: every metric with its HELP and TYPE (gauges)."""
    base = 'host="%s",database="%s"' % (label_value(document["host"]), label_value(document["database"]))
    samples = _samples(document, base)
    lines = []
    for name, help_text in METRICS:
        lines += ["# HELP %s %s" % (name, help_text), "# TYPE %s gauge" % name]
        lines += samples[name]
    return "\n".join(lines) + "\n"
