# Copyright: (c) 2026, SIGETI data platform team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The declared RANGE partition set and where the existing partitions stand against it (pure, no I/O).

``Declared`` holds the validated options; ``layout(declared, table, current)`` classifies the existing partitions
against the declared periods: adopted (right bounds, any name; a partition covering whole periods as it is),
missing, retired by retention (at most ``max_per_run``), waiting, partly old (never touched), and raises
InvalidInput on overlaps, floods of new partitions or anything that cannot be reached. Stray integer keys (rows far
beyond the bulk) are found here too, so "now" never jumps with one row. ``partitioning`` turns a layout into steps.
"""

from __future__ import annotations

import copy
import dataclasses
import datetime
import os
import re
from typing import TYPE_CHECKING, Any, Mapping, Sequence, TypedDict

from ansible_collections.sigeti.dwh.plugins.module_utils.core.bounds import (
    MAXVALUE,
    MINVALUE,
    json_value,
    parse_partition_bound,
    typed_value,
)
from ansible_collections.sigeti.dwh.plugins.module_utils.core.errors import InvalidInput
from ansible_collections.sigeti.dwh.plugins.module_utils.core.identifiers import display_name
from ansible_collections.sigeti.dwh.plugins.module_utils.core.periods import (
    EPOCH_DAY,
    TYPE_MAX,
    Scheme,
    check_epoch_keys,
    epoch_utc_text,
    plausible_epoch,
)

if TYPE_CHECKING:  # names used in annotations only
    from typing import Callable

    from ansible_collections.sigeti.dwh.plugins.module_utils.core.periods import Point

    # a bound value -> its comparable form (``bound_rank``, or a ranker mapping timestamptz DST aliases first)
    Ranker = Callable[[Any], tuple[int, Any]]

MAX_IDENTIFIER_BYTES = 63
# Empty partitions created per transaction: each ATTACH holds SHARE UPDATE EXCLUSIVE on the parent (readers and
# writers go on) until the commit; batching saves a commit per partition when a long range is missing.
CREATE_BATCH = 20
RETENTION_ACTIONS = ("detach", "drop", "archive", "parquet")
# Retention retires at most this many partitions per run unless told otherwise: a wrong "now" (a stray key, a
# clock) then costs a few periods, not the table, and the warning says how many wait.
DEFAULT_MAX_PER_RUN = 3
# New partitions one run may create unless told otherwise: a first run from an old start fits, a "now" thrown far
# away by a stray key does not.
DEFAULT_MAX_NEW_PARTITIONS = 100
LIKE_OPTIONS = "INCLUDING DEFAULTS INCLUDING CONSTRAINTS INCLUDING STORAGE INCLUDING COMPRESSION INCLUDING GENERATED"
_OPTION_NAME = re.compile(r"^(toast\.)?[a-z_][a-z0-9_]*$")
_TYPE_TEXT = re.compile(r'^[A-Za-z_][A-Za-z0-9_ ."]*(\(\s*\d+\s*(,\s*\d+\s*)?\))?( with(out)? time zone)?(\[\])*$')


class Retention(TypedDict):
    """The ``retention`` option once checked (``validate_retention``)."""

    keep: int  # periods kept behind the current one
    action: str  # detach | drop | archive | parquet
    archive_schema: str | None
    archive_dir: str | None  # parquet: the folder on the host running the module (absolute)
    max_per_run: int


class ColumnDef(TypedDict):
    """One column of the ``columns`` option once checked (``validate_columns``), to create an absent table."""

    name: str
    type: str  # a type name, checked against _TYPE_TEXT
    not_null: bool
    default: str | None  # an SQL expression written by the playbook author


class Declared:
    """What the task declares, validated (pure): the table, its key, the scheme and the policies."""

    def __init__(
        self,
        schema: str,
        name: str,
        key: str,
        scheme: Scheme,
        start: Point | None = None,
        premake: int = 2,
        default_partition: bool = True,
        retention: Retention | None = None,
        partition_options: dict[str, str] | None = None,
        columns: list[ColumnDef] | None = None,
        primary_key: list[str] | None = None,
        max_new_partitions: int | None = DEFAULT_MAX_NEW_PARTITIONS,
        tiers: tuple[Any, ...] = (),
        rollup: Any = None,
    ) -> None:
        self.schema = schema
        self.name = name
        self.key = key
        self.scheme = scheme
        self.start = start
        self.premake = premake
        self.default_partition = default_partition
        self.retention = retention
        self.partition_options = partition_options or {}
        self.columns = columns
        self.primary_key = primary_key or []
        self.max_new_partitions = max_new_partitions
        self.tiers = tuple(tiers)  # tiering.planner.Tier, the largest ``after`` first
        self.rollup = rollup  # rollup.planner.Rollup, or None

    @property
    def display(self) -> str:
        """Return ``schema.table`` quoted as needed, for messages."""
        return display_name(self.schema, self.name)

    def with_scheme(self, scheme: Scheme) -> Declared:
        """Return the same declaration with ``scheme`` (the declared one given the session's days, for epoch keys)."""
        other = copy.copy(self)
        other.scheme = scheme
        return other


# ---------------------------------------------------------------------------------------------
# Validation of options that need no catalog
# ---------------------------------------------------------------------------------------------


def normalize_option_value(value: Any) -> str:
    """Return a reloption value written as PostgreSQL stores it (booleans lower case)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return (
        str(value).strip().lower()
        if str(value).strip().lower() in ("true", "false", "on", "off")
        else str(value).strip()
    )


def validate_partition_options(options: dict[str, Any] | None, table: str) -> dict[str, str]:
    """Check ``partition_options`` names; return them as ``{name: text}``."""
    result = {}
    for name, value in (options or {}).items():
        if not _OPTION_NAME.match(str(name)):
            raise InvalidInput(
                "partition_options key %r for %s is not a storage parameter name (e.g. fillfactor, "
                "autovacuum_vacuum_scale_factor, toast.autovacuum_enabled)" % (name, table)
            )
        if value is None or str(value).strip() == "":
            raise InvalidInput("partition_options %s for %s has no value" % (name, table))
        result[str(name)] = normalize_option_value(value)
    return result


def validate_retention(retention: dict[str, Any] | None, table: str) -> Retention | None:
    """Check the ``retention`` option; return ``None`` or ``{keep, action, archive_schema, max_per_run}``."""
    if not retention:
        return None
    keep = retention.get("keep")
    if keep is None:
        raise InvalidInput("retention for %s needs keep: the number of periods kept behind the current one" % table)
    try:
        keep = int(keep)
    except (TypeError, ValueError):
        raise InvalidInput("retention.keep=%r for %s is not a whole number of periods" % (keep, table))
    if keep < 0:
        raise InvalidInput(
            "retention.keep=%d for %s is negative: it would drop the current period (and %d after it). "
            "keep counts the periods kept behind the current one: use 0 or more; nothing was changed."
            % (keep, table, -keep - 1)
        )
    action = retention.get("action") or "detach"
    if action not in RETENTION_ACTIONS:
        raise InvalidInput(
            "retention.action=%r for %s: choose one of %s" % (action, table, ", ".join(RETENTION_ACTIONS))
        )
    archive = retention.get("archive_schema")
    if action == "archive" and not archive:
        raise InvalidInput(
            "retention.action archive for %s needs archive_schema: where old partitions are moved" % table
        )
    archive_dir = _archive_dir(action, retention.get("archive_dir"), table)
    max_per_run = retention.get("max_per_run")
    max_per_run = DEFAULT_MAX_PER_RUN if max_per_run is None else max_per_run
    if isinstance(max_per_run, bool) or not isinstance(max_per_run, int) or max_per_run < 1:
        raise InvalidInput(
            "retention.max_per_run=%r for %s: give a whole number of partitions retired per run, 1 or more"
            % (max_per_run, table)
        )
    return {
        "keep": keep,
        "action": action,
        "archive_schema": archive,
        "archive_dir": archive_dir,
        "max_per_run": max_per_run,
    }


def _archive_dir(action: str, archive_dir: Any, table: str) -> str | None:
    """``retention.archive_dir``: required by action parquet, an absolute path (the export runs on the host that runs
    the module, whose working directory is no place for archives); refused with any other action."""
    if action != "parquet":
        if archive_dir:
            raise InvalidInput(
                "retention.archive_dir=%r for %s is only read by action parquet (action is %s): remove it, or set "
                "action: parquet; nothing was changed." % (archive_dir, table, action)
            )
        return None
    if not archive_dir or not isinstance(archive_dir, str):
        raise InvalidInput(
            "retention.action parquet for %s needs archive_dir: the absolute path of the folder receiving the Parquet "
            "files, on the host that runs the module (the database host); nothing was changed." % table
        )
    if not os.path.isabs(archive_dir) or "\0" in archive_dir:
        raise InvalidInput(
            "retention.archive_dir=%r for %s is not an absolute path: give the folder from the root (e.g. "
            "/srv/dwh_archive) on the host that runs the module; nothing was changed." % (archive_dir, table)
        )
    return os.path.normpath(archive_dir)


def validate_columns(columns: Sequence[str | dict[str, Any]] | None, key: str, table: str) -> list[ColumnDef]:
    """Check the ``columns`` option used to create an absent table; return a list of column dicts."""
    if not columns:
        raise InvalidInput(
            "table %s does not exist: give columns (name, type) so the module can create it, or fix the name" % table
        )
    result: list[ColumnDef] = []
    names = set()
    for given in columns:
        col = given
        if isinstance(given, str):
            parts = given.strip().split(None, 1)
            if len(parts) != 2:
                raise InvalidInput(
                    'column %r for %s: write it as a dict {name, type} or as "name type"' % (given, table)
                )
            col = {"name": parts[0], "type": parts[1]}
        if not isinstance(col, dict) or not col.get("name") or not col.get("type"):
            raise InvalidInput("column %r for %s needs a name and a type" % (col, table))
        type_text = str(col["type"]).strip()
        if not _TYPE_TEXT.match(type_text):
            raise InvalidInput(
                "column %s of %s has type %r, which is not a type name" % (col["name"], table, type_text)
            )
        if col["name"] in names:
            raise InvalidInput("column %s of %s is listed twice" % (col["name"], table))
        names.add(col["name"])
        result.append(
            {
                "name": str(col["name"]),
                "type": type_text,
                "not_null": bool(col.get("not_null", col["name"] == key)),
                "default": col.get("default"),
            }
        )
    if key not in names:
        raise InvalidInput("key column %s is not among the columns given to create %s" % (key, table))
    return result


# ---------------------------------------------------------------------------------------------
# Naming
# ---------------------------------------------------------------------------------------------


def truncate_name(base: str, suffix: str) -> str:
    """Return ``base + suffix`` cut to PostgreSQL's 63 bytes by shortening ``base`` (never the suffix)."""
    room = MAX_IDENTIFIER_BYTES - len(suffix.encode("utf-8"))
    encoded = base.encode("utf-8")
    if len(encoded) > room:
        base = encoded[:room].decode("utf-8", "ignore")
    return base + suffix


def partition_name(declared: Declared, point: Point) -> str:
    """Return the name of the partition of ``point``: ``<table>_2023``, ``_2023q1``, ``_202301``, ``_2023w05``, ``_20230115``."""
    return truncate_name(declared.name, "_" + declared.scheme.label(point))


def default_name(declared: Declared) -> str:
    """Return the name of the default partition the module creates: ``<table>_default``."""
    return truncate_name(declared.name, "_default")


# ---------------------------------------------------------------------------------------------
# Phase 1: layout
# ---------------------------------------------------------------------------------------------


def migration_layout(declared: Declared, current: Point) -> list[dict[str, Any]]:
    """Return the target partitions of a plain table being migrated, for ``migration``: every period from ``start`` (or
    ``current``) to ``premake`` periods after ``current`` as ``{"name", "low", "high"}`` with bound values in the
    key's type, plus ``{"name", "default": True}`` when a default partition is declared.

    Retention is not applied here: old periods get partitions too, so no row is sent to the default partition
    only to be detached later; the maintenance run that follows the migration applies retention.
    """
    scheme = declared.scheme
    first = declared.start if declared.start is not None else current
    last = scheme.step(current, declared.premake)
    entries = []
    for point in scheme.periods(first, max(first, last)):
        low, high = scheme.bounds(point)
        entries.append({"name": partition_name(declared, point), "low": low, "high": high})
    if declared.default_partition:
        entries.append({"name": default_name(declared), "default": True})
    return entries


def check_migration_layout(declared: Declared, entries: Sequence[dict[str, Any]]) -> None:
    """Return nothing; refuse a migration that would create more partitions than ``max_new_partitions`` (a stray
    largest key)."""
    ranges = [e for e in entries if not e.get("default")]
    cap = declared.max_new_partitions
    if cap is None or len(ranges) <= cap:
        return
    raise InvalidInput(
        "migrating %s would create %d partitions (FROM %s TO %s), more than max_new_partitions=%d. If that range is "
        "intended, raise max_new_partitions (or set start later); if not, look for stray keys (the largest key sets "
        "the current period of a plain integer-keyed table). Nothing was changed."
        % (
            declared.display,
            len(ranges),
            key_text(declared, ranges[0]["low"]),
            key_text(declared, ranges[-1]["high"]),
            cap,
        )
    )


def key_text(declared: Declared, value: Any) -> Any:
    """A key value for messages: as results show it, an epoch key with its UTC time (``1711839600 (2024-03-30
    23:00:00 UTC)``): a stray key may lie outside the local days read."""
    if declared.scheme.format.zoned and plausible_epoch(declared.scheme.key_format, value):
        return "%d (%s)" % (value, epoch_utc_text(declared.scheme.key_format, value))
    return json_value(value)


def bound_rank(value: Any) -> tuple[int, Any]:
    """Comparable form of a bound value: MINVALUE < any value < MAXVALUE; timestamptz read as wall clock."""
    if value == MINVALUE:
        return (0, 0)
    if value == MAXVALUE:
        return (2, 0)
    if isinstance(value, datetime.datetime) and value.tzinfo is not None:
        value = value.replace(tzinfo=None)
    return (1, value)


@dataclasses.dataclass(frozen=True)
class KeyBound:
    """The key range the rows of a table that is itself a partition can have: what its ancestors' range bounds on
    the same key column leave (a row outside it is routed elsewhere, so a partition outside it stays empty)."""

    low: Any  # typed bound value, or MINVALUE
    high: Any  # typed bound value, or MAXVALUE
    parents: tuple[str, ...]  # the ancestors whose bounds make it, nearest first (schema.table)

    def text(self) -> str:
        """Return ``FROM ('2024-01-01') TO ('2025-01-01') in public.fait`` (the bound as DBAs read it)."""
        return "FROM (%s) TO (%s) in %s" % (_bound_text(self.low), _bound_text(self.high), " in ".join(self.parents))

    def holds(self, low: Any, high: Any) -> bool:
        """Return True when the range ``[low, high)`` (typed values) shares keys with this bound."""
        return bound_rank(low) < bound_rank(self.high) and bound_rank(self.low) < bound_rank(high)


def _bound_text(value):
    shown = json_value(value)
    return shown if value in (MINVALUE, MAXVALUE) or isinstance(shown, int) else "'%s'" % shown


def key_bound(table: dict[str, Any] | None, key: str) -> KeyBound | None:
    """Return the KeyBound of a table that is itself a partition (``table["ancestry"]``, from
    ``catalog.read_partition_set``), or None when no ancestor bounds its ``key``: only parents partitioned by RANGE on
    that one column bound it (one partitioned by LIST of a region, or holding it as its default partition, does not).
    """
    low, high, parents = MINVALUE, MAXVALUE, []
    for level in (table or {}).get("ancestry") or []:
        if level["strategy"] != "r" or level["has_expressions"] or level["columns"] != [key]:
            continue
        bound = parse_partition_bound(level["bound"]) or {}
        if bound.get("kind") != "range" or len(bound["low"]) != 1:
            continue
        level_low, level_high = (typed_value(bound[side][0], level["types"][0]) for side in ("low", "high"))
        low = max(low, level_low, key=bound_rank)
        high = min(high, level_high, key=bound_rank)
        parents.append(display_name(level["schema"], level["name"]))
    if not parents:
        return None
    return KeyBound(low, high, tuple(parents))


def check_start_in_bound(declared: Declared, bound: KeyBound | None) -> None:
    """Return nothing; refuse a ``start`` whose period lies outside the table's own bound: none of its partitions
    before (or after) the bound could ever hold a row."""
    if bound is None or declared.start is None:
        return
    scheme = declared.scheme
    if bound.holds(*scheme.bounds(declared.start)):
        return
    raise InvalidInput(
        "start %s of %s is outside its bound: %s is a partition %s, so no row %s can reach it. Give a start within "
        "the bound (or leave start out); nothing was changed."
        % (
            scheme.display(declared.start),
            declared.display,
            declared.display,
            bound.text(),
            "before %s" % json_value(bound.low)
            if bound_rank(scheme.key(declared.start)) < bound_rank(bound.low)
            else "at or after %s" % json_value(bound.high),
        )
    )


# ---------------------------------------------------------------------------------------------
# Epoch keys: the local days a plan converts, bounds that are not epochs, the end of integer seconds
# ---------------------------------------------------------------------------------------------

# Days read beyond every date the plan reaches: the interval checks step one period (at most a year) past a bound.
DAYS_MARGIN = 400


def _rough_day(scheme: Scheme, value: Any) -> datetime.date | None:
    """The UTC day of an epoch bound value (the local one is that day or a neighbour), None when it is no epoch."""
    if not plausible_epoch(scheme.key_format, value):
        return None
    return EPOCH_DAY + datetime.timedelta(days=value // scheme.format.epoch_unit // 86400)


def days_span(
    declared: Declared, table: dict[str, Any] | None, today: datetime.date
) -> tuple[datetime.date, datetime.date]:
    """Return ``(first, last)``: the days whose local midnights a plan of ``declared`` (epoch keys) converts, from
    ``start``, the retention cutoff and the existing partitions' bounds to ``premake`` periods after today's, with
    ``DAYS_MARGIN`` on both sides (pure: the run reads them with ``catalog.time_zone_days``)."""
    scheme = declared.scheme
    current = scheme.current(today)
    keep = declared.retention["keep"] if declared.retention else 0
    first, last = scheme.step(current, -keep - 1), scheme.step(current, declared.premake + 1)
    if declared.start is not None:
        first, last = min(first, declared.start), max(last, declared.start)
    for part in existing_partitions(table):
        for value in (part.get("low"), part.get("high")):
            day = _rough_day(scheme, value)
            if day is not None:
                first, last = min(first, day), max(last, day)
    margin = datetime.timedelta(days=DAYS_MARGIN)
    return first - margin, last + margin


def check_epoch_bounds(declared: Declared, table: dict[str, Any] | None) -> None:
    """Return nothing; refuse an epoch key format declared over partitions whose bounds are no epochs (a YYYYMMDD
    set declared ``epoch``), naming the table, the bounds and the key format that reads them."""
    if not declared.scheme.format.zoned:
        return
    values = [
        value
        for part in existing_partitions(table)
        if not part["is_default"] and "low" in part
        for value in (part["low"], part["high"])
        if value not in (MINVALUE, MAXVALUE)
    ]
    check_epoch_keys(declared.scheme.key_format, values, declared.display, "the bounds of its partitions")


def integer_epoch_warning(declared: Declared, last: Point) -> str | None:
    """A warning for epoch seconds in an ``integer`` column once the declared periods come within a year of
    2038-01-19 03:14:07 UTC, the last second it holds: partitions ending after it cannot be created."""
    scheme = declared.scheme
    if not scheme.format.zoned or scheme.column_type != "integer":
        return None
    limit = TYPE_MAX["integer"] // scheme.format.epoch_unit
    end = scheme.key(scheme.step(last)) // scheme.format.epoch_unit
    if end + 366 * 86400 <= limit:
        return None
    return (
        "key column %s of %s is integer: epoch seconds in it end at 2038-01-19 03:14:07 UTC, and the declared periods "
        "reach %s. Partitions ending after that cannot be created: change the column to bigint before (ALTER TABLE "
        "... ALTER COLUMN %s TYPE bigint rewrites the table under ACCESS EXCLUSIVE, on the partitions too)"
        % (declared.key, declared.display, scheme.display(scheme.step(last)), declared.key)
    )


class Layout:
    """The existing partitions classified against the declared periods."""

    def __init__(self) -> None:
        self.periods: list[Point] = []  # declared period starts, in order
        self.adopted: dict[Point, dict[str, Any]] = {}  # point -> existing partition entry
        self.missing: list[Point] = []  # points without a partition
        self.retired: list[dict[str, Any]] = []  # partitions wholly older than the retention cutoff, retired this run
        # wholly old partitions beyond retention.max_per_run: kept attached until a later run
        self.waiting: list[dict[str, Any]] = []
        # partitions covering several whole declared periods (an attached table), adopted
        self.spanning: list[dict[str, Any]] = []
        self.covered: dict[Point, dict[str, Any]] = {}  # point -> spanning partition covering it
        self.partly_old: list[dict[str, Any]] = []  # partitions straddling the cutoff (never touched)
        self.others: list[dict[str, Any]] = []  # partitions outside the declared set, kept as they are
        self.default: dict[str, Any] | None = None  # the default partition entry, if any
        self.current: Point | None = None
        self.cutoff: Point | None = None
        self.bound: KeyBound | None = None  # the table's own bound when it is a partition (periods clipped to it)
        self.clipped = 0  # declared periods left out because they lie outside that bound
        self.warnings: list[str] = []


def existing_partitions(table: dict[str, Any] | None) -> list[dict[str, Any]]:
    """Return the direct partitions of ``table`` as dicts with typed ``low``/``high`` (or ``is_default``)."""
    if not table or not table.get("exists"):
        return []
    out = []
    for entry in table["partitions"]:
        if entry["level"] != 1:
            continue
        bound = entry.get("bound") or {}
        out.append(dict(entry, is_default=bound.get("kind") == "default"))
    return out


def check_partition_key(declared: Declared, table: dict[str, Any]) -> None:
    """Return nothing; raise unless ``table`` is partitioned by RANGE on exactly the declared key column."""
    if table["relkind"] != "p":
        raise InvalidInput(
            "table %s is not partitioned: set migrate (online, offline or attach) to turn it into partitions. "
            "Nothing was changed." % declared.display
        )
    pkey = table["partition_key"]
    if pkey["strategy"] != "range":
        raise InvalidInput(
            "table %s is partitioned by %s (%s), not by RANGE: this module manages range partition sets only"
            % (declared.display, pkey["strategy"].upper(), pkey["definition"])
        )
    if pkey["has_expressions"] or pkey["columns"] != [declared.key]:
        raise InvalidInput(
            "table %s is partitioned by %s, not by the key column %s: fix key (or the table)"
            % (declared.display, pkey["definition"], declared.key)
        )


def _ranker(aliases):
    """``bound_rank`` after replacing bound values by their aliases (a timestamptz bound the server moved out of a DST
    gap maps to the midnight the module wrote)."""
    aliases = aliases or {}

    def rank(value):
        return bound_rank(aliases.get(value, value) if isinstance(value, datetime.datetime) else value)

    return rank


def _midnight_offset(value):
    """For an aware bound that is not midnight in the session's TimeZone: the UTC offset at which it is midnight."""
    utc = value.astimezone(datetime.timezone.utc)
    minutes = -(utc.hour * 60 + utc.minute)
    if minutes <= -12 * 60:
        minutes += 24 * 60
    sign = "+" if minutes >= 0 else "-"
    return "%s%02d:%02d" % (sign, abs(minutes) // 60, abs(minutes) % 60)


def _as_instant(scheme, value):
    """An epoch bound as an aware UTC datetime (None when it is no epoch of the scheme's unit)."""
    if not plausible_epoch(scheme.key_format, value) or value % scheme.format.epoch_unit:
        return None
    return datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc) + datetime.timedelta(
        seconds=value // scheme.format.epoch_unit
    )


def _timezone_hint(declared, conflicting, session_tz):
    """A sentence for timestamptz and epoch bounds that are not midnight in this session's TimeZone (made in another
    one)."""
    scheme = declared.scheme
    if scheme.key_format != "timestamptz" and not scheme.format.zoned:
        return ""
    foreign = []
    for part in conflicting:
        for raw in (part.get("low"), part.get("high")):
            value = _as_instant(scheme, raw) if scheme.format.zoned else raw
            if scheme.format.zoned and value is not None and scheme.days.day(raw // scheme.format.epoch_unit):
                continue  # a local midnight of this session (of another period)
            if isinstance(value, datetime.datetime) and value.tzinfo is not None and value.time() != datetime.time(0):
                foreign.append(_midnight_offset(value))
    if not foreign:
        return ""
    return (
        " Their bounds are not midnight in this session's TimeZone %s but at UTC offset %s: the set was made in a "
        "session with another TimeZone. Run with that TimeZone (ALTER ROLE/DATABASE ... SET TimeZone, or "
        "connect_params options: '-c TimeZone=...'), or re-partition those ranges."
        % (session_tz or "(unknown)", ", ".join(sorted(set(foreign))))
    )


def _span_points(scheme, part, rank):
    """The period starts an existing partition covers when both its bounds are period starts (else None)."""
    low, high = part["low"], part["high"]
    if MINVALUE in (low, high) or MAXVALUE in (low, high):
        return None
    first = scheme.point_of(rank(low)[1])
    end = scheme.point_of(rank(high)[1])
    if first is None or end is None or not first < end:
        return None
    return scheme.periods(first, scheme.step(end, -1))


def layout(
    declared: Declared,
    table: dict[str, Any] | None,
    current: Point,
    aliases: dict[datetime.datetime, datetime.datetime] | None = None,
    session_tz: str | None = None,
) -> Layout:
    """Return the Layout: existing partitions classified against the declared periods ending ``premake`` periods
    after ``current``.

    ``current`` is the period start holding today (for integer keys: the newest period holding rows).
    ``aliases`` maps timestamptz bound values as the server stored them to the midnight the module wrote (DST gaps),
    ``session_tz`` is the session's TimeZone (for messages). A partition covering several whole periods (an
    attached table) is adopted as it is. A table that is itself a partition gets only the periods its bound holds
    (``key_bound``). Raises InvalidInput when an existing partition overlaps a declared period without matching
    whole periods, when the existing partitions are of another interval, when ``start`` lies outside the table's
    bound, or when the run would create more than ``max_new_partitions``.
    """
    scheme = declared.scheme
    check_epoch_bounds(declared, table)
    rank = _ranker(aliases)
    result = Layout()
    result.current = current
    _declared_periods(declared, table, current, result)
    conflicts, old, ranges = _classify(declared, table, result, rank)
    check_interval(declared, ranges, rank, result.bound)
    if conflicts:
        raise InvalidInput(
            "existing partitions of %s overlap the declared scheme (%s periods of key_format %s from %s) without "
            "matching whole periods: %s. Fix start/interval to match them, or re-partition those ranges; "
            "nothing was changed.%s"
            % (
                declared.display,
                scheme.interval_name,
                scheme.key_format,
                scheme.display(result.periods[0]) if result.periods else scheme.display(current),
                ", ".join(_conflict_text(p) for p in conflicts),
                _timezone_hint(declared, conflicts, session_tz),
            )
        )
    _unreachable_warning(declared, result, ranges)
    result.missing = [p for p in result.periods if p not in result.adopted and p not in result.covered]
    _check_new_partitions(declared, result)
    old.sort(key=lambda p: rank(p["low"]))
    for part in old:
        # Defensive: retention must never reach the current period, whatever the bounds look like.
        if rank(part["high"]) > bound_rank(scheme.key(current)):
            raise InvalidInput(
                "retention would drop partition %s of %s, which holds the current period: nothing was changed"
                % (part["name"], declared.display)
            )
    _limit_retention(declared, result, old)
    return result


def _classify(declared, table, result, rank):
    """Sort the existing direct partitions into ``result`` (default, adopted, spanning, partly old, others); return
    ``(conflicts, old, ranges)``: those overlapping a period without whole periods, those wholly older than the
    retention cutoff (to retire or wait), and every range partition."""
    scheme = declared.scheme
    wanted = {scheme.bounds(p): p for p in result.periods}
    wanted_ranked = {(bound_rank(lo), bound_rank(hi)): p for (lo, hi), p in wanted.items()}
    span = None
    if result.periods:
        span = (bound_rank(scheme.key(result.periods[0])), bound_rank(scheme.key(scheme.step(result.periods[-1]))))
    cutoff_rank = bound_rank(scheme.key(result.cutoff)) if result.cutoff is not None else None
    conflicts, old, ranges = [], [], []
    for part in existing_partitions(table):
        if part["is_default"]:
            result.default = part
            continue
        if part.get("bound", {}).get("kind") != "range" or "low" not in part:
            conflicts.append(part)
            continue
        ranges.append(part)
        low, high = rank(part["low"]), rank(part["high"])
        point = wanted_ranked.get((low, high))
        if point is not None:
            result.adopted[point] = part
            continue
        if span is not None and low < span[1] and span[0] < high:
            covered = _span_points(scheme, part, rank)
            if covered is None:
                conflicts.append(part)
                continue
            # an attached table covering whole periods (migrate: attach): adopted as it is
            result.spanning.append(part)
            result.covered.update((p, part) for p in covered)
            if cutoff_rank is not None and low < cutoff_rank:
                result.warnings.append(_partly_old_warning(declared, result, part))
            continue
        if cutoff_rank is not None and high <= cutoff_rank:
            old.append(part)
        elif cutoff_rank is not None and low < cutoff_rank:
            result.partly_old.append(part)
            result.warnings.append(_partly_old_warning(declared, result, part))
        else:
            result.others.append(part)
    return conflicts, old, ranges


def _partly_old_warning(declared, result, part):
    return "partition %s spans the retention cutoff %s (FROM %s TO %s): it is only partly old and is kept" % (
        part["name"],
        declared.scheme.display(result.cutoff),
        json_value(part["low"]),
        json_value(part["high"]),
    )


def _declared_periods(declared, table, current, result):
    """Set ``result.periods``: from ``start`` (or the current period; not before the retention cutoff) to ``premake``
    periods after the current one, less those outside the table's own bound when it is a partition."""
    scheme = declared.scheme
    result.bound = key_bound(table, declared.key)
    check_start_in_bound(declared, result.bound)
    last = scheme.step(current, declared.premake)
    first = declared.start if declared.start is not None else current
    if declared.retention:
        result.cutoff = scheme.step(current, -declared.retention["keep"])
        first = max(first, result.cutoff)
    periods = scheme.periods(first, max(first, last))
    if result.bound is not None:
        # later periods belong to the parent's other partitions, earlier ones to none of this table
        inside = [p for p in periods if result.bound.holds(*scheme.bounds(p))]
        result.clipped = len(periods) - len(inside)
        periods = inside
    for point in periods[:1] + periods[-1:]:
        if not scheme.fits_column(scheme.step(point)):
            raise InvalidInput(
                "the bound %s of %s does not fit key column %s (%s)%s"
                % (
                    scheme.literal(scheme.step(point)),
                    declared.display,
                    declared.key,
                    scheme.column_type,
                    ": %s starts at it, past the last second an integer holds (2038-01-19 03:14:07 UTC). Change "
                    "the column to bigint (ALTER TABLE ... ALTER COLUMN %s TYPE bigint); nothing was changed"
                    % (scheme.display(scheme.step(point)), declared.key)
                    if scheme.format.zoned
                    else "",
                )
            )
    warning = integer_epoch_warning(declared, periods[-1]) if periods else None
    if warning:
        result.warnings.append(warning)
    result.periods = periods


def _unreachable_warning(declared, result, ranges):
    """Warn about existing partitions wholly outside the table's own bound: no row can reach them (they are empty,
    PostgreSQL checked that when they were attached), and the module never drops a table on its own."""
    if result.bound is None:
        return
    outside = [p for p in ranges if not result.bound.holds(p["low"], p["high"])]
    if outside:
        result.warnings.append(
            "%d partition(s) of %s lie outside its bound (it is a partition %s), so no row can ever reach them: "
            "%s. They are left alone; drop them (DROP TABLE) once you have checked they are empty."
            % (len(outside), declared.display, result.bound.text(), ", ".join(p["name"] for p in outside))
        )


def _one_period(scheme: Scheme, part: dict[str, Any], rank: Ranker) -> bool:
    """True when the partition's bounds are exactly one period of ``scheme``."""
    low, high = rank(part["low"]), rank(part["high"])
    if low[0] != 1 or high[0] != 1:
        return False
    point = scheme.point_of(low[1])
    return point is not None and bound_rank(scheme.key(scheme.step(point))) == high


def interval_of(scheme: Scheme, part: dict[str, Any], rank: Ranker = bound_rank) -> str | None:
    """The interval (as ``interval`` is written) of which the partition is exactly one period under ``scheme``'s
    key format: ``year`` ... ``day``, or the width for integer keys; None when it is none (an attached range)."""
    if not scheme.format.calendar:
        low, high = rank(part["low"]), rank(part["high"])
        width = high[1] - low[1] if low[0] == high[0] == 1 else 0
        return str(width) if width > 0 and low[1] % width == 0 else None
    for name in scheme.format.intervals:
        if _one_period(scheme.with_interval(name), part, rank):
            return name
    return None


def other_intervals(
    declared: Declared, ranges: Sequence[dict[str, Any]], rank: Ranker = bound_rank
) -> dict[str, list[dict[str, Any]]]:
    """The range partitions by the interval they are exactly one period of, when none of them is one declared
    period (empty when one is: the tree is of the declared interval, or changes to it from a date on)."""
    found: dict[str, list[dict[str, Any]]] = {}
    for part in ranges:
        if _one_period(declared.scheme, part, rank):
            return {}
        name = interval_of(declared.scheme, part, rank)
        if name is not None:
            found.setdefault(name, []).append(part)
    return found


def existing_interval(
    declared: Declared, table: dict[str, Any], aliases: Mapping[Any, Any] | None = None
) -> str | None:
    """The interval most of ``table``'s range partitions are of when it is not the declared one (None when the tree
    is of the declared interval, or its partitions are of no interval this key format knows)."""
    ranges = [
        p for p in existing_partitions(table) if not p["is_default"] and (p.get("bound") or {}).get("kind") == "range"
    ]
    found = other_intervals(declared, [p for p in ranges if "low" in p], _ranker(aliases))
    return max(sorted(found), key=lambda name: len(found[name])) if found else None


def check_interval(
    declared: Declared, ranges: Sequence[dict[str, Any]], rank: Ranker = bound_rank, bound: KeyBound | None = None
) -> None:
    """Return nothing; refuse an ``interval`` the existing range partitions are not of: none of them is one declared
    period and some are exactly one period of another interval (months declared over a yearly tree would be added
    after its years, each year kept as a partition spanning twelve of them).

    A tree that changes interval from a date on is declared with the new one once its first partition of the new
    interval exists (the DBA attaches it): older partitions of another width are then adopted as they are.
    ``bound`` (the table's own, when it is a partition) keeps the example of that first partition inside it.
    """
    scheme = declared.scheme
    found = other_intervals(declared, ranges, rank)
    if not found:
        return
    ordered = sorted(found.items(), key=lambda item: -len(item[1]))
    by_interval = "; ".join(
        "%s (%d, the newest %s)"
        % (name, len(parts), ", ".join(_conflict_text(p) for p in sorted(parts, key=lambda p: rank(p["low"]))[-2:]))
        for name, parts in ordered
    )
    newest = max(ranges, key=lambda p: rank(p["high"]))
    after = scheme.point_of(rank(newest["high"])[1])
    example = ""
    if after is not None and (bound is None or bound.holds(*scheme.bounds(after))):
        example = " (e.g. FOR VALUES FROM (%s) TO (%s))" % tuple(_bound_text(v) for v in scheme.bounds(after))
    raise InvalidInput(
        "the existing partitions of %s are by %s, not by the declared interval %s: none of them is exactly one "
        "period of it, and its partitions would be added beside them. Declare interval: %s (what they are); to "
        "change to %s from a date on, attach the first partition of the new interval yourself%s and run again; "
        "to rebuild the whole set by %s, set repartition: online (or offline). Nothing was changed."
        % (
            declared.display,
            by_interval,
            scheme.interval_name,
            ordered[0][0],
            scheme.interval_name,
            example,
            scheme.interval_name,
        )
    )


def _conflict_text(part):
    if part.get("bound", {}).get("kind") != "range" or "low" not in part:
        return "%s (%s)" % (part["name"], part.get("bound_expr"))
    return "%s (FROM %s TO %s)" % (
        display_name(part["schema"], part["name"]),
        json_value(part["low"]),
        json_value(part["high"]),
    )


def _check_new_partitions(declared, result):
    """Refuse a run that would create more partitions than ``max_new_partitions`` (a wrong "now" or start)."""
    cap = declared.max_new_partitions
    if cap is None or len(result.missing) <= cap:
        return
    scheme = declared.scheme
    raise InvalidInput(
        "%s would get %d new partitions in one run (periods %s to %s, current period %s), more than "
        "max_new_partitions=%d. If that range is intended, raise max_new_partitions (or set start later); if not, "
        "check the key values and start. Nothing was changed."
        % (
            declared.display,
            len(result.missing),
            scheme.display(result.missing[0]),
            scheme.display(result.missing[-1]),
            scheme.display(result.current),
            cap,
        )
    )


def _limit_retention(declared, result, old):
    """Retire at most ``retention.max_per_run`` of the old partitions (oldest first); the rest wait, kept attached."""
    if not old:
        return
    limit = declared.retention.get("max_per_run", DEFAULT_MAX_PER_RUN)
    result.retired = old[:limit]
    result.waiting = old[limit:]
    if result.waiting:
        result.warnings.append(
            "retention: %d more partition(s) of %s older than the %d periods kept remain attached (%s): "
            "retention.max_per_run=%d per run, the next runs handle them"
            % (
                len(result.waiting),
                declared.display,
                declared.retention["keep"],
                ", ".join(p["name"] for p in result.waiting),
                limit,
            )
        )


# ---------------------------------------------------------------------------------------------
# "Now" for integer keys, and keys beyond the set
# ---------------------------------------------------------------------------------------------


def newest_first(table: dict[str, Any] | None) -> list[dict[str, Any]]:
    """Return the range partitions (not the default), newest first: where an integer key's current period is looked for."""
    parts = [
        p
        for p in existing_partitions(table)
        if not p["is_default"] and (p.get("bound") or {}).get("kind") == "range" and "low" in p
    ]
    return sorted(parts, key=lambda p: bound_rank(p["high"]), reverse=True)


def is_stray(declared: Declared, newer: dict[str, Any], older_max: int) -> bool:
    """Return True when partition ``newer`` starts more than ``premake`` periods after the period of ``older_max`` (the
    largest key of the next older partition holding rows): the module never makes partitions that far ahead, so
    rows there are stray keys (a typo, a test row), not "now"."""
    scheme = declared.scheme
    reach = scheme.step(scheme.align(int(older_max)), declared.premake)
    return bound_rank(newer["low"]) > bound_rank(scheme.key(reach))


def stray_partition_warning(
    declared: Declared, part: dict[str, Any], count: int, low: Any, high: Any, current: Point
) -> str:
    """Return the warning for a partition holding keys far beyond the bulk of the rows."""
    return (
        "partition %s of %s (FROM %s TO %s) holds %d row(s) with keys %s to %s, more than premake=%d periods beyond "
        "the other rows (the current period is %s, the newest one they fill): taken as stray keys and left alone. "
        "Check where they come from (fix or delete them, or move them to the right period)."
        % (
            part["name"],
            declared.display,
            json_value(part["low"]),
            json_value(part["high"]),
            count,
            key_text(declared, low),
            key_text(declared, high),
            declared.premake,
            declared.scheme.display(current),
        )
    )


def beyond_bound(lay: Layout, declared: Declared) -> Point | None:
    """Return the first key value past the last declared period: rows at or past it have no partition this run (None
    when no period is declared: a table that is a partition, its bound all behind or ahead of the current period)."""
    return declared.scheme.step(lay.periods[-1]) if lay.periods else None


def stray_default_warning(declared: Declared, lay: Layout, count: int, low: Any, high: Any) -> str:
    """Return the warning for rows sitting in the default partition past the last declared period."""
    scheme = declared.scheme
    return (
        "%d row(s) of %s in the default partition %s have keys %s to %s, past the last partition (which ends at %s; "
        "current period %s): they are left alone. Check where they come from (fix or delete them); real ones move "
        "into a partition once the current period reaches them."
        % (
            count,
            declared.display,
            lay.default["name"],
            key_text(declared, low),
            key_text(declared, high),
            scheme.display(beyond_bound(lay, declared)),
            scheme.display(lay.current),
        )
    )


def staying_partitions(lay: Layout) -> list[dict[str, Any]]:
    """Return the existing direct partitions the plan keeps attached (adopted, others, partly old, default)."""
    return (
        list(lay.adopted.values())
        + lay.spanning
        + lay.others
        + lay.partly_old
        + lay.waiting
        + ([lay.default] if lay.default else [])
    )
