"""sigeti.dwh.vacuum against a real server: only what is due runs, with reasons; guarded rewrites; idempotence."""

import os
import subprocess

import psycopg2
import pytest

from tests.support.modules import run_module


def _args(pg_server, db, **extra):
    args = pg_server.params(db)
    args.update(extra)
    return args


def flush(conn):
    """Make this session's table counters visible now (PostgreSQL 15+ flushes them asynchronously).

    PostgreSQL 14 has no pg_stat_force_next_flush(): a backend sends its counters to the stats collector at the
    end of a transaction at most every 500 ms, so wait that long and end one more transaction; the next reader's
    snapshot request reaches the collector after those counters.
    """
    with conn.cursor() as cur:
        cur.execute("SELECT current_setting('server_version_num')::int >= 150000")
        if cur.fetchone()[0]:
            cur.execute("SELECT pg_stat_force_next_flush()")
        else:
            cur.execute("SELECT pg_sleep(0.6)")
            if not conn.autocommit:
                conn.commit()
            cur.execute("SELECT 1")
            if not conn.autocommit:
                conn.commit()


def stats(conn, name):
    with conn.cursor() as cur:
        cur.execute(
            "SELECT n_dead_tup, last_vacuum, last_analyze, pg_relation_size(relid) FROM pg_stat_all_tables "
            "WHERE relid = %s::regclass",
            (name,),
        )
        return cur.fetchone()


def relation(result, name):
    for table in result["tables"]:
        for rel in table["relations"]:
            if rel["name"] == name:
                return rel
    raise AssertionError("no relation %s in %s" % (name, result))


def make_table(conn, name="dwh.t", rows=20000, pk=True):
    """A table autovacuum leaves alone (so tests see only the module's work), with a ~40-byte row."""
    with conn.cursor() as cur:
        cur.execute("SELECT 1 FROM pg_namespace WHERE nspname = 'dwh'")
        if not cur.fetchone():
            cur.execute("CREATE SCHEMA dwh")
        cur.execute(
            "CREATE TABLE %s (id int %s, v text) WITH (autovacuum_enabled = off, "
            "toast.autovacuum_enabled = off)" % (name, "PRIMARY KEY" if pk else "NOT NULL")
        )
        cur.execute("INSERT INTO %s SELECT i, md5(i::text) FROM generate_series(1, %d) i" % (name, rows))
    flush(conn)


def settle(pg_server, db, **extra):
    """First run: analyzes and vacuums what a fresh load needs, so the test starts from a maintained state."""
    result = run_module("vacuum", _args(pg_server, db, **extra))
    assert not result.get("failed"), result
    return result


def test_bloat_by_updates_vacuums_with_reasons_then_nothing(pg_server, db, conn):
    make_table(conn)
    first = settle(pg_server, db, tables=["dwh.t"], full="never")
    assert first["changed"] and first["queries"] == ['VACUUM (ANALYZE) "dwh"."t"']
    with conn.cursor() as cur:
        cur.execute("UPDATE dwh.t SET v = v WHERE id % 2 = 0")
    flush(conn)
    result = run_module("vacuum", _args(pg_server, db, tables=["dwh.t"], full="never"))
    assert not result.get("failed"), result
    assert result["changed"] is True
    rel = relation(result, "t")
    vac = rel["decisions"]["vacuum"]
    assert vac["due"] and vac["n_dead_tup"] == 10000 and vac["trigger"] == 50 + int(0.2 * 20000)
    assert "10000 dead rows > vacuum trigger 4050" in vac["reason"]
    assert rel["decisions"]["analyze"]["due"], "10000 changes > analyze trigger 2050"
    assert result["queries"] == ['VACUUM (ANALYZE) "dwh"."t"']
    assert rel["actions"][0]["duration_ms"] >= 0 and rel["actions"][0]["lock"] == "SHARE UPDATE EXCLUSIVE"
    assert rel["sizes_before"]["heap_bytes"] > 0 and rel["sizes_after"]["heap_bytes"] > 0
    assert rel["stats_after"]["n_dead_tup"] == 0
    assert stats(conn, "dwh.t")[0] == 0
    again = run_module("vacuum", _args(pg_server, db, tables=["dwh.t"], full="never"))
    assert again["changed"] is False and again["queries"] == [], again["queries"]
    assert "<= vacuum trigger" in relation(again, "t")["decisions"]["vacuum"]["reason"]


