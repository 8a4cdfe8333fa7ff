"""sigeti.dwh.backup against real servers.

The docs' promise, literally: a table-scoped dump restores alone into an empty database, on the same server (the
module's own restore check: an empty database and a plain ``pg_restore -d``) and on a second, fresh server
(``createdb x; pg_restore -d x <dump>``, once the server has the roles, which no dump of a database holds), every
table equal (rows and md5) - with schemas, an enum, a domain, a trigger function, an extension's index, a function over
a table nothing else needs, a column of a table's row type, a sequence owned by another table, hostile names.
Rotation by the dumps' own manifests: a later-named junk file with keep 1, the two hosts whose 0.1 names collided, a
dump taken with the clock ahead, a dump file swapped under its manifest, another server's dumps.
"""

import glob
import json
import os
import subprocess

import pytest

from tests.integration.test_roles_helpers import load_sample
from tests.support.modules import run_module
from tests.support.pgserver import PostgresServer

ATT = "dwh_facts.fait_attributions"
DEBIAN_15 = "/usr/lib/postgresql/15/bin"
ODD = 'Odd "name" *'
LONG = "t" * 63


def backup(pg_server, db, folder, check_mode=False, **extra):
    args = dict(pg_server.params(db), backup_dir=str(folder), tables=[ATT], pg_bin_dir=pg_server.bin_dir)
    args.update(extra)
    return run_module("backup", args, check_mode=check_mode)


def hostile_extras(conn):
    """What a real warehouse carries beside its tables: types, functions, an extension, odd names."""
    statements = [
        "CREATE EXTENSION IF NOT EXISTS pg_trgm",
        "CREATE EXTENSION IF NOT EXISTS pgstattuple",  # used by nothing dumped: stays out
        "CREATE INDEX dim_lot_trgm ON dwh_dim.dim_lot USING gin (numero_lot gin_trgm_ops)",
        "CREATE TYPE dwh_dim.statut_zone AS ENUM ('ouverte', 'fermee')",
        "ALTER TABLE dwh_dim.dim_zone ADD COLUMN statut dwh_dim.statut_zone NOT NULL DEFAULT 'ouverte'",
        "CREATE DOMAIN public.montant_positif AS numeric CHECK (VALUE >= 0)",
        "ALTER TABLE dwh_dim.dim_lot ADD COLUMN caution public.montant_positif DEFAULT 0",
        "CREATE FUNCTION public.touch() RETURNS trigger LANGUAGE plpgsql AS $$BEGIN RETURN NEW; END$$",
        "CREATE TRIGGER touch BEFORE INSERT ON dwh_facts.fait_attributions FOR EACH ROW EXECUTE FUNCTION public.touch()",
        # A table only a function's argument needs, a table only a column's type needs.
        "CREATE TABLE dwh_facts.notes (id int PRIMARY KEY, texte text)",
        "INSERT INTO dwh_facts.notes SELECT i, md5(i::text) FROM generate_series(1, 30) i",
        "CREATE FUNCTION public.note_longueur(n dwh_facts.notes) RETURNS int LANGUAGE sql AS 'SELECT length(n.texte)'",
        "CREATE TABLE dwh_dim.zone_meta (source text, version int)",
        "ALTER TABLE dwh_dim.dim_zone ADD COLUMN meta dwh_dim.zone_meta",
        # A sequence an excluded table owns, called by a dumped default.
        "CREATE TABLE dwh_facts.compteurs (id serial PRIMARY KEY)",
        "ALTER TABLE dwh_dim.dim_lot ADD COLUMN code int DEFAULT nextval('dwh_facts.compteurs_id_seq')",
        # Relations nothing dumped needs, with names a pattern would misread; a view over the fact, also odd.
        'CREATE TABLE dwh_facts."%s" (a int)' % ODD.replace('"', '""'),
        "CREATE TABLE dwh_facts.%s (a int)" % LONG,
        'CREATE VIEW dwh_marts."Vue ""2024"".*" AS SELECT attribution_id FROM dwh_facts.fait_attributions',
        "CREATE STATISTICS dwh_facts.factures_stats (ndistinct) ON facture_id, entreprise_id FROM dwh_facts.fait_factures",
        "COMMENT ON TABLE dwh_dim.dim_lot IS 'lots des zones'",
    ]
    with conn.cursor() as cur:
        for statement in statements:
            cur.execute(statement)


