"""Advice that can be followed: every option a message of plugins/ tells the user to change ("raise
max_new_partitions", "set disk_check: auto", "use migrate: online", "run with migrate: abandon", "give columns", or a
value shown as "retention.max_per_run=%d") can be set through the roles that run that module: a dwh_tables key the
role's tasks or templates pass on, or a role variable, in the role's meta/argument_specs.yml (with the advised value
among its choices). Static: the messages are read from the source (ast), the options from the modules' DOCUMENTATION.
"""

import ast
import glob
import os
import re

import yaml

from tests.support.modules import ROOT

OPTION = r"([a-z_][a-z0-9_]*(?:\.[a-z_][a-z0-9_]*)*)"
# "raise X", "set X: v", "set X to v", "use X v", "give X", "lower X"; "with X: v"; "X=%d" (a value shown to change)
ADVICE = re.compile(
    r"\b(?:raise|set|use|give|lower|increase)\s+(?:the\s+)?" + OPTION + r"(?:(?::\s*|\s+to\s+|\s+)([a-z_]+))?", re.I
)
WITH = re.compile(r"\bwith\s+" + OPTION + r":\s*([a-z_]+)")
SHOWN = re.compile(r"\b" + OPTION + r"=%")
NOT_DOCS = ("DOCUMENTATION", "EXAMPLES", "RETURN")
# Modules no role runs: one-off operations a playbook task calls itself (a restore from the archives); their advice is
# followed by that task's own options.
ON_DEMAND = {"archive_restore"}


def messages():
    """``(file, line, text)`` of every string literal of plugins/ that is not a docstring nor module documentation."""
    for path in sorted(glob.glob(os.path.join(ROOT, "plugins", "**", "*.py"), recursive=True)):
        tree = _parsed(path)
        skipped = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.Assign) and any(getattr(t, "id", None) in NOT_DOCS for t in node.targets):
                skipped.add(id(node.value))
            body = getattr(node, "body", None)
            if isinstance(body, list) and body and isinstance(body[0], ast.Expr):
                skipped.add(id(body[0].value))  # a docstring
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in skipped:
                yield os.path.relpath(path, ROOT), node.lineno, " ".join(node.value.split())


def advised():
    """``(file, line, option, value or None, text)`` for every piece of advice found in the messages."""
    for path, line, text in messages():
        for match in list(ADVICE.finditer(text)) + list(WITH.finditer(text)):
            yield path, line, match.group(1), match.group(2), text
        for match in SHOWN.finditer(text):
            yield path, line, match.group(1), None, text


def _parsed(path):
    with open(path) as handle:
        return ast.parse(handle.read())


def _paths(options, prefix=""):
    found = {}
    for name, given in (options or {}).items():
        spec = given or {}
        found[prefix + name] = spec
        found.update(_paths(spec.get("suboptions") or spec.get("options"), prefix + name + "."))
    return found


def module_options():
    """``{module: {option path: spec}}`` from each module's DOCUMENTATION (and the connection fragment), entries of a
    list option (``tables``, ``policies``) also reachable without that prefix."""
    fragment = os.path.join(ROOT, "plugins", "doc_fragments", "connection.py")
    connection = yaml.safe_load(_assigned(fragment, "DOCUMENTATION"))["options"]
    modules = {}
    for path in glob.glob(os.path.join(ROOT, "plugins", "modules", "*.py")):
        doc = yaml.safe_load(_assigned(path, "DOCUMENTATION"))
        paths = _paths(doc.get("options"))
        for name in list(paths):
            head, _sep, rest = name.partition(".")
            if rest and head in ("tables", "policies"):
                paths.setdefault(rest, paths[name])
        if "sigeti.dwh.connection" in (doc.get("extends_documentation_fragment") or []):
            paths.update({name: dict(spec, connection=True) for name, spec in connection.items()})
        modules[os.path.basename(path)[:-3]] = paths
    return modules


def _assigned(path, name):
    for node in ast.walk(_parsed(path)):
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == name for t in node.targets):
            return node.value.value
    raise AssertionError("%s has no %s" % (path, name))


