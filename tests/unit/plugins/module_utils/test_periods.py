"""Pure period arithmetic: every interval x key format, boundary dates, leap years, ISO week 53, year ends, and
epoch keys at local midnights across DST changes."""

import datetime

import pytest

from ansible_collections.sigeti.dwh.plugins.module_utils.core import periods
from ansible_collections.sigeti.dwh.plugins.module_utils.core.errors import DwhError, InvalidInput
from tests.support.zones import server_midnight, zone_days

D = datetime.date
CAL_FORMATS = ("date", "timestamp", "timestamptz", "yyyymmdd", "yyyymm")
COMBOS = [(f, i) for f in CAL_FORMATS for i in periods.KEY_FORMATS[f].intervals]
COLUMN = {
    "date": "date",
    "timestamp": "timestamp without time zone",
    "timestamptz": "timestamp with time zone",
    "yyyymmdd": "integer",
    "yyyymm": "integer",
}

# Boundary days: year ends, leap days, ISO week 53 years (2015, 2020, 2026), ISO years starting in December.
BOUNDARY_DAYS = [
    D(2019, 12, 30),
    D(2019, 12, 31),
    D(2020, 1, 1),
    D(2020, 2, 28),
    D(2020, 2, 29),
    D(2020, 3, 1),
    D(2020, 12, 31),
    D(2021, 1, 3),
    D(2021, 1, 4),
    D(2023, 1, 1),
    D(2023, 3, 31),
    D(2023, 4, 1),
    D(2023, 12, 31),
    D(2024, 2, 29),
    D(2024, 12, 30),
    D(2025, 1, 1),
    D(2100, 2, 28),
    D(2100, 3, 1),
    D(2000, 2, 29),
    D(2026, 12, 31),
    D(2027, 1, 1),
]


