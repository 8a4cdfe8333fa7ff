"""partitioned_table's retention action parquet on a real server (issue 31): old partitions exported to verified
Parquet files, then detached and dropped, with a writer inserting into the current partitions all along; check mode
writes nothing, a second run is quiet, bad input changes nothing, a killed export leaves the partition attached, rows
written between the export and the detach keep the table, and the documented DuckDB query reads what was written."""

import json
import os
import re
import subprocess
import sys
import threading
import time

import psycopg2
import pytest
from psycopg2 import sql

pytest.importorskip("pyarrow")

from ansible_collections.sigeti.dwh.plugins.module_utils.archive import retention_run  # noqa: E402
from ansible_collections.sigeti.dwh.plugins.module_utils.catalog.archive import checksum_table  # noqa: E402
from ansible_collections.sigeti.dwh.plugins.module_utils.core import periods  # noqa: E402
from tests.reliability import harness  # noqa: E402
from tests.support.modules import run_module  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SCHEME = periods.Scheme("date", "month", "date")
TABLE = "dwh_facts.fait_attributions"
FOLDER = "dwh_facts.fait_attributions"


def today(conn):
    with conn.cursor() as cur:
        cur.execute("SELECT current_date")
        return cur.fetchone()[0]


def make_facts(conn, months_back=5, rows=2000, extra_columns="", default=True):
    """A monthly set from ``months_back`` months ago to next month, a default partition, ``rows`` rows a month."""
    current = SCHEME.current(today(conn))
    with conn.cursor() as cur:
        cur.execute(
            "CREATE SCHEMA dwh_facts; CREATE TABLE dwh_facts.fait_attributions (id bigserial, k date NOT NULL, "
            "montant numeric(14,2), libelle text%s, PRIMARY KEY (id, k)) PARTITION BY RANGE (k)" % extra_columns
        )
        for back in range(-1, months_back + 1):
            low = SCHEME.step(current, -back)
            cur.execute(
                "CREATE TABLE dwh_facts.fait_%s PARTITION OF dwh_facts.fait_attributions FOR VALUES FROM (%%s) TO (%%s)"
                % low.strftime("%Y%m"),
                (low, SCHEME.step(low)),
            )
            cur.execute(
                "INSERT INTO dwh_facts.fait_attributions (k, montant, libelle) SELECT %s::date + (g %% 28), "
                "g * 1.25, 'lot ' || g FROM generate_series(1, %s) g",
                (low, rows),
            )
        if default:
            cur.execute("CREATE TABLE dwh_facts.fait_default PARTITION OF dwh_facts.fait_attributions DEFAULT")
    return current


def old_names(current, first_back, last_back):
    return ["fait_%s" % SCHEME.step(current, -b).strftime("%Y%m") for b in range(first_back, last_back - 1, -1)]


def args(pg_server, db, folder, **retention):
    params = pg_server.params(db)
    params.update(lock_timeout="2s", lock_retries=3, lock_retry_delay=0.1)
    params.update(
        name=TABLE,
        key="k",
        interval="month",
        premake=1,
        retention=dict(dict(keep=2, action="parquet", archive_dir=str(folder), max_per_run=3), **retention),
    )
    return params


def attached(conn):
    with conn.cursor() as cur:
        cur.execute(
            "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
            "WHERE i.inhparent = 'dwh_facts.fait_attributions'::regclass ORDER BY 1"
        )
        return [r[0] for r in cur.fetchall()]


def snapshot(conn):
    with conn.cursor() as cur:
        cur.execute(
            "SELECT n.nspname, c.relname, c.relkind, pg_get_expr(c.relpartbound, c.oid), c.reltuples >= 0 "
            "FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname NOT IN ('pg_catalog', 'information_schema', 'pg_toast') AND c.relkind IN ('r', 'p') "
            "ORDER BY 1, 2"
        )
        rels = cur.fetchall()
        cur.execute("SELECT count(*), sum(montant) FROM dwh_facts.fait_attributions")
        return rels, cur.fetchone()


def files(folder):
    found = []
    for top, _dirs, names in os.walk(str(folder)):
        found.extend(os.path.relpath(os.path.join(top, n), str(folder)) for n in names)
    return sorted(found)


