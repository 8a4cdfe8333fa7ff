"""table_info through ansible-playbook, with the collection found on ANSIBLE_COLLECTIONS_PATH."""

import json
import os

from tests.support.modules import ROOT, run_playbook


def test_info_playbook_runs_and_hides_the_password(pg_server, db, conn, tmp_path):
    with conn.cursor() as cur:
        cur.execute("CREATE SCHEMA dwh_facts; CREATE TABLE dwh_facts.f (k int) PARTITION BY RANGE (k)")
        cur.execute("CREATE TABLE dwh_facts.f_1 PARTITION OF dwh_facts.f FOR VALUES FROM (20240101) TO (20250101)")
    # the demo inventory reads the server's connection file (as ./dev demo writes it) from DWH_DEMO_DIR
    (tmp_path / "pg").mkdir()
    (tmp_path / "pg" / "server.json").write_text(json.dumps(pg_server.info()))
    env = {"DWH_DEMO_DIR": str(tmp_path)}
    inventory = os.path.join(ROOT, "inventories", "demo", "hosts.yml")
    result = run_playbook(
        os.path.join(ROOT, "playbooks", "info.yml"),
        inventory=inventory,
        env=env,
        extra_vars={"dwh_login_db": db, "dwh_info_schemas": ["dwh_facts"]},
        extra_args=["-vvv"],
    )
    assert result.returncode == 0, result.stdout
    assert "dwh_facts.f [partitioned]" in result.stdout and "1 partitions" in result.stdout
    assert pg_server.password not in result.stdout
