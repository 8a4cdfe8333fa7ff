# Copyright: (c) 2026, SIGETI data platform team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Connection options, connecting, server facts and the error boundary shared by every module.

Nothing here holds the module: connecting takes its options and raises ``DwhError``; the boundary
(``module_errors``) is given the module's ``fail_json`` and ``exit_json`` and turns what the run raised into one call.
"""

from __future__ import annotations

import contextlib
import re
import traceback
from typing import Any, Callable, Iterator, Mapping, TypedDict

from ansible.module_utils.basic import missing_required_lib

from ansible_collections.sigeti.dwh.plugins.module_utils.core.errors import DwhError

try:
    import psycopg2
    import psycopg2.extras
    from psycopg2 import sql

    HAS_PSYCOPG2 = True
    PSYCOPG2_IMPORT_ERROR = None
except ImportError:
    HAS_PSYCOPG2 = False
    PSYCOPG2_IMPORT_ERROR = traceback.format_exc()

APPLICATION_NAME = "sigeti.dwh"
MIN_SERVER_VERSION = 140000
SSL_MODES = ["allow", "disable", "prefer", "require", "verify-ca", "verify-full"]

# A psycopg2 connection (``psycopg2.extensions.connection``). ``Any`` because psycopg2 is optional at import time:
# the connection layer reports it missing, so no module may need it just to be imported. Other files import these
# names under ``TYPE_CHECKING`` only.
Connection = Any

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|min|h)?\s*$")
_DURATION_FACTORS = {None: 1, "ms": 1, "s": 1000, "min": 60000, "h": 3600000}


def connection_argument_spec() -> dict[str, dict[str, Any]]:
    """Return the options every module shares: login_*, TLS, session role, timeouts and lock retries."""
    return dict(
        login_user=dict(type="str", default="postgres", aliases=["login"]),
        login_password=dict(type="str", default="", no_log=True),
        login_host=dict(type="str", default="", aliases=["host"]),
        login_unix_socket=dict(type="str", default="", aliases=["unix_socket"]),
        login_port=dict(type="int", default=5432, aliases=["port"]),
        login_db=dict(type="str", default="", aliases=["db", "database"]),
        ssl_mode=dict(type="str", default="prefer", choices=SSL_MODES),
        ca_cert=dict(type="str", aliases=["ssl_rootcert"]),
        ssl_cert=dict(type="path"),
        ssl_key=dict(type="path", no_log=False),
        connect_params=dict(type="dict", default={}),
        session_role=dict(type="str"),
        lock_timeout=dict(type="str", default="5s"),
        lock_retries=dict(type="int", default=3),
        lock_retry_delay=dict(type="float", default=2.0),
        statement_timeout=dict(type="str", default="0"),
    )


def parse_duration_ms(value: str | int | float, option: str) -> int:
    """Return a duration in milliseconds from ``500``, ``500ms``, ``5s``, ``2min`` or ``1h``.

    ``option`` names the module option in the error message.
    """
    match = _DURATION.match(str(value))
    if not match:
        raise DwhError(
            "%s=%r is not a duration: write milliseconds (5000) or a value with a unit (500ms, 5s, 2min, 1h)"
            % (option, value)
        )
    return int(float(match.group(1)) * _DURATION_FACTORS[match.group(2)])


def connection_kwargs(params: dict[str, Any]) -> dict[str, Any]:
    """Return psycopg2.connect() keyword arguments built from module parameters (pure, password included)."""
    host = params.get("login_host") or ""
    socket = params.get("login_unix_socket") or ""
    if socket and host in ("", "localhost"):
        host = socket
    kwargs = {
        "user": params.get("login_user") or None,
        "password": params.get("login_password") or None,
        "host": host or None,
        "port": params.get("login_port"),
        "dbname": params.get("login_db") or "postgres",
        "sslmode": params.get("ssl_mode") or "prefer",
        "sslrootcert": params.get("ca_cert"),
        "sslcert": params.get("ssl_cert"),
        "sslkey": params.get("ssl_key"),
        "application_name": APPLICATION_NAME,
        "connect_timeout": 10,
    }
    kwargs.update(params.get("connect_params") or {})
    return {k: v for k, v in kwargs.items() if v is not None}


def describe_target(params: dict[str, Any]) -> str:
    """Return ``user@host:port/dbname``: where we tried to connect, for error messages (never the password)."""
    kwargs = connection_kwargs(params)
    where = kwargs.get("host") or "the default Unix socket"
    return "%s@%s:%s/%s" % (kwargs.get("user", "?"), where, kwargs.get("port"), kwargs.get("dbname"))


def explain_connect_error(params: dict[str, Any], error: Exception) -> str:
    """Return one sentence for a psycopg2 connection error: what failed and what to fix."""
    text = str(error).strip().replace("\n", " ")
    target = describe_target(params)
    lowered = text.lower()
    if (
        "password authentication failed" in lowered
        or "no password supplied" in lowered
        or ("role" in lowered and "does not exist" in lowered)
    ):
        hint = "check login_user and login_password (PostgreSQL rejected the credentials)"
    elif "database" in lowered and "does not exist" in lowered:
        hint = "check login_db: that database does not exist on the server"
    elif "ssl" in lowered or "certificate" in lowered:
        hint = "check ssl_mode, ca_cert, ssl_cert and ssl_key against the server's TLS set-up"
    elif "pg_hba.conf" in lowered:
        hint = "the server's pg_hba.conf refuses this client: ask the DBA to allow it, or connect as another user"
    else:
        hint = "check login_host, login_port and login_unix_socket, and that the server is running and reachable"
    return "Cannot connect to PostgreSQL as %s: %s. What to do: %s." % (target, text, hint)


class SkippedStandby(Exception):
    """The server is a standby and the run was asked to skip standbys: the module exits unchanged."""


def connect(params: Mapping[str, Any], autocommit: bool = False) -> Connection:
    """Connect with the module's options ``params``, set application_name, lock and statement timeouts, role.

    Returns the open connection, in autocommit when ``autocommit`` is true. Raises DwhError with one clear message
    when the driver is missing or the server refuses.
    """
    if not HAS_PSYCOPG2:
        raise DwhError(missing_required_lib("psycopg2 (pip install psycopg2-binary)"), exception=PSYCOPG2_IMPORT_ERROR)
    lock_timeout = parse_duration_ms(params.get("lock_timeout", "5s"), "lock_timeout")
    statement_timeout = parse_duration_ms(params.get("statement_timeout", "0"), "statement_timeout")
    try:
        conn = psycopg2.connect(**connection_kwargs(params))
    except psycopg2.Error as error:
        raise DwhError(explain_connect_error(params, error)) from None
    conn.autocommit = True
    with conn.cursor() as cur:
        # jit off: the catalog reads' estimates (pg_partition_tree() counts 1000 rows a call) cross jit_above_cost
        # once a warehouse has a few dozen tables, and compiling them took seconds for reads of milliseconds
        # (partitioned_table in check mode on 50 tables: 9.0 s with jit, 0.7 s without).
        cur.execute(
            "SELECT set_config('lock_timeout', %s, false), set_config('statement_timeout', %s, false), "
            "set_config('jit', 'off', false)",
            (str(lock_timeout), str(statement_timeout)),
        )
        if params.get("session_role"):
            try:
                cur.execute(sql.SQL("SET ROLE {}").format(sql.Identifier(params["session_role"])))
            except psycopg2.Error as error:
                conn.close()
                raise DwhError(
                    "Cannot SET ROLE %s: %s. What to do: grant that role to %s or fix session_role."
                    % (params["session_role"], str(error).strip(), params.get("login_user"))
                ) from None
    conn.autocommit = autocommit
    return conn


def connect_again(params: Mapping[str, Any], suffix: str) -> Connection:
    """Open one more connection with the same options (same timeouts and role), ``application_name`` suffixed by
    ``suffix`` so it is told apart in pg_stat_activity; raise DwhError when the server refuses. The caller closes it."""
    given = params.get("connect_params") or {}
    name = (given.get("application_name") or APPLICATION_NAME) + suffix
    return connect(dict(params, connect_params=dict(given, application_name=name)))


SERVER_FACTS_QUERY = """
SELECT current_setting('server_version_num')::int AS version_num,
       current_setting('server_version') AS version,
       pg_is_in_recovery() AS in_recovery,
       EXISTS (SELECT 1 FROM pg_settings
               WHERE name = 'default_toast_compression' AND 'lz4' = ANY (enumvals)) AS lz4,
       ARRAY(SELECT extname::text FROM pg_extension ORDER BY 1) AS extensions,
       ARRAY(SELECT name::text FROM pg_available_extensions ORDER BY 1) AS available_extensions,
       (SELECT rolsuper FROM pg_roles WHERE rolname = current_user) AS superuser,
       current_user::text AS current_user,
       current_database()::text AS database,
       (SELECT json_object_agg(name, setting) FROM pg_settings
        WHERE name LIKE 'autovacuum%%'
           OR name IN ('data_directory', 'block_size', 'default_toast_compression',
                       'vacuum_freeze_min_age', 'maintenance_work_mem')) AS settings,
       pg_has_role(current_user, 'pg_stat_scan_tables', 'USAGE') AS can_scan_tables
