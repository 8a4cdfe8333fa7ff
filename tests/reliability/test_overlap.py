"""Overlapping runs: one changing run per table at a time (session-level advisory lock, as pg_partman does).

Real overlaps are an AWX schedule and a cron line, or a rerun while the first run still copies. Two runs of the same
online migration started together used to copy the same heap pages twice into the shadow table and wedge the
migration for good. Here pairs of the same call start at the same instant in two processes; afterwards every row is
there exactly once, no capture trigger or migration state is left, and the next run changes nothing.
"""

import multiprocessing
import os
import time
from multiprocessing.pool import ThreadPool

import pytest

from ansible_collections.sigeti.dwh.plugins.module_utils.session import runlock
from tests.reliability.harness import setup_migration
from tests.support import fingerprint as fp
from tests.support.modules import run_module

PAIRS = int(os.environ.get("SIGETI_OVERLAP_PAIRS", "10"))


def _migration_args(server, db, **extra):
    args = server.params(db)
    args.update(
        name="mg.fait",
        key="date_key",
        key_format="yyyymmdd",
        interval="year",
        premake=1,
        migrate="online",
        batch_rows=400,
        extend_primary_key=True,
        lock_timeout="2s",
        lock_retries=4,
        lock_retry_delay=0.5,
    )
    args.update(extra)
    return args


def _run_in_child(name, args, barrier, results):
    # a child process: the module runs in-process there, exactly as Ansible would run it on the host
    barrier.wait(timeout=120)
    results.put(run_module(name, args))


def _run_pair(name, args):
    """Start the same module call twice at the same instant in two processes; return both results.

    The children are spawned, not forked: a fork of this (threaded) pytest-xdist worker can inherit a lock held by
    another thread and hang for good; both wait at one barrier once imported, then call the module together.
    """
    context = multiprocessing.get_context("spawn")
    results = context.Queue()
    barrier = context.Barrier(2)
    children = [context.Process(target=_run_in_child, args=(name, args, barrier, results)) for _child in range(2)]
    for child in children:
        child.start()
    outcome = [results.get(timeout=240) for _child in children]
    for child in children:
        child.join(timeout=30)
    return outcome


def _leftovers(conn):
    """Capture triggers on mg tables, migration state rows and shadow/log tables left by a migration."""
    with conn.cursor() as cur:
        cur.execute(
            "SELECT c.relname || '.' || t.tgname FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid "
            "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'mg' AND NOT t.tgisinternal"
        )
        found = [r[0] for r in cur.fetchall()]
        cur.execute("SELECT to_regclass('sigeti_dwh.migration_state') IS NOT NULL")
        if cur.fetchone()[0]:
            cur.execute("SELECT 'state: ' || schema_name || '.' || table_name FROM sigeti_dwh.migration_state")
            found += [r[0] for r in cur.fetchall()]
        cur.execute(
            "SELECT 'invalid index: ' || indexrelid::regclass::text FROM pg_index WHERE NOT indisvalid "
            "AND indrelid IN (SELECT oid FROM pg_class WHERE relnamespace = 'mg'::regnamespace)"
        )
        found += [r[0] for r in cur.fetchall()]
    return found


@pytest.mark.parametrize("pair", range(PAIRS))
def test_two_runs_of_one_online_migration_never_wedge_it(pg_server, db, conn, pair):
    setup_migration(conn, rows=4000)
    before = fp.content(conn, "mg", "fait")
    first, second = _run_pair("partitioned_table", _migration_args(pg_server, db))

    failures = [r["msg"] for r in (first, second) if r.get("failed")]
    assert not failures, failures  # the second run waited for the first, then found the work done
    assert sum(1 for r in (first, second) if r.get("migration")) == 1  # exactly one of them migrated
    assert fp.content(conn, "mg", "fait") == before  # every row exactly once
    with conn.cursor() as cur:
        cur.execute("SELECT count(*), count(DISTINCT id) FROM mg.fait")
        assert cur.fetchone() == (4000, 4000)
        cur.execute("SELECT relkind FROM pg_class WHERE oid = 'mg.fait'::regclass")
        assert cur.fetchone()[0] == "p"
    assert _leftovers(conn) == []
    again = run_module("partitioned_table", _migration_args(pg_server, db))
    assert not again.get("failed"), again.get("msg")
    assert again["changed"] is False


def _hold_run_lock(pg_server, db, table, application_name="nightly-etl-run"):
    other = pg_server.connect(db, application_name=application_name)
    schema, name = table.split(".")
    assert runlock.try_lock(other, schema, name)
    return other


def _short_budget(args):
    args.update(lock_timeout="200ms", lock_retries=1, lock_retry_delay=0.1)
    return args


