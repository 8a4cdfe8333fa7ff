"""partitioned_table against a real server: every interval x key format, idempotence, check mode, default rows,
retention, bad inputs (each changes nothing), quoted names, lock contention, and a playbook run."""

import datetime
import os
import threading

import pytest

from ansible_collections.sigeti.dwh.plugins.module_utils.core import periods
from tests.support.modules import run_module, run_playbook

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

COLUMN_TYPES = {
    "date": "date",
    "timestamp": "timestamp",
    "timestamptz": "timestamptz",
    "yyyymmdd": "integer",
    "yyyymm": "integer",
    "integer": "bigint",
}
COMBOS = [
    (f, i) for f in ("date", "timestamp", "timestamptz", "yyyymmdd", "yyyymm") for i in periods.KEY_FORMATS[f].intervals
] + [("integer", "1000")]


def _args(pg_server, db, **extra):
    args = pg_server.params(db)
    args.update(lock_timeout="2s", lock_retries=1, lock_retry_delay=0.1)
    args.update(extra)
    return args


def warnings(result):
    """Warning texts of a result (ansible-core 2.19 returns them as WarningSummary dicts)."""
    return [w["event"]["msg"] if isinstance(w, dict) else w for w in result.get("warnings") or []]


def server_today(conn):
    with conn.cursor() as cur:
        cur.execute("SELECT current_date")
        return cur.fetchone()[0]


def snapshot(conn):
    """Every relation, bound, reloption and schema of the database: equal snapshots mean nothing changed."""
    with conn.cursor() as cur:
        cur.execute(
            "SELECT n.nspname, c.relname, c.relkind, pg_get_expr(c.relpartbound, c.oid), c.reloptions::text "
            "FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname NOT IN ('pg_catalog', 'information_schema', 'pg_toast') ORDER BY 1, 2"
        )
        rels = cur.fetchall()
        cur.execute("SELECT nspname FROM pg_namespace ORDER BY 1")
        return rels, cur.fetchall()


def partitions(conn, parent):
    with conn.cursor() as cur:
        cur.execute(
            "SELECT c.relname, pg_get_expr(c.relpartbound, c.oid) FROM pg_inherits i "
            "JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = %s::regclass ORDER BY 1",
            (parent,),
        )
        return dict(cur.fetchall())


def routed_to(conn, parent, key, value):
    """Insert one row and return the partition it landed in."""
    with conn.cursor() as cur:
        cur.execute("INSERT INTO %s (%s) VALUES (%%s) RETURNING tableoid::regclass::text" % (parent, key), (value,))
        return cur.fetchone()[0]


@pytest.mark.parametrize("key_format, interval", COMBOS)
def test_every_interval_and_key_format_creates_real_partitions(pg_server, db, conn, key_format, interval):
    scheme = periods.Scheme(key_format, interval, COLUMN_TYPES[key_format])
    today = server_today(conn)
    with conn.cursor() as cur:
        cur.execute("CREATE TABLE fait (k %s NOT NULL, v text) PARTITION BY RANGE (k)" % COLUMN_TYPES[key_format])
    if scheme.format.calendar:
        current = scheme.current(today)
        start = scheme.step(current, -2)
    else:
        current = start = 0
    args = _args(
        pg_server,
        db,
        name="public.fait",
        key="k",
        key_format=key_format,
        interval=interval,
        start=scheme.display(start),
        premake=1,
    )
    result = run_module("partitioned_table", args)
    assert not result.get("failed"), result
    assert result["changed"] is True
    expected = scheme.periods(start, scheme.step(current, 1))
    names = ["fait_" + scheme.label(p) for p in expected]
    assert result["created"] == names + ["fait_default"]
    assert [p["name"] for p in result["partitions"]] == names + ["fait_default"]
    actual = partitions(conn, "fait")
    assert sorted(actual) == sorted(names + ["fait_default"])
    again = run_module("partitioned_table", args)
    assert again["changed"] is False and again["queries"] == [], again
    assert again["partitions"] == result["partitions"]
    for point, name in zip(expected, names):
        low, high = scheme.bounds(point)
        # boundary rows: the first key of each period and the last key before the next one
        assert routed_to(conn, "fait", "k", low) == name
        if isinstance(high, int):
            last = high - 1 if not scheme.format.calendar else scheme.key(scheme.step(point)) - 1
            if key_format == "yyyymmdd":
                last = scheme.key(scheme.step(point) - datetime.timedelta(days=1))
            elif key_format == "yyyymm":
                prev = scheme.step(point) - datetime.timedelta(days=1)
                last = prev.year * 100 + prev.month
        elif isinstance(high, datetime.datetime):
            last = high - datetime.timedelta(microseconds=1)
        else:
            last = high - datetime.timedelta(days=1)
        assert routed_to(conn, "fait", "k", last) == name
    if not scheme.format.calendar:
        # integer keys have no calendar: the current period follows the largest key, so premake moves with the data
        moved_on = run_module("partitioned_table", args)
        assert moved_on["created"] == ["fait_p2000"]


