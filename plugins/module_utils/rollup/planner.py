# Copyright: (c) 2026, SIGETI data platform team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Roll-up of old partitions (pure, no I/O): which coarser periods are merged into one partition, and the steps.

``rollup: {after: N, interval: month|quarter|year, max_per_run: M}`` merges the partitions of every complete period
of ``interval`` that ended more than N declared periods before the current one (the cutoff of ``tiers`` and
``retention.keep``) into one partition of that period, named as the set's naming scheme names it (``<table>_202501``,
``<table>_2025q1``, ``<table>_2025``). Oldest first, at most ``max_per_run`` periods per run. A period already one
partition (or inside a wider one) is done; a period without any partition is skipped; the default partition has no
period and is never merged. Refused before any change: an interval not coarser than the declared one (or one whose
periods are no unions of declared periods: weeks straddle months), a period with a gap, a partition straddling a
period's bound, a partition that is itself partitioned or foreign, or pending detach.

One transaction per merged period (``merge_steps``): ACCESS SHARE on the parent, SHARE on the sources (their readers
go on, their writers wait), the new table built beside them in the parent's schema (``<target>_sgt_rollup``, LIKE the
newest source, in its tablespace, with its access method and storage parameters, and a CHECK constraint matching the
period so the ATTACH skips its scan), filled by ``INSERT ... SELECT`` through the parent (pruned to the sources),
given the parent's primary key, unique constraints and indexes, checked by row count and a whole-row digest against
the sources (a DO block raising on a mismatch), then the swap: ACCESS EXCLUSIVE on the parent, the sources and the
default partition, each taken while the sources are held, so without waiting when that would be a deadlock and else
for at most half of ``deadlock_timeout`` (``plan.locks.safe_locks``); the sources
detached, the new table attached with the period's bounds, the sources dropped, the new table renamed, its helper
CHECK constraint dropped. A killed run rolls all of it back.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping, Sequence

from ansible_collections.sigeti.dwh.plugins.module_utils.core.bounds import MAXVALUE, MINVALUE, json_value
from ansible_collections.sigeti.dwh.plugins.module_utils.core.errors import InvalidInput
from ansible_collections.sigeti.dwh.plugins.module_utils.core.identifiers import display_name
from ansible_collections.sigeti.dwh.plugins.module_utils.migration.sql import row_digest
from ansible_collections.sigeti.dwh.plugins.module_utils.partitioning.indexes import partition_index_name
from ansible_collections.sigeti.dwh.plugins.module_utils.partitioning.layout import (
    LIKE_OPTIONS,
    bound_rank,
    truncate_name,
)
from ansible_collections.sigeti.dwh.plugins.module_utils.plan import steps as planmod
from ansible_collections.sigeti.dwh.plugins.module_utils.plan.locks import Lock, first_locks, safe_locks

try:
    from psycopg2 import sql
except ImportError:  # reported by the connection layer
    sql = None

# Periods merged by one run unless told otherwise: each copies a whole period while its writers wait.
DEFAULT_MAX_PER_RUN = 1
ROLLUP_INTERVALS = ("month", "quarter", "year")
# declared interval -> the roll-up intervals whose periods are unions of its periods
NESTS_IN = {"day": ROLLUP_INTERVALS, "month": ("quarter", "year"), "quarter": ("year",), "year": (), "week": ()}
HELPER_SUFFIX = "_sgt_rollup"
BOUNDS_SUFFIX = "_sgt_bounds"


@dataclasses.dataclass(frozen=True)
class Rollup:
    """The ``rollup`` option once checked."""

    after: int
    interval: str
    max_per_run: int = DEFAULT_MAX_PER_RUN


@dataclasses.dataclass(frozen=True)
class Piece:
    """A direct range partition of the set: its bounds (typed values), its kind, whether a detach is pending."""

    schema: str
    name: str
    low: Any
    high: Any
    oid: int = 0
    relkind: str = "r"
    detach_pending: bool = False


@dataclasses.dataclass(frozen=True)
class Storage:
    """Where and how a partition is stored: tablespace ('' = the database default), access method, reloptions."""

    tablespace: str = ""
    access_method: str | None = None
    reloptions: tuple[tuple[str, str], ...] = ()


