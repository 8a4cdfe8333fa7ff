# Copyright: (c) 2026, SIGETI data platform team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""A libpq conninfo string (without the password) from the modules' connection options (pure)."""

from __future__ import annotations

from ansible_collections.sigeti.dwh.plugins.module_utils.session.connection import connection_kwargs

DOCUMENTATION = r"""
name: conninfo
short_description: libpq conninfo string from sigeti.dwh connection options, without the password
version_added: 0.1.0
description:
  - Takes the connection options of the sigeti.dwh modules (as returned by the C(sigeti.dwh.connection) lookup)
    and returns the conninfo string the modules would connect with (host, port, user, dbname, sslmode,
    sslrootcert, sslcert, sslkey, connect_params), for pg_dump or psql. The password is never included (give it
    through a pgpass file).
options:
  _input:
    description: Connection options (login_host, ssl_mode, ca_cert, ...).
    type: dict
    required: true
  application_name:
    description: application_name of the session.
    type: str
author:
  - SIGETI data platform team
"""

EXAMPLES = r"""
- ansible.builtin.command:
    argv: [pg_dump, -Fc, -f, out.dump, -d, "{{ lookup('sigeti.dwh.connection') | sigeti.dwh.conninfo }}"]
"""

RETURN = r"""
_value:
  description: The conninfo string, each value single-quoted.
  type: str
"""


def quote(value):
    """Quote one conninfo value: single quotes, backslash and quote escaped (libpq's rules)."""
    return "'%s'" % str(value).replace("\\", "\\\\").replace("'", "\\'")


def conninfo(options, application_name=None):
    """Return ``key='value' ...`` for libpq, from the same mapping the modules use; never the password."""
    kwargs = connection_kwargs(dict(options or {}))
    kwargs.pop("password", None)
    if application_name:
        kwargs["application_name"] = application_name
    return " ".join("%s=%s" % (key, quote(value)) for key, value in kwargs.items())


class FilterModule:
    def filters(self):
        return {"conninfo": conninfo}
