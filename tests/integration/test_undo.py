"""partitioned_table with ``state: plain``: a monthly partition set goes back to one plain table (issue 30)."""

import json
import os
import signal
import subprocess
import sys
import threading
import time

import psycopg2
import pytest

from tests.support.modules import run_module


def _one(conn, query, params=None):
    with conn.cursor() as cur:
        cur.execute(query, params)
        return cur.fetchone()


def _all(conn, query, params=None):
    with conn.cursor() as cur:
        cur.execute(query, params)
        return cur.fetchall()


SET = """
DO $$ BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'undo_reader') THEN CREATE ROLE undo_reader; END IF;
  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'undo_owner') THEN CREATE ROLE undo_owner; END IF;
END $$;
CREATE SCHEMA s;
CREATE TABLE s.dim (dim_id int PRIMARY KEY, label text);
INSERT INTO s.dim SELECT g, 'd' || g FROM generate_series(1, 20) g;
CREATE TABLE s.fait (
    id bigint GENERATED ALWAYS AS IDENTITY,
    k date NOT NULL,
    n serial,
    dim_id int REFERENCES s.dim (dim_id),
    montant numeric(12,2) DEFAULT 0 CHECK (montant >= 0),
    note text COMPRESSION lz4,
    PRIMARY KEY (id, k)
) PARTITION BY RANGE (k);
CREATE TABLE s.fait_2026_01 PARTITION OF s.fait FOR VALUES FROM ('2026-01-01') TO ('2026-02-01');
CREATE TABLE s.fait_2026_02 PARTITION OF s.fait FOR VALUES FROM ('2026-02-01') TO ('2026-03-01');
CREATE TABLE s.fait_2026_03 PARTITION OF s.fait FOR VALUES FROM ('2026-03-01') TO ('2026-04-01');
CREATE TABLE s.fait_default PARTITION OF s.fait DEFAULT;
ALTER TABLE s.fait_2026_01 SET (fillfactor = 90, autovacuum_vacuum_scale_factor = 0.02);
ALTER TABLE s.fait_2026_02 SET (fillfactor = 90);
ALTER TABLE s.fait_2026_03 SET (fillfactor = 90);
ALTER TABLE s.fait_default SET (fillfactor = 90);
CREATE INDEX fait_dim_idx ON s.fait (dim_id) WHERE dim_id IS NOT NULL;
COMMENT ON TABLE s.fait IS 'les faits';
COMMENT ON COLUMN s.fait.montant IS 'en FCFA';
COMMENT ON INDEX s.fait_dim_idx IS 'par dimension';
CREATE FUNCTION s.touch() RETURNS trigger LANGUAGE plpgsql AS
  $f$ BEGIN NEW.note := coalesce(NEW.note, 'touched'); RETURN NEW; END $f$;
CREATE TRIGGER fait_touch BEFORE INSERT ON s.fait FOR EACH ROW EXECUTE FUNCTION s.touch();
INSERT INTO s.fait (k, dim_id, montant, note)
SELECT date '2025-12-20' + (g % 120), 1 + g % 20, g % 1000,
       CASE WHEN g % 97 = 0 THEN repeat(md5(g::text), 200) ELSE 'n' || g END
FROM generate_series(1, 5000) g;
GRANT SELECT ON s.fait TO undo_reader;
GRANT UPDATE (note) ON s.fait TO undo_reader;
GRANT USAGE ON SCHEMA s TO undo_owner;
ALTER TABLE s.fait OWNER TO undo_owner;
CREATE VIEW s.v_fait AS SELECT id, k, montant FROM s.fait WHERE montant > 10;
CREATE TABLE s.detail (fait_id bigint, fait_k date, FOREIGN KEY (fait_id, fait_k) REFERENCES s.fait (id, k));
INSERT INTO s.detail SELECT id, k FROM s.fait WHERE id < 2000 AND id % 300 = 0;
GRANT SELECT ON s.v_fait TO undo_reader;
"""


def make_set(conn):
    with conn.cursor() as cur:
        cur.execute(SET)


def content(conn, relation="s.fait"):
    """Rows, sum and a whole-row checksum independent of the physical layout."""
    return _one(
        conn,
        "SELECT count(*), sum(montant), md5(string_agg(md5(t::text), '' ORDER BY t.id)) FROM %s t" % relation,
    )


