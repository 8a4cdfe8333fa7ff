# Copyright: (c) 2026, SIGETI data platform team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Write the health report on the controller: its document built from the reads and this run's results
(module_utils/report/data.py), its pages and textfile rendered (plugin_utils/report_render.py), every file written
atomically, the kept runs rotated and listed (index.html). Nothing is written in check mode.

An action plugin, in the controller process: one task instead of a module run per file (a template or copy task
each cost a module start, ~1 s, ten of them per report), and the files are the controller's anyway.
"""

from __future__ import annotations

import datetime
import json
import os
import shutil
import tempfile

from ansible.plugins.action import ActionBase

from ansible_collections.sigeti.dwh.plugins.module_utils.report.data import ReportContext, RunResults, build_report
from ansible_collections.sigeti.dwh.plugins.plugin_utils import report_render

ARGUMENT_SPEC = {
    "dir": {"type": "path", "required": True},
    "host": {"type": "str", "required": True},
    "reads": {"type": "list", "elements": "raw", "default": []},
    "title": {"type": "str", "default": "SIGETI warehouse health"},
    "database": {"type": "str", "default": "postgres"},
    "tables": {"type": "list", "elements": "raw", "default": []},
    "extra_tables": {"type": "list", "elements": "str", "default": []},
    "sizes_before": {"type": "dict", "default": {}},
    "history_days": {"type": "int", "default": 400},
    "keep": {"type": "int", "default": 30},
    "playbook": {"type": "str", "default": ""},
    "run": {"type": "dict", "default": {}},
    "templates": {"type": "path"},
}
PAGE_MODE = 0o640
DIR_MODE = 0o750
TEXTFILE_MODE = 0o644  # node_exporter's user reads it


class ActionModule(ActionBase):
    TRANSFERS_FILES = False
    _requires_connection = False

    def run(self, tmp=None, task_vars=None):
        result = super().run(tmp, task_vars)
        _validation, args = self.validate_argument_spec(argument_spec=ARGUMENT_SPEC)
        folder = os.path.join(args["dir"], args["host"])
        history, broken = read_history(os.path.join(folder, "history.json"))
        context = ReportContext(
            title=args["title"],
            host=args["host"],
            database=args["database"] or "postgres",
            now=datetime.datetime.now(datetime.timezone.utc),
            declared=args["tables"],
            extra_tables=args["extra_tables"],
            sizes_before=args["sizes_before"],
            history=history,
            history_days=args["history_days"],
            check_mode=bool(self._task.check_mode),
            playbook=args["playbook"],
            run=run_results(args["run"]),
        )
        document = build_report(args["reads"], context)
        result.update(
            changed=False,
            summary=document["summary"],
            missing=document["missing"],
            errors=document["errors"],
            folder=folder,
            textfile=os.path.join(args["dir"], report_render.textfile_name(args["host"])),
        )
        if context.check_mode:
            result["msg"] = "check mode: no report file written (%s would be); this run would: %s" % (
                folder,
                "; ".join(document["summary"]) or "change nothing",
            )
            return result
        templates = args["templates"] or os.path.dirname(self._find_needle("templates", "report.html.j2"))
        try:
            written, warnings = write_report(document, folder, result["textfile"], templates, args["keep"], broken)
        except OSError as exc:
            result.update(
                failed=True,
                msg="%s: the report could not be written in %s (%s): set dwh_report_dir to a folder the controller's "
                "user can write (nothing in the database was changed by the report)" % (args["host"], folder, exc),
            )
            return result
        result.update(files=written, run_folder=os.path.join(folder, "runs", report_render.run_folder(document)))
        if warnings:
            result["warnings"] = warnings
        result["msg"] = (
            "health report: %s (and report.md, report.json); metrics %s; this run kept in %s, all runs in %s%s"
            % (
                os.path.join(folder, "report.html"),
                result["textfile"],
                os.path.relpath(result["run_folder"], folder),
                os.path.join(folder, "index.html"),
                (". This run: " + "; ".join(document["summary"])) if document["summary"] else "",
            )
        )
        return result


def run_results(run: dict) -> RunResults:
    """This run's registered results, as the report's document reads them."""
    return RunResults(
        partitioning=list(run.get("partitioning") or []),
        compression=list(run.get("compression") or []),
        vacuum=list(run.get("vacuum") or []),
        range_queries=list(run.get("range_queries") or []),
        backup=run.get("backup") or None,
        planned=list(run.get("planned") or []),
    )


def read_history(path: str) -> tuple[list, str | None]:
    """The size history, and why it could not be read (then it starts anew; the file is set aside when writing)."""
    try:
        with open(path, encoding="utf-8") as handle:
            history = json.load(handle)
    except FileNotFoundError:
        return [], None
    except (OSError, ValueError) as exc:
        return [], str(exc)[:200]
    if not isinstance(history, list):
        return [], "it holds a %s, not a list of snapshots" % type(history).__name__
    return history, None


def write_file(path: str, text: str, mode: int = PAGE_MODE) -> str:
    """Write ``text`` to ``path`` atomically (a reader, node_exporter say, never sees half a file)."""
    handle, temporary = tempfile.mkstemp(dir=os.path.dirname(path), prefix=".%s." % os.path.basename(path))
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            out.write(text)
        os.chmod(temporary, mode)
        os.replace(temporary, path)
    except BaseException:
        if os.path.exists(temporary):
            os.unlink(temporary)
        raise
    return path


def write_report(
    document: dict, folder: str, textfile: str, templates: str, keep: int, broken: str | None
) -> tuple[list[str], list[str]]:
    """Write every file of one run (the history set aside first when ``broken`` says why it could not be read);
    return (paths written, warnings)."""
    warnings = []
    os.makedirs(folder, mode=DIR_MODE, exist_ok=True)
    if broken:
        aside = set_aside(os.path.join(folder, "history.json"))
        warnings.append(
            "%s could not be read (%s): set aside as %s, a new history starts today."
            % (os.path.join(folder, "history.json"), broken, os.path.basename(aside))
        )
    name = report_render.run_folder(document)
    files = report_render.render_pages(document, templates)
    files.update(report_render.data_files(document, report_render.run_summary(document, name)))
    written = [write_file(os.path.join(folder, f), files[f]) for f in ("report.html", "report.md", "report.json")]
    written.append(write_file(os.path.join(folder, "history.json"), files["history.json"]))
    written.append(write_file(textfile, report_render.prometheus_text(document), TEXTFILE_MODE))
    runs = os.path.join(folder, "runs")
    os.makedirs(os.path.join(runs, name), mode=DIR_MODE, exist_ok=True)
    for f in ("report.html", "report.md", "report.json", "summary.json"):
        written.append(write_file(os.path.join(runs, name, f), files[f]))
    warnings += rotate(runs, keep)
    index = report_render.render_index(document, kept_summaries(runs), keep, templates)
    written.append(write_file(os.path.join(folder, "index.html"), index))
    return written, warnings


def set_aside(path: str) -> str:
    """Rename a broken file to ``<name>.broken-<UTC time>``; return the new path."""
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    target = "%s.broken-%s" % (path, stamp)
    os.replace(path, target)
    return target


def rotate(runs: str, keep: int) -> list[str]:
    """Remove the oldest run folders beyond the ``keep`` newest (0 keeps all); names start with the UTC time, so
    sorted by name is sorted by age. Returns a warning per folder that could not be removed."""
    if keep <= 0:
        return []
    folders = sorted(e.name for e in os.scandir(runs) if e.is_dir(follow_symlinks=False))
    warnings = []
    for name in folders[: max(len(folders) - keep, 0)]:
        try:
            shutil.rmtree(os.path.join(runs, name))
        except OSError as exc:
            warnings.append("could not remove the old run %s: %s" % (os.path.join(runs, name), exc))
    return warnings


def kept_summaries(runs: str) -> list[dict]:
    """The kept runs' summary.json, oldest first; a folder without a readable one (copied by hand, half written)
    is left out."""
    summaries = []
    for name in sorted(e.name for e in os.scandir(runs) if e.is_dir(follow_symlinks=False)):
        try:
            with open(os.path.join(runs, name, "summary.json"), encoding="utf-8") as handle:
                summary = json.load(handle)
        except (OSError, ValueError):
            continue
        if isinstance(summary, dict):
            summaries.append(dict(summary, folder=summary.get("folder") or name))
    return summaries
