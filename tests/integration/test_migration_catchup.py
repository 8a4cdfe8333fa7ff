"""The online catch-up against a real server: writers faster than the replay make it give up, the original left in
use and the state kept, and the next run resumes it; check mode predicts the partitions a migration leaves."""

import threading

import pytest

from ansible_collections.sigeti.dwh.plugins.module_utils.core.errors import DwhError
from tests.support.migration_driver import migrate
from tests.support.modules import run_module

ROWS = 20000


def _table(conn):
    with conn.cursor() as cur:
        cur.execute(
            "CREATE SCHEMA mg; CREATE TABLE mg.fait (id bigint PRIMARY KEY, k int NOT NULL, v int NOT NULL); "
            "INSERT INTO mg.fait SELECT g, 20220101 + g %% 300, 0 FROM generate_series(1, %d) g; ANALYZE mg.fait" % ROWS
        )


class _Writer(threading.Thread):
    """Updates 2,000 rows a statement, as fast as it can, until stopped (4,000 keys logged each time)."""

    def __init__(self, pg_server, db):
        super().__init__(daemon=True)
        self.conn = pg_server.connect(db)
        self.stop = threading.Event()
        self.statements = 0

    def run(self):
        with self.conn.cursor() as cur:
            while not self.stop.is_set():
                first = 1 + (self.statements * 2000) % ROWS
                cur.execute("UPDATE mg.fait SET v = v + 1 WHERE id BETWEEN %s AND %s", (first, first + 1999))
                self.statements += 1
        self.conn.close()


def test_a_catch_up_slower_than_the_writers_gives_up_and_the_next_run_resumes(pg_server, db, conn):
    _table(conn)
    writer = _Writer(pg_server, db)
    writer.start()
    try:
        with pytest.raises(DwhError) as raised:
            migrate(
                conn,
                "mg.fait",
                "k",
                extend_primary_key=True,
                batch_rows=5000,
                # a replay of 100 keys a batch, never more: it cannot keep up with 4,000 keys a statement
                replay_batch_keys=100,
                replay_batch_max=100,
                replay_threshold=10,
                catchup_patience=2.0,
            )
    finally:
        writer.stop.set()
        writer.join(30)
    msg = raised.value.msg
    assert "the catch-up of mg.fait does not converge" in msg and "keys/s" in msg, msg
    assert "the original is in use and untouched" in msg and "migrate: abandon" in msg
    assert raised.value.details["catchup"]["keys_left"] > 10
    with conn.cursor() as cur:
        cur.execute("SELECT relkind FROM pg_class WHERE oid = 'mg.fait'::regclass")
        assert cur.fetchone()[0] == "r", "nothing was swapped"
        cur.execute("SELECT phase, replayed > 0, result -> 'catchup' ? 'change_rate' FROM sigeti_dwh.migration_state")
        assert cur.fetchone() == ("catchup", True, True), "its progress is kept, for the next run and table_info"
        cur.execute("SELECT count(*) FROM pg_trigger WHERE tgrelid = 'mg.fait'::regclass AND tgname LIKE 'sigeti%'")
        assert cur.fetchone()[0] == 4, "changes are still captured"
        cur.execute("SELECT count(*), sum(v) FROM mg.fait")
        expected = cur.fetchone()
    assert expected[1] == writer.statements * 2000
    resumed = migrate(conn, "mg.fait", "k", extend_primary_key=True, batch_rows=5000)
    assert resumed["resumed_from"] == "catchup" and resumed["rows_moved"] == ROWS
    last = resumed["catchup"][-1]
    assert last["keys_left"] <= max(5000, last["batch_keys"]), "at most one batch left for the verification"
    with conn.cursor() as cur:
        cur.execute("SELECT relkind FROM pg_class WHERE oid = 'mg.fait'::regclass")
        assert cur.fetchone()[0] == "p"
        cur.execute("SELECT count(*), sum(v) FROM mg.fait")
        assert cur.fetchone() == expected


def _module_args(pg_server, db, **extra):
    args = pg_server.params(db)
    args.update(
        name="mg.fait",
        key="k",
        key_format="yyyymmdd",
        interval="year",
        start="2020-01-01",
        premake=1,
        extend_primary_key=True,
        batch_rows=5000,
    )
    args.update(extra)
    return args


@pytest.mark.parametrize("mode", ["online", "offline", "attach"])
def test_check_mode_predicts_the_partitions_the_run_leaves(pg_server, db, conn, mode):
    _table(conn)
    args = _module_args(pg_server, db, migrate=mode)
    check = run_module("partitioned_table", args, check_mode=True)
    assert not check.get("failed"), check.get("msg")
    planned = check["migration"]
    assert planned["mode"] == mode and planned["rows_moved"] is None
    real = run_module("partitioned_table", args)
    assert not real.get("failed"), real.get("msg")
    assert check["partitions"] == real["partitions"], "the predicted partition list is the one the run leaves"
    assert check["created"] == real["created"] and real["created"], real["created"]
    assert "mg.fait_unpartitioned" not in real["created"]
    done = real["migration"]
    if mode == "attach":
        assert done["rows_moved"] == 0 and done["kept_original"] is None and planned["kept_original"] is None
        assert {p["name"] for p in real["partitions"]} - set(real["created"]) == {"fait_unpartitioned"}
    else:
        assert done["rows_moved"] == ROWS
        assert done["kept_original"]["name"] == planned["kept_original"]["name"] == "mg.fait_unpartitioned"
        assert planned["kept_original"]["bytes"] > 0 and done["kept_original"]["bytes"] > 0
        assert "DROP TABLE mg.fait_unpartitioned" in done["drop_hint"]


def test_drop_source_keeps_nothing(pg_server, db, conn):
    _table(conn)
    real = run_module("partitioned_table", _module_args(pg_server, db, migrate="offline", drop_source=True))
    assert not real.get("failed"), real.get("msg")
    assert real["migration"]["kept_original"] is None and real["migration"]["drop_hint"] is None
    assert real["migration"]["rows_moved"] == ROWS
