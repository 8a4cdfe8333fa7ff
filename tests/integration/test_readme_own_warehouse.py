"""The README's "Use it on your warehouse", run as written, as a new user would: a fresh clone, one's own project
folder, a fresh PostgreSQL server, a non-superuser owner whose password holds a quote and a space, and a plain
``dwh_facts.fait_attributions`` with a primary key.

Each block of the README between its markers runs in one ``bash`` as the README says: the build block in the clone,
the project's ``ansible.cfg`` written from its block, the install block and the run block (info, setup --check,
setup, weekly) in the project folder, the inventory written from the README's minimal inventory. The database is on
another host, reached over real SSH (tests/support/sshhost.py: OpenSSH's client, the README's ``db1.internal``
mapped to it by an ssh_config, as a user's ~/.ssh/config would), or on the controller (the README's other host
lines). Then a second setup, which must be quiet.

What differs from the README is in ``my-warehouse/host_vars`` only, and says where this throwaway server and this
machine keep things: the server's socket folder, its pg_dump, a temporary backup folder, and, on "another host"
(this machine has no python3-psycopg2), the Python with psycopg2. One line differs: the interactive setup gets
``-e dwh_confirm=true`` (no terminal here; the prompt itself is tested on a pseudo-terminal in
test_roles_preflight.py).

Checked after every command: its exit code, the table's kind, partitions, row count and md5 over every row. At the
end: the password in no output, nothing in HOME, nothing left untracked in the clone.
"""

from __future__ import annotations

import os
import pathlib
import re
import shutil
import subprocess
import tempfile
import textwrap
import threading
import time

import psycopg2
import pytest
import yaml

from tests.integration.test_getting_started import copy_checkout, untracked, with_venv
from tests.support.modules import ROOT
from tests.support.pgserver import PostgresServer
from tests.support.sshhost import SYSTEM_PATH, SshHost

TABLE = "dwh_facts.fait_attributions"
PASSWORD = "it's a s3cret"  # a quote and a space: the shell, the inventory, libpq and pg_dump's pgpass file
ROWS = 20000
MARK = "@@@ step done rc="


def readme():
    with open(os.path.join(ROOT, "README.md")) as handle:
        return handle.read()


def block(name, language):
    """The code of the README's block between ``<!-- begin: name`` and ``<!-- end: name -->``."""
    match = re.search(
        r"<!-- begin: %s\b[^\n]*-->\n```%s\n(.*?)```\n<!-- end: %s -->" % (re.escape(name), language, re.escape(name)),
        readme(),
        re.S,
    )
    assert match, "README.md lost its %r block" % name
    return match.group(1)


def commands(name):
    return [line for line in block(name, "bash").splitlines() if line.strip() and not line.startswith("#")]


def fresh_clone(folder):
    """A fresh clone of this commit plus the work in progress, in the state ``./dev`` leaves: .venv's programs
    (linked to this checkout's venv, which has them all)."""
    copy_checkout(folder)
    with_venv(pathlib.Path(folder))


def user_environment(home):
    """A login shell's environment: an empty HOME, the system PATH (no venv), none of the harness's variables."""
    keep = ("LANG", "LC_ALL", "TERM", "TMPDIR", "USER", "LOGNAME")
    env = {k: v for k, v in os.environ.items() if k in keep}
    env.update(HOME=home, PATH=SYSTEM_PATH, ANSIBLE_NOCOLOR="1")
    return env


