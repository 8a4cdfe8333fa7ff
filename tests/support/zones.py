"""Local midnights from Python's tz database, computed the way PostgreSQL places them: the oracle of the epoch-key
unit tests, itself checked against a real server (tests/integration/test_epoch_keys.py)."""

from __future__ import annotations

import datetime

import zoneinfo

from ansible_collections.sigeti.dwh.plugins.module_utils.core import periods


def server_midnight(zone: str, day: datetime.date) -> int:
    """The instant PostgreSQL gives ``'<day> 00:00'::timestamptz`` in ``zone``: a midnight in a DST gap is the instant
    after the gap (Python's fold 0), an ambiguous one the later instant (fold 1): the later of the two readings."""
    tz = zoneinfo.ZoneInfo(zone)
    return max(
        int(datetime.datetime(day.year, day.month, day.day, fold=fold, tzinfo=tz).timestamp()) for fold in (0, 1)
    )


def zone_days(zone: str, first: datetime.date, last: datetime.date) -> periods.TimeZoneDays:
    """``periods.TimeZoneDays`` of ``zone`` from ``first`` to ``last``, as ``catalog.time_zone_days`` reads them."""
    runs = []
    day = first
    while day <= last:
        shift = server_midnight(zone, day) - (day - periods.EPOCH_DAY).days * 86400
        if not runs or runs[-1][1] != shift:
            runs.append((day, shift))
        day += datetime.timedelta(days=1)
    return periods.TimeZoneDays(zone, first, last, tuple(runs))