@dataclasses.dataclass(frozen=True)
class Column:
    """A column of the parent: its name, type as ``format_type`` writes it, ``typname``, generated or not."""

    name: str
    type: str
    type_name: str
    generated: bool = False


@dataclasses.dataclass(frozen=True)
class ParentIndex:
    """An index of the parent: its name, its definition after ``ON table`` (``tail``), unique or not, and the
    definition of the constraint it backs (``PRIMARY KEY (id, d)``), None when it backs none."""

    name: str
    tail: str | None
    unique: bool = False
    constraint: str | None = None


@dataclasses.dataclass(frozen=True)
class SetFacts:
    """The catalog facts a merge needs about the set (``catalog.rollup.rollup_facts``)."""

    schema: str
    name: str
    key: str
    columns: tuple[Column, ...] = ()
    indexes: tuple[ParentIndex, ...] = ()
    default: tuple[str, str] | None = None
    foreign_keys: tuple[str, ...] = ()
    taken: frozenset[str] = frozenset()
    leftovers: frozenset[str] = frozenset()
    storage: Mapping[int, Storage] = dataclasses.field(default_factory=dict)

    @property
    def display(self) -> str:
        """``schema.table`` as messages show it."""
        return display_name(self.schema, self.name)


@dataclasses.dataclass(frozen=True)
class Period:
    """A coarser period due for its merge: its label, bounds (typed values), the partitions merged, the target."""

    point: Any
    label: str
    low: Any
    high: Any
    sources: tuple[Piece, ...]
    target: str


@dataclasses.dataclass(frozen=True)
class Merge:
    """One period merged this run, with the steps of its transaction."""

    period: Period
    steps: tuple[planmod.Step, ...] = ()

    def report(self) -> dict[str, Any]:
        """The entry of the ``rollup.merged`` result."""
        return {
            "partition": self.period.target,
            "period": self.period.label,
            "from": json_value(self.period.low),
            "to": json_value(self.period.high),
            "sources": [p.name for p in self.period.sources],
        }


@dataclasses.dataclass(frozen=True)
class RollupPlan:
    """The merges of this run (oldest first), how many due periods wait for the next runs, and the warnings."""

    merges: tuple[Merge, ...] = ()
    remaining: int = 0
    warnings: tuple[str, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.merges)


def validate_rollup(value: Any, scheme: Any, table: str) -> Rollup | None:
    """Check the ``rollup`` option against the declared scheme; return it as a Rollup (None when not given)."""
    if not value:
        return None
    if not isinstance(value, dict):
        raise InvalidInput(
            "rollup for %s must be a dict {after: N, interval: month|quarter|year, max_per_run: M}, not %r; "
            "nothing was changed" % (table, value)
        )
    after, interval, limit = value.get("after"), value.get("interval"), value.get("max_per_run")
    if isinstance(after, bool) or not isinstance(after, int) or after < 0:
        raise InvalidInput(
            "rollup.after=%r for %s: give a whole number of declared periods, 0 or more (the partitions of a %s "
            "that ended more than that many periods ago are merged); nothing was changed"
            % (after, table, interval or "coarser period")
        )
    if interval not in ROLLUP_INTERVALS:
        raise InvalidInput(
            "rollup.interval=%r for %s: choose one of %s; nothing was changed"
            % (interval, table, ", ".join(ROLLUP_INTERVALS))
        )
    declared = scheme.interval_name
    if not scheme.format.calendar or interval not in NESTS_IN.get(declared, ()):
        coarser = NESTS_IN.get(declared, ()) if scheme.format.calendar else ()
        raise InvalidInput(
            "rollup.interval=%s for %s is not coarser than the declared interval %s (key_format %s): a roll-up "
            "merges whole declared periods into one period of a coarser calendar interval%s; nothing was changed"
            % (
                interval,
                table,
                declared,
                scheme.key_format,
                (": choose %s" % " or ".join(coarser))
                if coarser
                else " and none of month, quarter, year is made of whole %s periods: remove rollup" % declared,
            )
        )
    if limit is None:
        limit = DEFAULT_MAX_PER_RUN
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
        raise InvalidInput(
            "rollup.max_per_run=%r for %s: give the largest number of periods one run merges, 1 or more; nothing "
            "was changed" % (limit, table)
        )
    return Rollup(after, interval, limit)