class Warehouse:
    """A fresh server on a Unix socket only, port 5432 as the README says (no TCP, so no clash), with password
    authentication for every role but the harness's superuser, the README's owner and database, and a plain
    fact table with a primary key."""

    def __init__(self, owner, database):
        self.owner, self.database = owner, database
        self.server = PostgresServer(port=5432, settings={"listen_addresses": "''"})
        self.server.init()
        with open(os.path.join(self.server.data_dir, "pg_hba.conf"), "w") as handle:
            handle.write("local all postgres trust\nlocal all all scram-sha-256\n")
        self.server.start()
        self.socket_dir = self.server.socket_dir
        self.sql(
            "postgres",
            ("CREATE ROLE %s LOGIN PASSWORD %%s" % owner, (PASSWORD,)),
            "CREATE DATABASE %s" % database,
            "GRANT CREATE ON DATABASE %s TO %s" % (database, owner),
        )
        self.sql(
            database,
            "CREATE SCHEMA dwh_facts AUTHORIZATION %s" % owner,
            "SET ROLE %s" % owner,
            "CREATE TABLE %s (attribution_id bigserial PRIMARY KEY, date_demandee_key integer NOT NULL, "
            "montant numeric(12,2), commentaire text)" % TABLE,
            "INSERT INTO %s (date_demandee_key, montant, commentaire) "
            "SELECT to_char(date '2020-01-01' + (i %% 2555), 'YYYYMMDD')::int, i * 1.25, 'demande ' || i "
            "FROM generate_series(1, %d) i" % (TABLE, ROWS),
        )

    def sql(self, database, *statements):
        conn = self.connect(database)
        try:
            with conn.cursor() as cur:
                for statement in statements:
                    cur.execute(*statement) if isinstance(statement, tuple) else cur.execute(statement)
        finally:
            conn.close()

    def connect(self, database):
        conn = psycopg2.connect(host=self.socket_dir, port=5432, user="postgres", dbname=database)
        conn.autocommit = True
        return conn

    def state(self):
        """(kind, partitions, rows, md5 over every row in key order)."""
        conn = self.connect(self.database)
        try:
            with conn.cursor() as cur:
                cur.execute("SELECT relkind FROM pg_class WHERE oid = %s::regclass", (TABLE,))
                kind = cur.fetchone()[0]
                cur.execute("SELECT count(*) FROM pg_inherits WHERE inhparent = %s::regclass", (TABLE,))
                partitions = cur.fetchone()[0]
                cur.execute("SELECT count(*), md5(string_agg(t::text, '|' ORDER BY attribution_id)) FROM %s t" % TABLE)
                rows, digest = cur.fetchone()
        finally:
            conn.close()
        return {"kind": kind, "partitions": partitions, "rows": rows, "md5": digest}

    def destroy(self):
        self.server.destroy()


