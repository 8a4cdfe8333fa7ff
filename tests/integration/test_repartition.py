"""partitioned_table with ``repartition``: a yearly set rebuilt by month and back, online and offline (issue 30).

Without the option a declared interval the tree is not of is refused naming both, and saying how to rebuild; with
it the set goes back to a plain table and forward into the declared interval in one run, every row and the whole
content checksum kept, a view on the table still answering, a writer losing nothing; a second run is quiet."""

import threading
import time

import psycopg2
import pytest

from tests.support.modules import run_module

SET = """
CREATE SCHEMA r;
CREATE TABLE r.fait (id bigserial, k date NOT NULL, montant numeric(12,2), note text, PRIMARY KEY (id, k))
  PARTITION BY RANGE (k);
CREATE INDEX fait_k_idx ON r.fait (k);
CREATE VIEW r.v_fait AS SELECT k, sum(montant) AS total FROM r.fait GROUP BY k;
"""


def _one(conn, query, params=None):
    with conn.cursor() as cur:
        cur.execute(query, params)
        return cur.fetchone()


def content(conn, table="r.fait"):
    return _one(conn, "SELECT count(*), sum(hashtext(t::text)::numeric), sum(montant) FROM %s t" % table)


def partitions(conn):
    with conn.cursor() as cur:
        cur.execute(
            "SELECT c.relname, pg_get_expr(c.relpartbound, c.oid) FROM pg_inherits i JOIN pg_class c "
            "ON c.oid = i.inhrelid WHERE i.inhparent = 'r.fait'::regclass ORDER BY 1"
        )
        return cur.fetchall()


def kinds(conn):
    with conn.cursor() as cur:
        cur.execute(
            "SELECT relname, relkind::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = 'r' AND relname LIKE 'fait%%' AND relkind IN ('r', 'p') AND NOT relispartition"
        )
        return dict(cur.fetchall())


def args(pg_server, db, interval, **extra):
    params = pg_server.params(db)
    params.update(
        name="r.fait", key="k", interval=interval, start="2024-01-01", premake=1, lock_timeout="2s", lock_retries=5
    )
    params.update(extra)
    return params


def yearly_set(pg_server, db, conn):
    with conn.cursor() as cur:
        cur.execute(SET)
    made = run_module("partitioned_table", args(pg_server, db, "year"))
    assert not made.get("failed"), made
    with conn.cursor() as cur:
        cur.execute(
            "INSERT INTO r.fait (k, montant, note) SELECT date '2024-01-01' + (g % 900), g % 1000, 'n' || g "
            "FROM generate_series(1, 20000) g"
        )


def test_without_repartition_another_interval_is_refused_saying_how_to_rebuild(pg_server, db, conn):
    yearly_set(pg_server, db, conn)
    before = (partitions(conn), content(conn))
    refused = run_module("partitioned_table", args(pg_server, db, "month"))
    assert refused.get("failed"), refused
    assert "are by year (" in refused["msg"] and "not by the declared interval month" in refused["msg"]
    assert "set repartition: online (or offline)" in refused["msg"]
    assert (partitions(conn), content(conn)) == before


def test_a_yearly_set_is_rebuilt_by_month_online_with_a_writer_and_a_second_run_is_quiet(pg_server, db, conn):
    yearly_set(pg_server, db, conn)
    before = content(conn)
    params = args(pg_server, db, "month", repartition="online")

    checked = run_module("partitioned_table", params, check_mode=True)
    assert not checked.get("failed"), checked
    assert checked["changed"] and checked["repartition"]["from"] == "year", checked
    assert (
        checked["repartition"]["to"] == "month"
        and "check mode shows the way back only" in checked["repartition"]["note"]
    )
    assert content(conn) == before and kinds(conn) == {"fait": "p"}

    stop, written, errors = threading.Event(), [], []

    def writer():
        other = psycopg2.connect(pg_server.dsn(db))
        other.autocommit = True
        try:
            with other.cursor() as cur:
                while not stop.is_set():
                    cur.execute("INSERT INTO r.fait (k, montant, note) VALUES (current_date, 1, 'live') RETURNING id")
                    written.append(cur.fetchone()[0])
                    time.sleep(0.005)
        except Exception as error:  # reported below
            errors.append(error)
        finally:
            other.close()

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        done = run_module("partitioned_table", params)
    finally:
        stop.set()
        thread.join(30)
    assert not done.get("failed"), done
    assert not errors, errors
    assert done["changed"] and done["repartition"]["from"] == "year" and done["repartition"]["mode"] == "online"
    months = [name for name, bound in partitions(conn) if bound != "DEFAULT"]
    assert len(months) >= 30 and all(bound.count("-01'") == 2 for _n, bound in partitions(conn) if bound != "DEFAULT")
    found = content(conn)
    assert found[0] == before[0] + len(written)
    with conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM r.fait WHERE id = ANY(%s)", (written,))
        assert cur.fetchone()[0] == len(written)
        cur.execute("DELETE FROM r.fait WHERE note = 'live'")
    assert content(conn) == before
    assert kinds(conn) == {"fait": "p", "fait_unpartitioned": "r"}  # the old set dropped once the plain one matched
    assert _one(conn, "SELECT count(*) FROM r.v_fait")[0] > 0

    again = run_module("partitioned_table", params)
    assert not again.get("failed") and again["changed"] is False, again


@pytest.mark.parametrize("there, back", [("year", "month"), ("month", "year")])
def test_offline_both_ways_with_drop_source_leaves_only_the_new_set(pg_server, db, conn, there, back):
    with conn.cursor() as cur:
        cur.execute(SET)
    assert not run_module("partitioned_table", args(pg_server, db, there)).get("failed")
    with conn.cursor() as cur:
        cur.execute(
            "INSERT INTO r.fait (k, montant, note) SELECT date '2024-01-01' + (g % 900), g % 1000, 'n' || g "
            "FROM generate_series(1, 5000) g"
        )
    before = content(conn)
    done = run_module("partitioned_table", args(pg_server, db, back, repartition="offline", drop_source=True))
    assert not done.get("failed"), done
    assert done["repartition"]["from"] == there and done["repartition"]["to"] == back
    assert content(conn) == before and kinds(conn) == {"fait": "p"}
    width = {"year": "-01-01')", "month": "-01')"}[back]
    assert all(b.endswith(width) for _n, b in partitions(conn) if b != "DEFAULT")
    again = run_module("partitioned_table", args(pg_server, db, back, repartition="offline", drop_source=True))
    assert not again.get("failed") and again["changed"] is False, again


def test_a_run_stopped_between_the_two_halves_is_finished_by_the_next_in_the_repartition_mode(pg_server, db, conn):
    yearly_set(pg_server, db, conn)
    before = content(conn)
    # the state a kill right after the way back leaves: a plain table with every row, the old set gone
    back = run_module(
        "partitioned_table", dict(args(pg_server, db, "year"), state="plain", migrate="offline", drop_source=True)
    )
    assert not back.get("failed") and kinds(conn) == {"fait": "r"}, back
    # migrate: never would refuse a plain table; the repartition's mode is the one the rebuild goes on in
    done = run_module("partitioned_table", args(pg_server, db, "month", repartition="offline", migrate="never"))
    assert not done.get("failed"), done
    assert "repartition" not in done and done["migration"]["mode"] == "offline", done
    assert content(conn) == before and kinds(conn) == {"fait": "p", "fait_unpartitioned": "r"}
