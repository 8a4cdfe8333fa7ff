# Copyright: (c) 2026, SIGETI data platform team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Several tables in one module call: each entry of a ``tables`` list run as its own single-table run.

Every Ansible loop item is a module process (an interpreter start, the imports, a connection: about half a second
on a small machine), so a role that loops over its tables pays that per table. The list form runs the same
single-table code for each entry, in one process on one connection, and stops at the first table that fails, as the
loop did: the message names that table, which tables were done and which were not run.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable

from ansible_collections.sigeti.dwh.plugins.module_utils.core.errors import DwhError, InvalidInput
from ansible_collections.sigeti.dwh.plugins.module_utils.core.identifiers import display_name, split_name

if TYPE_CHECKING:  # names used in annotations only
    from ansible_collections.sigeti.dwh.plugins.module_utils.session.context import RunContext


def table_names(entries: list[dict[str, Any]], what: str) -> list[tuple[str, str]]:
    """Return the ``(schema, table)`` of each entry; refuse a table listed twice before anything runs."""
    names = [split_name(entry["name"]) for entry in entries]
    seen = set()
    for schema, name in names:
        if (schema, name) in seen:
            raise InvalidInput(
                "%s lists table %s twice: keep one entry per table; nothing was changed"
                % (what, display_name(schema, name))
            )
        seen.add((schema, name))
    return names


def run_each(
    context: RunContext,
    entries: list[dict[str, Any]],
    run_one: Callable[[RunContext, str, str], dict[str, Any]],
    what: str,
) -> dict[str, Any]:
    """Run ``run_one(view, schema, name)`` for each entry in order; return ``changed``, ``queries``, ``results``.

    Each result carries the entry's ``name`` and its own ``warnings``. The first failure stops the list: a DwhError
    naming the table, the tables done before it and those not run, with ``changed`` true when anything committed
    (an earlier table, or the failing one part way) and the results so far. Anything but a DwhError or a PostgreSQL
    error is a bug and is raised as it is.
    """
    names = table_names(entries, what)
    results: list[dict[str, Any]] = []
    for index, (entry, (schema, name)) in enumerate(zip(entries, names)):
        view = context.for_entry(entry)
        try:
            output = run_one(view, schema, name)
        except Exception as error:
            raise table_failure(error, entry["name"], results, [e["name"] for e in entries[index + 1 :]])
        output["name"] = entry["name"]
        output["warnings"] = view.warnings
        results.append(output)
    return {
        "changed": any(r.get("changed") for r in results),
        "queries": [q for r in results for q in r.get("queries") or []],
        "results": results,
    }


def table_failure(error: Exception, shown: str, done: list[dict[str, Any]], not_run: list[str]) -> DwhError:
    """The DwhError for the first table of a list that failed (see ``run_each``)."""
    if isinstance(error, DwhError):
        msg, details = error.msg, dict(error.details)
    elif getattr(error, "pgcode", None) is not None or type(error).__module__.startswith("psycopg2"):
        msg = "PostgreSQL error %s: %s" % (getattr(error, "pgcode", "") or "", str(error).strip())
        details = {"sqlstate": getattr(error, "pgcode", None)}
    else:
        raise error
    changed = bool(details.get("changed")) or any(r.get("changed") for r in done)
    msg = failure_message(shown, msg, [r["name"] for r in done], not_run)
    failed = dict(details, name=shown, failed=True, msg=msg)
    details.update(
        changed=changed,
        failed_table=shown,
        not_run=not_run,
        queries=[q for r in done for q in r.get("queries") or []] + list(details.get("queries") or []),
        results=done + [failed],
    )
    return DwhError(msg, **details)


def failure_message(shown: str, cause: str, done: list[str], not_run: list[str]) -> str:
    """The message of a list stopped at table ``shown``: the cause as one sentence, then, when the list held other
    tables, which were done before it and which were not run (a list of one table says nothing more)."""
    cause = cause.strip()
    if cause and cause[-1] not in ".!?":
        cause += "."
    msg = "table %s failed: %s" % (shown, cause)
    if done or not_run:
        msg += " The list stopped there: done before it: %s; not run: %s." % (
            ", ".join(done) or "none",
            ", ".join(not_run) or "none",
        )
    return msg
