"""Quality gates: ansible-test sanity and units, ansible-lint (production), ruff, docs site, changelog lint.

Each gate is a subcommand; ``./dev test`` runs them all after pytest. They work offline:
- ansible-test needs the collection physically under ``ansible_collections/<ns>/<name>`` (a symlink is refused),
  so the tracked files are copied to ``tests/output/gates/ansible_collections/sigeti/dwh`` first;
- ansible-test downloads a pip bootstrap script from a host not reachable here: a stand-in that runs
  ``python -m ensurepip`` in a subprocess is put in its cache first;
- nothing is written into ~: Ansible's home and the caches live under ``.venv`` (see conftest.py), and
  ansible-test and the antsibull tools, which only know ~, run with HOME=.venv/home.

    python scripts/gates.py sanity|sanity-2.21|units|lint|ruff|docs|changelog
    python scripts/gates.py changelog-release    # maintainer step: fragments -> CHANGELOG.md (not a gate)

``sanity-2.21`` runs ansible-test of ansible-core 2.21 on Python 3.12+ from ``.venv-core221`` (the version
matrix's venv, created on first use from pyenv's or PATH's python3.13/3.12).
"""

import os
import shutil
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
# conftest links this checkout as sigeti.dwh under .venv/collections and keeps ANSIBLE_HOME and the tools' caches
# (XDG_CACHE_HOME) under .venv: no gate writes into ~.
import conftest  # noqa: E402

BIN = os.path.dirname(sys.executable)
# Tools that only know ~ and have no setting to move what they write there run with HOME pointing here:
# ansible-test (~/.ansible/test: its pip bootstrap cache, sanity venvs), antsibull-docs and antsibull-changelog
# (~/antsibull.log).
TOOLS_HOME = os.path.join(conftest.TOOLS_DIR, "home")
GATES_OUT = os.path.join(ROOT, "tests", "output", "gates")
PY = "%d.%d" % sys.version_info[:2]

GET_PIP_STAND_IN = """# Stand-in for the pip bootstrap script ansible-test downloads (no internet here).
import subprocess
import sys

sys.exit(subprocess.call([sys.executable, "-m", "ensurepip", "--upgrade"]))
"""


def tool(name):
    """Path of a console script installed in this venv."""
    return os.path.join(BIN, name)


def run(command, cwd=ROOT, env=None):
    """Run a command, echoing it; return its exit code."""
    print("$ %s" % " ".join(command), flush=True)
    return subprocess.call(command, cwd=cwd, env=dict(os.environ, **(env or {})))


def tracked_files():
    """Files git tracks plus new files not ignored (so a gate sees uncommitted work too)."""
    out = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        check=True,
    ).stdout
    return [f for f in out.decode().split("\0") if f and os.path.isfile(os.path.join(ROOT, f))]


def copy_base(gate):
    """The folder holding ``ansible_collections/sigeti/dwh`` for one gate (gates may run side by side)."""
    return os.path.join(GATES_OUT, gate)


def physical_copy(gate):
    """Copy the collection's files into tests/output/gates/<gate>/ansible_collections/sigeti/dwh (a git repo)."""
    shutil.rmtree(copy_base(gate), ignore_errors=True)
    copy = os.path.join(copy_base(gate), "ansible_collections", "sigeti", "dwh")
    for name in tracked_files():
        target = os.path.join(copy, name)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        shutil.copy2(os.path.join(ROOT, name), target)
    subprocess.run(["git", "init", "-q"], cwd=copy, check=True)
    subprocess.run(["git", "add", "-A"], cwd=copy, check=True)
    return copy


def pip_stand_in():
    """Put the get_pip stand-in where ansible-test 2.19 (24_2) and 2.21 (25_2) look for it."""
    cache = os.path.join(TOOLS_HOME, ".ansible", "test", "cache")
    os.makedirs(cache, exist_ok=True)
    for version in ("24_2", "25_2"):
        path = os.path.join(cache, "get_pip_%s.py" % version)
        if not os.path.exists(path):
            with open(path, "w") as handle:
                handle.write(GET_PIP_STAND_IN)


