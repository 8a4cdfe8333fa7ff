"""sigeti.dwh.archive_restore on a real server (issue 31): a partition archived by retention action parquet comes back
with the same rows and checksum, attached with its bound; check mode writes nothing; a second restore is quiet;
``into`` restores into a plain side table; wrong input is refused before any change."""

import datetime

import pytest

pytest.importorskip("pyarrow")

from ansible_collections.sigeti.dwh.plugins.module_utils.catalog.archive import checksum_table  # noqa: E402
from tests.integration.test_parquet_retention import (  # noqa: E402
    TABLE,
    args,
    attached,
    make_facts,
    old_names,
    snapshot,
)
from tests.support.modules import run_module  # noqa: E402


def row_texts(conn, table):
    with conn.cursor() as cur:
        cur.execute("SET TimeZone = 'UTC'")
        cur.execute("SELECT ROW(r.*)::text FROM %s AS r ORDER BY id" % table)
        return [r[0] for r in cur.fetchall()]


def restore_args(pg_server, db, folder, **extra):
    params = pg_server.params(db)
    params.update(lock_timeout="2s", lock_retries=1, lock_retry_delay=0.1, table=TABLE, archive_dir=str(folder))
    params.update(extra)
    return params


@pytest.fixture
def archived(pg_server, db, conn, tmp_path):
    """The oldest month of a fresh set, archived and dropped by partitioned_table: (name, row texts, checksum)."""
    current = make_facts(conn, months_back=3, rows=500)
    name = old_names(current, 3, 3)[0]
    texts = row_texts(conn, "dwh_facts.%s" % name)
    checksum = checksum_table(conn, "dwh_facts", name).text()
    result = run_module("partitioned_table", args(pg_server, db, tmp_path, max_per_run=1))
    assert not result.get("failed") and result["archived"] == [name], result
    assert name not in attached(conn)
    return name, texts, checksum


def test_an_archived_partition_comes_back_attached_with_the_same_rows_and_checksum(
    pg_server, db, conn, tmp_path, archived
):
    name, texts, checksum = archived
    before = snapshot(conn)
    planned = run_module("archive_restore", restore_args(pg_server, db, tmp_path, periods=[name]), check_mode=True)
    assert not planned.get("failed"), planned
    assert planned["changed"] and planned["restored"][0]["action"] == "restore" and not planned["restored"][0]["done"]
    assert planned["queries"] == [
        'ALTER TABLE "dwh_facts"."fait_attributions" ATTACH PARTITION "dwh_facts"."%s" %s'
        % (name, planned["restored"][0]["bound"])
    ]
    assert snapshot(conn) == before  # check mode wrote nothing

    result = run_module("archive_restore", restore_args(pg_server, db, tmp_path, periods=[name]), diff=True)
    assert not result.get("failed"), result
    assert result["changed"] and result["restored"][0]["done"] and result["restored"][0]["rows"] == 500
    assert result["queries"] == planned["queries"]
    assert name in attached(conn)
    assert checksum_table(conn, "dwh_facts", name).text() == checksum == result["restored"][0]["checksum"]
    assert row_texts(conn, "dwh_facts.%s" % name) == texts
    with conn.cursor() as cur:  # the set's indexes were built on it by the attach: the primary key answers
        cur.execute(
            "SELECT count(*) FROM pg_index i JOIN pg_class c ON c.oid = i.indrelid "
            "WHERE c.relname = %s AND i.indisprimary",
            (name,),
        )
        assert cur.fetchone()[0] == 1

    again = run_module("archive_restore", restore_args(pg_server, db, tmp_path, periods=[name]))
    assert not again.get("failed"), again
    assert not again["changed"] and again["queries"] == [] and again["restored"][0]["action"] == "present"


def test_into_restores_a_plain_side_table_and_leaves_the_set_alone(pg_server, db, conn, tmp_path, archived):
    name, texts, checksum = archived
    parts = attached(conn)
    result = run_module("archive_restore", restore_args(pg_server, db, tmp_path, periods=[name], into="side_old"))
    assert not result.get("failed"), result
    assert result["changed"] and result["queries"] == [] and result["restored"][0]["table"] == "dwh_facts.side_old"
    assert attached(conn) == parts
    assert checksum_table(conn, "dwh_facts", "side_old").text() == checksum
    assert row_texts(conn, "dwh_facts.side_old") == texts
    with conn.cursor() as cur:
        cur.execute("SELECT relispartition FROM pg_class WHERE oid = 'dwh_facts.side_old'::regclass")
        assert cur.fetchone()[0] is False
    again = run_module("archive_restore", restore_args(pg_server, db, tmp_path, periods=[name], into="side_old"))
    assert not again.get("failed") and not again["changed"], again


