"""The demo: embedded PostgreSQL + sample SIGETI warehouse + the collection's playbooks. Run through ``./dev demo``.

Steps: start a throwaway server in .demo/pg (kept running; ``./dev stop`` stops it), load the sample
warehouse into database ``sigeti_demo`` (once), then run the playbooks against it with ansible-playbook.
"""

import argparse
import json
import os
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
import conftest  # noqa: E402,F401  pylint: disable=unused-import  (makes ansible_collections.sigeti.dwh importable and sets ANSIBLE_COLLECTIONS_PATH)
from tests.support.pgserver import PostgresServer  # noqa: E402

DEMO_DIR = os.path.join(ROOT, ".demo", "pg")
DATABASE = "sigeti_demo"


def start_server():
    """Start (or reuse) the demo server; return it."""
    state = os.path.join(DEMO_DIR, "server.json")
    port = None
    if os.path.exists(state):
        with open(state) as handle:
            port = json.load(handle)["port"]
    server = PostgresServer(base_dir=DEMO_DIR, port=port)
    server.start()
    server.wait_ready()
    with open(state, "w") as handle:
        json.dump(server.info(), handle)
    os.chmod(state, 0o600)
    return server


def ensure_warehouse(server, scale, reload):
    """Load the sample warehouse unless it is there already."""
    from tests.support.warehouse import load_warehouse

    conn = server.connect()
    with conn.cursor() as cur:
        cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (DATABASE,))
        exists = cur.fetchone() is not None
    conn.close()
    if exists and not reload:
        print("sample warehouse already loaded in database %s (use --reload to start over)" % DATABASE)
        return
    server.create_database(DATABASE)
    conn = server.connect(DATABASE)
    started = time.time()
    summary = load_warehouse(conn, scale=scale)
    conn.close()
    print("loaded the sample SIGETI warehouse (scale %d) in %.1fs" % (scale, time.time() - started))
    print(json.dumps(summary, indent=2, default=str)[:2000])


def run_playbook(server, playbook):
    """Run one playbook of the collection against the demo inventory."""
    env = dict(os.environ)
    env["DWH_DEMO_PORT"] = str(server.port)
    env["DWH_LOGIN_PASSWORD"] = server.password
    env["ANSIBLE_NOCOLOR"] = "1"
    env.setdefault("ANSIBLE_STDOUT_CALLBACK", "default")
    command = [os.path.join(os.path.dirname(sys.executable), "ansible-playbook"),
               "-i", os.path.join(ROOT, "inventories", "demo", "hosts.yml"), os.path.join(ROOT, "playbooks", playbook)]
    print("\n$ %s" % " ".join(command), flush=True)
    return subprocess.call(command, cwd=ROOT, env=env)


def main(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=int, default=int(os.environ.get("DWH_DEMO_SCALE", "1000000")),
                        help="fact rows of the sample warehouse (default 1,000,000)")
    parser.add_argument("--reload", action="store_true", help="drop and reload the sample warehouse")
    args = parser.parse_args(argv)
    server = start_server()
    print("embedded PostgreSQL at 127.0.0.1:%d (data in %s; stop it with ./dev stop)" % (server.port, DEMO_DIR))
    ensure_warehouse(server, args.scale, args.reload)
    code = run_playbook(server, "info.yml")
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
