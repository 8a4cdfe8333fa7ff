# Copyright: (c) 2026, SIGETI data platform team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The records of a Parquet archive: its content checksum, its manifest, where its files live (pure: no I/O).

**The content checksum** is computed by PostgreSQL, on both sides: on the partition, and on the rows read back from
the Parquet file into a table of the same column types (the verification and the restore). Each row's text
(``ROW(r.*)::text``, every column through its type's output function) is hashed with md5; the 128 bits are split in two
halves, each read as a signed 64-bit integer, and each half is summed over the rows. The sums are order-independent
(a table has no order; a Parquet file has one), so the two sides need not sort, and they add across batches (the
verification reads the file back in batches into a small temporary table). The canonical form is
``md5-rowsum-v1:<rows>:<32 hex digits>``: the row count, then both sums modulo 2**64, high half first.

The row text depends on session settings, so the scans pin them (:data:`CANONICAL_SETTINGS`): the time zone (UTC),
the date style, and ``extra_float_digits`` (1: the shortest text that reads back to the same float, whatever the
DBA's role sets). Identical values give identical texts; any value the archive changed (a timestamp shifted, a float
rounded, a scale lost, an empty string become NULL) changes the checksum.
"""

from __future__ import annotations

import dataclasses
import os
import re
from typing import Any, Mapping, Sequence

from ansible_collections.sigeti.dwh.plugins.module_utils.archive.types import ColumnSpec
from ansible_collections.sigeti.dwh.plugins.module_utils.core.errors import InvalidInput

# Kept equal to galaxy.yml's version by a unit test (a module does not ship galaxy.yml).
COLLECTION_VERSION = "0.1.0"
MANIFEST_FORMAT = 1
CHECKSUM_SCHEME = "md5-rowsum-v1"
COMPRESSION = "zstd"
MANIFEST_SUFFIX = ".manifest.json"
PARQUET_SUFFIX = ".parquet"
TEMP_MARK = ".tmp-"
# SET LOCAL in every transaction whose row texts are hashed or whose values travel as text.
CANONICAL_SETTINGS = (
    ("TimeZone", "UTC"),
    ("DateStyle", "ISO, YMD"),
    ("IntervalStyle", "postgres"),
    ("extra_float_digits", "1"),
    ("bytea_output", "hex"),
)
_MOD = 1 << 64
_CHECKSUM = re.compile(r"^%s:(\d+):([0-9a-f]{32})$" % re.escape(CHECKSUM_SCHEME))
_UNSAFE = re.compile(r"[^A-Za-z0-9_.$-]")


@dataclasses.dataclass(frozen=True)
class Checksum:
    """Row count and the two summed halves of the rows' md5 (see the module docstring); ``+`` adds batches."""

    rows: int
    high: int
    low: int

    def __add__(self, other: Checksum) -> Checksum:
        return Checksum(self.rows + other.rows, (self.high + other.high) % _MOD, (self.low + other.low) % _MOD)

    def text(self) -> str:
        """The canonical form: ``md5-rowsum-v1:<rows>:<high><low>`` (hex, 16 digits each)."""
        return "%s:%d:%016x%016x" % (CHECKSUM_SCHEME, self.rows, self.high % _MOD, self.low % _MOD)


def checksum_of(rows: int, high: Any, low: Any) -> Checksum:
    """The checksum from a scan's ``count(*)`` and its two sums (numeric, possibly negative, NULL on no rows)."""
    return Checksum(int(rows), int(high or 0) % _MOD, int(low or 0) % _MOD)


def parse_checksum(text: str) -> Checksum:
    """Read a canonical checksum back; raise InvalidInput on anything else."""
    match = _CHECKSUM.match(str(text or ""))
    if not match:
        raise InvalidInput("%r is not a %s checksum" % (text, CHECKSUM_SCHEME))
    digits = match.group(2)
    return Checksum(int(match.group(1)), int(digits[:16], 16), int(digits[16:], 16))


@dataclasses.dataclass(frozen=True)
class ServerIdentity:
    """Which server and database the archive came from."""

    version: str
    system_identifier: str | None
    database: str
    cluster_name: str
    address: str | None
    port: int | None


@dataclasses.dataclass(frozen=True)
class Manifest:
    """What a Parquet archive holds, written beside it once the file is complete and verified.

    ``parent`` and ``bound`` are the partitioned table and the partition's bound (``pg_get_expr`` text, e.g.
    ``FOR VALUES FROM (20190101) TO (20200101)``), None for a table that is no partition; ``checksum`` the content
    checksum's canonical form; ``file_sha256`` the Parquet file's own digest (a cheap check before reading it);
    ``table_oid`` the exported table's OID on ``server`` (None in manifests of earlier versions): with the name, it
    tells the very table a retention run detached from a table of the same name made later (a restore's side table).
    """

    schema: str
    table: str
    parent: tuple[str, str] | None
    bound: str | None
    columns: tuple[ColumnSpec, ...]
    rows: int
    checksum: str
    parquet_file: str
    file_bytes: int
    file_sha256: str
    server: ServerIdentity
    created_at: str
    library: str
    table_oid: int | None = None
    compression: str = COMPRESSION
    collection_version: str = COLLECTION_VERSION
    format: int = MANIFEST_FORMAT


@dataclasses.dataclass(frozen=True)
class ArchivePaths:
    """Where one table's archive lives: ``<archive_dir>/<schema>.<parent>/<table>.parquet`` and its manifest."""

    directory: str
    parquet: str
    manifest: str
    temp_prefix: str


def file_part(name: str) -> str:
    """A PostgreSQL name as one safe file-name part: every character but ``[A-Za-z0-9_.$-]``, and a leading dot, is
    %-escaped (its UTF-8 bytes), so ``../x`` or ``a/b`` cannot leave the archive folder and two names stay two."""
    escaped = _UNSAFE.sub(lambda m: "".join("%%%02X" % b for b in m.group(0).encode("utf-8")), name)
    if escaped.startswith("."):
        escaped = "%2E" + escaped[1:]
    return escaped


def archive_paths(archive_dir: str, schema: str, parent: str, table: str) -> ArchivePaths:
    """The archive files of partition ``table`` of ``schema.parent`` (``parent`` = ``table`` for a plain table)."""
    directory = os.path.join(archive_dir, "%s.%s" % (file_part(schema), file_part(parent)))
    stem = file_part(table)
    return ArchivePaths(
        directory=directory,
        parquet=os.path.join(directory, stem + PARQUET_SUFFIX),
        manifest=os.path.join(directory, stem + MANIFEST_SUFFIX),
        temp_prefix=os.path.join(directory, "." + stem + TEMP_MARK),
    )


def temp_pid(path: str, paths: ArchivePaths) -> int | None:
    """The process id a temporary file of ``paths`` was named after (``.<table>.tmp-<pid>-<what>``), else None."""
    if not path.startswith(paths.temp_prefix):
        return None
    head = path[len(paths.temp_prefix) :].split("-", 1)[0]
    return int(head) if head.isdigit() else None


def _spec_to_json(spec: ColumnSpec) -> dict[str, Any]:
    data = dataclasses.asdict(spec)
    data["modifiers"] = list(spec.modifiers)
    return data


def manifest_to_json(manifest: Manifest) -> dict[str, Any]:
    """The manifest as a JSON document (plain types only)."""
    data = dataclasses.asdict(manifest)
    data["columns"] = [_spec_to_json(c) for c in manifest.columns]
    data["parent"] = list(manifest.parent) if manifest.parent else None
    return data


def _pair(value: Any) -> tuple[str, str] | None:
    if value is None:
        return None
    if not isinstance(value, (list, tuple)) or len(value) != 2 or not all(isinstance(v, str) for v in value):
        raise ValueError("expected [schema, name], got %r" % (value,))
    return (value[0], value[1])


def _spec_from_json(data: Mapping[str, Any]) -> ColumnSpec:
    return ColumnSpec(
        name=str(data["name"]),
        pg_type=str(data["pg_type"]),
        base=str(data["base"]),
        modifiers=tuple(int(m) for m in data.get("modifiers") or ()),
        is_array=bool(data["is_array"]),
        parquet=str(data["parquet"]),
        transfer=str(data["transfer"]),
        not_null=bool(data["not_null"]),
        collation=_pair(data.get("collation")),
        enum_type=_pair(data.get("enum_type")),
    )


def manifest_from_json(data: Mapping[str, Any], source: str) -> Manifest:
    """Read a manifest document; raise InvalidInput naming ``source`` when it is not one this version reads."""
    try:
        if int(data.get("format", 0)) != MANIFEST_FORMAT:
            raise ValueError("format %r, this collection reads format %d" % (data.get("format"), MANIFEST_FORMAT))
        parse_checksum(data["checksum"])
        fields = {f.name for f in dataclasses.fields(ServerIdentity)}
        return Manifest(
            schema=str(data["schema"]),
            table=str(data["table"]),
            parent=_pair(data.get("parent")),
            bound=data.get("bound"),
            columns=tuple(_spec_from_json(c) for c in data["columns"]),
            rows=int(data["rows"]),
            checksum=str(data["checksum"]),
            parquet_file=str(data["parquet_file"]),
            file_bytes=int(data["file_bytes"]),
            file_sha256=str(data["file_sha256"]),
            server=ServerIdentity(**{k: v for k, v in data["server"].items() if k in fields}),
            created_at=str(data["created_at"]),
            library=str(data["library"]),
            table_oid=None if data.get("table_oid") is None else int(data["table_oid"]),
            compression=str(data.get("compression", COMPRESSION)),
            collection_version=str(data.get("collection_version", "")),
            format=MANIFEST_FORMAT,
        )
    except (KeyError, TypeError, ValueError, AttributeError, InvalidInput) as error:
        raise InvalidInput(
            "%s is not a readable archive manifest (%s: %s). What to do: restore from the manifest written beside "
            "the Parquet file by sigeti.dwh, or export the table again." % (source, type(error).__name__, error)
        ) from None


def same_columns(left: Sequence[ColumnSpec], right: Sequence[ColumnSpec]) -> bool:
    """Whether two tables' columns archive the same way (names, types, nullability, collation, in order)."""
    return tuple(left) == tuple(right)
