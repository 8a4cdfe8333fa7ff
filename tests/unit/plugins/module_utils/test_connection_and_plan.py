"""Pure logic of the connection layer and of plan grouping."""

import pytest

from ansible_collections.sigeti.dwh.plugins.module_utils.core.errors import DwhError
from ansible_collections.sigeti.dwh.plugins.module_utils.plan.steps import Step, transactions
from ansible_collections.sigeti.dwh.plugins.module_utils.session import connection


@pytest.mark.parametrize(
    "value, expected",
    [("500", 500), ("500ms", 500), ("5s", 5000), ("1.5s", 1500), ("2min", 120000), ("1h", 3600000), (0, 0)],
)
def test_parse_duration_ms(value, expected):
    assert connection.parse_duration_ms(value, "lock_timeout") == expected


def test_parse_duration_rejects_with_the_option_name():
    with pytest.raises(DwhError) as error:
        connection.parse_duration_ms("soon", "lock_timeout")
    assert "lock_timeout='soon'" in error.value.msg


def test_connection_kwargs_socket_and_application_name():
    params = {
        "login_host": "localhost",
        "login_unix_socket": "/run/pg",
        "login_port": 5433,
        "login_user": "dwh",
        "login_password": "s3cret",
        "login_db": "",
        "ssl_mode": "require",
        "connect_params": {"keepalives": 1},
    }
    kwargs = connection.connection_kwargs(params)
    assert kwargs["host"] == "/run/pg" and kwargs["dbname"] == "postgres" and kwargs["sslmode"] == "require"
    assert kwargs["application_name"] == "sigeti.dwh" and kwargs["keepalives"] == 1
    assert "s3cret" not in connection.describe_target(params)


@pytest.mark.parametrize(
    "error, hint",
    [
        ('FATAL:  password authentication failed for user "x"', "login_password"),
        ('FATAL:  database "nope" does not exist', "login_db"),
        ("could not connect to server: Connection refused", "login_port"),
        ("SSL error: certificate verify failed", "ssl_mode"),
    ],
)
def test_connect_errors_name_what_to_fix(error, hint):
    message = connection.explain_connect_error({"login_user": "x", "login_password": "pw", "login_port": 5432}, error)
    assert hint in message and "pw" not in message.replace("password", "")


def test_transactions_group_consecutive_steps_and_isolate_autocommit():
    steps = [
        Step("a", "r", group="g"),
        Step("b", "r", group="g"),
        Step("c", "r"),
        Step("d", "r", group="g"),
        Step("VACUUM x", "r", transactional=False),
        Step("e", "r", group="h"),
    ]
    units = [[s.sql for s in unit] for unit in transactions(steps)]
    assert units == [["a", "b"], ["c"], ["d"], ["VACUUM x"], ["e"]]
