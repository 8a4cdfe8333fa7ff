# Copyright: (c) 2026, SIGETI data platform team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The file side of Parquet archives (pyarrow, imported only when an archive is made or read): PostgreSQL's CSV
into a zstd Parquet file, a Parquet file back into PostgreSQL's CSV, and the durable file operations (temporary
names, fsync of files and folders, atomic renames, manifests).

No database here. pyarrow is not a requirement of the collection: :func:`require_pyarrow` raises
:class:`ArchiveLibraryMissing`, naming the package and the command, on a host that does not have it.

Two readers' defaults would lose data silently and are overridden (docs/archive.md): pyarrow's CSV reader reads
``NaN``, ``null``, ``N/A`` (and more) as NULL by default, and a quoted empty string as NULL when strings may be
null; only PostgreSQL's NULL (an unquoted empty field) is NULL here. Its writer would leave a lone ``\\.`` unquoted,
PostgreSQL's end-of-data mark: every value is quoted (``all_valid``), NULLs stay unquoted.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import socket
import sys
from typing import IO, Any, Iterator, Sequence

from ansible_collections.sigeti.dwh.plugins.module_utils.archive.manifest import (
    COMPRESSION,
    ArchivePaths,
    Manifest,
    manifest_from_json,
    manifest_to_json,
    temp_pid,
)
from ansible_collections.sigeti.dwh.plugins.module_utils.archive.types import (
    TRANSFER_HEX,
    TRANSFER_JSON,
    ColumnSpec,
)
from ansible_collections.sigeti.dwh.plugins.module_utils.core.errors import DwhError, InvalidInput

PYARROW_MINIMUM = (14, 0)
CSV_BLOCK_BYTES = 8 << 20
ROW_GROUP_BYTES = 64 << 20
ROW_GROUP_ROWS = 1 << 20
READ_BATCH_ROWS = 65536
# level 3: zstd's own default and DuckDB's (pyarrow's is 1)
ZSTD_LEVEL = 3
FLOAT_WORDS = {"NaN": "NaN", "Infinity": "Infinity", "-Infinity": "-Infinity"}


class ArchiveLibraryMissing(DwhError):
    """pyarrow is absent (or too old) on the host that runs the module."""


class ArchiveWriteFailed(DwhError):
    """The archive folder refused a write (permissions, full disk, missing folder); nothing was left behind."""


@dataclasses.dataclass(frozen=True)
class Arrow:
    """The pyarrow modules the archive uses, imported once by :func:`require_pyarrow`."""

    pa: Any
    parquet: Any
    csv: Any
    compute: Any
    version: str


def require_pyarrow() -> Arrow:
    """Import pyarrow, or raise :class:`ArchiveLibraryMissing` saying what to install, for which interpreter."""
    try:
        import pyarrow
        import pyarrow.compute
        import pyarrow.csv
        import pyarrow.parquet
    except ImportError as error:
        raise ArchiveLibraryMissing(_missing_message("is not installed (%s)" % error)) from None
    found = tuple(int(p) for p in pyarrow.__version__.split(".")[:2] if p.isdigit())
    if found < PYARROW_MINIMUM:
        raise ArchiveLibraryMissing(_missing_message("is version %s, older than 14" % pyarrow.__version__))
    return Arrow(pyarrow, pyarrow.parquet, pyarrow.csv, pyarrow.compute, pyarrow.__version__)


def _missing_message(why: str) -> str:
    return (
        "Parquet archives need the Python package pyarrow (>= 14) on the host that runs the module (%s, "
        "interpreter %s); it %s. Nothing was changed. What to do: install it for that interpreter, "
        "e.g. `%s -m pip install 'pyarrow>=14'`, or keep old partitions with retention action detach or drop."
        % (socket.gethostname(), sys.executable, why, sys.executable)
    )


