"""setup.yml across three throwaway PostgreSQL servers as three inventory hosts, in parallel; idempotent;
a prod-like wave (serial 1, max_fail_percentage 0) stops at the first failing host, whether the wave is set in the
inventory's group_vars (as inventories/prod does) or with -e."""

import os

import pytest
import yaml

from tests.integration.test_roles_helpers import (
    enabled_vars,
    load_sample,
    partitions,
    play,
    recap,
    write_inventory,
)
from tests.support.pgserver import PostgresServer

ATT = "dwh_facts.fait_attributions"
DB = "sigeti_node_db"


@pytest.fixture(scope="module")
def fleet():
    servers = []
    try:
        for _server in range(3):
            server = PostgresServer().start()
            servers.append(server)
        for number, server in enumerate(servers):
            server.wait_ready()
            server.create_database(DB)
            # The third server holds plain fact tables (the guide's "before"): setup migrates them online.
            load_sample(server, DB, scale=1500, partitioned=number < 2)
        yield servers
    finally:
        for server in servers:
            server.destroy()


def changed_tasks(output):
    """The tasks of a run that said changed, with the lines that said it (the failure message of a second run)."""
    lines, task = [], None
    for line in output.splitlines():
        if line.startswith("TASK ["):
            task = line
        elif line.startswith("changed:"):
            lines += [task, line]
    return "\n".join(lines) or output[-5000:]


def counts(servers):
    result = []
    for server in servers:
        conn = server.connect(DB)
        result.append(len(partitions(conn, ATT)))
        conn.close()
    return result


def main_play(output):
    """The output of setup.yml's main play (after the wave play), up to the recap."""
    return output.split("PLAY [Set up partitioning", 1)[-1].split("PLAY RECAP", 1)[0]


def relkind(server, table):
    conn = server.connect(DB)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT relkind FROM pg_class WHERE oid = %s::regclass", (table,))
            return cur.fetchone()[0]
    finally:
        conn.close()


def test_wave_from_group_vars_stops_at_the_failing_middle_host(fleet, tmp_path):
    """Runs first: dwh3 still holds plain tables. group_vars/all sets the prod wave; dwh2 cannot log in."""
    folder = tmp_path / "inventory"
    os.makedirs(folder / "group_vars" / "all")
    hosts = {"dwh%d" % i: (server, DB) for i, server in enumerate(fleet, 1)}
    path = write_inventory(
        folder / "hosts.yml",
        hosts,
        {"dwh_backup_dir": str(tmp_path / "backups"), "dwh_report_dir": str(tmp_path / "reports")},
    )
    with open(path) as handle:
        inventory = yaml.safe_load(handle)
    inventory["all"]["children"]["dwh_servers"]["hosts"]["dwh2"]["dwh_login_password"] = "wrong"
    with open(path, "w") as handle:
        yaml.safe_dump(inventory, handle)
    (folder / "group_vars" / "all" / "dwh.yml").write_text("dwh_serial: 1\ndwh_max_fail_percentage: 0\n")
    third_before = (relkind(fleet[2], ATT), counts(fleet)[2])
    wave = play("setup.yml", str(folder), fleet[0].password, {"dwh_confirm": True})
    assert wave.returncode != 0
    stats = recap(wave.stdout)
    assert stats["dwh1"]["failed"] == 0 and stats["dwh1"]["changed"] > 0, wave.stdout[-5000:]
    assert stats["dwh2"]["failed"] == 1
    # dwh3 only joined its wave group (the first play); it never started the set-up.
    assert stats["dwh3"]["changed"] == 0 and stats["dwh3"]["failed"] == 0, wave.stdout[-5000:]
    assert "[dwh3]" not in main_play(wave.stdout) and "[dwh1]" in main_play(wave.stdout)
    assert (relkind(fleet[2], ATT), counts(fleet)[2]) == third_before
    # Why it stopped: dwh2's cause, then Ansible's "no more hosts" (max_fail_percentage 0).
    assert "password authentication failed" in wave.stdout and "NO MORE HOSTS LEFT" in wave.stdout


def test_setup_on_three_servers_in_parallel_then_nothing_to_do(fleet, tmp_path):
    hosts = {"dwh%d" % i: (server, DB) for i, server in enumerate(fleet, 1)}
    inventory = write_inventory(
        tmp_path / "hosts.yml",
        hosts,
        {"dwh_backup_dir": str(tmp_path / "backups"), "dwh_report_dir": str(tmp_path / "reports")},
    )
    password = fleet[0].password
    before = counts(fleet)
    # The prod wave: one host at a time, and the first failure stops it. dwh1 gets a wrong password.
    wave = play(
        "setup.yml",
        inventory,
        password,
        dict(enabled_vars(), dwh_confirm=True, dwh_serial=1, dwh_max_fail_percentage=0),
        args=["-e", '{"dwh_login_password": "wrong"}', "--limit", "dwh1,dwh2"],
    )
    # dwh2 only joined its wave group (first play) and never started the set-up.
    assert wave.returncode != 0 and recap(wave.stdout)["dwh2"]["changed"] == 0, wave.stdout[-5000:]
    assert "[dwh2]" not in main_play(wave.stdout) and "NO MORE HOSTS LEFT" in wave.stdout
    assert counts(fleet) == before
    first = play("setup.yml", inventory, password, dict(enabled_vars(), dwh_confirm=True), args=["--forks", "3"])
    assert first.returncode == 0, first.stdout[-5000:]
    stats = recap(first.stdout)
    assert set(stats) == {"dwh1", "dwh2", "dwh3"} and all(s["failed"] == 0 for s in stats.values())
    assert counts(fleet) == [10, 10, 10]  # 2020 .. 2028 (premake 2 after 2026) + default
    for host in hosts:
        assert (tmp_path / "reports" / host / "report.html").exists()
    second = play("setup.yml", inventory, password, enabled_vars(), args=["--forks", "3"])
    assert second.returncode == 0, second.stdout[-5000:]
    assert all(s["changed"] == 0 for s in recap(second.stdout).values()), changed_tasks(second.stdout)
    assert password not in first.stdout + second.stdout
