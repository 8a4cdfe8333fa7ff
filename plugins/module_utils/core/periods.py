# Copyright: (c) 2026, SIGETI data platform team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Key formats x intervals: align, step, label and write partition bounds (pure, no I/O).

A *point* is where a period starts: a ``datetime.date`` for calendar formats, an ``int`` for the
``integer`` format. A ``Scheme`` (one key format with one interval) turns points into bound values of
the key column's type (``date``, naive ``datetime``, ``int``), labels and SQL literal parts.

Adding an interval is one entry in ``INTERVALS``; adding a key format is one entry in ``KEY_FORMATS``. The epoch
formats are the one exception that needs a fact: their bound is the instant of a midnight in the session's
TimeZone, a number the module writes itself, so their Scheme carries ``TimeZoneDays`` (read from the server).
"""

from __future__ import annotations

import bisect
import dataclasses
import datetime
import re
from typing import Any, Callable, Sequence, Union

from ansible_collections.sigeti.dwh.plugins.module_utils.core.errors import DwhError, InvalidInput

# A period start: a date for calendar formats, an int for ``integer`` (``typing.Union``: evaluated on Python 3.8 too).
Point = Union[datetime.date, int]
# A bound value in the key column's type: date, naive datetime (a date subclass) or int.
KeyValue = Union[datetime.date, int]

# ---------------------------------------------------------------------------------------------
# Calendar intervals
# ---------------------------------------------------------------------------------------------


def _add_months(day: datetime.date, months: int) -> datetime.date:
    index = day.year * 12 + (day.month - 1) + months
    return datetime.date(index // 12, index % 12 + 1, 1)


class Interval:
    """One calendar interval: how to align a date to its period, step, and label the period."""

    def __init__(
        self,
        name: str,
        align: Callable[[datetime.date], datetime.date],
        step: Callable[[datetime.date, int], datetime.date],
        label: Callable[[datetime.date], str],
    ) -> None:
        self.name = name
        self._align = align
        self._step = step
        self._label = label

    def align(self, day: datetime.date) -> datetime.date:
        """Return the first day of the period holding ``day``."""
        return self._align(day)

    def step(self, point: datetime.date, count: int = 1) -> datetime.date:
        """Return the start of the period ``count`` periods after (or before, when negative) ``point``."""
        return self._step(point, count)

    def label(self, point: datetime.date) -> str:
        """Return the partition name suffix of the period starting at ``point`` (without the underscore)."""
        return self._label(point)


def _week_label(point: datetime.date) -> str:
    iso = point.isocalendar()
    return "%04dw%02d" % (iso[0], iso[1])


INTERVALS = {
    i.name: i
    for i in (
        Interval(
            "year",
            lambda d: datetime.date(d.year, 1, 1),
            lambda p, n: datetime.date(p.year + n, 1, 1),
            lambda p: "%04d" % p.year,
        ),
        Interval(
            "quarter",
            lambda d: datetime.date(d.year, 3 * ((d.month - 1) // 3) + 1, 1),
            lambda p, n: _add_months(p, 3 * n),
            lambda p: "%04dq%d" % (p.year, (p.month - 1) // 3 + 1),
        ),
        Interval(
            "month", lambda d: datetime.date(d.year, d.month, 1), _add_months, lambda p: "%04d%02d" % (p.year, p.month)
        ),
        # ISO weeks start on Monday; the label uses the ISO year (2024-12-30 is 2025w01) and knows week 53.
        Interval(
            "week",
            lambda d: d - datetime.timedelta(days=d.weekday()),
            lambda p, n: p + datetime.timedelta(days=7 * n),
            _week_label,
        ),
        Interval(
            "day",
            lambda d: d,
            lambda p, n: p + datetime.timedelta(days=n),
            lambda p: "%04d%02d%02d" % (p.year, p.month, p.day),
        ),
    )
}
CALENDAR_INTERVALS = ("year", "quarter", "month", "week", "day")

# ---------------------------------------------------------------------------------------------
# Local midnights of the session's TimeZone (epoch keys)
# ---------------------------------------------------------------------------------------------

EPOCH_DAY = datetime.date(1970, 1, 1)
DAY_SECONDS = 86400


@dataclasses.dataclass(frozen=True)
class TimeZoneDays:
    """The instant (epoch seconds) of every local midnight of one TimeZone from ``first`` to ``last``, as the server
    computes them (``catalog.time_zone_days``).

    A timestamptz bound is written as midnight and the server places it in its TimeZone; an epoch bound is a number
    the module must compute itself, and only the server knows its TimeZone rules (Python's tz database may differ
    from the server's, or be absent), so the server is asked. ``shifts`` are runs of days ``(first day of the run,
    shift)``: the midnight of a day ``d`` of a run is ``(d - 1970-01-01) * 86400 + shift`` (the shift is minus the
    UTC offset at that midnight). A midnight that does not exist (a DST gap at midnight) is the instant the server
    makes of it, as for a timestamptz bound: the first one after the gap.
    """

    timezone: str
    first: datetime.date
    last: datetime.date
    shifts: tuple[tuple[datetime.date, int], ...]

    def __post_init__(self) -> None:
        if not self.shifts or self.shifts[0][0] != self.first or self.last < self.first:
            raise ValueError("TimeZoneDays of %s: the first run must start at first (%s)" % (self.timezone, self.first))
        object.__setattr__(self, "_starts", tuple(day for day, _shift in self.shifts))

    @classmethod
    def uniform(cls, timezone: str, utc_offset: int, first: datetime.date, last: datetime.date) -> TimeZoneDays:
        """Return the days of a TimeZone with one fixed UTC offset in seconds (``UTC``, ``Etc/GMT-3``)."""
        return cls(timezone, first, last, ((first, -utc_offset),))

    def covers(self, day: datetime.date) -> bool:
        """Return True when the midnight of ``day`` was read (``first <= day <= last``)."""
        return self.first <= day <= self.last

    def shift(self, day: datetime.date) -> int:
        """Return the seconds from the UTC midnight of ``day`` to its local midnight (minus the UTC offset there)."""
        if not self.covers(day):
            raise DwhError(
                "the local midnight of %s was not read from the server (TimeZone %s, days %s to %s were): this is a "
                "bug of the module, please report it" % (day, self.timezone, self.first, self.last)
            )
        return self.shifts[bisect.bisect_right(self._starts, day) - 1][1]  # type: ignore[attr-defined]

    def epoch(self, day: datetime.date) -> int:
        """Return the epoch seconds of the local midnight that starts ``day``."""
        return (day - EPOCH_DAY).days * DAY_SECONDS + self.shift(day)

    def day(self, seconds: int) -> datetime.date | None:
        """Return the day whose local midnight is exactly ``seconds`` after the epoch; None when no day read starts
        there (a time of day, or a day outside ``first``..``last``)."""
        ordinal = EPOCH_DAY.toordinal() + seconds // DAY_SECONDS
        # a shift is less than a day either way: the day starts on the UTC day of the instant or the next one
        for candidate in (ordinal, ordinal + 1, ordinal - 1):
            if self.first.toordinal() <= candidate <= self.last.toordinal():
                day = datetime.date.fromordinal(candidate)
                if self.epoch(day) == seconds:
                    return day
        return None

    def utc_offset_text(self, day: datetime.date) -> str:
        """Return the UTC offset at the midnight of ``day`` as ISO text: ``+01:00``, ``-05:00``, ``+05:30``."""
        offset = -self.shift(day)
        sign = "+" if offset >= 0 else "-"
        hours, rest = divmod(abs(offset), 3600)
        text = "%s%02d:%02d" % (sign, hours, rest // 60)
        return text + (":%02d" % (rest % 60) if rest % 60 else "")  # local mean time before 1900-1970: seconds


# Epoch seconds a live table's keys lie between: 1971-01-01 and 2286-11-20 UTC (10 digits). Other integer encodings
# fall outside: YYYYMMDD numbers (1970-08 to 1970-12 as seconds), seconds read as milliseconds (January to April
# 1970), milliseconds read as seconds (year 33,000 and later).
EPOCH_SECONDS_RANGE = (31536000, 9999999999)


# ---------------------------------------------------------------------------------------------
# Key formats
# ---------------------------------------------------------------------------------------------

INTEGER_TYPES = ("smallint", "integer", "bigint", "numeric")
# Largest key value each integer type holds; YYYYMMDD needs 8 digits, which a smallint cannot hold.
TYPE_MAX = {"smallint": 32767, "integer": 2147483647, "bigint": 9223372036854775807, "numeric": None}


def _yyyymmdd_from(value: int) -> datetime.date | None:
    text = "%d" % value
    if len(text) != 8:
        return None
    try:
        return datetime.date(int(text[:4]), int(text[4:6]), int(text[6:]))
    except ValueError:
        return None


def _yyyymm_from(value: int) -> datetime.date | None:
    text = "%d" % value
    if len(text) != 6 or not 1 <= int(text[4:]) <= 12:
        return None
    return datetime.date(int(text[:4]), int(text[4:]), 1)


def _plain_date(value: Any) -> datetime.date | None:
    """The value when it is a date and not a datetime (a datetime is a date subclass), else None."""
    return value if isinstance(value, datetime.date) and not isinstance(value, datetime.datetime) else None


def _midnight(day: datetime.date) -> datetime.datetime:
    return datetime.datetime(day.year, day.month, day.day)


def _date_of_datetime(value: Any) -> datetime.date | None:
    if isinstance(value, datetime.datetime):
        if value.time() != datetime.time(0):
            return None
        return value.date()
    return None


class KeyFormat:
    """How period starts are written in one kind of key column.

    ``to_key(point, days)`` gives the bound value, ``from_key(value, days)`` reads a bound back into a point (None
    when it is not a period start this format can write); ``days`` is the session's ``TimeZoneDays`` for the formats
    with an ``epoch_unit`` (keys per second: 1 or 1000), None for the others. ``cast`` is the SQL type of the literal
    (None for plain integers), ``types`` the column types (``format_type`` base names) that can hold it,
    ``intervals`` the intervals it supports, ``example`` a bound value and ``start_example`` a ``start`` as a user
    writes it.
    """

    def __init__(
        self,
        name: str,
        types: tuple[str, ...],
        intervals: tuple[str, ...],
        to_key: Callable[[Any, TimeZoneDays | None], KeyValue],
        from_key: Callable[[Any, TimeZoneDays | None], Point | None],
        cast: str | None,
        example: str,
        epoch_unit: int | None = None,
        start_example: str | None = None,
    ) -> None:
        self.name = name
        self.types = types
        self.intervals = intervals
        self.to_key = to_key
        self.from_key = from_key
        self.cast = cast
        self.example = example
        self.epoch_unit = epoch_unit
        self.start_example = start_example or example

    @property
    def calendar(self) -> bool:
        """Return True when points are dates (every format but ``integer``)."""
        return self.name != "integer"

    @property
    def zoned(self) -> bool:
        """Return True when bounds are instants of local midnights (epoch formats): they need ``TimeZoneDays``."""
        return self.epoch_unit is not None

    @property
    def numeric(self) -> bool:
        """Return True when the key column holds numbers the module reads to check or place (integer, epoch)."""
        return not self.calendar or self.zoned


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _epoch_key(unit: int) -> Callable[[Any, TimeZoneDays | None], int]:
    def to_key(point: datetime.date, days: TimeZoneDays | None) -> int:
        return days.epoch(point) * unit

    return to_key


def _epoch_point(unit: int) -> Callable[[Any, TimeZoneDays | None], datetime.date | None]:
    def from_key(value: Any, days: TimeZoneDays | None) -> datetime.date | None:
        if not _is_int(value) or value % unit:
            return None
        return days.day(value // unit)

    return from_key


KEY_FORMATS = {
    f.name: f
    for f in (
        KeyFormat(
            "date", ("date",), CALENDAR_INTERVALS, lambda p, _d: p, lambda v, _d: _plain_date(v), "date", "2023-01-01"
        ),
        KeyFormat(
            "timestamp",
            ("timestamp without time zone",),
            CALENDAR_INTERVALS,
            lambda p, _d: _midnight(p),
            lambda v, _d: _date_of_datetime(v),
            "timestamp",
            "2023-01-01",
        ),
        # timestamptz bounds are midnight in the session's TimeZone; the catalog renders them back in it.
        KeyFormat(
            "timestamptz",
            ("timestamp with time zone",),
            CALENDAR_INTERVALS,
            lambda p, _d: _midnight(p),
            lambda v, _d: _date_of_datetime(v),
            "timestamptz",
            "2023-01-01",
        ),
        KeyFormat(
            "yyyymmdd",
            ("integer", "bigint", "numeric"),
            CALENDAR_INTERVALS,
            lambda p, _d: p.year * 10000 + p.month * 100 + p.day,
            lambda v, _d: _yyyymmdd_from(v) if isinstance(v, int) else None,
            None,
            "20230101",
        ),
        KeyFormat(
            "yyyymm",
            ("integer", "bigint", "numeric"),
            ("year", "quarter", "month"),
            lambda p, _d: p.year * 100 + p.month,
            lambda v, _d: _yyyymm_from(v) if isinstance(v, int) else None,
            None,
            "202301",
        ),
        KeyFormat(
            "integer",
            INTEGER_TYPES,
            (),
            lambda p, _d: p,
            lambda v, _d: v if _is_int(v) else None,
            None,
            "1000000",
        ),
        # Seconds since 1970-01-01 UTC, bounded at the midnights of the session's TimeZone (as timestamptz keys).
        # integer holds them until 2038-01-19 03:14:07 UTC (partitions past it are refused, and warned of a year
        # ahead); smallint not even for a day.
        KeyFormat(
            "epoch",
            ("integer", "bigint"),
            CALENDAR_INTERVALS,
            _epoch_key(1),
            _epoch_point(1),
            None,
            "1672531200",
            epoch_unit=1,
            start_example="2023-01-01",
        ),
        # Milliseconds: only bigint holds them (integer ends 24.8 days after 1970-01-01).
        KeyFormat(
            "epoch_ms",
            ("bigint",),
            CALENDAR_INTERVALS,
            _epoch_key(1000),
            _epoch_point(1000),
            None,
            "1672531200000",
            epoch_unit=1000,
            start_example="2023-01-01",
        ),
    )
}
FORMAT_NAMES = ("auto",) + tuple(KEY_FORMATS)

AUTO_FORMATS = {"date": "date", "timestamp without time zone": "timestamp", "timestamp with time zone": "timestamptz"}


def base_type(type_name: str | None) -> str:
    """Return the ``format_type`` name without typmod: ``numeric(12,0)`` -> ``numeric``."""
    text = re.sub(r"\(.*?\)", "", (type_name or "").strip().lower())
    return re.sub(r"\s+", " ", text).strip()


def detect_format(key_format: str | None, column: str, type_name: str, table: str) -> str:
    """Return ``key_format`` resolved against the key column's type; refuse to guess for integers.

    Raises InvalidInput naming the table, the column and its type when they do not fit.
    """
    base = base_type(type_name)
    if key_format in (None, "auto"):
        if base in AUTO_FORMATS:
            return AUTO_FORMATS[base]
        if base in INTEGER_TYPES:
            raise InvalidInput(
                "key column %s of %s is %s: key_format auto cannot tell whether it holds dates as YYYYMMDD, "
                "months as YYYYMM, epoch seconds or milliseconds, or plain numbers. Set key_format to yyyymmdd, yyyymm, epoch, "
                "epoch_ms or integer." % (column, table, type_name)
            )
        raise InvalidInput(
            "key column %s of %s is %s: no key format can partition it by range (use a date, timestamp, "
            "timestamptz or integer column)" % (column, table, type_name)
        )
    fmt = KEY_FORMATS.get(key_format)
    if fmt is None:
        raise InvalidInput("key_format=%r is unknown: choose one of %s" % (key_format, ", ".join(FORMAT_NAMES)))
    if base not in fmt.types:
        raise InvalidInput(
            "key column %s of %s is %s, which cannot hold key_format %s values (e.g. %s%s): use a column of type %s, "
            "or the key_format that matches %s"
            % (
                column,
                table,
                type_name,
                key_format,
                fmt.example,
                _epoch_limit(fmt, base),
                " or ".join(fmt.types),
                type_name,
            )
        )
    return key_format


def _epoch_limit(fmt: KeyFormat, base: str) -> str:
    """Where an integer type too small for epoch keys ends, for the refusal."""
    limit = TYPE_MAX.get(base)
    if not fmt.zoned or not limit:
        return ""
    return "; %s ends at %s" % (base, _utc_text(limit // fmt.epoch_unit))


def _utc_text(seconds: int) -> str:
    try:
        return (datetime.datetime(1970, 1, 1) + datetime.timedelta(seconds=seconds)).strftime("%Y-%m-%d %H:%M:%S UTC")
    except OverflowError:
        return "a time past the year 9999" if seconds > 0 else "a time before the year 1"


def epoch_utc_text(key_format: str, value: int) -> str:
    """Return an epoch key of ``key_format``'s unit as UTC time for messages: ``2024-03-30 23:00:00 UTC``."""
    return _utc_text(value // (KEY_FORMATS[key_format].epoch_unit or 1))


def plausible_epoch(key_format: str, value: Any) -> bool:
    """Return True when ``value`` reads as an instant between 1971-01-01 and 2286-11-20 UTC in ``key_format``'s unit
    (``EPOCH_SECONDS_RANGE``): where the keys of a live table written in that format lie."""
    unit = KEY_FORMATS[key_format].epoch_unit or 1
    low, high = EPOCH_SECONDS_RANGE
    return _is_int(value) and low * unit <= value < (high + 1) * unit


def _epoch_advice(key_format: str, value: int) -> str:
    """What keys that are not epochs of ``key_format`` look like, and the key format that reads them."""
    as_date = _yyyymmdd_from(value)
    if as_date is not None:
        return "they look like dates written YYYYMMDD (%d = %s): use key_format yyyymmdd" % (value, as_date)
    as_month = _yyyymm_from(value)
    if as_month is not None:
        return "they look like months written YYYYMM (%d = %s): use key_format yyyymm" % (
            value,
            as_month.strftime("%Y-%m"),
        )
    for name in ("epoch", "epoch_ms"):
        if name != key_format and plausible_epoch(name, value):
            unit = KEY_FORMATS[name].epoch_unit
            return "they look like epoch %s (%d = %s): use key_format %s" % (
                "milliseconds" if unit == 1000 else "seconds",
                value,
                _utc_text(value // unit),
                name,
            )
    low, high = EPOCH_SECONDS_RANGE
    if low * 1000000 <= value < (high + 1) * 1000000:
        return (
            "they look like epoch microseconds (%d = %s), which no key format reads as dates: use key_format "
            "integer with an interval in microseconds, or store seconds or milliseconds"
            % (value, _utc_text(value // 1000000))
        )
    return "if they are plain numbers, use key_format integer with an interval in the key's unit"


def check_epoch_keys(key_format: str, values: Sequence[Any], table: str, what: str) -> None:
    """Return nothing; refuse keys that are clearly not epochs of ``key_format`` (InvalidInput naming the table, the
    values and the key format that reads them) before any change.

    ``values`` are the table's smallest and largest keys, or its partitions' bounds (``what`` says which). They are
    refused when none of them is a ``plausible_epoch``: YYYYMMDD numbers declared as epoch, seconds declared as
    epoch_ms... One plausible value is enough (a 0 or a far-future placeholder beside real keys is a stray key, which
    the default partition takes and the module reports). Formats other than epoch ones, and no value, pass.
    """
    fmt = KEY_FORMATS[key_format]
    numbers = [v for v in values if _is_int(v)]
    if not fmt.zoned or not numbers or any(plausible_epoch(key_format, v) for v in numbers):
        return
    largest = max(numbers)
    unit = "milliseconds" if fmt.epoch_unit == 1000 else "seconds"
    raise InvalidInput(
        "key_format %s for %s: %s (%s) are not epoch %s: %d would be %s, and epoch keys of a live table lie between "
        "1971-01-01 and 2286-11-20 UTC. %s%s. Nothing was changed."
        % (
            key_format,
            table,
            what,
            "%d to %d" % (min(numbers), largest) if len(set(numbers)) > 1 else "%d" % largest,
            unit,
            largest,
            _utc_text(largest // fmt.epoch_unit),
            _epoch_advice(key_format, largest)[0].upper(),
            _epoch_advice(key_format, largest)[1:],
        )
    )


class Scheme:
    """One key format with one interval: the arithmetic of a partition set.

    ``days`` are the session's local midnights, which the epoch formats need to write and read bounds (their other
    arithmetic, and every other format, goes without): see ``TimeZoneDays``.
    """

    def __init__(
        self,
        key_format: str,
        interval: str | int | None,
        column_type: str | None = None,
        days: TimeZoneDays | None = None,
    ) -> None:
        if key_format not in KEY_FORMATS:
            raise InvalidInput("key_format=%r is unknown: choose one of %s" % (key_format, ", ".join(FORMAT_NAMES)))
        self.format = KEY_FORMATS[key_format]
        self.column_type = base_type(column_type) if column_type else None
        text = str(interval).strip().lower() if interval is not None else ""
        if self.format.calendar:
            if text not in INTERVALS:
                raise InvalidInput(
                    "interval=%r does not fit key_format %s: choose one of %s"
                    % (interval, key_format, ", ".join(self.format.intervals))
                )
            if text not in self.format.intervals:
                raise InvalidInput(
                    "interval %s cannot be written in key_format %s (a %s key has no day of month): choose one of %s"
                    % (text, key_format, key_format, ", ".join(self.format.intervals))
                )
            self.interval: Interval | None = INTERVALS[text]
            self.step_size: int | None = None
        else:
            if not re.match(r"^\d+$", text) or int(text) <= 0:
                raise InvalidInput(
                    "interval=%r does not fit key_format integer: give a positive whole number, the width of each "
                    "partition (e.g. 1000000)" % (interval,)
                )
            self.interval = None
            self.step_size = int(text)
        self.key_format = key_format
        self.interval_name = text
        self.days = days

    def with_days(self, days: TimeZoneDays | None) -> Scheme:
        """Return the same scheme holding ``days`` (the session's local midnights)."""
        return Scheme(self.key_format, self.interval_name, self.column_type, days)

    def with_interval(self, interval: str) -> Scheme:
        """Return the scheme of the same key format (and days) with another interval."""
        return Scheme(self.key_format, interval, self.column_type, self.days)

    def _days(self) -> TimeZoneDays | None:
        if self.format.zoned and self.days is None:
            raise DwhError(
                "key_format %s needs the session's local midnights to write or read a bound, and this scheme has "
                "none: this is a bug of the module, please report it" % self.key_format
            )
        return self.days

    # -- arithmetic on points
    def align(self, point: Point) -> Point:
        """Return the start of the period holding ``point`` (a date, or an int for integer keys)."""
        if self.interval is not None:
            return self.interval.align(point)
        return (point // self.step_size) * self.step_size

    def step(self, point: Point, count: int = 1) -> Point:
        """Return the start of the period ``count`` periods after ``point`` (before when negative)."""
        if self.interval is not None:
            return self.interval.step(point, count)
        return point + count * self.step_size

    def periods(self, first: Point, last: Point) -> list[Point]:
        """Return every period start from ``first`` to ``last`` inclusive (both aligned)."""
        out = []
        point = first
        while point <= last:
            out.append(point)
            point = self.step(point)
        return out

    def label(self, point: Point) -> str:
        """Return the partition name suffix (``2023``, ``2023q1``, ``202301``, ``2023w05``, ``20230115``, ``p1000``)."""
        if self.interval is not None:
            return self.interval.label(point)
        return ("p%d" % point) if point >= 0 else ("m%d" % -point)

    # -- bounds
    def key(self, point: Point) -> KeyValue:
        """Return the bound value of ``point`` in the key column's type (date, naive datetime or int)."""
        return self.format.to_key(point, self._days())

    def bounds(self, point: Point) -> tuple[KeyValue, KeyValue]:
        """Return ``(low, high)`` bound values of the period starting at ``point``."""
        return self.key(point), self.key(self.step(point))

    def point_of(self, value: Any) -> Point | None:
        """Return the point a key value starts; None when it is not a period start of this scheme."""
        if isinstance(value, datetime.datetime) and value.tzinfo is not None:
            value = value.replace(tzinfo=None)
        point = self.format.from_key(value, self._days())
        if point is None or self.align(point) != point:
            return None
        return point

    def literal_parts(self, point: Point) -> tuple[str | int, str | None]:
        """Return ``(value, cast)`` for composing the bound in SQL: ``("2023-01-01", "date")`` or ``(20230101, None)``."""
        value = self.key(point)
        if isinstance(value, datetime.datetime):
            return value.strftime("%Y-%m-%d %H:%M:%S"), self.format.cast
        if isinstance(value, datetime.date):
            return value.isoformat(), self.format.cast
        return value, None

    def literal(self, point: Point) -> str:
        """Return the bound as SQL text for messages: ``date '2023-01-01'``, ``20230101``."""
        value, cast = self.literal_parts(point)
        if cast:
            return "%s '%s'" % (cast, value)
        return "%d" % value

    def display(self, point: Point) -> str:
        """Return the bound value as a user writes it in ``start`` (``2023-01-01``, ``20230101``, ``1000``; epoch
        keys' start is their local date)."""
        if self.format.zoned:
            return point.isoformat()
        value, _cast = self.literal_parts(point)
        if isinstance(value, str):
            return value.split(" ")[0]
        return "%d" % value

    def fits_column(self, point: Point) -> bool:
        """Return True when the bound value of ``point`` fits the key column's integer type."""
        limit = TYPE_MAX.get(self.column_type) if self.column_type else None
        value = self.key(point)
        # two's complement range: -limit - 1 <= value <= limit, written without negating a possibly-None limit
        return limit is None or not isinstance(value, int) or (value if value >= 0 else -value - 1) <= limit

    # -- today and start
    def current(self, today: Point) -> Point:
        """Return the period holding ``today`` (a date for calendar formats, an int key for integer)."""
        return self.align(today)

    def parse_start(self, value: Any) -> Point:
        """Return the ``start`` option parsed into an aligned point, or raise saying what the aligned value would be."""
        point = self._parse_point(value)
        aligned = self.align(point)
        if aligned != point:
            raise InvalidInput(
                "start=%s is not aligned to interval %s for key_format %s: the aligned value would be %s "
                "(the period holding it starts there)"
                % (value, self.interval_name, self.key_format, self.display(aligned))
            )
        return point

    def _parse_point(self, value: Any) -> Point:
        text = str(value).strip()
        if not self.format.calendar:
            if not re.match(r"^-?\d+$", text):
                raise InvalidInput("start=%r is not a whole number, as key_format integer needs" % (value,))
            return int(text)
        patterns = (
            (r"^(\d{4})-(\d{2})-(\d{2})(?:[ T]00:00(?::00)?)?$", 3),
            (r"^(\d{4})(\d{2})(\d{2})$", 3),
            (r"^(\d{4})-(\d{2})$", 2),
            (r"^(\d{4})(\d{2})$", 2),
        )
        for pattern, parts in patterns:
            match = re.match(pattern, text)
            if match:
                numbers = [int(g) for g in match.groups()] + ([1] if parts == 2 else [])
                try:
                    return datetime.date(*numbers)
                except ValueError:
                    break
        raise InvalidInput(
            "start=%r is not a date: write it as YYYY-MM-DD (or YYYYMMDD, or YYYYMM for monthly keys), e.g. %s"
            % (value, self.format.start_example)
        )
