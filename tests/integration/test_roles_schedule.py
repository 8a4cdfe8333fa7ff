"""schedule: cron entries for the weekly (Monday 02:00) and monthly (1st 03:00) runs in a throwaway user's crontab."""

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
    assert "-e dwh_confirm=true" in weekly[0] and "flock -n" in weekly[0] and ". /etc/sigeti-dwh/env &&" in weekly[0]
    assert "-i /etc/sigeti-dwh/prod" in monthly[0] and "monthly.log" in monthly[0]
    second = run_playbook(str(playbook), extra_vars=variables, extra_args=["-c", "local"])
    assert second.returncode == 0 and "changed=0" in second.stdout, second.stdout
    removed = run_playbook(
        str(playbook), extra_vars=dict(variables, dwh_schedule_state="absent"), extra_args=["-c", "local"]
    )
    assert removed.returncode == 0, removed.stdout
    assert "sigeti.dwh" not in crontab(cron_user)
    assert ROOT
