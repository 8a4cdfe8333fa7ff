"""Check mode writes no file (issue 28): setup.yml --check --diff, which reads the catalog only, leaves the project
folder and HOME as they were and says what the run would do; the default report folder is beside the inventory
(the project's folder), never in HOME."""

import os

from tests.integration.test_roles_helpers import load_sample, play, write_inventory


def files_under(*folders):
    return sorted(
        os.path.join(root, name) for folder in folders for root, _dirs, names in os.walk(folder) for name in names
    )


def test_check_mode_writes_nothing_and_reports_go_beside_the_inventory(pg_server, db, tmp_path, monkeypatch):
    load_sample(pg_server, db, scale=500, partitioned=False)
    home, project = tmp_path / "home", tmp_path / "project"
    home.mkdir()
    (project / "inventory").mkdir(parents=True)
    monkeypatch.setenv("HOME", str(home))
    # no dwh_report_dir: the default
    inventory = write_inventory(
        project / "inventory" / "hosts.yml", {"dwh1": (pg_server, db)}, {"dwh_backup_dir": str(project / "backups")}
    )
    before = files_under(home, project)
    check = play("setup.yml", inventory, pg_server.password, check=True, args=["--diff"])
    assert check.returncode == 0, check.stdout[-5000:]
    assert files_under(home, project) == before, set(files_under(home, project)) - set(before)
    assert os.listdir(home) == []
    assert "check mode: no report file written" in check.stdout
    assert "dwh_facts.fait_attributions: would migrate a plain table (online) into" in check.stdout, check.stdout[
        -5000:
    ]

    done = play("report.yml", inventory, pg_server.password)
    assert done.returncode == 0, done.stdout[-5000:]
    reports = project / "inventory" / "sigeti-dwh-reports"
    assert (reports / "dwh1" / "report.html").is_file() and (reports / "sigeti_dwh_dwh1.prom").is_file()
    assert os.listdir(home) == []  # not even Ansible's ~/.ansible/tmp
