"""preflight's backup: written to a temporary name and renamed only when pg_dump succeeded and the whole archive
reads back; what a failed or killed run leaves is removed; pg_dump connects with the modules' TLS settings."""

import glob
import os
import time

import pytest

from tests.integration.test_roles_helpers import compression_of, load_sample, partitions, play, write_inventory
from tests.support.tls import make_ca, tls_server

ATT = "dwh_facts.fait_attributions"


@pytest.fixture
def warehouse(pg_server, db, tmp_path):
    load_sample(pg_server, db)
    return write_inventory(
        tmp_path / "hosts.yml",
        {"dwh1": (pg_server, db)},
        {"dwh_backup_dir": str(tmp_path / "backups"), "dwh_report_dir": str(tmp_path / "reports")},
    )


def files(tmp_path, pattern):
    return sorted(glob.glob(str(tmp_path / "backups" / pattern)))


def fake_bin(tmp_path, pg_server, pg_dump_script):
    """A bin folder whose pg_dump is ``pg_dump_script`` (sh, REAL = the real bin folder) and pg_restore the real one."""
    folder = tmp_path / "bin"
    folder.mkdir()
    (folder / "pg_dump").write_text("#!/bin/sh\nREAL=%s\n%s\n" % (pg_server.bin_dir, pg_dump_script))
    os.chmod(folder / "pg_dump", 0o755)
    os.symlink(os.path.join(pg_server.bin_dir, "pg_restore"), folder / "pg_restore")
    return str(folder)


def test_leftovers_of_a_killed_run_are_removed_and_a_fresh_one_is_kept(pg_server, conn, warehouse, tmp_path):
    backups = tmp_path / "backups"
    (backups / ".sigeti-pgpass-killed").mkdir(parents=True)
    (backups / ".sigeti-pgpass-killed" / "pgpass").write_text("*:*:*:*:secret\n")
    (backups / "db_dwh1_20260101T000000Z.dump.partial").write_bytes(b"PGDMP" + b"\0" * 100)
    (backups / "other_run.dump.partial").write_bytes(b"PGDMP")  # another run's dump being written right now
    old = time.time() - 3 * 3600
    for path in (backups / ".sigeti-pgpass-killed", backups / "db_dwh1_20260101T000000Z.dump.partial"):
        os.utime(path, (old, old))
    result = play("setup.yml", warehouse, pg_server.password, {"dwh_confirm": True})
    assert result.returncode == 0, result.stdout[-5000:]
    assert "verified: read back in full" in result.stdout
    assert [os.path.basename(p) for p in files(tmp_path, "*.partial")] == ["other_run.dump.partial"]
    assert not glob.glob(str(backups / ".sigeti-pgpass-*")) and len(files(tmp_path, "*.dump")) == 1


@pytest.mark.parametrize(
    "script,cause",
    [
        # pg_dump fails half-way (a full disk, a killed server): a partial file and exit 1. Its arguments are
        # -Fc --no-password --lock-wait-timeout=... -f FILE -d CONNINFO, so $5 is the file.
        ('printf PGDMP > "$5"; echo "pg_dump: error: disk full" >&2; exit 1', "disk full"),
        # pg_dump says success but the archive is truncated: --list still works, a full read does not.
        (
            '"$REAL/pg_dump" "$@" || exit $?; f="$5"; head -c 3000 "$f" > "$f.cut" && mv "$f.cut" "$f"',
            "pg_restore",
        ),
    ],
    ids=["pg_dump-fails", "truncated-archive"],
)
def test_a_failed_or_truncated_dump_never_gets_a_final_name_and_nothing_changes(
    pg_server, conn, warehouse, tmp_path, script, cause
):
    before = partitions(conn, ATT)
    result = play(
        "setup.yml",
        warehouse,
        pg_server.password,
        {"dwh_confirm": True, "dwh_pg_bin_dir": fake_bin(tmp_path, pg_server, script)},
    )
    assert result.returncode != 0
    assert "the backup failed, so nothing was changed" in result.stdout and cause in result.stdout
    assert not files(tmp_path, "*.dump") and not files(tmp_path, "*.partial"), os.listdir(tmp_path / "backups")
    assert not glob.glob(str(tmp_path / "backups" / ".sigeti-pgpass-*"))
    assert partitions(conn, ATT) == before and compression_of(conn, ATT, "commentaire") == ""


def test_backup_and_modules_use_the_same_tls_settings_at_verify_full(tmp_path, monkeypatch):
    """hostssl-only server; the environment says sslmode=disable and a missing root certificate, so any connection
    that did not take dwh_ssl_mode / dwh_ca_cert from the roles (modules or pg_dump) would fail."""
    server = tls_server(tmp_path / "tls")
    try:
        server.create_database("dwh_tls")
        conn = server.connect("dwh_tls", sslmode="require")
        try:
            from tests.support.warehouse import load_warehouse

            load_warehouse(conn, scale=1000, partitioned=True)
        finally:
            conn.close()
        monkeypatch.setenv("PGSSLMODE", "disable")
        monkeypatch.setenv("PGSSLROOTCERT", str(tmp_path / "no-such-root.crt"))
        tls = {"dwh_ssl_mode": "verify-full", "dwh_ca_cert": server.tls["ca"]}
        inventory = write_inventory(
            tmp_path / "hosts.yml",
            {"dwh1": (server, "dwh_tls")},
            dict(tls, dwh_backup_dir=str(tmp_path / "backups"), dwh_report_dir=str(tmp_path / "reports")),
        )
        result = play("setup.yml", inventory, server.password, {"dwh_confirm": True}, args=["-v"])
        assert result.returncode == 0, result.stdout[-6000:]
        assert "verified: read back in full" in result.stdout and len(files(tmp_path, "*.dump")) == 1
        assert "sslmode='verify-full' sslrootcert='%s'" % server.tls["ca"] in result.stdout
        assert "--lock-wait-timeout=5s" in result.stdout and server.password not in result.stdout
        # Another CA: the modules refuse the server (ca_cert reached them), before any backup or change.
        other = make_ca(str(tmp_path / "other-ca"), name="other")
        inventory = write_inventory(
            tmp_path / "hosts-other.yml",
            {"dwh1": (server, "dwh_tls")},
            dict(tls, dwh_ca_cert=other["cert"], dwh_backup_dir=str(tmp_path / "backups")),
        )
        refused = play("setup.yml", inventory, server.password, {"dwh_confirm": True})
        assert refused.returncode != 0 and "certificate verify failed" in refused.stdout, refused.stdout[-4000:]
        assert len(files(tmp_path, "*.dump")) == 1
    finally:
        server.destroy()
