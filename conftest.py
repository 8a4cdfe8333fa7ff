"""Make the repository importable as ``ansible_collections.sigeti.dwh`` and start one throwaway PostgreSQL."""

import hashlib
import os
import sys
import tempfile

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
    # One folder per checkout: two checkouts testing at once must not re-point each other's link.
    checkout = hashlib.sha1(ROOT.encode("utf-8")).hexdigest()[:10]
    base = os.path.join(tempfile.gettempdir(), "sigeti-dwh-collections-%d-%s" % (os.getuid(), checkout))
    parent = os.path.join(base, "ansible_collections", galaxy["namespace"])
    os.makedirs(parent, exist_ok=True)
    link = os.path.join(parent, galaxy["name"])
    if os.path.islink(link) and os.readlink(link) != ROOT:
        os.unlink(link)
    if not os.path.lexists(link):
        os.symlink(ROOT, link)
    return base


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
