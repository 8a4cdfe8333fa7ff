"""A real physical replica of a throwaway primary: ``pg_basebackup -R`` (standby.signal + primary_conninfo).

    primary = PostgresServer(settings={"wal_level": "replica"}).start()
    standby = make_standby(primary)      # a started PostgresServer in recovery, on its own port
    wait_replayed(primary, standby)      # everything committed on the primary is visible on the standby
    ...
    standby.destroy(); primary.destroy()

The primary's pg_hba.conf gets ``host replication all 127.0.0.1/32 scram-sha-256`` when it lacks a replication
line for 127.0.0.1 (initdb's default file has one), then a reload. pg_basebackup runs as the server's unprivileged
user, so the copied files belong to it.
"""

from __future__ import annotations

import os
import subprocess
import time

from tests.support.pgserver import SUPERUSER, PostgresServer, free_port

REPLICATION_LINE = "host replication all 127.0.0.1/32 scram-sha-256\n"


def allow_replication(primary):
    """Make sure the primary's pg_hba.conf lets the superuser replicate over 127.0.0.1 (reload when changed)."""
    path = os.path.join(primary.data_dir, "pg_hba.conf")
    with open(path) as handle:
        lines = [line.split() for line in handle if line.strip() and not line.lstrip().startswith("#")]
    if any(len(p) >= 4 and p[0] == "host" and p[1] == "replication" and p[3].startswith("127.0.0.1") for p in lines):
        return False
    with open(path, "a") as handle:
        handle.write(REPLICATION_LINE)
    conn = primary.connect()
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT pg_reload_conf()")
    finally:
        conn.close()
    return True


def make_standby(primary, port=None):
    """Clone ``primary`` with pg_basebackup -R into a new folder, start it on its own port; return it (started)."""
    allow_replication(primary)
    standby = PostgresServer(port=port or free_port(), bin_dir=primary.bin_dir, password=primary.password)
    standby._prepare_dirs()
    env = dict(os.environ, PGPASSWORD=primary.password)
    command = [
        os.path.join(primary.bin_dir, "pg_basebackup"),
        "-D",
        standby.data_dir,
        "-R",
        "-X",
        "stream",
        "--checkpoint=fast",
        "-h",
        "127.0.0.1",
        "-p",
        str(primary.port),
        "-U",
        SUPERUSER,
        "--no-sync",
    ]
    kwargs = {"stdout": subprocess.PIPE, "stderr": subprocess.STDOUT, "text": True, "env": env}
    if standby.user:
        kwargs["user"], kwargs["group"] = standby.user
        kwargs["extra_groups"] = []
    result = subprocess.run(command, check=False, **kwargs)
    if result.returncode != 0:
        raise RuntimeError("pg_basebackup failed (%s):\n%s" % (result.returncode, result.stdout))
    # The copy carries the primary's port and socket folder: the standby needs its own (the last line wins).
    with open(os.path.join(standby.data_dir, "postgresql.auto.conf"), "a") as handle:
        handle.write(
            "port = %d\nunix_socket_directories = '%s'\nhot_standby = on\n" % (standby.port, standby.socket_dir)
        )
    if not os.path.exists(os.path.join(standby.data_dir, "standby.signal")):
        raise RuntimeError("pg_basebackup -R wrote no standby.signal in %s" % standby.data_dir)
    standby.start()
    standby.wait_ready()
    return standby


def in_recovery(server):
    """pg_is_in_recovery() of a server."""
    conn = server.connect()
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT pg_is_in_recovery()")
            return cur.fetchone()[0]
    finally:
        conn.close()


def wait_replayed(primary, standby, timeout=30):
    """Block until the standby has replayed the primary's current WAL position."""
    conn = primary.connect()
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT pg_current_wal_lsn()::text")
            target = cur.fetchone()[0]
    finally:
        conn.close()
    deadline = time.time() + timeout
    while True:
        conn = standby.connect()
        try:
            with conn.cursor() as cur:
                cur.execute("SELECT pg_last_wal_replay_lsn() >= %s::pg_lsn", (target,))
                if cur.fetchone()[0]:
                    return
        finally:
            conn.close()
        if time.time() > deadline:
            raise RuntimeError("the standby did not replay up to %s within %ss" % (target, timeout))
        time.sleep(0.1)