def _args(pg_server, db, **extra):
    args = pg_server.params(db)
    args.update(name="s.fait", state="plain", migrate="offline", lock_timeout="2s")
    args.update(extra)
    return args


def relkind(conn, name):
    row = _one(conn, "SELECT relkind::text FROM pg_class WHERE oid = to_regclass(%s)", (name,))
    return row[0] if row else None


def test_offline_undo_carries_everything_and_keeps_the_set(pg_server, db, conn):
    make_set(conn)
    before = content(conn)
    view_before = _one(conn, "SELECT count(*) FROM s.v_fait")

    result = run_module("partitioned_table", _args(pg_server, db))
    assert not result.get("failed"), result.get("msg")
    assert result["changed"] is True
    assert result["migration"]["kept"] == "fait_partitioned"
    checks = result["migration"]["checksums"]["total"]
    assert checks["source_rows"] == checks["target_rows"] == 5000
    assert checks["source_checksum"] == checks["target_checksum"]

    assert relkind(conn, "s.fait") == "r"
    assert relkind(conn, "s.fait_partitioned") == "p"
    assert _one(conn, "SELECT count(*) FROM pg_inherits WHERE inhparent = 's.fait_partitioned'::regclass")[0] == 4
    assert content(conn) == before
    assert content(conn, "s.fait_partitioned") == before
    # the view answers from the plain table
    assert _one(conn, "SELECT count(*) FROM s.v_fait") == view_before
    assert (
        _one(
            conn,
            "SELECT count(*) FROM pg_depend d JOIN pg_rewrite r ON r.oid = d.objid "
            "WHERE r.ev_class = 's.v_fait'::regclass AND d.refobjid = 's.fait'::regclass",
        )[0]
        > 0
    )
    assert _one(conn, "SELECT has_table_privilege('undo_reader', 's.v_fait', 'SELECT')")[0]
    # indexes and constraints, with their names
    assert (
        _one(
            conn,
            "SELECT pg_get_constraintdef(oid) FROM pg_constraint WHERE conname = 'fait_pkey' "
            "AND conrelid = 's.fait'::regclass",
        )[0]
        == "PRIMARY KEY (id, k)"
    )
    assert _one(conn, "SELECT obj_description('s.fait_dim_idx'::regclass, 'pg_class')")[0] == "par dimension"
    assert "WHERE (dim_id IS NOT NULL)" in _one(conn, "SELECT pg_get_indexdef('s.fait_dim_idx'::regclass)")[0]
    assert (
        _one(conn, "SELECT indrelid::regclass::text FROM pg_index WHERE indexrelid = 's.fait_dim_idx'::regclass")[0]
        == "s.fait"
    )
    # grants, owner, comments, reloptions, compression
    assert _one(conn, "SELECT has_table_privilege('undo_reader', 's.fait', 'SELECT')")[0]
    assert _one(conn, "SELECT has_column_privilege('undo_reader', 's.fait', 'note', 'UPDATE')")[0]
    assert _one(conn, "SELECT pg_get_userbyid(relowner)::text FROM pg_class WHERE oid = 's.fait'::regclass")[0] == (
        "undo_owner"
    )
    assert _one(conn, "SELECT obj_description('s.fait'::regclass, 'pg_class')")[0] == "les faits"
    assert _one(conn, "SELECT col_description('s.fait'::regclass, 5)")[0] == "en FCFA"
    assert _one(conn, "SELECT reloptions FROM pg_class WHERE oid = 's.fait'::regclass")[0] == ["fillfactor=90"]
    assert (
        _one(
            conn,
            "SELECT attcompression::text FROM pg_attribute WHERE attrelid = 's.fait'::regclass AND attname = 'note'",
        )[0]
        == "l"
    )
    # identity continues and keeps its sequence name; the serial's sequence follows its column
    assert _one(conn, "SELECT pg_get_serial_sequence('s.fait', 'id')")[0] == "s.fait_id_seq"
    assert _one(conn, "SELECT pg_get_serial_sequence('s.fait', 'n')")[0] == "s.fait_n_seq"
    with conn.cursor() as cur:
        cur.execute("INSERT INTO s.fait (k, dim_id, montant) VALUES ('2026-02-02', 3, 5) RETURNING id, n, note")
        new_id, new_n, note = cur.fetchone()
    assert new_id == 5001 and new_n == 5001
    assert note == "touched", "the trigger was carried"
    # the foreign key in now references the plain table, validated
    assert _one(
        conn,
        "SELECT confrelid::regclass::text, convalidated FROM pg_constraint WHERE conrelid = 's.detail'::regclass "
        "AND contype = 'f'",
    ) == ("s.fait", True)
    with pytest.raises(psycopg2.IntegrityError), conn.cursor() as cur:
        cur.execute("INSERT INTO s.detail VALUES (99999999, '2026-01-01')")
    # CHECK, NOT NULL and the foreign key out hold on the plain table
    for bad in (
        "INSERT INTO s.fait (k, montant) VALUES ('2026-01-05', -1)",
        "INSERT INTO s.fait (k, dim_id) VALUES ('2026-01-05', 999)",
        "INSERT INTO s.fait (montant) VALUES (1)",
    ):
        with pytest.raises(psycopg2.IntegrityError), conn.cursor() as cur:
            cur.execute(bad)

    again = run_module("partitioned_table", _args(pg_server, db))
    assert not again.get("failed"), again.get("msg")
    assert again["changed"] is False and again["queries"] == []
    assert again["migration"]["kept"] == "fait_partitioned"

    dropped = run_module("partitioned_table", _args(pg_server, db, drop_source=True))
    assert not dropped.get("failed"), dropped.get("msg")
    assert dropped["changed"] is True
    assert relkind(conn, "s.fait_partitioned") is None and relkind(conn, "s.fait_2026_01") is None
    assert relkind(conn, "s.fait_n_seq") == "S", "the serial's sequence now belongs to the plain table"
    assert content(conn)[0] == 5001
    quiet = run_module("partitioned_table", _args(pg_server, db, drop_source=True))
    assert quiet["changed"] is False and quiet["queries"] == []


