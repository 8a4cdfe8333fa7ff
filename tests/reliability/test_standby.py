"""Standby: on a real physical replica (pg_basebackup -R), every modifying module refuses with a clear message,
or skips unchanged with skip_on_standby: true; read-only modules work and report in_recovery. Nothing of the
primary's data changes (fingerprint of the standby, which replays the primary, before/after)."""

import pytest

from tests.support import fingerprint as fp
from tests.support.modules import run_module

MODULES = {
    "partitioned_table": {"name": "sb.p", "key": "jour", "interval": "month", "start": "2024-01-01", "premake": 1},
    "compression": {"name": "sb.p", "columns": {"note": "lz4"}, "recompress": "online"},
    "vacuum": {"tables": ["sb.p"], "analyze": "always", "vacuum": "always", "disk_check": "never"},
}
READ_ONLY = {"table_info": {"tables": ["sb.p"]}}


@pytest.fixture(scope="module")
def replica():
    from tests.support.pgserver import PostgresServer
    from tests.support.standby import in_recovery, make_standby, wait_replayed

    primary = PostgresServer(settings={"wal_level": "replica", "max_wal_senders": "4"}).start()
    standby = None
    try:
        primary.wait_ready()
        primary.create_database("sbdb")
        conn = primary.connect("sbdb")
        with conn.cursor() as cur:
            cur.execute(
                "CREATE SCHEMA sb; CREATE TABLE sb.p (id int NOT NULL, jour date NOT NULL, note text, "
                "PRIMARY KEY (id, jour)) PARTITION BY RANGE (jour); "
                "CREATE TABLE sb.p_2024_01 PARTITION OF sb.p FOR VALUES FROM ('2024-01-01') TO ('2024-02-01'); "
                "INSERT INTO sb.p SELECT i, date '2024-01-01' + i % 31, repeat(md5(i::text), 100) "
                "FROM generate_series(1, 100) i"
            )
        conn.close()
        standby = make_standby(primary)
        wait_replayed(primary, standby)
        assert in_recovery(standby) and not in_recovery(primary)
        yield primary, standby
    finally:
        if standby is not None:
            standby.destroy()
        primary.destroy()


def _unchanged(standby, call):
    conn = standby.connect("sbdb")
    try:
        before = fp.fingerprint(conn)
        result = call()
        assert fp.diff(before, fp.fingerprint(conn)) == []
    finally:
        conn.close()
    return result


@pytest.mark.parametrize("module", sorted(MODULES))
def test_modifying_module_refuses_on_a_standby(replica, module):
    primary, standby = replica
    args = dict(standby.params("sbdb"), **MODULES[module])
    result = _unchanged(standby, lambda: run_module(module, args))
    assert result.get("failed"), result
    assert "standby" in result["msg"] and "primary" in result["msg"], result["msg"]
    assert "127.0.0.1:%d" % standby.port in result["msg"], result["msg"]


@pytest.mark.parametrize("module", sorted(MODULES))
def test_modifying_module_skips_with_skip_on_standby(replica, module):
    primary, standby = replica
    args = dict(standby.params("sbdb"), skip_on_standby=True, **MODULES[module])
    result = _unchanged(standby, lambda: run_module(module, args))
    assert not result.get("failed"), result
    assert result["changed"] is False and result.get("skipped") is True and result["queries"] == []


def test_every_modifying_module_has_skip_on_standby():
    """A modifying module without skip_on_standby is a finding: the playbooks could not run across replicas."""
    import importlib

    import yaml

    missing = []
    for module in sorted(MODULES):
        doc = yaml.safe_load(
            importlib.import_module("ansible_collections.sigeti.dwh.plugins.modules.%s" % module).DOCUMENTATION
        )
        if "skip_on_standby" not in doc["options"]:
            missing.append(module)
    assert missing == []


@pytest.mark.parametrize("module", sorted(READ_ONLY))
def test_read_only_module_works_on_a_standby(replica, module):
    primary, standby = replica
    result = _unchanged(standby, lambda: run_module(module, dict(standby.params("sbdb"), **READ_ONLY[module])))
    assert not result.get("failed"), result
    assert result["changed"] is False and result["server"]["in_recovery"] is True


def test_the_same_modules_work_on_the_primary(replica):
    primary, standby = replica
    for module in sorted(MODULES):
        result = run_module(module, dict(primary.params("sbdb"), lock_timeout="2s", **MODULES[module]))
        assert not result.get("failed"), (module, result)
