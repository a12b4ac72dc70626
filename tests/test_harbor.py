"""kind: harbor — projects checked through Harbor's API at plan time and created before the first
push, through an nginx front shaped like Harbor (registry at /v2/ with bearer tokens from
/service/token, API at /api/v2.0/, every request into a missing project answered 401 as Harbor's
v2auth middleware does: tests/fixtures/harbor_api.py cites the source) over a real docker-registry."""

import json
import uuid

import pytest
import requests

from regsync.errors import RegistryError
from regsync.kinds.image.dialects.harbor import project_of
from tests.fixtures.harbor_api import HarborAPI
from tests.fixtures.nginx import harbor_front
from tests.fixtures.oci_layout import digest_of, inspect_raw, seed, write_image
from tests.fixtures.policies import audit_records, run_cli, write_policy
from tests.fixtures.registries import free_port, start_registry

ROBOT, SECRET = "robot$regsync+sync", "robot-s3cret"


@pytest.fixture(scope="module")
def harbor(tmp_path_factory):
    root = tmp_path_factory.mktemp("harbor")
    port = free_port()
    backend = start_registry(root / "registry", auth="token", username=ROBOT, password=SECRET,
                             token_realm=f"http://127.0.0.1:{port}/service/token")
    api = HarborAPI(ROBOT, SECRET)
    front = harbor_front(root / "nginx", backend, api.host, port)
    yield {"front": front, "api": api, "backend": backend}
    front.stop()
    api.stop()
    backend.stop()


@pytest.fixture
def api(harbor, monkeypatch):
    """The module's API stand-in with this test's calls only; attribute changes undone after."""
    harbor["api"].calls.clear()
    harbor["api"].denied.clear()
    monkeypatch.setattr(harbor["api"], "can_create", True)
    monkeypatch.setattr(harbor["api"], "password", SECRET)
    return harbor["api"]


@pytest.fixture
def source_image(registry, unique_repo, oci_dir):
    info = write_image(oci_dir, "1.0", layer_size=50_000, seed=hash(unique_repo) & 0xFFFF)
    seed(registry, unique_repo, "1.0", oci_dir)
    return unique_repo, info.index_digest


def harbor_policy(tmp_path, registry, harbor, src_repo, project, create=True, extra=""):
    options = (f', kind: harbor, auth: {{username: "{ROBOT}", password: "{SECRET}"}}'
               f', harbor: {{create_projects: {str(create).lower()}, public: true, storage_limit: 10GiB{extra}}}')
    return write_policy(tmp_path, registry.url, harbor["front"].url, src_repo, f"{project}/pytorch",
                        tags=["1.0"], dst_options=options)


def new_project() -> str:
    return f"ai-{uuid.uuid4().hex[:8]}"


def test_missing_project_is_created_then_the_image_pushed(tmp_path, registry, harbor, api, source_image):
    repo, digest = source_image
    project = new_project()
    policy = harbor_policy(tmp_path, registry, harbor, repo, project)

    result = run_cli("sync", "-p", policy)

    assert result.exit_code == 0, result.output
    assert api.api_calls() == [("HEAD", f"/api/v2.0/projects?project_name={project}"),
                               ("POST", "/api/v2.0/projects")]
    assert all(user == ROBOT for _, _, user in api.calls)
    assert api.projects[project] == {"public": "true", "storage_limit": 10 * 1024**3, "by": "regsync"}
    assert digest_of(inspect_raw(harbor["backend"], f"{project}/pytorch:1.0")) == digest
    assert api.denied == []  # the plan never asked the registry inside the missing project

    api.calls.clear()
    again = run_cli("sync", "-p", policy)
    assert again.exit_code == 0, again.output
    assert "0 pushed, 1 unchanged" in again.output
    assert api.api_calls() == [("HEAD", f"/api/v2.0/projects?project_name={project}")]  # read-only: no POST