def arrow_type(arrow: Arrow, text: str) -> Any:
    """The pyarrow type a spec's ``parquet`` text names (``list<item: int32>``, ``decimal128(14, 2)``...)."""
    pa = arrow.pa
    if text.startswith("list<item: ") and text.endswith(">"):
        return pa.list_(arrow_type(arrow, text[len("list<item: ") : -1]))
    for prefix, make in (("decimal128(", pa.decimal128), ("decimal256(", pa.decimal256)):
        if text.startswith(prefix) and text.endswith(")"):
            precision, scale = (int(p) for p in text[len(prefix) : -1].split(","))
            return make(precision, scale)
    simple = {
        "bool": pa.bool_(),
        "int16": pa.int16(),
        "int32": pa.int32(),
        "int64": pa.int64(),
        "float": pa.float32(),
        "double": pa.float64(),
        "string": pa.string(),
        "binary": pa.binary(),
        "date32[day]": pa.date32(),
        "timestamp[us]": pa.timestamp("us"),
        "timestamp[us, tz=UTC]": pa.timestamp("us", tz="UTC"),
    }
    if text not in simple:
        raise InvalidInput("unknown Parquet type %r in an archive's column list" % text)
    return simple[text]


def arrow_schema(arrow: Arrow, specs: Sequence[ColumnSpec]) -> Any:
    """The Parquet file's schema: one field per column (NOT NULL columns as required fields) and the PostgreSQL
    types in the file's metadata (``sigeti.dwh.columns``), so the file describes itself without its manifest."""
    fields = [arrow.pa.field(s.name, arrow_type(arrow, s.parquet), nullable=not s.not_null) for s in specs]
    described = json.dumps([{"name": s.name, "pg_type": s.pg_type} for s in specs], ensure_ascii=False)
    return arrow.pa.schema(fields, metadata={"sigeti.dwh.columns": described})


def _read_type(arrow: Arrow, spec: ColumnSpec) -> Any:
    """What the CSV reader parses a column's text into (the conversion of :func:`_finish` does the rest)."""
    if spec.transfer in (TRANSFER_HEX, TRANSFER_JSON) or spec.parquet.startswith("decimal256"):
        return arrow.pa.string()
    return arrow_type(arrow, spec.parquet)


def csv_reader(arrow: Arrow, source: IO[bytes], specs: Sequence[ColumnSpec]) -> Any:
    """A streaming reader of PostgreSQL's ``COPY ... (FORMAT csv)`` output (blocks of :data:`CSV_BLOCK_BYTES`)."""
    csv = arrow.csv
    return csv.open_csv(
        source,
        read_options=csv.ReadOptions(column_names=[s.name for s in specs], block_size=CSV_BLOCK_BYTES),
        parse_options=csv.ParseOptions(newlines_in_values=True),
        convert_options=csv.ConvertOptions(
            column_types={s.name: _read_type(arrow, s) for s in specs},
            null_values=[""],
            strings_can_be_null=True,
            quoted_strings_can_be_null=False,
            true_values=["t"],
            false_values=["f"],
        ),
    )


def _json_list(text: str | None, floats: bool) -> list | None:
    if text is None:
        return None
    if not floats:
        return json.loads(text)
    # to_json writes NaN and the infinities as strings, -0 as an integer literal
    values = json.loads(text, parse_int=float)
    return [float(FLOAT_WORDS[v]) if isinstance(v, str) else v for v in values]


def _finish(arrow: Arrow, column: Any, spec: ColumnSpec, target: Any) -> Any:
    """One column of a CSV batch converted to its Parquet type."""
    if spec.transfer == TRANSFER_HEX:
        return arrow.pa.array([None if v is None else bytes.fromhex(v[2:]) for v in column.to_pylist()], target)
    if spec.transfer == TRANSFER_JSON:
        floats = spec.base in ("real", "double precision")
        return arrow.pa.array([_json_list(v, floats) for v in column.to_pylist()], target)
    if column.type != target:
        return arrow.compute.cast(column, target)
    return column


def parquet_batch(arrow: Arrow, batch: Any, specs: Sequence[ColumnSpec], schema: Any) -> Any:
    """A CSV batch as a record batch of the Parquet schema."""
    columns = [_finish(arrow, batch.column(i), spec, schema.field(i).type) for i, spec in enumerate(specs)]
    return arrow.pa.RecordBatch.from_arrays(columns, schema=schema)


