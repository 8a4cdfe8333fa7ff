"""Every variable a user may set is documented twice: in docs/roles.md's "Role variables (defaults)" table (the row
of its role, or the "all" row for the variables every role shares) and in its role's meta/argument_specs.yml (what
``ansible-doc -t role sigeti.dwh.<role>`` shows and what the role checks when it starts). The connection options
are generated into the specs (test_roles_specs.py) and listed in docs/roles.md's "Connection and secrets"; the
playbooks' own variables have a row of their own.

Static, no server: a variable added to a role's defaults or specs, or read by a playbook, without its line in
docs/roles.md fails here, naming it."""

import functools
import glob
import os
import re

import yaml

from tests.integration.test_roles_specs import ROLES, connection_spec
from tests.integration.test_roles_specs import spec as read_spec
from tests.support.modules import ROOT

VARIABLE = re.compile(r"\bdwh_[a-z0-9_]+")
# Set by one role or playbook and read by another in the same play (facts, registered results): not the user's.
INTERNAL = re.compile(
    r"^dwh_(probing|preflight_\w+|\w+_results|\w+_run|sizes_before|backup_file|verify_plans|vacuum_probe_policy"
    r"|wave_index|info|info_read_\w+|table)$"
)


@functools.lru_cache(maxsize=None)
def spec(role):
    return read_spec(role)


def roles_doc():
    with open(os.path.join(ROOT, "docs", "roles.md")) as handle:
        return handle.read()


def section(text, title):
    """The text of a ``## title`` section, up to the next heading of the same level."""
    match = re.search(r"^## %s\n(.*?)(?=^## |\Z)" % re.escape(title), text, re.S | re.M)
    assert match, "docs/roles.md has no section '## %s'" % title
    return match.group(1)


def table_rows():
    """{first cell: the dwh_ variables of the row} of the "Role variables (defaults)" table."""
    rows = {}
    for line in section(roles_doc(), "Role variables (defaults)").splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("|") and len(cells) >= 2 and not set(cells[0]) <= set("-"):
            rows[cells[0]] = set(VARIABLE.findall(" ".join(cells[1:])))
    return rows


def defaults(role):
    path = os.path.join(ROOT, "roles", role, "defaults", "main.yml")
    if not os.path.exists(path):
        return {}
    with open(path) as handle:
        return yaml.safe_load(handle) or {}


def playbook_variables():
    """The dwh_ variables the playbooks read that no role declares: the playbooks' own (info.yml's, the target)."""
    declared = set().union(*(spec(role) for role in ROLES))
    found = set()
    for path in glob.glob(os.path.join(ROOT, "playbooks", "*.yml")):
        with open(path) as handle:
            found |= set(VARIABLE.findall(handle.read()))
    return {name for name in found - declared if not INTERNAL.match(name)}


def test_every_default_is_in_its_role_specs():
    missing = {role: sorted(set(defaults(role)) - set(spec(role))) for role in ROLES}
    assert not any(missing.values()), "defaults/main.yml without meta/argument_specs.yml (ansible-doc): %s" % missing


def test_every_role_variable_is_in_the_role_variables_table():
    rows = table_rows()
    shared = rows.get("all (except schedule)", set())
    connection = set(connection_spec())
    connection_text = section(roles_doc(), "Connection and secrets")
    missing = {}
    for role in ROLES:
        assert role in rows, "docs/roles.md's role variables table has no row for role %s" % role
        for name in sorted(set(spec(role)) | set(defaults(role))):
            if name in connection:
                documented = "`%s`" % name in connection_text
            else:
                # its own row, the shared one, or the row of another role that declares it too (preflight reads the
                # other roles' switches)
                owners = [r for r in ROLES if name in spec(r) and r in rows]
                documented = name in shared or any(name in rows[r] for r in owners)
            if not documented:
                missing.setdefault(role, []).append(name)
    assert not missing, "not in docs/roles.md's 'Role variables (defaults)' (row of the role): %s" % missing


def test_every_variable_the_roles_read_is_declared_or_internal():
    """A variable a role's tasks or templates read must be in a role's specs (so the user finds it), unless it is
    one of the facts the roles hand each other."""
    declared = set().union(*(spec(role) for role in ROLES))
    undeclared = {}
    for role in ROLES:
        text, internal = "", set()
        for path in glob.glob(os.path.join(ROOT, "roles", role, "tasks", "*.yml")) + glob.glob(
            os.path.join(ROOT, "roles", role, "templates", "*")
        ):
            with open(path) as handle:
                content = handle.read()
            text += content
            # what the role registers or sets itself
            internal |= set(re.findall(r"register:\s*(dwh_[a-z0-9_]+)", content))
            internal |= set(re.findall(r"^\s+(dwh_[a-z0-9_]+):", content, re.M))
        names = set(VARIABLE.findall(text)) - declared - internal
        names = sorted(n for n in names if not INTERNAL.match(n))
        if names:
            undeclared[role] = names
    assert not undeclared, "read by a role but in no role's meta/argument_specs.yml: %s" % undeclared


def test_the_playbooks_own_variables_are_in_the_table():
    rows = table_rows()
    assert "playbooks" in rows, "docs/roles.md's role variables table has no 'playbooks' row"
    missing = sorted(playbook_variables() - rows["playbooks"])
    assert not missing, "read by playbooks/*.yml, in no role's specs and not in the 'playbooks' row: %s" % missing
