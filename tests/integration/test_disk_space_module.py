"""sigeti.dwh.disk_space against a real server: the data directory found for a superuser (its setting), for a
non-superuser without pg_read_all_settings (the server process's working directory, as root on the database host),
for one with it (the setting); a wrong dwh_data_directory named in a warning; a tablespace measured where it lives;
a shortage refused with free and needed bytes."""

import os

import pytest

from tests.integration.test_roles_helpers import load_sample
from tests.support.modules import run_module

ATT = "dwh_facts.fait_attributions"


def check(params, **extra):
    args = dict(params, tables={ATT: ["migrate"]})
    args.update(extra)
    return run_module("disk_space", args)


def warnings_of(result):
    return [w["event"]["msg"] if isinstance(w, dict) else w for w in result.get("warnings") or []]


@pytest.fixture
def reader(pg_server, db, conn):
    """A login role that may read the warehouse, without superuser nor pg_read_all_settings."""
    load_sample(pg_server, db, scale=100)
    with conn.cursor() as cur:
        cur.execute("DO $$ BEGIN CREATE ROLE disk_reader LOGIN; EXCEPTION WHEN duplicate_object THEN NULL; END $$")
        cur.execute("ALTER ROLE disk_reader PASSWORD 'disk-reader'")
        cur.execute('GRANT CONNECT ON DATABASE "%s" TO disk_reader' % db)
        cur.execute("GRANT pg_read_all_data TO disk_reader")
    yield pg_server.params(db, user="disk_reader", password="disk-reader")
    with conn.cursor() as cur:
        cur.execute("REVOKE pg_read_all_settings FROM disk_reader")
        cur.execute('REVOKE ALL ON DATABASE "%s" FROM disk_reader' % db)


def test_the_data_directory_is_found_for_a_superuser_and_for_a_non_superuser(pg_server, db, conn, reader):
    superuser = check(pg_server.params(db))
    assert not superuser.get("failed"), superuser
    assert superuser["found_by"] == "the server's data_directory setting" and superuser["changed"] is False
    [measured] = superuser["checks"]
    assert measured["folder"] == pg_server.data_dir and measured["free_bytes"] > measured["required_bytes"] > 0
    # No pg_read_all_settings: the setting is hidden, the server's process (this host, as root) still says where.
    with conn.cursor() as cur:
        cur.execute("SET ROLE disk_reader")
        cur.execute("SELECT setting FROM pg_settings WHERE name = 'data_directory'")
        assert cur.fetchall() == []
        cur.execute("RESET ROLE")
    plain = check(reader)
    assert not plain.get("failed"), plain
    assert plain["found_by"] == "the server process's working directory"
    assert os.path.realpath(plain["data_directory"]) == os.path.realpath(pg_server.data_dir)
    with conn.cursor() as cur:
        cur.execute("GRANT pg_read_all_settings TO disk_reader")
    granted = check(reader)
    assert granted["found_by"] == "the server's data_directory setting", granted


def test_a_wrong_data_directory_is_named_and_a_shortage_refused(pg_server, db, reader, tmp_path):
    wrong = check(reader, data_directory=str(tmp_path))
    assert not wrong.get("failed"), wrong
    [warning] = warnings_of(wrong)
    assert warning.startswith(
        "free disk NOT checked for %s (migration): data_directory (dwh_data_directory) %s" % (ATT, tmp_path)
    )
    right = check(reader, data_directory=pg_server.data_dir)
    assert right["found_by"] == "data_directory (dwh_data_directory)"
    short = check(reader, required_ratio=1e12)
    assert short["failed"] and "free on the filesystem of" in short["msg"]
    assert "%s (migration) there needs" % ATT in short["msg"] and "dwh_disk_required_ratio" in short["msg"]
    assert short["checks"][0]["required_bytes"] > short["checks"][0]["free_bytes"]
    nothing = run_module("disk_space", dict(reader, tables={}))
    assert nothing["checks"] == [] and "nothing to check" in nothing["msg"]


def test_a_tablespace_is_measured_where_it_lives(pg_server, db, conn):
    load_sample(pg_server, db, scale=100)
    # A folder the server's user can reach (pytest's are root's only).
    folder = os.path.join(pg_server.base_dir, "ts-%s" % db)
    os.makedirs(folder)
    if pg_server.user:
        os.chown(folder, *pg_server.user)
    name = "ts_%s" % db[-20:]
    with conn.cursor() as cur:
        cur.execute("CREATE TABLESPACE %s LOCATION %%s" % name, (folder,))
        cur.execute("ALTER TABLE dwh_facts.fait_attributions_2023 SET TABLESPACE %s" % name)
    try:
        with conn.cursor() as cur:
            cur.execute(
                "SELECT sum(pg_total_relation_size(relid)) FROM pg_partition_tree(%s::regclass) WHERE isleaf", (ATT,)
            )
            total = int(cur.fetchone()[0])
        result = check(pg_server.params(db), required_ratio=2.0)
        assert not result.get("failed"), result
        if os.stat(folder).st_dev == os.stat(pg_server.data_dir).st_dev:
            # one filesystem: the data directory's bytes and the tablespace's are summed once
            [measured] = result["checks"]
            assert measured["required_bytes"] == 2 * total
        else:
            assert {c["folder"] for c in result["checks"]} == {pg_server.data_dir, folder}
            assert sum(c["required_bytes"] for c in result["checks"]) == 2 * total
    finally:
        with conn.cursor() as cur:
            cur.execute("ALTER TABLE dwh_facts.fait_attributions_2023 SET TABLESPACE pg_default")
            cur.execute("DROP TABLESPACE %s" % name)
        os.rmdir(folder)
