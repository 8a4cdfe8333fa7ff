"""The report tells the truth about a migration and about the disk it left (issue 28): setup.yml migrating SIGETI's
plain tables names each migration as such on the page, in the Markdown, in summary.json (index.html) and in the
run's last message - partitions created, rows moved, the original kept as <table>_unpartitioned with its size and
how to drop it - and the page's sizes count the kept originals and the archive schema retention moves partitions to.
"""

import json
import re

import pytest

from tests.integration.test_roles_helpers import load_sample, play, sigeti_tables, write_inventory


def count(conn, table):
    with conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM %s" % table)
        return cur.fetchone()[0]


@pytest.fixture(scope="module")
def migrated(pg_server, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("migrated")
    db = pg_server.create_database("t_migrated")
    load_sample(pg_server, db, scale=2000, partitioned=False)
    conn = pg_server.connect(db)
    rows = {t: count(conn, "dwh_facts.%s" % t) for t in ("fait_attributions", "fait_factures")}
    tables = sigeti_tables()
    # fait_factures keeps two years behind the current one and archives the older partitions
    tables[1] = dict(tables[1], retention={"keep": 2, "action": "archive", "archive_schema": "dwh_archive"})
    inventory = write_inventory(
        tmp / "hosts.yml",
        {"dwh1": (pg_server, db)},
        {
            "dwh_tables": tables,
            "dwh_report_dir": str(tmp / "reports"),
            "dwh_backup_dir": str(tmp / "backups"),
            "dwh_confirm": True,
        },
    )
    setup = play("setup.yml", inventory, pg_server.password)
    assert setup.returncode == 0, setup.stdout[-6000:]
    # retention applies to the partitions the migration made: weekly archives the old ones, the report counts them
    weekly = play("weekly.yml", inventory, pg_server.password)
    assert weekly.returncode == 0, weekly.stdout[-6000:]
    report = play("report.yml", inventory, pg_server.password)
    assert report.returncode == 0, report.stdout[-6000:]
    with conn.cursor() as cur:
        # table_info's measure: main forks of the heap, of TOAST and its index, and of the indexes (no free space or
        # visibility map)
        size = (
            "pg_relation_size(c.oid) + pg_indexes_size(c.oid)"
            " + CASE WHEN c.reltoastrelid <> 0 THEN pg_relation_size(c.reltoastrelid) + (SELECT coalesce(sum("
            "pg_relation_size(x.indexrelid)), 0) FROM pg_index x WHERE x.indrelid = c.reltoastrelid) ELSE 0 END"
        )
        cur.execute(
            "SELECT %s FROM pg_class c WHERE c.oid = 'dwh_facts.fait_attributions_unpartitioned'::regclass" % size
        )
        kept = cur.fetchone()[0]
        cur.execute(
            "SELECT coalesce(sum(%s), 0), count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = 'dwh_archive' AND c.relkind = 'r'" % size
        )
        archived = cur.fetchone()
    conn.close()
    folder = tmp / "reports" / "dwh1"
    runs = sorted((folder / "runs").iterdir())
    return {
        "rows": rows,
        "kept_bytes": kept,
        "archived": archived,
        "setup_out": setup.stdout,
        "setup": runs[0],
        "folder": folder,
    }


def test_setup_names_each_migration_with_rows_partitions_and_the_original_it_kept(migrated):
    data = json.loads((migrated["setup"] / "report.json").read_text())
    run = {r["name"]: r for r in data["run"]["partitioning"]}
    att = run["dwh_facts.fait_attributions"]
    migration = att["migration"]
    assert migration and migration["mode"] == "online", att
    assert migration["rows_moved"] == migrated["rows"]["fait_attributions"]
    assert "fait_attributions_2020" in migration["created"] and "fait_attributions_default" in migration["created"]
    kept = migration["kept_original"]
    assert kept["name"] == "dwh_facts.fait_attributions_unpartitioned" and kept["bytes"] > 0
    line = next(s for s in data["summary"] if s.startswith("dwh_facts.fait_attributions: "))
    assert re.search(
        r"^dwh_facts\.fait_attributions: migrated a plain table \(online\) into \d+ partitions: .*; "
        r"%s rows moved; the original is kept as dwh_facts\.fait_attributions_unpartitioned \(\d+\.\d (KiB|MiB)\): "
        % format(migrated["rows"]["fait_attributions"], ","),
        line,
    ), line
    assert "drop_source" in line or "DROP TABLE" in line
    # the same line on the page, in the Markdown, in index.html's run list and in the run's last message
    for shown in (
        (migrated["setup"] / "report.html").read_text(),
        (migrated["setup"] / "report.md").read_text().replace("\\_", "_"),
        json.dumps(json.loads((migrated["setup"] / "summary.json").read_text())),
        migrated["setup_out"],
    ):
        assert "dwh_facts.fait_attributions: migrated a plain table (online) into" in shown
        assert "the original is kept as dwh_facts.fait_attributions_unpartitioned" in shown
    assert "created none; detached none; dropped none" not in migrated["setup_out"]


def test_the_sizes_count_the_kept_originals_and_the_archive_schema(migrated):
    data = json.loads((migrated["folder"] / "report.json").read_text())
    kept = {k["name"]: k for k in data["kept"]}
    assert set(kept) == {"dwh_facts.fait_attributions_unpartitioned", "dwh_facts.fait_factures_unpartitioned"}
    assert kept["dwh_facts.fait_attributions_unpartitioned"]["total_bytes"] == migrated["kept_bytes"]
    archived_bytes, archived_tables = migrated["archived"]
    assert archived_tables > 0, "weekly archived nothing: the test's retention does not reach any partition"
    [archive] = data["archives"]
    assert archive["schema"] == "dwh_archive" and archive["tables"] == archived_tables
    assert archive["total_bytes"] == archived_bytes and archive["of"] == ["dwh_facts.fait_factures"]
    totals = data["totals"]
    assert totals["kept_bytes"] == sum(k["total_bytes"] for k in kept.values())
    assert totals["all_bytes"] == totals["tables_bytes"] + totals["kept_bytes"] + archived_bytes
    html = (migrated["folder"] / "report.html").read_text()
    assert "dwh_facts.fait_attributions_unpartitioned<div" in html and "schema dwh_archive<div" in html
    assert "on disk, all of the above" in html
    prom = (migrated["folder"].parent / "sigeti_dwh_dwh1.prom").read_text()
    assert (
        'sigeti_dwh_archive_bytes{host="dwh1",database="t_migrated",schema="dwh_archive"} %d' % archived_bytes in prom
    )
