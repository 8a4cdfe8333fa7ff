# Copyright: (c) 2026, SIGETI data platform team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Export one table (a partition) to a verified Parquet archive, check an archive, and recreate a table from one.

The export, step by step (each step leaves a state the next run finishes or ignores):

1. pyarrow is imported (absent: a clear error, nothing done); the table's columns are checked against the
   archive rules (refused: the columns named, nothing read);
2. stale temporary files of a killed run for this table are removed;
3. in one REPEATABLE READ transaction holding SHARE on the table (writers wait, readers do not): one scan gives the
   row count, the content checksum and the values Parquet cannot hold (refused: named, nothing written), then the
   COPY streams the same snapshot into ``.<table>.tmp-<pid>-parquet``, written and fsynced;
4. the temporary file is read back into PostgreSQL (a temporary table, in batches) and its checksum compared with
   the scan's: any difference removes it and fails;
5. an older manifest is removed, the file renamed to ``<table>.parquet``, the folder fsynced; then the manifest is
   written the same way. A run killed before 5 leaves no file under the final name; killed inside 5, a Parquet file
   without a manifest, which is no archive: the next export writes it again.

An export finding an archive whose manifest matches the table's checksum and whose file matches the manifest's
digest does nothing more (``reused``).
"""

from __future__ import annotations

import dataclasses
import datetime
import os
from typing import TYPE_CHECKING

from ansible_collections.sigeti.dwh.plugins.module_utils.archive.copy import (
    begin_load,
    begin_snapshot,
    copy_in,
    copy_out,
    create_table,
    end_snapshot,
    export_query,
    session_state,
    temporary_schema,
    truncate_temporary,
)
from ansible_collections.sigeti.dwh.plugins.module_utils.archive.manifest import (
    ArchivePaths,
    Checksum,
    Manifest,
    archive_paths,
    parse_checksum,
)
from ansible_collections.sigeti.dwh.plugins.module_utils.archive.parquet import (
    Arrow,
    csv_chunks,
    file_sha256,
    parquet_rows,
    prepare_directory,
    publish,
    read_manifest,
    remove_quietly,
    remove_stale_temps,
    require_pyarrow,
    temp_path,
    write_failure,
    write_manifest,
    write_parquet,
)
from ansible_collections.sigeti.dwh.plugins.module_utils.archive.types import (
    ColumnSpec,
    column_specs,
    value_checks,
    value_refusal,
)
from ansible_collections.sigeti.dwh.plugins.module_utils.catalog.archive import (
    ScanFacts,
    TableFacts,
    checksum_table,
    missing_table,
    pin_settings,
    read_columns,
    read_table,
    scan_table,
    server_identity,
)
from ansible_collections.sigeti.dwh.plugins.module_utils.core.errors import DwhError, InvalidInput, LockNotGranted
from ansible_collections.sigeti.dwh.plugins.module_utils.core.identifiers import display_name
from ansible_collections.sigeti.dwh.plugins.module_utils.plan.retry import is_lock_error

if TYPE_CHECKING:  # names used in annotations only
    from ansible_collections.sigeti.dwh.plugins.module_utils.session.connection import Connection

VERIFY_TABLE = "sigeti_dwh_archive_check"
VERIFY_BATCH_ROWS = 65536


class ArchiveMismatch(DwhError):
    """What was read back differs from the table or the manifest; the file was not published or not restored."""


@dataclasses.dataclass(frozen=True)
class ExportResult:
    """One export: the manifest written (or found), where, and whether an existing archive was reused."""

    manifest: Manifest
    paths: ArchivePaths
    reused: bool
    removed_temps: tuple[str, ...]


@dataclasses.dataclass(frozen=True)
class RestoreResult:
    """One restore: the table, whether it was created (False: it already held the archive's rows), its checksum."""

    schema: str
    table: str
    created: bool
    rows: int
    checksum: str


def _table_and_specs(conn: Connection, schema: str, table: str) -> tuple[TableFacts, tuple[ColumnSpec, ...]]:
    facts = read_table(conn, schema, table)
    if facts is None:
        raise missing_table(schema, table)
    if facts.kind != "r":
        raise InvalidInput(
            "table %s is partitioned: archive its partitions one by one (each leaf is one Parquet file)"
            % display_name(schema, table)
        )
    return facts, column_specs(schema, table, read_columns(conn, facts))


def _reusable(paths: ArchivePaths, checksum: Checksum) -> Manifest | None:
    """The existing archive when its manifest states this checksum and its file still has the stated digest."""
    if not (os.path.exists(paths.manifest) and os.path.exists(paths.parquet)):
        return None
    try:
        manifest = read_manifest(paths.manifest)
    except InvalidInput:
        return None
    if manifest.checksum != checksum.text() or os.path.getsize(paths.parquet) != manifest.file_bytes:
        return None
    return manifest if file_sha256(paths.parquet) == manifest.file_sha256 else None


def _scan_and_copy(
    conn: Connection,
    arrow: Arrow,
    facts: TableFacts,
    specs: tuple[ColumnSpec, ...],
    paths: ArchivePaths,
    block_writers: bool,
) -> tuple[ScanFacts, Manifest | None, str | None]:
    """Step 3: scan, then copy the same snapshot into a temporary file. Returns (scan, reusable manifest or None,
    temporary file or None)."""
    checks = value_checks(specs)
    state = session_state(conn)
    temporary = None
    try:
        begin_snapshot(conn, facts.schema, facts.name, block_writers)
        scan = scan_table(conn, facts.schema, facts.name, checks)
        value_refusal(facts.schema, facts.name, checks, scan.problems)
        reused = _reusable(paths, scan.checksum)
        if reused is not None:
            return scan, reused, None
        temporary = temp_path(paths, "parquet")
        rows = copy_out(
            conn,
            export_query(facts.schema, facts.name, specs),
            lambda stream: write_parquet(arrow, stream, temporary, specs),
        )
        if rows != scan.checksum.rows:
            raise ArchiveMismatch(
                "the copy of %s gave %d rows, its scan %d"
                % (display_name(facts.schema, facts.name), rows, scan.checksum.rows)
            )
        return scan, None, temporary
    except BaseException as error:
        if temporary:
            remove_quietly(temporary)
        if isinstance(error, arrow.pa.ArrowException) and not isinstance(error, OSError):
            raise ArchiveMismatch(
                "pyarrow could not read the copy of table %s: %s. Nothing was changed. What to do: report it with "
                "the column types of the table." % (display_name(facts.schema, facts.name), error)
            ) from None
        if isinstance(error, OSError):
            raise write_failure(temporary or paths.directory, error) from None
        if is_lock_error(error):
            raise LockNotGranted(
                "table %s is being written: the export waits for writers to finish (SHARE lock) and lock_timeout "
                "passed. Nothing was changed. What to do: run again later." % display_name(facts.schema, facts.name)
            ) from None
        raise
    finally:
        end_snapshot(conn, state)


def checksum_parquet(conn: Connection, arrow: Arrow, path: str, specs: tuple[ColumnSpec, ...]) -> Checksum:
    """The content checksum of a Parquet file, computed by PostgreSQL: the file is loaded in batches into a temporary
    table of the archived column types and each batch's rows hashed as the partition's were. Nothing remains."""
    state = session_state(conn)
    total = Checksum(0, 0, 0)
    try:
        begin_load(conn)
        create_table(conn, None, VERIFY_TABLE, specs)
        pin_settings(conn)
        schema = temporary_schema(conn)
        for chunk in csv_chunks(arrow, path, specs, VERIFY_BATCH_ROWS):
            copy_in(conn, schema, VERIFY_TABLE, [chunk])
            total = total + scan_table(conn, schema, VERIFY_TABLE, ()).checksum
            truncate_temporary(conn, VERIFY_TABLE)
    finally:
        end_snapshot(conn, state)
    return total


def _verified(
    conn: Connection, arrow: Arrow, path: str, specs: tuple[ColumnSpec, ...], expected: Checksum, what: str
) -> None:
    """Step 4: raise ArchiveMismatch unless the file's footer and its read-back checksum match ``expected``."""
    footer = parquet_rows(arrow, path)
    found = checksum_parquet(conn, arrow, path, specs)
    if footer != expected.rows or found != expected:
        raise ArchiveMismatch(
            "%s read back from %s differs from what was written: %d rows in the footer, checksum %s, expected %s. "
            "The file was not kept. What to do: check the disk and the pyarrow installation, then run again."
            % (what, path, footer, found.text(), expected.text()),
            expected=expected.text(),
            found=found.text(),
        )


def export_table(
    conn: Connection,
    schema: str,
    table: str,
    archive_dir: str,
    block_writers: bool = True,
    parent: tuple[str, str] | None = None,
) -> ExportResult:
    """Export ``schema.table`` (a partition or a plain table) to ``<archive_dir>/<schema>.<parent>/<table>.parquet``
    with its manifest, verified (see the module docstring). ``parent`` overrides the folder's table name (default:
    the partition's parent, else the table itself). The connection's session characteristics are kept."""
    arrow = require_pyarrow()
    facts, specs = _table_and_specs(conn, schema, table)
    owner = parent or facts.parent or (schema, table)
    paths = archive_paths(archive_dir, owner[0], owner[1], table)
    prepare_directory(archive_dir, paths)
    removed = remove_stale_temps(paths)
    scan, reused, temporary = _scan_and_copy(conn, arrow, facts, specs, paths, block_writers)
    if reused is not None:
        return ExportResult(reused, paths, True, removed)
    try:
        _verified(conn, arrow, temporary, specs, scan.checksum, "table %s" % display_name(schema, table))
        manifest = Manifest(
            schema=schema,
            table=table,
            parent=facts.parent,
            bound=facts.bound,
            columns=specs,
            rows=scan.checksum.rows,
            checksum=scan.checksum.text(),
            parquet_file=os.path.basename(paths.parquet),
            file_bytes=os.path.getsize(temporary),
            file_sha256=file_sha256(temporary),
            server=server_identity(conn),
            created_at=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            library="pyarrow %s" % arrow.version,
            table_oid=facts.oid,
        )
        remove_quietly(paths.manifest)  # a manifest never describes another file than the one beside it
        publish(temporary, paths.parquet)
    except OSError as error:
        remove_quietly(temporary)
        raise write_failure(paths.parquet, error) from None
    except BaseException:
        remove_quietly(temporary)
        raise
    write_manifest(paths, manifest)
    return ExportResult(manifest, paths, False, removed)


def _checked_file(manifest_path: str) -> tuple[Manifest, str]:
    """The manifest and its Parquet file, refused when the file is missing or not the bytes the manifest states."""
    manifest = read_manifest(manifest_path)
    path = os.path.join(os.path.dirname(os.path.abspath(manifest_path)), manifest.parquet_file)
    if not os.path.exists(path):
        raise InvalidInput("%s names %s, which is missing. Nothing was changed." % (manifest_path, path))
    if os.path.getsize(path) != manifest.file_bytes or file_sha256(path) != manifest.file_sha256:
        raise ArchiveMismatch(
            "%s is not the file its manifest %s describes (size or SHA-256 differ): it was changed or damaged. "
            "Nothing was changed. What to do: restore it from a copy of the archive folder." % (path, manifest_path)
        )
    return manifest, path


def verify_archive(conn: Connection, manifest_path: str) -> Manifest:
    """Check an archive: its file's digest, then its rows read back into PostgreSQL against the manifest's
    checksum. Returns the manifest; raises ArchiveMismatch (or InvalidInput) otherwise. Nothing is changed."""
    arrow = require_pyarrow()
    manifest, path = _checked_file(manifest_path)
    _verified(conn, arrow, path, manifest.columns, parse_checksum(manifest.checksum), "archive %s" % manifest_path)
    return manifest


def verify_table(conn: Connection, schema: str, table: str, manifest: Manifest) -> None:
    """Raise ArchiveMismatch unless ``schema.table`` holds exactly the rows of ``manifest`` (checksum now): the check
    retention makes on the detached partition before dropping it."""
    found = checksum_table(conn, schema, table)
    if found.text() != manifest.checksum:
        raise ArchiveMismatch(
            "table %s no longer holds the rows archived in %s.%s (checksum %s, archive %s): it changed after the "
            "export. Nothing was dropped. What to do: export it again."
            % (display_name(schema, table), manifest.schema, manifest.table, found.text(), manifest.checksum),
        )


def restore_table(
    conn: Connection, manifest_path: str, schema: str, table: str, like: tuple[str, str] | None = None
) -> RestoreResult:
    """Recreate the archived rows as the new table ``schema.table`` (columns, types, NOT NULL and collations of the
    manifest; no indexes or defaults: ATTACH PARTITION adds the set's indexes), in one transaction, committed only
    when its checksum equals the manifest's. ``like``: a table with exactly the manifest's columns whose CHECK
    constraints the new table copies (its set: ATTACH PARTITION requires them). An existing table holding exactly
    those rows is left as it is (``created`` False); one holding anything else is refused."""
    arrow = require_pyarrow()
    manifest, path = _checked_file(manifest_path)
    if read_table(conn, schema, table) is not None:
        found = checksum_table(conn, schema, table)
        if found.text() == manifest.checksum:
            return RestoreResult(schema, table, False, found.rows, found.text())
        raise InvalidInput(
            "table %s already exists and does not hold the archive's rows (checksum %s, archive %s). Nothing was "
            "changed. What to do: restore into another table name, or drop that table first."
            % (display_name(schema, table), found.text(), manifest.checksum)
        )
    state = session_state(conn)
    try:
        begin_load(conn)
        create_table(conn, schema, table, manifest.columns, like=like)
        copy_in(conn, schema, table, csv_chunks(arrow, path, manifest.columns), freeze=True)
        found = scan_table(conn, schema, table, ()).checksum
        if found.text() != manifest.checksum:
            raise ArchiveMismatch(
                "the rows restored from %s into %s have checksum %s, the manifest %s: the restore was rolled back. "
                "What to do: run verify on the archive; report the file if it passes."
                % (path, display_name(schema, table), found.text(), manifest.checksum),
            )
        conn.commit()
    finally:
        end_snapshot(conn, state)
    return RestoreResult(schema, table, True, found.rows, found.text())
