"""Static rules of the roles and playbooks: argument specs everywhere, shared parts identical, dwh_ prefix,
no SQL in roles, no logic in playbooks; and the pure filters the roles use."""

import glob
import os
import re
import sys

import yaml

from tests.support.modules import ROOT

ROLES = sorted(os.path.basename(p) for p in glob.glob(os.path.join(ROOT, "roles", "*")))
SQL = re.compile(r"\b(SELECT|ALTER\s+TABLE|CREATE\s+TABLE|VACUUM\s+FULL|INSERT\s+INTO|DROP\s+TABLE)\b")


def spec(role):
    with open(os.path.join(ROOT, "roles", role, "meta", "argument_specs.yml")) as handle:
        return yaml.safe_load(handle)["argument_specs"]["main"]["options"]


BEGIN = (
    "      # --- connection: generated from the modules' argument spec (python -m tests.integration.test_roles_specs)\n"
)
END = "      # --- end of the generated connection options\n"


def connection_spec():
    """The roles' connection options, derived from the one source: the modules' connection_argument_spec().

    Option X of every module is the role variable dwh_X, with the module's type, default, choices and description.
    """
    from ansible_collections.sigeti.dwh.plugins.doc_fragments.connection import ModuleDocFragment
    from ansible_collections.sigeti.dwh.plugins.module_utils.session.connection import connection_argument_spec

    docs = yaml.safe_load(ModuleDocFragment.DOCUMENTATION)["options"]
    result = {}
    for option, module_spec in connection_argument_spec().items():
        description = docs[option]["description"]
        if isinstance(description, list):
            description = " ".join(description)
        entry = {"type": module_spec["type"]}
        if module_spec.get("default") is not None:
            entry["default"] = module_spec["default"]
        if module_spec.get("choices"):
            entry["choices"] = list(module_spec["choices"])
        if module_spec.get("no_log"):
            entry["no_log"] = True
        entry["description"] = "Module option %s: %s" % (option, re.sub(r"[A-Z]\(([^)]*)\)", r"\1", description))
        result["dwh_" + option] = entry
    return result


def generated_block():
    text = yaml.safe_dump(connection_spec(), sort_keys=False, width=110, default_flow_style=False)
    return BEGIN + "".join("      " + line + "\n" for line in text.splitlines()) + END


def write_connection_specs():
    """Rewrite the generated block of every role that connects (run after changing the modules' options)."""
    for role in ROLES:
        path = os.path.join(ROOT, "roles", role, "meta", "argument_specs.yml")
        with open(path) as handle:
            text = handle.read()
        if BEGIN not in text:
            continue
        head, rest = text.split(BEGIN, 1)
        tail = rest.split(END, 1)[1]
        with open(path, "w") as handle:
            handle.write(head + generated_block() + tail)


def test_connection_contract_is_written_once_and_reaches_every_module_option():
    """Every role passes the one lookup as module_defaults and documents exactly the modules' options."""
    from ansible_collections.sigeti.dwh.plugins.lookup.connection import connection_options, from_variables
    from ansible_collections.sigeti.dwh.plugins.module_utils.session.connection import connection_argument_spec

    options = list(connection_argument_spec())
    assert {"ca_cert", "ssl_cert", "ssl_key", "connect_params", "lock_retry_delay"} <= set(options)
    assert connection_options() == options
    values = {"dwh_%s" % name: "value-of-%s" % name for name in options}
    assert from_variables(dict(values, unrelated=1)) == {name: "value-of-%s" % name for name in options}
    # Unset: the module's default, so pg_dump (which reads the same dict) connects as the modules do.
    defaults = {k: v["default"] for k, v in connection_argument_spec().items() if v.get("default") is not None}
    assert from_variables({"dwh_login_host": "", "dwh_ca_cert": None, "dwh_connect_params": {}}) == defaults
    assert defaults["login_user"] == "postgres" and "ca_cert" not in defaults
    connecting = [r for r in ROLES if "dwh_tables" in spec(r)]
    assert len(connecting) == 6
    expected = generated_block()
    for role in connecting:
        with open(os.path.join(ROOT, "roles", role, "meta", "argument_specs.yml")) as handle:
            assert expected in handle.read(), "%s: run python -m tests.integration.test_roles_specs" % role
        assert {k: v for k, v in spec(role).items() if k in connection_spec()} == connection_spec(), role
        with open(os.path.join(ROOT, "roles", role, "tasks", "main.yml")) as handle:
            tasks = yaml.safe_load(handle)
        defaults = [task["module_defaults"] for task in tasks if "module_defaults" in task]
        assert defaults == [{"group/sigeti.dwh.dwh": "{{ lookup('sigeti.dwh.connection') }}"}], role
        with open(os.path.join(ROOT, "roles", role, "defaults", "main.yml")) as handle:
            assert not set(yaml.safe_load(handle)) & set(connection_spec()), role


