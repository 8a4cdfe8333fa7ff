# Copyright: (c) 2026, SIGETI data platform team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""pg_repack: whether it can run here, and its command line and environment (password never on the line)."""

from __future__ import annotations

import math
import re
from typing import Any, NamedTuple, Sequence, TypedDict

from ansible_collections.sigeti.dwh.plugins.module_utils.core.identifiers import display_name


class RepackProbe(TypedDict, total=False):
    """Whether pg_repack can rewrite in this run (``vacuum_run.probe_repack``); returned as the ``repack`` result."""

    available: bool
    reason: str  # why (not)
    path: str | None  # the pg_repack program found
    version: str | None  # its version


class RepackAvailability(NamedTuple):
    """``repack_availability``'s answer; a tuple, so ``ok, reason = repack_availability(...)`` reads as before."""

    ok: bool
    reason: str


def repack_availability(
    extension: dict[str, Any] | None, binary: str | None, binary_version: str | None, superuser: bool, version_num: int
) -> RepackAvailability:
    """Say whether pg_repack can rewrite in this database, and if not, why and how to fix it (pure).

    ``extension`` is ``{"version", "schema"}`` or None. Returns ``(ok, reason)``.
    """
    major = int(version_num) // 10000
    install = (
        "install it on the database host (Debian/Ubuntu: apt-get install postgresql-%d-repack; "
        "RHEL: dnf install pg_repack_%d) and run CREATE EXTENSION pg_repack in the database" % (major, major)
    )
    if not extension:
        return RepackAvailability(False, "the pg_repack extension is not installed in this database: " + install)
    if not binary:
        return RepackAvailability(
            False,
            "no pg_repack program found on this host (pg_repack_path, PATH, /usr/lib/postgresql/%d/bin): " % major
            + install,
        )
    if binary_version != extension["version"]:
        return RepackAvailability(
            False,
            "pg_repack program %s does not match the extension version %s in the database: install "
            "the matching package or ALTER EXTENSION pg_repack UPDATE" % (binary_version, extension["version"]),
        )
    if not superuser:
        return RepackAvailability(False, "pg_repack needs a superuser connection (it creates triggers and swaps files)")
    return RepackAvailability(True, "pg_repack %s available" % binary_version)


def repack_argv(binary: str, conn_kwargs: dict[str, Any], schema: str, name: str, lock_timeout_ms: int) -> list[str]:
    """Return the pg_repack command line (argv) that rewrites one table online; it never holds the password.

    ``--no-kill-backend``: on lock contention pg_repack gives up instead of cancelling other sessions, and
    the module retries, then fails naming the blocker, like every other step.
    """
    argv = [
        binary,
        "--no-order",
        "--no-kill-backend",
        "--no-analyze",
        "--wait-timeout=%d" % max(1, int(math.ceil(lock_timeout_ms / 1000.0))),
        "--table=%s" % display_name(schema, name),
        "--dbname=%s" % conn_kwargs.get("dbname", "postgres"),
    ]
    for key, flag in (("host", "--host"), ("port", "--port"), ("user", "--username")):
        if conn_kwargs.get(key):
            argv.append("%s=%s" % (flag, conn_kwargs[key]))
    argv.append("--no-password")
    return argv


def repack_env(conn_kwargs: dict[str, Any]) -> dict[str, str]:
    """Return the libpq variables pg_repack connects with: the password and TLS settings the module uses."""
    env = {"PGPASSWORD": conn_kwargs.get("password") or ""}
    for key, var in (
        ("sslmode", "PGSSLMODE"),
        ("sslrootcert", "PGSSLROOTCERT"),
        ("sslcert", "PGSSLCERT"),
        ("sslkey", "PGSSLKEY"),
    ):
        if conn_kwargs.get(key):
            env[var] = conn_kwargs[key]
    return env


def render_command(argv: Sequence[str]) -> str:
    """Return a command line as shown in the result (it never holds the password: that travels in PGPASSWORD)."""
    return " ".join(a if re.match(r"^[\w@%+=:,./-]+$", a) else "'%s'" % a.replace("'", "'\"'\"'") for a in argv)
