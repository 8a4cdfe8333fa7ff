# Copyright: (c) 2026, SIGETI data platform team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The backup's decisions on plain values (pure): what a dump holds, its name, its manifest, the programs' command
lines, the free-space check, the restore check's comparison and which older dumps the rotation removes.

A table-scoped dump is ``pg_dump -Fc`` of the database with every relation it does not need left out by exact name
(``--exclude-table``), the large objects left out (``-B``) and only the extensions its definitions use (``-e``):
schemas, types, domains, functions come along, so ``createdb x; pg_restore -d x <dump>`` restores it alone.

Dumps are told apart by their manifest (``<dump>.json``, written beside it once the dump is verified and complete):
who took it (the host label, the database, the server's system identifier), a sequence number and when. The
rotation reads only manifests, never a file name: a file without one is never touched.
"""

from __future__ import annotations

import dataclasses
import datetime
import hashlib
import json
import re
from collections import Counter
from typing import Any, Sequence

from ansible_collections.sigeti.dwh.plugins.module_utils.catalog.backup import (
    KIND_NAMES,
    DumpFacts,
    Member,
    Relation,
    dump_set,
    relation_links,
)
from ansible_collections.sigeti.dwh.plugins.module_utils.core.errors import InvalidInput
from ansible_collections.sigeti.dwh.plugins.module_utils.core.units import format_bytes

MANIFEST_FORMAT = "sigeti.dwh backup 1"
MANIFEST_SUFFIX = ".json"
DUMP_SUFFIX = ".dump"
PARTIAL_SUFFIX = ".partial"
PGPASS_PREFIX = ".sigeti-pgpass-"
SCRATCH_PREFIX = "sigeti_verify_"
SCOPES = ("tables", "database")
VERIFICATIONS = ("list", "restore")
# Characters kept as they are in a dump's name; every other byte is written %XX. "@" (always encoded in a part)
# ends the database's part and the fixed-length tail ends the host's, so two (database, host) pairs never give the
# same name.
_SAFE = re.compile(r"[A-Za-z0-9._-]")
_NAME_PART_MAX = 80
# What a name ends with after the host: _<UTC time>_<6 hex digits>.dump
NAME_TAIL = re.compile(r"_\d{8}T\d{6}Z_[0-9a-f]{6}\.dump$")


@dataclasses.dataclass(frozen=True)
class DumpSelection:
    """What a table-scoped dump holds: its relations (each with why), the relations it leaves out and the
    extensions its definitions need (``pg_dump -e``)."""

    members: tuple[Member, ...]
    excluded: tuple[Relation, ...]
    extensions: tuple[str, ...]

    def contents(self) -> str:
        """``partitioned table 1, table 12, view 1`` (kinds in order of appearance)."""
        counts = Counter(KIND_NAMES[m.relation.relkind] for m in self.members)
        return ", ".join("%s %d" % (kind, count) for kind, count in counts.items())

    def tables(self) -> list[tuple[str, str]]:
        """The dumped tables holding rows (not partitioned parents, views or sequences)."""
        return [(m.relation.schema, m.relation.name) for m in self.members if m.relation.relkind == "r"]


@dataclasses.dataclass(frozen=True)
class Identity:
    """Who a dump belongs to: rotation only ever compares dumps of the same identity."""

    host: str
    database: str
    system_identifier: str | None


@dataclasses.dataclass(frozen=True)
class Manifest:
    """A dump's own record, as written beside it (``<dump>.json``)."""

    identity: Identity
    sequence: int
    started_at: str
    file: str
    bytes: int

    def to_json(self, extra: dict[str, Any]) -> str:
        """The manifest file's text: the record, then ``extra`` (what the dump holds, how it was verified)."""
        body = {
            "format": MANIFEST_FORMAT,
            "host": self.identity.host,
            "database": self.identity.database,
            "system_identifier": self.identity.system_identifier,
            "sequence": self.sequence,
            "started_at": self.started_at,
            "file": self.file,
            "bytes": self.bytes,
        }
        body.update(extra)
        return json.dumps(body, indent=2, sort_keys=False) + "\n"


def select_dump(facts: DumpFacts) -> DumpSelection:
    """The relations a table-scoped dump holds, those it leaves out, and the extensions it needs."""
    links, needed = relation_links(facts)
    members = dump_set(facts.touched, links, needed)
    kept = {m.relation.oid for m in members}
    excluded = tuple(r for r in facts.relations if r.oid not in kept)
    extensions = sorted(
        {use.extension for use in facts.uses if use.extension and (use.owner is None or use.owner.oid in kept)}
    )
    return DumpSelection(tuple(members), excluded, tuple(extensions))


def pattern(schema: str, name: str) -> str:
    """An exact-name pattern for pg_dump: both parts double-quoted (dots, capitals, ``*`` are no pattern)."""
    return '"%s"."%s"' % (schema.replace('"', '""'), name.replace('"', '""'))


def conninfo(kwargs: dict[str, Any]) -> str:
    """A libpq conninfo string from psycopg2.connect() keyword arguments, without the password."""
    quoted = []
    for key, value in kwargs.items():
        if key == "password" or value is None:
            continue
        quoted.append("%s='%s'" % (key, str(value).replace("\\", "\\\\").replace("'", "\\'")))
    return " ".join(quoted)


def pgpass_line(password: str) -> str:
    """The one line of a private pgpass file carrying ``password`` for any host, port, database and user."""
    if "\n" in password or "\r" in password:
        raise InvalidInput("login_password holds a line break: a pgpass file cannot carry it, so pg_dump cannot use it")
    return "*:*:*:*:%s\n" % password.replace("\\", "\\\\").replace(":", "\\:")


def dump_argv(
    program: str,
    target: str,
    database: str,
    lock_timeout_ms: int,
    selection: DumpSelection | None,
    snapshot: str | None,
    role: str | None = None,
) -> list[str]:
    """``pg_dump`` writing ``target``: the whole database (``selection`` None), or all but the relations the
    selection leaves out, without large objects, with only the extensions it needs."""
    argv = [program, "-Fc", "--no-password", "--lock-wait-timeout=%dms" % lock_timeout_ms, "-f", target]
    argv += role_options(role)
    if snapshot:
        argv.append("--snapshot=%s" % snapshot)
    if selection is not None:
        argv.append("-B")
        # Without -e every extension would come along; plpgsql is built in, so naming it adds nothing.
        for extension in selection.extensions or ("plpgsql",):
            argv.append("--extension=%s" % pattern_extension(extension))
        argv.extend("--exclude-table=%s" % pattern(r.schema, r.name) for r in selection.excluded)
    argv += ["-d", database]
    return argv


def role_options(role: str | None) -> list[str]:
    """``--role`` when the modules work as a session role: the programs then do too."""
    return ["--role=%s" % role] if role else []


def pattern_extension(name: str) -> str:
    """An exact-name pattern for ``pg_dump --extension``."""
    return '"%s"' % name.replace('"', '""')


def name_part(text: str) -> str:
    """``text`` for a file name: letters, digits, dot and dash as they are, every other byte as %XX (a leading dot
    too, so no name is hidden); long parts end with a hash of the whole."""
    out = []
    for index, char in enumerate(text):
        if _SAFE.match(char) and not (index == 0 and char == "."):
            out.append(char)
        else:
            out.append("".join("%%%02X" % b for b in char.encode("utf-8")))
    encoded = "".join(out) or "%00"
    if len(encoded) > _NAME_PART_MAX:
        encoded = encoded[: _NAME_PART_MAX - 9] + "~" + hashlib.sha256(text.encode("utf-8")).hexdigest()[:8]
    return encoded


def dump_name(database: str, host: str, started: datetime.datetime, tail: int) -> str:
    """``<database>@<host>_<UTC time>_<6 hex digits>.dump``: the parts encoded by ``name_part``, so that host
    ``wh1`` on ``sigeti_staging`` and host ``staging_wh1`` on ``sigeti`` never write the same name."""
    return "%s@%s_%s_%06x%s" % (
        name_part(database),
        name_part(host),
        started.astimezone(datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ"),
        tail & 0xFFFFFF,
        DUMP_SUFFIX,
    )


def parse_manifest(text: str, file_name: str) -> Manifest | None:
    """The manifest in ``text`` (read from ``file_name``), or None when it is not one of ours or does not describe
    the dump beside it (``<dump>.json`` must name ``<dump>``)."""
    try:
        body = json.loads(text)
    except ValueError:
        return None
    if not isinstance(body, dict) or body.get("format") != MANIFEST_FORMAT:
        return None
    try:
        identity = Identity(str(body["host"]), str(body["database"]), body.get("system_identifier"))
        manifest = Manifest(
            identity, int(body["sequence"]), str(body["started_at"]), str(body["file"]), int(body["bytes"])
        )
    except (KeyError, TypeError, ValueError):
        return None
    if manifest.file + MANIFEST_SUFFIX != file_name or "/" in manifest.file:
        return None
    return manifest


def next_sequence(manifests: Sequence[Manifest], identity: Identity) -> int:
    """One more than the highest sequence number of ``identity``'s dumps (1 for the first)."""
    return max([m.sequence for m in manifests if m.identity == identity] or [0]) + 1


def rotation(manifests: Sequence[Manifest], current: Manifest, keep: int) -> list[Manifest]:
    """The dumps the rotation removes: those of ``current``'s identity beyond the ``keep`` newest, counting
    ``current`` (which is never removed), newest by sequence number, then recorded time. ``keep`` 0 keeps all."""
    if keep <= 0:
        return []
    others = [m for m in manifests if m.identity == current.identity and m.file != current.file]
    others.sort(key=lambda m: (m.sequence, m.started_at), reverse=True)
    return others[keep - 1 :]


def archive_database(listing: str) -> str | None:
    """The database name ``pg_restore --list`` reads in an archive's header (``;     dbname: NAME``)."""
    for line in listing.splitlines():
        match = re.match(r"^;\s+dbname:\s?(.*)$", line)
        if match:
            return match.group(1)
    return None


def listed_objects(listing: str) -> int:
    """How many entries ``pg_restore --list`` shows (its lines ``<id>; ...``)."""
    return sum(1 for line in listing.splitlines() if re.match(r"^\d+;", line))


def space_check(free: int, needed_bytes: int, ratio: float, folder: str, what: str) -> str | None:
    """None when ``free`` bytes hold ``needed_bytes`` x ``ratio``, else the message saying why not."""
    required = int(needed_bytes * ratio)
    if free >= required:
        return None
    return (
        "%s free in %s, but the dump of %s may need %s (their size x required_ratio %s). Free some space, point "
        "the backup folder elsewhere, or lower keep / required_ratio"
        % (format_bytes(free), folder, what, format_bytes(required), ratio)
    )


def count_differences(source: dict[str, int], restored: dict[str, int]) -> list[str]:
    """``schema.table source N restored M`` for every table whose row counts differ (missing counts as such)."""
    return [
        "%s source %s restored %s" % (key, source.get(key, "missing"), restored.get(key, "missing"))
        for key in sorted(set(source) | set(restored))
        if source.get(key) != restored.get(key)
    ]


def dumped_what(scope: str, tables: Sequence[str], selection: DumpSelection | None) -> str:
    """What the dump holds, in words, for messages."""
    if scope == "database" or selection is None:
        return "the database"
    return "%s (with what a restore of them needs: %s)" % (", ".join(tables), selection.contents())
