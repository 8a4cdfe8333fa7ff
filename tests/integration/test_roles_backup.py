"""preflight's backup: written to a temporary name and renamed only when pg_dump succeeded and the whole archive
reads back; what a failed or killed run leaves is removed; pg_dump connects with the modules' TLS settings. The
policy (dwh_backup: auto dumps only before a rewrite or a removal), the scope (the touched tables), the rotation,
the free-disk check and the restore verification."""

import glob
import os
import re
import subprocess
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
        # These tests are about the dump itself: one before any change.
        {
            "dwh_backup": "always",
            "dwh_backup_dir": str(tmp_path / "backups"),
            "dwh_report_dir": str(tmp_path / "reports"),
        },
    )


def files(tmp_path, pattern):
    return sorted(glob.glob(str(tmp_path / "backups" / pattern)))


def fake_bin(tmp_path, pg_server, pg_dump_script):
    """A bin folder whose pg_dump is ``pg_dump_script`` (sh, REAL = the real bin folder; --version answered by the
    real one), pg_restore real."""
    folder = tmp_path / "bin"
    folder.mkdir()
    (folder / "pg_dump").write_text(
        '#!/bin/sh\nREAL=%s\n[ "$1" = --version ] && exec "$REAL/pg_dump" --version\n%s\n'
        % (pg_server.bin_dir, pg_dump_script)
    )
    os.chmod(folder / "pg_dump", 0o755)
    os.symlink(os.path.join(pg_server.bin_dir, "pg_restore"), folder / "pg_restore")
    return str(folder)


def test_leftovers_of_a_killed_run_are_removed_and_a_fresh_one_is_kept(pg_server, conn, warehouse, tmp_path):
    backups = tmp_path / "backups"
    (backups / ".sigeti-pgpass-killed").mkdir(parents=True)
    (backups / ".sigeti-pgpass-killed" / "pgpass").write_text("*:*:*:*:secret\n")
    killed = "db@dwh1_20260101T000000Z_00abcd.dump.partial"
    (backups / killed).write_bytes(b"PGDMP" + b"\0" * 100)
    (backups / "db@dwh1_20260101T000000Z_00abcd.dump.json.partial").write_text("{")
    # Another run's dump being written right now, and an old file named like a partial dump but not one of ours.
    (backups / "db@dwh2_20260101T000000Z_00abce.dump.partial").write_bytes(b"PGDMP")
    (backups / "other_run.dump.partial").write_bytes(b"PGDMP")
    old = time.time() - 3 * 3600
    for name in (
        ".sigeti-pgpass-killed",
        killed,
        "db@dwh1_20260101T000000Z_00abcd.dump.json.partial",
        "other_run.dump.partial",
    ):
        os.utime(backups / name, (old, old))
    result = play("setup.yml", warehouse, pg_server.password, {"dwh_confirm": True})
    assert result.returncode == 0, result.stdout[-5000:]
    assert "verified: read back in full" in result.stdout
    left = [os.path.basename(p) for p in files(tmp_path, "*.partial")]
    assert left == ["db@dwh2_20260101T000000Z_00abce.dump.partial", "other_run.dump.partial"], left
    assert not glob.glob(str(backups / ".sigeti-pgpass-*")) and len(files(tmp_path, "*.dump")) == 1


