# Copyright: (c) 2026, SIGETI data platform team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Free disk for the rewrites a run plans, on the host the module runs on (``sigeti.dwh.disk_space``).

A migration, a recompression or a VACUUM FULL writes a new copy of a table beside the old one, in the table's
tablespace: its filesystem needs room for ``required_ratio`` x the table's size. The tablespace's folder is read from
the catalog (``pg_tablespace_location``, readable by any role); for the default tablespace it is the data directory,
found, in order, from ``data_directory`` (the option), the server's setting (superuser or pg_read_all_settings), or
the working directory of this session's server process when the server runs on this host (``/proc/<pid>/cwd``:
readable by root or the server's own user). A folder counts only when its ``postmaster.pid`` names the server's port
and start time (a same-named folder of another cluster does not). What cannot be seen is a warning that says exactly
what is missing; what is short is a failure before anything changed.
"""

from __future__ import annotations

import dataclasses
import os
from typing import TYPE_CHECKING, Any, Callable, Mapping, Sequence

from ansible_collections.sigeti.dwh.plugins.module_utils.catalog import backup as catalog_backup
from ansible_collections.sigeti.dwh.plugins.module_utils.catalog.backup import DiskFacts
from ansible_collections.sigeti.dwh.plugins.module_utils.core.errors import DwhError, InvalidInput
from ansible_collections.sigeti.dwh.plugins.module_utils.core.identifiers import split_name
from ansible_collections.sigeti.dwh.plugins.module_utils.core.units import format_bytes

if TYPE_CHECKING:  # names used in annotations only
    from ansible_collections.sigeti.dwh.plugins.module_utils.session.connection import Connection

KIND_WORDS = {
    "migrate": "migration",
    "recompress": "recompression",
    "full": "VACUUM FULL / pg_repack",
    "unknown": "whatever this run changes (not probed)",
}


@dataclasses.dataclass(frozen=True)
class Need:
    """Bytes a filesystem must hold for the rewrites of some tables (``folder`` None: not visible here)."""

    folder: str | None
    tables: tuple[str, ...]
    bytes: int
    why_unseen: str | None


def is_server_folder(folder: str, facts: DiskFacts) -> bool | None:
    """Whether ``folder`` is the data directory of the server ``facts`` describe: its ``postmaster.pid`` names the
    server's port and start time (a same-named folder of another cluster does not count). None when the folder
    cannot be looked into (a data directory is 0700; its path still tells the filesystem)."""
    if not os.path.isdir(folder):
        return False
    if not os.access(folder, os.R_OK | os.X_OK):
        return None
    try:
        with open(os.path.join(folder, "postmaster.pid")) as handle:
            lines = handle.read().splitlines()
        return int(lines[3].strip()) == facts.port and abs(int(lines[2].strip()) - facts.started) <= 2
    except PermissionError:
        return None
    except (OSError, ValueError, IndexError):
        return False


def data_directory(
    given: str, facts: DiskFacts, read_link: Callable[[str], str] = os.readlink
) -> tuple[str | None, str]:
    """The server's data directory as seen from this host, and how it was found (or why it was not)."""
    # (folder, how it was found, whether its postmaster.pid must be readable: only root or the server's user reads
    # another process's working directory, and they read postmaster.pid too)
    # A folder given is the one meant: when it is wrong, say so rather than measure another.
    candidates = []
    if given:
        candidates.append((given, "data_directory (dwh_data_directory)", False))
    elif facts.data_directory:
        candidates.append((facts.data_directory, "the server's data_directory setting", False))
    else:
        try:
            cwd = read_link("/proc/%d/cwd" % facts.backend_pid)
            candidates.append((cwd, "the server process's working directory", True))
        except OSError:
            pass
    for folder, how, strict in candidates:
        verdict = is_server_folder(folder, facts)
        if verdict or (verdict is None and not strict):
            return folder, how
    if given:
        return None, (
            "data_directory (dwh_data_directory) %s is not the data directory of the server on port %d on this host "
            "(no such folder, or its postmaster.pid names another server)" % (given, facts.port)
        )
    if facts.data_directory:
        return None, "the data directory %s is not on this host (the database runs elsewhere)" % facts.data_directory
    return None, (
        "the data directory is unknown here: %s may not read the data_directory setting (grant it "
        "pg_read_all_settings: GRANT pg_read_all_settings TO %s), the server process is not visible from this host "
        "(another host, or another user without root), and dwh_data_directory (data_directory) is not set"
        % (facts.user, facts.user)
    )


