"""schedule: cron entries for the weekly (Monday 02:00) and monthly (1st 03:00) runs in a throwaway user's crontab;
the installed line itself runs under ``env -i`` (cron's bare environment) against a password-protected server, and
an overlapping run waits a bounded time then logs that it was skipped."""

import fcntl
import os
import shutil
import subprocess
import sys
import uuid

import pytest
import yaml

from tests.support.modules import ROOT, run_playbook


@pytest.fixture
def cron_user():
    if not shutil.which("crontab") or not shutil.which("useradd") or os.geteuid() != 0:
        pytest.skip("needs root, useradd and crontab (apt-get install -y cron)")
    name = "dwhcron%s" % uuid.uuid4().hex[:6]
    subprocess.run(["useradd", "--no-create-home", name], check=True)
    try:
        yield name
    finally:
        subprocess.run(["crontab", "-r", "-u", name], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
        subprocess.run(["userdel", name], check=False)


def crontab(user):
    result = subprocess.run(
        ["crontab", "-l", "-u", user], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, check=False
    )
    return result.stdout if result.returncode == 0 else ""


def test_schedule_installs_weekly_and_monthly_entries_idempotently(cron_user, tmp_path):
    playbook = tmp_path / "schedule.yml"
    playbook.write_text(
        yaml.safe_dump([{"hosts": "localhost", "gather_facts": False, "roles": [{"role": "sigeti.dwh.schedule"}]}])
    )
    variables = {
        "dwh_schedule_user": cron_user,
        "dwh_schedule_log_dir": str(tmp_path / "log"),
        "dwh_schedule_inventory": "/etc/sigeti-dwh/prod",
        "dwh_schedule_env_file": "/etc/sigeti-dwh/env",
        "ansible_python_interpreter": sys.executable,
    }
    first = run_playbook(str(playbook), extra_vars=variables, extra_args=["-c", "local"])
    assert first.returncode == 0, first.stdout
    lines = [line for line in crontab(cron_user).splitlines() if line and not line.startswith("#")]
    weekly = [line for line in lines if "sigeti.dwh.weekly" in line]
    monthly = [line for line in lines if "sigeti.dwh.monthly" in line]
    assert len(weekly) == 1 and weekly[0].startswith("0 2 * * 1 ")
    assert len(monthly) == 1 and monthly[0].startswith("0 3 1 * * ")
    assert "-e dwh_confirm=true" in weekly[0] and "flock -w 14400 -E 75" in weekly[0]
    assert "set -a && . /etc/sigeti-dwh/env && set +a &&" in weekly[0]
    assert "-i /etc/sigeti-dwh/prod" in monthly[0] and "monthly.log" in monthly[0]
    second = run_playbook(str(playbook), extra_vars=variables, extra_args=["-c", "local"])
    assert second.returncode == 0 and "changed=0" in second.stdout, second.stdout
    removed = run_playbook(
        str(playbook), extra_vars=dict(variables, dwh_schedule_state="absent"), extra_args=["-c", "local"]
    )
    assert removed.returncode == 0, removed.stdout
    assert "sigeti.dwh" not in crontab(cron_user)
    assert ROOT


def command_of(line):
    """The shell command of a crontab line (after the 5 time fields), as cron's /bin/sh -c would run it."""
    return line.split(None, 5)[5]


def test_installed_cron_line_runs_under_env_i_and_an_overlapping_run_is_logged(
    cron_user, pg_server, db, tmp_path, collections_path
):
    from tests.integration.test_roles_helpers import load_sample, write_inventory

    load_sample(pg_server, db, scale=500)
    inventory = write_inventory(tmp_path / "hosts.yml", {"dwh1": (pg_server, db)}, {"dwh_confirm": True})
    work = tmp_path / "work"
    work.mkdir()
    (work / "ansible.cfg").write_text("[defaults]\ncollections_path = %s\nnocolor = true\n" % collections_path)
    env_file = tmp_path / "env"
    # As documented: plain VAR=value lines (no "export").
    env_file.write_text("DWH_LOGIN_PASSWORD=%s\n" % pg_server.password)
    os.chmod(env_file, 0o600)
    playbook = tmp_path / "schedule.yml"
    playbook.write_text(
        yaml.safe_dump([{"hosts": "localhost", "gather_facts": False, "roles": [{"role": "sigeti.dwh.schedule"}]}])
    )
    log_dir = tmp_path / "log"
    variables = {
        "dwh_schedule_user": cron_user,
        "dwh_schedule_log_dir": str(log_dir),
        "dwh_schedule_inventory": inventory,
        "dwh_schedule_env_file": str(env_file),
        "dwh_schedule_workdir": str(work),
        "dwh_schedule_ansible_playbook": os.path.join(os.path.dirname(sys.executable), "ansible-playbook"),
        "dwh_schedule_lock_wait": 2,
        "ansible_python_interpreter": sys.executable,
    }
    installed = run_playbook(str(playbook), extra_vars=variables, extra_args=["-c", "local"])
    assert installed.returncode == 0, installed.stdout
    lines = {name: line for line in crontab(cron_user).splitlines() for name in ("weekly", "monthly") if name in line}
    weekly = subprocess.run(
        ["env", "-i", "/bin/sh", "-c", command_of(lines["weekly"])],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=600,
        check=False,
    )
    log = (log_dir / "weekly.log").read_text()
    assert weekly.returncode == 0, weekly.stdout + log[-5000:]
    assert "no password supplied" not in log and "failed=0" in log and pg_server.password not in log
    # The monthly run starts while the weekly one still holds the lock: it waits 2 s, then says so in its log.
    with open(log_dir / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        monthly = subprocess.run(
            ["env", "-i", "/bin/sh", "-c", command_of(lines["monthly"])],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            timeout=120,
            check=False,
        )
    assert monthly.returncode == 75, monthly.stdout
    text = (log_dir / "monthly.log").read_text()
    assert "sigeti.dwh monthly skipped: previous run still holds the lock %s/.lock (waited 2 s)" % log_dir in text
