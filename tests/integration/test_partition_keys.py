"""partitioned_table's "which period is now", retention limits, adopted multi-period partitions and DST bounds,
against a real server (issue 12 items 6-7, issue 14 items 2 and 4)."""

import datetime
import threading
import time

import pytest
import zoneinfo
from ansible.module_utils.common import warnings as ansible_warnings

from tests.support.modules import run_module

STRAY = 9999999


def run(name, args, **kwargs):
    """run_module with this run's warnings only: ansible keeps module warnings in a process-wide registry, so
    in-process runs would otherwise report the warnings of every earlier run too."""
    ansible_warnings._global_warnings.clear()
    return run_module(name, args, **kwargs)


def _args(pg_server, db, **extra):
    args = pg_server.params(db)
    args.update(lock_timeout="2s", lock_retries=1, lock_retry_delay=0.1)
    args.update(extra)
    return args


def warnings(result):
    """Warning texts of a result (ansible-core 2.19 returns them as WarningSummary dicts)."""
    return [w["event"]["msg"] if isinstance(w, dict) else w for w in result.get("warnings") or []]


def one(conn, query, args=None):
    with conn.cursor() as cur:
        cur.execute(query, args)
        return cur.fetchone()


def partitions(conn, parent):
    """{partition name: bound expression} of ``parent``."""
    with conn.cursor() as cur:
        cur.execute(
            "SELECT c.relname, pg_get_expr(c.relpartbound, c.oid) FROM pg_inherits i "
            "JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = %s::regclass ORDER BY 1",
            (parent,),
        )
        return dict(cur.fetchall())


def snapshot(conn):
    """Every relation and bound of the database: equal snapshots mean nothing changed."""
    with conn.cursor() as cur:
        cur.execute(
            "SELECT n.nspname, c.relname, c.relkind, pg_get_expr(c.relpartbound, c.oid) "
            "FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname NOT IN ('pg_catalog', 'information_schema', 'pg_toast') ORDER BY 1, 2"
        )
        return cur.fetchall()


def integer_set(conn, stray_where="default"):
    """The issue's measurement: partitions of 100 over 20000-20999 (10), 50,000 rows, one stray key 9999999."""
    with conn.cursor() as cur:
        cur.execute("CREATE TABLE fait (id bigint, k bigint NOT NULL, v int) PARTITION BY RANGE (k)")
        for low in range(20000, 21000, 100):
            cur.execute("CREATE TABLE fait_p%d PARTITION OF fait FOR VALUES FROM (%d) TO (%d)" % (low, low, low + 100))
        cur.execute("CREATE TABLE fait_default PARTITION OF fait DEFAULT")
        if stray_where != "default":
            # what an older run left: a partition made next to the stray key, holding it
            cur.execute("CREATE TABLE %s PARTITION OF fait FOR VALUES FROM (9999900) TO (10000000)" % stray_where)
        cur.execute("INSERT INTO fait SELECT g, 20000 + g % 1000, g FROM generate_series(1, 50000) g")
        cur.execute("INSERT INTO fait VALUES (0, %s, 0)", (STRAY,))


def rows_by_partition(conn):
    with conn.cursor() as cur:
        cur.execute("SELECT tableoid::regclass::text, count(*) FROM fait GROUP BY 1 ORDER BY 1")
        return dict(cur.fetchall())


def test_one_stray_key_in_the_default_loses_no_row(pg_server, db, conn):
    # keep 9: every period holding rows is inside the window. Before the fix "now" was max(key) = 9999999: the run
    # dropped the 10 partitions (50,000 rows) and made partitions next to the stray key.
    integer_set(conn)
    args = _args(
        pg_server,
        db,
        name="fait",
        key="k",
        key_format="integer",
        interval="100",
        premake=2,
        retention={"keep": 9, "action": "drop"},
    )
    result = run("partitioned_table", args)
    assert not result.get("failed"), result
    assert result["dropped"] == [] and result["created"] == ["fait_p21000", "fait_p21100"]
    stray = [w for w in warnings(result) if str(STRAY) in w]
    assert len(stray) == 1, warnings(result)
    assert "1 row(s)" in stray[0] and "default partition fait_default" in stray[0] and "left alone" in stray[0]
    assert one(conn, "SELECT count(*) FROM fait")[0] == 50001
    assert one(conn, "SELECT tableoid::regclass::text FROM fait WHERE k = %s", (STRAY,))[0] == "fait_default"
    assert not [p for p in partitions(conn, "fait") if p.startswith("fait_p99")]
    again = run("partitioned_table", args)
    assert again["changed"] is False and again["queries"] == [], again


