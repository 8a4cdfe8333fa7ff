"""``changed`` means the database changed: a weekly run (playbooks/weekly.yml through ansible-playbook) that creates
exactly one partition ahead, and a setup.yml run that creates one more, report as changed the task that created it,
and the vacuum task only when the database's own counters (pg_stat_user_tables) show a VACUUM/ANALYZE it ran;
nothing else. The probe, the verified dump, the password file and the report's files never count. Written on the
observable outcome (the names of the changed tasks and the PLAY RECAP), whatever the roles' task layout."""

import re

from tests.integration.test_roles_helpers import load_sample, partitions, play, recap, sigeti_tables, write_inventory

ATT = "dwh_facts.fait_attributions"
TASK = re.compile(r"^(?:TASK|RUNNING HANDLER) \[(.*)\] \**$")


def changed_tasks(output):
    """The names of the tasks that reported ``changed`` for some host or item, in run order (default callback)."""
    found, task = [], None
    for line in output.splitlines():
        header = TASK.match(line)
        if header:
            task = header.group(1)
        elif line.startswith("changed: [") and task is not None and task not in found:
            found.append(task)
    return found


def manual_maintenance(conn):
    """``{relation: vacuum_count + analyze_count}`` of every user table (manual VACUUM/ANALYZE only, not autovacuum's)."""
    with conn.cursor() as cur:
        cur.execute("SELECT pg_stat_clear_snapshot()")
        cur.execute(
            "SELECT schemaname || '.' || relname, vacuum_count + analyze_count FROM pg_stat_user_tables ORDER BY 1"
        )
        return dict(cur.fetchall())


def test_runs_creating_one_partition_report_only_the_tasks_that_changed_the_database(pg_server, conn, db, tmp_path):
    load_sample(pg_server, db, scale=1000)
    with conn.cursor() as cur:
        # Fresh statistics everywhere: the only VACUUM/ANALYZE left due is about the partition the run creates.
        cur.execute("VACUUM ANALYZE")
    inventory = write_inventory(
        tmp_path / "hosts.yml",
        {"dwh1": (pg_server, db)},
        # Every bookkeeping file is written in this run: a verified dump (always) and its private password file.
        {
            "dwh_tables": [dict(sigeti_tables()[0], premake=1)],
            "dwh_backup": "always",
            "dwh_backup_dir": str(tmp_path / "backups"),
            "dwh_report_dir": str(tmp_path / "reports"),
        },
    )
    before, counts = partitions(conn, ATT), manual_maintenance(conn)
    result = play("weekly.yml", inventory, pg_server.password, {"dwh_confirm": True})
    assert result.returncode == 0, result.stdout[-6000:]
    assert sorted(set(partitions(conn, ATT)) - set(before)) == ["fait_attributions_2027"]
    assert "verified: read back in full" in result.stdout
    after = manual_maintenance(conn)
    maintained = sorted(name for name, count in after.items() if count > counts.get(name, 0))
    changed = changed_tasks(result.stdout)
    # The partitioning task that created the partition; the vacuum task only when the database's own counters say it
    # ran VACUUM/ANALYZE (today: ANALYZE of the parent, which also analyzes the new, never analyzed partition).
    assert changed and "partition" in changed[0].lower(), (changed, result.stdout[-6000:])
    if maintained:
        assert len(changed) == 2 and "vacuum" in changed[1].lower(), (changed, maintained)
    else:
        assert len(changed) == 1, (changed, result.stdout[-6000:])
    assert recap(result.stdout)["dwh1"]["changed"] == len(changed)

    # setup.yml (compression off) that creates exactly one more partition: a dump, the verify role's reads and the
    # report's files (its pages, history, index, Prometheus textfile) are written, and none of them counts.
    counts = manual_maintenance(conn)
    setup = play(
        "setup.yml",
        inventory,
        pg_server.password,
        {"dwh_confirm": True, "dwh_compression_enabled": False, "dwh_tables": [dict(sigeti_tables()[0], premake=2)]},
    )
    assert setup.returncode == 0, setup.stdout[-6000:]
    assert sorted(set(partitions(conn, ATT)) - set(before)) == ["fait_attributions_2027", "fait_attributions_2028"]
    assert "verified: read back in full" in setup.stdout
    report = tmp_path / "reports" / "dwh1"
    assert (report / "report.html").exists() and (report / "index.html").exists() and (report / "runs").is_dir()
    maintained = [name for name, count in manual_maintenance(conn).items() if count > counts.get(name, 0)]
    changed = changed_tasks(setup.stdout)
    assert changed and "partition" in changed[0].lower(), (changed, setup.stdout[-6000:])
    assert len(changed) == (2 if maintained else 1) and (not maintained or "vacuum" in changed[1].lower()), changed
    assert recap(setup.stdout)["dwh1"]["changed"] == len(changed)
