# Copyright: (c) 2026, SIGETI data platform team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The roles' connection contract, written once: every module connection option ``X`` comes from ``dwh_X``."""

from __future__ import annotations

DOCUMENTATION = r"""
name: connection
short_description: The sigeti.dwh modules' connection options, read from the dwh_* variables
version_added: 0.1.0
description:
  - Returns a dict with one key per connection option of the sigeti.dwh modules (the shared argument spec),
    C(login_host), C(login_port), C(login_user), C(login_password), C(login_db), C(login_unix_socket), C(ssl_mode),
    C(ca_cert), C(ssl_cert), C(ssl_key), C(connect_params), C(session_role), C(lock_timeout), C(lock_retries),
    C(lock_retry_delay), C(statement_timeout).
  - The value of option C(X) is the variable C(dwh_X) when it is defined and not empty; otherwise the module's own
    default (left out when the module has none), so the result is exactly what the modules receive, and what
    pg_dump must use too (C(login_user) defaults to C(postgres), not to the operating-system user).
  - Every role passes the result as the C(module_defaults) of the C(sigeti.dwh.dwh) action group, so a new
    connection option of the modules reaches every role without editing them.
options: {}
author:
  - SIGETI data platform team (@sigeti)
"""

EXAMPLES = r"""
- name: Every sigeti.dwh module of this block connects as the dwh_* variables say
  module_defaults:
    group/sigeti.dwh.dwh: "{{ lookup('sigeti.dwh.connection') }}"
  block:
    - sigeti.dwh.table_info:
        tables: [dwh_facts.fait_attributions]
"""

RETURN = r"""
_raw:
  description: One dict of module options.
  type: list
  elements: dict
"""

from ansible.plugins.lookup import LookupBase

from ansible_collections.sigeti.dwh.plugins.module_utils.session.connection import connection_argument_spec

PREFIX = "dwh_"


def connection_options():
    """Names of the modules' connection options, in the argument spec's order."""
    return list(connection_argument_spec())


def from_variables(values):
    """Map ``{dwh_X: value}`` (already templated) to ``{X: value}`` (pure).

    Undefined, None, '' and {} take the module's default; options without a default are then left out.
    """
    result = {}
    for option, spec in connection_argument_spec().items():
        value = values.get(PREFIX + option)
        if value is None or (isinstance(value, str) and value == "") or value == {}:
            value = spec.get("default")
        if value is not None:
            result[option] = value
    return result


class LookupModule(LookupBase):
    def run(self, terms, variables=None, **kwargs):
        variables = variables or {}
        values = {}
        for option in connection_options():
            name = PREFIX + option
            if name in variables:
                values[name] = self._templar.template(variables[name])
        return [from_variables(values)]
