"""`mirrors:` for a source index: the primary first, a mirror when the primary cannot answer; the
sha256 comes from the page that was trusted, so a mirror's bytes are checked against it, and
policy credentials never reach a mirror host."""

from __future__ import annotations

import hashlib
import json

import pytest

from tests.fixtures.policies import audit_records, run_cli
from tests.fixtures.pypi import SimpleIndex, build_wheel
from tests.fixtures.registries import free_port
from tests.test_pypi import pip_download

ENV = ("3.10", "manylinux_2_28_x86_64")


@pytest.fixture(scope="module")
def wheels(tmp_path_factory):
    folder = tmp_path_factory.mktemp("wheels")
    return {"app": build_wheel(folder, "app", "1.0", requires=("helper",)),
            "helper": build_wheel(folder, "helper", "1.0")}


@pytest.fixture
def primary(wheels):
    index = SimpleIndex.serving(wheels.values())
    yield index
    index.stop()


@pytest.fixture
def mirror(wheels):
    index = SimpleIndex.serving(wheels.values())
    yield index
    index.stop()


def policy(tmp_path, primary_url, mirror, target, auth=""):
    path = tmp_path / "policy.yaml"
    path.write_text(f"""\
version: 1
indexes:
  upstream: {{url: "{primary_url}", mirrors: ["{mirror.url}"], retries: {{attempts: 1, backoff_seconds: 0}}{auth}}}
  internal: {{url: "{target.simple}", upload_url: "{target.url}", kind: pypiserver,
              auth: {{username: {target.username}, password: "${{PYPI_PASSWORD}}"}}}}
packages:
  - from: upstream
    to: internal
    requirements: ["app"]
    dependencies: true
    environments: [{{python: "{ENV[0]}", platform: {ENV[1]}}}]
audit: {{path: audit.jsonl}}
""")
    return path


def regsync(*args):
    return run_cli(*args, env={"PYPI_PASSWORD": "pkg-Pa55", "UPSTREAM_PASSWORD": "upstream-S3cret"})


def on_target(pypiserver):
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in (pypiserver.root / "packages").iterdir()}


@pytest.mark.parametrize("outage", ["503", "down"])
def test_primary_unavailable_the_mirror_serves_and_says_so(tmp_path, primary, mirror, pypiserver, wheels, outage):
    primary.fail_with = 503
    primary_url = primary.url if outage == "503" else f"http://127.0.0.1:{free_port()}/simple/"
    path = policy(tmp_path, primary_url, mirror, pypiserver)

    planned = regsync("plan", "-p", path, "-o", tmp_path / "plan.json")
    assert planned.exit_code == 0, planned.output
    items = json.loads((tmp_path / "plan.json").read_text())["items"]
    assert {i["source_index"] for i in items} == {mirror.url}
    assert all("sha256 from mirror" in i["reason"] for i in items)

    synced = regsync("sync", "-p", path)
    assert synced.exit_code == 0, synced.output
    assert on_target(pypiserver) == {w.name: hashlib.sha256(w.read_bytes()).hexdigest() for w in wheels.values()}
    pushed = [r for r in audit_records(tmp_path / "audit.jsonl") if r["event"] == "pushed"]
    assert len(pushed) == 2
    assert all(r["verification"]["hashes_from"] == r["verification"]["downloaded_from"] == mirror.url for r in pushed)
    got = pip_download(pypiserver.simple, tmp_path / "dl", *ENV, "app")
    assert got.returncode == 0, got.stdout + got.stderr
    assert sorted(p.name for p in (tmp_path / "dl").iterdir()) == sorted(w.name for w in wheels.values())
    if outage == "503":  # failed after its retries, the primary rests: not asked per page and per file
        assert {p for p, _ in primary.requests} == {"/simple/app/"}


def test_a_file_missing_on_the_primary_comes_from_the_mirror_checked_by_the_primary_page(
        tmp_path, primary, mirror, pypiserver, wheels):
    primary.missing.add(wheels["helper"].name)
    result = regsync("sync", "-p", policy(tmp_path, primary.url, mirror, pypiserver))
    assert result.exit_code == 0, result.output
    pushed = {r["artifact"]["source"].split("/", 1)[1]: r["verification"]
              for r in audit_records(tmp_path / "audit.jsonl") if r["event"] == "pushed"}
    assert pushed[wheels["helper"].name]["hashes_from"] == primary.url
    assert pushed[wheels["helper"].name]["downloaded_from"] == mirror.url
    assert pushed[wheels["app"].name]["downloaded_from"] == primary.url
    assert not any(p.startswith("/files/app") for p, _ in mirror.requests)  # the primary had that one