def test_the_measurement_keep_5_drop_retires_old_periods_only_a_few_per_run(pg_server, db, conn):
    # The exact options: the current period is the newest one holding rows (20900), not the stray key.
    # keep 5 retires 20000-20300 (older than 5 periods), at most retention.max_per_run (3) per run.
    integer_set(conn)
    args = _args(
        pg_server,
        db,
        name="fait",
        key="k",
        key_format="integer",
        interval="100",
        premake=2,
        retention={"keep": 5, "action": "drop"},
    )
    before = rows_by_partition(conn)
    result = run("partitioned_table", args)
    assert not result.get("failed"), result
    assert result["dropped"] == ["fait_p20000", "fait_p20100", "fait_p20200"]
    assert result["retention_remaining"] == 1
    assert any("1 more partition(s)" in w and "fait_p20300" in w for w in warnings(result)), warnings(result)
    assert any(str(STRAY) in w and "fait_default" in w for w in warnings(result))
    after = rows_by_partition(conn)
    kept = {name: count for name, count in before.items() if name not in result["dropped"]}
    assert after == kept, "every row of the kept periods and the stray row are still there"
    assert after["fait_default"] == 1
    second = run("partitioned_table", args)
    assert second["dropped"] == ["fait_p20300"] and second["retention_remaining"] == 0
    third = run("partitioned_table", args)
    assert third["changed"] is False and third["queries"] == []
    assert one(conn, "SELECT count(*) FROM fait WHERE k >= 20400")[0] == 30001


def test_a_partition_holding_only_stray_keys_does_not_move_now(pg_server, db, conn):
    integer_set(conn, stray_where="fait_p9999900")
    args = _args(
        pg_server,
        db,
        name="fait",
        key="k",
        key_format="integer",
        interval="100",
        premake=2,
        retention={"keep": 9, "action": "drop"},
    )
    result = run("partitioned_table", args)
    assert not result.get("failed"), result
    assert result["dropped"] == [] and result["created"] == ["fait_p21000", "fait_p21100"]
    stray = [w for w in warnings(result) if "fait_p9999900" in w]
    assert stray and "1 row(s)" in stray[0] and str(STRAY) in stray[0] and "stray" in stray[0], warnings(result)
    assert one(conn, "SELECT count(*) FROM fait")[0] == 50001


def test_a_flood_of_new_partitions_is_refused_and_changes_nothing(pg_server, db, conn):
    integer_set(conn)
    before = snapshot(conn)
    result = run(
        "partitioned_table",
        _args(pg_server, db, name="fait", key="k", key_format="integer", interval="100", start="0", premake=2),
    )
    assert result.get("failed"), result
    msg = result["msg"]
    assert "fait" in msg and "202 new partitions" in msg and "max_new_partitions=100" in msg, msg
    assert "Nothing was changed" in msg
    assert snapshot(conn) == before


def test_yyyymmdd_now_is_the_server_date_whatever_the_keys(pg_server, db, conn):
    today = one(conn, "SELECT current_date")[0]
    with conn.cursor() as cur:
        cur.execute("CREATE TABLE fait (k int NOT NULL) PARTITION BY RANGE (k)")
        cur.execute("CREATE TABLE fait_default PARTITION OF fait DEFAULT")
        cur.execute("INSERT INTO fait VALUES (99991231), (99991231), (%s)", (today.year * 10000 + 101,))
    args = _args(pg_server, db, name="fait", key="k", key_format="yyyymmdd", interval="year", premake=1)
    result = run("partitioned_table", args)
    assert not result.get("failed"), result
    assert result["created"] == ["fait_%d" % today.year, "fait_%d" % (today.year + 1)]
    assert any("2 row(s)" in w and "99991231" in w for w in warnings(result)), warnings(result)
    assert result["default_rows"] == 2