def test_toast_dead_chunks_alone_make_vacuum_due(pg_server, db, conn):
    with conn.cursor() as cur:
        cur.execute("CREATE SCHEMA dwh")
        cur.execute(
            "CREATE TABLE dwh.docs (id int PRIMARY KEY, body text) WITH (autovacuum_enabled = off, "
            "toast.autovacuum_enabled = off)"
        )
        # 40 rows of ~3.2 kB of hex (pglz barely compresses it): stored out of line, 2 TOAST chunks each
        cur.execute(
            "INSERT INTO dwh.docs SELECT i, CASE WHEN i <= 40 THEN (SELECT string_agg(md5(i::text || g), '') "
            "FROM generate_series(1, 100) g) ELSE 'short' END FROM generate_series(1, 1000) i"
        )
    flush(conn)
    settle(pg_server, db, tables=["dwh.docs"], full="never")
    with conn.cursor() as cur:
        cur.execute("UPDATE dwh.docs SET body = body || 'x' WHERE id <= 40")
    flush(conn)
    result = run_module("vacuum", _args(pg_server, db, tables=["dwh.docs"], full="never"))
    vac = relation(result, "docs")["decisions"]["vacuum"]
    assert vac["n_dead_tup"] <= vac["trigger"], vac  # the heap alone would not be vacuumed
    assert vac["due"] and vac["toast_n_dead_tup"] > vac["toast_trigger"] and "TOAST:" in vac["reason"], vac
    assert result["queries"] == ['VACUUM "dwh"."docs"']
    assert run_module("vacuum", _args(pg_server, db, tables=["dwh.docs"], full="never"))["changed"] is False


def test_check_mode_plans_and_runs_nothing(pg_server, db, conn):
    make_table(conn)
    before = stats(conn, "dwh.t")
    result = run_module("vacuum", _args(pg_server, db, tables=["dwh.t"]), check_mode=True)
    assert not result.get("failed"), result
    assert result["changed"] is True and result["queries"] == ['VACUUM (ANALYZE) "dwh"."t"']
    assert "never analyzed" in relation(result, "t")["decisions"]["analyze"]["reason"]
    assert "sizes_after" not in relation(result, "t")
    assert stats(conn, "dwh.t") == before
    assert before[1] is None and before[2] is None


def test_partitioned_parent_is_analyzed_after_partition_changes(pg_server, db, conn):
    with conn.cursor() as cur:
        cur.execute("CREATE SCHEMA dwh")
        cur.execute("CREATE TABLE dwh.f (id int, d date NOT NULL, v text) PARTITION BY RANGE (d)")
        for year in (2024, 2025):
            cur.execute(
                "CREATE TABLE dwh.f_%d PARTITION OF dwh.f FOR VALUES FROM ('%d-01-01') TO ('%d-01-01') "
                "WITH (autovacuum_enabled = off)" % (year, year, year + 1)
            )
        cur.execute("INSERT INTO dwh.f SELECT i, DATE '2024-01-01' + i % 700, 'x' FROM generate_series(1, 6000) i")
    flush(conn)
    with conn.cursor() as cur:  # PostgreSQL 18+ analyzes the parent alone (ANALYZE ONLY): its leaves are done
        cur.execute("SELECT current_setting('server_version_num')::int >= 180000")
        analyze_parent = 'ANALYZE ONLY "dwh"."f"' if cur.fetchone()[0] else 'ANALYZE "dwh"."f"'
    first = settle(pg_server, db, tables=["dwh.f"])
    parent = relation(first, "f")
    assert parent["kind"] == "partitioned" and parent["decisions"]["analyze"]["due"]
    assert first["queries"][-1] == analyze_parent
    assert run_module("vacuum", _args(pg_server, db, tables=["dwh.f"]))["changed"] is False
    with conn.cursor() as cur:  # changes in one partition only, above its analyze trigger
        cur.execute("UPDATE dwh.f SET v = 'y' WHERE d >= '2025-01-01'")
        cur.execute("SELECT last_analyze FROM pg_stat_all_tables WHERE relid = 'dwh.f'::regclass")
        parent_analyzed = cur.fetchone()[0]
    flush(conn)
    result = run_module("vacuum", _args(pg_server, db, tables=["dwh.f"]))
    assert result["changed"] is True
    assert "f_2025" in relation(result, "f")["decisions"]["analyze"]["reason"]
    assert result["queries"][-1] == analyze_parent
    assert not any("f_2024" in q for q in result["queries"])
    with conn.cursor() as cur:
        cur.execute("SELECT last_analyze FROM pg_stat_all_tables WHERE relid = 'dwh.f'::regclass")
        assert cur.fetchone()[0] > parent_analyzed
    assert run_module("vacuum", _args(pg_server, db, tables=["dwh.f"]))["changed"] is False


