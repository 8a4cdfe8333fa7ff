"""A sub-partitioned tree (years, two of them partitioned by month) declared at its top and at its sub-trees, on a
real server: a table that is itself a partition never gets partitions outside its bound (the issue: 25 unreachable
months under a year), an interval the tree does not have is refused before any change, retention and the default
partition work inside a bounded sub-tree, and a second run is quiet. Dates are relative to today."""

import datetime

from tests.support.modules import run_module

TODAY = datetime.date.today()
Y = TODAY.year
CLOSED, LIVE = Y - 2, Y  # the years partitioned by month: one behind us, the current one


def _month(year, month):
    low = datetime.date(year, month, 1)
    return low, datetime.date(year + month // 12, month % 12 + 1, 1)


def _name(year, month, parent=None):
    """The module's name for a month of a year's sub-tree: <table>_<YYYYMM>."""
    return "fait_%d_%d%02d" % (parent or year, year, month)


def _run(conn, *statements):
    with conn.cursor() as cur:
        for statement in statements:
            cur.execute(statement)


def _make_tree(conn, closed_months=range(1, 7), live_months=None):
    """fait by year from Y-3 to Y+1; CLOSED and LIVE partitioned by month (the months given; LIVE: those before the
    current one, and a default partition holding the current month's rows). Ten rows a day up to today."""
    live_months = range(1, TODAY.month) if live_months is None else live_months
    _run(
        conn,
        "CREATE TABLE fait (id bigint, k date NOT NULL, note text) PARTITION BY RANGE (k)",
        "CREATE INDEX ON fait (k)",
    )
    for year in range(Y - 3, Y + 2):
        by_month = " PARTITION BY RANGE (k)" if year in (CLOSED, LIVE) else ""
        _run(conn, "CREATE TABLE fait_%d PARTITION OF fait FOR VALUES FROM ('%d-01-01') TO ('%d-01-01')%s"
             % (year, year, year + 1, by_month))  # fmt: skip
    for year, months in ((CLOSED, closed_months), (LIVE, live_months)):
        for month in months:
            low, high = _month(year, month)
            _run(conn, "CREATE TABLE %s PARTITION OF fait_%d FOR VALUES FROM ('%s') TO ('%s')"
                 % (_name(year, month), year, low, high))  # fmt: skip
    _run(conn, "CREATE TABLE fait_%d_default PARTITION OF fait_%d DEFAULT" % (LIVE, LIVE))
    last = max([_month(CLOSED, m)[1] for m in closed_months] or [datetime.date(CLOSED, 1, 1)])
    _run(
        conn,
        # rows of the closed year only where it has months; every day of the others up to today
        "INSERT INTO fait SELECT g, d::date, md5(g::text) FROM generate_series(date '%d-01-01', date '%s', "
        "interval '1 day') WITH ORDINALITY AS s(d, g), generate_series(1, 10) r "
        "WHERE d < date '%s' OR d >= date '%d-01-01'" % (Y - 3, TODAY, last, CLOSED + 1),
        "ANALYZE fait",
    )


def _warnings(result):
    return [w["event"]["msg"] if isinstance(w, dict) else w for w in result.get("warnings") or []]


def _declare(pg_server, db, name, check=False, **options):
    args = pg_server.params(db)
    args.update(name="public." + name, key="k", key_format="date", **options)
    return run_module("partitioned_table", args, check_mode=check)


def _tree(conn):
    """{partition: (parent, low, high)} of the whole tree (low/high None for a default partition)."""
    with conn.cursor() as cur:
        cur.execute(
            "SELECT c.relname::text, p.relname::text, pg_get_expr(c.relpartbound, 0) FROM pg_inherits i "
            "JOIN pg_class c ON c.oid = i.inhrelid JOIN pg_class p ON p.oid = i.inhparent WHERE c.relkind IN ('r', 'p')"
        )
        rows = cur.fetchall()
    tree = {}
    for name, parent, bound in rows:
        low = high = None
        if bound.startswith("FOR VALUES FROM"):
            low, high = (datetime.date.fromisoformat(v.strip("()' ")) for v in bound[16:].split(" TO "))
        tree[name] = (parent, low, high)
    return tree


def _inside_their_year(tree, year):
    months = {n: b for n, b in tree.items() if b[0] == "fait_%d" % year and b[1] is not None}
    return months and all(datetime.date(year, 1, 1) <= low and high <= datetime.date(year + 1, 1, 1)
                          for _p, low, high in months.values())  # fmt: skip


def test_declared_sub_trees_stay_inside_their_year_and_a_second_run_is_quiet(pg_server, db, conn):
    _make_tree(conn)
    closed = _declare(pg_server, db, "fait_%d" % CLOSED, interval="month", premake=1, start="%d-01-01" % CLOSED)
    assert not closed.get("failed"), closed
    assert closed["created"] == [_name(CLOSED, m) for m in range(7, 13)] + ["fait_%d_default" % CLOSED]
    assert not _warnings(closed), _warnings(closed)
    # the run: start two years back and premake 1 reached 25 months past the year, now left out
    months_after = (TODAY.year - CLOSED - 1) * 12 + TODAY.month + 1
    assert closed["bound"] == {
        "low": "%d-01-01" % CLOSED,
        "high": "%d-01-01" % (CLOSED + 1),
        "parents": ["public.fait"],
        "periods_outside": months_after,
    }
    tree = _tree(conn)
    assert _inside_their_year(tree, CLOSED) and len([n for n in tree if tree[n][0] == "fait_%d" % CLOSED]) == 13
    again = _declare(pg_server, db, "fait_%d" % CLOSED, interval="month", premake=1, start="%d-01-01" % CLOSED)
    assert again["changed"] is False and again["queries"] == [] and not _warnings(again), again

    # the live year: its current month made now (its rows moved out of the year's default), the next one only when
    # it is still in the year
    current_rows = (TODAY - TODAY.replace(day=1)).days * 10 + 10
    live = _declare(pg_server, db, "fait_%d" % LIVE, interval="month", premake=1, start="%d-01-01" % LIVE)
    assert not live.get("failed"), live
    ahead = [TODAY.month] + ([TODAY.month + 1] if TODAY.month < 12 else [])
    assert live["created"] == [_name(LIVE, m) for m in ahead], live["created"]
    assert live["moved_rows"] == current_rows and live["default_rows"] == 0
    assert _inside_their_year(_tree(conn), LIVE)
    _run(conn, "INSERT INTO fait VALUES (0, '%s', 'new')" % TODAY)
    with conn.cursor() as cur:
        cur.execute("SELECT tableoid::regclass::text FROM fait WHERE id = 0")
        assert cur.fetchone()[0] == _name(LIVE, TODAY.month)
    again = _declare(pg_server, db, "fait_%d" % LIVE, interval="month", premake=1, start="%d-01-01" % LIVE)
    assert again["changed"] is False and not _warnings(again), again

    # the top, declared by year: the sub-partitioned years are partitions of it like the others
    before = _tree(conn)
    top = _declare(pg_server, db, "fait", interval="year", premake=1, start="%d-01-01" % (Y - 3))
    assert not top.get("failed"), top
    assert top["created"] == ["fait_default"] and not _warnings(top) and top["bound"] is None, top
    assert {n: b for n, b in _tree(conn).items() if n != "fait_default"} == before
    assert _declare(pg_server, db, "fait", interval="year", premake=1, start="%d-01-01" % (Y - 3))["changed"] is False


def test_an_interval_the_tree_does_not_have_is_refused_naming_both_before_any_change(pg_server, db, conn):
    _make_tree(conn, closed_months=range(1, 13))
    before = _tree(conn)
    for check in (True, False):
        months_over_years = _declare(pg_server, db, "fait", check=check, interval="month", start="%d-01-01" % (Y - 3))
        assert months_over_years["failed"], months_over_years
        assert "the existing partitions of public.fait are by year (" in months_over_years["msg"]
        assert "not by the declared interval month" in months_over_years["msg"]
        assert "Declare interval: year" in months_over_years["msg"]
        days_over_months = _declare(
            pg_server, db, "fait_%d" % CLOSED, check=check, interval="day", start="%d-01-01" % CLOSED
        )
        assert "are by month (12" in days_over_months["msg"] and "interval day" in days_over_months["msg"]
        year_over_months = _declare(
            pg_server, db, "fait_%d" % CLOSED, check=check, interval="year", start="%d-01-01" % CLOSED
        )
        assert "are by month (12" in year_over_months["msg"] and "interval year" in year_over_months["msg"]
    assert _tree(conn) == before, "nothing was changed"


def test_a_start_outside_the_bound_is_refused(pg_server, db, conn):
    _make_tree(conn)
    before = _tree(conn)
    early = _declare(pg_server, db, "fait_%d" % CLOSED, interval="month", start="%d-01-01" % (Y - 3))
    assert early["failed"] and "start %d-01-01 of public.fait_%d is outside its bound" % (Y - 3, CLOSED) in early["msg"]
    assert "FROM ('%d-01-01') TO ('%d-01-01') in public.fait" % (CLOSED, CLOSED + 1) in early["msg"]
    late = _declare(pg_server, db, "fait_%d" % CLOSED, interval="month", start="%d-01-01" % (CLOSED + 1))
    assert late["failed"] and "at or after %d-01-01" % (CLOSED + 1) in late["msg"]
    assert _tree(conn) == before


def test_retention_and_the_default_partition_inside_a_bounded_sub_tree(pg_server, db, conn):
    _make_tree(conn, closed_months=range(1, 13))
    # keep the months from July of the closed year on: January to June are older, two of them retired per run
    keep = (TODAY.year - CLOSED) * 12 + TODAY.month - 7
    retention = {"keep": keep, "action": "detach", "max_per_run": 2}
    first = _declare(
        pg_server, db, "fait_%d" % CLOSED, interval="month", start="%d-01-01" % CLOSED, retention=retention
    )
    assert not first.get("failed"), first
    assert first["created"] == ["fait_%d_default" % CLOSED]
    assert first["detached"] == [_name(CLOSED, 1), _name(CLOSED, 2)] and first["retention_remaining"] == 4
    assert any("4 more partition(s)" in w for w in _warnings(first))
    tree = _tree(conn)
    assert _name(CLOSED, 1) not in tree and tree["fait_%d_default" % CLOSED][0] == "fait_%d" % CLOSED
    # a row of a detached month now lands in the year's own default partition, not elsewhere
    _run(conn, "INSERT INTO fait VALUES (-1, '%d-01-15', 'late')" % CLOSED)
    with conn.cursor() as cur:
        cur.execute("SELECT tableoid::regclass::text FROM fait WHERE id = -1")
        assert cur.fetchone()[0] == "fait_%d_default" % CLOSED
    second = _declare(
        pg_server, db, "fait_%d" % CLOSED, interval="month", start="%d-01-01" % CLOSED, retention=retention
    )
    assert second["detached"] == [_name(CLOSED, 3), _name(CLOSED, 4)] and second["created"] == []


def test_partitions_an_older_run_left_outside_the_bound_are_named_and_kept(pg_server, db, conn):
    _make_tree(conn, closed_months=range(1, 13))
    # what the run left: months past the year, under it (PostgreSQL accepts the bounds; no row reaches them)
    for month in (1, 2):
        low, high = _month(CLOSED + 1, month)
        _run(conn, "CREATE TABLE %s PARTITION OF fait_%d FOR VALUES FROM ('%s') TO ('%s')"
             % (_name(CLOSED + 1, month, CLOSED), CLOSED, low, high))  # fmt: skip
    result = _declare(
        pg_server, db, "fait_%d" % CLOSED, interval="month", start="%d-01-01" % CLOSED, default_partition=False
    )
    assert result["changed"] is False, result
    warning = [w for w in _warnings(result) if "outside its bound" in w]
    assert len(warning) == 1 and "%s, %s" % (_name(CLOSED + 1, 1, CLOSED), _name(CLOSED + 1, 2, CLOSED)) in warning[0]
    assert "no row can ever reach them" in warning[0] and "DROP TABLE" in warning[0]
