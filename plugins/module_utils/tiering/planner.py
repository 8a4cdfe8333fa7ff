# Copyright: (c) 2026, SIGETI data platform team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Storage tiers of a partition set (pure, no I/O): which tablespace each partition belongs in, and the moves.

``tiers: [{after: N, tablespace: NAME}, ...]`` says that a partition whose period ended more than N declared periods
before the current one lives, with its indexes, in NAME; of the tiers that apply, the one with the largest ``after``
wins. A partition no tier applies to (the current one, those ahead, recent ones) is left where it is, and so is the
default partition (it has no period). The facts are frozen records read by ``catalog.tablespaces``; the plan is one
move per partition, oldest first, at most ``max_per_run`` per run:

- ``ALTER TABLE ... SET TABLESPACE`` copies the files under ACCESS EXCLUSIVE on the partition (readers and writers of
  that partition wait for the whole copy; the parent and the other partitions are not locked). One transaction:
  ``LOCK TABLE`` first (the lock window is measured from it), the table, then each of its indexes (``ALTER INDEX``;
  a table's indexes do not follow it);
- with the ``pg_repack`` extension in the database and its program on this host, ``pg_repack --tablespace
  --moveidx`` rewrites it online instead (ACCESS EXCLUSIVE only for a moment at its start and end).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Sequence

from ansible_collections.sigeti.dwh.plugins.module_utils.core.bounds import MAXVALUE, MINVALUE
from ansible_collections.sigeti.dwh.plugins.module_utils.core.errors import InvalidInput
from ansible_collections.sigeti.dwh.plugins.module_utils.core.identifiers import display_name, quote_ident
from ansible_collections.sigeti.dwh.plugins.module_utils.partitioning.layout import bound_rank
from ansible_collections.sigeti.dwh.plugins.module_utils.plan import steps as planmod

try:
    from psycopg2 import sql
except ImportError:  # reported by the connection layer
    sql = None

# Moves one run makes unless told otherwise (``tiers_max_per_run``): each copies a whole partition under ACCESS
# EXCLUSIVE on it, so a first run over years of history is spread over several runs.
DEFAULT_MAX_MOVES = 3
MAX_NAME_BYTES = 63


@dataclasses.dataclass(frozen=True)
class Tier:
    """One entry of ``tiers`` once checked: partitions ended more than ``after`` periods ago live in ``tablespace``."""

    after: int
    tablespace: str


@dataclasses.dataclass(frozen=True)
class Placed:
    """A partition's index and the tablespace it is in (the database default when ``reltablespace`` is 0)."""

    schema: str
    name: str
    tablespace: str


@dataclasses.dataclass(frozen=True)
class PartitionPlace:
    """A leaf partition: its upper bound, where it and its indexes are, its size, whether pg_repack can rewrite it."""

    schema: str
    name: str
    high: Any
    tablespace: str
    bytes: int
    indexes: tuple[Placed, ...] = ()
    has_row_key: bool = False  # a primary key or a unique index over NOT NULL columns (pg_repack needs one)
    oid: int = 0


@dataclasses.dataclass(frozen=True)
class TablespaceFacts:
    """A tablespace a tier names, as the catalog and this host see it."""

    name: str
    exists: bool
    database_default: bool = False
    owner_can_create: bool = False
    user_can_create: bool = False
    free_bytes: int | None = None  # None: its filesystem is not visible from here (statvfs skipped)
    free_note: str = ""


@dataclasses.dataclass(frozen=True)
class Move:
    """One partition to move: where to, its size, how (``alter`` steps or ``pg_repack``), and its steps."""

    schema: str
    name: str
    tablespace: str
    source: str
    bytes: int
    method: str
    steps: tuple[planmod.Step, ...] = ()

    def report(self) -> dict[str, Any]:
        """The entry of the ``tiers.moved`` result (``lock_seconds`` is added by the run)."""
        return {
            "partition": self.name,
            "schema": self.schema,
            "tablespace": self.tablespace,
            "from": self.source,
            "bytes": self.bytes,
            "method": self.method,
        }


@dataclasses.dataclass(frozen=True)
class TierPlan:
    """The moves of this run (oldest first), how many wait for the next runs, and the warnings."""

    moves: tuple[Move, ...] = ()
    remaining: int = 0
    warnings: tuple[str, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.moves)


def validate_tiers(tiers: Sequence[Any] | None, table: str) -> tuple[Tier, ...]:
    """Check the ``tiers`` option; return its tiers, the largest ``after`` first (the one that wins)."""
    if not tiers:
        return ()
    if not isinstance(tiers, (list, tuple)):
        raise InvalidInput(
            "tiers for %s must be a list of {after, tablespace}, not %r; nothing was changed" % (table, tiers)
        )
    result = []
    for entry in tiers:
        if not isinstance(entry, dict):
            raise InvalidInput(
                "tiers entry %r for %s is not a dict: give {after: N, tablespace: NAME}; nothing was changed"
                % (entry, table)
            )
        after, name = entry.get("after"), entry.get("tablespace")
        if isinstance(after, bool) or not isinstance(after, int) or after < 0:
            raise InvalidInput(
                "tiers.after=%r for %s: give a whole number of periods, 0 or more (partitions whose period ended "
                "more than that many periods ago move to the tier's tablespace); nothing was changed" % (after, table)
            )
        check_tablespace_name(name, table)
        result.append(Tier(after, name))
    afters = [t.after for t in result]
    twice = sorted({a for a in afters if afters.count(a) > 1})
    if twice:
        raise InvalidInput(
            "tiers for %s give after=%s more than once: each tier needs its own after (the tier with the largest "
            "after that applies wins); nothing was changed" % (table, ", ".join(map(str, twice)))
        )
    return tuple(sorted(result, key=lambda t: -t.after))


def validate_max_moves(value: Any, table: str) -> int:
    """Check ``tiers_max_per_run``; return it (the default when not given)."""
    if value is None:
        return DEFAULT_MAX_MOVES
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InvalidInput(
            "tiers_max_per_run=%r for %s: give the largest number of partitions one run moves between tiers, 1 or "
            "more; nothing was changed" % (value, table)
        )
    return value


def check_tablespace_name(name: Any, table: str) -> None:
    """Return nothing; refuse a tablespace name PostgreSQL could not hold (empty, too long, control characters,
    the reserved ``pg_`` prefix other than pg_default)."""
    what = "tiers.tablespace=%r for %s" % (name, table)
    if not isinstance(name, str) or not name.strip():
        raise InvalidInput("%s: give the name of a tablespace; nothing was changed" % what)
    if len(name.encode("utf-8")) > MAX_NAME_BYTES or any(ord(c) < 32 for c in name) or name != name.strip():
        raise InvalidInput(
            "%s is not a valid tablespace name (at most 63 bytes, no control characters or surrounding spaces); "
            "nothing was changed" % what
        )
    if name.startswith("pg_") and name != "pg_default":
        raise InvalidInput(
            "%s: names starting with pg_ are reserved for the system (pg_global holds no table); use pg_default "
            "or a tablespace of your own; nothing was changed" % what
        )


def tier_of(tiers: Sequence[Tier], scheme: Any, current: Any, high: Any) -> Tier | None:
    """The tier a partition ending at ``high`` belongs to (``tiers`` largest ``after`` first), or None.

    A period ended more than N periods ago when its upper bound is at most the start of the period N before the
    current one (N = 0: every period before the current one), the same cutoff as ``retention.keep``.
    """
    if high is None or high in (MINVALUE, MAXVALUE):
        return None
    for tier in tiers:
        if bound_rank(high) <= bound_rank(scheme.key(scheme.step(current, -tier.after))):
            return tier
    return None


def misplaced(part: PartitionPlace, tablespace: str) -> tuple[bool, tuple[Placed, ...]]:
    """``(table misplaced, indexes misplaced)`` of a partition against the tablespace it belongs in."""
    return part.tablespace != tablespace, tuple(i for i in part.indexes if i.tablespace != tablespace)


def move_steps(part: PartitionPlace, tablespace: str) -> tuple[planmod.Step, ...]:
    """One transaction: lock the partition, move it, move each of its indexes that is elsewhere."""
    target = (part.schema, part.name)
    group = "tier:%s" % part.name
    table_off, indexes = misplaced(part, tablespace)
    shown = display_name(part.schema, part.name)
    steps = [
        planmod.Step(
            sql.SQL("LOCK TABLE {} IN ACCESS EXCLUSIVE MODE").format(sql.Identifier(*target)),
            "lock %s for its move to tablespace %s (ACCESS EXCLUSIVE on the partition only, until the commit: its "
            "readers and writers wait for the copy of %d bytes; the parent and the other partitions are not locked)"
            % (shown, tablespace, part.bytes),
            lock=planmod.ACCESS_EXCLUSIVE,
            targets=[target],
            group=group,
        )
    ]
    if table_off:
        steps.append(
            planmod.Step(
                sql.SQL("ALTER TABLE {} SET TABLESPACE {}").format(sql.Identifier(*target), sql.Identifier(tablespace)),
                "%s belongs in tier %s: move it from %s (its TOAST table follows)"
                % (shown, tablespace, part.tablespace),
                lock=planmod.ACCESS_EXCLUSIVE,
                targets=[target],
                group=group,
                effect=("tiered", part.name),
            )
        )
    for index in indexes:
        steps.append(
            planmod.Step(
                sql.SQL("ALTER INDEX {} SET TABLESPACE {}").format(
                    sql.Identifier(index.schema, index.name), sql.Identifier(tablespace)
                ),
                "index %s of %s follows it to %s (from %s)" % (index.name, shown, tablespace, index.tablespace),
                lock=planmod.ACCESS_EXCLUSIVE,
                targets=[target, (index.schema, index.name)],
                group=group,
                effect=("tiered", part.name),
            )
        )
    return tuple(steps)


def repack_can_name(tablespace: str) -> bool:
    """Whether ``pg_repack --tablespace`` reaches ``tablespace``: pg_repack 1.4 writes the name into its CREATE INDEX
    unquoted, so a name that needs quoting fails there (``Cold``: tablespace "cold" does not exist; ``Cold Space``: a
    syntax error; measured with 1.4.8), or lands the indexes in another tablespace of the folded name."""
    return quote_ident(tablespace) == tablespace


def plan_moves(
    tiers: Sequence[Tier],
    scheme: Any,
    current: Any,
    parts: Sequence[PartitionPlace],
    max_per_run: int = DEFAULT_MAX_MOVES,
    repack: bool = False,
    table: str = "",
) -> TierPlan:
    """The moves of this run: every partition whose tier's tablespace is not where it or an index of it is, oldest
    first, at most ``max_per_run``. With ``repack`` (pg_repack usable here) a partition with a row key is moved by
    pg_repack, the others by ALTER (pg_repack refuses a table without one), and so are the partitions of a tier whose
    tablespace name pg_repack cannot pass (``repack_can_name``), with a warning."""
    due = []
    for part in parts:
        tier = tier_of(tiers, scheme, current, part.high)
        if tier is None:
            continue
        table_off, indexes = misplaced(part, tier.tablespace)
        if table_off or indexes:
            due.append((part, tier))
    due.sort(key=lambda pair: bound_rank(pair[0].high))
    moves, unnamed = [], {}
    for part, tier in due[:max_per_run]:
        online = repack and part.has_row_key and part.tablespace != tier.tablespace
        if online and not repack_can_name(tier.tablespace):
            online = False
            unnamed.setdefault(tier.tablespace, []).append(part.name)
        method = "pg_repack" if online else "alter"
        steps = move_steps(part, tier.tablespace) if method == "alter" else ()
        moves.append(Move(part.schema, part.name, tier.tablespace, part.tablespace, part.bytes, method, steps))
    waiting = due[max_per_run:]
    warnings = tuple(
        "tiers: pg_repack cannot move partitions to tablespace %s: it writes the name unquoted into its SQL, and this "
        "one needs quoting; %s move(s) by ALTER TABLE instead (ACCESS EXCLUSIVE on each for its whole copy). "
        "To move them online, rename the tablespace to a lowercase name without spaces (ALTER TABLESPACE %s RENAME "
        "TO ...) and update tiers" % (quote_ident(name), ", ".join(names), quote_ident(name))
        for name, names in sorted(unnamed.items())
    )
    if waiting:
        warnings += (
            "tiers: %d more partition(s) of %s wait for their move (%s): tiers_max_per_run=%d per run, the next runs "
            "move them" % (len(waiting), table, ", ".join(p.name for p, _t in waiting), max_per_run),
        )
    return TierPlan(tuple(moves), len(waiting), warnings)


def refusals(
    tiers: Sequence[Tier], spaces: Sequence[TablespaceFacts], moves: Sequence[Move], table: str, owner: str, user: str
) -> list[str]:
    """What forbids the tiers before any change: a missing tablespace, the table owner or the connecting role without
    CREATE on one (the database's default tablespace needs none), not room enough on a visible filesystem for the
    partitions this run moves there. Returns the messages (empty when none)."""
    found = {s.name: s for s in spaces}
    errors = []
    for tier in tiers:
        space = found.get(tier.tablespace)
        if space is None or not space.exists:
            errors.append(
                "tiers: tablespace %s (after %d) of %s does not exist: create it (CREATE TABLESPACE %s LOCATION "
                "'/path') or fix the name" % (tier.tablespace, tier.after, table, tier.tablespace)
            )
            continue
        if space.database_default:
            continue
        lacking = [who for who, ok in ((owner, space.owner_can_create), (user, space.user_can_create)) if not ok]
        if lacking:
            errors.append(
                "tiers: %s lack(s) CREATE on tablespace %s, needed to move partitions of %s there: GRANT CREATE ON "
                "TABLESPACE %s TO %s"
                % (
                    ", ".join(sorted(set(lacking))),
                    tier.tablespace,
                    table,
                    tier.tablespace,
                    ", ".join(sorted(set(lacking))),
                )
            )
    needed: dict[str, int] = {}
    for move in moves:
        needed[move.tablespace] = needed.get(move.tablespace, 0) + move.bytes
    for name, size in sorted(needed.items()):
        space = found.get(name)
        if space is not None and space.free_bytes is not None and size > space.free_bytes:
            errors.append(
                "tiers: moving %s to tablespace %s needs %d bytes but %s has %d free (%s): free room there or lower "
                "tiers_max_per_run"
                % (
                    ", ".join(m.name for m in moves if m.tablespace == name),
                    name,
                    size,
                    name,
                    space.free_bytes,
                    space.free_note,
                )
            )
    return errors


def creation_tablespace(tiers: Sequence[Tier], scheme: Any, current: Any, point: Any) -> str | None:
    """The tablespace a new partition of period ``point`` is created in (None: the default, no tier applies)."""
    tier = tier_of(tiers, scheme, current, scheme.key(scheme.step(point))) if tiers else None
    return tier.tablespace if tier else None


def diff_lines(moves: Sequence[Move]) -> tuple[str, str]:
    """``(before, after)`` diff lines of the moves: each partition's tablespace."""
    before = "".join("%s TABLESPACE %s\n" % (m.name, m.source) for m in moves)
    after = "".join("%s TABLESPACE %s\n" % (m.name, m.tablespace) for m in moves)
    return before, after


def tablespace_clause(tablespace: str | None) -> Any:
    """`` TABLESPACE name`` for a CREATE TABLE in a tier (nothing without one)."""
    return sql.SQL(" TABLESPACE {}").format(sql.Identifier(tablespace)) if tablespace else sql.SQL("")


def creation_steps(tablespace: str | None, name: str, group: str) -> list[planmod.Step]:
    """The step starting the transaction that creates partition ``name`` in ``tablespace``: ``default_tablespace`` for
    that transaction only, so the indexes its ATTACH builds land there too (they follow that setting, not the
    table). Nothing without a tablespace."""
    if not tablespace:
        return []
    return [
        planmod.Step(
            sql.SQL("SELECT set_config('default_tablespace', {}, true)").format(sql.Literal(tablespace)),
            "%s is created in its tier, tablespace %s: its indexes too (default_tablespace, this transaction only)"
            % (name, tablespace),
            group=group,
        )
    ]