def test_full_auto_with_catalog_estimate_rewrites_then_nothing(pg_server, db, conn):
    make_table(conn)
    settle(pg_server, db, tables=["dwh.t"], min_size="0")
    with conn.cursor() as cur:
        cur.execute("DELETE FROM dwh.t WHERE id % 5 < 3")
    flush(conn)
    size_before = stats(conn, "dwh.t")[3]
    result = run_module("vacuum", _args(pg_server, db, tables=["dwh.t"], min_size="0"))
    assert not result.get("failed"), result
    assert result["bloat_method"] == "estimate"
    full = relation(result, "t")["decisions"]["full"]
    assert full["due"] and full["measured_by"] == "estimate" and full["bloat"] > 0.5, full
    assert full["method"] == "vacuum_full" and "not installed" in full["method_reason"]
    assert full["disk"]["checked"] is True and full["disk"]["ok"] is True
    assert result["queries"] == ['VACUUM (FULL) "dwh"."t"', 'VACUUM (ANALYZE) "dwh"."t"']
    rel = relation(result, "t")
    assert rel["sizes_after"]["heap_bytes"] < 0.5 * rel["sizes_before"]["heap_bytes"]
    assert stats(conn, "dwh.t")[3] < size_before
    again = run_module("vacuum", _args(pg_server, db, tables=["dwh.t"], min_size="0"))
    assert again["changed"] is False, again["queries"]
    assert relation(again, "t")["decisions"]["full"]["bloat"] < 0.3


def test_full_auto_measured_by_pgstattuple(pg_server, db, conn):
    with conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM pg_available_extensions WHERE name = 'pgstattuple'")
        if not cur.fetchone()[0]:
            pytest.skip("pgstattuple is not available on this server build")
        cur.execute("CREATE EXTENSION pgstattuple")
    make_table(conn)
    settle(pg_server, db, tables=["dwh.t"], full="never")
    with conn.cursor() as cur:
        cur.execute("DELETE FROM dwh.t WHERE id % 5 < 3")
    flush(conn)
    result = run_module("vacuum", _args(pg_server, db, tables=["dwh.t"], min_size="0", bloat_threshold=0.5))
    assert result["bloat_method"] == "pgstattuple"
    full = relation(result, "t")["decisions"]["full"]
    assert full["measured_by"] == "pgstattuple" and full["due"] and full["bloat"] > 0.5, full
    assert 'VACUUM (FULL) "dwh"."t"' in result["queries"]
    assert run_module("vacuum", _args(pg_server, db, tables=["dwh.t"], min_size="0"))["changed"] is False


def test_full_refused_on_low_disk_changes_nothing(pg_server, db, conn):
    make_table(conn)
    settle(pg_server, db, tables=["dwh.t"], full="never")
    with conn.cursor() as cur:
        cur.execute("DELETE FROM dwh.t WHERE id % 5 < 3")
    flush(conn)
    before = stats(conn, "dwh.t")
    result = run_module("vacuum", _args(pg_server, db, tables=["dwh.t"], min_size="0", min_free_space="1000TB"))
    assert result.get("failed"), result
    assert "VACUUM FULL refused, nothing was changed" in result["msg"]
    assert "not enough free disk" in result["msg"] and "free <" in result["msg"] and "1000.00 TiB" in result["msg"]
    assert result["disk"][0]["free_bytes"] > 0
    assert stats(conn, "dwh.t") == before, "the plain vacuum that was also due must not have run"


def test_lock_held_elsewhere_fails_naming_the_blocker(pg_server, db, conn):
    make_table(conn)
    blocker = pg_server.connect(db, autocommit=False)
    try:
        with blocker.cursor() as cur:
            cur.execute("LOCK TABLE dwh.t IN SHARE UPDATE EXCLUSIVE MODE")
            cur.execute("SELECT pg_backend_pid()")
            pid = cur.fetchone()[0]
        result = run_module(
            "vacuum",
            _args(pg_server, db, tables=["dwh.t"], lock_timeout="100ms", lock_retries=1, lock_retry_delay=0.05),
        )
    finally:
        blocker.rollback()
        blocker.close()
    assert result.get("failed"), result
    assert "Gave up after 2 attempts" in result["msg"] and "pid %d" % pid in result["msg"]
    assert result["blocking_pids"] == [pid]
    assert stats(conn, "dwh.t")[1] is None