def target_name(table: str, coarse: Any, point: Any) -> str:
    """The name the set's naming scheme gives the partition of coarser period ``point``: ``<table>_202501``."""
    return truncate_name(table, "_" + coarse.label(point))


def helper_name(target: str) -> str:
    """The name of the table a merge builds beside the sources: ``<target>_sgt_rollup``."""
    return truncate_name(target, HELPER_SUFFIX)


def _ranged(pieces: Sequence[Piece]) -> list[Piece]:
    return [p for p in pieces if MINVALUE not in (p.low, p.high) and MAXVALUE not in (p.low, p.high)]


def _candidates(rollup: Rollup, scheme: Any, current: Any, pieces: Sequence[Piece]) -> list[Any]:
    """The starts of the coarser periods old enough, from the one holding the oldest partition's start."""
    coarse = scheme.with_interval(rollup.interval)
    starts = [scheme.point_of(p.low) for p in _ranged(pieces)]
    starts = [s for s in starts if s is not None]
    if not starts:
        return []
    cutoff = bound_rank(scheme.key(scheme.step(current, -rollup.after)))
    out, point = [], coarse.align(min(starts))
    while bound_rank(coarse.key(coarse.step(point))) <= cutoff:
        out.append(point)
        point = coarse.step(point)
    return out


def _bounds_text(low: Any, high: Any) -> str:
    return "FROM '%s' TO '%s'" % (json_value(low), json_value(high))


def _gaps(period_low: Any, period_high: Any, inside: Sequence[Piece]) -> list[tuple[Any, Any]]:
    """The key ranges of ``[period_low, period_high)`` no partition of ``inside`` (sorted by low) covers."""
    gaps, reached, reached_value = [], bound_rank(period_low), period_low
    for piece in inside:
        if bound_rank(piece.low) > reached:
            gaps.append((reached_value, piece.low))
        reached, reached_value = bound_rank(piece.high), piece.high
    if reached < bound_rank(period_high):
        gaps.append((reached_value, period_high))
    return gaps


def _period_sources(
    rollup: Rollup, coarse: Any, point: Any, pieces: Sequence[Piece], table: str
) -> tuple[Piece, ...] | None:
    """The partitions period ``point`` merges (None: nothing to merge there); refuses a straddling partition, a gap,
    a partition that is partitioned, foreign or pending detach."""
    low, high = coarse.bounds(point)
    lo, hi = bound_rank(low), bound_rank(high)
    what = "period %s of %s (%s) that rollup (interval %s, after %d) merges" % (
        coarse.label(point),
        table,
        _bounds_text(low, high),
        rollup.interval,
        rollup.after,
    )
    inside, straddling = [], []
    for piece in pieces:
        p_lo, p_hi = bound_rank(piece.low), bound_rank(piece.high)
        if p_lo >= lo and p_hi <= hi:
            inside.append(piece)
        elif p_lo < hi and p_hi > lo:
            straddling.append(piece)
    if any(bound_rank(p.low) <= lo and bound_rank(p.high) >= hi for p in straddling):
        return None  # already inside one wider partition
    if straddling:
        raise InvalidInput(
            "partition %s (%s) straddles a bound of %s: a roll-up merges only partitions lying wholly inside one "
            "period. Re-partition that range (or remove rollup); nothing was changed."
            % (", ".join(p.name for p in straddling), _bounds_text(straddling[0].low, straddling[0].high), what)
        )
    inside.sort(key=lambda p: bound_rank(p.low))
    if not inside or (len(inside) == 1 and bound_rank(inside[0].low) == lo and bound_rank(inside[0].high) == hi):
        return None
    gaps = _gaps(low, high, inside)
    if gaps:
        raise InvalidInput(
            "%s has no partition for %s: its merged partition would take rows of those keys. Create the missing "
            "partitions (a start at the period's first day makes the module create them; with retention, keep more "
            "periods than rollup.after plus one %s), or remove rollup; nothing was changed."
            % (what, ", ".join(_bounds_text(a, b) for a, b in gaps), rollup.interval)
        )
    odd = [p for p in inside if p.relkind != "r" or p.detach_pending]
    if odd:
        raise InvalidInput(
            "%s holds %s, %s: only plain partitions are merged. Finish the detach (run again) or move that partition "
            "out; nothing was changed."
            % (
                what,
                ", ".join(p.name for p in odd),
                "pending detach" if odd[0].detach_pending else "itself partitioned or foreign",
            )
        )
    return tuple(inside)