def write_parquet(arrow: Arrow, source: IO[bytes], path: str, specs: Sequence[ColumnSpec]) -> int:
    """Write the CSV stream ``source`` to a new zstd Parquet file ``path`` (created, never overwritten), fsynced;
    return its rows. Row groups hold up to :data:`ROW_GROUP_BYTES` of Arrow data: memory stays bounded."""
    schema = arrow_schema(arrow, specs)
    rows, pending, pending_bytes = 0, [], 0
    with open(path, "xb") as handle:
        writer = arrow.parquet.ParquetWriter(handle, schema, compression=COMPRESSION, compression_level=ZSTD_LEVEL)
        try:
            for batch in csv_reader(arrow, source, specs):
                converted = parquet_batch(arrow, batch, specs, schema)
                pending.append(converted)
                pending_bytes += converted.nbytes
                rows += converted.num_rows
                if pending_bytes >= ROW_GROUP_BYTES or sum(b.num_rows for b in pending) >= ROW_GROUP_ROWS:
                    writer.write_table(arrow.pa.Table.from_batches(pending, schema))
                    pending, pending_bytes = [], 0
            if pending:
                writer.write_table(arrow.pa.Table.from_batches(pending, schema))
        finally:
            writer.close()
        handle.flush()
        os.fsync(handle.fileno())
    return rows


def _array_element(value: Any) -> str:
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "t" if value else "f"
    if isinstance(value, float):
        if math.isnan(value):
            return "NaN"
        if value in (float("inf"), float("-inf")):
            return "Infinity" if value > 0 else "-Infinity"
        return repr(value)
    if isinstance(value, int):
        return str(value)
    return '"%s"' % str(value).replace("\\", "\\\\").replace('"', '\\"')


def array_literal(values: Sequence[Any] | None) -> str | None:
    """A one-dimensional PostgreSQL array literal (``{1,NULL,"a b"}``) of a Parquet list's values."""
    if values is None:
        return None
    return "{%s}" % ",".join(_array_element(v) for v in values)


def pg_csv(arrow: Arrow, batch: Any, specs: Sequence[ColumnSpec]) -> bytes:
    """A Parquet record batch as CSV that ``COPY ... FROM STDIN (FORMAT csv)`` reads back to the same values."""
    pa = arrow.pa
    columns = []
    for i, spec in enumerate(specs):
        column = batch.column(i)
        if spec.transfer == TRANSFER_HEX:
            column = pa.array([None if v is None else "\\x" + v.hex() for v in column.to_pylist()], pa.string())
        elif spec.transfer == TRANSFER_JSON:
            column = pa.array([array_literal(v) for v in column.to_pylist()], pa.string())
        columns.append(column)
    table = pa.Table.from_arrays(columns, names=["c%d" % i for i in range(len(columns))])
    sink = pa.BufferOutputStream()
    arrow.csv.write_csv(table, sink, arrow.csv.WriteOptions(include_header=False, quoting_style="all_valid"))
    return sink.getvalue().to_pybytes()


def parquet_rows(arrow: Arrow, path: str) -> int:
    """The row count a Parquet file's footer states."""
    return arrow.parquet.ParquetFile(path).metadata.num_rows


def csv_chunks(
    arrow: Arrow, path: str, specs: Sequence[ColumnSpec], batch_rows: int = READ_BATCH_ROWS
) -> Iterator[bytes]:
    """The Parquet file ``path`` as PostgreSQL CSV, one chunk per batch of ``batch_rows`` rows (bounded memory).

    Refuses a file whose columns are not the manifest's (names and Parquet types, in order).
    """
    handle = arrow.parquet.ParquetFile(path)
    expected = [(s.name, arrow_type(arrow, s.parquet)) for s in specs]
    found = [(f.name, f.type) for f in handle.schema_arrow]
    if found != expected:
        raise InvalidInput(
            "%s does not hold the manifest's columns (file: %s; manifest: %s). What to do: restore it with the "
            "manifest written beside it." % (path, found, expected)
        )
    for batch in handle.iter_batches(batch_size=batch_rows):
        yield pg_csv(arrow, batch, specs)


