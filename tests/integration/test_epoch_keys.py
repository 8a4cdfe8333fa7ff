"""Epoch keys (key_format epoch and epoch_ms, issue 30) against a real server.

Bounds are the instants of local midnight in the session's TimeZone: each epoch set is compared with a timestamptz
set of the same periods made by the module in the same session (the collection's own timestamptz bounds are the
oracle), across DST changes in Paris, New York and Sydney (23 and 25 hour days). Then the partition maintenance
(premake, the default partition and its row moves, retention detach/drop/archive, stray keys past the others), the
live migration of a plain table (online with a writer: every row once, content checksum equal; offline; attach on
an integer column as Zabbix has), table_info's local times, and bad input refused before any change.
"""

import datetime
import random
import re
import threading
import time

import pytest
import zoneinfo

from ansible_collections.sigeti.dwh.plugins.module_utils.catalog import tables as catalog
from ansible_collections.sigeti.dwh.plugins.module_utils.core import periods
from ansible_collections.sigeti.dwh.plugins.module_utils.core.bounds import typed_value
from tests.integration.test_partition_keys import _args, one, run, snapshot, warnings
from tests.support.fingerprint import content
from tests.support.zones import zone_days

UNIT = {"epoch": 1, "epoch_ms": 1000}
_BOUND = re.compile(r"FROM \('?([^')]*)'?\) TO \('?([^')]*)'?\)")


def execute(conn, *statements):
    with conn.cursor() as cur:
        for statement in statements:
            cur.execute(statement)


def in_zone(pg_server, db, conn, zone):
    """Set the database's TimeZone (every new session of the module gets it); return a new connection in it."""
    execute(conn, "ALTER DATABASE %s SET TimeZone = '%s'" % (db, zone))
    conn.close()
    return pg_server.connect(db)


def bounds(conn, parent):
    """``{partition name: (low, high)}`` of ``parent``'s range partitions, as epoch seconds for timestamptz keys."""
    with conn.cursor() as cur:
        cur.execute(
            "SELECT c.relname, pg_get_expr(c.relpartbound, c.oid), format_type(a.atttypid, NULL) "
            "FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
            "JOIN pg_partitioned_table p ON p.partrelid = i.inhparent "
            "JOIN pg_attribute a ON a.attrelid = p.partrelid AND a.attnum = p.partattrs[0] "
            "WHERE i.inhparent = %s::regclass",
            (parent,),
        )
        rows = cur.fetchall()
    found = {}
    for name, expr, type_name in rows:
        match = _BOUND.search(expr)
        if not match:
            continue
        values = [typed_value(v, type_name) for v in match.groups()]
        if type_name.startswith("timestamp"):
            values = [int(v.timestamp()) for v in values]
        found[name] = tuple(values)
    return found


def server_today(conn):
    return one(conn, "SELECT current_date")[0]


def epoch_of(conn, day):
    """The server's epoch seconds of ``day``'s local midnight in this session."""
    return int(one(conn, "SELECT extract(epoch FROM %s::timestamp::timestamptz)::bigint", (day,))[0])


def nearest_dst_change(zone, today):
    """The local day, nearest ``today``, whose length is not 24 hours in ``zone`` (Python's tz database)."""
    tz = zoneinfo.ZoneInfo(zone)
    for distance in range(0, 200):
        for day in (today - datetime.timedelta(days=distance), today + datetime.timedelta(days=distance)):
            start = datetime.datetime(day.year, day.month, day.day, tzinfo=tz)
            end = datetime.datetime.combine(day + datetime.timedelta(days=1), datetime.time(0), tzinfo=tz)
            if end.timestamp() - start.timestamp() != 86400:
                return day
    raise AssertionError("no DST change within 200 days in %s" % zone)


# ---------------------------------------------------------------------------------------------
# Local midnights: the server's, as the collection writes timestamptz bounds
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("zone", ["Europe/Paris", "America/New_York", "Asia/Kolkata", "UTC", "Australia/Lord_Howe"])
def test_the_server_days_are_the_tz_database_s(pg_server, db, conn, zone):
    """TimeZoneDays read from the server equal those Python's tz database gives (the unit tests' oracle), over 36
    years: 3 us a day on the server, ~2 rows a year."""
    conn = in_zone(pg_server, db, conn, zone)
    try:
        read = catalog.time_zone_days(conn, datetime.date(2000, 1, 1), datetime.date(2035, 12, 31))
        expected = zone_days(zone, datetime.date(2000, 1, 1), datetime.date(2035, 12, 31))
        assert read.timezone == zone and read.shifts == expected.shifts
        assert read.epoch(datetime.date(2024, 3, 31)) == epoch_of(conn, "2024-03-31")
    finally:
        conn.close()


