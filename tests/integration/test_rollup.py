"""partitioned_table rollup against a real server: a daily set rolled up into months with every row intact (count,
sums, a whole-row checksum), the partition list as expected, a second run quiet; check mode and diff change nothing;
max_per_run; a writer of the current partition loses nothing and is not held; a lock on a merged partition gives up
naming its holder with nothing changed, and the next run finishes; a leftover ``_sgt_rollup`` table is dropped and
the merge redone; premake and retention after a roll-up; bad input refused with nothing changed."""

import datetime
import threading
import time

import pytest

from tests.integration.test_tiers import make_spaces, placement
from tests.support.modules import run_module

AFTER = 30  # days


def month(day, shift=0):
    index = day.year * 12 + day.month - 1 + shift
    return datetime.date(index // 12, index % 12 + 1, 1)


def today(conn):
    with conn.cursor() as cur:
        cur.execute("SELECT current_date")
        return cur.fetchone()[0]


def _args(pg_server, db, now, **extra):
    args = pg_server.params(db)
    args.update(lock_timeout="2s", lock_retries=1, lock_retry_delay=0.1)
    args.update(name="dwh.fact", key="d", interval="day", premake=2, start=str(month(now, -5)))
    args.update(max_new_partitions=400)
    args.update(extra)
    return args


def setup_set(pg_server, db, conn, rows_per_day=20):
    """dwh.fact by day from the first day of five months ago, a primary key and an index, rows every day."""
    now = today(conn)
    with conn.cursor() as cur:
        cur.execute("CREATE SCHEMA dwh")
        cur.execute(
            "CREATE TABLE dwh.fact (id bigint NOT NULL, d date NOT NULL, v text, n numeric(12,2), "
            "PRIMARY KEY (id, d)) PARTITION BY RANGE (d)"
        )
        cur.execute("CREATE INDEX fact_v ON dwh.fact (v)")
    created = run_module("partitioned_table", _args(pg_server, db, now))
    assert not created.get("failed"), created
    with conn.cursor() as cur:
        cur.execute(
            "INSERT INTO dwh.fact SELECT g, %s::date + (g %% (%s::date - %s::date + 1))::int, md5(g::text), "
            "g / 7.0 FROM generate_series(1, %s) g",
            (month(now, -5), now, month(now, -5), rows_per_day * ((now - month(now, -5)).days + 1)),
        )
        cur.execute("ANALYZE dwh.fact")
    return now


def due_months(now, after=AFTER):
    """The months whose end is at most ``after`` days before today's start, from five months ago."""
    out, point = [], month(now, -5)
    while month(point, 1) <= now - datetime.timedelta(days=after):
        out.append(point)
        point = month(point, 1)
    return out


def content(conn):
    with conn.cursor() as cur:
        cur.execute(
            "SELECT count(*), sum(id), sum(n), sum(hashtext(f::text)::numeric), md5(string_agg(v, ',' ORDER BY id)) "
            "FROM dwh.fact f"
        )
        return cur.fetchone()


def partitions(conn):
    """``[(name, bound)]`` of dwh.fact's partitions in bound order."""
    with conn.cursor() as cur:
        cur.execute(
            "SELECT c.relname, pg_get_expr(c.relpartbound, c.oid) FROM pg_inherits i JOIN pg_class c ON "
            "c.oid = i.inhrelid WHERE i.inhparent = 'dwh.fact'::regclass ORDER BY c.relname"
        )
        return cur.fetchall()


def names(conn):
    return [name for name, _bound in partitions(conn)]


def expected_names(now, merged, premake=2, first=None):
    first = first or month(now, -5)
    out = {"fact_%s" % m.strftime("%Y%m") for m in merged}
    day = first
    last = now + datetime.timedelta(days=premake)
    while day <= last:
        if month(day) not in merged:
            out.add("fact_%s" % day.strftime("%Y%m%d"))
        day += datetime.timedelta(days=1)
    return sorted(out | {"fact_default"})


def rollup(max_per_run=10, after=AFTER, interval="month"):
    return {"after": after, "interval": interval, "max_per_run": max_per_run}


def test_a_daily_set_rolls_up_into_months_rows_intact_and_a_second_run_is_quiet(pg_server, db, conn):
    now = setup_set(pg_server, db, conn)
    before = content(conn)
    due = due_months(now)
    assert len(due) >= 3
    args = _args(pg_server, db, now, rollup=rollup())
    result = run_module("partitioned_table", args)
    assert not result.get("failed"), result
    assert result["changed"]
    assert [m["partition"] for m in result["rollup"]["merged"]] == ["fact_%s" % m.strftime("%Y%m") for m in due]
    assert result["rollup"]["remaining"] == 0
    assert content(conn) == before
    assert names(conn) == expected_names(now, due)
    bounds = dict(partitions(conn))
    first = due[0]
    assert bounds["fact_%s" % first.strftime("%Y%m")] == "FOR VALUES FROM ('%s') TO ('%s')" % (first, month(first, 1))
    assert sorted(p["name"] for p in result["partitions"]) == expected_names(now, due)
    with conn.cursor() as cur:
        # the parent's indexes have their copies on the merged partition, attached; no helper constraint is left
        cur.execute(
            "SELECT count(*) FROM pg_index i JOIN pg_inherits h ON h.inhrelid = i.indexrelid "
            "WHERE i.indrelid = %s::regclass",
            ("dwh.fact_%s" % first.strftime("%Y%m"),),
        )
        assert cur.fetchone()[0] == 2
        cur.execute("SELECT count(*) FROM pg_constraint WHERE conname LIKE '%%sgt%%'")
        assert cur.fetchone()[0] == 0
        cur.execute("SELECT count(*) FROM pg_class WHERE relname LIKE '%%sgt_rollup'")
        assert cur.fetchone()[0] == 0
        cur.execute("SELECT indisvalid FROM pg_index WHERE indexrelid = 'dwh.fact_v'::regclass")
        assert cur.fetchone()[0] is True
    again = run_module("partitioned_table", args)
    assert not again.get("failed"), again
    assert again["changed"] is False, again["queries"]
    assert again["rollup"] == {"merged": [], "remaining": 0}
    assert content(conn) == before


def test_check_mode_and_diff_change_nothing_and_max_per_run_bounds_each_run(pg_server, db, conn):
    now = setup_set(pg_server, db, conn, rows_per_day=5)
    due = due_months(now)
    before, listed = content(conn), partitions(conn)
    args = _args(pg_server, db, now, rollup=rollup(max_per_run=1))
    checked = run_module("partitioned_table", args, check_mode=True, diff=True)
    assert not checked.get("failed"), checked
    assert checked["changed"] and partitions(conn) == listed and content(conn) == before
    oldest = "fact_%s" % due[0].strftime("%Y%m")
    assert [m["partition"] for m in checked["rollup"]["merged"]] == [oldest]
    assert checked["rollup"]["remaining"] == len(due) - 1
    assert "%s FROM (%s) TO (%s) (rollup of" % (oldest, due[0], month(due[0], 1)) in checked["diff"]["after"]
    assert any("ATTACH PARTITION" in q and oldest + "_sgt_rollup" in q for q in checked["queries"])
    for number in range(1, len(due) + 1):
        done = run_module("partitioned_table", args)
        assert not done.get("failed"), done
        assert [m["partition"] for m in done["rollup"]["merged"]] == ["fact_%s" % due[number - 1].strftime("%Y%m")]
        assert done["rollup"]["remaining"] == len(due) - number
        assert names(conn) == expected_names(now, due[:number])
    assert content(conn) == before
    assert run_module("partitioned_table", args)["changed"] is False


def _writer(pg_server, db, now, stop, latencies, errors):
    other = pg_server.connect(db)
    key = 9 * 10**8
    try:
        with other.cursor() as cur:
            while not stop.is_set():
                key += 1
                started = time.monotonic()
                cur.execute("INSERT INTO dwh.fact VALUES (%s, %s, 'live', 1)", (key, now))
                latencies.append(time.monotonic() - started)
                time.sleep(0.005)
    except Exception as error:  # reported by the test
        errors.append(error)
    finally:
        other.close()


def test_a_writer_of_the_current_partition_loses_nothing_and_is_not_held(pg_server, db, conn):
    now = setup_set(pg_server, db, conn, rows_per_day=300)
    due = due_months(now)
    stop, latencies, errors = threading.Event(), [], []
    writer = threading.Thread(target=_writer, args=(pg_server, db, now, stop, latencies, errors))
    writer.start()
    try:
        time.sleep(0.2)
        result = run_module("partitioned_table", _args(pg_server, db, now, rollup=rollup(), lock_timeout="1s"))
        time.sleep(0.2)
    finally:
        stop.set()
        writer.join()
    assert not result.get("failed"), result
    assert len(result["rollup"]["merged"]) == len(due) and not errors
    assert latencies and max(latencies) < 1.0, max(latencies)
    with conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM dwh.fact WHERE v = 'live'")
        assert cur.fetchone()[0] == len(latencies)
    assert names(conn) == expected_names(now, due)


def _reader(pg_server, db, relation, ready, release, pid):
    other = pg_server.connect(db, autocommit=False)
    with other.cursor() as cur:
        cur.execute("SELECT pg_backend_pid()")
        pid.append(cur.fetchone()[0])
        cur.execute("SELECT count(*) FROM dwh.%s" % relation)
        ready.set()
        release.wait(30)
    other.rollback()
    other.close()


def test_a_lock_on_a_merged_partition_gives_up_naming_the_blocker_and_the_next_run_finishes(pg_server, db, conn):
    now = setup_set(pg_server, db, conn, rows_per_day=5)
    due = due_months(now)
    source = "fact_%s" % (due[0] + datetime.timedelta(days=3)).strftime("%Y%m%d")
    args = _args(pg_server, db, now, rollup=rollup(max_per_run=1), lock_timeout="300ms")
    before, listed = content(conn), partitions(conn)
    ready, release, pid = threading.Event(), threading.Event(), []
    reader = threading.Thread(target=_reader, args=(pg_server, db, source, ready, release, pid))
    reader.start()
    try:
        assert ready.wait(10)
        failed = run_module("partitioned_table", args)
        after = partitions(conn)
    finally:
        release.set()
        reader.join()
    assert failed.get("failed"), failed
    assert "Gave up after 2 attempts" in failed["msg"] and "pid %d" % pid[0] in failed["msg"], failed["msg"]
    assert "stay as they were" in failed["msg"] and failed["changed"] is False
    assert failed["blocking_pids"] == [pid[0]]
    assert after == listed and content(conn) == before
    finished = run_module("partitioned_table", args)
    assert not finished.get("failed"), finished
    assert [m["partition"] for m in finished["rollup"]["merged"]] == ["fact_%s" % due[0].strftime("%Y%m")]
    assert content(conn) == before


def test_a_leftover_helper_table_is_dropped_and_the_merge_redone(pg_server, db, conn):
    now = setup_set(pg_server, db, conn, rows_per_day=5)
    due = due_months(now)
    helper = "fact_%s_sgt_rollup" % due[0].strftime("%Y%m")
    with conn.cursor() as cur:
        cur.execute("CREATE TABLE dwh.%s (LIKE dwh.fact)" % helper)
        cur.execute("INSERT INTO dwh.%s VALUES (1, %%s, 'half', 1)" % helper, (due[0],))
    before = content(conn)
    result = run_module("partitioned_table", _args(pg_server, db, now, rollup=rollup(max_per_run=1)))
    assert not result.get("failed"), result
    assert any(q.startswith("DROP TABLE IF EXISTS") and helper in q for q in result["queries"])
    assert content(conn) == before
    assert names(conn) == expected_names(now, due[:1])
    with conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM pg_class WHERE relname = %s", (helper,))
        assert cur.fetchone()[0] == 0


def test_premake_and_retention_keep_working_after_a_rollup(pg_server, db, conn):
    now = setup_set(pg_server, db, conn, rows_per_day=5)
    due = due_months(now)
    first = run_module("partitioned_table", _args(pg_server, db, now, rollup=rollup()))
    assert not first.get("failed"), first
    # more periods ahead: new daily partitions; retention dropping the oldest merged month as one partition
    keep = (now - month(due[0], 1)).days
    retention = {"keep": keep, "action": "drop", "max_per_run": 5}
    args = _args(pg_server, db, now, rollup=rollup(), premake=5, retention=retention)
    second = run_module("partitioned_table", args)
    assert not second.get("failed"), second
    assert second["dropped"] == ["fact_%s" % due[0].strftime("%Y%m")]
    assert len(second["created"]) == 3
    assert names(conn) == [n for n in expected_names(now, due, premake=5) if n != "fact_%s" % due[0].strftime("%Y%m")]
    with conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM dwh.fact WHERE d < %s", (month(due[0], 1),))
        assert cur.fetchone()[0] == 0
    third = run_module("partitioned_table", args)
    assert not third.get("failed"), third
    assert third["changed"] is False, third["queries"]


def test_bad_rollup_input_is_refused_with_nothing_changed(pg_server, db, conn):
    now = setup_set(pg_server, db, conn, rows_per_day=2)
    listed = partitions(conn)
    refused = run_module("partitioned_table", _args(pg_server, db, now, rollup={"after": -1, "interval": "month"}))
    assert refused.get("failed") and "rollup.after=-1" in refused["msg"] and "dwh.fact" in refused["msg"], refused
    monthly = _args(pg_server, db, now, interval="month", start=str(month(now, -5)))
    refused = run_module("partitioned_table", dict(monthly, rollup={"after": 1, "interval": "month"}))
    assert refused.get("failed") and "not coarser than the declared interval month" in refused["msg"], refused
    assert "quarter or year" in refused["msg"]
    assert partitions(conn) == listed


def test_rollup_of_a_tables_entry(pg_server, db, conn):
    now = setup_set(pg_server, db, conn, rows_per_day=2)
    due = due_months(now)
    entry = {"name": "dwh.fact", "key": "d", "interval": "day", "premake": 2, "start": str(month(now, -5))}
    entry.update(max_new_partitions=400, rollup={"after": AFTER, "interval": "month"})
    result = run_module("partitioned_table", dict(pg_server.params(db), lock_timeout="2s", tables=[entry]))
    assert not result.get("failed"), result
    merged = result["results"][0]["rollup"]
    assert [m["partition"] for m in merged["merged"]] == ["fact_%s" % due[0].strftime("%Y%m")]
    assert merged["remaining"] == len(due) - 1


ROLE_PLAYBOOK = """
- name: The partitioning role, planning
  hosts: dwh_servers
  gather_facts: false
  roles:
    - role: sigeti.dwh.partitioning
  post_tasks:
    - name: Show the merges each table would get
      ansible.builtin.debug:
        msg: "merged {{ dwh_partitioning_results.results | map(attribute='rollup') | map(attribute='merged')
              | map('map', attribute='partition') | map('list') | list }}"
"""


def test_the_partitioning_role_passes_rollup_from_a_dwh_tables_entry(pg_server, db, conn, tmp_path):
    from tests.integration.test_roles_helpers import play, write_inventory

    now = setup_set(pg_server, db, conn, rows_per_day=2)
    due = due_months(now)
    tables = [
        {"name": "dwh.fact", "key": "d", "key_format": "date", "interval": "day", "premake": 2,
         "start": str(month(now, -5)), "max_new_partitions": 400,
         "rollup": {"after": AFTER, "interval": "month", "max_per_run": 2}},
    ]  # fmt: skip
    playbook = tmp_path / "partitioning.yml"
    playbook.write_text(ROLE_PLAYBOOK)
    inventory = write_inventory(tmp_path / "a.yml", {"dwh1": (pg_server, db)}, {"dwh_tables": tables})
    listed = partitions(conn)
    planned = play(str(playbook), inventory, pg_server.password, check=True)
    assert planned.returncode == 0, planned.stdout[-3000:]
    merged = ["fact_%s" % m.strftime("%Y%m") for m in due[:2]]
    assert "merged [%s]" % str(merged) in planned.stdout, planned.stdout[-3000:]
    assert partitions(conn) == listed


def _late_writer(pg_server, db, day, stop, inserted, errors):
    """Late rows of an old period (the roll-up's SHARE lock makes each wait): one short transaction each."""
    other = pg_server.connect(db)
    key = 8 * 10**8
    try:
        with other.cursor() as cur:
            while not stop.is_set():
                key += 1
                cur.execute("INSERT INTO dwh.fact VALUES (%s, %s, 'late', 1)", (key, day))
                inserted.append(key)
                time.sleep(0.05)
    except Exception as error:  # reported by the test
        errors.append(error)
    finally:
        other.close()


def test_a_writer_of_a_merged_period_is_never_a_deadlock_victim_and_loses_nothing(pg_server, db, conn):
    now = setup_set(pg_server, db, conn, rows_per_day=200)
    due = due_months(now)
    before = content(conn)[0]
    stop, inserted, errors = threading.Event(), [], []
    late = due[0] + datetime.timedelta(days=10)
    writer = threading.Thread(target=_late_writer, args=(pg_server, db, late, stop, inserted, errors))
    writer.start()
    try:
        time.sleep(0.2)
        args = _args(pg_server, db, now, rollup=rollup(max_per_run=1), lock_retries=10, lock_retry_delay=0.05)
        result = run_module("partitioned_table", args)
        time.sleep(0.2)
    finally:
        stop.set()
        writer.join()
    assert not errors, errors  # the writer waited, it was never the one PostgreSQL ended
    with conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM dwh.fact WHERE v = 'late'")
        assert cur.fetchone()[0] == len(inserted)
    assert content(conn)[0] == before + len(inserted)
    if result.get("failed"):  # every attempt met the writer: given up cleanly, nothing merged
        assert "deadlock" in result["msg"] and result["changed"] is False, result["msg"]
        assert names(conn) == expected_names(now, [])
    else:
        assert [m["partition"] for m in result["rollup"]["merged"]] == ["fact_%s" % due[0].strftime("%Y%m")]
        assert names(conn) == expected_names(now, due[:1])


@pytest.fixture
def spaces(pg_server, conn):
    """Tablespaces on the session's server, as test_tiers makes them."""
    yield from make_spaces(pg_server, conn)


def test_merged_partitions_stay_in_their_tier_with_their_indexes(pg_server, db, conn, spaces):
    now = setup_set(pg_server, db, conn, rows_per_day=2)
    due = due_months(now)
    cold = spaces("cold")
    tiers = {"tiers": [{"after": AFTER, "tablespace": cold}], "tiers_max_per_run": 400}
    moved = run_module("partitioned_table", _args(pg_server, db, now, **tiers))
    assert not moved.get("failed") and moved["tiers"]["moved"], moved
    before = content(conn)
    merged = run_module("partitioned_table", _args(pg_server, db, now, rollup=rollup(), **tiers))
    assert not merged.get("failed"), merged
    assert len(merged["rollup"]["merged"]) == len(due) and merged["tiers"]["moved"] == []
    assert content(conn) == before
    places = placement(conn)
    for point in due:
        name = "fact_%s" % point.strftime("%Y%m")
        assert places[name] == cold
        assert places["%s_fact_pkey" % name] == cold and places["%s_fact_v" % name] == cold
    again = run_module("partitioned_table", _args(pg_server, db, now, rollup=rollup(), **tiers))
    assert not again.get("failed") and again["changed"] is False, again.get("queries")


def test_an_epoch_keyed_daily_set_rolls_up_into_months_of_local_midnights(pg_server, db, conn):
    from tests.integration.test_epoch_keys import bounds, epoch_of, in_zone
    from tests.support.fingerprint import content as fingerprint

    conn = in_zone(pg_server, db, conn, "Europe/Paris")
    try:
        now = today(conn)
        columns = [{"name": "id", "type": "bigint"}, {"name": "clock", "type": "bigint"}, {"name": "v", "type": "int"}]
        args = _args(pg_server, db, now, name="ev", key="clock", key_format="epoch", columns=columns)
        created = run_module("partitioned_table", args)
        assert not created.get("failed"), created
        first, last = epoch_of(conn, str(month(now, -5))), epoch_of(conn, str(now))
        with conn.cursor() as cur:
            cur.execute(
                "INSERT INTO ev SELECT g, %s + (g * 7919) %% %s, g FROM generate_series(1, 5000) g",
                (first, last - first),
            )
        before = fingerprint(conn, "public", "ev")
        due = due_months(now)
        merged = run_module("partitioned_table", dict(args, rollup=rollup()))
        assert not merged.get("failed"), merged
        assert [m["partition"] for m in merged["rollup"]["merged"]] == ["ev_%s" % m.strftime("%Y%m") for m in due]
        found = bounds(conn, "ev")
        for point in due:
            low, high = epoch_of(conn, str(point)), epoch_of(conn, str(month(point, 1)))
            assert found["ev_%s" % point.strftime("%Y%m")] == (low, high)
        assert fingerprint(conn, "public", "ev") == before
        again = run_module("partitioned_table", dict(args, rollup=rollup()))
        assert not again.get("failed") and again["changed"] is False, again.get("queries")
    finally:
        conn.close()


def test_a_parent_index_made_after_a_rollup_gets_its_copy_on_the_merged_partitions(pg_server, db, conn):
    now = setup_set(pg_server, db, conn, rows_per_day=2)
    due = due_months(now)
    args = _args(pg_server, db, now, rollup=rollup())
    assert not run_module("partitioned_table", args).get("failed")
    with conn.cursor() as cur:
        cur.execute("CREATE INDEX fact_n ON ONLY dwh.fact (n)")
    indexed = run_module("partitioned_table", args)
    assert not indexed.get("failed"), indexed
    with conn.cursor() as cur:
        cur.execute(
            "SELECT count(*) FROM pg_inherits h JOIN pg_index i ON i.indexrelid = h.inhrelid "
            "WHERE h.inhparent = 'dwh.fact_n'::regclass AND i.indisvalid"
        )
        assert cur.fetchone()[0] == len(expected_names(now, due))  # every partition, the default included
        cur.execute("SELECT indisvalid FROM pg_index WHERE indexrelid = 'dwh.fact_n'::regclass")
        assert cur.fetchone()[0] is True
    assert run_module("partitioned_table", args)["changed"] is False


def test_a_period_with_a_gap_is_refused_naming_it_with_nothing_changed(pg_server, db, conn):
    now = setup_set(pg_server, db, conn, rows_per_day=2)
    due = due_months(now)
    missing = due[1] + datetime.timedelta(days=9)
    with conn.cursor() as cur:
        cur.execute("DROP TABLE dwh.fact_%s" % missing.strftime("%Y%m%d"))
    listed, before = partitions(conn), content(conn)
    # start after the gap, so the partition plan does not create the missing day again
    args = _args(pg_server, db, now, start=str(month(now, -1)), rollup=rollup())
    refused = run_module("partitioned_table", args)
    assert refused.get("failed"), refused
    assert "period %s of dwh.fact" % due[1].strftime("%Y%m") in refused["msg"], refused["msg"]
    assert "FROM '%s' TO '%s'" % (missing, missing + datetime.timedelta(days=1)) in refused["msg"]
    assert "nothing was changed" in refused["msg"]
    assert partitions(conn) == listed and content(conn) == before
