# Copyright: (c) 2026, SIGETI data platform team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The preflight role's decisions, on plain values (pure): run by its filters on the controller, so the role only
orders modules.

- ``entry_errors``: what is wrong with ``dwh_tables`` before anything runs, by the modules' own validation
  (``partition_layout.validate_retention``, ``compression.declared_state``): one rule, one message, in one place.
- ``backup_policy``: ``dwh_backup`` and its settings read and checked (the old booleans still mean always/never).
- ``probe_plan``: from the check-mode results of the changing modules (each says in ``rewrites`` what it would
  rewrite or remove: ``backup_rewrites``), what this run would change, whether the confirmation and the backup are
  needed, which tables the dump covers and which need free disk for a new copy.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Dict, Mapping, Sequence

from ansible_collections.sigeti.dwh.plugins.module_utils.backup import rewrites as backup_rewrites
from ansible_collections.sigeti.dwh.plugins.module_utils.compression.planner import declared_state
from ansible_collections.sigeti.dwh.plugins.module_utils.core.errors import DwhError
from ansible_collections.sigeti.dwh.plugins.module_utils.partitioning.layout import validate_retention
from ansible_collections.sigeti.dwh.plugins.module_utils.tiering.planner import validate_tiers

POLICIES = ("auto", "always", "never")
TRUE_WORDS = ("true", "yes", "on", "1", "always")
FALSE_WORDS = ("false", "no", "off", "0", "never")
Entry = Dict[str, Any]


@dataclasses.dataclass(frozen=True)
class BackupPolicy:
    """The backup settings as read: ``policy`` auto, always or never."""

    policy: str
    scope: str
    verify: str
    keep: int


def entry_errors(tables: Sequence[Entry], host: str, table_misspelt: bool = False) -> list[str]:
    """Every problem of ``dwh_tables`` that no module call should be needed to find, one message each."""
    if not tables:
        return [
            "%s: dwh_tables is empty, so this run has nothing to maintain%s. Declare the tables in dwh_tables (see "
            "docs/roles.md); nothing was changed."
            % (host, " (dwh_table is set: a misspelling of dwh_tables?)" if table_misspelt else "")
        ]
    names = [str(entry.get("name")) for entry in tables]
    if len(set(names)) != len(names):
        return ["dwh_tables declares a table more than once (%s): keep one entry per table." % ", ".join(names)]
    errors = []
    for entry, name in zip(tables, names):
        try:
            validate_retention(entry.get("retention"), name)
            validate_tiers(entry.get("tiers"), name)
            if entry.get("compression") is not None:
                declared_state(dict(entry["compression"]))
        except DwhError as error:
            errors.append("dwh_tables entry %s: %s; nothing was changed." % (name, error.msg.rstrip(".")))
    return errors


def backup_policy(policy: Any, scope: Any, verify: Any, keep: Any, host: str) -> tuple[BackupPolicy | None, str | None]:
    """``(settings, None)``, or ``(None, message)`` naming every bad value and what each accepts."""
    word = str(policy).strip().lower()
    word = "always" if word in TRUE_WORDS else "never" if word in FALSE_WORDS else word
    try:
        count = int(keep)
    except (TypeError, ValueError):
        count = -1
    if word in POLICIES and scope in ("tables", "database") and verify in ("list", "restore") and count >= 0:
        return BackupPolicy(word, scope, verify, count), None
    return None, (
        "%s: dwh_backup is %r (auto, always or never; true/false still mean always/never), dwh_backup_scope %r "
        "(tables or database), dwh_backup_verify %r (list or restore), dwh_backup_keep %r (0 = keep all, else the N "
        "newest): fix the value; nothing was changed." % (host, policy, scope, verify, keep)
    )


def _results(registered: Mapping[str, Any] | None) -> list[dict[str, Any]]:
    """The per-table results of a registered role or module run, each with its table's ``name``."""
    out = []
    for result in (registered or {}).get("results") or []:
        name = (result.get("item") or {}).get("name") or result.get("name")
        if name and not result.get("skipped"):
            out.append(dict(result, name=name))
    return out


def probe_plan(
    tables: Sequence[Entry],
    settings: BackupPolicy,
    probed: bool,
    partitioning: Mapping[str, Any] | None = None,
    compression: Mapping[str, Any] | None = None,
    vacuum: Mapping[str, Any] | None = None,
    backup_dir: str = "",
) -> dict[str, Any]:
    """What this run would change and what must come before it, from the check-mode results of the changing modules.

    Returns ``planned`` (``"partitioning: t"``: the structural changes the confirmation lists), ``changes_planned``,
    ``rewrites`` (tables whose rows would be rewritten or removed, with the kinds), ``backup_needed``,
    ``backup_tables``, ``disk_tables`` (tables getting a new copy of their data: free disk is checked for them),
    ``announce`` (the confirmation's backup sentence, naming ``backup_dir``) and ``summary`` (the probe's line).
    Without a probe (``probed`` false) every existing declared table counts.
    """
    existing = [str(t["name"]) for t in tables if t.get("columns") is None]
    rewrites: dict[str, list[str]] = {}
    planned = []
    for role, results in (("partitioning", partitioning), ("compression", compression), ("vacuum", vacuum)):
        for result in _results(results):
            if role != "vacuum" and result.get("queries"):
                planned.append("%s: %s" % (role, result["name"]))
            for kind in result.get("rewrites") or []:
                rewrites.setdefault(result["name"], [])
                if kind not in rewrites[result["name"]]:
                    rewrites[result["name"]].append(kind)
    if not probed:
        rewrites = {name: ["unknown"] for name in existing}
    backup_tables = [n for n in existing if n in rewrites] if settings.policy == "auto" and probed else existing
    needed = settings.policy != "never" and (settings.scope == "database" or bool(backup_tables))
    needed = needed and (not probed or bool(rewrites) or (settings.policy == "always" and bool(planned)))
    disk = {name: kinds for name, kinds in rewrites.items() if name in existing and backup_rewrites.needs_room(kinds)}
    covered = "the database" if settings.scope == "database" else ", ".join(backup_tables)
    if needed:
        announce = "A backup (pg_dump -Fc of %s, verified) will be taken into %s first." % (covered, backup_dir)
    else:
        announce = "NO BACKUP will be taken (dwh_backup: %s%s)." % (
            settings.policy,
            ": nothing is rewritten or removed" if settings.policy == "auto" else "",
        )
    return {
        "planned": planned,
        "changes_planned": not probed or bool(planned),
        "rewrites": rewrites,
        "backup_needed": needed,
        "backup_tables": backup_tables,
        "disk_tables": disk,
        "announce": announce,
        "summary": summary(planned, rewrites, needed, settings, covered, disk),
    }


def summary(
    planned: Sequence[str],
    rewrites: Mapping[str, list[str]],
    needed: bool,
    settings: BackupPolicy,
    covered: str,
    disk: Mapping[str, list[str]],
) -> str:
    """The probe's line: what would change, what is rewritten or removed, whether a backup is taken, disk."""
    changes = "; ".join(planned) if planned else "no structural change planned, no prompt"
    rewritten = ", ".join("%s (%s)" % (name, ", ".join(kinds)) for name, kinds in rewrites.items()) or "none"
    if needed:
        backup = "yes (dwh_backup: %s; %s)" % (settings.policy, covered)
    else:
        backup = "no (dwh_backup: %s)" % settings.policy
    room = "checked for %s" % ", ".join(disk) if disk else "no new copy of any table: nothing to check"
    return "%s; rewrites or removes data of: %s; backup: %s; free disk: %s" % (changes, rewritten, backup, room)