def listing(bin_dir, path):
    return subprocess.run(
        [os.path.join(bin_dir, "pg_restore"), "--list", path], capture_output=True, text=True, check=True
    ).stdout


def fingerprints(conn, tables):
    """Rows and md5 of every row of each table, in a stable order."""
    out = {}
    with conn.cursor() as cur:
        for name in tables:
            cur.execute(
                "SELECT count(*), md5(coalesce(string_agg(t::text, '|' ORDER BY t::text), '')) FROM ONLY %s t" % name
            )
            out[name] = cur.fetchone()
    return out


def dumped_tables(result):
    def quote(part):
        return part if part.replace("_", "").isalnum() and part.islower() else '"%s"' % part.replace('"', '""')

    return ["%s.%s" % (quote(r["schema"]), quote(r["name"])) for r in result["relations"] if r["kind"] == "table"]


def run_client(bin_dir, program, server, *args):
    env = dict(os.environ, PGPASSWORD=server.password, PGHOST="127.0.0.1", PGPORT=str(server.port), PGUSER="postgres")
    return subprocess.run([os.path.join(bin_dir, program), *args], check=False, capture_output=True, text=True, env=env)


def restore_on_a_new_server(source, dump, bin_dir, version=None):
    """A fresh server: ``pg_restore --no-owner --no-privileges`` without its roles, then the roles (pg_dumpall
    --roles-only, as a DBA moving to a new server does) and the plain ``createdb x; pg_restore -d x <dump>``."""
    fresh = PostgresServer(bin_dir=bin_dir, version=version).start()
    try:
        assert run_client(bin_dir, "createdb", fresh, "bare").returncode == 0
        bare = run_client(bin_dir, "pg_restore", fresh, "--no-owner", "--no-privileges", "-d", "bare", dump)
        assert bare.returncode == 0 and bare.stderr == "", bare.stderr[-3000:]
        roles = run_client(bin_dir, "pg_dumpall", source, "--roles-only")
        assert roles.returncode == 0, roles.stderr
        loaded = subprocess.run(
            [os.path.join(bin_dir, "psql"), "-X", "-q", "-d", fresh.dsn("postgres")],
            input=roles.stdout,
            check=False,
            capture_output=True,
            text=True,
        )
        assert loaded.returncode == 0, loaded.stderr
        assert run_client(bin_dir, "createdb", fresh, "x").returncode == 0
        plain = run_client(bin_dir, "pg_restore", fresh, "-d", "x", dump)
        assert plain.returncode == 0 and plain.stderr == "", plain.stderr[-3000:]
        return fresh.connect("x"), fresh
    except BaseException:
        fresh.destroy()
        raise