# -- durable files ------------------------------------------------------------------------------------------------


def fsync_directory(path: str) -> None:
    """fsync a folder, so the names created, renamed or removed in it survive a crash."""
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def prepare_directory(archive_dir: str, paths: ArchivePaths) -> None:
    """Check ``archive_dir`` exists and create the table's archive folder in it (durably)."""
    if not os.path.isdir(archive_dir):
        raise ArchiveWriteFailed(
            "archive_dir %s does not exist or is not a folder on %s. Nothing was changed. What to do: create it, "
            "writable by the user the module runs as, or fix archive_dir." % (archive_dir, socket.gethostname())
        )
    try:
        if not os.path.isdir(paths.directory):
            os.makedirs(paths.directory, exist_ok=True)
            fsync_directory(os.path.dirname(paths.directory))
    except OSError as error:
        raise write_failure(paths.directory, error) from None


def write_failure(path: str, error: OSError) -> ArchiveWriteFailed:
    """The error for an OS refusal while writing under the archive folder."""
    return ArchiveWriteFailed(
        "cannot write %s on %s: %s. Nothing was changed and no partial file was left. What to do: make the "
        "archive folder writable by the user the module runs as, and free space on it (or choose another "
        "archive_dir)." % (path, socket.gethostname(), error.strerror or error),
        errno=error.errno,
    )


def temp_path(paths: ArchivePaths, what: str) -> str:
    """A temporary file name of this process for ``what`` (``parquet``, ``manifest``) beside the archive."""
    return "%s%d-%s" % (paths.temp_prefix, os.getpid(), what)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True


def remove_stale_temps(paths: ArchivePaths) -> tuple[str, ...]:
    """Remove the temporary files a killed run left for this table (their process is gone, or is this one)."""
    removed: list[str] = []
    if not os.path.isdir(paths.directory):
        return ()
    for entry in sorted(os.listdir(paths.directory)):
        path = os.path.join(paths.directory, entry)
        pid = temp_pid(path, paths)
        if pid is not None and (pid == os.getpid() or not _alive(pid)):
            remove_quietly(path)
            removed.append(path)
    if removed:
        fsync_directory(paths.directory)
    return tuple(removed)


def remove_quietly(path: str) -> None:
    """Remove a file if it is there (a folder that refuses it, e.g. read-only, refused its creation too)."""
    try:
        os.unlink(path)
    except OSError:
        pass


def publish(temporary: str, final: str) -> None:
    """Rename a complete, fsynced file to its final name atomically, and make the rename durable."""
    os.replace(temporary, final)
    fsync_directory(os.path.dirname(final))


def file_sha256(path: str) -> str:
    """The SHA-256 of a file's bytes, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def write_manifest(paths: ArchivePaths, manifest: Manifest) -> None:
    """Write the manifest beside its Parquet file: temporary name, fsync, rename, fsync of the folder."""
    temporary = temp_path(paths, "manifest")
    try:
        with open(temporary, "x", encoding="utf-8") as handle:
            json.dump(manifest_to_json(manifest), handle, indent=1, sort_keys=True, ensure_ascii=False)
            handle.write("\n")
            handle.flush()
            os.fsync(handle.fileno())
        publish(temporary, paths.manifest)
    except OSError as error:
        remove_quietly(temporary)
        raise write_failure(paths.manifest, error) from None


def read_manifest(path: str) -> Manifest:
    """Read a manifest file; raise InvalidInput naming it when it is missing or unreadable."""
    try:
        with open(path, encoding="utf-8") as handle:
            data = json.load(handle)
    except (OSError, ValueError) as error:
        raise InvalidInput(
            "cannot read the archive manifest %s: %s. What to do: give the path of a <table>.manifest.json "
            "written by sigeti.dwh." % (path, error)
        ) from None
    return manifest_from_json(data, path)