def test_vacuum_full_waits_at_most_lock_timeout_behind_a_reader(pg_server, db, conn):
    make_table(conn)
    settle(pg_server, db, tables=["dwh.t"], full="never")
    reader = pg_server.connect(db, autocommit=False)
    try:
        with reader.cursor() as cur:
            cur.execute("SELECT count(*) FROM dwh.t")  # holds ACCESS SHARE until rollback
            cur.execute("SELECT pg_backend_pid()")
            pid = cur.fetchone()[0]
        size = stats(conn, "dwh.t")[3]
        result = run_module(
            "vacuum",
            _args(
                pg_server,
                db,
                tables=["dwh.t"],
                full="always",
                lock_timeout="100ms",
                lock_retries=1,
                lock_retry_delay=0.05,
            ),
        )
    finally:
        reader.rollback()
        reader.close()
    assert result.get("failed"), result
    assert "pid %d" % pid in result["msg"] and "AccessShareLock" in result["msg"]
    assert result["failed_sql"] == 'VACUUM (FULL) "dwh"."t"' and result["queries"] == []
    assert stats(conn, "dwh.t")[3] == size


def test_non_superuser_owner(pg_server, db, conn):
    with conn.cursor() as cur:
        cur.execute("DROP ROLE IF EXISTS dwh_owner_vac")
        cur.execute("CREATE ROLE dwh_owner_vac LOGIN PASSWORD 'owner-pw'")
        cur.execute("CREATE SCHEMA dwh AUTHORIZATION dwh_owner_vac")
        cur.execute("SELECT count(*) FROM pg_available_extensions WHERE name = 'pgstattuple'")
        if cur.fetchone()[0]:
            cur.execute("CREATE EXTENSION pgstattuple")  # installed, but the owner may not call it
    owner = psycopg2.connect(pg_server.dsn(db, user="dwh_owner_vac", password="owner-pw"))
    owner.autocommit = True
    try:
        make_table(owner)
        args = pg_server.params(db, user="dwh_owner_vac", password="owner-pw")
        args.update(tables=["dwh.t"], min_size="0")
        first = run_module("vacuum", args)
        assert not first.get("failed"), first
        assert first["queries"] == ['VACUUM (ANALYZE) "dwh"."t"']
        with owner.cursor() as cur:
            cur.execute("DELETE FROM dwh.t WHERE id % 5 < 3")
        flush(owner)
        result = run_module("vacuum", args)
        assert not result.get("failed"), result
        assert result["bloat_method"] == "estimate"
        full = relation(result, "t")["decisions"]["full"]
        assert full["due"] and full["method"] == "vacuum_full"
        assert full["disk"]["checked"] is False and "not visible" in full["disk"]["reason"]
        assert result["queries"][0] == 'VACUUM (FULL) "dwh"."t"'
        assert run_module("vacuum", args)["changed"] is False
        required = run_module("vacuum", dict(args, full="always", disk_check="required"))
        assert required.get("failed") and "disk_check is required" in required["msg"]
    finally:
        owner.close()
        with conn.cursor() as cur:
            cur.execute("DROP SCHEMA dwh CASCADE")
            cur.execute("DROP ROLE dwh_owner_vac")


