"""Make the repository importable as ``ansible_collections.sigeti.dwh`` and start one throwaway PostgreSQL."""

import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.abspath(__file__))


def _collection_root():
    """Return a folder holding ansible_collections/sigeti/dwh: the real one when we already sit in such a tree
    (ansible-test copies), else a temporary folder with a symlink to this repository."""
    parts = ROOT.split(os.sep)
    if len(parts) > 3 and parts[-3] == "ansible_collections":
        return os.sep.join(parts[:-3])
    import yaml

    with open(os.path.join(ROOT, "galaxy.yml")) as handle:
        galaxy = yaml.safe_load(handle)
    # Inside the checkout (the tree ansible.cfg's collections_path names), one per checkout; the link is
    # relative so a moved checkout still finds itself.
    base = os.path.join(TOOLS_DIR, "collections")
    parent = os.path.join(base, "ansible_collections", galaxy["namespace"])
    os.makedirs(parent, exist_ok=True)
    link = os.path.join(parent, galaxy["name"])
    target = os.path.relpath(ROOT, parent)
    if os.path.islink(link) and os.readlink(link) != target:
        os.unlink(link)
    if not os.path.lexists(link):
        try:
            os.symlink(target, link)
        except FileExistsError:  # another pytest-xdist worker made it at the same moment
            pass
    return base


# Everything Ansible and the tools write (Ansible's home, ansible-lint's installed copy, caches) stays in the
# checkout: a copy of the collection in ~/.ansible/collections would shadow the checkout in every later run.
TOOLS_DIR = os.path.join(ROOT, ".venv")
os.environ["ANSIBLE_HOME"] = os.path.join(TOOLS_DIR, "ansible")
os.environ["XDG_CACHE_HOME"] = os.path.join(TOOLS_DIR, "cache")
# A local connection copies each module into the shell plugin's remote_tmp, ~/.ansible/tmp by default whatever
# ANSIBLE_HOME says (and ansible.cfg cannot name a path relative to itself there).
os.environ["ANSIBLE_REMOTE_TMP"] = os.path.join(TOOLS_DIR, "ansible", "remote-tmp")
COLLECTIONS_PATH = _collection_root()
if COLLECTIONS_PATH not in sys.path:
    sys.path.insert(0, COLLECTIONS_PATH)
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)
os.environ["ANSIBLE_COLLECTIONS_PATH"] = COLLECTIONS_PATH


@pytest.fixture(scope="session")
def collections_path():
    """Folder holding ansible_collections/sigeti/dwh (a symlink to this repository)."""
    return COLLECTIONS_PATH


@pytest.fixture(scope="session")
def pg_server():
    """One real PostgreSQL server for the whole session (random port, temp folder, unprivileged user)."""
    from tests.support.pgserver import PostgresServer

    server = PostgresServer().start()
    server.wait_ready()
    yield server
    server.destroy()


@pytest.fixture(scope="session")
def pg15_repack_bin():
    """The bin folder of a PostgreSQL 15 with pg_repack private to the checkout (tests/support/repack.py: Debian's
    postgresql-15-repack fetched into .venv, nothing installed into the system); skips saying why when it cannot be
    made here."""
    from tests.support.repack import RepackUnavailable, pg15_repack_bin_dir

    try:
        return pg15_repack_bin_dir()
    except RepackUnavailable as error:
        pytest.skip("no PostgreSQL 15 with pg_repack: %s" % error)


@pytest.fixture(scope="session")
def pg15_repack(pg15_repack_bin):
    """A real PostgreSQL 15 server with the pg_repack extension available (CREATE EXTENSION pg_repack works) and the
    matching pg_repack program in ``pg15_repack_bin``."""
    from tests.support.pgserver import PostgresServer

    server = PostgresServer(bin_dir=pg15_repack_bin).start()
    server.wait_ready()
    yield server
    server.destroy()


@pytest.fixture
def db(pg_server, request):
    """A fresh, empty database for one test; yields its name."""
    name = "t_" + "".join(c if c.isalnum() else "_" for c in request.node.name.lower())[:55]
    pg_server.create_database(name)
    yield name


@pytest.fixture
def conn(pg_server, db):
    """An autocommit superuser connection to the test's fresh database."""
    connection = pg_server.connect(db)
    yield connection
    connection.close()


@pytest.fixture
def small_mount(tmp_path):
    """A 1 MiB tmpfs mounted for the test, a full disk for the archive tests (root only: CI and this machine run as
    root; skipped elsewhere)."""
    target = tmp_path / "mnt"
    target.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a small filesystem needs root")
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(target)], capture_output=True, check=False
    )
    if done.returncode != 0:
        pytest.skip("cannot mount a tmpfs here: %s" % done.stderr.decode().strip())
    yield target
    subprocess.run(["umount", str(target)], check=False)