class Writer:
    """Inserts into the current partitions on its own connection until stopped; counts what committed."""

    def __init__(self, dsn, day):
        self.dsn, self.day = dsn, day
        self.inserted, self.errors = 0, []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        conn = psycopg2.connect(self.dsn)
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute("SET lock_timeout = '30s'")
            while not self._stop.is_set():
                try:
                    cur.execute(
                        "INSERT INTO dwh_facts.fait_attributions (k, montant, libelle) VALUES (%s, 1, 'live')",
                        (self.day,),
                    )
                    self.inserted += 1
                except psycopg2.Error as error:
                    self.errors.append(str(error))
                time.sleep(0.002)
        conn.close()

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


def test_parquet_retention_end_to_end_with_a_writer_check_mode_first_and_a_quiet_second_run(
    pg_server, db, conn, tmp_path
):
    current = make_facts(conn)
    retired = old_names(current, 5, 3)  # keep 2: months -5, -4, -3 go
    sums = {}
    with conn.cursor() as cur:
        for name in retired:
            cur.execute("SELECT count(*), sum(montant) FROM dwh_facts.%s" % name)
            sums[name] = cur.fetchone()
    checksums = {name: checksum_table(conn, "dwh_facts", name).text() for name in retired}
    before = snapshot(conn)

    planned = run_module("partitioned_table", args(pg_server, db, tmp_path), check_mode=True, diff=True)
    assert not planned.get("failed"), planned
    assert planned["changed"] and planned["archived"] == retired and planned["dropped"] == retired
    assert [f["partition"] for f in planned["archive_files"]] == retired
    first = planned["archive_files"][0]
    assert first["parquet"] == str(tmp_path / FOLDER / (retired[0] + ".parquet"))
    assert first["manifest"] == str(tmp_path / FOLDER / (retired[0] + ".manifest.json"))
    assert first["rows"] is None
    assert retired[0] in planned["diff"]["before"]
    assert "# %s archived to %s\n" % (retired[0], first["parquet"]) in planned["diff"]["after"]
    assert not [line for line in planned["diff"]["after"].splitlines() if line.startswith(retired[0] + " ")]
    assert files(tmp_path) == [] and snapshot(conn) == before  # check mode wrote nothing

    with Writer(pg_server.dsn(db), today(conn)) as writer:
        time.sleep(0.2)
        result = run_module("partitioned_table", args(pg_server, db, tmp_path))
        time.sleep(0.2)
    assert not result.get("failed"), result
    assert result["changed"] and result["archived"] == retired and result["dropped"] == retired
    assert "archive" in result["rewrites"] and "drop" in result["rewrites"]
    assert writer.errors == [] and writer.inserted > 0
    assert not set(retired) & set(attached(conn))
    expected = []
    for name in retired:
        expected += [FOLDER + "/" + name + ".manifest.json", FOLDER + "/" + name + ".parquet"]
    assert files(tmp_path) == sorted(expected)
    for entry in result["archive_files"]:
        assert entry["rows"] == sums[entry["partition"]][0] == 2000
        assert entry["checksum"] == checksums[entry["partition"]]
        with open(entry["manifest"]) as handle:
            assert json.load(handle)["checksum"] == entry["checksum"]
    assert any(q.startswith("DO $sigeti_dwh_archive_check$") for q in result["queries"])
    with conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM dwh_facts.fait_attributions WHERE libelle = 'live'")
        assert cur.fetchone()[0] == writer.inserted  # every row the writer committed is there

    again = run_module("partitioned_table", args(pg_server, db, tmp_path))
    assert not again.get("failed"), again
    assert not again["changed"] and again["queries"] == [] and again["archived"] == [] and again["archive_files"] == []


def test_without_a_default_partition_the_export_precedes_a_concurrent_detach(pg_server, db, conn, tmp_path):
    current = make_facts(conn, months_back=3, rows=50, default=False)
    oldest = old_names(current, 3, 3)[0]
    checksum = checksum_table(conn, "dwh_facts", oldest).text()
    params = dict(args(pg_server, db, tmp_path), default_partition=False)
    result = run_module("partitioned_table", params)
    assert not result.get("failed") and result["archived"] == [oldest], result
    assert any("DETACH PARTITION" in q and "CONCURRENTLY" in q for q in result["queries"])
    assert result["archive_files"][0]["checksum"] == checksum and oldest not in attached(conn)
    again = run_module("partitioned_table", params)
    assert not again.get("failed") and not again["changed"], again


