"""The house's rules, read from the source with ast (issue 29).

- Import direction: core -> session / catalog -> plan -> planners -> runs -> modules. A file's layer comes from its
  package: ``core``; ``session``; ``catalog``; ``plan`` (``steps``, ``retry`` and ``locks``, the deadlock-safe lock
  order shared by the migration and the partition maintenance, are the plan's pure types; the executor and what
  drives a second connection are its I/O); then each capability package (partitioning, migration, compression,
  vacuum, report, backup, archive, tiering), whose ``run.py`` / ``api.py`` (and ``<what>_run.py``,
  a capability's second run) are runs and every other file a planner.
  Planners import only core, the plan's types and other planners; annotations may name the session's
  ``Connection`` / ``ServerFacts`` (under ``TYPE_CHECKING``).
- Database I/O (``execute``, ``cursor``, ``commit``, ``rollback``, ``autocommit``, COPY) only in the session, the
  catalog and the plan's executor.
- No ``_private`` name imported across files.
- Nothing below ``plugins/modules/`` sees ``AnsibleModule`` (nor calls ``fail_json`` / ``exit_json``).
- No function in plugins/ over 80 lines.
"""

import ast
import os
import re

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PLUGINS = os.path.join(ROOT, "plugins")
MODULE_UTILS = os.path.join(PLUGINS, "module_utils")
PREFIX = "ansible_collections.sigeti.dwh.plugins.module_utils"
CAPABILITIES = {
    "partitioning",
    "migration",
    "compression",
    "vacuum",
    "report",
    "backup",
    "archive",
    "tiering",
    "rollup",
}
ALLOWED = {
    "core": {"core"},
    "session": {"core", "session"},
    "catalog": {"core", "session", "catalog", "plan-types"},
    "plan-types": {"core", "plan-types"},
    "plan-io": {"core", "session", "plan-types", "plan-io"},
    "planner": {"core", "plan-types", "planner"},
    "run": {"core", "session", "catalog", "plan-types", "plan-io", "planner", "run"},
}
TYPE_ONLY = {"session/connection.py"}  # Connection and ServerFacts, named in annotations
IO = re.compile(r"\.(execute|executemany|cursor|commit|rollback|copy_expert|copy_to|copy_from)\(|\.autocommit\b")
MAX_FUNCTION_LINES = 80

# What the restructuring (issue 29) has not reached yet: each entry is a rule broken today, to be emptied.
KNOWN = {
    ("import", "backup/disk_space.py", "catalog/backup.py"),
    ("import", "backup/planner.py", "catalog/backup.py"),
    ("import", "catalog/archive.py", "archive/manifest.py"),
    ("import", "catalog/archive.py", "archive/types.py"),
    ("import", "migration/abandon.py", "plan/executor.py"),
    ("import", "migration/facts.py", "catalog/tables.py"),
    ("import", "migration/offline.py", "plan/side.py"),
    ("import", "migration/online.py", "plan/side.py"),
    ("import", "report/table.py", "catalog/tables.py"),
    ("io", "archive/copy.py", "conn.autocommit = False"),
    ("io", "archive/copy.py", "conn.rollback()"),
    ("io", "archive/copy.py", "cur.copy_expert(query.as_string(conn), writer, size=PIPE_CHUNK)"),
    ("io", "archive/copy.py", "cur.copy_expert(statement.as_string(conn), ChunkReader(chunks), size=PIPE_CHUNK)"),
    ("io", "archive/copy.py", 'cur.execute("SELECT nspname::text FROM pg_namespace WHERE oid = pg_my_temp_schema()")'),
    (
        "io",
        "archive/copy.py",
        'cur.execute(sql.SQL("LOCK TABLE ONLY {} IN SHARE MODE").format(relation(schema, name)))',
    ),
    ("io", "archive/copy.py", 'cur.execute(sql.SQL("TRUNCATE {}").format(sql.Identifier(name)))'),
    ("io", "archive/copy.py", "cur.execute(statement)"),
    (
        "io",
        "archive/copy.py",
        "return (conn.isolation_level, conn.readonly, conn.deferrable, conn.autocommit, conn.encoding)",
    ),
    ("io", "archive/copy.py", "with conn.cursor() as cur:"),
    ("io", "archive/run.py", "conn.commit()"),
    ("io", "backup/run.py", "conn.autocommit = True"),
    ("io", "backup/run.py", 'cur.execute(sql.SQL("SET ROLE {}").format(sql.Identifier(params["session_role"])))'),
    ("io", "backup/run.py", "with conn.cursor() as cur:"),
    ("io", "migration/abandon.py", "conn.autocommit = True"),
    ("io", "migration/abandon.py", "conn.autocommit = was"),
    ("io", "migration/abandon.py", "cur.execute("),
    ("io", "migration/abandon.py", "executor.conn.autocommit = False"),
    ("io", "migration/abandon.py", "if executor.conn.autocommit:"),
    ("io", "migration/abandon.py", "was = conn.autocommit"),
    ("io", "migration/abandon.py", "with conn.cursor() as cur:"),
    ("io", "migration/facts.py", "conn.autocommit = True"),
    ("io", "migration/facts.py", "conn.autocommit = was"),
    ("io", "migration/facts.py", "cur.execute("),
    ("io", "migration/facts.py", "was = conn.autocommit"),
    ("io", "migration/facts.py", "with conn.cursor() as cur:"),
    ("io", "migration/run.py", "conn.autocommit = True"),
    ("io", "migration/run.py", "conn.autocommit = was"),
    ("io", "migration/run.py", "conn.rollback()"),
    ("io", "migration/run.py", "cur.execute("),
    ("io", "migration/run.py", "cur.execute(OLD_SNAPSHOTS_QUERY)"),
    ("io", "migration/run.py", "return self.execute(steps)"),
    ("io", "migration/run.py", "run.conn.rollback()"),
    (
        "io",
        "migration/run.py",
        'run.execute([Step(state_update(run.plan.names, phase="catchup", step_done=0), "progress")])',
    ),
    ("io", "migration/run.py", "run.execute([copy_start_step(plan.ctx)])"),
    ("io", "migration/run.py", 'run.execute([source, shadow], isolation="REPEATABLE READ")'),
    ("io", "migration/run.py", "run.execute(steps)"),
    ("io", "migration/run.py", "self.execute(steps + list(extra), isolation=isolation)"),
    ("io", "migration/run.py", "self.execute(steps)"),
    ("io", "migration/run.py", "was = conn.autocommit"),
    ("io", "migration/run.py", "with conn.cursor() as cur:"),
}


