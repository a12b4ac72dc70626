"""kind: nexus — a docker hosted repository reached by path-based routing
(`/repository/<name>/v2/…`, Locations under that prefix) or by a connector port, Basic realm,
through a real nginx shaped like Nexus in front of a real docker-registry."""

import pytest

from regsync.endpoints import Endpoints
from regsync.kinds.image.clients import target_registry
from tests.fixtures.policies import load_policy
from regsync.kinds.image.dialects.nexus import MONOLITHIC_ANY_SIZE, repository_of
from tests.fixtures.nginx import NEXUS_REALM, nexus_front
from tests.fixtures.oci_layout import digest_of, inspect_raw, seed, write_image
from tests.fixtures.policies import run_cli, write_policy

REPOSITORY = "docker-hosted"


@pytest.fixture(scope="module")
def nexus(tmp_path_factory, registry2):
    front = nexus_front(tmp_path_factory.mktemp("nexus"), registry2, REPOSITORY)
    yield front
    front.stop()


@pytest.fixture
def image(registry, unique_repo, oci_dir):
    info = write_image(oci_dir, "2.9", layer_size=60_000, seed=hash(unique_repo) & 0xFFFF)
    seed(registry, unique_repo, "2.9", oci_dir)
    return unique_repo, info.index_digest


def nexus_options(front, password=None) -> str:
    return (f', kind: nexus, auth: {{username: "{front.username}", password: "{password or front.password}"}}')


def test_push_by_path_based_routing(tmp_path, registry, registry2, nexus, image):
    repo, digest = image
    url = f"{nexus.url}/repository/{REPOSITORY}"
    policy = write_policy(tmp_path, registry.url, url, repo, tags=["2.9"], dst_options=nexus_options(nexus))
    start = len(nexus.requests())

    result = run_cli("sync", "-p", policy)

    assert result.exit_code == 0, result.output
    assert digest_of(inspect_raw(registry2, f"{repo}:2.9")) == digest
    seen = nexus.requests()[start:]
    assert seen and all(r["uri"].startswith(f"/repository/{REPOSITORY}/v2/") for r in seen)
    # every upload continued at the Location Nexus gave, under the repository prefix
    assert any(r["method"] == "PUT" and "/blobs/uploads/" in r["uri"] and r["status"] == 201 for r in seen)
    manifest_puts = [r for r in seen if r["method"] == "PUT" and "/manifests/" in r["uri"]]
    assert len(manifest_puts) == 3  # two platform manifests, then the index under its tag
    assert all(r["content_length"] and not r["chunked"] for r in manifest_puts)
    assert not any(r["method"] == "PATCH" for r in seen)  # one monolithic PUT per blob
    assert [r for r in seen if r["status"] == 401]  # Basic realm learned from the challenge

    again = run_cli("sync", "-p", policy)
    assert again.exit_code == 0 and "1 unchanged" in again.output, again.output


def test_read_from_nexus_by_path_and_push_to_a_connector_port(tmp_path, registry, registry2, nexus, image):
    repo, digest = image
    seed_policy = write_policy(tmp_path, registry.url, f"{nexus.url}/repository/{REPOSITORY}", repo, tags=["2.9"],
                               dst_options=nexus_options(nexus), name="seed.yaml")
    assert run_cli("sync", "-p", seed_policy).exit_code == 0
    connector = f"http://127.0.0.1:{nexus.ports['connector']}"
    policy = write_policy(tmp_path, f"{nexus.url}/repository/{REPOSITORY}", connector, repo, f"{repo}-copy",
                          tags=["glob:2.*"], src_options=nexus_options(nexus), dst_options=nexus_options(nexus))

    result = run_cli("sync", "-p", policy)

    assert result.exit_code == 0, result.output
    assert digest_of(inspect_raw(registry2, f"{repo}-copy:2.9")) == digest


def test_wrong_password_is_an_authentication_failure(tmp_path, registry, nexus, image):
    repo, _ = image
    policy = write_policy(tmp_path, registry.url, f"{nexus.url}/repository/{REPOSITORY}", repo, tags=["2.9"],
                          dst_options=nexus_options(nexus, password="wrong-one"))
    result = run_cli("sync", "-p", policy)
    assert result.exit_code == 1, result.output
    assert "authentication failed" in result.output and "wrong-one" not in result.output
    assert NEXUS_REALM  # the realm the front answers with (see tests/fixtures/nginx.py)


def test_nexus_uploads_monolithic_unless_the_policy_says_otherwise(tmp_path):
    base = "version: 1\nregistries:\n  n: {url: 'https://nexus.example/repository/docker-hosted', kind: nexus%s}\n"
    (tmp_path / "a.yaml").write_text(base % "")
    (tmp_path / "b.yaml").write_text(base % ", upload: {monolithic_max: 1MiB}")
    (tmp_path / "c.yaml").write_text(base.replace("kind: nexus", "kind: registry") % "")
    assert target_registry(Endpoints(load_policy(tmp_path / "a.yaml")), "n").monolithic_max == MONOLITHIC_ANY_SIZE
    assert target_registry(Endpoints(load_policy(tmp_path / "b.yaml")), "n").monolithic_max == 1024**2
    assert target_registry(Endpoints(load_policy(tmp_path / "c.yaml")), "n").monolithic_max == 256 * 1024**2
    assert repository_of("https://nexus.example/repository/docker-hosted") == "docker-hosted"
    assert repository_of("https://nexus.example:8082") is None
