"""--check --diff shows what a run would do, statement by statement: the online migration of a plain table
(setup.yml) and the VACUUM FULL of a bloated one (monthly.yml); nothing changes."""

import re

from tests.integration.test_roles_helpers import load_sample, play, recap, write_inventory


def relkind(conn, table):
    with conn.cursor() as cur:
        cur.execute("SELECT relkind FROM pg_class WHERE oid = %s::regclass", (table,))
        return cur.fetchone()[0]


def test_check_diff_shows_the_migration_and_the_vacuum_full(pg_server, db, conn, tmp_path):
    load_sample(pg_server, db, scale=3000, partitioned=False, bloat=True)
    inventory = write_inventory(
        tmp_path / "hosts.yml",
        {"dwh1": (pg_server, db)},
        {
            "dwh_backup_dir": str(tmp_path / "backups"),
            "dwh_report_dir": str(tmp_path / "reports"),
            "dwh_vacuum_min_size": "8kB",
            "dwh_vacuum_bloat_threshold": 0.2,
        },
    )
    setup = play("setup.yml", inventory, pg_server.password, check=True, args=["--diff"])
    assert setup.returncode == 0, setup.stdout[-5000:]
    assert "dwh_facts.fait_attributions would run (check mode):" in setup.stdout
    assert "PARTITION BY RANGE" in setup.stdout, setup.stdout[-5000:]
    # The rewrite decision of full: auto depends on statistics that arrive asynchronously: force the rewrite so
    # the test is about what --diff shows, not about the bloat estimate (tested in test_vacuum.py).
    monthly = play(
        "monthly.yml", inventory, pg_server.password, {"dwh_vacuum_full": "always"}, check=True, args=["--diff"]
    )
    assert monthly.returncode == 0, monthly.stdout[-5000:]
    assert "would run (check mode):" in monthly.stdout
    assert re.search(r"VACUUM \(?FULL", monthly.stdout), monthly.stdout[-5000:]
    assert relkind(conn, "dwh_facts.fait_attributions") == "r"
    assert recap(monthly.stdout)["dwh1"]["failed"] == 0