INTERVAL_STARTS = {"year": 2, "quarter": 4, "month": 12, "week": 30}


@pytest.mark.parametrize("zone", ["Europe/Paris", "America/New_York"])
def test_epoch_bounds_are_the_timestamptz_bounds_of_every_interval(pg_server, db, conn, zone):
    conn = in_zone(pg_server, db, conn, zone)
    try:
        today = server_today(conn)
        for interval, back in INTERVAL_STARTS.items():
            scheme = periods.Scheme("date", interval, "date")
            start = scheme.step(scheme.align(today), -back).isoformat()
            for key_format, column in (("timestamptz", "timestamptz"), ("epoch", "bigint"), ("epoch_ms", "bigint")):
                table = "ev_%s_%s" % (interval, key_format)
                args = _args(
                    pg_server,
                    db,
                    name=table,
                    key="k",
                    key_format=key_format,
                    interval=interval,
                    start=start,
                    premake=2,
                    columns=[{"name": "k", "type": column}, {"name": "v", "type": "int"}],
                )
                created = run("partitioned_table", args)
                assert not created.get("failed"), created
                again = run("partitioned_table", args)
                assert again["changed"] is False and again["queries"] == [], again
            stamps = bounds(conn, "ev_%s_timestamptz" % interval)
            assert len(stamps) == back + 3, stamps
            for key_format in ("epoch", "epoch_ms"):
                table = "ev_%s_%s" % (interval, key_format)
                got = bounds(conn, table)
                # same partition names as a date key gets, same instants as the timestamptz bounds
                expected = {
                    name.replace("ev_%s_timestamptz" % interval, table): (
                        low * UNIT[key_format],
                        high * UNIT[key_format],
                    )
                    for name, (low, high) in stamps.items()
                }
                assert got == expected, (interval, key_format)
        months = bounds(conn, "ev_month_epoch")
        lengths = {high - low for low, high in months.values()}
        # twelve months back hold both DST changes: a month an hour short and one an hour long
        assert any(length % 86400 == 86400 - 3600 for length in lengths), lengths
        assert any(length % 86400 == 3600 for length in lengths), lengths
    finally:
        conn.close()


def test_a_day_across_a_dst_change_is_23_or_25_hours_in_paris_new_york_and_sydney(pg_server, db, conn):
    lengths = {}
    for number, zone in enumerate(("Europe/Paris", "America/New_York", "Australia/Sydney")):
        conn = in_zone(pg_server, db, conn, zone)
        today = server_today(conn)
        change = nearest_dst_change(zone, today)
        start = min(change, today) - datetime.timedelta(days=1)
        premake = max(1, (change - today).days + 1)
        for key_format in ("epoch", "epoch_ms"):
            args = _args(
                pg_server,
                db,
                name="day_%d_%s" % (number, key_format),
                key="k",
                key_format=key_format,
                interval="day",
                start=start.isoformat(),
                premake=premake,
                max_new_partitions=400,
                columns=[{"name": "k", "type": "bigint"}],
            )
            first = run("partitioned_table", args)
            assert not first.get("failed"), first
            name = "day_%d_%s_%s" % (number, key_format, change.strftime("%Y%m%d"))
            assert name in first["created"]
            low, high = bounds(conn, "day_%d_%s" % (number, key_format))[name]
            nxt = (change + datetime.timedelta(days=1)).isoformat()
            assert (low, high) == (
                epoch_of(conn, change.isoformat()) * UNIT[key_format],
                epoch_of(conn, nxt) * UNIT[key_format],
            )
            lengths[(zone, key_format)] = (high - low) / 3600.0 / UNIT[key_format]
            again = run("partitioned_table", args)
            assert again["changed"] is False and again["queries"] == [], again
    assert set(lengths.values()) == {23.0, 25.0}, lengths


# ---------------------------------------------------------------------------------------------
# Maintenance of an epoch set
# ---------------------------------------------------------------------------------------------