def test_every_role_has_specs_and_prefixed_documented_defaults():
    assert set(ROLES) >= {"preflight", "partitioning", "compression", "vacuum", "verify", "report", "schedule"}
    for role in ROLES:
        options = spec(role)
        with open(os.path.join(ROOT, "roles", role, "defaults", "main.yml")) as handle:
            defaults = yaml.safe_load(handle)
        assert all(name.startswith("dwh_") for name in list(options) + list(defaults)), role
        assert set(defaults) <= set(options), (role, set(defaults) - set(options))
        assert all(option.get("description") for option in options.values()), role


def test_shared_spec_parts_are_identical():
    roles = [r for r in ROLES if "dwh_tables" in spec(r)]
    assert len(roles) == 6
    for name in ["dwh_tables", "dwh_login_host", "dwh_login_password", "dwh_lock_timeout"]:
        assert len({yaml.safe_dump(spec(r)[name]) for r in roles}) == 1, name
    assert all(spec(r)["dwh_login_password"]["no_log"] for r in roles)


def test_roles_hold_no_sql_and_playbooks_only_order_roles():
    for path in glob.glob(os.path.join(ROOT, "roles", "*", "tasks", "*.yml")):
        with open(path) as handle:
            assert not SQL.search(handle.read()), path
    for name in ("setup", "weekly", "monthly", "report", "rollback"):
        with open(os.path.join(ROOT, "playbooks", name + ".yml")) as handle:
            plays = yaml.safe_load(handle)
        for entry in plays:
            assert not {"tasks", "pre_tasks", "post_tasks", "handlers"} & set(entry), name
            assert all(r["role"].startswith("sigeti.dwh.") for r in entry["roles"])


def test_inventories_hold_no_plaintext_password_and_prod_runs_in_waves():
    for path in glob.glob(os.path.join(ROOT, "inventories", "*", "**", "*.yml"), recursive=True):
        with open(path) as handle:
            data = handle.read()
        for line in data.splitlines():
            if "password" in line and ":" in line and not line.strip().startswith("#"):
                value = line.split(":", 1)[1].strip()
                assert value == "" or "{{" in value, (path, line)
    with open(os.path.join(ROOT, "inventories", "prod", "group_vars", "all", "dwh.yml")) as handle:
        prod = yaml.safe_load(handle)
    assert prod["dwh_serial"] == 1 and prod["dwh_max_fail_percentage"] == 0
    tables = {t["name"]: t for t in prod["dwh_tables"]}
    assert tables["dwh_facts.fait_attributions"]["key"] == "date_demandee_key"
    assert tables["dwh_facts.fait_factures"]["key"] == "date_facture_key"
    assert all(t["key_format"] == "yyyymmdd" and t["interval"] == "year" and t["premake"] == 2 for t in tables.values())


