"""The Parquet archive engine on a real server: export -> verify -> restore of every type with NULLs, a partition
back into its set, the checksum's definition, refusals, a missing pyarrow, a killed export, an unwritable and a
full archive folder (issue 31)."""

import hashlib
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

pytest.importorskip("pyarrow")

from ansible_collections.sigeti.dwh.plugins.module_utils.archive import parquet as parquet_archive
from ansible_collections.sigeti.dwh.plugins.module_utils.archive import run as archive_run  # noqa: E402
from ansible_collections.sigeti.dwh.plugins.module_utils.archive.manifest import checksum_of  # noqa: E402
from ansible_collections.sigeti.dwh.plugins.module_utils.archive.types import ArchiveRefused  # noqa: E402

ALL_TYPES = """
CREATE TYPE public.etat AS ENUM ('ouvert', 'clos');
CREATE TABLE public.every_type (
    id bigint NOT NULL, n_free numeric, n_wide numeric(40,20), n_money numeric(14,2), d date, ts timestamp,
    tstz timestamptz, ts3 timestamp(3) with time zone, t text, vc varchar(30), c char(4), j jsonb, js json,
    b bytea, u uuid, e public.etat, ai integer[], at text[], af double precision[], bo boolean, i2 smallint,
    i4 integer, i8 bigint, f8 double precision, f4 real, r text DEFAULT 'r', digest text DEFAULT 'd');
INSERT INTO public.every_type VALUES
 (1, 'NaN', '12345678901234567890.12345678901234567890', 1.5, '0099-01-01', '2024-03-31 02:30:00.123456',
  '2024-03-31 02:30:00.000001+01', '2024-10-27 02:30:00.123+02', E'é€😀 "q",\\n x\\\\', 'LOT-1', 'ab',
  '{"a": [1, 2.50, null], "b": {"c": ""}}', '{"keep":  "spacing" ,"dup":1,"dup":2}', '\\x00ff0a00',
  'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', 'ouvert', '{1,NULL,-3}', '{"a b",NULL,"","c,\\"d\\"","NULL"}',
  '{NaN,Infinity,-Infinity,-0,0.1}', true, -32768, -2147483648, 9223372036854775807, '-0', '1.1'),
 (2, '1.50', '-0.00000000000000000001', -999999999999.99, '9999-12-31', '0001-01-01 00:00:00',
  '1800-01-01 00:00:00+00', '2024-03-10 02:00:00-05', '', '', '', 'null', '[]', '\\x', '00000000-0000-0000-0000-000000000000',
  'clos', '{}', '{}', '{}', false, 0, 0, 0, 'Infinity', 'NaN'),
 (3, '-1e-30', NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
  NULL, NULL, NULL, NULL, NULL, '-Infinity', '3.4028235e+38'),
 (4, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
  NULL, NULL, NULL, NULL, NULL, NULL),
 (5, '123456789012345678901234567890.123456789012345678901234567890', 0, 0, '2024-02-29',
  '2024-12-31 23:59:59.999999', '2024-03-31 00:59:59.999999+00', NULL, repeat('x', 10000), 'a', 'abcd',
  '{"big": 12345678901234567890.123}', '"s"', decode(repeat('ab', 5000), 'hex'), NULL, NULL, '{2147483647}',
  '{"ü"}', '{1e300,-1e-300}', NULL, 32767, 2147483647, -9223372036854775808, '4.9e-324', '-1.4e-45');
"""


def texts(conn, table, tz="UTC"):
    """{id: row text} with the canonical settings, to compare two tables value by value."""
    with conn.cursor() as cur:
        cur.execute("SELECT current_setting('TimeZone'), current_setting('extra_float_digits')")
        zone, digits = cur.fetchone()
        cur.execute("SET TimeZone = %s; SET extra_float_digits = 1", (tz,))
        cur.execute("SELECT id, ROW(r.*)::text FROM %s AS r ORDER BY id" % table)
        rows = dict(cur.fetchall())
        cur.execute(
            "SELECT set_config('TimeZone', %s, false), set_config('extra_float_digits', %s, false)", (zone, digits)
        )
    return rows


def listing(folder):
    return sorted(os.listdir(folder)) if os.path.isdir(folder) else []


