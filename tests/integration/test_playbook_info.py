"""table_info through ansible-playbook, with the collection found on ANSIBLE_COLLECTIONS_PATH; playbooks/info.yml
reads the tables the inventory declares, so it works on a warehouse without SIGETI's schemas."""

import json
import os

import yaml

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
    # dwh_info_tables: [] leaves out the demo's declared tables (not in this database); the schema is read whole
    result = run_playbook(
        os.path.join(ROOT, "playbooks", "info.yml"),
        inventory=inventory,
        env=env,
        extra_vars={"dwh_login_db": db, "dwh_info_schemas": ["dwh_facts"], "dwh_info_tables": []},
        extra_args=["-vvv"],
    )
    assert result.returncode == 0, result.stdout
    assert "dwh_facts.f [partitioned]" in result.stdout and "1 partitions" in result.stdout
    assert pg_server.password not in result.stdout


def own_inventory(tmp_path, pg_server, db, tables, **variables):
    """An inventory of one's own warehouse: declared tables only, no SIGETI schema anywhere."""
    host = {
        "ansible_connection": "local",
        "dwh_login_host": "127.0.0.1",
        "dwh_login_port": pg_server.port,
        "dwh_login_user": "postgres",
        "dwh_login_password": "{{ lookup('ansible.builtin.env', 'DWH_LOGIN_PASSWORD') }}",
        "dwh_login_db": db,
    }
    group = {"hosts": {"warehouse-1": host}, "vars": dict(dwh_tables=tables, **variables)}
    path = tmp_path / "hosts.yml"
    path.write_text(yaml.safe_dump({"all": {"children": {"dwh_servers": group}}}))
    return str(path)


def test_info_reads_the_declared_tables_of_a_warehouse_without_sigeti_schemas(pg_server, db, conn, tmp_path):
    with conn.cursor() as cur:
        cur.execute("CREATE SCHEMA sales; CREATE TABLE sales.orders (id int PRIMARY KEY, day date NOT NULL)")
        cur.execute("CREATE TABLE sales.customers (id int PRIMARY KEY)")
        cur.execute("CREATE TABLE sales.not_declared (id int)")
    declared = [
        {"name": "sales.orders", "key": "day", "interval": "month"},
        # declared with columns: setup creates it, so info does not ask for it before
        {"name": "sales.returns", "key": "day", "interval": "month", "columns": [{"name": "day", "type": "date"}]},
    ]
    inventory = own_inventory(tmp_path, pg_server, db, declared, dwh_vacuum_extra_tables=["sales.customers"])
    result = run_playbook(
        os.path.join(ROOT, "playbooks", "info.yml"), inventory=inventory, env={"DWH_LOGIN_PASSWORD": pg_server.password}
    )
    assert result.returncode == 0, result.stdout[-5000:]
    assert "sales.orders [plain]" in result.stdout and "sales.customers [plain]" in result.stdout
    assert "sales.not_declared" not in result.stdout and "sales.returns" not in result.stdout
    assert "dwh_dim" not in result.stdout and "dwh_facts" not in result.stdout


def test_info_names_a_declared_table_that_is_missing_and_says_what_to_set_when_nothing_is(pg_server, db, tmp_path):
    inventory = own_inventory(tmp_path, pg_server, db, [{"name": "sales.gone", "key": "day", "interval": "month"}])
    env = {"DWH_LOGIN_PASSWORD": pg_server.password}
    missing = run_playbook(os.path.join(ROOT, "playbooks", "info.yml"), inventory=inventory, env=env)
    assert missing.returncode != 0 and "sales.gone" in missing.stdout, missing.stdout[-3000:]
    empty = run_playbook(
        os.path.join(ROOT, "playbooks", "info.yml"), inventory=own_inventory(tmp_path, pg_server, db, []), env=env
    )
    assert empty.returncode != 0 and "no table to read: declare your tables in dwh_tables" in empty.stdout
