"""Every public function and method of plugins/module_utils is annotated: each argument and its return (issue 17).

Read with ``ast`` (nothing imported, nothing run): a public name has no leading underscore; methods of public
classes count too, ``self`` / ``cls`` excepted.
"""

import ast
import pathlib

import pytest

MODULE_UTILS = pathlib.Path(__file__).resolve().parents[4] / "plugins" / "module_utils"
FILES = sorted(MODULE_UTILS.glob("**/*.py"))
FUNCTIONS = (ast.FunctionDef, ast.AsyncFunctionDef)


def _public_functions(tree):
    """``(qualified name, node, is_method)`` for every public top-level function and public method of a public class."""
    for node in tree.body:
        if isinstance(node, FUNCTIONS) and not node.name.startswith("_"):
            yield node.name, node, False
        elif isinstance(node, ast.ClassDef) and not node.name.startswith("_"):
            for member in node.body:
                if isinstance(member, FUNCTIONS) and not member.name.startswith("_"):
                    yield "%s.%s" % (node.name, member.name), member, True


def _missing(node, is_method):
    args = node.args
    every = args.posonlyargs + args.args + args.kwonlyargs + [a for a in (args.vararg, args.kwarg) if a]
    if is_method and every and every[0].arg in ("self", "cls") and not _is_static(node):
        every = every[1:]
    missing = [a.arg for a in every if a.annotation is None]
    if node.returns is None:
        missing.append("return")
    return missing


def _is_static(node):
    return any(isinstance(d, ast.Name) and d.id == "staticmethod" for d in node.decorator_list)


def test_module_utils_files_found():
    # a wrong path would make the check below pass on nothing
    assert MODULE_UTILS.is_dir() and len(FILES) > 20


@pytest.mark.parametrize("path", FILES, ids=lambda p: str(p.relative_to(MODULE_UTILS)))
def test_public_functions_annotated(path):
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    lacking = [
        "%s:%d %s (%s)" % (path.name, node.lineno, name, ", ".join(missing))
        for name, node, is_method in _public_functions(tree)
        for missing in [_missing(node, is_method)]
        if missing
    ]
    assert not lacking, "public functions without type hints:\n" + "\n".join(lacking)