def test_the_documented_duckdb_query_reads_what_the_module_wrote_as_postgresql_did(pg_server, db, conn, tmp_path):
    duckdb = pytest.importorskip("duckdb")
    current = make_facts(conn, months_back=4)
    retired = old_names(current, 4, 3)
    with conn.cursor() as cur:
        cur.execute(
            "SELECT count(*), sum(montant) FROM dwh_facts.fait_attributions WHERE %s"
            % " OR ".join("tableoid = 'dwh_facts.%s'::regclass" % n for n in retired)
        )
        in_postgresql = cur.fetchone()
    result = run_module("partitioned_table", args(pg_server, db, tmp_path))
    assert not result.get("failed") and result["archived"] == retired, result
    with open(os.path.join(ROOT, "docs", "archive.md")) as handle:
        documented = re.search(
            r"^(SELECT .*read_parquet\('(/[^']*)/%s/\*\.parquet'\).*);$" % FOLDER, handle.read(), re.M
        )
    assert documented, "docs/archive.md no longer shows the DuckDB query"
    query = documented.group(1).replace(documented.group(2), str(tmp_path))
    assert duckdb.connect().execute(query).fetchone() == in_postgresql


def test_bad_input_is_refused_with_a_clear_error_and_nothing_changes(pg_server, db, conn, tmp_path, monkeypatch):
    make_facts(conn, months_back=3, extra_columns=", duree interval")
    before = snapshot(conn)
    cases = [
        (
            dict(archive_dir="archives"),
            "retention.archive_dir='archives' for dwh_facts.fait_attributions is not an absolute",
        ),
        (dict(archive_dir=None), "needs archive_dir"),
        (dict(action="drop", archive_dir="/srv/x"), "only read by action parquet"),
        (dict(archive_dir=str(tmp_path / "typo")), "does not exist or is not a folder"),
        ({}, "partition fait_%s stays attached: table dwh_facts.fait_%s cannot be archived"),
    ]
    current = SCHEME.current(today(conn))
    oldest = SCHEME.step(current, -3).strftime("%Y%m")
    for retention, text in cases:
        message = text.replace("%s", oldest)
        for check_mode in (True, False):
            result = run_module("partitioned_table", args(pg_server, db, tmp_path, **retention), check_mode=check_mode)
            assert result.get("failed") and message in result["msg"], (retention, result)
            assert snapshot(conn) == before and files(tmp_path) == []
    assert "column duree of type interval" in result["msg"] and "Nothing was read or written" in result["msg"]
    with conn.cursor() as cur:
        cur.execute("ALTER TABLE dwh_facts.fait_attributions DROP COLUMN duree")
    before = snapshot(conn)
    monkeypatch.setitem(sys.modules, "pyarrow", None)
    result = run_module("partitioned_table", args(pg_server, db, tmp_path))
    assert result.get("failed") and "pyarrow" in result["msg"] and "pip install" in result["msg"], result
    assert snapshot(conn) == before and files(tmp_path) == []


@pytest.fixture
def read_only_folder(tmp_path):
    """A tmpfs mounted read-only for the test (root only: CI and this machine run as root)."""
    target = tmp_path / "ro"
    target.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a file system needs root")
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=1m,ro", "tmpfs", str(target)], capture_output=True, check=False
    )
    if done.returncode != 0:
        pytest.skip("cannot mount a tmpfs here: %s" % done.stderr.decode().strip())
    yield target
    subprocess.run(["umount", str(target)], check=False)


def test_an_unwritable_archive_dir_is_refused_and_nothing_changes(pg_server, db, conn, read_only_folder):
    make_facts(conn, months_back=3, rows=10)
    before = snapshot(conn)
    result = run_module("partitioned_table", args(pg_server, db, read_only_folder))
    assert result.get("failed") and "is not writable" in result["msg"] and "read-only" in result["msg"], result
    assert snapshot(conn) == before


def test_a_full_disk_under_archive_dir_stops_the_run_and_the_partition_stays_attached(pg_server, db, conn, small_mount):
    current = make_facts(conn, months_back=3, rows=10)
    oldest = old_names(current, 3, 3)[0]
    with conn.cursor() as cur:  # incompressible text: its Parquet file cannot fit in the 1 MiB file system
        cur.execute(
            "INSERT INTO dwh_facts.fait_attributions (k, montant, libelle) SELECT %s::date + (g %% 28), g, "
            "md5(g::text) || md5((g + 1)::text) FROM generate_series(1, 100000) g",
            (SCHEME.step(current, -3),),
        )
        cur.execute("ANALYZE dwh_facts.fait_attributions")  # autovacuum's analyze must not move the snapshot
    before = snapshot(conn)
    result = run_module("partitioned_table", args(pg_server, db, small_mount, max_per_run=1))
    assert result.get("failed"), result
    assert "partition %s was not archived and stays attached" % oldest in result["msg"], result["msg"]
    assert "No space left on device" in result["msg"], result["msg"]
    assert oldest in attached(conn) and snapshot(conn) == before
    assert files(small_mount) == []  # neither the half file nor a manifest