def test_every_type_round_trips_exactly_through_export_verify_restore(conn, tmp_path):
    with conn.cursor() as cur:
        cur.execute(ALL_TYPES)
        cur.execute("SET TimeZone = 'Asia/Kathmandu'")  # +05:45: a shifted timestamptz shows
    before = texts(conn, "public.every_type")
    result = archive_run.export_table(conn, "public", "every_type", str(tmp_path))
    assert not result.reused
    assert result.paths.parquet == str(tmp_path / "public.every_type" / "every_type.parquet")
    assert listing(tmp_path / "public.every_type") == ["every_type.manifest.json", "every_type.parquet"]
    manifest = result.manifest
    assert manifest.rows == 5 and manifest.parent is None and manifest.bound is None
    assert manifest.library.startswith("pyarrow ") and manifest.server.database == conn.get_dsn_parameters()["dbname"]
    types = {c.name: (c.pg_type, c.parquet) for c in manifest.columns}
    assert types["n_wide"] == ("numeric(40,20)", "decimal256(40, 20)")
    assert types["tstz"] == ("timestamp with time zone", "timestamp[us, tz=UTC]")
    assert types["ai"] == ("integer[]", "list<item: int32>")
    assert archive_run.verify_archive(conn, result.paths.manifest) == manifest
    with conn.cursor() as cur:
        cur.execute("SET TimeZone = 'America/St_Johns'")  # the restore's session is in yet another zone
    restored = archive_run.restore_table(conn, result.paths.manifest, "public", "every_type_back")
    assert restored.created and restored.checksum == manifest.checksum
    assert texts(conn, "public.every_type_back") == before
    assert texts(conn, "public.every_type_back", "Asia/Kathmandu") == texts(conn, "public.every_type", "Asia/Kathmandu")
    # the session is the caller's again: its zone and autocommit
    with conn.cursor() as cur:
        cur.execute("SHOW TimeZone")
        assert cur.fetchone()[0] == "America/St_Johns"
    assert conn.autocommit
    again = archive_run.restore_table(conn, result.paths.manifest, "public", "every_type_back")
    assert not again.created  # idempotent
    assert archive_run.export_table(conn, "public", "every_type", str(tmp_path)).reused


def test_duckdb_reads_the_archive_as_written(conn, tmp_path):
    duckdb = pytest.importorskip("duckdb")
    with conn.cursor() as cur:
        cur.execute(ALL_TYPES)
    result = archive_run.export_table(conn, "public", "every_type", str(tmp_path))
    glob = str(tmp_path / "public.every_type" / "*.parquet")
    rows = (
        duckdb.connect()
        .execute("SELECT count(*), sum(i8::hugeint), max(n_money), min(d) FROM read_parquet('%s')" % glob)
        .fetchone()
    )
    assert rows[0] == result.manifest.rows == 5
    assert str(rows[2]) == "1.50" and str(rows[3]) == "0099-01-01"


def test_the_checksum_is_its_definition_computed_in_python_from_the_row_texts(conn):
    """Also: the table has a column named t and one named r (the scan's alias): the whole row is hashed."""
    with conn.cursor() as cur:
        cur.execute(ALL_TYPES)
        cur.execute("SET TimeZone = 'UTC'; SET extra_float_digits = 1; SET DateStyle = 'ISO, YMD'")
        cur.execute("SELECT ROW(r.*)::text FROM public.every_type AS r")
        row_texts = [r[0] for r in cur.fetchall()]
        cur.execute("RESET ALL")
        cur.execute("SET TimeZone = 'Pacific/Chatham'; SET extra_float_digits = 0; SET DateStyle = 'SQL, DMY'")
    high = low = 0
    for text in row_texts:
        digest = hashlib.md5(text.encode("utf-8")).hexdigest()
        for index, half in enumerate((int(digest[:16], 16), int(digest[16:], 16))):
            signed = half - (1 << 64) if half >= 1 << 63 else half
            high, low = (high + signed, low) if index == 0 else (high, low + signed)
    from ansible_collections.sigeti.dwh.plugins.module_utils.catalog.archive import checksum_table

    # the DBA's session settings (another zone, rounded floats, another date style) do not change it
    whole = checksum_table(conn, "public", "every_type")
    assert whole == checksum_of(len(row_texts), high, low)
    with conn.cursor() as cur:  # one value changed in any column changes it: the whole row is hashed
        for change in (
            "t = t || 'x'",
            "r = 'other'",
            "f8 = 0 WHERE f8 = '-0'",
            "tstz = tstz + interval '1 microsecond'",
        ):
            cur.execute(
                "BEGIN; UPDATE public.every_type SET %s%s" % (change, "" if "WHERE" in change else " WHERE id = 1")
            )
            assert checksum_table(conn, "public", "every_type") != whole, change
            cur.execute("ROLLBACK")