def _monthly_set(pg_server, db, conn, **extra):
    """An epoch set of months in Paris, from six months back to one ahead, with rows in every month."""
    today = server_today(conn)
    scheme = periods.Scheme("date", "month", "date")
    current = scheme.align(today)
    args = _args(
        pg_server,
        db,
        name="ev",
        key="clock",
        key_format="epoch",
        interval="month",
        start=scheme.step(current, -6).isoformat(),
        premake=1,
        columns=[{"name": "id", "type": "bigint"}, {"name": "clock", "type": "bigint"}, {"name": "v", "type": "int"}],
    )
    args.update(extra)
    first = run("partitioned_table", args)
    assert not first.get("failed"), first
    start_epoch = epoch_of(conn, scheme.step(current, -6).isoformat())
    end_epoch = epoch_of(conn, scheme.step(current, 2).isoformat())
    execute(
        conn,
        "INSERT INTO ev SELECT g, %d + (g * 7919) %% %d, g FROM generate_series(1, 5000) g"
        % (start_epoch, end_epoch - start_epoch),
    )
    return args, scheme, current


def test_premake_moves_the_rows_of_a_new_month_out_of_the_default_and_reports_stray_keys(pg_server, db, conn):
    conn = in_zone(pg_server, db, conn, "Europe/Paris")
    try:
        args, scheme, current = _monthly_set(pg_server, db, conn)
        ahead = scheme.step(current, 2)
        # rows of the month after the last partition, and a stray key in 2030 (a typo), wait in the default
        low, high = epoch_of(conn, ahead.isoformat()), epoch_of(conn, scheme.step(ahead).isoformat())
        execute(
            conn,
            "INSERT INTO ev SELECT 10000 + g, %d + g * 60, g FROM generate_series(0, 99) g" % low,
            "INSERT INTO ev VALUES (99999, %d, 0)" % epoch_of(conn, "2030-06-01"),
        )
        before = content(conn, "public.ev")
        assert one(conn, "SELECT count(*) FROM ev_default")[0] == 101
        args.update(premake=2)
        check = run("partitioned_table", args, check_mode=True)
        assert check["changed"] is True and check["created"] == ["ev_%s" % ahead.strftime("%Y%m")], check
        grown = run("partitioned_table", args)
        assert not grown.get("failed"), grown
        name = "ev_%s" % ahead.strftime("%Y%m")
        assert grown["created"] == [name] and grown["moved_rows"] == 100, grown
        assert bounds(conn, "ev")[name] == (low, high)
        assert one(conn, "SELECT count(*) FROM %s" % name)[0] == 100
        assert one(conn, "SELECT count(*), min(clock) FROM ev_default") == (1, epoch_of(conn, "2030-06-01"))
        stray = [w for w in warnings(grown) if "default partition" in w and "past the last partition" in w]
        assert stray and "%d (2030-05-31 22:00:00 UTC)" % epoch_of(conn, "2030-06-01") in stray[0], warnings(grown)
        assert scheme.step(ahead).isoformat() in stray[0], "the end of the last partition is shown as a date"
        assert content(conn, "public.ev") == before, "every row, once"
        again = run("partitioned_table", args)
        assert again["changed"] is False and again["queries"] == [], again
    finally:
        conn.close()


@pytest.mark.parametrize("action", ["detach", "drop", "archive"])
def test_retention_retires_old_months_of_an_epoch_set(pg_server, db, conn, action):
    conn = in_zone(pg_server, db, conn, "Europe/Paris")
    try:
        args, scheme, current = _monthly_set(pg_server, db, conn)
        parts = bounds(conn, "ev")
        old = ["ev_%s" % scheme.step(current, -n).strftime("%Y%m") for n in (6, 5, 4)]
        assert all(name in parts for name in old)
        rows_old = sum(one(conn, "SELECT count(*) FROM %s" % name)[0] for name in old)
        total = one(conn, "SELECT count(*) FROM ev")[0]
        args.update(retention={"keep": 3, "action": action, "archive_schema": "archive", "max_per_run": 2})
        first = run("partitioned_table", args)
        assert not first.get("failed"), first
        retired = {"detach": "detached", "drop": "dropped", "archive": "archived"}[action]
        assert first[retired] == old[:2] and first["retention_remaining"] == 1, first
        second = run("partitioned_table", args)
        assert second[retired] == old[2:] and second["retention_remaining"] == 0, second
        left = one(conn, "SELECT count(*) FROM ev")[0]
        assert left == total - rows_old
        if action == "archive":
            assert one(conn, "SELECT count(*) FROM pg_tables WHERE schemaname = 'archive'")[0] == 3
        if action == "detach":
            assert sum(one(conn, "SELECT count(*) FROM %s" % name)[0] for name in old) == rows_old
        quiet = run("partitioned_table", args)
        assert quiet["changed"] is False and quiet["queries"] == [], quiet
    finally:
        conn.close()