def test_freeze_old_partitions_once(pg_server, db, conn):
    with conn.cursor() as cur:
        cur.execute("CREATE SCHEMA dwh")
        cur.execute("CREATE TABLE dwh.f (id int, k int NOT NULL) PARTITION BY RANGE (k)")
        cur.execute(
            "CREATE TABLE dwh.f_2020 PARTITION OF dwh.f FOR VALUES FROM (20200101) TO (20210101) "
            "WITH (autovacuum_enabled = off)"
        )
        cur.execute(
            "CREATE TABLE dwh.f_2099 PARTITION OF dwh.f FOR VALUES FROM (20990101) TO (21000101) "
            "WITH (autovacuum_enabled = off)"
        )
        cur.execute("INSERT INTO dwh.f SELECT i, 20200101 + i % 28 FROM generate_series(1, 3000) i")
        cur.execute("INSERT INTO dwh.f SELECT i, 20990101 + i % 28 FROM generate_series(1, 3000) i")
    flush(conn)
    settle(pg_server, db, tables=["dwh.f"])  # plain vacuum + analyze: not a freeze
    result = run_module("vacuum", _args(pg_server, db, tables=["dwh.f"], freeze_older_than=2))
    assert not result.get("failed"), result
    assert 'VACUUM (FREEZE) "dwh"."f_2020"' in result["queries"]
    freeze = relation(result, "f_2020")["decisions"]["freeze"]
    assert freeze["due"] and freeze["periods_ago"] >= 2 and "not frozen" in freeze["reason"]
    assert not relation(result, "f_2099")["decisions"]["freeze"]["due"]
    again = run_module("vacuum", _args(pg_server, db, tables=["dwh.f"], freeze_older_than=2))
    assert again["changed"] is False, again["queries"]
    assert "already frozen" in relation(again, "f_2020")["decisions"]["freeze"]["reason"]


def test_autovacuum_reloptions_on_leaves_set_and_reset_idempotently(pg_server, db, conn):
    with conn.cursor() as cur:
        cur.execute("CREATE SCHEMA dwh")
        cur.execute("CREATE TABLE dwh.f (id int, k int NOT NULL) PARTITION BY RANGE (k)")
        cur.execute(
            "CREATE TABLE dwh.f_1 PARTITION OF dwh.f FOR VALUES FROM (0) TO (10) "
            "WITH (autovacuum_enabled = off, autovacuum_analyze_threshold = 7)"
        )
        cur.execute("ANALYZE dwh.f")
    declared = {
        "autovacuum_vacuum_scale_factor": 0.02,
        "toast.autovacuum_enabled": False,
        "autovacuum_analyze_threshold": None,
    }
    result = run_module("vacuum", _args(pg_server, db, tables=["dwh.f"], autovacuum=declared))
    assert not result.get("failed"), result
    assert result["queries"][0] == (
        'ALTER TABLE "dwh"."f_1" SET ("autovacuum_vacuum_scale_factor" = \'0.02\'), '
        'RESET ("autovacuum_analyze_threshold")'
    )
    with conn.cursor() as cur:
        cur.execute("SELECT reloptions FROM pg_class WHERE oid = 'dwh.f_1'::regclass")
        assert sorted(cur.fetchone()[0]) == ["autovacuum_enabled=off", "autovacuum_vacuum_scale_factor=0.02"]
    again = run_module("vacuum", _args(pg_server, db, tables=["dwh.f"], autovacuum=declared))
    assert again["changed"] is False, again["queries"]
    bad = run_module("vacuum", _args(pg_server, db, tables=["dwh.f"], autovacuum={"fillfactor": 70}))
    assert bad.get("failed") and "not an autovacuum storage parameter" in bad["msg"]


@pytest.mark.parametrize(
    "extra, words",
    [
        ({"tables": ["dwh.nope"]}, "dwh.nope do not exist"),
        ({"schemas": ["nowhere"]}, "nowhere do not exist"),
        ({"tables": ["dwh.t"], "bloat_threshold": 1.5}, "bloat_threshold=1.5 is out of range"),
        ({"tables": ["dwh.t"], "min_size": "lots"}, "min_size='lots' is not a size"),
        ({"tables": ["dwh.t"], "freeze_older_than": -2}, "freeze_older_than"),
        ({"tables": ["dwh.t"], "full": "always", "full_method": "pg_repack"}, "CREATE EXTENSION pg_repack"),
        ({}, "no table given"),
    ],
)
def test_bad_input_fails_clearly_and_changes_nothing(pg_server, db, conn, extra, words):
    make_table(conn)
    result = run_module("vacuum", _args(pg_server, db, **extra))
    assert result.get("failed") and words in result["msg"], result
    assert stats(conn, "dwh.t")[1:3] == (None, None)


# --- pg_repack: Debian's PostgreSQL 15 with postgresql-15-repack, private to the checkout (tests/support/repack.py) --


@pytest.fixture
def pg15(pg15_repack):
    return pg15_repack


