"""preflight: a verified backup before any change, a failed backup or a missing confirmation changes nothing,
bad input named, disk checked or warned about; setup is idempotent (second run: no backup, no prompt, changed=0)."""

import glob
import os
import pty
import select
import subprocess
import termios
import time

import pytest

from tests.integration.test_roles_helpers import (
    compression_of,
    enabled_vars,
    load_sample,
    partitions,
    play,
    recap,
    write_inventory,
)

ATT = "dwh_facts.fait_attributions"


@pytest.fixture
def warehouse(pg_server, db, tmp_path):
    """The sample warehouse partitioned 2020-2026 (so setup has partitions to add), and an inventory for it."""
    load_sample(pg_server, db)
    inventory = write_inventory(
        tmp_path / "hosts.yml",
        {"dwh1": (pg_server, db)},
        # dwh_backup: always: these tests are about a backup before any change (auto skips additive setups).
        {
            "dwh_backup": "always",
            "dwh_backup_dir": str(tmp_path / "backups"),
            "dwh_report_dir": str(tmp_path / "reports"),
        },
    )
    return inventory


def dumps(tmp_path):
    return sorted(glob.glob(str(tmp_path / "backups" / "*.dump")))


def test_setup_backs_up_before_changing_and_a_second_run_changes_nothing(pg_server, conn, warehouse, tmp_path):
    before = partitions(conn, ATT)
    first = play("setup.yml", warehouse, pg_server.password, dict(enabled_vars(), dwh_confirm=True), args=["-v"])
    assert first.returncode == 0, first.stdout[-6000:]
    assert len(dumps(tmp_path)) == 1
    assert "verified:" in first.stdout and "objects listed by pg_restore" in first.stdout
    after = partitions(conn, ATT)
    assert set(after) - set(before) == {"fait_attributions_2027", "fait_attributions_2028"}
    assert compression_of(conn, ATT, "commentaire") == "l"
    assert pg_server.password not in first.stdout
    # Nothing left to do: no prompt needed (no terminal here and no dwh_confirm), no backup, nothing changed.
    second = play("setup.yml", warehouse, pg_server.password, enabled_vars())
    assert second.returncode == 0, second.stdout[-6000:]
    assert recap(second.stdout)["dwh1"]["changed"] == 0, second.stdout[-6000:]
    assert "no structural change planned" in second.stdout
    assert len(dumps(tmp_path)) == 1


def test_failed_backup_stops_before_any_change(pg_server, conn, warehouse, tmp_path):
    before = partitions(conn, ATT)
    result = play(
        "setup.yml",
        warehouse,
        pg_server.password,
        dict(enabled_vars(), dwh_confirm=True, dwh_pg_bin_dir=str(tmp_path / "no-such-bin")),
    )
    assert result.returncode != 0
    assert "the backup failed, so nothing was changed" in result.stdout
    assert "dwh_pg_bin_dir" in result.stdout
    # The cause is kept, and a run that changed nothing says changed=0 (the probe and the backup tasks never count).
    assert "Cause: %s/pg_dump not found or not executable" % (tmp_path / "no-such-bin") in result.stdout
    assert recap(result.stdout)["dwh1"]["changed"] == 0, result.stdout[-4000:]
    assert partitions(conn, ATT) == before
    assert compression_of(conn, ATT, "commentaire") == ""
    assert not glob.glob(str(tmp_path / "backups" / "pgpass*")) and not dumps(tmp_path)


def test_without_a_terminal_and_without_confirm_it_fails_closed(pg_server, conn, warehouse, tmp_path):
    before = partitions(conn, ATT)
    result = play("setup.yml", warehouse, pg_server.password, enabled_vars())
    assert result.returncode != 0
    assert "Not confirmed" in result.stdout and "set dwh_confirm: true" in result.stdout
    assert partitions(conn, ATT) == before and not dumps(tmp_path)