def test_plan_into_a_missing_project_is_read_only_and_plans_copies(tmp_path, registry, harbor, api, source_image):
    """Harbor answers 401 to a read inside a missing project; the plan asks the project API instead."""
    repo, digest = source_image
    project = new_project()
    start = len(harbor["front"].requests())

    result = run_cli("plan", "--json", "-p", harbor_policy(tmp_path, registry, harbor, repo, project))

    assert result.exit_code == 0, result.output
    item = json.loads(result.stdout)["items"][0]
    assert (item["action"], item["digest"], item["target"]) == ("copy", digest, f"dst/{project}/pytorch:1.0")
    assert item["bytes"] > 50_000
    assert api.api_calls() == [("HEAD", f"/api/v2.0/projects?project_name={project}")]
    assert project not in api.projects
    assert all(r["method"] in ("GET", "HEAD") for r in harbor["front"].requests()[start:])


def test_the_stand_in_answers_a_read_in_a_missing_project_as_harbor_does(harbor, api):
    """Guards the stand-in itself: valid credentials, a GET into a missing project → Harbor's 401."""
    token = requests.get(f"{harbor['front'].url}/service/token", auth=(ROBOT, SECRET),
                         params={"service": "test-registry", "scope": "repository:nowhere/x:pull"}, timeout=10)
    assert token.status_code == 200
    answer = requests.get(f"{harbor['front'].url}/v2/nowhere/x/tags/list", timeout=10,
                          headers={"Authorization": f"Bearer {token.json()['token']}"})
    assert answer.status_code == 401
    assert answer.json() == {"errors": [{"code": "UNAUTHORIZED", "message": "project nowhere not found"}]}
    assert ("GET", "/v2/nowhere/x/tags/list") in api.denied


def test_existing_project_is_checked_once_and_not_created(tmp_path, registry, harbor, api, source_image, oci_dir):
    repo, _ = source_image
    write_image(oci_dir, "1.1", layer_size=30_000, seed=7)
    seed(registry, repo, "1.1", oci_dir)
    project = new_project()
    api.projects[project] = {"public": "false", "storage_limit": -1, "by": "admin"}
    policy = write_policy(tmp_path, registry.url, harbor["front"].url, repo, f"{project}/pytorch", tags=["1.0", "1.1"],
                          dst_options=f', kind: harbor, auth: {{username: "{ROBOT}", password: "{SECRET}"}}'
                                      ', harbor: {create_projects: true}')

    result = run_cli("sync", "-p", policy)

    assert result.exit_code == 0, result.output
    assert api.api_calls() == [("HEAD", f"/api/v2.0/projects?project_name={project}")]  # two tags, one check
    assert api.projects[project]["by"] == "admin"


def test_project_created_concurrently_409_is_success(tmp_path, registry, harbor, api, source_image):
    repo, digest = source_image
    project = new_project()
    api.race_once.add(project)  # someone else creates it between our HEAD and our POST
    result = run_cli("sync", "-p", harbor_policy(tmp_path, registry, harbor, repo, project))

    assert result.exit_code == 0, result.output
    assert [m for m, _ in api.api_calls()] == ["HEAD", "POST"]
    assert api.projects[project]["by"] == "someone else"
    assert digest_of(inspect_raw(harbor["backend"], f"{project}/pytorch:1.0")) == digest


def test_robot_without_permission_403_is_a_clear_failure(tmp_path, registry, harbor, api, source_image):
    repo, _ = source_image
    project = new_project()
    api.can_create = False
    result = run_cli("sync", "-p", harbor_policy(tmp_path, registry, harbor, repo, project))

    assert result.exit_code == 1, result.output
    assert f"may not create Harbor project '{project}' (403)" in result.output
    assert SECRET not in result.output
    failed = [r for r in audit_records(tmp_path / "audit.jsonl") if r["event"] == "failed"]
    assert len(failed) == 1 and "403" in failed[0]["reason"] and SECRET not in str(failed[0])
    assert project not in api.projects
    assert not harbor["backend"].writes_since(0) or all(project not in uri for _, uri in
                                                        harbor["backend"].writes_since(0))


