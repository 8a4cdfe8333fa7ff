"""The partitioning role passes max_new_partitions from a dwh_tables entry and from dwh_partition_max_new_partitions:
the advice "raise max_new_partitions" can be followed through the roles (planned in check mode, real server)."""

import datetime

from tests.integration.test_roles_helpers import play, write_inventory

PLAYBOOK = """
- name: The partitioning role, planning
  hosts: dwh_servers
  gather_facts: false
  roles:
    - role: sigeti.dwh.partitioning
  post_tasks:
    - name: Show what each table would get
      ansible.builtin.debug:
        msg: "created {{ dwh_partitioning_results.results | map(attribute='created') | map('length') | list }}"
"""


def test_max_new_partitions_reaches_the_module_from_an_entry_and_from_the_role(pg_server, db, conn, tmp_path):
    today = datetime.date.today()
    with conn.cursor() as cur:
        for name in ("year_back", "months_back"):
            cur.execute("CREATE TABLE public.%s (id bigint, d date NOT NULL) PARTITION BY RANGE (d)" % name)
    tables = [
        {"name": "public.year_back", "key": "d", "key_format": "date", "interval": "day", "premake": 2,
         "start": (today - datetime.timedelta(days=365)).isoformat()},
        {"name": "public.months_back", "key": "d", "key_format": "date", "interval": "day", "premake": 2,
         "start": (today - datetime.timedelta(days=145)).isoformat()},
    ]  # fmt: skip
    playbook = tmp_path / "partitioning.yml"
    playbook.write_text(PLAYBOOK)

    refused = play(str(playbook), write_inventory(tmp_path / "a.yml", {"dwh1": (pg_server, db)}, {"dwh_tables": tables}),
                   pg_server.password, check=True)  # fmt: skip
    assert refused.returncode != 0, refused.stdout[-3000:]
    assert "public.year_back would get 368 new partitions" in refused.stdout, refused.stdout[-3000:]
    assert "raise max_new_partitions" in refused.stdout

    # the entry's own key wins over the role's variable, which covers the other entry (148 > the default 100)
    tables[0]["max_new_partitions"] = 400
    inventory = write_inventory(tmp_path / "b.yml", {"dwh1": (pg_server, db)}, {"dwh_tables": tables})
    planned = play(str(playbook), inventory, pg_server.password, {"dwh_partition_max_new_partitions": 200}, check=True)
    assert planned.returncode == 0, planned.stdout[-3000:]
    assert "created [369, 149]" in planned.stdout, planned.stdout[-3000:]  # days, then the default partition
    with conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM pg_inherits")
        assert cur.fetchone()[0] == 0, "check mode created nothing"