def test_a_partition_goes_back_into_its_set_through_its_archive(conn, tmp_path):
    with conn.cursor() as cur:
        cur.execute(
            "CREATE SCHEMA dwh_facts; CREATE TABLE dwh_facts.fait (id bigint, k integer NOT NULL, m numeric(14,2), "
            "PRIMARY KEY (id, k)) PARTITION BY RANGE (k);"
            "CREATE TABLE dwh_facts.fait_2019 PARTITION OF dwh_facts.fait FOR VALUES FROM (20190101) TO (20200101);"
            "CREATE TABLE dwh_facts.fait_2020 PARTITION OF dwh_facts.fait FOR VALUES FROM (20200101) TO (20210101);"
            "INSERT INTO dwh_facts.fait SELECT g, 20190101 + g % 1000, g * 1.25 FROM generate_series(1, 5000) g;"
        )
    before = texts(conn, "dwh_facts.fait_2019")
    result = archive_run.export_table(conn, "dwh_facts", "fait_2019", str(tmp_path))
    assert result.paths.parquet == str(tmp_path / "dwh_facts.fait" / "fait_2019.parquet")
    assert result.manifest.parent == ("dwh_facts", "fait")
    assert result.manifest.bound == "FOR VALUES FROM (20190101) TO (20200101)"
    with conn.cursor() as cur:
        cur.execute("ALTER TABLE dwh_facts.fait DETACH PARTITION dwh_facts.fait_2019")
    archive_run.verify_table(conn, "dwh_facts", "fait_2019", result.manifest)  # what retention checks before DROP
    with conn.cursor() as cur:
        cur.execute("DROP TABLE dwh_facts.fait_2019")
    archive_run.restore_table(conn, result.paths.manifest, "dwh_facts", "fait_2019")
    with conn.cursor() as cur:
        cur.execute("ALTER TABLE dwh_facts.fait ATTACH PARTITION dwh_facts.fait_2019 " + result.manifest.bound)
        cur.execute("SELECT count(*) FROM dwh_facts.fait")
        assert cur.fetchone()[0] == 5000
    assert texts(conn, "dwh_facts.fait_2019") == before


def test_a_changed_table_is_archived_again_and_fails_the_drop_check(conn, tmp_path):
    with conn.cursor() as cur:
        cur.execute("CREATE TABLE public.t (id int, v text); INSERT INTO public.t VALUES (1, 'a')")
    first = archive_run.export_table(conn, "public", "t", str(tmp_path))
    with conn.cursor() as cur:
        cur.execute("INSERT INTO public.t VALUES (2, 'b')")
    with pytest.raises(archive_run.ArchiveMismatch, match="no longer holds the rows archived"):
        archive_run.verify_table(conn, "public", "t", first.manifest)
    second = archive_run.export_table(conn, "public", "t", str(tmp_path))
    assert not second.reused and second.manifest.rows == 2
    assert parquet_archive.read_manifest(second.paths.manifest) == second.manifest


def test_a_damaged_file_or_an_occupied_target_is_refused_and_nothing_changes(conn, tmp_path):
    with conn.cursor() as cur:
        cur.execute("CREATE TABLE public.t (id int, v text); INSERT INTO public.t VALUES (1, 'a')")
        cur.execute("CREATE TABLE public.other (id int, v text); INSERT INTO public.other VALUES (9, 'z')")
    result = archive_run.export_table(conn, "public", "t", str(tmp_path))
    with pytest.raises(archive_run.InvalidInput, match="public.other already exists and does not hold"):
        archive_run.restore_table(conn, result.paths.manifest, "public", "other")
    with open(result.paths.parquet, "r+b") as handle:
        handle.seek(10)
        handle.write(b"\xff")
    with pytest.raises(archive_run.ArchiveMismatch, match="changed or damaged"):
        archive_run.restore_table(conn, result.paths.manifest, "public", "t_back")
    with pytest.raises(archive_run.ArchiveMismatch):
        archive_run.verify_archive(conn, result.paths.manifest)
    with conn.cursor() as cur:
        cur.execute("SELECT to_regclass('public.t_back')")
        assert cur.fetchone()[0] is None


def test_columns_or_values_that_cannot_round_trip_are_refused_before_anything_is_written(conn, tmp_path):
    with conn.cursor() as cur:
        cur.execute(
            "CREATE TABLE public.bad (id int, duree interval, pos point); INSERT INTO public.bad VALUES (1, '1 day', '(1,2)')"
        )
        cur.execute("CREATE TABLE public.nan (id int, montant numeric(14,2), d date)")
        cur.execute("INSERT INTO public.nan VALUES (1, 'NaN', 'infinity'), (2, 1, '2020-01-01')")
    with pytest.raises(ArchiveRefused) as raised:
        archive_run.export_table(conn, "public", "bad", str(tmp_path))
    assert "column duree of type interval" in raised.value.msg and "column pos of type point" in raised.value.msg
    with pytest.raises(ArchiveRefused) as raised:
        archive_run.export_table(conn, "public", "nan", str(tmp_path))
    assert "column montant: 1 row(s) hold NaN" in raised.value.msg
    assert "column d: 1 row(s) hold infinity" in raised.value.msg
    assert listing(tmp_path / "public.nan") == [] and listing(tmp_path / "public.bad") == []