def test_check_mode_shows_the_steps_and_changes_nothing(pg_server, db, conn):
    make_set(conn)
    before = content(conn)
    result = run_module("partitioned_table", _args(pg_server, db), check_mode=True, diff=True)
    assert not result.get("failed"), result.get("msg")
    assert result["changed"] is True
    assert any("INSERT INTO" in q for q in result["queries"])
    assert any("RENAME TO" in q for q in result["queries"])
    assert "plain table" in result["diff"]["after"]
    assert relkind(conn, "s.fait") == "p"
    assert relkind(conn, "s.fait_sgt_plain") is None and relkind(conn, "s.fait_partitioned") is None
    assert content(conn) == before


def test_drop_source_in_the_same_run(pg_server, db, conn):
    make_set(conn)
    before = content(conn)
    result = run_module("partitioned_table", _args(pg_server, db, drop_source=True))
    assert not result.get("failed"), result.get("msg")
    assert result["migration"]["kept"] is None
    assert relkind(conn, "s.fait") == "r" and relkind(conn, "s.fait_partitioned") is None
    assert content(conn) == before


def test_a_tables_entry_with_state_plain_needs_neither_key_nor_interval(pg_server, db, conn):
    make_set(conn)
    before = content(conn)
    args = pg_server.params(db)
    args.update(lock_timeout="2s")
    partitioned = run_module("partitioned_table", dict(args, tables=[{"name": "s.fait", "interval": "month"}]))
    assert partitioned.get("failed") and "key found in tables (entry s.fait" in partitioned["msg"], partitioned
    assert relkind(conn, "s.fait") == "p"
    entry = {"name": "s.fait", "state": "plain", "migrate": "offline"}
    result = run_module("partitioned_table", dict(args, tables=[entry]))
    assert not result.get("failed"), result.get("msg")
    assert result["changed"] and result["results"][0]["migration"]["kept"] == "fait_partitioned"
    assert relkind(conn, "s.fait") == "r" and content(conn) == before
    again = run_module("partitioned_table", dict(args, tables=[entry]))
    assert not again.get("failed") and not again["changed"], again


