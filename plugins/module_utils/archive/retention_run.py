# Copyright: (c) 2026, SIGETI data platform team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Retention action ``parquet``, its run half: what is checked before any change, and the export each detach waits
for.

``prepare_exports`` is called on every plan ``partitioned_table`` makes (check mode too): it refuses, before anything
runs, what would stop an export anyway (pyarrow missing, ``archive_dir`` missing or not writable, a column Parquet
cannot hold exactly, a partition that is itself partitioned), then hands each retired partition's detach step the
export to run right before it (``Step.before``; the executor never calls it in check mode). The export writes and
verifies ``<archive_dir>/<schema>.<table>/<partition>.parquet`` and its manifest; a failed or refused export stops
the plan before the detach, so the partition stays attached. Once exported, the partition's
:class:`~archive.retention.ArchiveCheck` gets its statement: after the detach, the table is locked and its content
checksum compared with the manifest's inside the transaction that drops it.

The files are written by the process running the module, so ``archive_dir`` is a folder of the host that runs it
(the database host in this collection's playbooks), written as the user the module runs as.
"""

from __future__ import annotations

import os
import socket
from typing import TYPE_CHECKING, Any, Callable

from ansible_collections.sigeti.dwh.plugins.module_utils.archive.manifest import (
    MANIFEST_SUFFIX,
    Manifest,
    ServerIdentity,
    parse_checksum,
)
from ansible_collections.sigeti.dwh.plugins.module_utils.archive.parquet import (
    file_sha256,
    read_manifest,
    require_pyarrow,
)
from ansible_collections.sigeti.dwh.plugins.module_utils.archive.retention import (
    ArchiveCheck,
    archive_checks,
    archive_files,
    drop_steps,
    partition_archive,
)
from ansible_collections.sigeti.dwh.plugins.module_utils.archive.run import export_table
from ansible_collections.sigeti.dwh.plugins.module_utils.archive.types import ArchiveRefused, column_specs
from ansible_collections.sigeti.dwh.plugins.module_utils.catalog.archive import (
    PIN_SETTINGS,
    checksum_table,
    read_columns,
    read_detached,
    read_table,
    scan_query,
    server_identity,
)
from ansible_collections.sigeti.dwh.plugins.module_utils.core.errors import DwhError, InvalidInput
from ansible_collections.sigeti.dwh.plugins.module_utils.core.identifiers import display_name

try:
    from psycopg2 import sql
except ImportError:  # reported by the connection layer
    sql = None

if TYPE_CHECKING:  # names used in annotations only
    from psycopg2.sql import Composable

    from ansible_collections.sigeti.dwh.plugins.module_utils.partitioning.layout import Declared
    from ansible_collections.sigeti.dwh.plugins.module_utils.partitioning.planner import Result
    from ansible_collections.sigeti.dwh.plugins.module_utils.session.connection import Connection

CHECK_TAG = "$sigeti_dwh_archive_check$"
_MOD = 1 << 64


def prepare_exports(conn: Connection, declared: Declared, result: Result) -> None:
    """Refuse now what would stop an export; wire each archived partition's export to its detach step."""
    if not declared.retention or declared.retention.get("action") != "parquet":
        return
    checks = archive_checks(result.plan.steps)
    if not checks:
        return
    try:
        require_pyarrow()
    except DwhError as error:
        raise type(error)("retention.action parquet for %s: %s" % (declared.display, error.msg)) from None
    check_folder(declared)
    for check in checks:
        check_partition(conn, declared, check)
    detaches = {s.effect[1]: s for s in result.plan.steps if getattr(s, "effect", None) and s.effect[0] == "detached"}
    for check in checks:
        detaches[check.partition[1]].before = exporter(conn, declared, check)


def finish_detached(conn: Connection, declared: Declared, result: Result) -> None:
    """Plan the end of each archived partition an interrupted run left detached: check it, then drop it.

    A run killed (or cut off) after a partition's detach committed and before its drop leaves a plain table the
    layout no longer sees. Such a table is recognised by its published manifest alone: same name, same parent, the
    same table (its OID in the same database of the same server) and an archive file still of the stated size and
    digest. The plan then carries the usual check against the manifest's checksum, and the drop; anything else (a
    table made later under that name, a missing or altered file) is left alone."""
    if not declared.retention or declared.retention.get("action") != "parquet":
        return
    planned = {check.partition for check in archive_checks(result.plan.steps)}
    manifests = [m for m in published_manifests(declared) if (m.schema, m.table) not in planned and m.table_oid]
    if not manifests:
        return
    found = read_detached(conn, [(m.schema, m.table) for m in manifests])
    here = server_identity(conn)
    for manifest in manifests:
        if found.get((manifest.schema, manifest.table)) != manifest.table_oid or not archived_here(
            declared, manifest, here
        ):
            continue
        shown = display_name(manifest.schema, manifest.table)
        if checksum_table(conn, manifest.schema, manifest.table).text() != manifest.checksum:
            result.warnings.append(
                "%s was detached by an earlier run after its export to %s, and it no longer holds exactly the "
                "archived rows: it is kept, with its rows, and this run does not drop it. What to do: attach it back "
                "(ALTER TABLE %s ATTACH PARTITION %s %s) and run again to archive it anew, or drop it yourself."
                % (shown, manifest.parquet_file, declared.display, shown, manifest.bound or "")
            )
            continue
        steps = drop_steps(declared, {"schema": manifest.schema, "name": manifest.table}, concurrent=False)
        check = steps[0].sql
        check.statement = check_statement(declared, check, manifest)
        check.rows, check.checksum = manifest.rows, manifest.checksum
        result.plan.extend(steps)
        result.dropped.append(manifest.table)
        result.archived.append(manifest.table)
        result.warnings.append(
            "%s was archived to %s and detached by an earlier run that stopped before dropping it: this run checks "
            "it against its manifest again and drops it"
            % (display_name(manifest.schema, manifest.table), check.paths.parquet)
        )


def published_manifests(declared: Declared) -> list[Manifest]:
    """The readable manifests in the declared set's archive folder that name the set as their parent."""
    folder = partition_archive(declared, {"name": declared.name}).directory
    try:
        names = sorted(n for n in os.listdir(folder) if n.endswith(MANIFEST_SUFFIX) and not n.startswith("."))
    except OSError:
        return []
    found = []
    for name in names:
        try:
            manifest = read_manifest(os.path.join(folder, name))
        except DwhError:
            continue  # not this collection's, or damaged: it describes nothing this run may drop
        if manifest.parent == (declared.schema, declared.name):
            found.append(manifest)
    return found


def archived_here(declared: Declared, manifest: Manifest, here: ServerIdentity) -> bool:
    """Whether ``manifest`` was written from this server's database and its Parquet file is still the one it states."""
    if (here.system_identifier, here.database) != (manifest.server.system_identifier, manifest.server.database):
        return False
    parquet = partition_archive(declared, {"name": manifest.table}).parquet
    try:
        return os.path.getsize(parquet) == manifest.file_bytes and file_sha256(parquet) == manifest.file_sha256
    except OSError:
        return False


def check_folder(declared: Declared) -> None:
    """Refuse an ``archive_dir`` that is not a folder this process may write into."""
    folder = declared.retention["archive_dir"]
    where = "on %s (the host running the module)" % socket.gethostname()
    if not os.path.isdir(folder):
        raise InvalidInput(
            "retention.archive_dir=%s for %s does not exist or is not a folder %s. Nothing was changed. What to do: "
            "create it, writable by the user the module runs as, or fix archive_dir."
            % (folder, declared.display, where)
        )
    if not os.access(folder, os.W_OK | os.X_OK):
        raise InvalidInput(
            "retention.archive_dir=%s for %s is not writable by the user the module runs as (uid %d) %s%s. Nothing "
            "was changed. What to do: give that user write access to it, or choose another archive_dir."
            % (
                folder,
                declared.display,
                os.geteuid(),
                where,
                " (a read-only file system)" if _read_only(folder) else "",
            )
        )


def _read_only(folder: str) -> bool:
    try:
        return bool(os.statvfs(folder).f_flag & os.ST_RDONLY)
    except OSError:
        return False


def check_partition(conn: Connection, declared: Declared, check: ArchiveCheck) -> None:
    """Refuse a retired partition the export would refuse: partitioned itself, or a column Parquet cannot hold."""
    schema, name = check.partition
    facts = read_table(conn, schema, name)
    if facts is not None and facts.kind != "r":
        raise InvalidInput(
            "retention.action parquet for %s: partition %s is itself partitioned, and an archive holds one table. "
            "Nothing was changed. What to do: declare its own partitions' retention (partitioned_table on %s), or "
            "use action detach or drop for %s." % (declared.display, name, display_name(schema, name), declared.display)
        )
    if facts is None:
        return  # gone since the plan was read: the detach step fails and says so
    try:
        column_specs(schema, name, read_columns(conn, facts))
    except ArchiveRefused as error:
        raise ArchiveRefused(
            "retention.action parquet for %s: partition %s stays attached: %s" % (declared.display, name, error.msg),
            **error.details,
        ) from None


def exporter(conn: Connection, declared: Declared, check: ArchiveCheck) -> Callable[[], None]:
    """The export of ``check``'s partition, run by the executor right before its detach."""

    def export() -> None:
        schema, name = check.partition
        failed = "retention.action parquet for %s: partition %s was not archived and stays attached: " % (
            declared.display,
            name,
        )
        try:
            done = export_table(
                conn, schema, name, declared.retention["archive_dir"], parent=(declared.schema, declared.name)
            )
        except DwhError as error:
            raise type(error)(failed + error.msg, **error.details) from None
        except Exception as error:  # a server error during the scan or the copy
            raise DwhError(
                failed + "%s. What to do: fix the cause, then run again." % str(error).strip(),
                sqlstate=getattr(error, "pgcode", None),
            ) from None
        check.statement = check_statement(declared, check, done.manifest)
        check.rows, check.checksum = done.manifest.rows, done.manifest.checksum

    return export


def check_statement(declared: Declared, check: ArchiveCheck, manifest: Manifest) -> Composable:
    """A DO block: lock the detached table, compute its content checksum as the export did (same scan, settings
    pinned), raise unless it is the manifest's. Everything in it comes from the catalog's scan and literals."""
    expected = parse_checksum(manifest.checksum)
    child = sql.Identifier(*check.partition)
    stop = (
        "retention.action parquet: %s changed after its export to %s (rows were written into it between the export "
        "and the detach): the archive holds %d rows, the table now "
        % (display_name(*check.partition), check.paths.parquet, expected.rows)
    )
    advice = (
        " rows or other values. It is detached and kept with its rows; nothing was dropped. What to do: attach it "
        "back (ALTER TABLE %s ATTACH PARTITION %s %s) and run again: the next run exports it again."
        % (declared.display, display_name(*check.partition), manifest.bound or "")
    )
    return sql.SQL(
        "DO {tag}\nDECLARE found_rows bigint; found_high numeric; found_low numeric;\nBEGIN\n"
        "LOCK TABLE ONLY {child} IN ACCESS EXCLUSIVE MODE;\n{pin}"
        "SELECT s.n, s.h, s.l INTO found_rows, found_high, found_low FROM ({scan}) AS s(n, h, l);\n"
        "IF found_rows <> {rows} OR mod(mod(coalesce(found_high, 0), {m}) + {m}, {m}) <> {high}\n"
        "   OR mod(mod(coalesce(found_low, 0), {m}) + {m}, {m}) <> {low} THEN\n"
        "  RAISE EXCEPTION USING MESSAGE = {stop} || found_rows || {advice};\nEND IF;\nEND {tag}"
    ).format(
        tag=sql.SQL(CHECK_TAG),
        child=child,
        pin=sql.SQL(PIN_SETTINGS),
        scan=scan_query(check.partition[0], check.partition[1], ()),
        rows=sql.Literal(expected.rows),
        m=sql.Literal(_MOD),
        high=sql.Literal(expected.high),
        low=sql.Literal(expected.low),
        stop=sql.Literal(stop),
        advice=sql.Literal(advice),
    )


def archive_files_of(result: Result) -> list[dict[str, Any]]:
    """``archive_files`` of a partitioned_table result: where each archived partition went (predicted in check
    mode)."""
    return archive_files(result.plan.steps, result.archived)


def diff_lines(result: Result) -> str:
    """The diff's lines saying where each archived partition goes (after the partition list)."""
    return "".join("# %s archived to %s\n" % (f["partition"], f["parquet"]) for f in archive_files_of(result))