def roles():
    """``{role: (argument spec options, text of its tasks and templates)}``."""
    found = {}
    for folder in sorted(glob.glob(os.path.join(ROOT, "roles", "*"))):
        with open(os.path.join(folder, "meta", "argument_specs.yml")) as handle:
            spec = yaml.safe_load(handle)["argument_specs"]["main"]["options"]
        text = ""
        for path in glob.glob(os.path.join(folder, "tasks", "*.yml")) + glob.glob(
            os.path.join(folder, "templates", "*")
        ):
            with open(path) as handle:
                text += handle.read() + "\n"
        found[os.path.basename(folder)] = (spec, text)
    return found


def _value_allowed(spec, value):
    choices = spec.get("choices")
    return value is None or not choices or value in [str(c) for c in choices]


def ways_to_set(role_spec, role_text, module, option, spec, value):
    """How a role sets ``option`` of ``module`` (a list of words), empty when it cannot."""
    leaf = option.rsplit(".", 1)[-1]
    ways = []
    if spec.get("connection") and "dwh_" + option in role_spec:
        ways.append("dwh_" + option)
    if option == "tables" and "dwh_tables" in role_spec and re.search(r"\btables:", role_text):
        ways.append("dwh_tables")
    # a role variable the role's tasks or templates give the option: `leaf: "{{ dwh_x }}"`, `'leaf': ... dwh_x`
    for line in re.findall(r"['\"]?\b%s['\"]?\s*:\s*(.*)" % re.escape(leaf), role_text):
        for variable in re.findall(r"\b(dwh_[a-z0-9_]+)", line):
            if variable in role_spec and _value_allowed(role_spec[variable], value):
                ways.append(variable)
    # a dwh_tables key whose leaf is the option's, passed on by the role (its name or its section's in the text)
    entries = _paths((role_spec.get("dwh_tables") or {}).get("options"))
    for path, entry in entries.items():
        named = path in (option, leaf) or path.endswith("." + leaf)
        passed = any(re.search(r"\b%s\b" % re.escape(part), role_text) for part in path.split("."))
        if named and passed and _value_allowed(entry, value):
            ways.append("dwh_tables[]." + path)
    return ways


def test_every_advised_option_is_settable_through_the_roles():
    modules, all_roles = module_options(), roles()
    running = {m: [r for r, (_s, text) in all_roles.items() if "sigeti.dwh.%s:" % m in text] for m in modules}
    checked, unsettable = set(), []
    for path, line, option, value, text in advised():
        targets = [
            (module, name, spec)
            for module, options in modules.items()
            if module not in ON_DEMAND
            for name, spec in options.items()
            if name == option or name.endswith("." + option) or option.endswith("." + name)
        ]
        if not targets:
            continue  # not an option of this collection (a server setting, a word)
        found = [
            way
            for module, name, spec in targets
            for role in running[module]
            for way in ways_to_set(*all_roles[role], module, name, spec, value)
        ]
        checked.add((option, value))
        if not found:
            unsettable.append(
                "%s:%d advises %s%s (%s), which no role running %s lets a user set: %r"
                % (
                    path,
                    line,
                    option,
                    ": " + value if value else "",
                    ", ".join(sorted({t[1] for t in targets})),
                    "/".join(sorted({t[0] for t in targets})),
                    text[:160],
                )
            )
    assert not unsettable, "\n".join(unsettable)
    # the walk sees what the issue named (a silent regex would pass everything)
    for expected in [
        ("max_new_partitions", None),
        ("disk_check", "auto"),
        ("migrate", "abandon"),
        ("retention.max_per_run", None),
        ("min_free_space", None),
        ("lock_timeout", None),
    ]:
        assert expected in checked, (expected, sorted(checked))


def test_the_walk_refuses_an_option_no_role_sets():
    """The check itself: an option the partitioning role does not pass, and a value outside a key's choices."""
    spec, text = roles()["partitioning"]
    options = module_options()["partitioned_table"]
    option = options["max_new_partitions"]
    assert ways_to_set(spec, text, "partitioned_table", "max_new_partitions", option, None) == [
        "dwh_partition_max_new_partitions",
        "dwh_tables[].max_new_partitions",
    ]
    unpassed = text.replace("max_new_partitions", "elsewhere")
    assert ways_to_set(spec, unpassed, "partitioned_table", "max_new_partitions", option, None) == []
    assert not ways_to_set(spec, text, "partitioned_table", "migrate", options["migrate"], "sideways")
    assert ways_to_set(spec, text, "partitioned_table", "migrate", options["migrate"], "abandon")
