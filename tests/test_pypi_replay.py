"""A saved package plan applied twice (a cron retry, a second operator; issue 21): pypiserver and
devpi answer 409 for a file they already hold, whatever its bytes. The second apply is a no-op:
unchanged, exit 0, nothing fetched from the source, and the audit says so; only a file of that
name with another sha256 is a refusal.

pypiserver runs with its shipped defaults (sha256 links, no overwrite, the pypi.org fallback on);
only `--authenticate update` and a password file are added, as any pypiserver taking uploads has.
devpi runs as tests/fixtures/devpi.py sets it up (a non-volatile index: it refuses replacements).
"""

import hashlib
import json

import pytest

from regsync.kinds.image.auth import Credentials
from regsync.kinds.package.index import PackageIndex
from regsync.kinds.package.sinks import UploadTarget
from regsync.errors import VerificationError
from tests.fixtures.devpi import start_devpi
from tests.fixtures.policies import audit_records, run_cli
from tests.fixtures.pypi import SimpleIndex, build_wheel


@pytest.fixture(scope="module")
def wheels(tmp_path_factory):
    folder = tmp_path_factory.mktemp("replay-wheels")
    return {"app": build_wheel(folder, "replayapp", "1.0", requires=("replaylib>=1",)),
            "lib": build_wheel(folder, "replaylib", "1.0")}


@pytest.fixture
def index(wheels):
    served = SimpleIndex.serving(wheels.values())
    yield served
    served.stop()


@pytest.fixture(scope="module")
def devpi(tmp_path_factory):
    server = start_devpi(tmp_path_factory.mktemp("replay-devpi"))
    yield server
    server.stop()


def write_policy(tmp_path, index, target, kind):
    path = tmp_path / "policy.yaml"
    path.write_text(f"""\
version: 1
indexes:
  mirror: {{url: "{index.url}"}}
  internal: {{url: "{target.simple}", upload_url: "{target.url}", kind: {kind},
             auth: {{username: {target.username}, password: "${{TARGET_PASSWORD}}"}}}}
packages:
  - from: mirror
    to: internal
    requirements: ["replayapp==1.0"]
    dependencies: true
    environments: [{{python: "3.11", platform: manylinux_2_28_x86_64}}]
audit: {{path: audit.jsonl}}
""")
    return path


def last_run(tmp_path) -> list[dict]:
    records = audit_records(tmp_path / "audit.jsonl", frame=True)
    start = max(n for n, r in enumerate(records) if r["event"] == "run-started")
    return records[start + 1:-1]


@pytest.mark.parametrize("server, kind", [("pypiserver", "pypiserver"), ("devpi", "devpi")])
def test_a_saved_plan_applied_twice_is_unchanged_the_second_time(tmp_path, index, request, server, kind):
    target = request.getfixturevalue(server)
    env = {"TARGET_PASSWORD": target.password}
    policy = write_policy(tmp_path, index, target, kind)
    plan = tmp_path / "plan.json"
    assert run_cli("plan", "-p", policy, "-o", plan, env=env).exit_code == 0
    assert {i["action"] for i in json.loads(plan.read_text())["items"]} == {"copy"}

    first = run_cli("sync", "-p", policy, "--plan", plan, env=env)
    assert first.exit_code == 0 and "2 pushed, 0 unchanged" in first.output, first.output
    fetched = dict(index.bytes_sent)

    again = run_cli("sync", "-p", policy, "--plan", plan, env=env)
    assert again.exit_code == 0, again.output
    assert "0 pushed, 2 unchanged, 0 refused" in again.output, again.output
    assert index.bytes_sent == fetched   # not one byte of a file read from the source again
    records = last_run(tmp_path)
    assert sorted(r["event"] for r in records) == ["skipped", "skipped"]
    for record in records:
        assert record["reason"].startswith("unchanged: the target already has it"), record["reason"]


# pypiserver answers 409 to any file it holds; devpi accepts the identical content again (200, nothing
# replaced) and answers 409 only to other bytes under that name
@pytest.mark.parametrize("server, identical_is_409", [("pypiserver", True), ("devpi", False)])
def test_a_409_for_the_identical_file_is_unchanged_and_for_another_file_a_refusal(tmp_path, wheels, request,
                                                                                   server, identical_is_409):
    """The upload itself, as when another run lands the file between plan and upload: 409 with the
    same sha256 listed is not a refusal; 409 with another one is, and the target keeps its file."""
    served = request.getfixturevalue(server)
    reader = PackageIndex("internal", served.simple, Credentials(served.username, served.password),
                          upload_url=served.url)
    target = UploadTarget("internal", reader, served.url)
    wheel = build_wheel(tmp_path / "one", f"conflict-{server}", "1.0")
    impostor = build_wheel(tmp_path / "two", f"conflict-{server}", "1.0", payload=4096)
    assert wheel.name == impostor.name
    digest = "sha256:" + hashlib.sha256(wheel.read_bytes()).hexdigest()

    assert target.put(wheel, wheel.name, digest) is False          # uploaded
    assert target.put(wheel, wheel.name, digest) is identical_is_409   # the same bytes: unchanged
    other = "sha256:" + hashlib.sha256(impostor.read_bytes()).hexdigest()
    with pytest.raises(VerificationError, match="already has a different file of that name"):
        target.put(impostor, impostor.name, other)
    reader.forget(f"conflict-{server}")
    listed = {p.filename: p.digests.get("sha256") for p in reader.files(f"conflict-{server}", same_origin=True)}
    assert listed == {wheel.name: digest.split(":", 1)[1]}
