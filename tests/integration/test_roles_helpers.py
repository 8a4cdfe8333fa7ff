"""Helpers shared by the role and playbook tests (no test here): inventories for throwaway servers, runs, recaps."""

import json
import os
import re
import subprocess
import sys

import yaml

from tests.support.modules import ROOT

MODULES = ("partitioned_table", "compression", "vacuum")
DEMO_VARS = os.path.join(ROOT, "inventories", "demo", "group_vars", "all", "dwh.yml")
RECAP = re.compile(r"^(\S+)\s+:\s+ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)\s+skipped=(\d+)")


def enabled_vars(roles=("partitioning", "compression", "vacuum")):
    """The roles a playbook runs, each enabled (extra vars win over the playbook's own settings)."""
    return {"dwh_%s_enabled" % role: True for role in roles}


def sigeti_tables():
    """SIGETI's declared tables, as in the shipped inventories."""
    with open(DEMO_VARS) as handle:
        return yaml.safe_load(handle)["dwh_tables"]


def load_sample(pg_server, db, scale=2000, partitioned=True, bloat=False):
    """Load the sample warehouse into the (fresh) database ``db``."""
    from tests.support.warehouse import load_warehouse

    conn = pg_server.connect(db)
    try:
        load_warehouse(conn, scale=scale, partitioned=partitioned, bloat=bloat)
    finally:
        conn.close()


def write_inventory(path, hosts, group_vars=None):
    """Write an inventory of local-connection hosts, each ``{name: (server, db)}``; the password comes from the env.

    Every server of the tests has the same password, read from DWH_LOGIN_PASSWORD (never written to the file).
    """
    entries = {}
    for name, (server, db) in hosts.items():
        entries[name] = {
            "ansible_connection": "local",
            "ansible_python_interpreter": sys.executable,
            "dwh_login_host": "127.0.0.1",
            "dwh_login_port": server.port,
            "dwh_login_user": "postgres",
            "dwh_login_db": db,
            "dwh_pg_bin_dir": server.bin_dir,
        }
    variables = {
        "dwh_login_password": "{{ lookup('ansible.builtin.env', 'DWH_LOGIN_PASSWORD') }}",
        "dwh_tables": sigeti_tables(),
        "dwh_vacuum_min_size": "1MB",
    }
    variables.update(group_vars or {})
    inventory = {"all": {"children": {"dwh_servers": {"hosts": entries, "vars": variables}}}}
    with open(path, "w") as handle:
        yaml.safe_dump(inventory, handle)
    return str(path)


def play(playbook, inventory, password, extra_vars=None, check=False, args=(), stdin=subprocess.DEVNULL, timeout=600):
    """Run ansible-playbook with no terminal on stdin (unless given); return CompletedProcess (stdout+stderr)."""
    command = [os.path.join(os.path.dirname(sys.executable), "ansible-playbook"), "-i", inventory]
    if not os.path.isabs(playbook):
        playbook = os.path.join(ROOT, "playbooks", playbook)
    command.append(playbook)
    if extra_vars:
        command += ["-e", json.dumps(extra_vars)]
    if check:
        command.append("--check")
    command += list(args)
    env = dict(os.environ)
    env.update(
        {
            "ANSIBLE_STDOUT_CALLBACK": "default",
            "ANSIBLE_NOCOLOR": "1",
            "ANSIBLE_PIPELINING": "1",
            "ANSIBLE_FORKS": "5",
            "DWH_LOGIN_PASSWORD": password,
            "ANSIBLE_HOST_KEY_CHECKING": "False",
        }
    )
    env.pop("PGPASSWORD", None)
    return subprocess.run(
        command,
        cwd=ROOT,
        env=env,
        stdin=stdin,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=timeout,
        check=False,
    )


def recap(output):
    """Return ``{host: {ok, changed, unreachable, failed, skipped}}`` from a PLAY RECAP."""
    result = {}
    for line in output.splitlines():
        match = RECAP.match(line.strip())
        if match:
            ok, changed, unreachable, failed, skipped = (int(x) for x in match.groups()[1:])
            result[match.group(1)] = {
                "ok": ok,
                "changed": changed,
                "unreachable": unreachable,
                "failed": failed,
                "skipped": skipped,
            }
    return result


def partitions(conn, table):
    """Names of the partitions of ``table`` (schema.table), sorted."""
    with conn.cursor() as cur:
        cur.execute(
            "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
            "WHERE i.inhparent = %s::regclass ORDER BY 1",
            (table,),
        )
        return [r[0] for r in cur.fetchall()]


def compression_of(conn, table, column):
    """attcompression of a column of a table ('' = default)."""
    with conn.cursor() as cur:
        cur.execute(
            "SELECT attcompression FROM pg_attribute WHERE attrelid = %s::regclass AND attname = %s", (table, column)
        )
        return cur.fetchone()[0]