def test_check_mode_changes_nothing_and_shows_the_exact_plan(pg_server, db, conn):
    with conn.cursor() as cur:
        cur.execute("CREATE TABLE fait (k date NOT NULL, v text) PARTITION BY RANGE (k)")
    args = _args(pg_server, db, name="fait", key="k", interval="month", premake=2)
    before = snapshot(conn)
    checked = run_module("partitioned_table", args, check_mode=True, diff=True)
    assert not checked.get("failed"), checked
    assert checked["changed"] is True and snapshot(conn) == before
    assert checked["diff"]["before"] == "" and "fait_default DEFAULT" in checked["diff"]["after"]
    applied = run_module("partitioned_table", args, diff=True)
    assert applied["queries"] == checked["queries"]
    assert applied["partitions"] == checked["partitions"]
    assert all(step["lock"] for step in applied["plan"])
    assert not any("PARTITION OF" in q for q in applied["queries"]), "the weak-lock path: CREATE LIKE + ATTACH"
    noop = run_module("partitioned_table", args, check_mode=True, diff=True)
    assert noop["changed"] is False and noop["queries"] == []
    assert noop["diff"]["before"] == noop["diff"]["after"]


def test_default_rows_are_moved_into_the_new_partition(pg_server, db, conn):
    today = server_today(conn)
    year = today.year
    with conn.cursor() as cur:
        cur.execute(
            "CREATE TABLE fait (id int GENERATED BY DEFAULT AS IDENTITY, dk int NOT NULL, v text, "
            "twice int GENERATED ALWAYS AS (dk * 2) STORED) PARTITION BY RANGE (dk)"
        )
        cur.execute("CREATE TABLE fait_default PARTITION OF fait DEFAULT")
        cur.execute("INSERT INTO fait (dk, v) SELECT %s, 'cur' FROM generate_series(1, 30)", (year * 10000 + 101,))
        cur.execute(
            "INSERT INTO fait (dk, v) SELECT %s, 'next' FROM generate_series(1, 12)", ((year + 1) * 10000 + 1231,)
        )
        cur.execute("INSERT INTO fait (dk, v) VALUES (19990101, 'stays')")
    args = _args(pg_server, db, name="fait", key="dk", key_format="yyyymmdd", interval="year", premake=1)
    checked = run_module("partitioned_table", args, check_mode=True)
    assert checked["default_rows"] == 1 and checked["moved_rows"] == 42
    with conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM fait_default")
        assert cur.fetchone()[0] == 43, "check mode moved nothing"
    result = run_module("partitioned_table", args)
    assert not result.get("failed"), result
    assert result["moved_rows"] == 42 and result["default_rows"] == 1
    with conn.cursor() as cur:
        cur.execute("SELECT tableoid::regclass::text, count(*), sum(twice) FROM fait GROUP BY 1 ORDER BY 1")
        rows = cur.fetchall()
    assert rows == [
        ("fait_%d" % year, 30, 30 * 2 * (year * 10000 + 101)),
        ("fait_%d" % (year + 1), 12, 12 * 2 * ((year + 1) * 10000 + 1231)),
        ("fait_default", 1, 2 * 19990101),
    ]
    again = run_module("partitioned_table", args)
    assert again["changed"] is False and again["default_rows"] == 1


