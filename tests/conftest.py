"""Session-wide real servers (one set per xdist worker) and per-test names that never collide."""

import re
import uuid

import pytest

from tests.fixtures.pypi import start_pypiserver
from tests.fixtures.registries import start_registry


def _serve(tmp_path_factory, name, **kwargs):
    server = start_registry(tmp_path_factory.mktemp(name), **kwargs)
    yield server
    server.stop()


@pytest.fixture(scope="session")
def registry(tmp_path_factory):
    """Plain HTTP: the usual source."""
    yield from _serve(tmp_path_factory, "registry-src")


@pytest.fixture(scope="session")
def registry2(tmp_path_factory):
    """Plain HTTP: the usual target."""
    yield from _serve(tmp_path_factory, "registry-dst")


@pytest.fixture(scope="session")
def registry_basic(tmp_path_factory):
    yield from _serve(tmp_path_factory, "registry-basic", auth="basic")


@pytest.fixture(scope="session")
def registry_tls(tmp_path_factory):
    yield from _serve(tmp_path_factory, "registry-tls", auth="basic", tls=True)


@pytest.fixture(scope="session")
def registry_token(tmp_path_factory):
    yield from _serve(tmp_path_factory, "registry-token", auth="token")


@pytest.fixture(scope="session")
def token_server(registry_token):
    return registry_token.token_server


@pytest.fixture
def unique_repo(request):
    short = re.sub(r"[^a-z0-9]+", "-", request.node.name.lower())[:30].strip("-")
    return f"t/{short}-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def oci_dir(tmp_path):
    return tmp_path / "layout"


@pytest.fixture
def pypiserver(tmp_path):
    """A real pypiserver with htpasswd upload auth, fresh for each test (package targets are per test)."""
    server = start_pypiserver(tmp_path / "pypiserver")
    yield server
    server.stop()


@pytest.fixture(autouse=True)
def _own_state_dir(tmp_path_factory, monkeypatch):
    """Each test keeps regsync's state (upload checkpoints, rattler's cache, earlier layer scans,
    imported bundles) in a directory of its own: shared under ~/.local/state, a cache filled by one
    test for a port another reuses was read as fresh. A test that sets REGSYNC_STATE_DIR itself
    (an empty one included) overrides this."""
    monkeypatch.setenv("REGSYNC_STATE_DIR", str(tmp_path_factory.mktemp("state")))
