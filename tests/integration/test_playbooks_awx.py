"""What AWX runs: ansible-runner with a private data dir and extra vars (no prompt, no password in the artifacts),
and ansible-builder create on execution-environment.yml."""

import json
import os
import shutil
import subprocess
import sys

import pytest
import yaml

from tests.integration.test_roles_helpers import enabled_vars, load_sample, sigeti_tables
from tests.support.modules import ROOT

BIN = os.path.dirname(sys.executable)


def test_ansible_builder_create_writes_the_build_context(tmp_path):
    if not os.path.exists(os.path.join(BIN, "ansible-builder")):
        pytest.skip("ansible-builder is not installed (requirements-dev.txt)")
    result = subprocess.run(
        [
            os.path.join(BIN, "ansible-builder"),
            "create",
            "-f",
            os.path.join(ROOT, "execution-environment.yml"),
            "-c",
            str(tmp_path / "context"),
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout
    context = tmp_path / "context"
    containerfile = (
        (context / "Containerfile") if (context / "Containerfile").exists() else (context / "Dockerfile")
    ).read_text()
    assert "ansible-galaxy" in containerfile
    assert "psycopg2-binary" in (tmp_path / "context" / "_build" / "requirements.txt").read_text()


def test_weekly_through_ansible_runner_with_extra_vars_and_no_secret_in_artifacts(pg_server, db, tmp_path, monkeypatch):
    runner = pytest.importorskip("ansible_runner")
    load_sample(pg_server, db)
    private = tmp_path / "awx"
    (private / "inventory").mkdir(parents=True)
    (private / "project").mkdir()
    shutil.copy(os.path.join(ROOT, "playbooks", "weekly.yml"), private / "project" / "weekly.yml")
    hosts = {
        "all": {
            "children": {
                "dwh_servers": {
                    "hosts": {"dwh1": {"ansible_connection": "local", "ansible_python_interpreter": sys.executable}}
                }
            }
        }
    }
    (private / "inventory" / "hosts.yml").write_text(yaml.safe_dump(hosts))
    # The credential reaches the play the way an AWX custom credential injects it: an environment variable of
    # the job, read by a lookup. It must show up nowhere in what the runner records.
    password_file = tmp_path / "secret"
    password_file.write_text(pg_server.password)
    extra_vars = dict(
        enabled_vars(("partitioning", "vacuum")),
        dwh_confirm=True,
        dwh_tables=sigeti_tables(),
        dwh_login_host="127.0.0.1",
        dwh_login_port=pg_server.port,
        dwh_login_db=db,
        dwh_pg_bin_dir=pg_server.bin_dir,
        dwh_backup_dir=str(tmp_path / "backups"),
        dwh_vacuum_min_size="1MB",
        dwh_login_password="{{ lookup('ansible.builtin.file', '%s') }}" % password_file,
    )
    monkeypatch.setenv("PATH", BIN + os.pathsep + os.environ.get("PATH", ""))
    envvars = {
        "ANSIBLE_COLLECTIONS_PATH": os.environ["ANSIBLE_COLLECTIONS_PATH"],
        "ANSIBLE_NOCOLOR": "1",
        "ANSIBLE_PIPELINING": "1",
        "PATH": BIN + os.pathsep + os.environ.get("PATH", ""),
    }
    result = runner.run(
        private_data_dir=str(private), playbook="weekly.yml", extravars=extra_vars, quiet=True, envvars=envvars
    )
    stdout = result.stdout.read()
    assert result.status == "successful", stdout[-6000:]
    assert result.rc == 0
    assert result.stats["failures"] == {} and "dwh1" in result.stats["ok"]
    # The weekly run added the partitions ahead (no prompt: dwh_confirm); additive, so dwh_backup auto took no dump.
    assert "verified:" not in stdout
    leaked = []
    for folder, _dirs, files in os.walk(private):
        for name in files:
            with open(os.path.join(folder, name), "rb") as handle:
                if pg_server.password.encode() in handle.read():
                    leaked.append(os.path.join(folder, name))
    assert not leaked, leaked
    # Second run: nothing due.
    again = runner.run(
        private_data_dir=str(private), playbook="weekly.yml", extravars=extra_vars, quiet=True, envvars=envvars
    )
    assert again.status == "successful"
    assert sum(again.stats["changed"].values()) == 0, again.stdout.read()[-6000:]


def test_weekly_through_ansible_navigator_as_on_the_aap_command_line(pg_server, db, tmp_path):
    """``ansible-navigator run playbooks/weekly.yml --ee false --mode stdout -i inventories/demo`` from the checkout
    root: the demo inventory reads the server's connection file; only the database differs from the demo's."""
    load_sample(pg_server, db)
    (tmp_path / "pg").mkdir()
    (tmp_path / "pg" / "server.json").write_text(json.dumps(pg_server.info()))
    env = {k: v for k, v in os.environ.items() if k not in ("ANSIBLE_COLLECTIONS_PATH", "PGPASSWORD")}
    env.update(
        DWH_DEMO_DIR=str(tmp_path),
        PATH=BIN + os.pathsep + os.environ.get("PATH", ""),
        ANSIBLE_NOCOLOR="1",
        HOME=str(tmp_path / "home"),
    )
    (tmp_path / "home").mkdir()
    command = [
        os.path.join(BIN, "ansible-navigator"),
        "run",
        "playbooks/weekly.yml",
        "--ee",
        "false",
        "--mode",
        "stdout",
        "-i",
        "inventories/demo",
        "-e",
        "dwh_login_db=%s" % db,
    ]
    before = set(os.listdir(os.path.join(ROOT, "playbooks")))
    result = subprocess.run(
        command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, check=False
    )
    assert result.returncode == 0, result.stdout[-6000:]
    assert "PLAY RECAP" in result.stdout and "failed=0" in result.stdout
    assert "verified:" not in result.stdout  # only partitions ahead were due: additive, no dump with dwh_backup auto
    assert pg_server.password not in result.stdout
    # no playbook artifact beside the playbooks, nothing in HOME (ansible-navigator.yml at the root)
    assert set(os.listdir(os.path.join(ROOT, "playbooks"))) == before
    assert os.listdir(str(tmp_path / "home")) == []
