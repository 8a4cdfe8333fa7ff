"""The collection builds into a tarball that installs, and modules load from the installed copy."""

import glob
import os
import subprocess
import sys
import tarfile

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