def test_rows_written_between_the_export_and_the_detach_keep_the_table(pg_server, db, conn, tmp_path, monkeypatch):
    current = make_facts(conn, months_back=3, rows=100)
    oldest = old_names(current, 3, 3)[0]
    export = retention_run.export_table

    def export_then_write(*a, **kw):
        done = export(*a, **kw)
        late = psycopg2.connect(pg_server.dsn(db))
        late.autocommit = True
        with late.cursor() as cur:
            cur.execute(
                "INSERT INTO dwh_facts.fait_attributions (k, montant) VALUES (%s, 9)", (SCHEME.step(current, -3),)
            )
        late.close()
        return done

    monkeypatch.setattr(retention_run, "export_table", export_then_write)
    result = run_module("partitioned_table", args(pg_server, db, tmp_path, max_per_run=1))
    assert result.get("failed") and "changed after its export" in result["msg"], result
    assert "the archive holds 100 rows, the table now 101 rows" in result["msg"]
    assert "ATTACH PARTITION dwh_facts.%s FOR VALUES FROM" % oldest in result["msg"]
    assert oldest not in attached(conn)  # detached, kept with its rows
    with conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM dwh_facts.%s" % oldest)
        assert cur.fetchone()[0] == 101


def warnings_of(result):
    return [w["event"]["msg"] if isinstance(w, dict) else w for w in result.get("warnings") or []]


def cut_off_after_the_detach(pg_server, db, conn, tmp_path, monkeypatch):
    """A run stopped after the oldest month's detach committed and before its drop: the state a kill between those
    two transactions leaves (its archive published, the month a plain table outside the set)."""
    current = make_facts(conn, months_back=3, rows=100)
    oldest = old_names(current, 3, 3)[0]
    monkeypatch.setattr(
        retention_run,
        "check_statement",
        lambda *a: sql.SQL("DO $$BEGIN RAISE EXCEPTION 'cut off before the drop'; END$$"),
    )
    stopped = run_module("partitioned_table", args(pg_server, db, tmp_path, max_per_run=1))
    assert stopped.get("failed") and "cut off before the drop" in stopped["msg"], stopped
    monkeypatch.undo()
    assert oldest not in attached(conn) and checksum_table(conn, "dwh_facts", oldest).rows == 100
    return oldest


def test_a_month_left_detached_after_its_archive_is_checked_and_dropped_by_the_next_run(
    pg_server, db, conn, tmp_path, monkeypatch
):
    oldest = cut_off_after_the_detach(pg_server, db, conn, tmp_path, monkeypatch)
    params = args(pg_server, db, tmp_path, max_per_run=1)
    checked = run_module("partitioned_table", params, check_mode=True)
    assert checked["changed"] and oldest in checked["dropped"], checked
    assert checksum_table(conn, "dwh_facts", oldest).rows == 100  # check mode dropped nothing
    finished = run_module("partitioned_table", params)
    assert not finished.get("failed"), finished
    assert oldest in finished["archived"] and oldest in finished["dropped"], finished
    assert any("stopped before dropping it" in w for w in warnings_of(finished)), finished
    with conn.cursor() as cur:
        cur.execute("SELECT to_regclass(%s)", ("dwh_facts.%s" % oldest,))
        assert cur.fetchone()[0] is None
    assert os.path.exists(os.path.join(str(tmp_path), FOLDER, oldest + ".parquet"))
    again = run_module("partitioned_table", params)
    assert not again.get("failed") and again["changed"] is False, again