def test_rejected_credentials_401_name_the_account_not_the_secret(tmp_path, registry, harbor, api, source_image):
    repo, _ = source_image
    api.password = "rotated-elsewhere"  # the registry still takes the robot's secret; the API does not
    result = run_cli("sync", "-p", harbor_policy(tmp_path, registry, harbor, repo, new_project()))

    assert result.exit_code == 1, result.output
    assert f"Harbor rejected the credentials of '{ROBOT}' (401)" in result.output
    assert SECRET not in result.output


def test_without_create_projects_a_missing_project_fails_its_rule_by_name(tmp_path, registry, harbor, api,
                                                                          source_image, oci_dir):
    repo, digest = source_image
    project, existing = new_project(), new_project()
    api.projects[existing] = {"public": "false", "storage_limit": -1, "by": "admin"}
    second_rule = f"  - from: src/{repo}\n    to: dst/{existing}/pytorch\n    tags: {{include: ['1.0']}}\n"
    policy = write_policy(tmp_path, registry.url, harbor["front"].url, repo, f"{project}/pytorch", tags=["1.0"],
                          dst_options=f', kind: harbor, auth: {{username: "{ROBOT}", password: "{SECRET}"}}',
                          rule_extra=second_rule)  # a second rule, into a project that exists, still syncs

    result = run_cli("sync", "-p", policy)

    assert result.exit_code == 1, result.output
    assert f"Harbor project '{project}' does not exist" in result.output
    assert "create_projects: true" in result.output
    assert "check the credentials" not in result.output
    assert "1 pushed" in result.output
    assert digest_of(inspect_raw(harbor["backend"], f"{existing}/pytorch:1.0")) == digest
    assert [m for m, _ in api.api_calls()] == ["HEAD", "HEAD"]  # one check per project, no POST
    assert project not in api.projects
    assert not any(project in uri for _, uri in api.denied)  # never asked the registry inside it
    failed = [r for r in audit_records(tmp_path / "audit.jsonl") if r["event"] == "failed"]
    assert len(failed) == 1 and "create_projects" in failed[0]["reason"]


def test_a_harbor_repository_needs_a_project():
    assert project_of("ai-base/pytorch/cuda") == "ai-base"
    for bad in ("pytorch", "Upper/repo", "-x/repo"):
        with pytest.raises(RegistryError):
            project_of(bad)


def test_cosign_signature_is_pushed_after_its_subject(tmp_path, registry, harbor, api, unique_repo):
    """Harbor links `sha256-<hex>.sig` to its subject as an accessory only if the subject is there first."""
    from tests.fixtures.cosign import attachment_tag, make_key, push_image, sign

    digest, _ = push_image(registry, unique_repo, "1.0")
    sign(registry, unique_repo, digest, make_key())
    project = new_project()
    policy = write_policy(tmp_path, registry.url, harbor["front"].url, unique_repo, f"{project}/signed", tags=["1.0"],
                          dst_options=f', kind: harbor, auth: {{username: "{ROBOT}", password: "{SECRET}"}}'
                                      ', harbor: {create_projects: true}',
                          rule_extra="    copy: {signatures: true}\n")
    start = len(harbor["front"].requests())

    result = run_cli("sync", "-p", policy)

    assert result.exit_code == 0, result.output
    puts = [r["uri"] for r in harbor["front"].requests()[start:] if r["method"] == "PUT" and "/manifests/" in r["uri"]]
    subject = puts.index(f"/v2/{project}/signed/manifests/1.0")
    signature = puts.index(f"/v2/{project}/signed/manifests/{attachment_tag(digest)}")
    assert subject < signature


def test_policy_check_names_the_missing_project(tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text("version: 1\nregistries:\n  src: {url: 'https://a.example'}\n"
                    "  harbor: {url: 'https://harbor.example', kind: harbor}\n"
                    "images:\n  - from: src/pytorch/pytorch\n    to: harbor/pytorch\n    tags: {include: [x]}\n")
    result = run_cli("policy", "check", "-p", path)
    assert result.exit_code == 2
    assert "p.yaml:7" in result.output and "harbor/<project>/<repository>" in result.output