def test_without_pyarrow_the_error_names_the_package_and_nothing_is_done(conn, tmp_path, monkeypatch):
    with conn.cursor() as cur:
        cur.execute("CREATE TABLE public.t (id int)")
    monkeypatch.setitem(sys.modules, "pyarrow", None)
    with pytest.raises(parquet_archive.ArchiveLibraryMissing, match=r"pip install 'pyarrow>=14'"):
        archive_run.export_table(conn, "public", "t", str(tmp_path))
    assert listing(tmp_path) == []


KILLED_EXPORT = textwrap.dedent(
    """
    import sys
    sys.path.insert(0, {path!r})
    import psycopg2
    from ansible_collections.sigeti.dwh.plugins.module_utils.archive import run as archive_run
    conn = psycopg2.connect({dsn!r})
    conn.autocommit = True
    archive_run.export_table(conn, "public", "big", {folder!r})
    """
)


def test_a_killed_export_leaves_no_archive_and_the_next_run_finishes(pg_server, db, conn, tmp_path, collections_path):
    with conn.cursor() as cur:
        cur.execute(
            "CREATE TABLE public.big AS SELECT g AS id, md5(g::text) || repeat(md5((g * 7)::text), 8) AS v, "
            "g * 1.5 AS m FROM generate_series(1, 400000) g"
        )
    folder = tmp_path / "public.big"
    script = KILLED_EXPORT.format(path=collections_path, dsn=pg_server.dsn(db), folder=str(tmp_path))
    child = subprocess.Popen([sys.executable, "-c", script])
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not any(".tmp-" in n for n in listing(folder)):
        assert child.poll() is None, "the export ended before it could be killed"
        time.sleep(0.005)
    time.sleep(0.3)  # into the write
    child.send_signal(signal.SIGKILL)
    child.wait()
    left = listing(folder)
    assert "big.parquet" not in left and "big.manifest.json" not in left
    assert [n for n in left if ".tmp-%d-" % child.pid in n], left  # the half file, under its temporary name
    result = archive_run.export_table(conn, "public", "big", str(tmp_path))
    assert result.removed_temps and not result.reused
    assert listing(folder) == ["big.manifest.json", "big.parquet"]
    assert result.manifest.rows == 400000


def test_a_parquet_file_without_its_manifest_is_no_archive(conn, tmp_path):
    """A run killed between the rename of the file and the manifest's: the next export writes both again."""
    with conn.cursor() as cur:
        cur.execute("CREATE TABLE public.t (id int); INSERT INTO public.t VALUES (1)")
    first = archive_run.export_table(conn, "public", "t", str(tmp_path))
    os.unlink(first.paths.manifest)
    again = archive_run.export_table(conn, "public", "t", str(tmp_path))
    assert not again.reused and os.path.exists(again.paths.manifest)


def test_a_full_disk_gives_a_clear_error_and_leaves_nothing(conn, small_mount):
    with conn.cursor() as cur:
        cur.execute(
            "CREATE TABLE public.wide AS SELECT g AS id, md5(g::text) || md5((g + 1)::text) AS v "
            "FROM generate_series(1, 100000) g"
        )
    with pytest.raises(parquet_archive.ArchiveWriteFailed) as raised:
        archive_run.export_table(conn, "public", "wide", str(small_mount))
    assert "No space left on device" in raised.value.msg and "free space" in raised.value.msg
    assert listing(small_mount / "public.wide") == []
    assert conn.autocommit  # the connection is the caller's again, usable
    with conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM public.wide")
        assert cur.fetchone()[0] == 100000


def test_an_unwritable_or_missing_archive_dir_gives_a_clear_error_and_leaves_nothing(conn, small_mount, tmp_path):
    with conn.cursor() as cur:
        cur.execute("CREATE TABLE public.t (id int); INSERT INTO public.t VALUES (1)")
    (small_mount / "public.t").mkdir()  # the folder exists, its files cannot be created
    subprocess.run(["mount", "-o", "remount,ro", str(small_mount)], check=True)
    with pytest.raises(parquet_archive.ArchiveWriteFailed, match="Read-only file system"):
        archive_run.export_table(conn, "public", "t", str(small_mount))
    assert listing(small_mount / "public.t") == []
    with pytest.raises(parquet_archive.ArchiveWriteFailed, match="does not exist"):
        archive_run.export_table(conn, "public", "t", str(tmp_path / "typo"))
    assert not (tmp_path / "typo").exists()