@pytest.mark.parametrize("version", [None, "15"], ids=["default", "pg15"])
def test_a_table_scoped_dump_restores_alone_into_an_empty_database_on_a_new_server(pg_server, db, tmp_path, version):
    if version and not os.path.isdir(DEBIAN_15):
        pytest.skip("Debian's PostgreSQL 15 is not installed")
    bin_dir = DEBIAN_15 if version else pg_server.bin_dir
    source = pg_server if not version else PostgresServer(bin_dir=bin_dir).start()
    try:
        database = db if not version else source.create_database("wh15")
        load_sample(source, database, scale=300)
        conn = source.connect(database)
        hostile_extras(conn)
        result = backup(source, database, tmp_path / "backups", verify="restore", host_label="wh1")
        assert not result.get("failed"), result
        assert result["changed"] is False and result["restore"]["tables"] == len(dumped_tables(result))
        text = listing(bin_dir, result["file"])
        for entry in (
            "SCHEMA - dwh_dim",
            "SCHEMA - dwh_facts",
            "SCHEMA - dwh_marts",
            "EXTENSION - pg_trgm",
            "TYPE dwh_dim statut_zone",
            "DOMAIN public montant_positif",
            "FUNCTION public touch()",
            "TABLE dwh_facts notes",
            "TABLE dwh_dim zone_meta",
            "TABLE dwh_facts compteurs",
            'VIEW dwh_marts Vue "2024".*',
        ):
            assert entry in text, (entry, text)
        for absent in ("pgstattuple", "fait_factures", "Odd", LONG, "factures_stats"):
            assert absent not in text, absent
        assert result["extensions"] == ["pg_trgm"] and result["excluded"] >= 12
        reasons = {r["name"]: r["reason"] for r in result["relations"]}
        assert reasons["notes"] == "needed by function note_longueur(dwh_facts.notes)", reasons
        assert reasons["compteurs"].startswith("needed by sequence dwh_facts.compteurs_id_seq"), reasons
        tables = dumped_tables(result)
        before = fingerprints(conn, tables)
        conn.close()
        restored, fresh = restore_on_a_new_server(source, result["file"], bin_dir, version)
        try:
            assert fingerprints(restored, tables) == before
            with restored.cursor() as cur:
                cur.execute(
                    "SELECT obj_description('dwh_dim.dim_lot'::regclass), count(*) FROM dwh_marts.v_attributions_detail"
                )
                assert cur.fetchone()[0] == "lots des zones"
                cur.execute(
                    "SELECT count(*) FROM pg_constraint WHERE contype = 'f' AND conrelid = 'dwh_facts.fait_attributions'::regclass"
                )
                assert cur.fetchone()[0] >= 2
                cur.execute("REFRESH MATERIALIZED VIEW dwh_marts.mv_attributions_par_annee")
        finally:
            restored.close()
            fresh.destroy()
    finally:
        if version:
            source.destroy()


def test_the_database_scope_dumps_everything(pg_server, db, tmp_path):
    load_sample(pg_server, db, scale=200)
    result = backup(pg_server, db, tmp_path / "b", scope="database", tables=[], verify="restore")
    assert not result.get("failed"), result
    assert "fait_factures" in listing(pg_server.bin_dir, result["file"]) and result["contents"] == "the database"
    assert result["restore"]["rows"] > 0


def warnings_of(result):
    """The warnings of a module result, as text (Ansible 2.19 returns them as events)."""
    return [w["event"]["msg"] if isinstance(w, dict) else w for w in result.get("warnings") or []]


def files_in(folder):
    return sorted(os.path.basename(p) for p in glob.glob(os.path.join(str(folder), "*")))


def test_rotation_keeps_the_verified_dump_and_never_a_file_without_manifest(pg_server, db, tmp_path):
    """keep 1 with later-named files beside (junk, a dump-like name with no manifest, as after a clock stepped back):
    the run's own dump stays, the junk stays, this host's older dump goes."""
    load_sample(pg_server, db, scale=200)
    folder = tmp_path / "b"
    first = backup(pg_server, db, folder, keep=1, host_label="wh1")
    junk = ["zzzz.dump", "%s@wh1_29991231T235959Z_ffffff.dump" % db, "notes.txt", "~.dump.json"]
    for name in junk:
        (folder / name).write_text("not a dump")
    second = backup(pg_server, db, folder, keep=1, host_label="wh1")
    assert not second.get("failed"), second
    assert second["removed"] == [first["file"]]
    assert files_in(folder) == sorted(
        junk + [os.path.basename(second["file"]), os.path.basename(second["file"]) + ".json"]
    )
    assert any("have no manifest" in w for w in warnings_of(second)), warnings_of(second)


def test_hosts_whose_names_collided_each_keep_their_own_dumps(pg_server, tmp_path):
    """0.1 named both sigeti_staging_wh1_<time>.dump: host wh1 on sigeti_staging and host staging_wh1 on sigeti."""
    folder = tmp_path / "shared"
    pairs = [("wh1", pg_server.create_database("sigeti_staging")), ("staging_wh1", pg_server.create_database("sigeti"))]
    try:
        for _host, database in pairs:
            load_sample(pg_server, database, scale=100)
        taken = {}
        for _round in range(2):
            for host, database in pairs:
                result = backup(pg_server, database, folder, keep=1, host_label=host)
                assert not result.get("failed"), result
                taken.setdefault(host, []).append(os.path.basename(result["file"]))
        names = [n for n in files_in(folder) if n.endswith(".dump")]
        assert names == sorted([taken["wh1"][1], taken["staging_wh1"][1]]), names
        assert taken["wh1"][1].startswith("sigeti_staging@wh1_") and taken["staging_wh1"][1].startswith(
            "sigeti@staging_wh1_"
        )
        for host, database in pairs:
            with open(os.path.join(str(folder), taken[host][1] + ".json")) as handle:
                manifest = json.load(handle)
            assert (manifest["host"], manifest["database"], manifest["sequence"]) == (host, database, 2)
    finally:
        admin = pg_server.connect()
        with admin.cursor() as cur:
            for _host, database in pairs:
                cur.execute('DROP DATABASE IF EXISTS "%s" WITH (FORCE)' % database)
        admin.close()


