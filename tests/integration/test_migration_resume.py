"""A migration killed at any phase (SIGKILL of the process, or its backend terminated) leaves the original
intact and in use; the next run resumes and converges to a partitioned table equal to the source."""

import os
import subprocess
import sys

import pytest

from tests.integration.test_migration import NOTHING_LEFT, _one, checksum, leftovers, make_fact
from tests.support.migration_driver import migrate

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _driver(pg_server, db, *extra, stdin=None):
    cmd = [
        sys.executable,
        "-m",
        "tests.support.migration_driver",
        "--dsn",
        pg_server.dsn(db),
        "--table",
        "s.fait",
        "--key",
        "date_key",
        "--batch-rows",
        "200",
        "--extend-primary-key",
    ] + list(extra)
    return subprocess.Popen(cmd, cwd=ROOT, stdin=stdin, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _writes(conn):
    """Writes on the table between the kill and the next run: it must still be in use."""
    with conn.cursor() as cur:
        cur.execute("INSERT INTO s.fait (date_key, note) VALUES (20230303, 'after kill'), (20291231, 'future')")
        cur.execute("UPDATE s.fait SET montant = montant + 1, note = 'touched' WHERE id % 97 = 0")
        cur.execute("UPDATE s.fait SET date_key = 20280101 WHERE id = 5")
        cur.execute("DELETE FROM s.fait WHERE id % 101 = 0")


@pytest.mark.parametrize(
    "phase, extra, state",
    [
        ("copy", ["--die-after-batches", "3"], "copy"),
        ("replay after copy", ["--die-after-sql", "^WITH consumed AS"], "copy"),
        ("build", ["--die-after-sql", "^CREATE INDEX"], "build"),
        ("catchup verify", ["--die-after-sql", "AS bucket"], "catchup"),
        ("swap", ["--die-after-sql", "RENAME TO"], "swap"),
        ("post", ["--die-after-sql", "^CREATE MATERIALIZED VIEW"], "post"),
    ],
)
def test_sigkill_at_each_phase_then_resume(pg_server, db, conn, phase, extra, state):
    """SIGKILL in the middle of a transaction of each phase (the server rolls it back)."""
    expected_state = state
    make_fact(conn, rows=3000, extra=False)
    original = checksum(conn, "s.fait")
    proc = _driver(pg_server, db, *extra)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == -9, (out, err)
    state = _one(conn, "SELECT phase FROM sigeti_dwh.migration_state")
    if phase == "post":
        assert state == (expected_state,), "the swap committed; the post phase is pending"
        assert _one(conn, "SELECT relkind FROM pg_class WHERE oid = 's.fait'::regclass")[0] == "p"
        assert checksum(conn, "s.fait") == checksum(conn, "s.fait_unpartitioned") == original
    else:
        # the original is intact and in use
        assert _one(conn, "SELECT relkind FROM pg_class WHERE oid = 's.fait'::regclass")[0] == "r"
        assert checksum(conn, "s.fait") == original
        assert state[0] == expected_state
    _writes(conn)
    expected_rows = _one(conn, "SELECT count(*) FROM s.fait")[0]
    result = migrate(conn, "s.fait", "date_key", extend_primary_key=True, batch_rows=200)
    assert result["resumed_from"] == state[0]
    assert _one(conn, "SELECT relkind FROM pg_class WHERE oid = 's.fait'::regclass")[0] == "p"
    if phase != "post":  # after the swap, writes go to the partitioned table only
        assert checksum(conn, "s.fait") == checksum(conn, "s.fait_unpartitioned")
    assert checksum(conn, "s.fait")[0] == expected_rows
    assert _one(conn, "SELECT tableoid::regclass::text FROM s.fait WHERE id = 5")[0] == "s.fait_2028"
    assert leftovers(conn) == NOTHING_LEFT
    assert _one(conn, "SELECT sum(n) FROM s.mv_fait")[0] == expected_rows


def test_terminated_backend_then_resume(pg_server, db, conn):
    make_fact(conn, rows=2000, extra=False)
    original = checksum(conn, "s.fait")
    proc = _driver(pg_server, db, "--hold-at", "verify", stdin=subprocess.PIPE)
    line = proc.stdout.readline()
    assert line.startswith("HOLD "), (line, proc.stderr.read() if proc.poll() is not None else "")
    pid = int(line.split()[1])
    assert _one(conn, "SELECT pg_terminate_backend(%s)", (pid,))[0] is True
    out, err = proc.communicate("go\n", timeout=60)
    assert proc.returncode != 0 and "terminat" in err.lower() + out.lower(), (out, err)
    assert _one(conn, "SELECT relkind FROM pg_class WHERE oid = 's.fait'::regclass")[0] == "r"
    assert checksum(conn, "s.fait") == original
    _writes(conn)
    migrate(conn, "s.fait", "date_key", extend_primary_key=True, batch_rows=200)
    assert checksum(conn, "s.fait") == checksum(conn, "s.fait_unpartitioned")
    assert leftovers(conn) == NOTHING_LEFT