def due_periods(
    rollup: Rollup,
    scheme: Any,
    current: Any,
    table_name: str,
    pieces: Sequence[Piece],
    retiring: frozenset[str] = frozenset(),
    table: str = "",
) -> list[Period]:
    """The coarser periods due for their merge, oldest first (every one, not only this run's); periods holding a
    partition retention retires this run wait for the next run. Raises InvalidInput (see ``_period_sources``)."""
    coarse = scheme.with_interval(rollup.interval)
    ranged = _ranged(pieces)
    out = []
    for point in _candidates(rollup, scheme, current, ranged):
        sources = _period_sources(rollup, coarse, point, ranged, table or table_name)
        if sources is None or any(p.name in retiring for p in sources):
            continue
        low, high = coarse.bounds(point)
        out.append(Period(point, coarse.label(point), low, high, sources, target_name(table_name, coarse, point)))
    return out


def refusals(facts: SetFacts, periods: Sequence[Period]) -> list[str]:
    """What forbids this run's merges before any change: foreign keys in or out of the set (not carried yet), a name
    a merge takes held by another relation. Returns the messages (empty when none)."""
    if not periods:
        return []
    errors = []
    if facts.foreign_keys:
        errors.append(
            "rollup: %s has foreign key(s) %s: the roll-up does not carry foreign keys yet (ATTACH would validate "
            "them under the swap's locks); remove rollup for this table"
            % (facts.display, ", ".join(facts.foreign_keys))
        )
    for period in periods:
        sources = {p.name for p in period.sources}
        names = [period.target] + [partition_index_name(period.target, i.name) for i in facts.indexes]
        clash = [n for n in names if n in facts.taken and n not in sources]
        helper = helper_name(period.target)
        if helper in facts.taken and helper not in facts.leftovers:
            clash.append(helper)
        if clash:
            errors.append(
                "rollup: merging period %s of %s needs the name(s) %s, taken by other relations in schema %s: rename "
                "or drop them" % (period.label, facts.display, ", ".join(clash), facts.schema)
            )
    return errors


def plan_rollup(rollup: Rollup, scheme: Any, facts: SetFacts, periods: Sequence[Period]) -> RollupPlan:
    """The merges of this run: the oldest ``max_per_run`` due periods, each one transaction (``merge_steps``)."""
    chosen, waiting = list(periods[: rollup.max_per_run]), list(periods[rollup.max_per_run :])
    coarse = scheme.with_interval(rollup.interval)
    merges = tuple(Merge(p, tuple(merge_steps(coarse, facts, p))) for p in chosen)
    warnings = ()
    if waiting:
        warnings = (
            "rollup: %d more period(s) of %s wait for their merge (%s): rollup.max_per_run=%d per run, the next runs "
            "merge them" % (len(waiting), facts.display, ", ".join(p.label for p in waiting), rollup.max_per_run),
        )
    return RollupPlan(merges, len(waiting), warnings)


def merge_steps(coarse: Any, facts: SetFacts, period: Period) -> list[planmod.Step]:
    """The steps of one merge, one transaction (group ``rollup:<target>``), then ANALYZE of the new partition."""
    group = "rollup:%s" % period.target
    steps = build_steps(coarse, facts, period, group)
    steps.append(verify_step(coarse, facts, period, group))
    steps.extend(swap_steps(coarse, facts, period, group))
    steps.append(
        planmod.Step(
            sql.SQL("ANALYZE {}").format(sql.Identifier(facts.schema, period.target)),
            "statistics of the merged partition %s (the planner reads them for queries of its period)" % period.target,
            lock=planmod.SHARE_UPDATE_EXCLUSIVE,
            targets=[(facts.schema, period.target)],
        )
    )
    return steps