@pytest.mark.parametrize("action", ["detach", "drop", "archive"])
@pytest.mark.parametrize("with_default", [True, False])
def test_retention(pg_server, db, conn, action, with_default):
    today = server_today(conn)
    scheme = periods.Scheme("date", "month", "date")
    current = scheme.current(today)
    with conn.cursor() as cur:
        cur.execute("CREATE TABLE fait (k date NOT NULL) PARTITION BY RANGE (k)")
        # a partition straddling the cutoff (never touched) and an old one with another name (retired)
        straddle_low, straddle_high = scheme.step(current, -3) + datetime.timedelta(days=3), scheme.step(current, -1)
        cur.execute(
            "CREATE TABLE old_stuff PARTITION OF fait FOR VALUES FROM (%s) TO (%s)",
            (scheme.step(current, -12), scheme.step(current, -11)),
        )
        cur.execute(
            "CREATE TABLE straddle PARTITION OF fait FOR VALUES FROM (%s) TO (%s)", (straddle_low, straddle_high)
        )
    start = scheme.step(current, -1)
    args = _args(
        pg_server,
        db,
        name="fait",
        key="k",
        interval="month",
        start=start.isoformat(),
        premake=0,
        default_partition=with_default,
        retention={"keep": 2, "action": action, "archive_schema": "arch" if action == "archive" else None},
    )
    result = run_module("partitioned_table", args)
    assert not result.get("failed"), result
    assert result["detached"] == ["old_stuff"]
    assert result["dropped"] == (["old_stuff"] if action == "drop" else [])
    assert result["archived"] == (["old_stuff"] if action == "archive" else [])
    assert any("straddle" in w and "partly old" in w for w in warnings(result))
    assert any(("CONCURRENTLY" in q) is (not with_default) for q in result["queries"] if "DETACH" in q)
    parts = partitions(conn, "fait")
    assert "old_stuff" not in parts and "straddle" in parts
    with conn.cursor() as cur:
        cur.execute(
            "SELECT n.nspname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE relname = 'old_stuff'"
        )
        where = [r[0] for r in cur.fetchall()]
    assert where == {"detach": ["public"], "drop": [], "archive": ["arch"]}[action]
    again = run_module("partitioned_table", args)
    assert again["changed"] is False and again["queries"] == []


def test_table_is_created_when_absent_with_options_and_quoted_names(pg_server, db, conn):
    name = '"Ventes.EU"."Fait ""Q"""'
    args = _args(
        pg_server,
        db,
        name=name,
        key="Jour",
        interval="week",
        premake=1,
        columns=[{"name": "id", "type": "bigint"}, {"name": "Jour", "type": "date"}, "note text"],
        primary_key=["id", "Jour"],
        partition_options={"fillfactor": 90, "autovacuum_enabled": False},
    )
    result = run_module("partitioned_table", args)
    assert not result.get("failed"), result
    assert result["changed"] is True
    today = server_today(conn)
    label = periods.Scheme("date", "week", "date").label(periods.Scheme("date", "week", "date").current(today))
    parts = partitions(conn, '"Ventes.EU"."Fait ""Q"""')
    assert 'Fait "Q"_' + label in parts and 'Fait "Q"_default' in parts
    with conn.cursor() as cur:
        cur.execute(
            "SELECT c.relname, c.reloptions FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = 'Ventes.EU' AND c.relkind = 'r'"
        )
        options = dict(cur.fetchall())
        cur.execute(
            'INSERT INTO "Ventes.EU"."Fait ""Q""" VALUES (1, current_date, \'x\') RETURNING tableoid::regclass::text'
        )
        assert label in cur.fetchone()[0]
    assert all(sorted(o) == ["autovacuum_enabled=false", "fillfactor=90"] for o in options.values())
    again = run_module("partitioned_table", args)
    assert again["changed"] is False and again["queries"] == []


