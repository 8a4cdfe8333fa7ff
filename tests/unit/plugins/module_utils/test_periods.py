"""Pure period arithmetic: every interval x key format, boundary dates, leap years, ISO week 53, year ends."""

import datetime

import pytest

from ansible_collections.sigeti.dwh.plugins.module_utils import periods
from ansible_collections.sigeti.dwh.plugins.module_utils.errors import InvalidInput

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