def _source_locks(period: Period, mode: str, why: str) -> list[Lock]:
    return [Lock(p.schema, p.name, mode, why) for p in period.sources]


def _storage_clause(storage: Storage) -> Any:
    clause = sql.SQL("")
    if storage.access_method:
        clause += sql.SQL(" USING {}").format(sql.Identifier(storage.access_method))
    if storage.reloptions:
        clause += sql.SQL(" WITH ({})").format(
            sql.SQL(", ").join(
                sql.SQL("{} = {}").format(sql.SQL(".").join(sql.Identifier(w) for w in n.split(".")), sql.Literal(v))
                for n, v in storage.reloptions
            )
        )
    return clause


def build_steps(coarse: Any, facts: SetFacts, period: Period, group: str) -> list[planmod.Step]:
    """The first half of a merge: its locks on the sources, the new table beside them, filled and indexed."""
    newest = period.sources[-1]
    schema, helper = facts.schema, helper_name(period.target)
    storage = facts.storage.get(newest.oid, Storage())
    built = (schema, helper)
    steps = [
        planmod.Step(
            sql.SQL("SELECT set_config('default_tablespace', {}, true)").format(sql.Literal(storage.tablespace)),
            "the merged partition %s and its indexes go where %s is (tablespace %s, this transaction only)"
            % (period.target, newest.name, storage.tablespace or "of the database"),
            group=group,
        )
    ]
    if helper in facts.leftovers:
        steps.append(
            planmod.Step(
                sql.SQL("DROP TABLE IF EXISTS {}").format(sql.Identifier(*built)),
                "%s was left by an interrupted merge (never attached): drop it, the merge is done again" % helper,
                lock=planmod.ACCESS_EXCLUSIVE,
                targets=[built],
                group=group,
            )
        )
    # the parent first, as its readers and writers take it (the copy reads through it): then the partitions
    reader = Lock(facts.schema, facts.name, planmod.ACCESS_SHARE, "the parent %s, read by the copy" % facts.display)
    lock = first_locks(
        [
            [reader]
            + _source_locks(period, planmod.SHARE, "the partitions of period %s stay as they are" % period.label)
        ],
        group=group,
    )
    lock.reason = (
        "ACCESS SHARE on the parent, then SHARE on the %d partitions of period %s, first thing: their readers go on, "
        "their writers wait until the commit; %s" % (len(period.sources), period.label, lock.reason)
    )
    steps.append(lock)
    steps.append(create_step(coarse, facts, period, storage, group))
    steps.append(copy_step(coarse, facts, period, group))
    steps.extend(index_steps(facts, period, group))
    return steps


def create_step(coarse: Any, facts: SetFacts, period: Period, storage: Storage, group: str) -> planmod.Step:
    """CREATE TABLE the merged partition beside the sources, with the CHECK constraint of its bounds."""
    newest = period.sources[-1]
    key = sql.Identifier(facts.key)
    check = sql.SQL("CONSTRAINT {} CHECK ({} IS NOT NULL AND {} >= {} AND {} < {})").format(
        sql.Identifier(truncate_name(period.target, BOUNDS_SUFFIX)),
        key,
        key,
        _bound(coarse, period.point),
        key,
        _bound(coarse, coarse.step(period.point)),
    )
    return planmod.Step(
        sql.SQL("CREATE TABLE {} (LIKE {} " + LIKE_OPTIONS + ", {}){}").format(
            sql.Identifier(facts.schema, helper_name(period.target)),
            sql.Identifier(newest.schema, newest.name),
            check,
            _storage_clause(storage),
        ),
        "build the partition of period %s beside its %d partitions, like the newest (%s), with a CHECK of its "
        "bounds so that its ATTACH needs no scan" % (period.label, len(period.sources), newest.name),
        lock=planmod.ACCESS_SHARE,
        targets=[(newest.schema, newest.name)],
        group=group,
    )


def _bound(coarse: Any, point: Any) -> Any:
    value, cast = coarse.literal_parts(point)
    if cast:
        return sql.SQL("{}::{}").format(sql.Literal(value), sql.SQL(cast))
    return sql.Literal(value)