def test_a_restored_table_whose_attach_failed_is_attached_by_the_next_run(pg_server, db, conn, tmp_path, archived):
    name, _texts, checksum = archived
    day = datetime.date(int(name[5:9]), int(name[9:11]), 10)
    with conn.cursor() as cur:  # a row of the archived month in the default partition: the ATTACH refuses
        cur.execute("INSERT INTO dwh_facts.fait_attributions (k, montant) VALUES (%s, 1) RETURNING id", (day,))
        stray = cur.fetchone()[0]
    result = run_module("archive_restore", restore_args(pg_server, db, tmp_path, periods=[name]))
    assert result.get("failed") and result["changed"], result
    assert "restored but not attached: the next run attaches it" in result["msg"]
    assert name not in attached(conn)
    with conn.cursor() as cur:
        cur.execute("DELETE FROM dwh_facts.fait_attributions WHERE id = %s", (stray,))
    result = run_module("archive_restore", restore_args(pg_server, db, tmp_path, periods=[name]))
    assert not result.get("failed") and result["restored"][0]["action"] == "attach", result
    assert name in attached(conn) and checksum_table(conn, "dwh_facts", name).text() == checksum


def test_the_sets_check_constraints_come_with_the_restored_table(pg_server, db, conn, tmp_path):
    # ATTACH PARTITION requires the parent's CHECK constraints on the partition, stored alike: the sample warehouse's
    # statut IN (...) on a varchar re-parsed from pg_get_constraintdef is not (hence LIKE ... INCLUDING CONSTRAINTS)
    current = make_facts(
        conn, months_back=3, rows=50, extra_columns=", statut varchar(20) CHECK (statut IN ('A', 'B'))"
    )
    name = old_names(current, 3, 3)[0]
    with conn.cursor() as cur:
        cur.execute("ALTER TABLE dwh_facts.fait_attributions ADD CONSTRAINT montant_positif CHECK (montant >= 0)")
    checksum = checksum_table(conn, "dwh_facts", name).text()
    result = run_module("partitioned_table", args(pg_server, db, tmp_path, max_per_run=1))
    assert not result.get("failed") and result["archived"] == [name], result
    result = run_module("archive_restore", restore_args(pg_server, db, tmp_path, periods=[name]))
    assert not result.get("failed"), result
    assert name in attached(conn) and checksum_table(conn, "dwh_facts", name).text() == checksum
    with conn.cursor() as cur:
        cur.execute(
            "SELECT conname FROM pg_constraint WHERE conrelid = %s::regclass AND contype = 'c' ORDER BY 1",
            ("dwh_facts.%s" % name,),
        )
        assert [r[0] for r in cur.fetchall()] == ["fait_attributions_statut_check", "montant_positif"]
    again = run_module("archive_restore", restore_args(pg_server, db, tmp_path, periods=[name]))
    assert not again.get("failed") and not again["changed"] and again["queries"] == [], again


def test_a_plain_table_lacking_a_check_of_the_set_gets_it_before_its_attach(pg_server, db, conn, tmp_path, archived):
    # a table restored without the set's checks (a run before they were added to the set): the attach adds them
    name, _texts, checksum = archived
    result = run_module("archive_restore", restore_args(pg_server, db, tmp_path, periods=[name], into=name))
    assert not result.get("failed"), result
    with conn.cursor() as cur:
        cur.execute("ALTER TABLE dwh_facts.fait_attributions ADD CONSTRAINT montant_positif CHECK (montant >= 0)")
    planned = run_module("archive_restore", restore_args(pg_server, db, tmp_path, periods=[name]), check_mode=True)
    assert planned["queries"][0] == (
        'ALTER TABLE "dwh_facts"."%s" ADD CONSTRAINT "montant_positif" CHECK ((montant >= (0)::numeric))' % name
    ), planned
    result = run_module("archive_restore", restore_args(pg_server, db, tmp_path, periods=[name]))
    assert not result.get("failed") and result["queries"] == planned["queries"], result
    assert name in attached(conn) and checksum_table(conn, "dwh_facts", name).text() == checksum


def test_wrong_input_is_refused_before_any_change(pg_server, db, conn, tmp_path, archived):
    name, _texts, _checksum = archived
    with conn.cursor() as cur:
        cur.execute("CREATE TABLE dwh_facts.occupied (id int)")
    before = snapshot(conn)
    cases = [
        (dict(periods=[name, "fait_190001"]), "no archive of dwh_facts.fait_attributions for period fait_190001"),
        (dict(periods=[name, name]), "names %s more than once" % name),
        (dict(periods=[name, "other"], into="side"), "restores one period into one side table"),
        (dict(periods=[name], into="occupied"), "table dwh_facts.occupied already exists and does not hold"),
        (dict(periods=[name], table="dwh_facts.nothing_here"), "table dwh_facts.nothing_here does not exist"),
        (dict(periods=[name], table="dwh_facts.occupied"), "is not partitioned"),
    ]
    for extra, message in cases:
        for check_mode in (True, False):
            result = run_module(
                "archive_restore", restore_args(pg_server, db, tmp_path, **extra), check_mode=check_mode
            )
            assert result.get("failed") and message in result["msg"], (extra, result)
            assert snapshot(conn) == before
    assert (
        "archived there: %s" % name
        in run_module("archive_restore", restore_args(pg_server, db, tmp_path, periods=["fait_190001"]))["msg"]
    )