@pytest.mark.slow
def test_declined_on_a_terminal_changes_nothing(pg_server, conn, warehouse, tmp_path):
    """A person answers "non" at the prompt (a real pseudo-terminal): the run stops, nothing changed.

    Slow and outside ./dev test: driving ansible's raw-mode prompt through a pty hung in loaded CI runs (the answer
    raced the terminal's switch to raw mode). The unattended path, which CI and AWX take, is covered by
    test_without_a_terminal_and_without_confirm_it_fails_closed.
    """
    before = partitions(conn, ATT)
    master, slave = pty.openpty()
    env_password = pg_server.password
    process = subprocess.Popen(
        [
            os.path.join(os.path.dirname(os.sys.executable), "ansible-playbook"),
            "-i",
            warehouse,
            os.path.join(
                os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "playbooks", "setup.yml"
            ),
            "-e",
            '{"dwh_partitioning_enabled": true}',
        ],
        # The child's controlling terminal is the pty, as for a person at a shell. Only preexec_fn can make it
        # one (TIOCSCTTY in the child); the child calls nothing else before exec.
        preexec_fn=lambda: os.login_tty(slave),  # noqa: PLW1509
        pass_fds=(slave,),
        env=dict(
            os.environ,
            DWH_LOGIN_PASSWORD=env_password,
            ANSIBLE_NOCOLOR="1",
            ANSIBLE_PIPELINING="1",
            ANSIBLE_STDOUT_CALLBACK="default",
        ),
    )
    os.close(slave)
    # Read until the child exits (never stop reading: a full pty buffer would block it); no timing assertion.
    output, answered, deadline = b"", False, time.time() + 180
    while time.time() < deadline:
        ready = select.select([master], [], [], 1.0)[0]
        if ready:
            try:
                chunk = os.read(master, 4096)
            except OSError:  # EIO: every copy of the slave side is closed, the child is gone
                chunk = b""
            output += chunk
            # Answer once the prompt is shown AND the terminal left canonical mode: ansible switches it to raw
            # mode after printing the prompt, and a line typed before that switch is flushed away.
            if not answered and b"Continue? (yes/no)" in output and not termios.tcgetattr(master)[3] & termios.ICANON:
                os.write(master, b"non\r")
                answered = True
            if chunk:
                continue
        elif not answered and b"Continue? (yes/no)" in output and not termios.tcgetattr(master)[3] & termios.ICANON:
            os.write(master, b"non\r")
            answered = True
        if process.poll() is not None:
            break
    if process.poll() is None:
        process.kill()
    process.wait()
    os.close(master)
    text = output.decode(errors="replace")
    assert answered, text[-4000:]
    assert process.returncode != 0
    assert "Not confirmed" in text and "nothing was changed" in text
    assert partitions(conn, ATT) == before and not dumps(tmp_path)


def test_bad_input_is_named_before_anything_runs(pg_server, warehouse, tmp_path):
    from tests.integration.test_roles_helpers import sigeti_tables

    tables = sigeti_tables()
    duplicate = play(
        "setup.yml", warehouse, pg_server.password, {"dwh_tables": tables + tables[:1], "dwh_confirm": True}
    )
    assert duplicate.returncode != 0 and "declares a table more than once" in duplicate.stdout
    archive = [dict(tables[0], retention={"keep": 3, "action": "archive"})]
    result = play("setup.yml", warehouse, pg_server.password, {"dwh_tables": archive, "dwh_confirm": True})
    assert result.returncode != 0
    # The module's own rule and words (partition_layout.validate_retention), before any module runs.
    assert "dwh_tables entry %s: retention.action archive for %s needs archive_schema" % (ATT, ATT) in result.stdout
    missing_key = [{k: v for k, v in tables[0].items() if k != "key"}]
    result = play("setup.yml", warehouse, pg_server.password, {"dwh_tables": missing_key, "dwh_confirm": True})
    assert result.returncode != 0 and "dwh_tables" in result.stdout and "key" in result.stdout
    # A bad value names the entry, in one line, without Ansible's dump of the whole argument spec.
    two = [dict(tables[0], premake="two")] + tables[1:]
    result = play("setup.yml", warehouse, pg_server.password, {"dwh_tables": two, "dwh_confirm": True})
    assert result.returncode != 0
    assert "dwh_tables entry %s: argument 'premake' is of type str" % ATT in result.stdout, result.stdout[-3000:]
    assert "argument_spec_data" not in result.stdout
    misspelt = [dict(tables[0], premak=2)]
    result = play("setup.yml", warehouse, pg_server.password, {"dwh_tables": misspelt, "dwh_confirm": True})
    assert result.returncode != 0 and "dwh_tables entry %s: unknown key(s) premak" % ATT in result.stdout
    # No table declared (or the variable misspelt): refused, not a silent success.
    empty = play("setup.yml", warehouse, pg_server.password, {"dwh_tables": [], "dwh_confirm": True})
    assert empty.returncode != 0 and "dwh_tables is empty" in empty.stdout
    typo = play("setup.yml", warehouse, pg_server.password, {"dwh_tables": [], "dwh_table": tables})
    assert typo.returncode != 0 and "dwh_table is set: a misspelling of dwh_tables?" in typo.stdout
    assert not dumps(tmp_path)