def test_a_foreign_key_into_a_partition_and_a_publication_are_refused_before_any_change(pg_server, db, conn):
    make_set(conn)
    with conn.cursor() as cur:
        cur.execute(
            "CREATE TABLE s.other (i bigint, k date, CONSTRAINT other_fk FOREIGN KEY (i, k) "
            "REFERENCES s.fait_2026_01 (id, k)); CREATE PUBLICATION undo_pub FOR TABLE s.fait"
        )
    result = run_module("partitioned_table", _args(pg_server, db))
    assert result.get("failed")
    msg = result["msg"]
    assert "s.fait" in msg and "other_fk of s.other references its partition s.fait_2026_01" in msg
    assert "undo_pub" in msg and "ALTER PUBLICATION" in msg
    assert "Nothing was changed" in msg
    assert relkind(conn, "s.fait") == "p"
    assert relkind(conn, "s.fait_sgt_plain") is None and relkind(conn, "s.fait_partitioned") is None


def test_a_session_holding_a_lock_makes_the_run_give_up_naming_it(pg_server, db, conn):
    make_set(conn)
    before = content(conn)
    holder = pg_server.connect(db)
    holder.autocommit = False
    try:
        with holder.cursor() as cur:
            cur.execute("INSERT INTO s.fait (k, montant) VALUES ('2026-03-03', 1)")  # ROW EXCLUSIVE, kept open
            pid = holder.get_backend_pid()
        result = run_module(
            "partitioned_table", _args(pg_server, db, lock_timeout="300ms", lock_retries=1, lock_retry_delay=0)
        )
        assert result.get("failed")
        assert "lock_timeout" in result["msg"] and str(pid) in result["msg"], result["msg"]
        assert pid in result.get("blocking_pids", [])
    finally:
        holder.rollback()
        holder.close()
    assert relkind(conn, "s.fait") == "p" and relkind(conn, "s.fait_sgt_plain") is None
    assert content(conn) == before


class Writer(threading.Thread):
    """Inserts, updates (one moving rows between partitions) and deletes while an undo runs, through the parent and
    straight into a partition; keeps what every row it touched must hold at the end (``expected``: id -> (k, montant),
    None once deleted), the content a lost change would break."""

    def __init__(self, pg_server, db):
        super().__init__(daemon=True)
        self.conn = pg_server.connect(db)
        self.conn.autocommit = True
        self.stop = threading.Event()
        self.expected = {}
        self.direct = 0  # writes straight into a partition while it belonged to s.fait
        self.error = None

    def _in_partition(self, cur, statement, params):
        """Run ``statement`` on s.fait_2026_02 in a transaction; its row, and whether the partition was s.fait's."""
        cur.execute("BEGIN")
        cur.execute(statement, params)
        row = cur.fetchone()
        cur.execute(
            "SELECT c.relname::text FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhparent "
            "WHERE i.inhrelid = 's.fait_2026_02'::regclass"
        )
        parent = cur.fetchone()[0]
        cur.execute("COMMIT")
        if row and parent == "fait":
            self.direct += 1
            return row
        return None

    def _step(self, cur, number):
        cur.execute(
            "INSERT INTO s.fait (k, dim_id, montant) VALUES ('2026-03-10', 2, %s) RETURNING id, k, montant", (number,)
        )
        self._keep(cur.fetchone())
        self._keep(
            self._in_partition(
                cur,
                "INSERT INTO s.fait_2026_02 (k, dim_id, montant) VALUES ('2026-02-10', 3, %s) RETURNING id, k, montant",
                (number + 0.5,),
            )
        )
        self._keep(
            self._in_partition(
                cur,
                "UPDATE s.fait_2026_02 SET montant = montant + 2 WHERE id = "
                "(SELECT min(id) FROM s.fait_2026_02 WHERE id > %s) RETURNING id, k, montant",
                (number * 7,),
            )
        )
        cur.execute("UPDATE s.fait SET montant = montant + 1 WHERE id = %s RETURNING id, k, montant", (number,))
        self._keep(cur.fetchone())
        # the key changes: the row moves to another partition (a delete there, an insert here)
        cur.execute(
            "UPDATE s.fait SET k = date '2026-01-15' + (id %% 10)::int WHERE id = %s RETURNING id, k, montant",
            (number + 2000,),
        )
        self._keep(cur.fetchone())
        if number % 3 == 0:
            cur.execute("DELETE FROM s.fait WHERE id = %s RETURNING id", (number + 1000,))
            row = cur.fetchone()
            if row:
                self.expected[row[0]] = None

    def _keep(self, row):
        if row:
            self.expected[row[0]] = (str(row[1]), float(row[2]))

    def run(self):
        number = 0
        try:
            with self.conn.cursor() as cur:
                while not self.stop.is_set():
                    number += 1
                    self._step(cur, number)
                    time.sleep(0.002)
        except Exception as error:  # reported by the test
            self.error = error
        finally:
            self.conn.close()