def test_missing_indexes_and_options_on_existing_partitions_are_fixed(pg_server, db, conn):
    year = server_today(conn).year
    with conn.cursor() as cur:
        cur.execute("CREATE TABLE fait (id int, k int NOT NULL) PARTITION BY RANGE (k)")
        for y in (year, year + 1):
            cur.execute(
                "CREATE TABLE fait_%d PARTITION OF fait FOR VALUES FROM (%d) TO (%d)"
                % (y, y * 10000 + 101, (y + 1) * 10000 + 101)
            )
        cur.execute("CREATE INDEX fait_id_idx ON ONLY fait (id)")  # on the parent only: partitions lack it
    args = _args(
        pg_server,
        db,
        name="fait",
        key="k",
        key_format="yyyymmdd",
        interval="year",
        premake=1,
        default_partition=False,
        partition_options={"autovacuum_vacuum_scale_factor": "0.02"},
    )
    result = run_module("partitioned_table", args)
    assert not result.get("failed"), result
    assert sum("CREATE INDEX CONCURRENTLY" in q for q in result["queries"]) == 2
    with conn.cursor() as cur:
        cur.execute("SELECT indisvalid FROM pg_index WHERE indexrelid = 'fait_id_idx'::regclass")
        assert cur.fetchone()[0] is True, "every partition has the index: the parent's index became valid"
        cur.execute(
            "SELECT count(*) FROM pg_class WHERE relname LIKE 'fait_2%%' AND relkind = 'r' "
            "AND reloptions = '{autovacuum_vacuum_scale_factor=0.02}'"
        )
        assert cur.fetchone()[0] == 2
    again = run_module("partitioned_table", args)
    assert again["changed"] is False and again["queries"] == []


def _bad(pg_server, db, conn, **extra):
    before = snapshot(conn)
    result = run_module("partitioned_table", _args(pg_server, db, **extra))
    assert result.get("failed"), result
    assert snapshot(conn) == before, "a bad input must change nothing"
    return result["msg"]