def needs(facts: DiskFacts, ratio: float, data_dir: str | None, why: str) -> list[Need]:
    """The bytes each visible filesystem must hold (tablespaces on one filesystem summed), and what is not visible."""
    grouped: dict[Any, list[Any]] = {}
    for use in facts.uses:
        folder = use.location or data_dir
        if folder and not os.path.isdir(folder):
            key, shown, unseen = ("unseen", use.location), None, "tablespace folder %s is not on this host" % folder
        elif folder:
            key, shown, unseen = os.stat(folder).st_dev, folder, None
        else:
            key, shown, unseen = ("unseen", ""), None, why
        entry = grouped.setdefault(key, [shown, [], 0, unseen])
        if use.table not in entry[1]:
            entry[1].append(use.table)
        entry[2] += use.bytes
    return [Need(shown, tuple(tables), int(size * ratio), unseen) for shown, tables, size, unseen in grouped.values()]


def doing(tables: Sequence[str], kinds: Mapping[str, Sequence[str]]) -> str:
    """``dwh_facts.t (migration)``: the tables and what rewrites them, for messages."""
    return ", ".join(
        "%s (%s)" % (t, ", ".join(KIND_WORDS.get(k, k) for k in kinds.get(t, []) if k in KIND_WORDS) or "rewrite")
        for t in tables
    )


def check(conn: Connection, params: dict[str, Any], warn: Callable[[str], None]) -> dict[str, Any]:
    """The whole run of ``sigeti.dwh.disk_space`` once connected: fails when a filesystem is short, warns for what
    cannot be seen, returns what was measured (``checks``)."""
    kinds = {str(k): list(v or []) for k, v in (params.get("tables") or {}).items()}
    ratio = float(params.get("required_ratio", 1.0))
    if ratio < 0:
        raise InvalidInput("required_ratio=%r: give 0 or more (the share of the tables' size a rewrite writes)" % ratio)
    if not kinds:
        return {"changed": False, "checks": [], "msg": "no table gets a new copy of its data: nothing to check"}
    names = [split_name(name) for name in kinds]
    facts = catalog_backup.read_disk_facts(conn, names, list(kinds))
    folder, how = data_directory(params.get("data_directory") or "", facts)
    checks, short = [], []
    for need in needs(facts, ratio, folder, how):
        entry = {"folder": need.folder, "tables": list(need.tables), "required_bytes": need.bytes}
        if need.folder is None:
            entry["reason"] = need.why_unseen
            warn(
                "free disk NOT checked for %s: %s. Make sure the database server has at least %s free where those "
                "tables live before these rewrites."
                % (doing(need.tables, kinds), need.why_unseen, format_bytes(need.bytes))
            )
        else:
            stat = os.statvfs(need.folder)
            entry["free_bytes"] = free = stat.f_bavail * stat.f_frsize
            if free < need.bytes:
                short.append(
                    "%s free on the filesystem of %s, but %s there needs %s (required_ratio - dwh_disk_required_ratio - "
                    "%s x their size)"
                    % (format_bytes(free), need.folder, doing(need.tables, kinds), format_bytes(need.bytes), ratio)
                )
        checks.append(entry)
    if short:
        raise DwhError(
            "%s. Free some space, or lower dwh_disk_required_ratio if you know the rewrites need less; nothing was "
            "changed." % "; ".join(short),
            checks=checks,
        )
    seen = [c for c in checks if c["folder"]]
    msg = (
        "; ".join(
            "%s free on the filesystem of %s, %s needed for %s"
            % (format_bytes(c["free_bytes"]), c["folder"], format_bytes(c["required_bytes"]), ", ".join(c["tables"]))
            for c in seen
        )
        or "free disk not checked (see the warning)"
    )
    return {
        "changed": False,
        "checks": checks,
        "data_directory": folder,
        "found_by": how if folder else None,
        "msg": msg,
    }
