# Copyright: (c) 2026, SIGETI data platform team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Retention action ``parquet``, its pure half: where each retired partition's archive goes, and the statements that
end a partition once its archive is written (no I/O).

A retired partition is, in this order: exported and verified (``archive/retention_run.py``, called by the executor
right before the detach), detached (the retention's usual step), then in one transaction of its own locked, checked
against the manifest's checksum (:class:`ArchiveCheck`) and dropped. The check runs after the detach because only a
detached table is out of reach of the set's writers; it runs in a transaction of its own so the scan never holds the
detach's ACCESS EXCLUSIVE lock on the parent.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ansible_collections.sigeti.dwh.plugins.module_utils.archive.manifest import ArchivePaths, archive_paths
from ansible_collections.sigeti.dwh.plugins.module_utils.core.identifiers import display_name
from ansible_collections.sigeti.dwh.plugins.module_utils.plan import steps as planmod

try:
    from psycopg2 import sql
except ImportError:  # reported by the connection layer
    sql = None

if TYPE_CHECKING:  # names used in annotations only
    from psycopg2.sql import Composable

    from ansible_collections.sigeti.dwh.plugins.module_utils.partitioning.layout import Declared


def partition_archive(declared: Declared, part: dict[str, Any]) -> ArchivePaths:
    """Where retention writes partition ``part`` of the declared set: ``<archive_dir>/<schema>.<table>/<part>.parquet``
    (the folder named after the partitioned table, as ``export_table`` names it)."""
    return archive_paths(declared.retention["archive_dir"], declared.schema, declared.name, part["name"])


class ArchiveCheck:
    """The statement checking a detached partition against its archive (a ``Step``'s SQL).

    Its text exists once the export has written the manifest (the run sets ``statement``); until then (check mode,
    the plan shown before a run) it renders as a comment saying what it will check.
    """

    def __init__(self, partition: tuple[str, str], paths: ArchivePaths, concurrent: bool) -> None:
        self.partition = partition
        self.paths = paths
        self.concurrent = concurrent  # the detach before it commits on its own (DETACH ... CONCURRENTLY)
        self.statement: Composable | None = None
        self.rows: int | None = None  # the archive's, once exported
        self.checksum: str | None = None

    def as_string(self, context: Any) -> str:
        """The statement, or the comment standing for it before the export."""
        if self.statement is None:
            return "/* check the detached %s against the checksum in %s (written by its export) */" % (
                display_name(*self.partition),
                self.paths.manifest,
            )
        return self.statement.as_string(context)


def drop_steps(declared: Declared, part: dict[str, Any], concurrent: bool) -> list[planmod.Step]:
    """The steps after the detach of ``part``: check it against its archive, then drop it (one transaction)."""
    child = (part["schema"], part["name"])
    paths = partition_archive(declared, part)
    group = "archive:%s" % part["name"]
    return [
        planmod.Step(
            ArchiveCheck(child, paths, concurrent),
            "retention.action parquet: lock the detached %s and check it holds exactly the rows of %s (the "
            "content checksum of its manifest); any difference stops here and keeps the table"
            % (part["name"], paths.parquet),
            lock=planmod.ACCESS_EXCLUSIVE,
            targets=[child],
            group=group,
            effect=("archived", part["name"]),
        ),
        planmod.Step(
            sql.SQL("DROP TABLE {}").format(sql.Identifier(*child)),
            "retention.action parquet: drop the detached %s, archived in %s" % (part["name"], paths.parquet),
            lock=planmod.ACCESS_EXCLUSIVE,
            targets=[child],
            group=group,
            effect=("dropped", part["name"]),
        ),
    ]


def archive_checks(steps: list[Any]) -> list[ArchiveCheck]:
    """The archive checks of a plan's steps, in order."""
    return [step.sql for step in steps if isinstance(getattr(step, "sql", None), ArchiveCheck)]


def archive_files(steps: list[Any], archived: list[str]) -> list[dict[str, Any]]:
    """Where each partition of ``archived`` went (predicted in check mode, ``rows`` and ``checksum`` then None)."""
    done = set(archived)
    return [
        {
            "partition": check.partition[1],
            "parquet": check.paths.parquet,
            "manifest": check.paths.manifest,
            "rows": check.rows,
            "checksum": check.checksum,
        }
        for check in archive_checks(steps)
        if check.partition[1] in done
    ]