# ---------------------------------------------------------------------------------------------
# Live migration of a plain table with an epoch key
# ---------------------------------------------------------------------------------------------


class Writer(threading.Thread):
    """Inserts (with keys over the months), moves keys across months and deletes, each mirrored in the same
    transaction into a table that is not migrated."""

    def __init__(self, pg_server, db, low, high, first_id):
        super().__init__(daemon=True)
        self.conn = pg_server.connect(db, autocommit=False)
        self.low, self.high = low, high
        self.next_id = first_id
        self.random = random.Random(30)
        self.stop = threading.Event()
        self.ops = 0
        self.errors = []

    def run(self):
        while not self.stop.is_set():
            op = self.random.choice(["insert", "insert", "move", "delete"])
            key = self.random.randint(self.low, self.high - 1)
            try:
                with self.conn.cursor() as cur:
                    if op == "insert":
                        self.next_id += 1
                        cur.execute(
                            "WITH x AS (INSERT INTO ev (id, clock, v) VALUES (%s, %s, 1) RETURNING *) "
                            "INSERT INTO mirror SELECT * FROM x",
                            (self.next_id, key),
                        )
                    elif op == "move":
                        row = self.random.randint(1, self.next_id)
                        cur.execute(
                            "WITH x AS (UPDATE ev SET clock = %s, v = v + 1 WHERE id = %s RETURNING *) "
                            "UPDATE mirror m SET clock = x.clock, v = x.v FROM x WHERE m.id = x.id",
                            (key, row),
                        )
                    else:
                        row = self.random.randint(1, self.next_id)
                        cur.execute(
                            "WITH x AS (DELETE FROM ev WHERE id = %s RETURNING id) "
                            "DELETE FROM mirror m USING x WHERE m.id = x.id",
                            (row,),
                        )
                self.conn.commit()
                self.ops += 1
            except Exception as error:  # a writer must never fail: the test reports it
                self.conn.rollback()
                self.errors.append(repr(error))
            time.sleep(0.002)
        self.conn.close()


def _plain_events(conn, column="bigint", key_format="epoch", rows=20000, months_back=6, identity=True):
    """A plain table of events keyed by epoch ``clock`` over the last months (and two before the start, which go
    to the default partition); returns (start date, low epoch, high epoch)."""
    today = server_today(conn)
    scheme = periods.Scheme("date", "month", "date")
    start = scheme.step(scheme.align(today), -months_back)
    low, high = epoch_of(conn, start.isoformat()), epoch_of(conn, scheme.step(scheme.align(today), 2).isoformat())
    unit = UNIT[key_format]
    execute(
        conn,
        "CREATE TABLE ev (id bigint %s, clock %s NOT NULL, v int)"
        % ("GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY" if identity else "PRIMARY KEY", column),
        "INSERT INTO ev (id, clock, v) SELECT g, (%d + (g::bigint * 7919) %% %d) * %d, g FROM generate_series(1, %d) g"
        % (low, high - low, unit, rows),
        "CREATE INDEX ev_clock ON ev (clock)",
    )
    return start, low, high


def _migrate_args(pg_server, db, start, key_format="epoch", **extra):
    args = _args(
        pg_server,
        db,
        name="ev",
        key="clock",
        key_format=key_format,
        interval="month",
        start=start.isoformat(),
        premake=1,
        extend_primary_key=True,
        batch_rows=2000,
    )
    args.update(extra)
    return args