def test_free_disk_is_checked_for_a_migration_in_check_mode_and_warned_about_where_not_visible(
    pg_server, conn, db, tmp_path
):
    """A migration writes a copy of each table: its filesystem must hold it (check mode already refuses); a data
    directory that is not the server's is named in a warning; a run that rewrites nothing checks nothing."""
    load_sample(pg_server, db, partitioned=False)
    inventory = write_inventory(
        tmp_path / "hosts.yml",
        {"dwh1": (pg_server, db)},
        {"dwh_backup_dir": str(tmp_path / "backups"), "dwh_report_dir": str(tmp_path / "reports")},
    )
    short = play(
        "setup.yml", inventory, pg_server.password, dict(enabled_vars(), dwh_disk_required_ratio=1e9), check=True
    )
    assert short.returncode != 0, short.stdout[-4000:]
    assert "free on the filesystem of %s" % pg_server.data_dir in short.stdout, short.stdout[-4000:]
    assert "dwh_facts.fait_attributions (migration), dwh_facts.fait_factures (migration)" in short.stdout
    assert "dwh_disk_required_ratio" in short.stdout and "nothing was changed" in short.stdout
    elsewhere = str(tmp_path / "elsewhere")
    remote = play(
        "setup.yml", inventory, pg_server.password, dict(enabled_vars(), dwh_data_directory=elsewhere), check=True
    )
    assert remote.returncode == 0, remote.stdout[-6000:]
    assert "free disk NOT checked for dwh_facts.fait_attributions (migration)" in remote.stdout, remote.stdout[-6000:]
    assert "data_directory (dwh_data_directory) %s is not the data directory" % elsewhere in remote.stdout
    assert partitions(conn, ATT) == [] and not dumps(tmp_path)


def test_a_weekly_run_that_rewrites_nothing_checks_no_disk_and_says_so(pg_server, conn, warehouse, tmp_path):
    weekly = play("weekly.yml", warehouse, pg_server.password, {"dwh_confirm": True, "dwh_disk_required_ratio": 1e9})
    assert weekly.returncode == 0, weekly.stdout[-6000:]
    assert "free disk: no new copy of any table: nothing to check" in weekly.stdout
    assert "before the rewrites" not in weekly.stdout and "free disk NOT checked" not in weekly.stdout


def test_no_tag_skip_tag_or_start_at_task_reaches_a_change_without_confirmation_and_backup(
    pg_server, conn, warehouse, tmp_path
):
    before = partitions(conn, ATT)
    unchanged = (before, "")

    def state():
        return partitions(conn, ATT), compression_of(conn, ATT, "commentaire")

    assert state() == unchanged
    # No terminal, no dwh_confirm: preflight runs whatever --tags says, and fails closed.
    for playbook, args in (
        ("setup.yml", ["--tags", "partitioning"]),
        ("setup.yml", ["--tags", "compression"]),
        ("weekly.yml", ["--tags", "partitioning"]),
    ):
        result = play(playbook, warehouse, pg_server.password, args=args)
        assert result.returncode != 0 and "Not confirmed" in result.stdout, (playbook, args, result.stdout[-4000:])
        assert state() == unchanged and not dumps(tmp_path), (playbook, args)
    # Skipping preflight (or starting past it) even with dwh_confirm: the changing roles refuse.
    for args in (
        ["--skip-tags", "preflight"],
        ["--skip-tags", "always"],
        ["--start-at-task", "Ensure partitions of each declared table"],
        [
            "--start-at-task",
            "Record that this play's checks, confirmation and backup are done (the changing roles require it)",
        ],
    ):
        result = play("setup.yml", warehouse, pg_server.password, {"dwh_confirm": True}, args=args)
        assert result.returncode != 0, (args, result.stdout[-4000:])
        assert "did not run in this play: nothing was changed" in result.stdout or "wave play did not run" in (
            result.stdout
        ), (args, result.stdout[-4000:])
        assert state() == unchanged and not dumps(tmp_path), args
    # Confirmed, with --tags partitioning: the backup is taken first, then the partitions are added.
    confirmed = play("setup.yml", warehouse, pg_server.password, {"dwh_confirm": True}, args=["--tags", "partitioning"])
    assert confirmed.returncode == 0, confirmed.stdout[-4000:]
    assert len(dumps(tmp_path)) == 1 and "verified: read back in full" in confirmed.stdout
    assert set(partitions(conn, ATT)) > set(before) and compression_of(conn, ATT, "commentaire") == ""