def test_a_dump_taken_with_the_clock_ahead_is_rotated_by_its_sequence(pg_server, db, tmp_path):
    """The clock was ahead for the first dump (its name and record say 2999), then stepped back: the rotation goes by
    the dumps' sequence numbers, so the later ones are kept and the one from "2999" is the oldest."""
    load_sample(pg_server, db, scale=100)
    folder = tmp_path / "b"
    first = backup(pg_server, db, folder, keep=0, host_label="wh1")
    ahead = os.path.join(str(folder), "%s@wh1_29990101T000000Z_abcdef.dump" % db)
    os.rename(first["file"], ahead)
    with open(first["file"] + ".json") as handle:
        manifest = json.load(handle)
    manifest.update(file=os.path.basename(ahead), started_at="2999-01-01T00:00:00.000000Z")
    with open(ahead + ".json", "w") as handle:
        json.dump(manifest, handle)
    os.unlink(first["file"] + ".json")
    second = backup(pg_server, db, folder, keep=2, host_label="wh1")
    assert second["removed"] == [] and second["sequence"] == 2
    third = backup(pg_server, db, folder, keep=2, host_label="wh1")
    assert third["removed"] == [ahead], third
    assert [n for n in files_in(folder) if n.endswith(".dump")] == sorted(
        os.path.basename(r["file"]) for r in (second, third)
    )


def test_rotation_leaves_another_servers_dumps_and_a_file_its_manifest_does_not_describe(pg_server, db, tmp_path):
    load_sample(pg_server, db, scale=100)
    folder = tmp_path / "b"
    other_server = backup(pg_server, db, folder, keep=0, host_label="wh1")
    path = other_server["file"] + ".json"
    with open(path) as handle:
        manifest = json.load(handle)
    manifest["system_identifier"] = "1"  # a rebuilt server, same host name and database
    with open(path, "w") as handle:
        json.dump(manifest, handle)
    swapped = backup(pg_server, db, folder, keep=0, host_label="wh1")
    with open(swapped["file"], "ab") as handle:
        handle.write(b"\0")  # no longer the file its manifest describes
    last = backup(pg_server, db, folder, keep=1, host_label="wh1")
    assert last["removed"] == [], last
    assert os.path.exists(other_server["file"]) and os.path.exists(swapped["file"])
    assert any("rotation left %s" % swapped["file"] in w for w in warnings_of(last)), warnings_of(last)


def test_check_mode_writes_nothing_and_says_what_it_would_dump(pg_server, db, tmp_path):
    load_sample(pg_server, db, scale=100)
    result = backup(pg_server, db, tmp_path / "absent", check_mode=True, verify="restore")
    assert not result.get("failed"), result
    assert not os.path.exists(tmp_path / "absent") and result["msg"].startswith("would dump %s (with" % ATT)
    assert result["commands"][0].split()[1:4] == ["-Fc", "--no-password", "--lock-wait-timeout=5000ms"]


def test_refusals_name_what_to_do_and_leave_nothing(pg_server, db, tmp_path):
    load_sample(pg_server, db, scale=100)
    folder = tmp_path / "b"
    absent = backup(pg_server, db, folder, tables=["dwh_facts.absent"])
    assert absent["failed"] and "none of dwh_facts.absent exists yet: nothing to dump" in absent["msg"]
    short = backup(pg_server, db, folder, required_ratio=1e12)
    assert short["failed"] and "free in %s, but the dump of %s" % (folder, ATT) in short["msg"]
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "pg_dump").write_text("#!/bin/sh\necho 'pg_dump (PostgreSQL) 13.4'\n")
    os.chmod(fake / "pg_dump", 0o755)
    os.symlink(os.path.join(pg_server.bin_dir, "pg_restore"), fake / "pg_restore")
    old = backup(pg_server, db, folder, pg_bin_dir=str(fake))
    assert old["failed"] and "is pg_dump (PostgreSQL) 13.4, older than the server" in old["msg"]
    missing = backup(pg_server, db, folder, pg_bin_dir=str(tmp_path / "nowhere"))
    assert missing["failed"] and "%s/pg_dump not found or not executable" % (tmp_path / "nowhere") in missing["msg"]
    assert not os.path.exists(folder) or files_in(folder) == []