def test_pg_repack_rewrites_online_and_refuses_without_key(pg15, pg15_repack_bin):
    db = pg15.create_database("repack_test")
    conn = pg15.connect(db)
    try:
        with conn.cursor() as cur:
            cur.execute("CREATE EXTENSION pg_repack")
        make_table(conn, "dwh.t")
        make_table(conn, "dwh.nokey", pk=False)
        args = dict(pg15.params(db), pg_repack_path=os.path.join(pg15_repack_bin, "pg_repack"))
        settle(pg15, db, tables=["dwh.t", "dwh.nokey"], full="never")
        with conn.cursor() as cur:
            cur.execute("DELETE FROM dwh.t WHERE id % 5 < 3")
            cur.execute("DELETE FROM dwh.nokey WHERE id % 5 < 3")
        flush(conn)
        refused = run_module("vacuum", dict(args, tables=["dwh.t", "dwh.nokey"], min_size="0", full_method="pg_repack"))
        assert refused.get("failed") and "dwh.nokey" in refused["msg"] and "no primary key" in refused["msg"]
        assert "full_method: vacuum_full" in refused["msg"]
        result = run_module("vacuum", dict(args, tables=["dwh.t", "dwh.nokey"], min_size="0"))
        assert not result.get("failed"), result
        full_t = relation(result, "t")["decisions"]["full"]
        assert full_t["method"] == "pg_repack" and result["repack"]["available"]
        assert relation(result, "nokey")["decisions"]["full"]["method"] == "vacuum_full"
        assert len(result["commands"]) == 1 and "--table=dwh.t" in result["commands"][0]
        assert pg15.password not in str(result)
        rel = relation(result, "t")
        assert rel["actions"][0]["method"] == "pg_repack" and rel["actions"][0]["duration_ms"] >= 0
        assert rel["sizes_after"]["heap_bytes"] < 0.5 * rel["sizes_before"]["heap_bytes"]
        with conn.cursor() as cur:
            cur.execute("SELECT count(*) FROM dwh.t")
            assert cur.fetchone()[0] == 8000
        again = run_module("vacuum", dict(args, tables=["dwh.t", "dwh.nokey"], min_size="0"))
        assert again["changed"] is False, again["queries"]
    finally:
        conn.close()


def test_pg_repack_gets_the_password_in_its_environment_never_on_its_command_line(
    pg15, pg15_repack_bin, tmp_path, monkeypatch
):
    # a wrapper records the command line the module runs, then runs the real pg_repack; a wrong PGPASSWORD inherited
    # from the environment must not reach it (the module's own password must)
    log = tmp_path / "argv.log"
    wrapper = tmp_path / "pg_repack"
    wrapper.write_text(
        '#!/bin/sh\nprintf "%%s\\n" "$@" >> %s\n[ -n "$PGPASSWORD" ] && echo "(PGPASSWORD set)" >> %s\nexec %s "$@"\n'
        % (log, log, os.path.join(pg15_repack_bin, "pg_repack"))
    )
    wrapper.chmod(0o755)
    monkeypatch.setenv("PGPASSWORD", "wrong-inherited-password")
    db = pg15.create_database("repack_password")
    conn = pg15.connect(db)
    try:
        with conn.cursor() as cur:
            cur.execute("CREATE EXTENSION pg_repack")
        make_table(conn, "dwh.t")
        args = dict(pg15.params(db), tables=["dwh.t"], pg_repack_path=str(wrapper), min_size="0")
        settle(pg15, db, tables=["dwh.t"], full="never")
        with conn.cursor() as cur:
            cur.execute("DELETE FROM dwh.t WHERE id % 5 < 3")
        flush(conn)
        result = run_module("vacuum", dict(args, full_method="pg_repack"))
        assert not result.get("failed"), result
        assert relation(result, "t")["actions"][0]["method"] == "pg_repack"
        recorded = log.read_text()
        assert "--table=dwh.t" in recorded and "--no-password" in recorded and "(PGPASSWORD set)" in recorded
        assert pg15.password not in recorded and "wrong-inherited-password" not in recorded
        assert pg15.password not in str(result)
    finally:
        conn.close()