def test_a_mirror_with_other_bytes_under_the_same_name_is_refused(tmp_path, primary, pypiserver, wheels):
    # A consistent impostor: its page lists the sha256 of its own bytes. The primary's page is the
    # one trusted, so the impostor's page does not get to vouch for them.
    impostor = build_wheel(tmp_path / "impostor", "helper", "1.0", payload=4096)
    assert impostor.name == wheels["helper"].name
    tampered = SimpleIndex()
    tampered.add(wheels["app"])
    tampered.add(impostor)
    try:
        primary.missing.add(impostor.name)
        result = regsync("sync", "-p", policy(tmp_path, primary.url, tampered, pypiserver))
    finally:
        tampered.stop()
    assert result.exit_code == 3, result.output
    refused = [r for r in audit_records(tmp_path / "audit.jsonl") if r["event"] == "refused"]
    assert len(refused) == 1 and refused[0]["artifact"]["source"].endswith(impostor.name)
    expected = hashlib.sha256(wheels["helper"].read_bytes()).hexdigest()
    assert f"lists sha256:{hashlib.sha256(impostor.read_bytes()).hexdigest()}" in refused[0]["reason"]
    assert f"says sha256:{expected}" in refused[0]["reason"]
    assert impostor.name not in on_target(pypiserver)


def test_a_mirror_serving_other_bytes_than_its_page_lists_is_refused(tmp_path, primary, pypiserver, wheels):
    impostor = build_wheel(tmp_path / "impostor", "helper", "1.0", payload=4096)
    expected = hashlib.sha256(wheels["helper"].read_bytes()).hexdigest()
    corrupt = SimpleIndex()
    corrupt.add(wheels["app"])
    corrupt.add(impostor, advertised_sha256=expected)  # the page is right, the file is not
    try:
        primary.missing.add(impostor.name)
        result = regsync("sync", "-p", policy(tmp_path, primary.url, corrupt, pypiserver))
    finally:
        corrupt.stop()
    assert result.exit_code == 3, result.output
    refused = [r for r in audit_records(tmp_path / "audit.jsonl") if r["event"] == "refused"]
    assert len(refused) == 1 and "digest mismatch" in refused[0]["reason"] and expected in refused[0]["reason"]
    assert impostor.name not in on_target(pypiserver)


def test_a_project_the_primary_does_not_have_is_not_taken_from_a_mirror(tmp_path, primary, mirror, pypiserver, wheels):
    extra = build_wheel(tmp_path / "extra", "only-on-mirror", "1.0")
    mirror.add(extra)
    path = policy(tmp_path, primary.url, mirror, pypiserver)
    path.write_text(path.read_text().replace('requirements: ["app"]', 'requirements: ["only-on-mirror"]'))
    result = regsync("plan", "-p", path)
    assert result.exit_code == 1, result.output
    assert not any(p.startswith("/simple/only-on-mirror") for p, _ in mirror.requests)


def test_policy_credentials_go_to_the_primary_only(tmp_path, primary, mirror, pypiserver):
    primary.fail_with = 503
    auth = ', auth: {username: sync, password: "${UPSTREAM_PASSWORD}"}'
    result = regsync("sync", "-p", policy(tmp_path, primary.url, mirror, pypiserver, auth))
    assert result.exit_code == 0, result.output
    assert primary.authorization and all(a.startswith("Basic ") for a in primary.authorization)
    assert mirror.requests and not any(mirror.authorization)
    assert "upstream-S3cret" not in (tmp_path / "audit.jsonl").read_text() + result.output


def test_index_credentials_stay_on_the_index_host(primary, mirror):
    from regsync.kinds.image.auth import Credentials
    from regsync.kinds.package.index import PackageIndex

    client = PackageIndex("upstream", primary.url, Credentials("sync", "upstream-S3cret"))
    client.session.get(primary.url + "app/", timeout=10)
    client.session.get(mirror.url + "app/", timeout=10)  # as if a page linked a file on another host
    assert primary.authorization[-1].startswith("Basic ") and mirror.authorization == [""]
