"""TLS: a throwaway server with ssl=on and hostssl only; table_info with ssl_mode verify-full and the test CA
works, fails clearly with another CA, and a non-TLS connection is refused by pg_hba."""

import pytest

from tests.support.modules import run_module
from tests.support.tls import make_ca, openssl, tls_server

pytestmark = pytest.mark.skipif(openssl() is None, reason="the openssl program is not installed")


@pytest.fixture(scope="module")
def tls(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tls")
    server = tls_server(str(folder))
    wrong = make_ca(str(folder / "other-ca"), name="other-ca")
    yield server, wrong
    server.destroy()


def _args(server, **extra):
    args = server.params("postgres")
    args.update(tables=[], schemas=["public"], compression="none")
    args.update(extra)
    return args


def test_verify_full_with_the_test_ca_works(tls):
    server = tls[0]
    result = run_module("table_info", _args(server, ssl_mode="verify-full", ca_cert=server.tls["ca"]))
    assert not result.get("failed"), result
    conn = server.connect()
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
            assert cur.fetchone()[0] is True  # the test's own connection is TLS too (hostssl only)
    finally:
        conn.close()


def test_verify_full_with_another_ca_fails_clearly(tls):
    server, wrong = tls
    result = run_module("table_info", _args(server, ssl_mode="verify-full", ca_cert=wrong["cert"]))
    assert result.get("failed")
    assert "certificate verify failed" in result["msg"] and "ca_cert" in result["msg"], result["msg"]
    assert server.password not in result["msg"]


def test_verify_full_with_a_name_not_in_the_certificate_fails(tls):
    server = tls[0]
    result = run_module(
        "table_info",
        _args(
            server,
            ssl_mode="verify-full",
            ca_cert=server.tls["ca"],
            connect_params={"hostaddr": "127.0.0.1", "host": "db.example.org"},
        ),
    )
    assert result.get("failed")
    assert "db.example.org" in result["msg"] and "ssl_mode" in result["msg"], result["msg"]


def test_without_tls_the_server_refuses(tls):
    server = tls[0]
    result = run_module("table_info", _args(server, ssl_mode="disable"))
    assert result.get("failed")
    assert "pg_hba.conf" in result["msg"] and "no encryption" in result["msg"], result["msg"]