def test_pg_repack_is_refused_without_a_superuser_or_with_a_program_of_another_version(pg15, pg15_repack_bin, tmp_path):
    db = pg15.create_database("repack_refusals")
    conn = pg15.connect(db)
    role = "owner_repack"
    try:
        with conn.cursor() as cur:
            cur.execute("CREATE EXTENSION pg_repack")
            cur.execute("SELECT extversion FROM pg_extension WHERE extname = 'pg_repack'")
            version = cur.fetchone()[0]
            cur.execute("DROP ROLE IF EXISTS %s" % role)
            cur.execute("CREATE ROLE %s LOGIN PASSWORD 'owner-test-only'" % role)
        make_table(conn, "dwh.t")
        with conn.cursor() as cur:
            cur.execute("ALTER TABLE dwh.t OWNER TO %s" % role)
            cur.execute("GRANT USAGE ON SCHEMA dwh TO %s" % role)
        program = os.path.join(pg15_repack_bin, "pg_repack")
        args = dict(pg15.params(db), tables=["dwh.t"], pg_repack_path=program)
        settle(pg15, db, tables=["dwh.t"], full="never")
        with conn.cursor() as cur:
            cur.execute("DELETE FROM dwh.t WHERE id % 5 < 3")
        flush(conn)
        before = stats(conn, "dwh.t")
        owner = dict(args, login_user=role, login_password="owner-test-only", min_size="0", disk_check="never")
        # the table's owner, not a superuser: pg_repack 1.4 refuses it
        refused = run_module("vacuum", dict(owner, full_method="pg_repack"))
        assert refused.get("failed") and "pg_repack needs a superuser connection" in refused["msg"], refused
        assert "Nothing was changed" in refused["msg"] and stats(conn, "dwh.t") == before
        fallback = run_module("vacuum", owner)
        assert not fallback.get("failed"), fallback
        assert relation(fallback, "t")["decisions"]["full"]["method"] == "vacuum_full"
        assert "superuser" in fallback["repack"]["reason"] and fallback["commands"] == []
        # a superuser, but a program whose version is not the extension's: not run
        with conn.cursor() as cur:
            cur.execute("DELETE FROM dwh.t WHERE id % 5 = 3")
        flush(conn)
        fake = tmp_path / "pg_repack"
        fake.write_text("#!/bin/sh\necho 'pg_repack 0.9.9'\n[ \"$1\" = --version ] || touch %s\n" % (tmp_path / "ran"))
        fake.chmod(0o755)
        other = run_module("vacuum", dict(args, pg_repack_path=str(fake), min_size="0", full_method="pg_repack"))
        assert other.get("failed"), other
        assert "pg_repack program 0.9.9 does not match the extension version %s" % version in other["msg"], other
        assert not (tmp_path / "ran").exists()
    finally:
        with conn.cursor() as cur:
            cur.execute("DROP SCHEMA IF EXISTS dwh CASCADE")
            cur.execute("DROP OWNED BY %s" % role)
            cur.execute("DROP ROLE %s" % role)
        conn.close()


def test_pg_repack_binary_is_found(pg15_repack_bin, monkeypatch):
    from ansible_collections.sigeti.dwh.plugins.module_utils.vacuum.run import find_pg_repack

    def run_command(argv, handle_exceptions=True):  # AnsibleModule.run_command's contract, for a direct call
        del handle_exceptions
        done = subprocess.run(argv, capture_output=True, text=True, check=False)
        return done.returncode, done.stdout, done.stderr

    program = os.path.join(pg15_repack_bin, "pg_repack")
    printed = subprocess.run([program, "--version"], capture_output=True, text=True, check=True).stdout.split()[1]
    assert find_pg_repack(program, 150018, run_command) == (program, printed)  # pg_repack_path
    monkeypatch.setenv("PATH", pg15_repack_bin + os.pathsep + os.environ.get("PATH", ""))
    path, version = find_pg_repack(None, 150018, run_command)  # PATH
    assert (path, version) == (program, printed) and version[0].isdigit()
    monkeypatch.setenv("PATH", "/nonexistent")
    if not os.path.exists("/usr/lib/postgresql/15/bin/pg_repack") and not os.path.exists("/usr/pgsql-15/bin/pg_repack"):
        assert find_pg_repack(None, 150018, run_command) == (None, None)
    assert find_pg_repack(os.path.join(pg15_repack_bin, "postgres"), 150018, run_command) == (None, None)


def test_a_failed_pg_repack_download_says_what_failed_and_how(tmp_path, monkeypatch):
    from tests.support import repack

    monkeypatch.setattr(repack, "CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(repack, "_run", lambda argv, cwd=None: (100, "E: simulated failure of %s" % argv[-1]))
    with pytest.raises(repack.RepackUnavailable) as raised:
        repack.download(str(tmp_path / "cache" / "download"))
    message = str(raised.value)
    assert "apt-get download postgresql-15-repack failed" in message and "simulated failure of update" in message
    assert "Debian's package registry reachable" in message and "nothing is installed into the system" in message