def ansible_test_env(bin_dir=BIN):
    """ansible-test strips PATH: keep the interpreter's folder (and the real one behind a venv) first; its home
    is a folder of the checkout."""
    real = os.path.dirname(os.path.realpath(os.path.join(bin_dir, "python")))
    os.makedirs(TOOLS_HOME, exist_ok=True)
    return {"PATH": os.pathsep.join([bin_dir, real, os.environ.get("PATH", "")]), "HOME": TOOLS_HOME}


def gate_sanity():
    """ansible-test sanity on this Python (ansible-core 2.19), with no ignore file hiding problems."""
    pip_stand_in()
    copy = physical_copy("sanity")
    return run(
        [tool("ansible-test"), "sanity", "--local", "--python", PY, "--color", "no"], cwd=copy, env=ansible_test_env()
    )


def gate_sanity_221():
    """ansible-test sanity of ansible-core 2.21 on its Python (3.12+), from the version matrix's venv."""
    sys.path.insert(0, os.path.join(ROOT, "scripts"))
    from matrix import core_python

    python = core_python("2.21")
    if python is None:
        print("no Python >= 3.12 found (pyenv, python3.13, python3.12): cannot run ansible-core 2.21")
        return 1
    version = subprocess.run(
        [python, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
        stdout=subprocess.PIPE,
        text=True,
        check=True,
    ).stdout.strip()
    pip_stand_in()
    copy = physical_copy("sanity-2.21")
    bin_dir = os.path.dirname(python)
    return run(
        [os.path.join(bin_dir, "ansible-test"), "sanity", "--local", "--python", version, "--color", "no"],
        cwd=copy,
        env=ansible_test_env(bin_dir),
    )


def gate_units():
    """ansible-test units: the unit tests, the way Galaxy reviewers run them."""
    copy = physical_copy("units")
    return run(
        [tool("ansible-test"), "units", "--local", "--python", PY, "--color", "no"], cwd=copy, env=ansible_test_env()
    )


LINT_PASSED = "Profile 'production' was required, and it passed."


def lint_verdict(code, output):
    """Return None when ansible-lint held the production profile, else why the gate fails.

    ansible-lint exits 0 when only warnings remain, even when they are fatal for the profile asked
    ("Profile 'production' was required, but 'min' profile passed"): the summary line decides.
    """
    if code != 0:
        return "ansible-lint exited with %d" % code
    if "violation(s) that are fatal" in output:
        return "ansible-lint listed fatal violations"
    if LINT_PASSED not in output:
        return "ansible-lint did not report %r" % LINT_PASSED
    return None


def gate_lint():
    """ansible-lint with the production profile (roles, playbooks, molecule scenarios): passes only when the
    production profile passed with no fatal violation."""
    # --offline: the checkout is linked on ANSIBLE_COLLECTIONS_PATH; no copy of it is installed into Ansible's home
    command = [tool("ansible-lint"), "--profile", "production", "--nocolor", "--offline"]
    print("$ %s" % " ".join(command), flush=True)
    result = subprocess.run(
        command,
        cwd=ROOT,
        env=dict(os.environ, ANSIBLE_COLLECTIONS_PATH=conftest.COLLECTIONS_PATH),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        check=False,
    )
    print(result.stdout, end="", flush=True)
    failure = lint_verdict(result.returncode, result.stdout)
    if failure:
        print("lint gate FAILED: %s" % failure)
        return 1
    return 0


def gate_ruff():
    """ruff lint and format check on every Python file."""
    return run([tool("ruff"), "check", "."]) or run([tool("ruff"), "format", "--check", "."])


def gate_docs():
    """lint-collection-docs, then build the HTML docs site offline into tests/output/docsite/build."""
    copy = physical_copy("docs")
    # antsibull-docs runs ansible-doc/ansible-galaxy from PATH: this venv's, on the physical copy
    os.makedirs(TOOLS_HOME, exist_ok=True)
    env = {
        "ANSIBLE_COLLECTIONS_PATH": copy_base("docs"),
        "PATH": BIN + os.pathsep + os.environ.get("PATH", ""),
        "HOME": TOOLS_HOME,
    }
    code = run([tool("antsibull-docs"), "lint-collection-docs", "--plugin-docs", "."], cwd=copy, env=env)
    if code:
        return code
    site = os.path.join(ROOT, "tests", "output", "docsite")
    shutil.rmtree(site, ignore_errors=True)
    os.makedirs(site, mode=0o755)
    code = run([tool("antsibull-docs"), "sphinx-init", "--use-current", "--dest-dir", site, "sigeti.dwh"], env=env)
    if code:
        return code
    conf = os.path.join(site, "conf.py")
    with open(conf, "a") as handle:
        handle.write("\nintersphinx_mapping = {}\n")
    code = run(
        [
            tool("antsibull-docs"),
            "collection",
            "--use-current",
            "--dest-dir",
            os.path.join(site, "rst"),
            "--output-format",
            "ansible-docsite",
            "sigeti.dwh",
        ],
        env=env,
    )
    if code:
        return code
    return run([tool("sphinx-build"), "-M", "html", "rst", "build", "-c", ".", "-q", "--keep-going"], cwd=site, env=env)


def gate_changelog():
    """antsibull-changelog lint: every fragment is valid; name the fragments CHANGELOG.md does not hold yet."""
    os.makedirs(TOOLS_HOME, exist_ok=True)
    code = run([tool("antsibull-changelog"), "lint"], env={"HOME": TOOLS_HOME})
    import yaml

    with open(os.path.join(ROOT, "changelogs", "changelog.yaml")) as handle:
        recorded = {
            f
            for release in (yaml.safe_load(handle) or {}).get("releases", {}).values()
            for f in release.get("fragments", [])
        }
    pending = sorted(set(os.listdir(os.path.join(ROOT, "changelogs", "fragments"))) - recorded)
    if pending:
        print("not yet in CHANGELOG.md (python scripts/gates.py changelog-release adds them): %s" % ", ".join(pending))
    return code


def changelog_release():
    """Record the fragments in changelogs/changelog.yaml and regenerate CHANGELOG.md for galaxy.yml's version.

    antsibull-changelog lists new modules with ansible-doc, so it runs in the physical copy; the two generated
    files are copied back. Running it again for the same version adds the fragments written since.
    """
    import yaml

    with open(os.path.join(ROOT, "galaxy.yml")) as handle:
        version = yaml.safe_load(handle)["version"]
    copy = physical_copy("changelog")
    os.makedirs(TOOLS_HOME, exist_ok=True)
    env = {
        "ANSIBLE_COLLECTIONS_PATH": copy_base("changelog"),
        "PATH": BIN + os.pathsep + os.environ.get("PATH", ""),
        "HOME": TOOLS_HOME,
    }
    code = run([tool("antsibull-changelog"), "release", "--version", version], cwd=copy, env=env)
    if code == 0:
        for name in ("CHANGELOG.md", os.path.join("changelogs", "changelog.yaml")):
            shutil.copy2(os.path.join(copy, name), os.path.join(ROOT, name))
    return code


GATES = {
    "sanity": gate_sanity,
    "sanity-2.21": gate_sanity_221,
    "units": gate_units,
    "lint": gate_lint,
    "ruff": gate_ruff,
    "docs": gate_docs,
    "changelog": gate_changelog,
}


def main(argv):
    if argv == ["changelog-release"]:
        return changelog_release()
    names = argv or list(GATES)
    failed = [name for name in names if GATES[name]() != 0]
    print("gates failed: %s" % (", ".join(failed) or "none"))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