def _files():
    for folder, _dirs, names in os.walk(MODULE_UTILS):
        for name in sorted(names):
            if name.endswith(".py") and name != "__init__.py":
                path = os.path.join(folder, name)
                yield os.path.relpath(path, MODULE_UTILS).replace(os.sep, "/"), path


def layer(relative):
    """The layer of a module_utils file from its package and name."""
    package, name = relative.split("/")[0], relative.rsplit("/", 1)[-1][:-3]
    if package in ("core", "session", "catalog"):
        return package
    if package == "plan":
        return "plan-types" if name in ("steps", "retry", "locks") else "plan-io"
    if package in CAPABILITIES:
        return "run" if name in ("run", "api") or name.endswith("_run") else "planner"
    raise AssertionError("%s is in no package of the house" % relative)


def _type_checking_lines(tree):
    lines = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and getattr(node.test, "id", None) == "TYPE_CHECKING":
            for child in node.body:
                lines.update(range(child.lineno, child.end_lineno + 1))
    return lines


def _imports(tree):
    """``(line, target file, names)`` of each import of a module_utils file."""
    for node in ast.walk(tree):
        if not isinstance(node, ast.ImportFrom) or not (node.module or "").startswith(PREFIX + "."):
            continue
        path = node.module[len(PREFIX) + 1 :].split(".")
        names = [alias.name for alias in node.names]
        if len(path) == 1:  # from package import module, module
            for name in names:
                yield node.lineno, "%s/%s.py" % (path[0], name), []
        else:
            yield node.lineno, "/".join(path) + ".py", names


def violations():
    """Every rule broken, as ``(rule, file, detail)``."""
    found = set()
    for relative, path in _files():
        with open(path) as handle:
            source = handle.read()
        tree = ast.parse(source)
        typing_only = _type_checking_lines(tree)
        kind = layer(relative)
        for line, target, names in _imports(tree):
            if layer(target) not in ALLOWED[kind] and not (line in typing_only and target in TYPE_ONLY):
                found.add(("import", relative, target))
            for name in names:
                if name.startswith("_"):
                    found.add(("private", relative, "%s from %s" % (name, target)))
        if kind not in ("session", "catalog", "plan-io"):
            for text in source.splitlines():
                if IO.search(text) and not text.strip().startswith("#"):
                    found.add(("io", relative, text.strip()))
    return found


def test_every_module_utils_file_is_in_a_package_of_the_house():
    relatives = [relative for relative, _path in _files()]
    assert len(relatives) > 40
    for relative in relatives:
        layer(relative)
    assert not [n for n in os.listdir(MODULE_UTILS) if n.endswith(".py") and n != "__init__.py"]


def test_imports_follow_the_layers_no_private_name_crosses_a_file_and_io_stays_in_its_layers():
    found = violations()
    assert found - KNOWN == set(), "\n".join(sorted(map(str, found - KNOWN)))
    assert KNOWN - found == set(), "fixed, remove from KNOWN:\n" + "\n".join(sorted(map(str, KNOWN - found)))


def test_nothing_below_the_modules_sees_ansible_module():
    for relative, path in _files():
        with open(path) as handle:
            tree = ast.parse(handle.read())
        for node in ast.walk(tree):
            assert not (isinstance(node, ast.Name) and node.id == "AnsibleModule"), relative
            assert not (isinstance(node, ast.alias) and node.name == "AnsibleModule"), relative
            assert not (isinstance(node, ast.Attribute) and node.attr in ("fail_json", "exit_json")), relative


def _functions():
    for folder, _dirs, names in os.walk(PLUGINS):
        for name in names:
            if name.endswith(".py"):
                path = os.path.join(folder, name)
                with open(path) as handle:
                    tree = ast.parse(handle.read())
                for node in ast.walk(tree):
                    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                        yield os.path.relpath(path, PLUGINS), node


LONG_KNOWN: set = set()  # every function fits on a screen


def test_no_function_is_longer_than_a_screen():
    long = {
        "%s:%s" % (relative, node.name)
        for relative, node in _functions()
        if node.end_lineno - node.lineno + 1 > MAX_FUNCTION_LINES
    }
    assert long - LONG_KNOWN == set(), sorted(long - LONG_KNOWN)
    assert LONG_KNOWN - long == set(), "fixed, remove from LONG_KNOWN: %s" % sorted(LONG_KNOWN - long)


@pytest.mark.parametrize(
    "relative, expected",
    [
        ("core/periods.py", "core"),
        ("plan/steps.py", "plan-types"),
        ("plan/locks.py", "plan-types"),
        ("plan/executor.py", "plan-io"),
        ("migration/run.py", "run"),
        ("migration/swap.py", "planner"),
    ],
)
def test_layers_are_read_from_the_path(relative, expected):
    assert layer(relative) == expected