@pytest.mark.parametrize(
    "module, extra",
    [
        ("partitioned_table", {}),
        ("compression", {"name": "mg.fait", "columns": {"note": "lz4"}}),
        ("vacuum", {"tables": ["mg.fait"], "analyze": "always"}),
    ],
)
def test_a_second_run_waits_its_budget_then_names_the_first(pg_server, db, conn, module, extra):
    setup_migration(conn, rows=500)
    before = fp.fingerprint(conn)
    other = _hold_run_lock(pg_server, db, "mg.fait")
    try:
        if module == "partitioned_table":
            args = _migration_args(pg_server, db)
        else:
            args = pg_server.params(db)
            args.update(extra)
        started = time.monotonic()
        result = run_module(module, _short_budget(args))
        waited = time.monotonic() - started
    finally:
        pid = other.get_backend_pid()
        other.close()
    assert result.get("failed"), result
    assert "Another sigeti.dwh run is changing mg.fait" in result["msg"]
    assert "pid %d" % pid in result["msg"] and "nightly-etl-run" in result["msg"]
    assert result["blocking_pids"] == [pid]
    assert waited >= 0.5  # it waited its budget (200 ms x 2 attempts + 100 ms) before giving up
    assert fp.diff(before, fp.fingerprint(conn)) == []


def test_check_mode_does_not_wait_and_says_another_run_is_changing_the_table(pg_server, db, conn):
    setup_migration(conn, rows=500)
    other = _hold_run_lock(pg_server, db, "mg.fait")
    try:
        args = _short_budget(pg_server.params(db))
        args.update(name="mg.fait", columns={"note": "lz4"})
        result = run_module("compression", args, check_mode=True)
    finally:
        other.close()
    assert not result.get("failed"), result.get("msg")
    warnings = [w["event"]["msg"] if isinstance(w, dict) else w for w in result.get("warnings") or []]
    assert any("another sigeti.dwh run is changing mg.fait" in w for w in warnings), warnings


def test_a_killed_run_leaves_no_lock_behind(pg_server, db, conn):
    setup_migration(conn, rows=500)
    other = _hold_run_lock(pg_server, db, "mg.fait")
    with conn.cursor() as cur:
        cur.execute("SELECT pg_terminate_backend(%s)", (other.get_backend_pid(),))
    other.close()
    args = pg_server.params(db)
    args.update(tables=["mg.fait"], analyze="always")
    result = run_module("vacuum", _short_budget(args))
    assert not result.get("failed"), result.get("msg")


WEEKLY_PAIRS = [pytest.param(i, marks=pytest.mark.slow) if i else i for i in range(10)]


@pytest.mark.parametrize("pair", WEEKLY_PAIRS)
def test_two_weekly_playbooks_at_once_converge(pg_server, db, conn, pair, tmp_path):
    """The same weekly playbook started twice at once (cron + AWX). One pair in ./dev test, ten in the campaign."""
    from tests.integration.test_roles_helpers import enabled_vars, load_sample, partitions, play, write_inventory

    load_sample(pg_server, db, scale=1500)  # yearly partitions to 2026: the week creates the ones ahead
    before = {t: fp.content(conn, *t.split(".")) for t in ("dwh_facts.fait_attributions", "dwh_facts.fait_factures")}
    inventory = write_inventory(
        tmp_path / "hosts.yml",
        {"dwh1": (pg_server, db)},
        {"dwh_backup_dir": str(tmp_path / "backups"), "dwh_report_dir": str(tmp_path / "reports")},
    )
    extra = dict(enabled_vars(), dwh_confirm=True)
    # threads, not forked processes: each play is an ansible-playbook subprocess, and a fork of this threaded
    # pytest-xdist worker can hang on a lock another thread held
    with ThreadPool(2) as pool:
        runs = pool.starmap(play, [("weekly.yml", inventory, pg_server.password, extra)] * 2)
    for run in runs:
        assert run.returncode == 0, run.stdout[-3000:]
    after = {t: fp.content(conn, *t.split(".")) for t in before}
    assert after == before  # every row exactly once
    expected = partitions(conn, "dwh_facts.fait_attributions")
    with conn.cursor() as cur:
        cur.execute("SELECT extract(year FROM current_date)::int + 1")
        assert "fait_attributions_%d" % cur.fetchone()[0] in expected
    again = play("weekly.yml", inventory, pg_server.password, extra)
    assert again.returncode == 0, again.stdout[-3000:]
    assert partitions(conn, "dwh_facts.fait_attributions") == expected
    with conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM pg_index WHERE NOT indisvalid")
        assert cur.fetchone()[0] == 0