def run_steps(script, cwd, env, answers, timeout=2400):
    """Run ``script`` in bash; after each step it prints MARK and waits for a line on stdin. ``answers(index,
    output)`` is called at each mark (the step's output, stdout and stderr together) and returns what to type
    next. Returns [(rc, output)] per step."""
    process = subprocess.Popen(
        ["bash", "-c", script],
        cwd=cwd,
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    timer = threading.Timer(timeout, process.kill)
    timer.start()
    steps, lines = [], []
    try:
        for line in process.stdout:
            if line.startswith(MARK):
                steps.append((int(line[len(MARK) :]), "".join(lines)))
                lines = []
                process.stdin.write(answers(len(steps) - 1, steps[-1][1]))
                process.stdin.flush()
            else:
                lines.append(line)
        process.wait()
    finally:
        timer.cancel()
        if process.poll() is None:
            process.kill()
    if lines:
        steps.append((process.returncode, "".join(lines)))
    return steps


def recap(output):
    match = re.search(r"warehouse-1\s+:\s+ok=\d+\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)", output)
    assert match, output[-4000:]
    return {"changed": int(match.group(1)), "unreachable": int(match.group(2)), "failed": int(match.group(3))}


def inventory_for(where):
    """The README's minimal inventory, as written; on the controller with the README's other host lines."""
    inventory = yaml.safe_load(block("minimal inventory", "yaml"))
    if where == "controller":
        hosts = yaml.safe_load(textwrap.dedent(block("on the controller", "yaml")))
        inventory["all"]["children"]["dwh_servers"]["hosts"] = hosts
    return inventory


@pytest.fixture
def places():
    """Short folders (ssh's control socket path must stay under ~100 characters): the clone, the project, HOME."""
    base = tempfile.mkdtemp(prefix="dwh-rd-")
    folders = {name: os.path.join(base, name) for name in ("clone", "project", "home", "host", "backups")}
    for path in folders.values():
        os.makedirs(path)
    yield folders
    shutil.rmtree(base, ignore_errors=True)


@pytest.mark.parametrize("where", ["another host", "controller"])
def test_readme_own_warehouse_as_written(where, places):
    if where == "another host" and not (shutil.which("ssh") and shutil.which("sftp")):
        pytest.skip("OpenSSH's client (ssh, sftp) is not installed: apt-get install openssh-client")
    inventory = inventory_for(where)
    group = inventory["all"]["children"]["dwh_servers"]
    warehouse = Warehouse(group["vars"]["dwh_login_user"], group["vars"]["dwh_login_db"])
    host = None
    try:
        fresh_clone(places["clone"])
        project = places["project"]
        with open(os.path.join(project, "ansible.cfg"), "w") as handle:
            handle.write(block("project ansible.cfg", "ini"))
        os.makedirs(os.path.join(project, "my-warehouse", "host_vars"))
        with open(os.path.join(project, "my-warehouse", "hosts.yml"), "w") as handle:
            yaml.safe_dump(inventory, handle)
        # Where this machine and this throwaway server keep things (nothing else differs from the README).
        here = {
            "dwh_login_unix_socket": warehouse.socket_dir,
            "dwh_pg_bin_dir": warehouse.server.bin_dir,
            "dwh_backup_dir": places["backups"],
        }
        env = user_environment(places["home"])
        if where == "another host":
            # The README's db1.internal, over SSH. This machine's system Python has no psycopg2: the venv's stands
            # for the one the README tells to install there.
            host = SshHost(
                places["host"], inventory["all"]["children"]["dwh_servers"]["hosts"]["warehouse-1"]["ansible_host"]
            )
            host.start()
            here["ansible_python_interpreter"] = os.path.join(ROOT, ".venv", "bin", "python")
            env["ANSIBLE_SSH_COMMON_ARGS"] = "-F %s" % host.config
        with open(os.path.join(project, "my-warehouse", "host_vars", "warehouse-1.yml"), "w") as handle:
            yaml.safe_dump(here, handle)

        run = commands("run")
        setup_line = next(line for line in run if re.search(r"sigeti\.dwh\.setup\s+#", line))
        confirmed = setup_line.split("#")[0].rstrip() + " -e dwh_confirm=true"
        steps = (
            [("clone", line) for line in commands("build")]
            + [("project", line) for line in commands("install")]
            + [("project", confirmed if line == setup_line else line) for line in run]
            + [("project", confirmed)]  # a second setup: nothing to do
        )
        script = "".join("cd %s\n%s\necho '%s'$?\nread -r _\n" % (places[folder], line, MARK) for folder, line in steps)
        names = [line.split("#")[0].strip() for _folder, line in steps]
        read_index = next(i for i, line in enumerate(names) if line.startswith("IFS= read"))
        states = []

        def answers(index, _output):
            dumps = sorted(n for n in os.listdir(places["backups"]) if n.endswith(".dump"))
            states.append(dict(warehouse.state(), dumps=dumps))
            print("step %d done at %.0f s: %s" % (index, time.monotonic() - started, names[index]))
            # the README's read comes next: the user types the password
            return "\n" + (PASSWORD + "\n" if index + 1 == read_index else "")

        before = dict(warehouse.state(), dumps=[])
        assert before["kind"] == "r" and before["rows"] == ROWS
        started = time.monotonic()
        results = run_steps(script, places["clone"], env, answers)
        for (rc, output), name in zip(results, names):
            assert rc == 0, "%s (%s) failed (exit %d):\n%s" % (name, where, rc, output[-6000:])
        assert len(results) == len(steps), results[-1][1][-4000:]
        everything = "".join(output for _rc, output in results)
        assert PASSWORD not in everything

        install_index = len(commands("build"))
        install = results[install_index][1]
        assert "will not be picked up" not in install and "sigeti.dwh:0.1.0 was installed successfully" in install
        doc = results[install_index + 1][1]
        assert os.path.join(project, "collections", "ansible_collections", "sigeti", "dwh") in doc, doc[-2000:]

        info = results[read_index + 1][1]
        assert "%s [plain]" % TABLE in info and recap(info)["failed"] == 0
        check = results[read_index + 2][1]
        assert recap(check)["failed"] == 0 and "would run (check mode)" in check
        assert states[read_index + 2] == before, "setup --check changed the table or took a backup"

        setup = results[read_index + 3][1]
        after = states[read_index + 3]
        assert recap(setup)["changed"] > 0 and "verified" in setup
        assert after["kind"] == "p" and after["partitions"] >= 8
        assert (after["rows"], after["md5"]) == (before["rows"], before["md5"]), "rows changed by the migration"
        assert after["dumps"], "no verified dump was kept"

        weekly = results[read_index + 4][1]
        assert recap(weekly)["failed"] == 0
        assert (states[read_index + 4]["rows"], states[read_index + 4]["md5"]) == (before["rows"], before["md5"])
        again = results[read_index + 5][1]
        assert recap(again)["changed"] == 0, again[-6000:]
        assert states[-1] == states[read_index + 4]

        # the tasks run on the controller kept their temporary files in the project (remote_tmp), not in ~user
        assert os.path.isdir(os.path.join(project, ".ansible", "tmp"))
        left_in_home = set(os.listdir(places["home"]))
        assert not left_in_home, "written into HOME: %s" % sorted(left_in_home)
        left = untracked(places["clone"])
        assert left == "", "left or changed in the clone: %s" % left
    finally:
        if host is not None:
            host.stop()
        warehouse.destroy()
