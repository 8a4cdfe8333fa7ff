"""The partitioning role runs a declared migration in the background (async) and prints its progress at each poll
(sigeti.dwh.run_progress reading table_info's migration entries); the run's result stays the module's."""

import os
import re
import subprocess
import sys
import threading

import yaml

from tests.integration.test_roles_helpers import partitions, recap
from tests.support.modules import ROOT

PLAYBOOK = """
- name: Migrate through the roles
  hosts: dwh_servers
  gather_facts: false
  roles:
    - role: sigeti.dwh.preflight
      vars:
        dwh_compression_enabled: false
    - role: sigeti.dwh.partitioning
"""
PROGRESS = re.compile(r"\(item=public\.events: (\w+), (\d+)/(\S+) rows copied \((\S+) %\), (\S+) rows/s, ETA (\S+) s\)")


def test_declared_migration_runs_async_and_prints_progress_at_each_poll(pg_server, db, conn, tmp_path):
    with conn.cursor() as cur:
        cur.execute("CREATE TABLE public.events (id bigint, d date NOT NULL, note text, PRIMARY KEY (id, d))")
        cur.execute(
            "INSERT INTO public.events SELECT i, DATE '2024-01-01' + (i % 600), md5(i::text) "
            "FROM generate_series(1, 3000) i"
        )
    host = {
        "ansible_connection": "local",
        "ansible_python_interpreter": sys.executable,
        "dwh_login_host": "127.0.0.1",
        "dwh_login_port": pg_server.port,
        "dwh_login_user": "postgres",
        "dwh_login_db": db,
        "dwh_pg_bin_dir": pg_server.bin_dir,
    }
    variables = {
        "dwh_login_password": "{{ lookup('ansible.builtin.env', 'DWH_LOGIN_PASSWORD') }}",
        "dwh_tables": [
            {
                "name": "public.events",
                "key": "d",
                "key_format": "date",
                "interval": "year",
                "start": "2024-01-01",
                "migrate": "online",
                "batch_rows": 1000,
            }
        ],
        "dwh_confirm": True,
        "dwh_backup": "never",
        "dwh_partitioning_poll_seconds": 1,
        # the swap waits behind the reader below: short attempts, enough of them
        "dwh_lock_timeout": "300ms",
        "dwh_lock_retries": 12,
        "dwh_lock_retry_delay": 0.2,
    }
    inventory = tmp_path / "hosts.yml"
    inventory.write_text(
        yaml.safe_dump({"all": {"children": {"dwh_servers": {"hosts": {"dwh1": host}, "vars": variables}}}})
    )
    playbook = tmp_path / "migrate.yml"
    playbook.write_text(PLAYBOOK)

    # A reader holds ACCESS SHARE on the table: the copy goes on beside it, the swap (ACCESS EXCLUSIVE) waits, so the
    # migration is still running at the polls. It lets go once a progress line is printed (or after 60 s).
    reader = pg_server.connect(db, autocommit=False)
    with reader.cursor() as cur:
        cur.execute("SELECT count(*) FROM public.events")
    released = threading.Event()

    def release():
        if not released.is_set():
            released.set()
            reader.rollback()

    timer = threading.Timer(60, release)
    timer.start()
    env = dict(
        os.environ,
        ANSIBLE_STDOUT_CALLBACK="default",
        ANSIBLE_NOCOLOR="1",
        DWH_LOGIN_PASSWORD=pg_server.password,
        ANSIBLE_HOST_KEY_CHECKING="False",
    )
    env.pop("PGPASSWORD", None)
    command = [os.path.join(os.path.dirname(sys.executable), "ansible-playbook"), "-i", str(inventory), str(playbook)]
    lines = []
    try:
        with subprocess.Popen(
            command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        ) as proc:
            for line in proc.stdout:
                lines.append(line)
                if PROGRESS.search(line):
                    release()
            proc.wait(timeout=300)
    finally:
        timer.cancel()
        release()
        reader.close()
    output = "".join(lines)
    assert proc.returncode == 0, output[-6000:]
    progress = [PROGRESS.search(line) for line in lines if PROGRESS.search(line)]
    assert progress, "no progress line:\n" + output[-6000:]
    phase, copied = progress[0].group(1), int(progress[0].group(2))
    assert phase in ("copy", "build", "catchup", "swap") and 0 <= copied <= 3000, progress[0].group(0)
    assert "TASK [sigeti.dwh.partitioning : Follow the migration (one line per poll)]" in output
    assert "(item=finished)" in output
    assert recap(output)["dwh1"]["changed"] >= 1 and recap(output)["dwh1"]["failed"] == 0
    assert "events_2024" in partitions(conn, "public.events")
    with conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM public.events")
        assert cur.fetchone()[0] == 3000