"""


class ServerFacts(TypedDict):
    """The row ``server_facts`` returns (``SERVER_FACTS_QUERY``); modules keep it as the plain dict it is."""

    version_num: int
    version: str
    in_recovery: bool
    lz4: bool
    extensions: list[str]
    available_extensions: list[str]
    superuser: bool
    current_user: str
    database: str
    settings: dict[str, str]  # autovacuum*, data_directory, block_size, default_toast_compression, ...
    can_scan_tables: bool


def server_facts(conn: Connection) -> ServerFacts:
    """Return version, standby state, lz4 support, extensions, role and vacuum settings, read in one round trip."""
    with conn.cursor(cursor_factory=psycopg2.extras.RealDictCursor) as cur:
        cur.execute(SERVER_FACTS_QUERY)
        facts = dict(cur.fetchone())
    if not conn.autocommit:
        conn.rollback()
    facts["settings"] = facts.get("settings") or {}
    return facts


def require_supported_server(facts: ServerFacts) -> None:
    """Return nothing; raise DwhError when the server is older than PostgreSQL 14."""
    if facts["version_num"] < MIN_SERVER_VERSION:
        raise DwhError(
            "PostgreSQL %s is not supported: sigeti.dwh needs PostgreSQL 14 or newer "
            "(DETACH PARTITION CONCURRENTLY, lz4 compression). Upgrade the server or use an older tool."
            % facts["version"]
        )


def refuse_standby(params: Mapping[str, Any], facts: ServerFacts, skip_on_standby: bool) -> None:
    """Return on a primary; on a standby raise ``SkippedStandby`` when ``skip_on_standby`` is set, else DwhError (no
    DDL runs on a replica)."""
    if not facts["in_recovery"]:
        return
    if skip_on_standby:
        raise SkippedStandby("server is a standby (in recovery): skipped")
    raise DwhError(
        "The server at %s is a standby (pg_is_in_recovery() is true): it is read-only. "
        "Run this against the primary, or set skip_on_standby: true to skip standbys." % describe_target(params)
    )


@contextlib.contextmanager
def brief_lock_timeout(conn: Connection, wait: str) -> Iterator[None]:
    """Set lock_timeout to ``wait`` for the block (committed, so catalog reads' rollbacks keep it), then back."""
    with conn.cursor() as cur:
        cur.execute("SELECT current_setting('lock_timeout'), set_config('lock_timeout', %s, false)", (wait,))
        previous = cur.fetchone()[0]
    conn.commit()
    try:
        yield
    finally:
        conn.rollback()
        with conn.cursor() as cur:
            cur.execute("SELECT set_config('lock_timeout', %s, false)", (previous,))
        conn.commit()


def open_session(
    params: Mapping[str, Any], holder: list[Connection], skip_on_standby: bool | None = None
) -> tuple[Connection, ServerFacts]:
    """Connect, read the server facts once and refuse servers older than PostgreSQL 14.

    With ``skip_on_standby`` given (modules that change something), a standby makes the module fail, or exit
    unchanged when it is true. The connection is appended to ``holder`` so ``module_errors`` closes it.
    Returns ``(conn, facts)``.
    """
    conn = connect(params)
    holder.append(conn)
    facts = server_facts(conn)
    require_supported_server(facts)
    if skip_on_standby is not None:
        refuse_standby(params, facts, skip_on_standby)
    return conn, facts


@contextlib.contextmanager
def module_errors(
    fail: Callable[..., Any], exit_unchanged: Callable[..., Any], conn_holder: list[Connection] | None = None
) -> Iterator[None]:
    """Context manager (yields nothing): the boundary between a run and its module. ``fail`` and ``exit_unchanged``
    are the module's ``fail_json`` and ``exit_json``.

    A DwhError or a psycopg2 error raised inside the block becomes one ``fail(msg=..., **details)``; a skipped
    standby one ``exit_unchanged(changed=False, skipped=True, ...)``. Anything else is a bug of ours: it is
    re-raised after the connection is closed, so Ansible shows its traceback. ``conn_holder`` is an optional list
    whose first element is the connection to roll back and close.
    """
    try:
        yield
    except SkippedStandby as skipped:
        _close(conn_holder)
        exit_unchanged(changed=False, skipped=True, queries=[], msg=str(skipped))
    except DwhError as error:
        _close(conn_holder)
        fail(msg=error.msg, **error.details)
    except Exception as error:  # psycopg2 errors and anything unexpected: one message, with the SQLSTATE
        _close(conn_holder)
        if HAS_PSYCOPG2 and isinstance(error, psycopg2.Error):
            fail(
                msg="PostgreSQL error %s: %s" % (error.pgcode or "", str(error).strip()),
                sqlstate=error.pgcode,
                exception=traceback.format_exc(),
            )
        raise


def _close(conn_holder):
    if not conn_holder:
        return
    conn = conn_holder[0]
    try:
        if not conn.closed:
            conn.rollback()
            conn.close()
    except Exception:  # the connection may already be gone; closing is best effort
        pass