@pytest.mark.parametrize(
    "script,cause",
    [
        # pg_dump fails half-way (a full disk, a killed server): a partial file and exit 1. Its arguments start
        # -Fc --no-password --lock-wait-timeout=... -f FILE, so $5 is the file.
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
            dict(
                tls, dwh_backup=True, dwh_backup_dir=str(tmp_path / "backups"), dwh_report_dir=str(tmp_path / "reports")
            ),
        )
        result = play("setup.yml", inventory, server.password, {"dwh_confirm": True}, args=["-v"])
        assert result.returncode == 0, result.stdout[-6000:]
        assert "verified: read back in full" in result.stdout and len(files(tmp_path, "*.dump")) == 1
        assert "sslmode='verify-full' sslrootcert='%s'" % server.tls["ca"] in result.stdout
        assert "--lock-wait-timeout=5000ms" in result.stdout and server.password not in result.stdout
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


def archive_tables(pg_server, path):
    """The tables whose data the archive holds (pg_restore --list, TABLE DATA lines), as schema.table."""
    listing = subprocess.run(
        [os.path.join(pg_server.bin_dir, "pg_restore"), "--list", path], capture_output=True, text=True, check=True
    ).stdout
    return sorted(
        "%s.%s" % (line.split()[-3], line.split()[-2]) for line in listing.splitlines() if " TABLE DATA " in line
    )


def archive_entries(pg_server, path, kind):
    """``schema.name`` of the archive's entries of one kind (VIEW, MATERIALIZED VIEW, FK CONSTRAINT, SEQUENCE...)."""
    listing = subprocess.run(
        [os.path.join(pg_server.bin_dir, "pg_restore"), "--list", path], capture_output=True, text=True, check=True
    ).stdout
    found = []
    for line in listing.splitlines():
        match = re.match(r"^\d+; \d+ \d+ %s (\S+) (\S+) (\S+)" % re.escape(kind), line)
        if match and match.group(1) != "DATA":  # MATERIALIZED VIEW DATA, TABLE DATA, SEQUENCE SET are other kinds
            words = match.groups()
            found.append("%s.%s.%s" % words if kind == "FK CONSTRAINT" else "%s.%s" % words[:2])
    return sorted(found)


def take_dump(pg_server, db, folder, host):
    """A real dump of ``db`` by the backup module, as host ``host`` (rotation off); return its file name."""
    from tests.support.modules import run_module

    args = dict(pg_server.params(db), backup_dir=str(folder), tables=[ATT], keep=0, host_label=host)
    args["pg_bin_dir"] = pg_server.bin_dir
    result = run_module("backup", args)
    assert not result.get("failed"), result
    return os.path.basename(result["file"])


def with_retention(keep, action="drop"):
    from tests.integration.test_roles_helpers import sigeti_tables

    tables = sigeti_tables()
    tables[0] = dict(tables[0], retention={"keep": keep, "action": action})
    return tables


def test_auto_no_dump_for_new_partitions_a_scoped_dump_before_a_retention_drop_and_rotation(
    pg_server, conn, db, tmp_path
):
    load_sample(pg_server, db)
    backups = tmp_path / "backups"
    inventory = write_inventory(
        tmp_path / "hosts.yml",
        {"dwh1": (pg_server, db)},
        {"dwh_backup_dir": str(backups), "dwh_report_dir": str(tmp_path / "reports"), "dwh_backup_keep": 2},
    )
    # Weekly run that only creates partitions ahead (additive): no dump under the default policy (auto).
    before = partitions(conn, ATT)
    weekly = play("weekly.yml", inventory, pg_server.password, {"dwh_confirm": True})
    assert weekly.returncode == 0, weekly.stdout[-6000:]
    assert set(partitions(conn, ATT)) - set(before) == {"fait_attributions_2027", "fait_attributions_2028"}
    assert "no (dwh_backup: auto)" in weekly.stdout and "NO BACKUP" not in weekly.stdout
    assert not os.path.exists(backups) or not files(tmp_path, "*.dump"), os.listdir(backups)

    # Older dumps of this host and database (each with its manifest), one of another host, one without a manifest.
    old = [take_dump(pg_server, db, backups, "dwh1") for _i in range(3)]
    other = take_dump(pg_server, db, backups, "dwh10")
    (backups / ("%s_dwh1_20250101T000000Z.dump" % db)).write_bytes(b"PGDMP")  # 0.1's naming: never rotated
    # Retention drops fait_attributions_2020: a dump first, of that table and its partitions only.
    drop = play("weekly.yml", inventory, pg_server.password, {"dwh_confirm": True, "dwh_tables": with_retention(5)})
    assert drop.returncode == 0, drop.stdout[-6000:]
    assert "fait_attributions_2020" not in partitions(conn, ATT)
    assert "yes (dwh_backup: auto; %s)" % ATT in drop.stdout
    kept = [os.path.basename(p) for p in files(tmp_path, "*.dump")]
    new = [name for name in kept if name not in old + [other] and "_dwh1_2025" not in name]
    assert len(new) == 1 and sorted(kept) == sorted([old[2], other, "%s_dwh1_20250101T000000Z.dump" % db] + new), kept
    assert "have no manifest" in drop.stdout
    dumped = archive_tables(pg_server, str(backups / new[0]))
    assert "dwh_facts.fait_attributions_2020" in dumped and "dwh_facts.fait_attributions_2026" in dumped
    # The dimensions its foreign keys and views need come along; the other fact table does not.
    assert "dwh_dim.dim_lot" in dumped and not [t for t in dumped if "fait_factures" in t], dumped


def test_no_room_for_the_dump_fails_before_any_change(pg_server, conn, db, tmp_path):
    load_sample(pg_server, db)
    inventory = write_inventory(
        tmp_path / "hosts.yml",
        {"dwh1": (pg_server, db)},
        {"dwh_backup_dir": str(tmp_path / "backups"), "dwh_backup_required_ratio": 1e12},
    )
    before = partitions(conn, ATT)
    result = play("weekly.yml", inventory, pg_server.password, {"dwh_confirm": True, "dwh_tables": with_retention(5)})
    assert result.returncode != 0
    assert "the backup failed, so nothing was changed" in result.stdout
    assert "free in %s" % (tmp_path / "backups") in result.stdout and "dwh_backup_required_ratio" in result.stdout
    assert "(with what a restore of them needs: partitioned table 1, table " in result.stdout
    assert partitions(conn, ATT) == before and not files(tmp_path, "*.dump*")


def scratch_databases(conn):
    with conn.cursor() as cur:
        cur.execute("SELECT datname FROM pg_database WHERE datname LIKE 'sigeti_verify_%'")
        return cur.fetchall()


@pytest.mark.parametrize("scope", ["tables", "database"])
def test_restore_verification_restores_the_whole_dump_compares_row_counts_and_drops_the_scratch_database(
    pg_server, conn, db, tmp_path, scope
):
    load_sample(pg_server, db)
    inventory = write_inventory(
        tmp_path / "hosts.yml",
        {"dwh1": (pg_server, db)},
        {"dwh_backup_dir": str(tmp_path / "backups"), "dwh_backup_verify": "restore", "dwh_backup_scope": scope},
    )
    result = play("weekly.yml", inventory, pg_server.password, {"dwh_confirm": True, "dwh_tables": with_retention(5)})
    assert result.returncode == 0, result.stdout[-6000:]
    assert "counts equal to the source's" in result.stdout and len(files(tmp_path, "*.dump")) == 1
    assert scratch_databases(conn) == []
    if scope == "tables":
        # The retention drop touches the fact table only: the dump also holds its view and materialized views, the
        # dimensions its foreign keys point at (and theirs), what those views read and its sequence, so that the
        # whole dump (foreign keys, views, refreshed materialized views) restored into the empty scratch database.
        assert "and what a restore of them needs: partitioned table 1, table " in result.stdout
        [dump] = files(tmp_path, "*.dump")
        tables = archive_tables(pg_server, dump)
        assert {"dwh_dim.dim_entreprise", "dwh_dim.dim_lot", "dwh_dim.dim_zone", "dwh_dim.dim_date"} <= set(tables)
        assert "dwh_facts.fait_attributions_default" in tables and not [t for t in tables if "fait_factures" in t]
        assert archive_entries(pg_server, dump, "VIEW") == ["dwh_marts.v_attributions_detail"]
        assert archive_entries(pg_server, dump, "MATERIALIZED VIEW") == [
            "dwh_marts.mv_attributions_par_annee",
            "dwh_marts.mv_occupation_par_zone",
        ]
        foreign_keys = archive_entries(pg_server, dump, "FK CONSTRAINT")
        assert "dwh_facts.fait_attributions.fait_attributions_lot_id_fkey" in foreign_keys
        assert "dwh_facts.fait_attributions_attribution_id_seq" in archive_entries(pg_server, dump, "SEQUENCE")
        # What docs/roles.md promises, as a DBA types it on a new server (with the roles, which no dump holds).
        from tests.integration.test_backup_module import fingerprints, restore_on_a_new_server

        # The run dropped fait_attributions_2020 after the dump: the others are compared, the dropped one is back.
        kept = [t for t in tables if t != "dwh_facts.fait_attributions_2020"]
        before = fingerprints(conn, kept)
        restored, fresh = restore_on_a_new_server(pg_server, dump, pg_server.bin_dir)
        try:
            assert fingerprints(restored, kept) == before
            assert (
                fingerprints(restored, ["dwh_facts.fait_attributions_2020"])["dwh_facts.fait_attributions_2020"][0] > 0
            )
        finally:
            restored.close()
            fresh.destroy()


def test_a_restore_with_missing_rows_fails_drops_the_scratch_database_and_changes_nothing(
    pg_server, conn, db, tmp_path
):
    load_sample(pg_server, db)
    # pg_dump that leaves out one partition's rows: the archive reads back, only the restore check can see it.
    script = '"$REAL/pg_dump" --exclude-table-data=dwh_facts.fait_attributions_2023 "$@"'
    inventory = write_inventory(
        tmp_path / "hosts.yml",
        {"dwh1": (pg_server, db)},
        {"dwh_backup_dir": str(tmp_path / "backups"), "dwh_backup_verify": "restore"},
    )
    before = partitions(conn, ATT)
    extra = {
        "dwh_confirm": True,
        "dwh_tables": with_retention(5),
        "dwh_pg_bin_dir": fake_bin(tmp_path, pg_server, script),
    }
    result = play("weekly.yml", inventory, pg_server.password, extra)
    assert result.returncode != 0
    assert "the backup failed, so nothing was changed" in result.stdout
    assert "dwh_facts.fait_attributions_2023 source" in result.stdout and "restored 0" in result.stdout
    assert scratch_databases(conn) == [] and partitions(conn, ATT) == before
    assert not files(tmp_path, "*.dump") and not files(tmp_path, "*.partial")
