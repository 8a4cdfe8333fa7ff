# Copyright: (c) 2026, SIGETI data platform team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The run of ``sigeti.dwh.archive_restore``: archived partitions back into their set (or into a side table).

Every period is read and checked before anything changes: its manifest under
``<archive_dir>/<schema>.<table>/<period>.manifest.json``, the Parquet file beside it (present, the size the manifest
states), the archive's table (``manifest.parent``), and the table found under the partition's name (absent: restore
it; holding the archive's rows, by the content checksum: nothing, or only the attach; anything else: refused). Then
each is restored by ``archive.run.restore_table`` (one transaction, committed only when the rows read back have the
manifest's checksum; the file's SHA-256 is checked first) and attached with the manifest's bound through the
executor (``lock_timeout``, retries). A second run finds every period present and changes nothing.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any, Sequence

from ansible_collections.sigeti.dwh.plugins.module_utils.archive.manifest import archive_paths
from ansible_collections.sigeti.dwh.plugins.module_utils.archive.parquet import read_manifest, require_pyarrow
from ansible_collections.sigeti.dwh.plugins.module_utils.archive.restore import (
    ATTACH,
    PRESENT,
    RESTORE,
    Restoration,
    attach_step,
    check_steps,
    restore_reason,
    restored_entry,
)
from ansible_collections.sigeti.dwh.plugins.module_utils.archive.run import ArchiveMismatch, restore_table
from ansible_collections.sigeti.dwh.plugins.module_utils.archive.types import ArchiveRefused, column_specs
from ansible_collections.sigeti.dwh.plugins.module_utils.catalog.archive import (
    checksum_table,
    read_columns,
    read_missing_checks,
    read_table,
)
from ansible_collections.sigeti.dwh.plugins.module_utils.core.errors import DwhError, InvalidInput
from ansible_collections.sigeti.dwh.plugins.module_utils.core.identifiers import display_name, split_name
from ansible_collections.sigeti.dwh.plugins.module_utils.plan.executor import Executor
from ansible_collections.sigeti.dwh.plugins.module_utils.session import runlock

if TYPE_CHECKING:  # names used in annotations only
    from ansible_collections.sigeti.dwh.plugins.module_utils.catalog.archive import TableFacts
    from ansible_collections.sigeti.dwh.plugins.module_utils.session.connection import Connection
    from ansible_collections.sigeti.dwh.plugins.module_utils.session.context import RunContext


def run(context: RunContext, conn: Connection) -> dict[str, Any]:
    """The whole run of ``archive_restore`` once connected: the run lock of the set, every period checked, then
    restored and attached (rendered in check mode). Returns the module result."""
    params = context.params
    parent = split_name(params["table"])
    runlock.hold(context, conn, [parent])
    periods = checked_periods(params["periods"], display_name(*parent))
    into = side_table(params.get("into"), parent, periods)
    require_pyarrow()
    parent_facts = None if into is not None else check_set(conn, parent)
    items = [restoration(conn, parent, params["archive_dir"], period, into) for period in periods]
    likes = {item.period: like_set(conn, parent_facts, item) for item in items}
    steps = {
        item.period: (
            [] if likes[item.period] else check_steps(item, read_missing_checks(conn, parent_facts, *item.target))
        )
        + [attach_step(parent, item)]
        for item in items
        if item.attach and item.changes
    }
    if context.check_mode:
        return output(context, items, [s.render(conn) for p in steps.values() for s in p], done=False)
    executor = Executor.from_options(conn, params)
    finished: list[Restoration] = []
    for item in items:
        try:
            apply(conn, executor, item, steps.get(item.period), likes[item.period])
        except Exception as error:  # a DwhError, or the server refusing the ATTACH (rows in the default partition)
            raise failure(error, item, finished, executor) from None
        finished.append(item)
    return output(context, items, executor.executed, done=True)


def checked_periods(periods: Sequence[str] | None, shown: str) -> list[str]:
    """The ``periods`` option: partition names, at least one, each once."""
    names = [str(p) for p in periods or [] if str(p).strip()]
    if not names:
        raise InvalidInput(
            "periods is empty for %s: give the names of the archived partitions to restore (as partitioned_table "
            "listed them in archived / archive_files, e.g. fait_2019)" % shown
        )
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise InvalidInput("periods names %s more than once for %s: give each once" % (", ".join(twice), shown))
    return names


def side_table(into: str | None, parent: tuple[str, str], periods: list[str]) -> tuple[str, str] | None:
    """``into`` as ``(schema, name)`` (the set's schema when it has none); one period only."""
    if not into:
        return None
    if len(periods) != 1:
        raise InvalidInput(
            "into=%s restores one period into one side table, but periods lists %d (%s). Nothing was changed. What "
            "to do: restore one period per call with into." % (into, len(periods), ", ".join(periods))
        )
    return split_name(into, parent[0])


def check_set(conn: Connection, parent: tuple[str, str]) -> TableFacts:
    """The set's facts; refused when it is not a partitioned table (the archives are attached to it)."""
    facts = read_table(conn, *parent)
    if facts is None or facts.kind != "p":
        raise InvalidInput(
            "table %s %s, so archived partitions cannot be attached to it. Nothing was changed. What to do: create "
            "the partitioned table first (sigeti.dwh.partitioned_table), fix table, or restore into a side table "
            "with into." % (display_name(*parent), "does not exist" if facts is None else "is not partitioned")
        )
    return facts


def _available(directory: str) -> str:
    suffix = ".manifest.json"
    names = sorted(n[: -len(suffix)] for n in os.listdir(directory) if n.endswith(suffix))
    return ", ".join(names) if names else "none"


def read_archive(parent: tuple[str, str], archive_dir: str, period: str) -> tuple[Any, str, str]:
    """``(manifest, manifest path, Parquet path)`` of ``period``, refused when missing, of another table or without
    its file."""
    paths = archive_paths(archive_dir, parent[0], parent[1], period)
    shown = display_name(*parent)
    if not os.path.exists(paths.manifest):
        there = _available(paths.directory) if os.path.isdir(paths.directory) else "the folder does not exist"
        raise InvalidInput(
            "no archive of %s for period %s: %s does not exist (archived there: %s). Nothing was changed. What to "
            "do: check table, archive_dir (a folder of the host running the module) and the partition names."
            % (shown, period, paths.manifest, there)
        )
    manifest = read_manifest(paths.manifest)
    if manifest.parent != parent:
        raise InvalidInput(
            "%s is the archive of %s, not of a partition of %s. Nothing was changed."
            % (paths.manifest, display_name(*(manifest.parent or (manifest.schema, manifest.table))), shown)
        )
    parquet = os.path.join(paths.directory, manifest.parquet_file)
    if not os.path.exists(parquet) or os.path.getsize(parquet) != manifest.file_bytes:
        raise ArchiveMismatch(
            "%s, the file of %s, is missing or not the size its manifest states (%d bytes). Nothing was changed. "
            "What to do: restore the archive folder from a copy." % (parquet, paths.manifest, manifest.file_bytes)
        )
    return manifest, paths.manifest, parquet


def restoration(
    conn: Connection, parent: tuple[str, str], archive_dir: str, period: str, into: tuple[str, str] | None
) -> Restoration:
    """What ``period`` needs, from its archive and the table found where it goes (checked by content checksum)."""
    manifest, manifest_path, parquet = read_archive(parent, archive_dir, period)
    target = into or (manifest.schema, manifest.table)
    facts = read_table(conn, *target)
    action = RESTORE
    if facts is not None:
        found = checksum_table(conn, *target) if facts.kind == "r" else None
        if found is None or found.text() != manifest.checksum:
            raise InvalidInput(
                "table %s already exists and does not hold the rows archived in %s (checksum %s, archive %s). "
                "Nothing was changed. What to do: restore into another table (into), or rename or drop that table."
                % (display_name(*target), parquet, found.text() if found else "a partitioned table", manifest.checksum)
            )
        if into is not None or facts.parent == parent:
            action = PRESENT
        elif facts.parent is None:
            action = ATTACH
        else:
            raise InvalidInput(
                "table %s holds the rows archived in %s but is a partition of %s. Nothing was changed. What to do: "
                "detach it from there first." % (display_name(*target), parquet, display_name(*facts.parent))
            )
    return Restoration(period, manifest_path, parquet, manifest, target, action, into is None)


def like_set(conn: Connection, parent: TableFacts | None, item: Restoration) -> tuple[str, str] | None:
    """The set, as the model of a table to restore into it when its columns are the archive's: ``LIKE ... INCLUDING
    CONSTRAINTS`` copies its CHECK constraints as they are stored, which ATTACH PARTITION requires (a definition
    re-parsed from ``pg_get_constraintdef`` may differ: ``varchar IN (...)`` does). Else None (the manifest's
    columns, the missing checks added before the attach)."""
    if parent is None or item.action != RESTORE:
        return None
    try:
        specs = column_specs(parent.schema, parent.name, read_columns(conn, parent))
    except ArchiveRefused:
        return None
    return (parent.schema, parent.name) if tuple(specs) == tuple(item.manifest.columns) else None


def apply(conn: Connection, executor: Executor, item: Restoration, attach: Any, like: Any) -> None:
    """Restore one period's table (when absent) and attach it (its missing checks first) when it goes back into
    the set."""
    if item.action == RESTORE:
        restore_table(conn, item.manifest_path, *item.target, like=like)
    if attach:
        executor.run(attach)


def failure(error: Exception, item: Restoration, finished: list[Restoration], executor: Executor) -> DwhError:
    """The error of a run that stopped at ``item``, saying what was done before it (``changed`` then true)."""
    done = [display_name(*i.target) for i in finished if i.changes]
    if isinstance(error, DwhError):
        cause, details = error.msg, dict(error.details)
    else:
        code = getattr(error, "pgcode", None)
        cause, details = "PostgreSQL error %s: %s" % (code or "", " ".join(str(error).split())), {"sqlstate": code}
    msg = "period %s of the restore (%s): %s" % (item.period, display_name(*item.target), cause)
    if item.action == RESTORE and executor.failed:  # the restore committed, its attach did not
        msg += " %s was restored but not attached: the next run attaches it." % display_name(*item.target)
        done.append(display_name(*item.target) + " (restored, not attached)")
    if done:
        msg += " Done before this failure (changed): %s." % ", ".join(done)
    details.update(changed=bool(done), queries=executor.executed)
    return type(error)(msg, **details) if isinstance(error, DwhError) else DwhError(msg, **details)


def output(context: RunContext, items: list[Restoration], queries: list[str], done: bool) -> dict[str, Any]:
    """The module result: ``restored`` per period, the plan in words, the queries, the diff."""
    result = dict(
        changed=any(item.changes for item in items),
        restored=[restored_entry(item, done) for item in items],
        plan=[{"period": item.period, "reason": restore_reason(item)} for item in items],
        queries=queries,
    )
    if context.diff:
        present = [display_name(*i.target) for i in items if i.action == PRESENT]
        result["diff"] = {
            "before": "".join("%s\n" % n for n in present),
            "after": "".join("%s\n" % display_name(*i.target) for i in items),
        }
    return result
