# Copyright: (c) 2026, SIGETI data platform team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations


class ModuleDocFragment:
    """Connection, timeout and lock-retry options shared by every sigeti.dwh module."""

    DOCUMENTATION = r"""
options:
  login_user:
    description: The role to connect as.
    type: str
    default: postgres
    aliases: [login]
  login_password:
    description: The password of O(login_user). Never logged nor returned.
    type: str
    default: ''
  login_host:
    description:
      - Host name or address of the server.
      - Empty or C(localhost) with O(login_unix_socket) set connects through the Unix socket.
    type: str
    default: ''
    aliases: [host]
  login_unix_socket:
    description: Directory of the server's Unix socket.
    type: str
    default: ''
    aliases: [unix_socket]
  login_port:
    description: Server port.
    type: int
    default: 5432
    aliases: [port]
  login_db:
    description: Database to connect to (C(postgres) when empty).
    type: str
    default: ''
    aliases: [db, database]
  ssl_mode:
    description: libpq C(sslmode).
    type: str
    default: prefer
    choices: [allow, disable, prefer, require, verify-ca, verify-full]
  ca_cert:
    description: CA certificate file used to verify the server (libpq C(sslrootcert)).
    type: str
    aliases: [ssl_rootcert]
  ssl_cert:
    description: Client certificate file (libpq C(sslcert)).
    type: path
  ssl_key:
    description: Client private key file (libpq C(sslkey)).
    type: path
  connect_params:
    description: Extra libpq connection parameters, applied last.
    type: dict
    default: {}
  session_role:
    description: Role to C(SET ROLE) to after connecting; work is done with its privileges.
    type: str
  lock_timeout:
    description:
      - Longest wait for any lock, per statement (C(SET lock_timeout)). Milliseconds, or a value with a unit
        (V(500ms), V(5s), V(1min)).
      - Bounds how long a queued strong lock can block the readers behind it.
    type: str
    default: 5s
  lock_retries:
    description: How many times a transaction that hit O(lock_timeout) is retried before the module fails, naming the blocker.
    type: int
    default: 3
  lock_retry_delay:
    description: Seconds to wait before the first retry; each next retry waits twice as long.
    type: float
    default: 2.0
  statement_timeout:
    description: C(statement_timeout) of the session (V(0) means none). Same format as O(lock_timeout).
    type: str
    default: '0'
requirements:
  - psycopg2 (C(pip install psycopg2-binary)) on the host that runs the module
  - PostgreSQL 14 or newer
"""
