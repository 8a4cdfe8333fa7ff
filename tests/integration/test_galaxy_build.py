"""The collection builds into a tarball that installs, and modules load from the installed copy."""

import glob
import os
import re
import subprocess
import sys
import tarfile

import yaml

from tests.integration.test_roles_helpers import load_sample
from tests.support.modules import ROOT

BIN = os.path.dirname(sys.executable)


def test_build_install_and_use_installed_copy(tmp_path, pg_server, db):
    build = subprocess.run(
        [os.path.join(BIN, "ansible-galaxy"), "collection", "build", ROOT, "--output-path", str(tmp_path), "--force"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        check=False,
    )
    assert build.returncode == 0, build.stdout
    tarball = glob.glob(str(tmp_path / "sigeti-dwh-*.tar.gz"))[0]
    with tarfile.open(tarball) as archive:
        names = archive.getnames()
    assert "plugins/modules/table_info.py" in names and "meta/runtime.yml" in names
    assert not [n for n in names if n.startswith((".venv", ".demo", "tests/output")) or "__pycache__" in n]
    target = tmp_path / "installed"
    install = subprocess.run(
        [os.path.join(BIN, "ansible-galaxy"), "collection", "install", tarball, "-p", str(target), "--force"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        check=False,
    )
    assert install.returncode == 0, install.stdout
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=str(target), ANSIBLE_NOCOLOR="1")
    doc = subprocess.run(
        [os.path.join(BIN, "ansible-doc"), "sigeti.dwh.table_info"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        check=False,
    )
    assert doc.returncode == 0 and "login_password" in doc.stdout
    params = pg_server.params(db)
    adhoc = subprocess.run(
        [
            os.path.join(BIN, "ansible"),
            "localhost",
            "-m",
            "sigeti.dwh.table_info",
            "-a",
            "login_host=127.0.0.1 login_port=%d login_db=%s login_password=%s schemas=public"
            % (params["login_port"], db, params["login_password"]),
            "-e",
            "ansible_python_interpreter=%s" % sys.executable,
        ],
        env=dict(env, ANSIBLE_LOCALHOST_WARNING="False", ANSIBLE_INVENTORY_UNPARSED_WARNING="False"),
        cwd=str(tmp_path),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        check=False,
    )
    assert adhoc.returncode == 0, adhoc.stdout
    assert str(target) in adhoc.stdout or "SUCCESS" in adhoc.stdout


def readme_inventory():
    """The minimal inventory of the README's "Use it on your warehouse" section, as written there."""
    with open(os.path.join(ROOT, "README.md")) as handle:
        text = handle.read()
    block = re.search(r"<!-- begin: minimal inventory.*?```yaml\n(.*?)```\n<!-- end: minimal inventory -->", text, re.S)
    assert block, "README.md lost its minimal inventory block"
    return yaml.safe_load(block.group(1))


def count_partitions(pg_server, db):
    conn = pg_server.connect(db)
    with conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM pg_inherits WHERE inhparent = 'dwh_facts.fait_attributions'::regclass")
        count = cur.fetchone()[0]
    conn.close()
    return count


def test_readme_path_build_install_and_weekly_from_the_installed_copy(tmp_path, pg_server, db):
    """README: ./dev build (ansible-galaxy collection build), install into an empty path, the minimal inventory,
    then the weekly playbook from the installed copy against a throwaway server."""
    load_sample(pg_server, db)
    partitions_before = count_partitions(pg_server, db)
    dist = tmp_path / "dist"
    build = subprocess.run(
        [os.path.join(BIN, "ansible-galaxy"), "collection", "build", ROOT, "--output-path", str(dist)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        check=False,
    )
    assert build.returncode == 0, build.stdout
    tarball = glob.glob(str(dist / "sigeti-dwh-*.tar.gz"))[0]
    project = tmp_path / "project"
    project.mkdir()
    (project / "requirements.yml").write_text(yaml.safe_dump({"collections": [{"name": tarball, "type": "file"}]}))
    home = tmp_path / "home"  # a user's own project: Ansible may use ~/.ansible there, but not the real one
    home.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ANSIBLE_", "DWH_", "XDG_")) and k != "PGPASSWORD"}
    env.update(HOME=str(home), ANSIBLE_NOCOLOR="1", ANSIBLE_COLLECTIONS_PATH=str(project / "collections"))
    install = subprocess.run(
        [os.path.join(BIN, "ansible-galaxy"), "collection", "install", "-r", "requirements.yml", "-p", "./collections"],
        cwd=str(project),
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        check=False,
    )
    assert install.returncode == 0, install.stdout
    installed = project / "collections" / "ansible_collections" / "sigeti" / "dwh"
    assert (installed / "playbooks" / "weekly.yml").is_file() and not os.path.islink(str(installed))

    inventory = readme_inventory()
    group = inventory["all"]["children"]["dwh_servers"]
    assert group["vars"]["dwh_login_password"] == "{{ lookup('ansible.builtin.env', 'DWH_LOGIN_PASSWORD') }}"
    # Only what differs between the README's database host and this throwaway server (TCP on a random port,
    # superuser, its own pg_dump, a temporary backup folder); the tables and the rest stay as the README has them.
    group["hosts"] = {"warehouse-1": {"ansible_connection": "local", "ansible_python_interpreter": sys.executable}}
    group["vars"].update(
        dwh_login_host="127.0.0.1",
        dwh_login_port=pg_server.port,
        dwh_login_user="postgres",
        dwh_login_db=db,
        dwh_backup_dir=str(tmp_path / "backups"),
        dwh_pg_bin_dir=pg_server.bin_dir,
    )
    (project / "my-warehouse").mkdir()
    (project / "my-warehouse" / "hosts.yml").write_text(yaml.safe_dump(inventory))
    env["DWH_LOGIN_PASSWORD"] = pg_server.password
    playbook = [os.path.join(BIN, "ansible-playbook"), "-i", "my-warehouse", "sigeti.dwh.weekly"]
    check = subprocess.run(
        playbook + ["--check", "--diff"],
        cwd=str(project),
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        check=False,
    )
    assert check.returncode == 0, check.stdout[-6000:]
    weekly = subprocess.run(
        playbook + ["-e", "dwh_confirm=true", "-v"],
        cwd=str(project),
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        check=False,
    )
    assert weekly.returncode == 0, weekly.stdout[-6000:]
    # only partitions ahead were due: additive, so dwh_backup auto takes no dump
    assert "failed=0" in weekly.stdout and "verified:" not in weekly.stdout
    assert pg_server.password not in check.stdout + weekly.stdout
    assert count_partitions(pg_server, db) > partitions_before  # the years ahead, added by the installed copy
