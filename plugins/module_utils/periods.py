# Copyright: (c) 2026, SIGETI data platform team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Key formats x intervals: align, step, label and write partition bounds (pure, no I/O).

A *point* is where a period starts: a ``datetime.date`` for calendar formats, an ``int`` for the
``integer`` format. A ``Scheme`` (one key format with one interval) turns points into bound values of
the key column's type (``date``, naive ``datetime``, ``int``), labels and SQL literal parts.

Adding an interval is one entry in ``INTERVALS``; adding a key format is one entry in ``KEY_FORMATS``.
"""

from __future__ import annotations

import datetime
import re
from typing import Any, Callable, Union

from ansible_collections.sigeti.dwh.plugins.module_utils.errors import InvalidInput

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

    ``to_key(point)`` gives the bound value, ``from_key(value)`` reads a bound back into a point (None when
    it is not a period start this format can write), ``cast`` is the SQL type of the literal (None for plain
    integers), ``types`` the column types (``format_type`` base names) that can hold it, ``intervals``
    the intervals it supports.
    """

    def __init__(
        self,
        name: str,
        types: tuple[str, ...],
        intervals: tuple[str, ...],
        to_key: Callable[[Any], KeyValue],
        from_key: Callable[[Any], Point | None],
        cast: str | None,
        example: str,
    ) -> None:
        self.name = name
        self.types = types
        self.intervals = intervals
        self.to_key = to_key
        self.from_key = from_key
        self.cast = cast
        self.example = example

    @property
    def calendar(self) -> bool:
        """Return True when points are dates (every format but ``integer``)."""
        return self.name != "integer"


KEY_FORMATS = {
    f.name: f
    for f in (
        KeyFormat("date", ("date",), CALENDAR_INTERVALS, lambda p: p, _plain_date, "date", "2023-01-01"),
        KeyFormat(
            "timestamp",
            ("timestamp without time zone",),
            CALENDAR_INTERVALS,
            _midnight,
            _date_of_datetime,
            "timestamp",
            "2023-01-01",
        ),
        # timestamptz bounds are midnight in the session's TimeZone; the catalog renders them back in it.
        KeyFormat(
            "timestamptz",
            ("timestamp with time zone",),
            CALENDAR_INTERVALS,
            _midnight,
            _date_of_datetime,
            "timestamptz",
            "2023-01-01",
        ),
        KeyFormat(
            "yyyymmdd",
            ("integer", "bigint", "numeric"),
            CALENDAR_INTERVALS,
            lambda p: p.year * 10000 + p.month * 100 + p.day,
            lambda v: _yyyymmdd_from(v) if isinstance(v, int) else None,
            None,
            "20230101",
        ),
        KeyFormat(
            "yyyymm",
            ("integer", "bigint", "numeric"),
            ("year", "quarter", "month"),
            lambda p: p.year * 100 + p.month,
            lambda v: _yyyymm_from(v) if isinstance(v, int) else None,
            None,
            "202301",
        ),
        KeyFormat(
            "integer",
            INTEGER_TYPES,
            (),
            lambda p: p,
            lambda v: v if isinstance(v, int) and not isinstance(v, bool) else None,
            None,
            "1000000",
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
                "months as YYYYMM or plain numbers. Set key_format to yyyymmdd, yyyymm or integer."
                % (column, table, type_name)
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
            "key column %s of %s is %s, which cannot hold key_format %s values (e.g. %s): use a column of type %s, "
            "or the key_format that matches %s"
            % (column, table, type_name, key_format, fmt.example, " or ".join(fmt.types), type_name)
        )
    return key_format


class Scheme:
    """One key format with one interval: the arithmetic of a partition set."""

    def __init__(self, key_format: str, interval: str | int | None, column_type: str | None = None) -> None:
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
        return self.format.to_key(point)

    def bounds(self, point: Point) -> tuple[KeyValue, KeyValue]:
        """Return ``(low, high)`` bound values of the period starting at ``point``."""
        return self.key(point), self.key(self.step(point))

    def point_of(self, value: Any) -> Point | None:
        """Return the point a key value starts; None when it is not a period start of this scheme."""
        if isinstance(value, datetime.datetime) and value.tzinfo is not None:
            value = value.replace(tzinfo=None)
        point = self.format.from_key(value)
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
        """Return the bound value as a user writes it in ``start`` (``2023-01-01``, ``20230101``, ``1000``)."""
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
            % (value, self.format.example)
        )