@pytest.fixture
def owner(pg_server, db, conn):
    """The sample warehouse owned by a non-superuser whose password holds a quote, a space, a colon, a backslash."""
    password = "o'k p:a\\ss"
    load_sample(pg_server, db, scale=100)
    with conn.cursor() as cur:
        cur.execute("DO $$ BEGIN CREATE ROLE bk_owner LOGIN; EXCEPTION WHEN duplicate_object THEN NULL; END $$")
        cur.execute("ALTER ROLE bk_owner NOCREATEDB PASSWORD %s", (password,))
        cur.execute('GRANT CONNECT, CREATE ON DATABASE "%s" TO bk_owner' % db)
        cur.execute("GRANT pg_read_all_data TO bk_owner")
    yield password
    with conn.cursor() as cur:
        cur.execute('REVOKE ALL ON DATABASE "%s" FROM bk_owner' % db)
        cur.execute("REVOKE pg_read_all_data FROM bk_owner")


def test_a_non_superuser_backs_up_with_the_password_in_no_command_line_and_no_environment(
    pg_server, db, owner, tmp_path
):
    """Every pg_dump / pg_restore call is recorded (arguments and environment): the password is in neither; the
    private pgpass file is gone afterwards. The restore check needs CREATEDB and says so."""
    fake = tmp_path / "bin"
    fake.mkdir()
    record = tmp_path / "calls.txt"
    for program in ("pg_dump", "pg_restore"):
        (fake / program).write_text(
            '#!/bin/sh\n{ echo "$0 $*"; env; } >> %s\nexec %s "$@"\n'
            % (record, os.path.join(pg_server.bin_dir, program))
        )
        os.chmod(fake / program, 0o755)
    args = dict(pg_server.params(db, user="bk_owner", password=owner), backup_dir=str(tmp_path / "b"), tables=[ATT])
    args.update(pg_bin_dir=str(fake), host_label="wh1")
    result = run_module("backup", args)
    assert not result.get("failed"), result
    calls = record.read_text()
    assert "--lock-wait-timeout" in calls and "PGPASSFILE=%s/.sigeti-pgpass-" % (tmp_path / "b") in calls
    assert owner not in calls and owner not in json.dumps(result)
    assert not glob.glob(str(tmp_path / "b" / ".sigeti-pgpass-*"))
    refused = run_module("backup", dict(args, verify="restore"))
    assert refused["failed"] and "permission denied to create database" in refused["msg"], refused["msg"]
    assert [n for n in files_in(tmp_path / "b") if n.endswith(".partial")] == []


def test_what_a_killed_run_left_is_removed_once_stale(pg_server, db, conn, tmp_path):
    load_sample(pg_server, db, scale=100)
    with conn.cursor() as cur:
        cur.execute("CREATE DATABASE sigeti_verify_20000101000000_abcdef")  # a restore check killed long ago
        cur.execute("CREATE DATABASE sigeti_verify_29990101000000_abcdef")  # "younger": may be a run in progress
    try:
        result = backup(pg_server, db, tmp_path / "b", verify="restore")
        assert not result.get("failed"), result
        with conn.cursor() as cur:
            cur.execute("SELECT datname FROM pg_database WHERE datname LIKE 'sigeti\\_verify\\_%' ORDER BY 1")
            assert cur.fetchall() == [("sigeti_verify_29990101000000_abcdef",)]
    finally:
        with conn.cursor() as cur:
            cur.execute("DROP DATABASE IF EXISTS sigeti_verify_29990101000000_abcdef")
            cur.execute("DROP DATABASE IF EXISTS sigeti_verify_20000101000000_abcdef")
