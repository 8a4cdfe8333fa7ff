"""playbooks/rollback.yml (preflight -> partitioning with ``dwh_partitioning_state: plain``) against a throwaway
server: after setup.yml partitioned the sample warehouse, a --check rollback changes nothing; the rollback takes a
verified backup, then turns every declared partition set back into a plain table with the same rows, the set kept
as <name>_partitioned; a second rollback is quiet (no backup, changed=0); dwh_drop_source: true drops the kept sets."""

import glob

from tests.integration.test_roles_helpers import load_sample, play, recap, sigeti_tables, write_inventory

TABLES = ["dwh_facts.fait_attributions", "dwh_facts.fait_factures"]


def _one(conn, query, params=None):
    with conn.cursor() as cur:
        cur.execute(query, params)
        return cur.fetchone()


def relkinds(conn):
    """``{name: relkind}`` of the declared tables and the sets a rollback keeps (None when absent)."""
    names = TABLES + [t + "_partitioned" for t in TABLES]
    query = "SELECT (SELECT relkind::text FROM pg_class WHERE oid = to_regclass(%s))"
    return {n: _one(conn, query, (n,))[0] for n in names}


def expected(table, kept):
    """The relkinds of ``relkinds`` when each declared table is ``table`` and each kept set ``kept``."""
    return {**dict.fromkeys(TABLES, table), **dict.fromkeys([t + "_partitioned" for t in TABLES], kept)}


def contents(conn):
    """Rows and a whole-row checksum of each declared table, independent of its layout."""
    return {
        t: _one(conn, "SELECT count(*), md5(string_agg(md5(r::text), '' ORDER BY md5(r::text))) FROM %s r" % t)
        for t in TABLES
    }


def test_rollback_after_setup_backs_up_then_makes_the_tables_plain_then_is_quiet(pg_server, conn, db, tmp_path):
    load_sample(pg_server, db, scale=800, partitioned=False)
    original = contents(conn)
    inventory = write_inventory(
        tmp_path / "hosts.yml",
        {"dwh1": (pg_server, db)},
        {
            "dwh_tables": [dict(t, migrate="offline") for t in sigeti_tables()],
            "dwh_backup_dir": str(tmp_path / "backups"),
            "dwh_report_dir": str(tmp_path / "reports"),
        },
    )
    setup = play("setup.yml", inventory, pg_server.password, {"dwh_confirm": True, "dwh_compression_enabled": False})
    assert setup.returncode == 0, setup.stdout[-6000:]
    assert relkinds(conn) == expected("p", None)
    assert contents(conn) == original
    dumps = set(glob.glob(str(tmp_path / "backups" / "*.dump")))
    # state plain refuses a set a materialized view reads (as its message says: drop it, run, create it again)
    with conn.cursor() as cur:
        cur.execute("DROP SCHEMA dwh_marts CASCADE")

    check = play("rollback.yml", inventory, pg_server.password, {"dwh_confirm": True}, check=True)
    assert check.returncode == 0, check.stdout[-6000:]
    assert all(relkinds(conn)[t] == "p" for t in TABLES) and contents(conn) == original
    assert set(glob.glob(str(tmp_path / "backups" / "*.dump"))) == dumps

    rollback = play("rollback.yml", inventory, pg_server.password, {"dwh_confirm": True})
    assert rollback.returncode == 0, rollback.stdout[-6000:]
    assert "verified: read back in full" in rollback.stdout, rollback.stdout[-6000:]
    assert len(set(glob.glob(str(tmp_path / "backups" / "*.dump"))) - dumps) == 1
    assert relkinds(conn) == expected("r", "p")
    assert contents(conn) == original
    assert recap(rollback.stdout)["dwh1"]["changed"] > 0

    again = play("rollback.yml", inventory, pg_server.password, {"dwh_confirm": True})
    assert again.returncode == 0, again.stdout[-6000:]
    assert recap(again.stdout)["dwh1"]["changed"] == 0, again.stdout[-6000:]
    assert "verified: read back in full" not in again.stdout
    assert contents(conn) == original

    dropped = play("rollback.yml", inventory, pg_server.password, {"dwh_confirm": True, "dwh_drop_source": True})
    assert dropped.returncode == 0, dropped.stdout[-6000:]
    assert relkinds(conn) == expected("r", None)
    assert contents(conn) == original
    # the drop of the kept sets is a removal: dwh_backup auto dumps first
    assert "verified: read back in full" in dropped.stdout, dropped.stdout[-6000:]
