"""verify: an INVALID index on a declared table (here a failed CREATE UNIQUE INDEX CONCURRENTLY on a partition)
fails the role, naming the index and the partition."""

import yaml

from tests.integration.test_roles_helpers import load_sample, play, write_inventory


def test_verify_fails_on_an_invalid_index_and_names_it(pg_server, db, conn, tmp_path):
    load_sample(pg_server, db, scale=500)
    with conn.cursor() as cur:
        try:
            # Duplicates: the concurrent build fails and PostgreSQL leaves the index INVALID.
            cur.execute("CREATE UNIQUE INDEX CONCURRENTLY zz_bad ON dwh_facts.fait_attributions_2023 (statut)")
        except Exception as error:  # psycopg2.errors.UniqueViolation
            assert "could not create unique index" in str(error)
        cur.execute("SELECT indisvalid FROM pg_index WHERE indexrelid = 'dwh_facts.zz_bad'::regclass")
        assert cur.fetchone()[0] is False
    inventory = write_inventory(tmp_path / "hosts.yml", {"dwh1": (pg_server, db)})
    playbook = tmp_path / "verify.yml"
    playbook.write_text(
        yaml.safe_dump([{"hosts": "dwh_servers", "gather_facts": False, "roles": [{"role": "sigeti.dwh.verify"}]}])
    )
    result = play(str(playbook), inventory, pg_server.password)
    assert result.returncode != 0
    assert "dwh_facts.fait_attributions: invalid index(es) zz_bad (on fait_attributions_2023)" in result.stdout, (
        result.stdout[-4000:]
    )