def test_retention_max_per_run_on_a_calendar_key(pg_server, db, conn):
    today = one(conn, "SELECT current_date")[0]
    current = datetime.date(today.year, today.month, 1)

    def month(n):
        index = current.year * 12 + current.month - 1 + n
        return datetime.date(index // 12, index % 12 + 1, 1)

    with conn.cursor() as cur:
        cur.execute("CREATE TABLE fait (k date NOT NULL) PARTITION BY RANGE (k)")
        for n in range(-8, 1):
            cur.execute(
                "CREATE TABLE fait_m%d PARTITION OF fait FOR VALUES FROM (%%s) TO (%%s)" % (n + 8,),
                (month(n), month(n + 1)),
            )
    args = _args(
        pg_server,
        db,
        name="fait",
        key="k",
        interval="month",
        premake=0,
        default_partition=False,
        retention={"keep": 2, "action": "detach", "max_per_run": 2},
    )
    first = run("partitioned_table", args)
    assert not first.get("failed"), first
    assert first["detached"] == ["fait_m0", "fait_m1"] and first["retention_remaining"] == 4
    second = run("partitioned_table", args)
    assert second["detached"] == ["fait_m2", "fait_m3"] and second["retention_remaining"] == 2
    bad = run("partitioned_table", dict(args, retention={"keep": 2, "max_per_run": 0}))
    assert bad.get("failed") and "max_per_run=0" in bad["msg"] and "fait" in bad["msg"]


def test_an_attached_multi_period_partition_is_adopted_as_it_is(pg_server, db, conn):
    # What migrate: attach leaves: the old table is one partition FROM 20240101 TO 20260101 of a yearly set.
    today = one(conn, "SELECT current_date")[0]
    with conn.cursor() as cur:
        cur.execute("CREATE SCHEMA dwh")
        cur.execute("CREATE TABLE dwh.f (id bigint NOT NULL, k int NOT NULL, v int) PARTITION BY RANGE (k)")
        cur.execute("CREATE TABLE dwh.f_unpartitioned (LIKE dwh.f)")
        cur.execute(
            "INSERT INTO dwh.f_unpartitioned SELECT g, to_char(date '2024-01-01' + g % 700, 'YYYYMMDD')::int, g "
            "FROM generate_series(1, 20000) g"
        )
        cur.execute("ALTER TABLE dwh.f ATTACH PARTITION dwh.f_unpartitioned FOR VALUES FROM (20240101) TO (20260101)")
    args = _args(
        pg_server, db, name="dwh.f", key="k", key_format="yyyymmdd", interval="year", start="2024-01-01", premake=1
    )
    result = run("partitioned_table", args)
    assert not result.get("failed"), result
    later = ["f_%d" % y for y in range(2026, today.year + 2)]
    assert result["created"] == later + ["f_default"]
    assert [p["name"] for p in result["partitions"]] == ["f_unpartitioned"] + later + ["f_default"]
    assert partitions(conn, "dwh.f")["f_unpartitioned"] == "FOR VALUES FROM (20240101) TO (20260101)"
    assert one(conn, "SELECT count(*) FROM dwh.f_unpartitioned")[0] == 20000
    again = run("partitioned_table", args)
    assert not again.get("failed") and again["changed"] is False and again["queries"] == [], again
    # a range that is not whole periods is still refused, naming it
    with conn.cursor() as cur:
        cur.execute("CREATE TABLE dwh.f_half PARTITION OF dwh.f FOR VALUES FROM (20230701) TO (20240101)")
    half = run("partitioned_table", dict(args, start="2023-01-01"))
    assert half.get("failed") and "f_half" in half["msg"] and "whole periods" in half["msg"], half


# Zones whose clocks jump at midnight (that midnight does not exist): the bound the module writes is stored as the
# first instant after the gap. The test picks the gap nearest to today so the daily set stays small.
MIDNIGHT_GAP_ZONES = ("America/Santiago", "America/Havana", "Asia/Beirut", "Africa/Cairo")


def _nearest_midnight_gap(today):
    best = None
    for name in MIDNIGHT_GAP_ZONES:
        zone = zoneinfo.ZoneInfo(name)
        for delta in range(-200, 200):
            day = today + datetime.timedelta(days=delta)
            midnight = datetime.datetime(day.year, day.month, day.day, tzinfo=zone)
            back = midnight.astimezone(datetime.timezone.utc).astimezone(zone)
            if back.replace(tzinfo=None) != midnight.replace(tzinfo=None) and (
                best is None or abs(delta) < abs(best[2])
            ):
                best = (name, day, delta)
    assert best, "no midnight DST gap within 200 days in %s" % (MIDNIGHT_GAP_ZONES,)
    return best


def test_dst_gap_at_midnight_is_adopted_and_a_foreign_time_zone_is_named(pg_server, db, conn):
    today = one(conn, "SELECT current_date")[0]
    zone, gap_day, delta = _nearest_midnight_gap(today)
    with conn.cursor() as cur:
        cur.execute("ALTER DATABASE %s SET TimeZone = '%s'" % (db, zone))
    conn.close()
    conn = pg_server.connect(db)
    try:
        with conn.cursor() as cur:
            cur.execute("CREATE TABLE fait (k timestamptz NOT NULL, v int) PARTITION BY RANGE (k)")
        start = gap_day - datetime.timedelta(days=1) if delta <= 0 else today
        premake = max(1, delta + 1)
        args = _args(
            pg_server,
            db,
            name="fait",
            key="k",
            interval="day",
            start=start.isoformat(),
            premake=premake,
            max_new_partitions=400,
        )
        first = run("partitioned_table", args)
        assert not first.get("failed"), first
        label = "fait_%s" % gap_day.strftime("%Y%m%d")
        assert label in first["created"]
        bound = partitions(conn, "fait")[label]
        assert "01:00:00" in bound, "the server moved the nonexistent midnight: %s" % bound
        again = run("partitioned_table", args)
        assert not again.get("failed"), again
        assert again["changed"] is False and again["queries"] == [], again
        # the same set read from a session in another TimeZone: the message says so, nothing changes
        with conn.cursor() as cur:
            cur.execute("ALTER DATABASE %s SET TimeZone = 'Asia/Tokyo'" % db)
        before = snapshot(conn)
        foreign = run("partitioned_table", args)
        assert foreign.get("failed"), foreign
        assert "Asia/Tokyo" in foreign["msg"] and "another TimeZone" in foreign["msg"], foreign["msg"]
        assert snapshot(conn) == before
    finally:
        conn.close()


def _hold(pg_server, db, tables, ready, release, pid):
    other = pg_server.connect(db)
    other.autocommit = False
    with other.cursor() as cur:
        cur.execute("SELECT pg_backend_pid()")
        pid.append(cur.fetchone()[0])
        for table in tables:
            cur.execute("LOCK TABLE %s IN ACCESS EXCLUSIVE MODE" % table)
        ready.set()
        release.wait(60)
    other.rollback()
    other.close()


def _probe(pg_server, db, oids, holder, seen, stop):
    """Record, with the time seen, every lock another session (not the holder, not the probe) asks for or holds on
    ``oids``."""
    probe = pg_server.connect(db)
    probe.autocommit = True
    with probe.cursor() as cur:
        while not stop.is_set():
            cur.execute(
                "SELECT pid, relation::regclass::text, mode, granted FROM pg_locks "
                "WHERE relation = ANY(%s::oid[]) AND pid <> ALL(%s::int[])",
                (oids, [holder[0], probe.get_backend_pid()]),
            )
            now = time.monotonic()
            seen.extend((now,) + tuple(row) for row in cur.fetchall())
            time.sleep(0.002)
    probe.close()


@pytest.mark.parametrize("held", [["fait", "fait_default"], ["fait", "fait_default", "fait_p0"]])
def test_check_mode_does_not_wait_for_locks_and_says_what_it_estimated(pg_server, db, conn, held):
    today = one(conn, "SELECT current_date")[0]
    with conn.cursor() as cur:
        cur.execute("CREATE TABLE fait (k int NOT NULL, v int) PARTITION BY RANGE (k)")
        cur.execute("CREATE TABLE fait_p0 PARTITION OF fait FOR VALUES FROM (0) TO (100)")
        cur.execute("CREATE TABLE fait_default PARTITION OF fait DEFAULT")
        cur.execute("INSERT INTO fait SELECT g % 100, g FROM generate_series(1, 2000) g")
        cur.execute("INSERT INTO fait SELECT 100 + g % 100, g FROM generate_series(1, 500) g")
        cur.execute("ANALYZE fait")
        cur.execute("SELECT array_agg(oid::int) FROM pg_class WHERE relname = ANY(%s)", (held,))
        oids = cur.fetchone()[0]
    args = _args(
        pg_server,
        db,
        name="fait",
        key="k",
        key_format="integer",
        interval="100",
        premake=1,
        lock_timeout="3s",
        lock_retries=2,
    )
    exact = run("partitioned_table", args, check_mode=True)
    assert not exact.get("failed") and exact["moved_rows"] == 500 and exact["default_rows"] == 0, exact
    assert not [w for w in warnings(exact) if "check mode did not wait" in w]
    ready, release, pid, seen, stop = threading.Event(), threading.Event(), [], [], threading.Event()
    holder = threading.Thread(target=_hold, args=(pg_server, db, held, ready, release, pid))
    holder.start()
    probe = None
    try:
        assert ready.wait(10)
        probe = threading.Thread(target=_probe, args=(pg_server, db, oids, pid, seen, stop))
        probe.start()
        started = time.monotonic()
        checked = run("partitioned_table", args, check_mode=True)
        elapsed = time.monotonic() - started
    finally:
        stop.set()
        if probe:
            probe.join()
        release.set()
        holder.join()
    assert not checked.get("failed"), checked
    assert elapsed < 3, "a waiting run would take 3 s x 3 attempts; check mode took %.1f s" % elapsed
    told = [w for w in warnings(checked) if "check mode did not wait" in w]
    assert told and "pid %d" % pid[0] in told[0] and "estimates" in told[0], warnings(checked)
    assert checked["created"] == ["fait_p100"]
    waits = {}
    for when, who, relation, mode, granted in seen:
        if not granted:
            waits.setdefault((who, relation, mode), []).append(when)
    longest = max((max(t) - min(t) for t in waits.values()), default=0)
    assert longest < 0.5, "check mode queued for a lock for %.2f s: %s" % (longest, sorted(waits))
    assert one(conn, "SELECT count(*) FROM fait_default")[0] == 500, "nothing moved"
    assert today  # the server answered throughout