def test_online_migration_with_a_writer_keeps_every_row_once(pg_server, db, conn):
    conn = in_zone(pg_server, db, conn, "America/New_York")
    try:
        start, low, high = _plain_events(conn, rows=30000)
        execute(
            conn, "INSERT INTO ev (id, clock, v) VALUES (30001, %d, 0), (30002, %d, 0)" % (low - 86400 * 40, low - 1)
        )
        execute(conn, "CREATE TABLE mirror AS SELECT * FROM ev")
        args = _migrate_args(pg_server, db, start)
        check = run("partitioned_table", args, check_mode=True)
        assert not check.get("failed") and check["changed"] is True, check
        assert one(conn, "SELECT relkind FROM pg_class WHERE oid = 'ev'::regclass")[0] == "r", "check mode"
        writer = Writer(pg_server, db, low - 86400, high, 30002)
        writer.start()
        try:
            while writer.ops < 20 and not writer.errors:
                time.sleep(0.01)
            migrated = run("partitioned_table", args)
            done = writer.ops
            while writer.ops < done + 20 and not writer.errors:
                time.sleep(0.01)  # and goes on writing into the partitioned table after the swap
        finally:
            writer.stop.set()
            writer.join(30)
        assert not migrated.get("failed"), migrated
        assert writer.errors == [], writer.errors
        assert migrated["migration"]["replayed_keys"] > 0, "the writer changed rows during the copy"
        total = migrated["migration"]["checksums"]["total"]
        assert total["source_checksum"] == total["target_checksum"], total
        assert migrated["migration"]["phases_run"][-2:] == ["swap", "post"], migrated["migration"]
        assert one(conn, "SELECT relkind FROM pg_class WHERE oid = 'ev'::regclass")[0] == "p"
        assert content(conn, "public.ev") == content(conn, "public.mirror"), "content checksum equal"
        assert one(conn, "SELECT count(*) = count(DISTINCT id) FROM ev")[0], "every row once"
        assert one(conn, "SELECT count(*) FROM ev_default")[0] >= 2, "keys before start wait in the default"
        names = sorted(bounds(conn, "ev"))
        scheme = periods.Scheme("date", "month", "date")
        assert (
            names[0] == "ev_%s" % start.strftime("%Y%m")
            and "ev_%s" % scheme.align(server_today(conn)).strftime("%Y%m") in names
        )
        # every partition holds only the local months its name says
        for name, (part_low, part_high) in bounds(conn, "ev").items():
            month = datetime.date(int(name[3:7]), int(name[7:9]), 1)
            assert (part_low, part_high) == (
                epoch_of(conn, month.isoformat()),
                epoch_of(conn, scheme.step(month).isoformat()),
            )
        again = run("partitioned_table", args)
        assert again["changed"] is False and again["queries"] == [], again
    finally:
        conn.close()


@pytest.mark.parametrize(
    "mode, column, key_format",
    [("offline", "bigint", "epoch_ms"), ("attach", "integer", "epoch"), ("online", "integer", "epoch")],
)
def test_offline_and_attach_migrations_of_epoch_keys(pg_server, db, conn, mode, column, key_format):
    """attach and online on an integer column (Zabbix's clock), offline on milliseconds."""
    conn = in_zone(pg_server, db, conn, "Europe/Paris")
    try:
        start, _low, _high = _plain_events(conn, column=column, key_format=key_format, identity=mode != "attach")
        before = content(conn, "public.ev")
        args = _migrate_args(pg_server, db, start, key_format=key_format, migrate=mode)
        migrated = run("partitioned_table", args)
        assert not migrated.get("failed"), migrated
        assert one(conn, "SELECT relkind FROM pg_class WHERE oid = 'ev'::regclass")[0] == "p"
        assert content(conn, "public.ev") == before
        if mode != "attach":
            names = sorted(n for n in bounds(conn, "ev"))
            assert names[0] == "ev_%s" % start.strftime("%Y%m")
            month = datetime.date(int(names[1][3:7]), int(names[1][7:9]), 1)
            unit = UNIT[key_format]
            assert bounds(conn, "ev")[names[1]][0] == epoch_of(conn, month.isoformat()) * unit
        again = run("partitioned_table", args)
        assert not again.get("failed") and again["changed"] is False and again["queries"] == [], again
    finally:
        conn.close()