def _expected_align(interval, day):
    if interval == "year":
        return D(day.year, 1, 1)
    if interval == "quarter":
        return D(day.year, (day.month - 1) // 3 * 3 + 1, 1)
    if interval == "month":
        return D(day.year, day.month, 1)
    if interval == "week":
        return day - datetime.timedelta(days=day.isoweekday() - 1)
    return day


@pytest.mark.parametrize("key_format, interval", COMBOS)
@pytest.mark.parametrize("day", BOUNDARY_DAYS)
def test_align_step_and_bounds_hold_for_every_combination(key_format, interval, day):
    scheme = periods.Scheme(key_format, interval, COLUMN[key_format])
    point = scheme.align(day)
    assert point == _expected_align(interval, day)
    assert scheme.align(point) == point, "aligning is idempotent"
    nxt = scheme.step(point)
    assert point <= day < nxt, "the period holds the day"
    assert scheme.align(nxt) == nxt and scheme.step(nxt, -1) == point
    low, high = scheme.bounds(point)
    assert low < high
    assert scheme.point_of(low) == point and scheme.point_of(high) == nxt, "bounds read back into points"
    assert scheme.label(point) != scheme.label(nxt)


@pytest.mark.parametrize("key_format, interval", COMBOS)
def test_stepping_a_whole_decade_is_contiguous_and_labels_are_unique(key_format, interval):
    scheme = periods.Scheme(key_format, interval, COLUMN[key_format])
    points = scheme.periods(scheme.align(D(2019, 6, 15)), scheme.align(D(2029, 6, 15)))
    labels = [scheme.label(p) for p in points]
    assert len(set(labels)) == len(labels)
    for a, b in zip(points, points[1:]):
        assert scheme.step(a) == b and scheme.bounds(a)[1] == scheme.bounds(b)[0]
    assert labels == sorted(labels), "labels sort like the periods"


@pytest.mark.parametrize(
    "interval, day, label",
    [
        ("year", D(2023, 7, 1), "2023"),
        ("quarter", D(2023, 1, 1), "2023q1"),
        ("quarter", D(2023, 12, 31), "2023q4"),
        ("quarter", D(2024, 5, 5), "2024q2"),
        ("month", D(2023, 1, 15), "202301"),
        ("month", D(2023, 12, 31), "202312"),
        ("week", D(2023, 2, 1), "2023w05"),
        ("week", D(2020, 12, 31), "2020w53"),  # 2020 has an ISO week 53
        ("week", D(2021, 1, 3), "2020w53"),  # ...which ends on Sunday 2021-01-03
        ("week", D(2021, 1, 4), "2021w01"),
        ("week", D(2024, 12, 30), "2025w01"),  # ISO year 2025 starts on 2024-12-30
        ("week", D(2026, 12, 31), "2026w53"),
        ("day", D(2023, 1, 15), "20230115"),
        ("day", D(2024, 2, 29), "20240229"),
    ],
)
def test_labels(interval, day, label):
    scheme = periods.Scheme("date", interval, "date")
    assert scheme.label(scheme.align(day)) == label


@pytest.mark.parametrize(
    "key_format, interval, day, low, high",
    [
        ("yyyymmdd", "year", D(2023, 5, 5), 20230101, 20240101),
        ("yyyymmdd", "quarter", D(2023, 11, 5), 20231001, 20240101),
        ("yyyymmdd", "month", D(2023, 12, 5), 20231201, 20240101),
        ("yyyymmdd", "month", D(2024, 1, 31), 20240101, 20240201),
        ("yyyymmdd", "week", D(2020, 12, 31), 20201228, 20210104),
        ("yyyymmdd", "day", D(2024, 2, 28), 20240228, 20240229),
        ("yyyymmdd", "day", D(2024, 2, 29), 20240229, 20240301),
        ("yyyymmdd", "day", D(2023, 2, 28), 20230228, 20230301),
        ("yyyymmdd", "day", D(2023, 12, 31), 20231231, 20240101),
        ("yyyymm", "year", D(2023, 5, 5), 202301, 202401),
        ("yyyymm", "quarter", D(2023, 11, 5), 202310, 202401),
        ("yyyymm", "month", D(2023, 12, 5), 202312, 202401),
        ("date", "month", D(2024, 2, 10), D(2024, 2, 1), D(2024, 3, 1)),
        ("timestamp", "day", D(2024, 2, 29), datetime.datetime(2024, 2, 29), datetime.datetime(2024, 3, 1)),
    ],
)
def test_bounds(key_format, interval, day, low, high):
    scheme = periods.Scheme(key_format, interval, COLUMN[key_format])
    assert scheme.bounds(scheme.align(day)) == (low, high)


def test_never_writes_impossible_yyyymmdd_values():
    """pg_partman writes 20231300 for monthly YYYYMMDD keys: every bound we write is a real date."""
    scheme = periods.Scheme("yyyymmdd", "month", "integer")
    for point in scheme.periods(D(2020, 1, 1), D(2030, 12, 1)):
        low, high = scheme.bounds(point)
        for value in (low, high):
            text = str(value)
            assert D(int(text[:4]), int(text[4:6]), int(text[6:])) is not None


def test_literals():
    assert periods.Scheme("date", "year", "date").literal(D(2023, 1, 1)) == "date '2023-01-01'"
    assert periods.Scheme("yyyymmdd", "year", "integer").literal(D(2023, 1, 1)) == "20230101"
    assert periods.Scheme("yyyymm", "month", "integer").literal(D(2023, 1, 1)) == "202301"
    assert (
        periods.Scheme("timestamp", "day", "timestamp without time zone").literal(D(2023, 1, 1))
        == "timestamp '2023-01-01 00:00:00'"
    )
    assert periods.Scheme("timestamptz", "day", "timestamp with time zone").literal_parts(D(2023, 1, 1)) == (
        "2023-01-01 00:00:00",
        "timestamptz",
    )
    assert periods.Scheme("integer", "1000", "bigint").literal(5000) == "5000"


def test_point_of_rejects_non_period_starts():
    scheme = periods.Scheme("yyyymmdd", "month", "integer")
    assert scheme.point_of(20230115) is None
    assert scheme.point_of(20231300) is None
    assert scheme.point_of(2023010) is None
    ts = periods.Scheme("timestamptz", "day", "timestamp with time zone")
    aware = datetime.datetime(2023, 1, 1, tzinfo=datetime.timezone(datetime.timedelta(hours=1)))
    assert ts.point_of(aware) == D(2023, 1, 1)
    assert ts.point_of(datetime.datetime(2023, 1, 1, 6)) is None


@pytest.mark.parametrize(
    "key_format, interval, start, aligned",
    [
        ("date", "month", "2023-01-15", "2023-01-01"),
        ("date", "year", "2023-02-01", "2023-01-01"),
        ("date", "quarter", "2023-05-01", "2023-04-01"),
        ("date", "week", "2023-01-01", "2022-12-26"),
        ("yyyymmdd", "month", "20230115", "20230101"),
        ("yyyymmdd", "year", "2023-03-01", "20230101"),
        ("integer", "1000", "1500", "1000"),
    ],
)
def test_start_alignment_error_says_the_aligned_value(key_format, interval, start, aligned):
    scheme = periods.Scheme(key_format, interval, COLUMN.get(key_format, "bigint"))
    with pytest.raises(InvalidInput) as err:
        scheme.parse_start(start)
    assert "not aligned" in err.value.msg and ("would be %s" % aligned) in err.value.msg


@pytest.mark.parametrize(
    "key_format, interval, start, point",
    [
        ("date", "month", "2023-01-01", D(2023, 1, 1)),
        ("yyyymmdd", "month", "20230101", D(2023, 1, 1)),
        ("yyyymm", "month", "202301", D(2023, 1, 1)),
        ("yyyymm", "year", "2023-01", D(2023, 1, 1)),
        ("timestamp", "day", "2023-01-01 00:00:00", D(2023, 1, 1)),
        ("date", "week", "2023-01-02", D(2023, 1, 2)),
        ("integer", "1000", "-2000", -2000),
    ],
)
def test_start_parsing(key_format, interval, start, point):
    assert periods.Scheme(key_format, interval, COLUMN.get(key_format, "bigint")).parse_start(start) == point


@pytest.mark.parametrize("start", ["yesterday", "2023-02-30", "2023/01/01", ""])
def test_start_that_is_not_a_date(start):
    with pytest.raises(InvalidInput) as err:
        periods.Scheme("date", "day", "date").parse_start(start)
    assert "not a date" in err.value.msg


def test_integer_steps():
    scheme = periods.Scheme("integer", "1000000", "bigint")
    assert scheme.align(2500000) == 2000000 and scheme.align(-1) == -1000000
    assert scheme.bounds(2000000) == (2000000, 3000000)
    assert scheme.label(2000000) == "p2000000" and scheme.label(-1000000) == "m1000000"
    assert scheme.periods(0, 3000000) == [0, 1000000, 2000000, 3000000]


@pytest.mark.parametrize(
    "key_format, interval",
    [
        ("yyyymm", "week"),
        ("yyyymm", "day"),
        ("date", "fortnight"),
        ("date", "1000"),
        ("integer", "month"),
        ("integer", "0"),
        ("integer", "-5"),
    ],
)
def test_bad_intervals(key_format, interval):
    with pytest.raises(InvalidInput) as err:
        periods.Scheme(key_format, interval, "integer")
    assert "interval" in err.value.msg


@pytest.mark.parametrize(
    "type_name, expected",
    [
        ("date", "date"),
        ("timestamp without time zone", "timestamp"),
        ("timestamp(3) without time zone", "timestamp"),
        ("timestamp with time zone", "timestamptz"),
    ],
)
def test_auto_detects_dates_and_timestamps(type_name, expected):
    assert periods.detect_format("auto", "k", type_name, "s.t") == expected


@pytest.mark.parametrize("type_name", ["integer", "bigint", "numeric(8,0)"])
def test_auto_refuses_to_guess_integers(type_name):
    with pytest.raises(InvalidInput) as err:
        periods.detect_format("auto", "date_key", type_name, "dwh.fait")
    assert "key_format" in err.value.msg and "yyyymmdd" in err.value.msg and "date_key" in err.value.msg


@pytest.mark.parametrize(
    "key_format, type_name",
    [
        ("yyyymmdd", "smallint"),
        ("yyyymmdd", "date"),
        ("date", "integer"),
        ("timestamp", "date"),
        ("timestamptz", "timestamp without time zone"),
        ("integer", "text"),
        ("yyyymm", "text"),
    ],
)
def test_key_format_the_column_cannot_hold(key_format, type_name):
    with pytest.raises(InvalidInput) as err:
        periods.detect_format(key_format, "k", type_name, "dwh.fait")
    assert "cannot hold" in err.value.msg and type_name in err.value.msg


def test_auto_refuses_text():
    with pytest.raises(InvalidInput):
        periods.detect_format("auto", "k", "text", "dwh.fait")


def test_integer_column_range():
    scheme = periods.Scheme("integer", "1000000000", "integer")
    assert scheme.fits_column(2000000000)
    assert not scheme.fits_column(3000000000)
    assert periods.Scheme("integer", "10", "smallint").fits_column(32760)
    assert not periods.Scheme("integer", "10", "smallint").fits_column(32770)


# ---------------------------------------------------------------------------------------------
# Epoch keys: bounds at local midnight, from the session's TimeZoneDays
# ---------------------------------------------------------------------------------------------

EPOCH_FORMATS = ("epoch", "epoch_ms")
UNIT = {"epoch": 1, "epoch_ms": 1000}
# UTC; two DST zones of the issue; a half-hour offset; a half-hour DST shift; a DST gap at midnight (Santiago:
# 00:00 does not exist on the first day of summer time); a zone east of UTC+12.
ZONES = (
    "UTC",
    "Europe/Paris",
    "America/New_York",
    "Asia/Kolkata",
    "Australia/Lord_Howe",
    "America/Santiago",
    "Pacific/Auckland",
)
SPAN = (D(1999, 1, 1), D(2101, 12, 31))


_ZONE_DAYS = {}


def days_of(zone):
    if zone not in _ZONE_DAYS:
        _ZONE_DAYS[zone] = zone_days(zone, *SPAN)
    return _ZONE_DAYS[zone]


def epoch_scheme(key_format, interval, zone="Europe/Paris", column="bigint"):
    return periods.Scheme(key_format, interval, column, days_of(zone))


@pytest.mark.parametrize("zone", ZONES)
@pytest.mark.parametrize("key_format", EPOCH_FORMATS)
@pytest.mark.parametrize("interval", periods.CALENDAR_INTERVALS)
@pytest.mark.parametrize("day", BOUNDARY_DAYS)
def test_epoch_bounds_are_local_midnights_for_every_interval_and_boundary_day(zone, key_format, interval, day):
    scheme = epoch_scheme(key_format, interval, zone)
    date_scheme = periods.Scheme("date", interval, "date")
    point = scheme.align(day)
    assert point == date_scheme.align(day) == _expected_align(interval, day), "epoch periods are the date periods"
    nxt = scheme.step(point)
    low, high = scheme.bounds(point)
    unit = UNIT[key_format]
    assert (low, high) == (server_midnight(zone, point) * unit, server_midnight(zone, nxt) * unit)
    assert isinstance(low, int) and not isinstance(low, bool) and low < high
    assert scheme.point_of(low) == point and scheme.point_of(high) == nxt, "bounds read back into points"
    assert scheme.point_of(low + unit) is None and scheme.point_of(low - unit) is None, "a second off is no bound"
    if unit > 1:
        assert scheme.point_of(low + 1) is None, "a millisecond off is no bound"
    assert scheme.label(point) == date_scheme.label(point), "partitions are named as for a date key"
    assert scheme.display(point) == point.isoformat(), "messages show the local date, as start is written"
    assert scheme.literal(point) == "%d" % low and scheme.literal_parts(point) == (low, None)
    assert scheme.fits_column(point)


@pytest.mark.parametrize("key_format", EPOCH_FORMATS)
@pytest.mark.parametrize("interval", periods.CALENDAR_INTERVALS)
def test_a_decade_of_epoch_periods_is_contiguous_in_every_zone(key_format, interval):
    for zone in ZONES:
        scheme = epoch_scheme(key_format, interval, zone)
        points = scheme.periods(scheme.align(D(2019, 6, 15)), scheme.align(D(2029, 6, 15)))
        for a, b in zip(points, points[1:]):
            assert scheme.bounds(a)[1] == scheme.bounds(b)[0]
            assert scheme.point_of(scheme.bounds(b)[0]) == b


# Known instants (checked by hand: date -d '2024-03-31 00:00 CET' +%s ...): the days of a DST change are 23 and 25 h.
@pytest.mark.parametrize(
    "zone, day, low, hours",
    [
        ("Europe/Paris", D(2024, 3, 31), 1711839600, 23),  # 00:00+01 -> 00:00+02 the next day
        ("Europe/Paris", D(2024, 10, 27), 1729980000, 25),
        ("Europe/Paris", D(2024, 3, 30), 1711753200, 24),
        ("America/New_York", D(2024, 3, 10), 1710046800, 23),
        ("America/New_York", D(2024, 11, 3), 1730606400, 25),
        ("America/New_York", D(2024, 11, 4), 1730696400, 24),
        ("UTC", D(2024, 3, 31), 1711843200, 24),
        ("Australia/Lord_Howe", D(2024, 4, 7), 1712408400, 24.5),  # a half-hour DST change
        ("America/Santiago", D(2024, 9, 8), 1725768000, 23),  # midnight does not exist: 01:00-03, as the server
    ],
)
def test_a_day_across_a_dst_change_has_the_right_epoch_bounds(zone, day, low, hours):
    for key_format in EPOCH_FORMATS:
        unit = UNIT[key_format]
        scheme = epoch_scheme(key_format, "day", zone)
        assert scheme.bounds(day) == (low * unit, (low + int(hours * 3600)) * unit)
        assert scheme.label(day) == day.strftime("%Y%m%d")


def test_longer_periods_across_dst_changes_and_leap_days():
    paris = epoch_scheme("epoch", "month", "Europe/Paris")
    low, high = paris.bounds(D(2024, 3, 1))
    assert high - low == 31 * 86400 - 3600, "March loses the hour of summer time"
    low, high = paris.bounds(D(2024, 10, 1))
    assert high - low == 31 * 86400 + 3600
    low, high = paris.bounds(D(2024, 2, 1))
    assert high - low == 29 * 86400, "February of a leap year"
    low, high = paris.bounds(D(2023, 2, 1))
    assert high - low == 28 * 86400
    week = epoch_scheme("epoch", "week", "America/New_York")
    for monday, hours in ((D(2024, 2, 26), 168), (D(2024, 3, 4), 167), (D(2024, 3, 11), 168), (D(2024, 10, 28), 169)):
        low, high = week.bounds(monday)
        assert high - low == hours * 3600, "the ISO week holding a DST Sunday (%s)" % monday
    assert week.align(D(2024, 3, 10)) == D(2024, 3, 4) and week.label(D(2024, 3, 4)) == "2024w10"
    quarter = epoch_scheme("epoch_ms", "quarter", "Europe/Paris")
    low, high = quarter.bounds(D(2024, 1, 1))
    assert high - low == (91 * 86400 - 3600) * 1000 and quarter.label(D(2024, 1, 1)) == "2024q1"
    year = epoch_scheme("epoch", "year", "Europe/Paris")
    for first, days in ((2024, 366), (2023, 365), (2000, 366), (2100, 365)):
        low, high = year.bounds(D(first, 1, 1))
        assert high - low == days * 86400, "the DST hours cancel over a year; %d has %d days" % (first, days)
    day = epoch_scheme("epoch", "day", "UTC")
    assert day.bounds(D(2024, 2, 29)) == (1709164800, 1709251200)
    assert day.step(D(2024, 2, 28)) == D(2024, 2, 29) and day.step(D(2023, 2, 28)) == D(2023, 3, 1)


def test_time_zone_days_read_every_midnight_back_and_nothing_else():
    for zone in ZONES:
        days = days_of(zone)
        day = D(2000, 1, 1)
        while day <= D(2035, 12, 31):  # every day of 36 years: ~3,000 DST changes over the zones
            seconds = days.epoch(day)
            assert days.day(seconds) == day, (zone, day)
            assert days.day(seconds + 60) is None and days.day(seconds - 1) is None
            day += datetime.timedelta(days=1)
        assert days.day(days.epoch(D(1999, 1, 1)) - 86400) is None, "before the days read"
        assert days.day(days.epoch(D(2101, 12, 31)) + 86400) is None, "after them"


def test_time_zone_days_offsets_and_limits():
    paris = days_of("Europe/Paris")
    assert paris.utc_offset_text(D(2024, 1, 15)) == "+01:00" and paris.utc_offset_text(D(2024, 7, 15)) == "+02:00"
    assert days_of("America/New_York").utc_offset_text(D(2024, 1, 15)) == "-05:00"
    assert days_of("Asia/Kolkata").utc_offset_text(D(2024, 1, 15)) == "+05:30"
    lmt = periods.TimeZoneDays("Europe/Paris", D(1900, 1, 1), D(1900, 12, 31), ((D(1900, 1, 1), -561),))
    assert lmt.utc_offset_text(D(1900, 6, 1)) == "+00:09:21", "local mean time has seconds"
    utc = periods.TimeZoneDays.uniform("UTC", 0, D(2020, 1, 1), D(2020, 12, 31))
    assert utc.epoch(D(2020, 1, 1)) == 1577836800 and utc.covers(D(2020, 12, 31)) and not utc.covers(D(2021, 1, 1))
    tokyo = periods.TimeZoneDays.uniform("Asia/Tokyo", 9 * 3600, D(2020, 1, 1), D(2020, 12, 31))
    assert tokyo.epoch(D(2020, 1, 1)) == 1577836800 - 9 * 3600 and tokyo.day(1577836800 - 9 * 3600) == D(2020, 1, 1)
    with pytest.raises(DwhError) as err:
        utc.epoch(D(2021, 1, 1))
    assert "2021-01-01" in err.value.msg and "UTC" in err.value.msg
    with pytest.raises(ValueError):
        periods.TimeZoneDays("UTC", D(2020, 1, 1), D(2020, 2, 1), ((D(2020, 1, 2), 0),))
    assert utc.day(10**30) is None and utc.day(-(10**30)) is None, "any integer, however far"


def test_epoch_schemes_need_their_days_only_to_write_and_read_bounds():
    bare = periods.Scheme("epoch", "month", "bigint")
    assert bare.align(D(2024, 3, 31)) == D(2024, 3, 1) and bare.label(D(2024, 3, 1)) == "202403"
    assert bare.parse_start("2024-03-01") == D(2024, 3, 1) and bare.display(D(2024, 3, 1)) == "2024-03-01"
    for call in (lambda: bare.key(D(2024, 3, 1)), lambda: bare.point_of(1709247600)):
        with pytest.raises(DwhError) as err:
            call()
        assert "local midnights" in err.value.msg
    given = bare.with_days(days_of("Europe/Paris"))
    assert given.key(D(2024, 3, 1)) == 1709247600 and given.days is days_of("Europe/Paris")
    weekly = given.with_interval("week")
    assert weekly.interval_name == "week" and weekly.days is given.days and weekly.key_format == "epoch"
    assert periods.Scheme("date", "day", "date").key(D(2024, 1, 1)) == D(2024, 1, 1), "other formats need no days"


@pytest.mark.parametrize("key_format", EPOCH_FORMATS)
def test_epoch_start_is_a_date(key_format):
    scheme = epoch_scheme(key_format, "month")
    assert scheme.parse_start("2024-03-01") == D(2024, 3, 1) and scheme.parse_start("20240301") == D(2024, 3, 1)
    with pytest.raises(InvalidInput) as err:
        scheme.parse_start("2024-03-15")
    assert "would be 2024-03-01" in err.value.msg
    with pytest.raises(InvalidInput) as err:
        scheme.parse_start("1709247600")
    assert "not a date" in err.value.msg and "e.g. 2023-01-01" in err.value.msg


def test_epoch_key_formats_are_declared_not_guessed():
    assert periods.KEY_FORMATS["epoch"].zoned and periods.KEY_FORMATS["epoch_ms"].zoned
    assert periods.KEY_FORMATS["epoch"].calendar and periods.KEY_FORMATS["epoch"].numeric
    assert not periods.KEY_FORMATS["yyyymmdd"].zoned and not periods.KEY_FORMATS["yyyymmdd"].numeric
    assert periods.KEY_FORMATS["integer"].numeric and not periods.KEY_FORMATS["integer"].zoned
    assert {"epoch", "epoch_ms"} <= set(periods.FORMAT_NAMES)
    for type_name in ("integer", "bigint"):
        with pytest.raises(InvalidInput) as err:
            periods.detect_format("auto", "clock", type_name, "zabbix.history")
        assert "epoch" in err.value.msg and "clock" in err.value.msg, "auto still refuses integers, naming epoch"
        assert periods.detect_format("epoch", "clock", type_name, "zabbix.history") == "epoch"
    assert periods.detect_format("epoch_ms", "ts", "bigint", "s.t") == "epoch_ms"


@pytest.mark.parametrize(
    "key_format, type_name, says",
    [
        ("epoch", "smallint", "smallint ends at 1970-01-01 09:06:07 UTC"),
        ("epoch_ms", "smallint", "smallint ends at 1970-01-01 00:00:32 UTC"),
        ("epoch_ms", "integer", "integer ends at 1970-01-25 20:31:23 UTC"),
        ("epoch", "text", "integer or bigint"),
        ("epoch", "date", "integer or bigint"),
        ("epoch_ms", "timestamp with time zone", "bigint"),
        ("epoch", "numeric", "integer or bigint"),
    ],
)
def test_epoch_on_a_column_that_cannot_hold_it_is_refused(key_format, type_name, says):
    with pytest.raises(InvalidInput) as err:
        periods.detect_format(key_format, "k", type_name, "dwh.fait")
    assert "cannot hold" in err.value.msg and "dwh.fait" in err.value.msg and says in err.value.msg, err.value.msg


def test_integer_holds_epoch_seconds_until_2038():
    yearly = periods.Scheme("epoch", "year", "integer", days_of("UTC"))
    assert yearly.fits_column(D(2038, 1, 1)) and not yearly.fits_column(D(2039, 1, 1))
    daily = periods.Scheme("epoch", "day", "integer", days_of("UTC"))
    assert daily.fits_column(D(2038, 1, 19)) and not daily.fits_column(D(2038, 1, 20))
    assert periods.Scheme("epoch_ms", "year", "bigint", days_of("UTC")).fits_column(D(2101, 1, 1))


@pytest.mark.parametrize(
    "key_format, values, advice",
    [
        ("epoch", [20230101, 20231231], "YYYYMMDD (20231231 = 2023-12-31): use key_format yyyymmdd"),
        ("epoch_ms", [20230101, 20231231], "use key_format yyyymmdd"),
        ("epoch", [202301, 202312], "YYYYMM (202312 = 2023-12): use key_format yyyymm"),
        (
            "epoch_ms",
            [1700000000, 1710000000],
            "epoch seconds (1710000000 = 2024-03-09 16:00:00 UTC): use key_format epoch",
        ),
        ("epoch", [1700000000000, 1710000000000], "epoch milliseconds (1710000000000 = 2024-03-09 16:00:00 UTC)"),
        ("epoch", [1700000000000000], "microseconds"),
        ("epoch_ms", [1700000000000000], "microseconds"),
        ("epoch", [5, 1200], "key_format integer"),
    ],
)
def test_keys_that_are_clearly_not_epochs_are_refused_naming_the_format_that_reads_them(key_format, values, advice):
    with pytest.raises(InvalidInput) as err:
        periods.check_epoch_keys(key_format, values, "dwh.fait", "its smallest and largest keys")
    msg = err.value.msg
    assert "dwh.fait" in msg and "%d" % max(values) in msg and advice in msg and "Nothing was changed" in msg, msg


@pytest.mark.parametrize(
    "key_format, values",
    [
        ("epoch", [1704067200, 1735689600]),
        ("epoch", [0, 1735689600]),  # a placeholder 0 beside real keys: a stray key, not another format
        ("epoch", [1704067200, 9999999999]),
        ("epoch", [31536000]),
        ("epoch_ms", [1704067200000, 1735689600123]),
        ("epoch", [None, None]),  # an empty table
        ("epoch", []),
        ("yyyymmdd", [20230101]),
        ("integer", [5]),
    ],
)
def test_epoch_keys_and_other_formats_pass(key_format, values):
    periods.check_epoch_keys(key_format, values, "dwh.fait", "its smallest and largest keys")


def test_epoch_keys_in_messages_are_utc_times():
    assert periods.epoch_utc_text("epoch", 1711839600) == "2024-03-30 23:00:00 UTC"
    assert periods.epoch_utc_text("epoch_ms", 1711839600999) == "2024-03-30 23:00:00 UTC"
    assert periods.epoch_utc_text("epoch", 10**18) == "a time past the year 9999"


def test_plausible_epoch_range_edges():
    assert periods.plausible_epoch("epoch", 31536000) and not periods.plausible_epoch("epoch", 31535999)
    assert periods.plausible_epoch("epoch", 9999999999) and not periods.plausible_epoch("epoch", 10000000000)
    assert periods.plausible_epoch("epoch_ms", 9999999999999) and not periods.plausible_epoch("epoch_ms", 31535999999)
    assert not periods.plausible_epoch("epoch", True) and not periods.plausible_epoch("epoch", "1704067200")
    assert not periods.plausible_epoch("epoch", 29991231), "the largest YYYYMMDD is below 1971 in seconds"