def test_online_undo_loses_no_write_made_during_it_even_straight_into_a_partition(pg_server, db, conn):
    make_set(conn)
    with conn.cursor() as cur:
        cur.execute(
            "INSERT INTO s.fait (k, dim_id, montant, note) SELECT date '2026-01-01' + (g %% 90), 1 + g %% 20, g %% 500, "
            "'bulk' || g FROM generate_series(1, %s) g",
            (150000,),
        )
    before = {i: (str(k), float(m)) for i, k, m in _all(conn, "SELECT id, k, montant FROM s.fait")}
    writer = Writer(pg_server, db)
    writer.start()
    time.sleep(0.3)
    try:
        result = run_module("partitioned_table", _args(pg_server, db, migrate="online", lock_timeout="3s"))
    finally:
        time.sleep(0.3)
        writer.stop.set()
        writer.join(30)
    assert writer.error is None, writer.error
    assert not result.get("failed"), result.get("msg")
    info = result["migration"]
    assert info["phases_run"] == ["prepare", "copy", "build", "catchup", "swap", "post"]
    assert info["checksums"]["total"]["source_checksum"] == info["checksums"]["total"]["target_checksum"]
    assert info["replayed_keys"] > 0, "writes were captured while the copy ran"
    assert writer.direct > 0, "rows went straight into a partition during the undo"
    assert relkind(conn, "s.fait") == "r" and relkind(conn, "s.fait_partitioned") == "p"

    after = {i: (str(k), float(m)) for i, k, m in _all(conn, "SELECT id, k, montant FROM s.fait")}
    expected = dict(before)
    for row_id, state in writer.expected.items():
        if state is None:
            expected.pop(row_id, None)
        else:
            expected[row_id] = state
    assert after == expected
    # nothing of the capture is left, on the parent or on any partition
    assert _all(conn, "SELECT tgname FROM pg_trigger WHERE tgname LIKE 'sigeti_undo_capture%%'") == []
    assert relkind(conn, "s.fait_sgt_plog") is None and relkind(conn, "s.fait_sgt_plain") is None
    assert (
        _one(
            conn,
            "SELECT count(*) FROM pg_constraint WHERE conrelid = 's.fait'::regclass AND contype = 'f' AND convalidated",
        )[0]
        == 1
    )
    assert _one(
        conn,
        "SELECT confrelid::regclass::text, convalidated FROM pg_constraint WHERE conrelid = 's.detail'::regclass "
        "AND contype = 'f'",
    ) == ("s.fait", True), "the foreign key in follows the plain table, validated after the swap"
    again = run_module("partitioned_table", _args(pg_server, db, migrate="online"))
    assert again["changed"] is False and again["queries"] == []