def test_filters():
    from ansible_collections.sigeti.dwh.plugins.filter.partition_indexes import missing_partition_indexes
    from ansible_collections.sigeti.dwh.plugins.filter.range_queries import range_queries

    table = {
        "kind": "partitioned",
        "name": "f",
        "partitions": [{"name": "f_2023"}, {"name": "f_2024"}],
        "indexes": [
            {"table": "f", "name": "f_k", "definition": "CREATE INDEX f_k ON ONLY s.f USING btree (k)"},
            {"table": "f", "name": "f_pk", "definition": "CREATE UNIQUE INDEX f_pk ON ONLY s.f USING btree (id, k)"},
            {"table": "f_2023", "name": "a", "definition": "CREATE INDEX a ON s.f_2023 USING btree (k)"},
            {"table": "f_2023", "name": "b", "definition": "CREATE UNIQUE INDEX b ON s.f_2023 USING btree (id, k)"},
            {"table": "f_2024", "name": "c", "definition": "CREATE INDEX c ON s.f_2024 USING btree (id, k)"},
        ],
    }
    assert missing_partition_indexes(table) == [
        {"index": "f_k", "partition": "f_2024"},
        {"index": "f_pk", "partition": "f_2024"},
    ]
    assert missing_partition_indexes({"kind": "plain"}) == []
    assert range_queries(
        [{"name": "s.f", "key": "k", "verify": {"low": 1, "high": 2}}, {"name": "s.g", "key": "k"}]
    ) == [{"name": "s.f", "key": "k", "low": 1, "high": 2}]


def test_wave_and_conninfo_filters():
    import pytest
    from ansible.errors import AnsibleFilterError

    from ansible_collections.sigeti.dwh.plugins.filter.conninfo import conninfo
    from ansible_collections.sigeti.dwh.plugins.filter.wave import wave
    from ansible_collections.sigeti.dwh.plugins.filter.wave_group import wave_group

    for value in (1, "30%", [1, 5, "20%"], 100):
        groups = {"all": ["a", "b"], wave_group(value, "serial"): ["a", "b"], wave_group(0, "max_fail_percentage"): []}
        assert re.match(r"^[A-Za-z0-9_]+$", wave_group(value, "serial"))
        assert wave(groups, "serial") == value
    with pytest.raises(AnsibleFilterError, match="differs between the hosts"):
        wave({wave_group(1, "serial"): ["a"], wave_group(2, "serial"): ["b"]}, "serial")
    # no wave play ran (--skip-tags always, a syntax check): one batch; the changing roles refuse without preflight
    assert wave({"all": ["a"]}, "serial") == "100%" and wave({"all": ["a"]}, "max_fail_percentage") == 100
    text = conninfo(
        {
            "login_host": "db",
            "login_password": "secret",
            "login_db": "w",
            "ssl_mode": "verify-full",
            "ca_cert": "/c/ca.crt",
            "ssl_cert": "/c/u.crt",
            "ssl_key": "/c/u.key",
            "connect_params": {"options": "-c x='1'"},
        },
        "backup",
    )
    assert "secret" not in text and "password" not in text
    for part in (
        "host='db'",
        "dbname='w'",
        "sslmode='verify-full'",
        "sslrootcert='/c/ca.crt'",
        "sslcert='/c/u.crt'",
        "sslkey='/c/u.key'",
        "application_name='backup'",
        "options='-c x=\\'1\\''",
    ):
        assert part in text, (part, text)


def test_explain_parsing():
    from ansible_collections.sigeti.dwh.plugins.module_utils.report import explain

    plan = {
        "Plan": {
            "Node Type": "Aggregate",
            "Plans": [
                {
                    "Node Type": "Append",
                    "Subplans Removed": 2,
                    "Plans": [
                        {"Node Type": "Seq Scan", "Relation Name": "f_2023", "Plan Rows": 10},
                        {"Node Type": "Index Only Scan", "Relation Name": "f_2024", "Actual Loops": 0},
                    ],
                }
            ],
        },
        "Execution Time": 1.5,
    }
    result = explain.summarize(plan, "SELECT 1")
    assert result["scanned"] == ["f_2023"] and result["subplans_removed"] == 2 and result["execution_ms"] == 1.5
    assert result["plan"][0].startswith("Aggregate")


if __name__ == "__main__":
    sys.path.insert(0, os.environ.get("ANSIBLE_COLLECTIONS_PATH", ""))
    write_connection_specs()