def test_a_detached_month_that_changed_or_a_new_table_of_its_name_is_left_alone(
    pg_server, db, conn, tmp_path, monkeypatch
):
    oldest = cut_off_after_the_detach(pg_server, db, conn, tmp_path, monkeypatch)
    params = args(pg_server, db, tmp_path, max_per_run=1)
    with conn.cursor() as cur:  # someone wrote into the detached table
        cur.execute(
            "UPDATE dwh_facts.%s SET montant = montant + 1 WHERE id = (SELECT min(id) FROM dwh_facts.%s)"
            % (oldest, oldest)
        )
    changed = run_module("partitioned_table", params)
    assert not changed.get("failed"), changed
    assert oldest not in changed["dropped"], changed
    warned = [w for w in warnings_of(changed) if "no longer holds exactly the archived rows" in w]
    assert warned and "ATTACH PARTITION dwh_facts.%s FOR VALUES FROM" % oldest in warned[0], changed
    assert checksum_table(conn, "dwh_facts", oldest).rows == 100
    with conn.cursor() as cur:  # a table made later under that name, holding exactly the archived rows
        cur.execute(
            "UPDATE dwh_facts.%s SET montant = montant - 1 WHERE id = (SELECT min(id) FROM dwh_facts.%s)"
            % (oldest, oldest)
        )
        cur.execute("ALTER TABLE dwh_facts.%s RENAME TO kept_aside" % oldest)
        cur.execute("CREATE TABLE dwh_facts.%s (LIKE dwh_facts.kept_aside)" % oldest)
        cur.execute("INSERT INTO dwh_facts.%s SELECT * FROM dwh_facts.kept_aside" % oldest)
    assert checksum_table(conn, "dwh_facts", oldest) == checksum_table(conn, "dwh_facts", "kept_aside")
    other = run_module("partitioned_table", params)
    assert not other.get("failed") and oldest not in other["dropped"], other
    assert checksum_table(conn, "dwh_facts", oldest).rows == 100


@pytest.mark.parametrize("action", ["kill -9 of the module", "pg_terminate_backend of its session"])
def test_a_run_killed_or_cut_off_mid_export_leaves_the_partition_attached_and_the_next_run_archives_it(
    pg_server, db, conn, tmp_path, action
):
    current = make_facts(conn, months_back=3, rows=10)
    oldest = old_names(current, 3, 3)[0]
    with conn.cursor() as cur:
        cur.execute(
            "INSERT INTO dwh_facts.fait_attributions (k, montant, libelle) SELECT %s::date + (g %% 28), g, "
            "repeat(md5(g::text), 12) FROM generate_series(1, 300000) g",
            (SCHEME.step(current, -3),),
        )
        # so that autovacuum's own analyze of these fresh rows cannot change the snapshot's reltuples mid-test
        cur.execute("ANALYZE dwh_facts.fait_attributions")
    before = snapshot(conn)
    params = args(pg_server, db, tmp_path, max_per_run=1)
    # the crash campaigns' module child (tests/reliability/harness.py), stopped here once its export writes
    child = harness.start_child({"kind": "module", "name": "partitioned_table", "args": params})
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not any(".tmp-" in n for n in files(tmp_path)):
        assert child.poll() is None, "the run ended before it could be stopped: %s" % child.communicate()
        time.sleep(0.005)
    time.sleep(0.3)  # into the write
    if action.startswith("kill"):
        harness.kill_process(child, pg_server, db)
    else:
        harness.terminate_backend(child, pg_server, db)
    out, _err = child.communicate(timeout=120)
    if not action.startswith("kill"):
        failed = json.loads(out.strip().splitlines()[-1])
        assert failed.get("failed") and "partition %s was not archived and stays attached" % oldest in failed["msg"]
    time.sleep(0.2)  # the server notices the closed connection and ends its transaction
    assert oldest in attached(conn) and snapshot(conn) == before
    assert not [n for n in files(tmp_path) if n.endswith(".parquet") or n.endswith(".json")]
    result = run_module("partitioned_table", params)
    assert not result.get("failed") and result["archived"] == [oldest], result
    assert result["archive_files"][0]["rows"] == 300010
    assert [n for n in files(tmp_path) if ".tmp-" in n] == []


def test_a_partition_of_a_table_in_another_month_layout_is_named_with_its_folder(pg_server, db, conn, tmp_path):
    """The archive folder is named after the partitioned table, whatever the partitions are called."""
    current = make_facts(conn, months_back=3, rows=5)
    old = SCHEME.step(current, -3)
    with conn.cursor() as cur:
        cur.execute('ALTER TABLE dwh_facts.fait_%s RENAME TO "Vieux mois"' % old.strftime("%Y%m"))
    result = run_module("partitioned_table", args(pg_server, db, tmp_path, max_per_run=1))
    assert not result.get("failed"), result
    assert result["archive_files"][0]["parquet"] == str(tmp_path / FOLDER / "Vieux%20mois.parquet")
    assert os.path.exists(result["archive_files"][0]["parquet"])
