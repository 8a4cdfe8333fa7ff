"""Every connection option of the modules reaches every module of every role: each dwh_X set to a recognisable
value, the server unreachable, and the module invocations (printed with their arguments on failure) compared."""

import json
import sys

import yaml

from tests.integration.test_roles_helpers import play, sigeti_tables
from tests.support.pgserver import free_port

ROLES = ["preflight", "partitioning", "compression", "vacuum", "verify", "report"]


def invocations(output):
    """Every ``invocation.module_args`` the default callback prints at -vvv (indented JSON over several lines)."""
    decoder = json.JSONDecoder()
    found = []
    start = output.find('"module_args": {')
    while start >= 0:
        args, _end = decoder.raw_decode(output, start + len('"module_args": '))
        found.append(args)
        start = output.find('"module_args": {', start + 1)
    return found


def test_every_connection_option_reaches_every_module_of_every_role(tmp_path):
    from ansible_collections.sigeti.dwh.plugins.module_utils.session.connection import connection_argument_spec

    values = {
        "login_host": "127.0.0.1",
        "login_port": free_port(),  # nothing listens: every module fails at connect and prints its arguments
        "login_user": "sentinel_user",
        "login_password": "sentinel-password",
        "login_db": "sentinel_db",
        "login_unix_socket": "/sentinel/socket",
        "ssl_mode": "disable",
        "ca_cert": "/sentinel/ca.crt",
        "ssl_cert": "/sentinel/client.crt",
        "ssl_key": "/sentinel/client.key",
        "connect_params": {"keepalives_idle": "37"},
        "session_role": "sentinel_role",
        "lock_timeout": "4321ms",
        "lock_retries": 0,
        "lock_retry_delay": 0.25,
        "statement_timeout": "98765",
    }
    assert set(values) == set(connection_argument_spec())
    inventory = tmp_path / "hosts.yml"
    host = {"ansible_connection": "local", "ansible_python_interpreter": sys.executable}
    host.update({"dwh_%s" % k: v for k, v in values.items()})
    host.update({"dwh_tables": sigeti_tables()[:1], "dwh_report_dir": str(tmp_path / "reports")})
    inventory.write_text(yaml.safe_dump({"all": {"children": {"dwh_servers": {"hosts": {"dwh1": host}}}}}))
    playbook = tmp_path / "roles.yml"
    tasks = [
        {
            "name": "Run %s, whatever fails" % role,
            "ansible.builtin.include_role": {"name": "sigeti.dwh.%s" % role, "apply": {"ignore_errors": True}},
        }
        for role in ROLES
    ]
    playbook.write_text(yaml.safe_dump([{"hosts": "dwh_servers", "gather_facts": False, "tasks": tasks}]))
    result = play(str(playbook), str(inventory), "unused", args=["-vvv"])
    # Only the sigeti.dwh modules take lock_retry_delay (their arguments are printed with defaults filled in).
    calls = [args for args in invocations(result.stdout) if "lock_retry_delay" in args]
    # table_info (preflight), partitioned_table, compression, vacuum, table_info (verify, report)
    assert len(calls) >= len(ROLES), result.stdout[-6000:]
    expected = dict(values, login_password="VALUE_SPECIFIED_IN_NO_LOG_PARAMETER")
    for args in calls:
        assert {k: args.get(k) for k in expected} == expected, args
    assert "sentinel-password" not in result.stdout