def _in_period(coarse: Any, facts: SetFacts, period: Period, alias: str | None = None) -> Any:
    """``FROM parent [alias] WHERE key >= low AND key < high``: the rows of the period's partitions, read through the
    parent (pruned to them; the statement stays short however many partitions the period has)."""
    key = sql.Identifier(facts.key)
    return sql.SQL("FROM {}{} WHERE {} >= {} AND {} < {}").format(
        sql.Identifier(facts.schema, facts.name),
        sql.SQL(" {}").format(sql.Identifier(alias)) if alias else sql.SQL(""),
        key,
        _bound(coarse, period.point),
        key,
        _bound(coarse, coarse.step(period.point)),
    )


def copy_step(coarse: Any, facts: SetFacts, period: Period, group: str) -> planmod.Step:
    """INSERT ... SELECT every row of the period's partitions (generated columns are computed again)."""
    names = [c.name for c in facts.columns if not c.generated]
    columns = sql.SQL(", ").join(sql.Identifier(n) for n in names)
    return planmod.Step(
        sql.SQL("INSERT INTO {} ({}) SELECT {} ").format(
            sql.Identifier(facts.schema, helper_name(period.target)), columns, columns
        )
        + _in_period(coarse, facts, period),
        "copy the rows of the %d partitions of period %s (%s to %s) into its new partition"
        % (len(period.sources), period.label, period.sources[0].name, period.sources[-1].name),
        lock=planmod.ACCESS_SHARE,
        targets=[(p.schema, p.name) for p in period.sources],
        group=group,
    )


def index_steps(facts: SetFacts, period: Period, group: str) -> list[planmod.Step]:
    """The parent's primary key, unique constraints and indexes, built on the filled table (its ATTACH adopts them;
    an index whose definition could not be read is left to the ATTACH, which builds it)."""
    built = sql.Identifier(facts.schema, helper_name(period.target))
    steps = []
    for index in facts.indexes:
        name = partition_index_name(period.target, index.name)
        if index.constraint:
            statement = sql.SQL("ALTER TABLE {} ADD CONSTRAINT {} ").format(built, sql.Identifier(name)) + sql.SQL(
                index.constraint  # server-generated (pg_get_constraintdef), not user input
            )
        elif index.tail:
            statement = sql.SQL("CREATE {}INDEX {} ON {} ").format(
                sql.SQL("UNIQUE " if index.unique else ""), sql.Identifier(name), built
            ) + sql.SQL(index.tail)  # server-generated (pg_get_indexdef)
        else:
            continue
        steps.append(
            planmod.Step(
                statement,
                "index %s of the parent, built on the filled partition of period %s (its ATTACH adopts it)"
                % (index.name, period.label),
                lock=planmod.SHARE,
                group=group,
            )
        )
    return steps


_VERIFY = """
DECLARE
  source_rows bigint; source_digest numeric; built_rows bigint; built_digest numeric;
BEGIN
  SELECT count(*), coalesce(sum({digest}), 0) INTO source_rows, source_digest {sources};
  SELECT count(*), coalesce(sum({digest}), 0) INTO built_rows, built_digest FROM ONLY {built} t;
  IF source_rows <> built_rows OR source_digest <> built_digest THEN
    RAISE EXCEPTION USING ERRCODE = 'data_corrupted',
      MESSAGE = format('sigeti.dwh: the merged partition %s does not match its partitions: %s rows (digest %s) '
                       'against %s rows (digest %s); nothing was changed', {shown}, built_rows, built_digest,
                       source_rows, source_digest);
  END IF;
END
"""


def verify_step(coarse: Any, facts: SetFacts, period: Period, group: str) -> planmod.Step:
    """A DO block comparing row count and the sum of whole-row digests (``migration.sql.row_digest``) of the
    period's rows and of the new table: raises (the transaction rolls back, nothing changed) on a mismatch."""
    columns = [{"name": c.name, "type": c.type, "type_name": c.type_name} for c in facts.columns]
    digest = row_digest(columns, "t")
    body = sql.SQL(_VERIFY).format(
        sources=_in_period(coarse, facts, period, "t"),
        digest=digest,
        built=sql.Identifier(facts.schema, helper_name(period.target)),
        shown=sql.Literal(period.target),
    )
    return planmod.Step(
        sql.SQL("DO {}").format(planmod.AsLiteral(body)),
        "the merged partition of period %s holds the same rows as its partitions: row count and the sum of "
        "whole-row digests compared, the transaction rolled back on any difference" % period.label,
        lock=planmod.ACCESS_SHARE,
        targets=[(p.schema, p.name) for p in period.sources],
        group=group,
    )