def test_online_leftovers_of_a_killed_run_are_dropped_by_abandon_and_by_the_next_run(pg_server, db, conn):
    make_set(conn)
    before = content(conn)
    # what an online run killed after its prepare leaves: the log, the capture trigger (cloned on every partition)
    check = run_module("partitioned_table", _args(pg_server, db, migrate="online"), check_mode=True)
    prepare = [
        q for q in check["queries"] if "sgt_plog" in q or "CREATE FUNCTION" in q or 'CREATE TRIGGER "sigeti' in q
    ]
    with conn.cursor() as cur:
        cur.execute("CREATE TABLE s.fait_sgt_plain (LIKE s.fait)")
        for query in prepare:
            if query.startswith("CREATE"):
                cur.execute(query)
        cur.execute("INSERT INTO s.fait_2026_01 (k, montant) VALUES ('2026-01-09', 7)")
    assert _one(conn, "SELECT count(*) FROM s.fait_sgt_plog")[0] == 1, "the clone on the partition captured it"
    before = content(conn)

    abandoned = run_module("partitioned_table", _args(pg_server, db, migrate="abandon"))
    assert not abandoned.get("failed"), abandoned.get("msg")
    assert abandoned["changed"] and sorted(abandoned["migration"]["abandoned"]) == ["fait_sgt_plain", "fait_sgt_plog"]
    assert _all(conn, "SELECT tgname FROM pg_trigger WHERE tgname LIKE 'sigeti_undo_capture%%'") == []
    assert relkind(conn, "s.fait_sgt_plog") is None and relkind(conn, "s.fait_sgt_plain") is None
    assert relkind(conn, "s.fait") == "p" and content(conn) == before

    with conn.cursor() as cur:
        for query in prepare:
            if query.startswith("CREATE"):
                cur.execute(query)
    result = run_module("partitioned_table", _args(pg_server, db, migrate="online"))
    assert not result.get("failed"), result.get("msg")
    assert relkind(conn, "s.fait") == "r" and content(conn) == before
    assert _all(conn, "SELECT tgname FROM pg_trigger WHERE tgname LIKE 'sigeti_undo_capture%%'") == []


def test_online_without_a_key_is_refused(pg_server, db, conn):
    with conn.cursor() as cur:
        cur.execute(
            "CREATE SCHEMA s; CREATE TABLE s.fait (k date NOT NULL, v int) PARTITION BY RANGE (k);"
            "CREATE TABLE s.fait_default PARTITION OF s.fait DEFAULT; INSERT INTO s.fait VALUES ('2026-01-01', 1)"
        )
    result = run_module("partitioned_table", _args(pg_server, db, migrate="online"))
    assert result.get("failed") and "primary key" in result["msg"] and "migrate: offline" in result["msg"]
    assert relkind(conn, "s.fait") == "p"
    offline = run_module("partitioned_table", _args(pg_server, db))
    assert not offline.get("failed"), offline.get("msg")
    assert relkind(conn, "s.fait") == "r" and _one(conn, "SELECT count(*) FROM s.fait")[0] == 1


def test_extend_primary_key_takes_the_partition_key_back_out_of_the_primary_key(pg_server, db, conn):
    make_set(conn)
    before = content(conn)
    refused = run_module("partitioned_table", _args(pg_server, db, extend_primary_key=True))
    assert refused.get("failed") and "s.detail" in refused["msg"] and "extend_primary_key" in refused["msg"]
    assert relkind(conn, "s.fait") == "p"
    with conn.cursor() as cur:
        cur.execute("DROP TABLE s.detail")
    result = run_module("partitioned_table", _args(pg_server, db, extend_primary_key=True))
    assert not result.get("failed"), result.get("msg")
    assert content(conn) == before
    definition = _one(
        conn,
        "SELECT pg_get_constraintdef(oid) FROM pg_constraint WHERE conname = 'fait_pkey' "
        "AND conrelid = 's.fait'::regclass",
    )[0]
    assert definition == "PRIMARY KEY (id)"


