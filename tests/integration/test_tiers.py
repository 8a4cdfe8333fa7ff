"""partitioned_table tiers against a real server: old partitions move with their indexes to their tablespace, rows
intact, second run quiet, check mode writes nothing, tiers_max_per_run, refusals before any change (missing
tablespace, no CREATE privilege), a writer of the current partition not held, a lock holder named, table_info."""

import datetime
import os
import shutil
import subprocess
import tempfile
import threading
import time
import uuid

import pytest
from psycopg2 import sql

from tests.support.modules import run_module
from tests.support.pgserver import shared_root


def _args(pg_server, db, **extra):
    args = pg_server.params(db)
    args.update(lock_timeout="2s", lock_retries=1, lock_retry_delay=0.1)
    args.update(name="dwh.fact", key="d", interval="month", premake=1)
    args.update(extra)
    return args


def warnings(result):
    return [w["event"]["msg"] if isinstance(w, dict) else w for w in result.get("warnings") or []]


def month(today, shift):
    index = today.year * 12 + today.month - 1 + shift
    return datetime.date(index // 12, index % 12 + 1, 1)


def today(conn):
    with conn.cursor() as cur:
        cur.execute("SELECT current_date")
        return cur.fetchone()[0]


def make_spaces(server, conn):
    """Make tablespaces on ``server`` (``make("cold")`` returns the cluster-unique name); dropped afterwards with
    whatever the test put in them (tablespaces and roles belong to the cluster, not to the test's database)."""
    made, folders = [], []

    def make(label):
        name = "%s_%s" % (label, uuid.uuid4().hex[:8])
        folder = tempfile.mkdtemp(prefix="sigeti-ts-", dir=shared_root(server.user) if server.user else None)
        if server.user:
            os.chown(folder, *server.user)
        with conn.cursor() as cur:
            cur.execute(sql.SQL("CREATE TABLESPACE {} LOCATION %s").format(sql.Identifier(name)), (folder,))
        made.append(name)
        folders.append(folder)
        return name

    yield make
    with conn.cursor() as cur:
        cur.execute("DROP SCHEMA IF EXISTS dwh CASCADE")
        for name in made:
            cur.execute(sql.SQL("DROP TABLESPACE IF EXISTS {}").format(sql.Identifier(name)))
    for folder in folders:
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def spaces(pg_server, conn):
    """Tablespaces on the session's server (see ``make_spaces``)."""
    yield from make_spaces(pg_server, conn)


def make_fact(conn):
    """dwh.fact partitioned by month, with a primary key and one more index (its partitions made by the module)."""
    with conn.cursor() as cur:
        cur.execute("CREATE SCHEMA dwh")
        cur.execute(
            "CREATE TABLE dwh.fact (id bigint NOT NULL, d date NOT NULL, v text, PRIMARY KEY (id, d)) "
            "PARTITION BY RANGE (d)"
        )
        cur.execute("CREATE INDEX fact_v ON dwh.fact (v)")


def fill(conn, now, first=-8, rows=50):
    with conn.cursor() as cur:
        cur.execute(
            "INSERT INTO dwh.fact SELECT g, %s::date + (g %% 28), md5(g::text) FROM generate_series(1, %s) g",
            (month(now, first), rows),
        )
        for shift in range(first + 1, 2):
            cur.execute(
                "INSERT INTO dwh.fact SELECT g + %s, %s::date + (g %% 28), md5(g::text) FROM generate_series(1, %s) g",
                ((shift - first) * 10**6, month(now, shift), rows),
            )


def placement(conn):
    """``{relation: tablespace}`` of every table and index of schema dwh (0 read as pg_default)."""
    with conn.cursor() as cur:
        cur.execute(
            "SELECT c.relname, coalesce(t.spcname, 'pg_default') FROM pg_class c "
            "JOIN pg_namespace n ON n.oid = c.relnamespace LEFT JOIN pg_tablespace t ON t.oid = c.reltablespace "
            "WHERE n.nspname = 'dwh' AND c.relkind IN ('r', 'i') ORDER BY 1"
        )
        return dict(cur.fetchall())


def content(conn):
    with conn.cursor() as cur:
        cur.execute("SELECT count(*), sum(id), md5(string_agg(v, ',' ORDER BY id, d)) FROM dwh.fact")
        return cur.fetchone()


def name_of(now, shift):
    return "fact_%s" % month(now, shift).strftime("%Y%m")


def setup_set(pg_server, db, conn, rows=50):
    now = today(conn)
    make_fact(conn)
    first = run_module("partitioned_table", _args(pg_server, db, start=str(month(now, -8))))
    assert not first.get("failed"), first
    fill(conn, now, rows=rows)
    return now


def test_old_partitions_move_with_their_indexes_rows_intact_check_mode_writes_nothing(pg_server, db, conn, spaces):
    now = setup_set(pg_server, db, conn)
    cold, archive = spaces("cold"), spaces("archive")
    tiers = [{"after": 3, "tablespace": cold}, {"after": 6, "tablespace": archive}]
    args = _args(pg_server, db, start=str(month(now, -8)), tiers=tiers, tiers_max_per_run=10)
    before, rows = placement(conn), content(conn)

    checked = run_module("partitioned_table", args, check_mode=True, diff=True)
    assert not checked.get("failed"), checked
    assert checked["changed"] and placement(conn) == before
    expected = {name_of(now, s): archive for s in (-8, -7)} | {name_of(now, s): cold for s in (-6, -5, -4)}
    assert {m["partition"]: m["tablespace"] for m in checked["tiers"]["moved"]} == expected
    assert all(m["lock_seconds"] is None and m["bytes"] > 0 for m in checked["tiers"]["moved"])
    assert "%s TABLESPACE %s" % (name_of(now, -8), archive) in checked["diff"]["after"]
    assert any(q.startswith("ALTER INDEX") for q in checked["queries"])

    moved = run_module("partitioned_table", args)
    assert not moved.get("failed"), moved
    assert moved["changed"] and moved["tiers"]["remaining"] == 0
    assert {m["partition"]: m["tablespace"] for m in moved["tiers"]["moved"]} == expected
    assert all(m["method"] == "alter" and m["lock_seconds"] >= 0 for m in moved["tiers"]["moved"])
    after = placement(conn)
    for relation, tablespace in after.items():
        owner = next((p for p in expected if relation == p or relation.startswith(p + "_")), None)
        assert tablespace == (expected[owner] if owner else "pg_default"), relation
    assert sum(1 for r, t in after.items() if t == archive) == 2 * 3  # two partitions, each with its two indexes
    assert content(conn) == rows

    again = run_module("partitioned_table", args)
    assert not again.get("failed"), again
    assert not again["changed"] and again["queries"] == [] and again["tiers"] == {"moved": [], "remaining": 0}

    info = run_module("table_info", dict(pg_server.params(db), tables=["dwh.fact"]))
    report = info["tables"][0]
    assert report["tablespaces"][archive] > 0 and report["tablespaces"][cold] > 0
    assert report["tablespaces"]["pg_default"] > 0
    by_name = {p["name"]: p["tablespace"] for p in report["partitions"]}
    assert by_name[name_of(now, -8)] == archive and by_name[name_of(now, 0)] == "pg_default"


def test_tiers_max_per_run_bounds_each_run_and_the_next_runs_finish(pg_server, db, conn, spaces):
    now = setup_set(pg_server, db, conn)
    cold = spaces("cold")
    args = _args(
        pg_server, db, start=str(month(now, -8)), tiers=[{"after": 3, "tablespace": cold}], tiers_max_per_run=2
    )
    first = run_module("partitioned_table", args)
    assert [m["partition"] for m in first["tiers"]["moved"]] == [name_of(now, -8), name_of(now, -7)]
    assert first["tiers"]["remaining"] == 3
    assert any("3 more partition(s)" in w and "tiers_max_per_run=2" in w for w in warnings(first))
    second = run_module("partitioned_table", args)
    assert [m["partition"] for m in second["tiers"]["moved"]] == [name_of(now, -6), name_of(now, -5)]
    third = run_module("partitioned_table", args)
    assert [m["partition"] for m in third["tiers"]["moved"]] == [name_of(now, -4)] and third["tiers"]["remaining"] == 0
    assert not run_module("partitioned_table", args)["changed"]


def test_a_historical_set_is_created_in_its_tiers_with_its_indexes_and_stays_quiet(pg_server, db, conn, spaces):
    now = today(conn)
    make_fact(conn)
    cold = spaces("cold")
    args = _args(pg_server, db, start=str(month(now, -5)), tiers=[{"after": 2, "tablespace": cold}])
    created = run_module("partitioned_table", args)
    assert not created.get("failed"), created
    assert created["tiers"]["moved"] == []
    placed = placement(conn)
    old = [name_of(now, s) for s in (-5, -4, -3)]
    for relation, tablespace in placed.items():
        in_tier = any(relation == p or relation.startswith(p + "_") for p in old)
        assert tablespace == (cold if in_tier else "pg_default"), relation
    again = run_module("partitioned_table", args)
    assert not again["changed"] and again["queries"] == []


def test_a_missing_tablespace_is_refused_before_any_change(pg_server, db, conn, spaces):
    now = today(conn)
    make_fact(conn)
    spaces("unused")  # the fixture drops the schema afterwards
    before = placement(conn)
    args = _args(pg_server, db, start=str(month(now, -5)), tiers=[{"after": 2, "tablespace": "no_such_space"}])
    result = run_module("partitioned_table", args)
    assert result.get("failed")
    assert "no_such_space" in result["msg"] and "does not exist" in result["msg"] and "dwh.fact" in result["msg"]
    assert "Nothing was changed" in result["msg"]
    assert placement(conn) == before  # not even the partitions of the set were created


@pytest.fixture
def etl_role(pg_server, conn):
    name = "etl_%s" % uuid.uuid4().hex[:8]
    with conn.cursor() as cur:
        cur.execute("CREATE ROLE %s LOGIN PASSWORD 'etl-test-only'" % name)
    yield name
    with conn.cursor() as cur:
        cur.execute("DROP SCHEMA IF EXISTS dwh CASCADE")
        cur.execute("DROP OWNED BY %s" % name)
        cur.execute("DROP ROLE %s" % name)


def test_an_owner_without_create_on_the_tablespace_is_refused_before_any_change(pg_server, db, conn, spaces, etl_role):
    now = setup_set(pg_server, db, conn)
    cold = spaces("cold")
    with conn.cursor() as cur:
        cur.execute("GRANT USAGE, CREATE ON SCHEMA dwh TO %s" % etl_role)
        cur.execute("ALTER TABLE dwh.fact OWNER TO %s" % etl_role)
        cur.execute(
            "SELECT format('ALTER TABLE dwh.%%I OWNER TO %s', relname) FROM pg_class c JOIN pg_inherits i "
            "ON i.inhrelid = c.oid WHERE i.inhparent = 'dwh.fact'::regclass" % etl_role
        )
        for (statement,) in cur.fetchall():
            cur.execute(statement)
    before = placement(conn)
    args = _args(pg_server, db, start=str(month(now, -8)), tiers=[{"after": 3, "tablespace": cold}])
    as_superuser = run_module("partitioned_table", args)
    assert as_superuser.get("failed")
    assert "%s lack(s) CREATE on tablespace %s" % (etl_role, cold) in as_superuser["msg"]
    assert "GRANT CREATE ON TABLESPACE %s TO %s" % (cold, etl_role) in as_superuser["msg"]
    as_owner = run_module("partitioned_table", dict(args, login_user=etl_role, login_password="etl-test-only"))
    assert as_owner.get("failed") and "%s lack(s) CREATE" % etl_role in as_owner["msg"], as_owner
    assert placement(conn) == before
    with conn.cursor() as cur:
        cur.execute("GRANT CREATE ON TABLESPACE %s TO %s" % (cold, etl_role))
    granted = run_module("partitioned_table", dict(args, login_user=etl_role, login_password="etl-test-only"))
    assert not granted.get("failed") and len(granted["tiers"]["moved"]) == 3, granted


def _writer(pg_server, db, now, stop, latencies, errors):
    other = pg_server.connect(db)
    key = 9 * 10**8
    try:
        with other.cursor() as cur:
            while not stop.is_set():
                key += 1
                started = time.monotonic()
                cur.execute("INSERT INTO dwh.fact VALUES (%s, %s, 'live')", (key, now))
                latencies.append(time.monotonic() - started)
                time.sleep(0.005)
    except Exception as error:  # reported by the test
        errors.append(error)
    finally:
        other.close()


def test_a_writer_of_the_current_partition_is_not_held_by_the_moves(pg_server, db, conn, spaces):
    now = setup_set(pg_server, db, conn, rows=20000)
    cold = spaces("cold")
    stop, latencies, errors = threading.Event(), [], []
    writer = threading.Thread(target=_writer, args=(pg_server, db, now, stop, latencies, errors))
    writer.start()
    try:
        time.sleep(0.2)
        args = _args(
            pg_server,
            db,
            start=str(month(now, -8)),
            tiers=[{"after": 1, "tablespace": cold}],
            tiers_max_per_run=10,
            lock_timeout="1s",
        )
        result = run_module("partitioned_table", args)
        time.sleep(0.2)
    finally:
        stop.set()
        writer.join()
    assert not result.get("failed"), result
    assert len(result["tiers"]["moved"]) == 7 and not errors
    assert latencies and max(latencies) < 1.0, max(latencies)
    with conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM dwh.fact WHERE v = 'live'")
        assert cur.fetchone()[0] == len(latencies)


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


def test_a_lock_on_an_old_partition_gives_up_naming_the_blocker_and_a_next_run_finishes(pg_server, db, conn, spaces):
    now = setup_set(pg_server, db, conn)
    cold = spaces("cold")
    oldest = name_of(now, -8)
    args = _args(
        pg_server,
        db,
        start=str(month(now, -8)),
        tiers=[{"after": 3, "tablespace": cold}],
        tiers_max_per_run=10,
        lock_timeout="300ms",
        lock_retries=1,
    )
    ready, release, pid = threading.Event(), threading.Event(), []
    reader = threading.Thread(target=_reader, args=(pg_server, db, oldest, ready, release, pid))
    reader.start()
    try:
        assert ready.wait(10)
        before = placement(conn)
        failed = run_module("partitioned_table", args)
        after = placement(conn)
    finally:
        release.set()
        reader.join()
    assert failed.get("failed"), failed
    assert "Gave up after 2 attempts" in failed["msg"] and "pid %d" % pid[0] in failed["msg"]
    assert oldest in failed["msg"] and "stays in pg_default" in failed["msg"]
    assert failed["blocking_pids"] == [pid[0]]
    assert after == before and after[oldest] == "pg_default"
    finished = run_module("partitioned_table", args)
    assert not finished.get("failed"), finished
    assert [m["partition"] for m in finished["tiers"]["moved"]][0] == oldest
    assert placement(conn)[oldest] == cold


# --- pg_repack: a real PostgreSQL 15 with pg_repack, private to the checkout (tests/support/repack.py) ------------


@pytest.fixture
def repack_db(pg15_repack, pg15_repack_bin, request, monkeypatch):
    """A fresh database with the pg_repack extension on the pg_repack server, and its program on PATH (where
    partitioned_table looks for it); yields ``(server, name, connection)``."""
    monkeypatch.setenv("PATH", pg15_repack_bin + os.pathsep + os.environ.get("PATH", ""))
    name = "t_" + "".join(c if c.isalnum() else "_" for c in request.node.name.lower())[:55]
    pg15_repack.create_database(name)
    connection = pg15_repack.connect(name)
    with connection.cursor() as cur:
        cur.execute("CREATE EXTENSION pg_repack")
    yield pg15_repack, name, connection
    connection.close()


@pytest.fixture
def repack_spaces(repack_db):
    """Tablespaces on the pg_repack server (see ``make_spaces``)."""
    server, _name, connection = repack_db
    yield from make_spaces(server, connection)


def tablespace_of_each(conn, partition):
    """``{relation: tablespace}`` of a partition, its TOAST table and each of its indexes, from pg_class."""
    with conn.cursor() as cur:
        cur.execute(
            "SELECT c.relname, coalesce(t.spcname, 'pg_default') FROM pg_class c "
            "LEFT JOIN pg_tablespace t ON t.oid = c.reltablespace "
            "WHERE c.oid = %(p)s::regclass OR c.oid = (SELECT reltoastrelid FROM pg_class WHERE oid = %(p)s::regclass) "
            "OR c.oid IN (SELECT indexrelid FROM pg_index WHERE indrelid = %(p)s::regclass) ORDER BY 1",
            {"p": "dwh.%s" % partition},
        )
        return dict(cur.fetchall())


def _timed_writer(server, db, day, first_key, stop, done, errors):
    """Insert rows of ``day`` until ``stop``; ``done`` gets the time each insert committed."""
    other = server.connect(db)
    key = first_key
    try:
        with other.cursor() as cur:
            while not stop.is_set():
                key += 1
                cur.execute("INSERT INTO dwh.fact VALUES (%s, %s, 'live')", (key, day))
                done.append(time.monotonic())
                time.sleep(0.003)
    except Exception as error:  # reported by the test
        errors.append(error)
    finally:
        other.close()


def test_pg_repack_moves_partitions_online_with_their_indexes_and_writers_lose_nothing(repack_db, repack_spaces):
    server, db, conn = repack_db
    now = setup_set(server, db, conn, rows=20000)
    cold = repack_spaces("cold")
    oldest, second = name_of(now, -8), name_of(now, -7)
    before, rows = placement(conn), content(conn)
    args = _args(server, db, start=str(month(now, -8)), tiers=[{"after": 6, "tablespace": cold}], tiers_max_per_run=10)

    planned = run_module("partitioned_table", args, check_mode=True)
    assert not planned.get("failed"), planned
    assert planned["changed"] and placement(conn) == before
    assert [m["method"] for m in planned["tiers"]["moved"]] == ["pg_repack", "pg_repack"]
    program = os.path.join(server.bin_dir, "pg_repack")
    shown = [q for q in planned["queries"] if q.split()[0] == program]
    assert len(shown) == 2 and all("--tablespace=%s" % cold in c and "--moveidx" in c for c in shown), shown
    assert "--table=dwh.%s" % oldest in shown[0] and server.password not in str(planned)

    # one writer into the current partition, one into the oldest, the one pg_repack copies first
    stop, errors, inserted = threading.Event(), [], {"current": [], "moved": []}
    writers = [
        threading.Thread(target=_timed_writer, args=(server, db, now, 9 * 10**8, stop, inserted["current"], errors)),
        threading.Thread(
            target=_timed_writer, args=(server, db, month(now, -8), 8 * 10**8, stop, inserted["moved"], errors)
        ),
    ]
    for writer in writers:
        writer.start()
    try:
        time.sleep(0.2)
        started = time.monotonic()
        result = run_module("partitioned_table", args)
        ended = time.monotonic()
        time.sleep(0.2)
    finally:
        stop.set()
        for writer in writers:
            writer.join()
    assert not result.get("failed"), result
    assert not errors, errors
    assert warnings(result) == []
    assert [(m["partition"], m["method"], m["lock_seconds"]) for m in result["tiers"]["moved"]] == [
        (oldest, "pg_repack", None),
        (second, "pg_repack", None),
    ]
    commands = [q for q in result["queries"] if "pg_repack" in q.split()[0]]
    assert len(commands) == 2 and all("--tablespace=%s" % cold in c and "--moveidx" in c for c in commands)
    assert server.password not in str(result)
    # the writers went on during the moves, and every row they inserted is there
    for name, times in inserted.items():
        assert [t for t in times if started < t < ended], "no insert into the %s partition during the run" % name
    with conn.cursor() as cur:
        cur.execute("SELECT count(*) FILTER (WHERE d = %s), count(*) FILTER (WHERE d = %s) FROM dwh.fact "
                    "WHERE v = 'live'", (now, month(now, -8)))  # fmt: skip
        assert cur.fetchone() == (len(inserted["current"]), len(inserted["moved"]))
        cur.execute("SELECT count(*), sum(id), md5(string_agg(v, ',' ORDER BY id, d)) FROM dwh.fact WHERE v <> 'live'")
        assert cur.fetchone() == rows
        cur.execute("SELECT count(*) FROM dwh.%s WHERE v = 'live'" % oldest)
        assert cur.fetchone()[0] == len(inserted["moved"])
    # the partition, its TOAST table and each of its indexes in the tier (pg_class.reltablespace); nothing else moved
    for partition in (oldest, second):
        placed = tablespace_of_each(conn, partition)
        assert len(placed) == 4 and set(placed.values()) == {cold}, placed  # table, TOAST, its two indexes
    after = placement(conn)
    moved = {r for r in after if r in (oldest, second) or r.startswith((oldest + "_", second + "_"))}
    assert {r: t for r, t in after.items() if r not in moved} == {r: t for r, t in before.items() if r not in moved}
    with conn.cursor() as cur:
        cur.execute("SELECT c.relname FROM pg_namespace n JOIN pg_class c ON c.relnamespace = n.oid "
                    "WHERE n.nspname = 'repack' AND c.relname ~ '^(log|table)_[0-9]+$'")  # fmt: skip
        assert cur.fetchall() == []  # pg_repack left none of its work tables (log_<oid>, table_<oid>) behind

    again = run_module("partitioned_table", args)
    assert not again.get("failed"), again
    assert not again["changed"] and again["queries"] == [] and again["tiers"] == {"moved": [], "remaining": 0}


def repack_leftovers(conn):
    """pg_repack's work tables and triggers still in the database (none after a run that ended, even giving up)."""
    with conn.cursor() as cur:
        cur.execute(
            "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = 'repack' AND c.relname ~ '^(log|table)_[0-9]+$' "
            "UNION ALL SELECT tgname FROM pg_trigger WHERE tgname LIKE 'repack_%' ORDER BY 1"
        )
        return [r[0] for r in cur.fetchall()]


def test_pg_repack_gives_up_on_a_locked_partition_naming_the_blocker_and_a_next_run_moves_it(repack_db, repack_spaces):
    server, db, conn = repack_db
    now = setup_set(server, db, conn)
    cold = repack_spaces("cold")
    oldest = name_of(now, -8)
    args = _args(server, db, start=str(month(now, -8)), tiers=[{"after": 6, "tablespace": cold}], lock_timeout="300ms")
    ready, release, pid = threading.Event(), threading.Event(), []
    reader = threading.Thread(target=_reader, args=(server, db, oldest, ready, release, pid))
    reader.start()
    try:
        assert ready.wait(10)
        before = placement(conn)
        failed = run_module("partitioned_table", args)
        after = placement(conn)
    finally:
        release.set()
        reader.join()
    assert failed.get("failed"), failed
    assert "Gave up after 2 attempts: pg_repack could not lock dwh.%s" % oldest in failed["msg"], failed["msg"]
    assert "pid %d" % pid[0] in failed["msg"] and "stays in pg_default" in failed["msg"]
    assert failed["blocking_pids"] == [pid[0]] and failed["tiers"]["failed"] == oldest
    assert server.password not in str(failed)
    assert after == before and repack_leftovers(conn) == []
    finished = run_module("partitioned_table", args)
    assert not finished.get("failed"), finished
    assert [(m["partition"], m["method"]) for m in finished["tiers"]["moved"]][0] == (oldest, "pg_repack")
    assert set(tablespace_of_each(conn, oldest).values()) == {cold}


def test_pg_repack_is_not_used_without_a_superuser_nor_with_a_program_of_another_version(
    repack_db, repack_spaces, tmp_path, monkeypatch
):
    server, db, conn = repack_db
    now = setup_set(server, db, conn)
    cold, archive = repack_spaces("cold"), repack_spaces("archive")
    role = "etl_%s" % uuid.uuid4().hex[:8]
    with conn.cursor() as cur:
        cur.execute("CREATE ROLE %s LOGIN PASSWORD 'etl-test-only'" % role)
        cur.execute("GRANT USAGE, CREATE ON SCHEMA dwh TO %s" % role)
        cur.execute("GRANT CREATE ON TABLESPACE %s, %s TO %s" % (cold, archive, role))
        cur.execute("ALTER TABLE dwh.fact OWNER TO %s" % role)
        cur.execute(
            "SELECT format('ALTER TABLE dwh.%%I OWNER TO %s', relname) FROM pg_class c JOIN pg_inherits i "
            "ON i.inhrelid = c.oid WHERE i.inhparent = 'dwh.fact'::regclass" % role
        )
        for (statement,) in cur.fetchall():
            cur.execute(statement)
    try:
        # the table's owner, not a superuser: pg_repack 1.4 refuses it, so the module moves by ALTER and says why
        args = _args(server, db, start=str(month(now, -8)), tiers=[{"after": 7, "tablespace": cold}])
        owner = run_module("partitioned_table", dict(args, login_user=role, login_password="etl-test-only"))
        assert not owner.get("failed"), owner
        assert [(m["partition"], m["method"]) for m in owner["tiers"]["moved"]] == [(name_of(now, -8), "alter")]
        assert any("pg_repack needs a superuser connection" in w for w in warnings(owner)), warnings(owner)
        assert set(tablespace_of_each(conn, name_of(now, -8)).values()) == {cold}

        # a pg_repack program whose version is not the extension's is not run
        with conn.cursor() as cur:
            cur.execute("SELECT extversion FROM pg_extension WHERE extname = 'pg_repack'")
            version = cur.fetchone()[0]
        fake = tmp_path / "bin" / "pg_repack"
        fake.parent.mkdir()
        fake.write_text("#!/bin/sh\necho 'pg_repack 0.9.9'\n[ \"$1\" = --version ] || touch %s\n" % (tmp_path / "ran"))
        fake.chmod(0o755)
        monkeypatch.setenv("PATH", str(fake.parent) + os.pathsep + os.environ["PATH"])
        args = _args(server, db, start=str(month(now, -8)), tiers=[{"after": 6, "tablespace": archive}])
        other = run_module("partitioned_table", args)
        assert not other.get("failed"), other
        assert [m["method"] for m in other["tiers"]["moved"]] == ["alter", "alter"]
        assert any(
            "pg_repack program 0.9.9 does not match the extension version %s" % version in w for w in warnings(other)
        ), warnings(other)
        assert not (tmp_path / "ran").exists()
        assert set(tablespace_of_each(conn, name_of(now, -7)).values()) == {archive}

        # pg_repack_path names the real program: it is used, whatever PATH finds first
        real = os.path.join(server.bin_dir, "pg_repack")
        args = _args(server, db, start=str(month(now, -8)), tiers=[{"after": 6, "tablespace": cold}])
        named = run_module("partitioned_table", dict(args, pg_repack_path=real))
        assert not named.get("failed"), named
        assert {m["method"] for m in named["tiers"]["moved"]} == {"pg_repack"}, named["tiers"]
        assert set(tablespace_of_each(conn, name_of(now, -7)).values()) == {cold}
    finally:
        with conn.cursor() as cur:
            cur.execute("DROP SCHEMA IF EXISTS dwh CASCADE")
            cur.execute("DROP OWNED BY %s" % role)
            cur.execute("DROP ROLE %s" % role)


def test_a_tablespace_name_pg_repack_cannot_pass_is_moved_to_by_alter_with_a_warning(repack_db, repack_spaces):
    # pg_repack 1.4.8 writes --tablespace unquoted into its CREATE INDEX: given "Cold_..." it fails (tablespace
    # "cold_..." does not exist) and the move with it
    server, db, conn = repack_db
    now = setup_set(server, db, conn)
    cold = repack_spaces("Cold")
    args = _args(server, db, start=str(month(now, -8)), tiers=[{"after": 6, "tablespace": cold}])
    result = run_module("partitioned_table", args)
    assert not result.get("failed"), result
    assert [(m["partition"], m["method"]) for m in result["tiers"]["moved"]] == [
        (name_of(now, -8), "alter"),
        (name_of(now, -7), "alter"),
    ]
    assert any('pg_repack cannot move partitions to tablespace "%s"' % cold in w for w in warnings(result))
    for shift in (-8, -7):
        assert set(tablespace_of_each(conn, name_of(now, shift)).values()) == {cold}
    assert not run_module("partitioned_table", args)["changed"]


def test_tiers_of_a_tables_entry(pg_server, db, conn, spaces):
    now = setup_set(pg_server, db, conn)
    cold = spaces("cold")
    entry = {"name": "dwh.fact", "key": "d", "interval": "month", "premake": 1, "start": str(month(now, -8))}
    entry.update(tiers=[{"after": 6, "tablespace": cold}], tiers_max_per_run=1)
    args = dict(pg_server.params(db), lock_timeout="2s", tables=[entry])
    result = run_module("partitioned_table", args)
    assert not result.get("failed"), result
    tiers = result["results"][0]["tiers"]
    assert [m["partition"] for m in tiers["moved"]] == [name_of(now, -8)] and tiers["remaining"] == 1
    assert placement(conn)[name_of(now, -8)] == cold


ROLE_PLAYBOOK = """
- name: The partitioning role, planning
  hosts: dwh_servers
  gather_facts: false
  roles:
    - role: sigeti.dwh.partitioning
  post_tasks:
    - name: Show the moves each table would get
      ansible.builtin.debug:
        msg: "moves {{ dwh_partitioning_results.results | map(attribute='tiers') | map(attribute='moved')
              | map('map', attribute='partition') | map('list') | list }}"
"""


def test_the_partitioning_role_passes_tiers_from_a_dwh_tables_entry(pg_server, db, conn, spaces, tmp_path):
    from tests.integration.test_roles_helpers import play, write_inventory

    now = setup_set(pg_server, db, conn)
    cold = spaces("cold")
    tables = [
        {"name": "dwh.fact", "key": "d", "key_format": "date", "interval": "month", "premake": 1,
         "start": str(month(now, -8)), "tiers": [{"after": 6, "tablespace": cold}], "tiers_max_per_run": 5},
    ]  # fmt: skip
    playbook = tmp_path / "partitioning.yml"
    playbook.write_text(ROLE_PLAYBOOK)
    inventory = write_inventory(tmp_path / "a.yml", {"dwh1": (pg_server, db)}, {"dwh_tables": tables})
    before = placement(conn)
    planned = play(str(playbook), inventory, pg_server.password, check=True)
    assert planned.returncode == 0, planned.stdout[-3000:]
    assert "moves [['%s', '%s']]" % (name_of(now, -8), name_of(now, -7)) in planned.stdout, planned.stdout[-3000:]
    assert placement(conn) == before


def test_too_little_room_on_a_visible_tablespace_is_refused_before_any_change(pg_server, db, conn, spaces, monkeypatch):
    from ansible_collections.sigeti.dwh.plugins.module_utils.tiering import run as tier_run

    now = setup_set(pg_server, db, conn)
    cold = spaces("cold")
    seen = []
    real = tier_run.filesystem_free

    def tiny(location, data_directory, port):
        found = real(location, data_directory, port)  # the real statvfs of the tablespace's folder: visible here
        seen.append((location, found.visible))
        return found._replace(free_bytes=100)

    monkeypatch.setattr(tier_run, "filesystem_free", tiny)
    before = placement(conn)
    args = _args(pg_server, db, start=str(month(now, -8)), tiers=[{"after": 6, "tablespace": cold}])
    result = run_module("partitioned_table", args)
    assert result.get("failed"), result
    assert "tablespace %s needs" % cold in result["msg"] and "but %s has 100 free" % cold in result["msg"]
    assert "Nothing was changed" in result["msg"] and placement(conn) == before
    assert seen and all(visible for _location, visible in seen), seen


def test_a_table_created_by_the_run_gets_its_old_partitions_in_their_tier(pg_server, db, conn, spaces):
    now = today(conn)
    with conn.cursor() as cur:
        cur.execute("CREATE SCHEMA dwh")
    cold = spaces("cold")
    columns = [{"name": "id", "type": "bigint"}, {"name": "d", "type": "date", "not_null": True}]
    args = _args(pg_server, db, start=str(month(now, -3)), tiers=[{"after": 1, "tablespace": cold}], columns=columns)
    result = run_module("partitioned_table", args)
    assert not result.get("failed"), result
    placed = placement(conn)
    assert placed[name_of(now, -3)] == cold and placed[name_of(now, -2)] == cold
    assert placed[name_of(now, -1)] == "pg_default" and placed[name_of(now, 0)] == "pg_default"
    assert not run_module("partitioned_table", args)["changed"]


@pytest.fixture
def small_space(pg_server, conn):
    """A tablespace on a 1 MiB tmpfs owned by the server's user: a real nearly full disk (root only)."""
    if os.geteuid() != 0 or not pg_server.user:
        pytest.skip("mounting a file system for the server's user needs root")
    folder = tempfile.mkdtemp(prefix="sigeti-ts-small-", dir=shared_root(pg_server.user))
    uid, gid = pg_server.user
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=1m,mode=0700,uid=%d,gid=%d" % (uid, gid), "tmpfs", folder],
        capture_output=True,
        check=False,
    )
    if done.returncode != 0:
        shutil.rmtree(folder, ignore_errors=True)
        pytest.skip("cannot mount a tmpfs here: %s" % done.stderr.decode().strip())
    name = "small_%s" % uuid.uuid4().hex[:8]
    with conn.cursor() as cur:
        cur.execute("CREATE TABLESPACE %s LOCATION %%s" % name, (folder,))
    yield name
    with conn.cursor() as cur:
        cur.execute("DROP SCHEMA IF EXISTS dwh CASCADE")
        cur.execute("DROP TABLESPACE IF EXISTS %s" % name)
    subprocess.run(["umount", folder], check=False)
    shutil.rmtree(folder, ignore_errors=True)


def test_a_tablespace_on_a_full_small_disk_is_refused_before_any_change(pg_server, db, conn, small_space):
    # the room check on the real file system (statvfs of a 1 MiB tmpfs), not a patched one
    now = setup_set(pg_server, db, conn, rows=8000)
    before, rows = placement(conn), content(conn)
    args = _args(pg_server, db, start=str(month(now, -8)), tiers=[{"after": 6, "tablespace": small_space}])
    result = run_module("partitioned_table", args)
    assert result.get("failed"), result
    assert "tablespace %s needs" % small_space in result["msg"] and "Nothing was changed" in result["msg"], result
    assert placement(conn) == before and content(conn) == rows