def test_table_info_shows_epoch_bounds_as_local_times(pg_server, db, conn):
    conn = in_zone(pg_server, db, conn, "Europe/Paris")
    try:
        _args_set, scheme, current = _monthly_set(pg_server, db, conn)
        info = run("table_info", _args(pg_server, db, tables=["public.ev"], compression="none"))
        table = info["tables"][0]
        assert table["epoch_format"] == "epoch"
        # table_info's today is the host's date (UTC here), the set's the server's (Paris): a month apart at most
        here = scheme.align(datetime.date.today())
        ahead = 1 + (current.year - here.year) * 12 + current.month - here.month
        assert table["current_partition"] == "ev_%s" % here.strftime("%Y%m") and table["periods_ahead"] == ahead
        assert table["covered_until"] == scheme.step(current, 2).isoformat()
        entry = [p for p in table["partitions"] if p["name"] == "ev_%s" % current.strftime("%Y%m")][0]
        offset = "+01:00" if current.month in (1, 2, 3, 11, 12) else "+02:00"
        assert entry["low"] == epoch_of(conn, current.isoformat())
        assert entry["low_time"] == "%s 00:00:00%s" % (current.isoformat(), offset), entry
        # YYYYMMDD bounds are no epochs: shown as today
        execute(conn, "CREATE TABLE f (k int) PARTITION BY RANGE (k)")
        execute(conn, "CREATE TABLE f_2026 PARTITION OF f FOR VALUES FROM (20260101) TO (20270101)")
        other = run("table_info", _args(pg_server, db, tables=["public.f"], compression="none"))["tables"][0]
        assert other["epoch_format"] is None and "low_time" not in other["partitions"][0]
    finally:
        conn.close()


# ---------------------------------------------------------------------------------------------
# Bad input: a clear error, nothing changed
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "ddl, rows, key_format, says",
    [
        ("k text", "'1700000000'", "epoch", ["cannot hold key_format epoch", "text", "integer or bigint"]),
        ("k date", "current_date", "epoch", ["cannot hold key_format epoch", "date"]),
        ("k integer", "1700000000", "epoch_ms", ["integer ends at 1970-01-25", "bigint"]),
        ("k integer", "20230101 + g % 28", "epoch", ["public.ev", "20230101 to 20230128", "key_format yyyymmdd"]),
        ("k bigint", "1700000000 + g", "epoch_ms", ["public.ev", "epoch milliseconds", "use key_format epoch"]),
        ("k bigint", "1700000000000 + g", "epoch", ["public.ev", "use key_format epoch_ms"]),
        ("k bigint", "1700000000 + g", "auto", ["key_format auto", "epoch", "public.ev"]),
    ],
)
def test_bad_epoch_input_is_refused_before_any_change(pg_server, db, conn, ddl, rows, key_format, says):
    execute(
        conn,
        "CREATE TABLE ev (id int PRIMARY KEY, %s NOT NULL)" % ddl,
        "INSERT INTO ev SELECT g, %s FROM generate_series(1, 100) g" % rows,
    )
    before = snapshot(conn), content(conn, "public.ev")
    refused = run(
        "partitioned_table",
        _args(pg_server, db, name="ev", key="k", key_format=key_format, interval="month", extend_primary_key=True),
    )
    assert refused.get("failed"), refused
    assert all(part in refused["msg"] for part in says), refused["msg"]
    assert (snapshot(conn), content(conn, "public.ev")) == before


def test_a_partition_set_of_another_format_or_time_zone_is_refused_before_any_change(pg_server, db, conn):
    execute(
        conn,
        "CREATE TABLE f (k bigint NOT NULL) PARTITION BY RANGE (k)",
        "CREATE TABLE f_2026 PARTITION OF f FOR VALUES FROM (20260101) TO (20270101)",
    )
    before = snapshot(conn)
    refused = run("partitioned_table", _args(pg_server, db, name="f", key="k", key_format="epoch", interval="year"))
    assert refused.get("failed") and "key_format yyyymmdd" in refused["msg"] and "public.f" in refused["msg"], refused
    assert snapshot(conn) == before
    # a set made in a Tokyo session, maintained from a Paris one: the message names both
    conn = in_zone(pg_server, db, conn, "Asia/Tokyo")
    try:
        args = _args(pg_server, db, name="g", key="k", key_format="epoch", interval="day", premake=2)
        args["columns"] = [{"name": "k", "type": "bigint"}]
        made = run("partitioned_table", args)
        assert not made.get("failed"), made
        conn = in_zone(pg_server, db, conn, "Europe/Paris")
        before = snapshot(conn)
        foreign = run("partitioned_table", args)
        assert foreign.get("failed"), foreign
        assert "Europe/Paris" in foreign["msg"] and "+09:00" in foreign["msg"] and "another TimeZone" in foreign["msg"]
        assert snapshot(conn) == before
    finally:
        conn.close()