def test_online_swap_blocked_by_a_reader_gives_up_naming_it_and_the_next_run_resumes(pg_server, db, conn):
    make_set(conn)
    reader = pg_server.connect(db)
    reader.autocommit = False
    try:
        with reader.cursor() as cur:
            cur.execute("SELECT count(*) FROM s.fait")  # ACCESS SHARE kept: the copy goes on, the swap cannot
            pid = reader.get_backend_pid()
        check = run_module("partitioned_table", _args(pg_server, db, migrate="online"), check_mode=True, diff=True)
        assert check["changed"] and "plain table" in check["diff"]["after"]
        assert relkind(conn, "s.fait_sgt_plog") is None, "check mode changed nothing"
        result = run_module(
            "partitioned_table",
            _args(pg_server, db, migrate="online", lock_timeout="300ms", lock_retries=1, lock_retry_delay=0),
        )
    finally:
        reader.rollback()
        reader.close()
    assert result.get("failed")
    msg = result["msg"]
    assert str(pid) in msg and "before its swap" in msg and "the next run resumes" in msg, msg
    assert pid in result.get("blocking_pids", [])
    assert relkind(conn, "s.fait") == "p"
    # the capture goes on meanwhile, straight into a partition too
    with conn.cursor() as cur:
        cur.execute("INSERT INTO s.fait_2026_01 (k, montant) VALUES ('2026-01-09', 7)")
        cur.execute("UPDATE s.fait SET montant = montant + 1 WHERE id = 10")
        cur.execute("DELETE FROM s.fait WHERE id = 11")
    before = content(conn)

    resumed = run_module("partitioned_table", _args(pg_server, db, migrate="online"))
    assert not resumed.get("failed"), resumed.get("msg")
    assert resumed["migration"]["resumed_from"] == "catchup"
    assert resumed["migration"]["phases_run"] == ["catchup", "swap", "post"]
    assert relkind(conn, "s.fait") == "r" and content(conn) == before
    assert relkind(conn, "s.fait_sgt_plog") is None and relkind(conn, "s.fait_sgt_plain") is None
    assert _all(conn, "SELECT tgname FROM pg_trigger WHERE tgname LIKE 'sigeti_undo_capture%%'") == []
    assert _one(conn, "SELECT count(*) FROM pg_proc WHERE proname LIKE 'sigeti_undo_capture%%'")[0] == 0


KILLER = """
import json, os, signal, sys
sys.path.insert(0, os.getcwd())
import conftest  # noqa: F401  (puts ansible_collections.sigeti.dwh on sys.path)
from ansible_collections.sigeti.dwh.plugins.module_utils.plan.executor import Executor
from tests.support.modules import run_module

args, die_at = json.loads(sys.argv[1]), int(sys.argv[2])
sent = [0]
execute = Executor._execute


def _execute(self, unit):
    for step in unit:
        sent[0] += 1
        if sent[0] == die_at:  # SIGKILL right before this statement is sent (its transaction, if any, is open)
            step.before = lambda: os.kill(os.getpid(), signal.SIGKILL)
    return execute(self, unit)


Executor._execute = _execute
print(json.dumps(run_module("partitioned_table", args)))
"""


def _killed_run(args, die_at):
    """Run the module in a process SIGKILLed right before its ``die_at``-th statement; True if it was killed."""
    done = subprocess.run(
        [sys.executable, "-c", KILLER, json.dumps(args), str(die_at)],
        cwd=os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    return done.returncode == -signal.SIGKILL


@pytest.mark.parametrize(
    "mode, die_at",
    [("offline", n) for n in (3, 9, 22, 30)]
    # online: prepare, copy, build, catch-up, verification, swap (early, late), post (each validation, the log's drop)
    + [("online", n) for n in (3, 9, 11, 16, 22, 30, 45, 50, 51, 53, 54)],
)
def test_a_run_killed_at_any_statement_leaves_the_set_in_use_and_the_next_run_converges(
    pg_server, db, conn, mode, die_at
):
    make_set(conn)
    before = content(conn)
    args = _args(pg_server, db, migrate=mode)
    assert _killed_run(args, die_at), "the run reached its end before statement %d" % die_at
    if relkind(conn, "s.fait") == "p":  # killed before the swap committed: the set is as it was and in use
        assert content(conn) == before
        with conn.cursor() as cur:
            cur.execute("INSERT INTO s.fait_2026_01 (k, montant) VALUES ('2026-01-03', 3)")
            cur.execute("UPDATE s.fait SET montant = montant + 1 WHERE id = 42")
        before = content(conn)
    result = run_module("partitioned_table", args)
    assert not result.get("failed"), result.get("msg")
    assert relkind(conn, "s.fait") == "r" and content(conn) == before
    assert relkind(conn, "s.fait_sgt_plog") is None and relkind(conn, "s.fait_sgt_plain") is None
    assert _all(conn, "SELECT tgname FROM pg_trigger WHERE tgname LIKE 'sigeti_undo_capture%%'") == []
    assert _all(conn, "SELECT conname FROM pg_constraint WHERE contype = 'f' AND NOT convalidated") == []
    assert _one(conn, "SELECT confrelid::regclass::text FROM pg_constraint WHERE conrelid = 's.detail'::regclass")[
        0
    ] == ("s.fait")
    quiet = run_module("partitioned_table", args)
    assert quiet["changed"] is False and quiet["queries"] == []