def swap_steps(coarse: Any, facts: SetFacts, period: Period, group: str) -> list[planmod.Step]:
    """The swap: the strong locks (each bounded while the sources are held), N detaches, one attach, the drops, the
    rename, the helper CHECK dropped."""
    schema = facts.schema
    parent = sql.Identifier(facts.schema, facts.name)
    built = sql.Identifier(schema, helper_name(period.target))
    held = _source_locks(period, planmod.SHARE, "the partitions of period %s" % period.label)
    wanted = [Lock(facts.schema, facts.name, planmod.ACCESS_EXCLUSIVE, "the parent %s, for the swap" % facts.display)]
    wanted += _source_locks(period, planmod.ACCESS_EXCLUSIVE, "a partition of period %s, detached" % period.label)
    if facts.default:
        wanted.append(Lock(*facts.default, planmod.ACCESS_EXCLUSIVE, "the default partition, which ATTACH checks"))
    first, last = period.sources[0].name, period.sources[-1].name
    summary = "ACCESS SHARE on the parent and SHARE on the %d partitions of period %s (%s to %s)" % (
        len(period.sources),
        period.label,
        first,
        last,
    )
    lock = safe_locks(wanted, held, summary)
    lock.group = group
    steps = [lock]
    targets = [(facts.schema, facts.name)] + [(p.schema, p.name) for p in period.sources]
    for piece in period.sources:
        detach = sql.SQL("ALTER TABLE {} DETACH PARTITION {}").format(parent, sql.Identifier(piece.schema, piece.name))
        steps.append(_step(detach, "detach %s (merged into %s)" % (piece.name, period.target), targets, group))
    steps.append(
        _step(
            sql.SQL("ALTER TABLE {} ATTACH PARTITION {} FOR VALUES FROM ({}) TO ({})").format(
                parent, built, _bound(coarse, period.point), _bound(coarse, coarse.step(period.point))
            ),
            "attach the merged partition with the bounds of period %s (its CHECK spares the scan)" % period.label,
            targets,
            group,
        )
    )
    steps.append(
        _step(
            sql.SQL("DROP TABLE {}").format(
                sql.SQL(", ").join(sql.Identifier(p.schema, p.name) for p in period.sources)
            ),
            "drop the %d merged partitions of period %s (their rows are in %s)"
            % (len(period.sources), period.label, period.target),
            targets,
            group,
        )
    )
    steps.append(
        _step(
            sql.SQL("ALTER TABLE {} RENAME TO {}").format(built, sql.Identifier(period.target)),
            "the merged partition takes the name of its period: %s" % period.target,
            targets,
            group,
            effect=("rolled_up", period.target),
        )
    )
    steps.append(
        _step(
            sql.SQL("ALTER TABLE {} DROP CONSTRAINT {}").format(
                sql.Identifier(schema, period.target), sql.Identifier(truncate_name(period.target, BOUNDS_SUFFIX))
            ),
            "the helper CHECK of %s is no longer needed (the partition bound holds)" % period.target,
            targets,
            group,
        )
    )
    return steps


def _step(statement: Any, reason: str, targets: list, group: str, effect: tuple | None = None) -> planmod.Step:
    return planmod.Step(statement, reason, lock=planmod.ACCESS_EXCLUSIVE, targets=targets, group=group, effect=effect)


def diff_lines(merges: Sequence[Merge]) -> tuple[str, str]:
    """``(before, after)`` diff lines of the merges: the sources, then the merged partition."""
    before = "".join(
        "%s FROM (%s) TO (%s)\n" % (p.name, json_value(p.low), json_value(p.high))
        for m in merges
        for p in m.period.sources
    )
    after = "".join(
        "%s FROM (%s) TO (%s) (rollup of %d partitions)\n"
        % (m.period.target, json_value(m.period.low), json_value(m.period.high), len(m.period.sources))
        for m in merges
    )
    return before, after
