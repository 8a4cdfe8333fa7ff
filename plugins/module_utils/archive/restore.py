# Copyright: (c) 2026, SIGETI data platform team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""``sigeti.dwh.archive_restore``, its pure half: what each archived partition needs (nothing, a restore, an attach),
the ATTACH statement made from the manifest's bound, and the result (no I/O).

The bound travels in the manifest as PostgreSQL printed it (``FOR VALUES FROM ('2019-01-01') TO ('2020-01-01')``).
It is parsed (``core.bounds``) and composed again from its values, as literals: a manifest never brings SQL text of
its own.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

from ansible_collections.sigeti.dwh.plugins.module_utils.core.bounds import MAXVALUE, MINVALUE, parse_partition_bound
from ansible_collections.sigeti.dwh.plugins.module_utils.core.errors import InvalidInput
from ansible_collections.sigeti.dwh.plugins.module_utils.core.identifiers import display_name
from ansible_collections.sigeti.dwh.plugins.module_utils.plan import steps as planmod

try:
    from psycopg2 import sql
except ImportError:  # reported by the connection layer
    sql = None

if TYPE_CHECKING:  # names used in annotations only
    from psycopg2.sql import Composable

    from ansible_collections.sigeti.dwh.plugins.module_utils.archive.manifest import Manifest

# What a period needs, from the table found under its name (or under ``into``).
PRESENT = "present"  # the table holds the archive's rows: attached to the set (or the side table): nothing to do
RESTORE = "restore"  # no table: recreate it from the file (then attach it, unless ``into``)
ATTACH = "attach"  # a plain table holding the archive's rows (a restore whose attach failed): attach it


@dataclasses.dataclass(frozen=True)
class Restoration:
    """One period of ``periods``: its archive, the table it goes to, and what that needs."""

    period: str
    manifest_path: str
    parquet_path: str
    manifest: Manifest
    target: tuple[str, str]
    action: str
    attach: bool  # False with ``into`` (a plain side table)

    @property
    def changes(self) -> bool:
        """Whether the database changes for this period."""
        return self.action != PRESENT


def _value(value: Any) -> Composable:
    if value in (MINVALUE, MAXVALUE):
        return sql.SQL(value)
    if value is None:
        return sql.SQL("NULL")
    return sql.Literal(value)


def _values(values: list[Any]) -> Composable:
    return sql.SQL("({})").format(sql.SQL(", ").join(_value(v) for v in values))


def bound_clause(manifest: Manifest, source: str) -> Composable:
    """``FOR VALUES ...`` / ``DEFAULT`` of the manifest's bound, composed from its parsed values."""
    try:
        bound = parse_partition_bound(manifest.bound)
    except (ValueError, IndexError):
        bound = {"kind": "unreadable"}
    kind = (bound or {}).get("kind")
    if kind == "range":
        return sql.SQL("FOR VALUES FROM {} TO {}").format(_values(bound["low"]), _values(bound["high"]))
    if kind == "list":
        return sql.SQL("FOR VALUES IN {}").format(_values(bound["values"]))
    if kind == "hash":
        return sql.SQL("FOR VALUES WITH (MODULUS {}, REMAINDER {})").format(
            sql.Literal(int(bound["modulus"])), sql.Literal(int(bound["remainder"]))
        )
    if kind == "default":
        return sql.SQL("DEFAULT")
    raise InvalidInput(
        "%s holds no partition bound this collection reads (%r): it was not written from a partition. Nothing was "
        "changed. What to do: restore it with into (a plain side table)." % (source, manifest.bound)
    )


def attach_step(parent: tuple[str, str], item: Restoration) -> planmod.Step:
    """The ATTACH PARTITION of a restored table with its manifest's bound."""
    clause = bound_clause(item.manifest, item.manifest_path)
    return planmod.Step(
        sql.SQL("ALTER TABLE {} ATTACH PARTITION {} {}").format(
            sql.Identifier(*parent), sql.Identifier(*item.target), clause
        ),
        "attach %s, restored from %s, with the bound it had (%s; SHARE UPDATE EXCLUSIVE on the parent, its indexes "
        "built on the partition)" % (item.target[1], item.parquet_path, item.manifest.bound),
        lock=planmod.SHARE_UPDATE_EXCLUSIVE,
        targets=[parent, item.target],
    )


def check_steps(item: Restoration, checks: tuple[tuple[str, str], ...]) -> list[planmod.Step]:
    """The parent's CHECK constraints on the restored table before its attach (ATTACH PARTITION requires them and
    does not add them; the archive keeps columns, not constraints). ``checks``: ``(name, definition)`` as
    ``pg_get_constraintdef`` gives them."""
    return [
        planmod.Step(
            sql.SQL("ALTER TABLE {} ADD CONSTRAINT {} {}").format(
                sql.Identifier(*item.target), sql.Identifier(name), sql.SQL(definition)
            ),
            "add check %s of the set to %s (ATTACH PARTITION requires it; a scan of the restored rows)"
            % (name, item.target[1]),
            lock=planmod.ACCESS_EXCLUSIVE,
            targets=[item.target],
        )
        for name, definition in checks
    ]


def restore_reason(item: Restoration) -> str:
    """What the run does for one period, in words (the plan shown in check mode)."""
    shown = display_name(*item.target)
    if item.action == PRESENT:
        return "%s already holds the %d rows of %s (same checksum): nothing to do" % (
            shown,
            item.manifest.rows,
            item.parquet_path,
        )
    if item.action == ATTACH:
        return "%s holds the %d rows of %s (same checksum) but is not attached: attach it" % (
            shown,
            item.manifest.rows,
            item.parquet_path,
        )
    return "recreate %s from %s (%d rows, checked against checksum %s)%s" % (
        shown,
        item.parquet_path,
        item.manifest.rows,
        item.manifest.checksum,
        ", then attach it" if item.attach else ", a plain side table",
    )


def restored_entry(item: Restoration, done: bool) -> dict[str, Any]:
    """One entry of the result's ``restored``: the period, the table, the file, rows, checksum, what was done."""
    return {
        "period": item.period,
        "table": display_name(*item.target),
        "parquet": item.parquet_path,
        "manifest": item.manifest_path,
        "rows": item.manifest.rows,
        "checksum": item.manifest.checksum,
        "bound": item.manifest.bound,
        "action": item.action,
        "attached": item.attach,
        "done": done and item.changes,
    }