def test_bad_inputs_fail_clearly_and_change_nothing(pg_server, db, conn):
    with conn.cursor() as cur:
        cur.execute("CREATE TABLE fait (k int NOT NULL, d date, s smallint) PARTITION BY RANGE (k)")
        cur.execute("CREATE TABLE fait_h1 PARTITION OF fait FOR VALUES FROM (20250101) TO (20250701)")
        cur.execute("CREATE TABLE small (s smallint NOT NULL) PARTITION BY RANGE (s)")
        cur.execute("CREATE TABLE listed (k int NOT NULL) PARTITION BY LIST (k)")
        cur.execute("CREATE TABLE plain (k int NOT NULL)")
        cur.execute("CREATE TABLE fait_other (k int NOT NULL, d date NOT NULL) PARTITION BY RANGE (d)")
    base = dict(name="fait", key="k", key_format="yyyymmdd", interval="year", start="2020-01-01")
    msg = _bad(pg_server, db, conn, **{**base, "name": "nope.absent"})
    assert "nope.absent does not exist" in msg and "columns" in msg
    msg = _bad(pg_server, db, conn, **{**base, "key": "missing"})
    assert "column missing does not exist in table public.fait" in msg
    msg = _bad(pg_server, db, conn, **{**base, "name": "small", "key": "s"})
    assert "smallint" in msg and "cannot hold" in msg
    msg = _bad(pg_server, db, conn, **{**base, "key_format": "auto"})
    assert "key_format" in msg and "yyyymmdd" in msg
    msg = _bad(pg_server, db, conn, **{**base, "start": "2020-03-01"})
    assert "not aligned" in msg and "would be 20200101" in msg
    msg = _bad(pg_server, db, conn, **{**base, "retention": {"keep": -1, "action": "drop"}})
    assert "would drop the current period" in msg
    msg = _bad(pg_server, db, conn, **{**base, "name": "listed"})
    assert "LIST" in msg and "RANGE" in msg
    msg = _bad(pg_server, db, conn, **{**base, "name": "fait_other"})
    assert "partitioned by RANGE (d)" in msg and "not by the key column k" in msg
    msg = _bad(pg_server, db, conn, **{**base, "name": "plain"})
    assert "online migration of public.plain needs a primary key" in msg and "migrate: offline" in msg
    msg = _bad(pg_server, db, conn, **base)
    assert "overlap" in msg and "fait_h1" in msg
    msg = _bad(pg_server, db, conn, **{**base, "name": 'public."unterminated'})
    assert "unterminated quote" in msg
    msg = _bad(pg_server, db, conn, **{**base, "name": "new_t", "columns": [{"name": "k", "type": "no_such_type"}]})
    assert "no_such_type" in msg and "do not exist" in msg
    msg = _bad(pg_server, db, conn, **{**base, "premake": -1})
    assert "premake=-1" in msg


def _hold_lock(pg_server, db, mode, ready, release, pid):
    other = pg_server.connect(db, autocommit=False)
    with other.cursor() as cur:
        cur.execute("SELECT pg_backend_pid()")
        pid.append(cur.fetchone()[0])
        cur.execute("LOCK TABLE fait IN %s MODE" % mode)
        ready.set()
        release.wait(30)
    other.rollback()
    other.close()


@pytest.mark.parametrize("mode", ["ACCESS EXCLUSIVE", "EXCLUSIVE"])
def test_lock_held_by_another_session_fails_naming_its_pid(pg_server, db, conn, mode):
    with conn.cursor() as cur:
        cur.execute("CREATE TABLE fait (k date NOT NULL) PARTITION BY RANGE (k)")
    ready, release, pid = threading.Event(), threading.Event(), []
    holder = threading.Thread(target=_hold_lock, args=(pg_server, db, mode, ready, release, pid))
    holder.start()
    try:
        assert ready.wait(10)
        before = snapshot(conn)
        result = run_module(
            "partitioned_table",
            _args(
                pg_server,
                db,
                name="fait",
                key="k",
                interval="month",
                lock_timeout="200ms",
                lock_retries=1,
                lock_retry_delay=0.1,
            ),
        )
        after = snapshot(conn)
    finally:
        release.set()
        holder.join()
    assert result.get("failed"), result
    assert "pid %d" % pid[0] in result["msg"] and result["blocking_pids"] == [pid[0]]
    assert "Gave up after 2 attempts" in result["msg"]
    assert after == before


def test_playbook_run(pg_server, db, conn, tmp_path):
    params = pg_server.params(db)
    result = run_playbook(
        os.path.join(ROOT, "tests", "integration", "playbooks", "partitioned_table.yml"), extra_vars={"pg": params}
    )
    assert result.returncode == 0, result.stdout
    assert "ok=4" in result.stdout and "changed=1" in result.stdout
    assert "fait_default" in partitions(conn, "dwh_facts.fait")


def test_standby_facts_are_checked_before_anything(pg_server, db):
    """A real standby is issue 9's; here: skip_on_standby is accepted and the primary runs normally."""
    result = run_module(
        "partitioned_table",
        _args(pg_server, db, name="x.y", key="k", interval="day", skip_on_standby=True, columns=["k date"]),
    )
    assert not result.get("failed"), result
    assert result["changed"] is True
