"""A saved plan only narrows what the policy allows: `sync --plan` re-derives each item's rule from
the policy and re-checks it, whatever the plan file says (docs/architecture.md, "Security principles in the code").

Each test edits a real plan the way someone with write access to plan.json could, then applies it
against real docker-registry servers (or a real PEP 503 index and pypiserver for packages).
"""

import json

import pytest

from tests.fixtures.cosign import make_key, manifest_digest, push_image, sign, write_public_key
from tests.fixtures.policies import LINUX_311, audit_records, package_policy, run_cli
from tests.fixtures.pypi import SimpleIndex, build_wheel

REQUIRED = "    verify: {signature: required, trust: [release]}\n"


def write_policy(tmp_path, source, target, rules):
    """`rules`: (from repo, to repo, tags mapping, extra YAML lines of the rule)."""
    body = "".join(f"  - from: src/{src}\n    to: dst/{dst}\n    tags: {json.dumps(tags)}\n{extra}"
                   for src, dst, tags, extra in rules)
    path = tmp_path / "policy.yaml"
    path.write_text(f"""\
version: 1
registries:
  src: {{url: "{source.url}"}}
  dst: {{url: "{target.url}"}}
trust:
  release: {{cosign_key: cosign.pub}}
images:
{body}audit: {{path: audit.jsonl}}
""")
    return path


def saved_plan(tmp_path, policy):
    path = tmp_path / "plan.json"
    assert run_cli("plan", "-p", policy, "-o", path).exit_code == 0
    return path, json.loads(path.read_text())


def edit(path, plan, **changes_by_source_suffix):
    """Rewrite the items whose source ends with a key, as an attacker with the file would."""
    for item in plan["items"]:
        for suffix, changes in changes_by_source_suffix.items():
            if item["source"].endswith(suffix):
                item.update(changes)
    path.write_text(json.dumps(plan))


def audit(tmp_path, event):
    return [r for r in audit_records(tmp_path / "audit.jsonl") if r["event"] == event]


@pytest.fixture
def release_key(tmp_path):
    key = make_key("ecdsa")
    write_public_key(key, tmp_path / "cosign.pub")
    return key


def test_a_refused_unsigned_image_cannot_be_pointed_at_a_rule_without_signature_checks(
        tmp_path, registry, registry2, unique_repo, release_key):
    push_image(registry, unique_repo, "v1", salt="unsigned")
    lax, _ = push_image(registry, unique_repo + "-lax", "v1", salt="lax")
    policy = write_policy(tmp_path, registry, registry2, [
        (unique_repo, unique_repo, {"include": ["v1"]}, REQUIRED),
        (unique_repo + "-lax", unique_repo + "-lax", {"include": ["v1"]}, "")])
    path, plan = saved_plan(tmp_path, policy)
    [guarded] = [i for i in plan["items"] if i["rule"] == "images[0]"]
    assert guarded["action"] == "refuse" and guarded["reason"].startswith("unsigned: ")

    edit(path, plan, **{f"{unique_repo}:v1": {"action": "copy", "reason": "", "rule": "images[1]",
                                              "verification": None}})
    result = run_cli("sync", "-p", policy, "--plan", path)
    assert result.exit_code == 3, result.output
    assert manifest_digest(registry2, unique_repo, "v1") is None
    [refused] = audit(tmp_path, "refused")
    assert refused["reason"].startswith("unsigned: ") and refused["policy_rule"] == "images[0]"
    assert manifest_digest(registry2, unique_repo + "-lax", "v1") == lax  # everything else still synced


def test_a_refusal_edited_to_copy_has_its_gates_run_again(tmp_path, registry, registry2, unique_repo):
    push_image(registry, unique_repo, "big", layer_size=50_000)
    policy = write_policy(tmp_path, registry, registry2, [
        (unique_repo, unique_repo, {"include": ["big"]}, "    gates: {max_size: 10000}\n")])
    path, plan = saved_plan(tmp_path, policy)
    assert plan["items"][0]["action"] == "refuse"

    edit(path, plan, big={"action": "copy", "reason": "", "verification": None})
    result = run_cli("sync", "-p", policy, "--plan", path)
    assert result.exit_code == 3, result.output
    assert manifest_digest(registry2, unique_repo, "big") is None
    [refused] = audit(tmp_path, "refused")
    assert "max_size" in refused["reason"] or "larger" in refused["reason"], refused["reason"]


def test_a_plan_cannot_add_a_destination(tmp_path, registry, registry2, unique_repo):
    push_image(registry, unique_repo, "v1", salt="one")
    two, _ = push_image(registry, unique_repo, "v2", salt="two")
    policy = write_policy(tmp_path, registry, registry2, [(unique_repo, unique_repo, {"include": ["v1", "v2"]}, "")])
    path, plan = saved_plan(tmp_path, policy)

    edit(path, plan, **{":v1": {"target": f"dst/{unique_repo}-elsewhere:v1"}})
    result = run_cli("sync", "-p", policy, "--plan", path)
    assert result.exit_code == 3, result.output
    assert manifest_digest(registry2, unique_repo + "-elsewhere", "v1") is None
    assert manifest_digest(registry2, unique_repo, "v1") is None
    [refused] = audit(tmp_path, "refused")
    assert "not allowed by the policy" in refused["reason"], refused["reason"]
    assert manifest_digest(registry2, unique_repo, "v2") == two


def test_a_plan_cannot_add_a_tag_the_policy_does_not_select(tmp_path, registry, registry2, unique_repo):
    push_image(registry, unique_repo, "v1", salt="one")
    push_image(registry, unique_repo, "v1-rc", salt="rc")
    policy = write_policy(tmp_path, registry, registry2, [
        (unique_repo, unique_repo, {"include": ["glob:v1*"], "exclude": ["glob:*-rc"]}, "")])
    path, plan = saved_plan(tmp_path, policy)
    [item] = plan["items"]
    rc = dict(item, source=item["source"] + "-rc", target=item["target"] + "-rc",
              digest=manifest_digest(registry, unique_repo, "v1-rc"))
    plan["items"].append(rc)
    path.write_text(json.dumps(plan))

    result = run_cli("sync", "-p", policy, "--plan", path)
    assert result.exit_code == 3, result.output
    assert manifest_digest(registry2, unique_repo, "v1-rc") is None
    [refused] = audit(tmp_path, "refused")
    assert "tag selection" in refused["reason"], refused["reason"]


def test_a_digest_edited_past_a_pin_is_refused(tmp_path, registry, registry2, unique_repo):
    pinned, _ = push_image(registry, unique_repo, "2.9", salt="reviewed")
    other, _ = push_image(registry, unique_repo, "evil", salt="other")
    policy = write_policy(tmp_path, registry, registry2, [
        (unique_repo, unique_repo, {"include": ["2.9"], "pin": {"2.9": pinned}}, "")])
    path, plan = saved_plan(tmp_path, policy)

    edit(path, plan, **{":2.9": {"digest": other}})
    result = run_cli("sync", "-p", policy, "--plan", path)
    assert result.exit_code == 3, result.output
    assert manifest_digest(registry2, unique_repo, "2.9") is None
    [refused] = audit(tmp_path, "refused")
    assert refused["reason"] == f"pinned to {pinned} but the plan says {other}"


def test_a_platform_filter_edited_in_the_plan_is_refused(tmp_path, registry, registry2, unique_repo):
    push_image(registry, unique_repo, "multi", platforms=("linux/amd64", "linux/arm64"))
    policy = write_policy(tmp_path, registry, registry2, [
        (unique_repo, unique_repo, {"include": ["multi"]}, "    platforms: [linux/amd64]\n")])
    path, plan = saved_plan(tmp_path, policy)

    edit(path, plan, multi={"platforms": None, "digest": plan["items"][0]["source_digest"], "source_digest": None})
    result = run_cli("sync", "-p", policy, "--plan", path)
    assert result.exit_code == 3, result.output
    assert manifest_digest(registry2, unique_repo, "multi") is None
    [refused] = audit(tmp_path, "refused")
    assert "platforms" in refused["reason"], refused["reason"]


def test_a_plan_field_of_the_wrong_type_is_a_usage_error(tmp_path, registry, registry2, unique_repo):
    push_image(registry, unique_repo, "v1")
    policy = write_policy(tmp_path, registry, registry2, [(unique_repo, unique_repo, {"include": ["v1"]}, "")])
    path, plan = saved_plan(tmp_path, policy)
    edit(path, plan, v1={"platforms": "linux/amd64", "digest": 5})

    result = run_cli("sync", "-p", policy, "--plan", path)
    assert result.exit_code == 2, result.output
    assert "not a regsync plan" in result.output
    assert manifest_digest(registry2, unique_repo, "v1") is None


# Every item carries the keys of version 1 in this order, whatever its kind (README, "Plan"): a
# kind's own keys (images: blobs_missing, target_before, media_type, platforms) sit flat among them.
V1_KEYS = ["kind", "source", "target", "digest", "action", "reason", "bytes", "blobs_missing", "source_digest",
           "target_before", "media_type", "platforms", "rule", "environments", "verification", "source_index",
           "project"]


def test_an_image_field_of_the_wrong_type_is_refused_naming_the_item(tmp_path, registry, registry2, unique_repo):
    """The image kind reads its own part of each item: a list of platforms edited into one string is
    refused before anything is touched, naming the item and the key."""
    push_image(registry, unique_repo, "v1")
    policy = write_policy(tmp_path, registry, registry2, [(unique_repo, unique_repo, {"include": ["v1"]}, "")])
    path, plan = saved_plan(tmp_path, policy)
    assert list(plan["items"][0]) == V1_KEYS
    edit(path, plan, v1={"platforms": "linux/amd64"})

    result = run_cli("sync", "-p", policy, "--plan", path)
    assert result.exit_code == 2, result.output
    assert (f"not a regsync plan: item image src/{unique_repo}:v1 -> dst/{unique_repo}:v1: platforms: input "
            f'should be a valid list, not "linux/amd64"') in " ".join(result.output.split()), result.output
    assert manifest_digest(registry2, unique_repo, "v1") is None


def test_two_rules_for_the_same_repositories_make_an_item_ambiguous(tmp_path, registry, registry2, unique_repo,
                                                                   release_key):
    push_image(registry, unique_repo, "v1", salt="one")
    push_image(registry, unique_repo, "v2", salt="two")
    policy = write_policy(tmp_path, registry, registry2, [
        (unique_repo, unique_repo, {"include": ["v1"]}, REQUIRED),
        (unique_repo, unique_repo, {"include": ["v2"]}, "")])
    path, plan = saved_plan(tmp_path, policy)
    [v2] = [item for item in plan["items"] if item["source"].endswith(":v2")]  # the plan says what sync will do
    assert v2["action"] == "refuse" and "2 rules map" in v2["reason"], v2
    edit(path, plan, **{":v1": {"action": "copy", "reason": "", "rule": "images[1]", "verification": None},
                        ":v2": {"action": "copy", "reason": ""}})

    assert run_cli("sync", "-p", policy, "--plan", path).exit_code == 3
    assert manifest_digest(registry2, unique_repo, "v1") is None
    assert manifest_digest(registry2, unique_repo, "v2") is None
    refused = audit(tmp_path, "refused")
    assert len(refused) == 2
    for record in refused:
        assert record["reason"].startswith("not allowed by the policy: 2 rules map"), record["reason"]


def test_a_saved_plan_is_audited_as_rechecked_with_the_policys_rule(tmp_path, registry, registry2, unique_repo,
                                                                    release_key):
    digest, _ = push_image(registry, unique_repo, "v1")
    sign(registry, unique_repo, digest, release_key)
    policy = write_policy(tmp_path, registry, registry2, [(unique_repo, unique_repo, {"include": ["v1"]}, REQUIRED)])
    path, plan = saved_plan(tmp_path, policy)
    edit(path, plan, v1={"rule": "images[7]"})  # the plan's rule name is not what decides

    result = run_cli("sync", "-p", policy, "--plan", path)
    assert result.exit_code == 0, result.output
    assert manifest_digest(registry2, unique_repo, "v1") == digest
    for record in audit(tmp_path, "verified") + audit(tmp_path, "pushed"):
        assert record["policy_rule"] == "images[0]"
        assert record["verification"]["rechecked"] is True
        assert record["verification"]["signature"]["status"] == "verified"


# --- packages ---------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def package_index(tmp_path_factory):
    folder = tmp_path_factory.mktemp("authority-wheels")
    served = SimpleIndex()
    for name, version, tag in (("app", "1.0", "py3-none-any"), ("app", "2.0", "py3-none-any"),
                               ("tool", "1.0", "py3-none-any"), ("winonly", "1.0", "cp312-cp312-win_amd64")):
        served.add(build_wheel(folder, name, version, tag))
    yield served
    served.stop()



def served(index, filename):
    return next(s for files in index.projects.values() for s in files if s.path.name == filename)


def pypi(*args):
    return run_cli(*args, env={"PYPI_PASSWORD": "pkg-Pa55"})


# With or without dependencies the file must be in the closure the policy resolves to: another
# version, another project's file (tool: on the index, required by nothing) or a file for no
# environment of the rule is refused.
@pytest.mark.parametrize("dependencies, swap_to", [
    (False, "app-2.0-py3-none-any.whl"), (False, "tool-1.0-py3-none-any.whl"),
    (False, "winonly-1.0-cp312-cp312-win_amd64.whl"),
    (True, "app-2.0-py3-none-any.whl"), (True, "tool-1.0-py3-none-any.whl"),
    (True, "winonly-1.0-cp312-cp312-win_amd64.whl")])
def test_a_package_item_edited_to_another_file_is_refused(tmp_path, package_index, pypiserver, dependencies, swap_to):
    # winonly is named, but only for Windows: no file of it is for this policy's Linux environment
    policy = package_policy(tmp_path, package_index, pypiserver, ["app==1.0", 'winonly; sys_platform == "win32"'],
                            dependencies)
    path = tmp_path / "plan.json"
    assert pypi("plan", "-p", policy, "-o", path).exit_code == 0
    plan = json.loads(path.read_text())
    assert [i["source"] for i in plan["items"]] == ["mirror/app-1.0-py3-none-any.whl"]
    swapped = served(package_index, swap_to)
    plan["items"][0].update(source=f"mirror/{swap_to}", target=f"internal/{swap_to}", digest="sha256:" + swapped.sha256)
    path.write_text(json.dumps(plan))

    result = pypi("sync", "-p", policy, "--plan", path)
    assert result.exit_code == 3, result.output
    assert list((pypiserver.root / "packages").iterdir()) == []
    [refused] = audit(tmp_path, "refused")
    assert swap_to in refused["artifact"]["source"]
    assert "not allowed by the policy" in refused["reason"], refused["reason"]
    assert audit(tmp_path, "pushed") == []


def test_a_package_item_sent_to_another_index_is_refused(tmp_path, package_index, pypiserver):
    policy = package_policy(tmp_path, package_index, pypiserver, ["app==1.0"])
    path = tmp_path / "plan.json"
    assert pypi("plan", "-p", policy, "-o", path).exit_code == 0
    plan = json.loads(path.read_text())
    plan["items"][0]["target"] = "mirror/app-1.0-py3-none-any.whl"
    path.write_text(json.dumps(plan))

    result = pypi("sync", "-p", policy, "--plan", path)
    assert result.exit_code == 3, result.output
    [refused] = audit(tmp_path, "refused")
    assert "not allowed by the policy" in refused["reason"], refused["reason"]


@pytest.mark.parametrize("changes, message", [
    ({"environments": 5}, "environments: input should be a valid list, not 5"),
    ({"platforms": ["linux/amd64"]}, "platforms: not a key of this kind's items"),   # an image's key
])
def test_a_package_field_of_the_wrong_type_is_refused_naming_the_item(tmp_path, package_index, pypiserver,
                                                                      changes, message):
    policy = package_policy(tmp_path, package_index, pypiserver, ["app==1.0"])
    path = tmp_path / "plan.json"
    assert pypi("plan", "-p", policy, "-o", path).exit_code == 0
    plan = json.loads(path.read_text())
    assert list(plan["items"][0]) == V1_KEYS
    plan["items"][0].update(changes)
    path.write_text(json.dumps(plan))

    result = pypi("sync", "-p", policy, "--plan", path)
    assert result.exit_code == 2, result.output
    expected = (f"not a regsync plan: item package mirror/app-1.0-py3-none-any.whl -> "
                f"internal/app-1.0-py3-none-any.whl: {message}")
    assert expected in " ".join(result.output.split()), result.output
    assert list((pypiserver.root / "packages").iterdir()) == []


def test_a_package_sha256_edited_in_the_plan_is_refused(tmp_path, package_index, pypiserver):
    policy = package_policy(tmp_path, package_index, pypiserver, ["app==1.0"])
    path = tmp_path / "plan.json"
    assert pypi("plan", "-p", policy, "-o", path).exit_code == 0
    plan = json.loads(path.read_text())
    plan["items"][0]["digest"] = "sha256:" + served(package_index, "tool-1.0-py3-none-any.whl").sha256
    path.write_text(json.dumps(plan))

    assert pypi("sync", "-p", policy, "--plan", path).exit_code == 3
    [refused] = audit(tmp_path, "refused")
    assert "the index now gives" in refused["reason"], refused["reason"]


def test_a_saved_package_plan_is_audited_as_rechecked(tmp_path, package_index, pypiserver):
    policy = package_policy(tmp_path, package_index, pypiserver, ["app==1.0"])
    path = tmp_path / "plan.json"
    assert pypi("plan", "-p", policy, "-o", path).exit_code == 0
    plan = json.loads(path.read_text())
    plan["items"][0]["rule"] = "packages[3]"
    path.write_text(json.dumps(plan))

    result = pypi("sync", "-p", policy, "--plan", path)
    assert result.exit_code == 0, result.output
    records = audit(tmp_path, "verified") + audit(tmp_path, "pushed")
    assert len(records) == 2
    for record in records:
        assert record["policy_rule"] == "packages[0]"
        assert record["verification"]["rechecked"] is True


# --- packages: the closure is re-derived at apply (issue 22) ----------------------------------

@pytest.fixture
def closure_index(tmp_path):
    """capp needs clib; backdoor is on the same index, needed by nothing the policy asks for."""
    served = SimpleIndex()
    for name, version, requires in (("capp", "1.0", ("clib>=1",)), ("clib", "1.0", ()), ("backdoor", "1.0", ())):
        served.add(build_wheel(tmp_path / "wheels", name, version, requires=requires))
    yield served
    served.stop()



def test_a_plan_edited_to_add_a_project_outside_the_closure_is_refused(tmp_path, closure_index, pypiserver,
                                                                       monkeypatch):
    import regsync.kinds.package.closure as closure

    resolutions = []
    real_resolve = closure.resolve
    monkeypatch.setattr(closure, "resolve", lambda *a, **k: resolutions.append(a[2].label) or real_resolve(*a, **k))
    policy = package_policy(tmp_path, closure_index, pypiserver, ["capp==1.0"], True,
                            (LINUX_311, {"python": "3.12", "platform": "win_amd64"}))
    path = tmp_path / "plan.json"
    assert pypi("plan", "-p", policy, "-o", path).exit_code == 0
    plan = json.loads(path.read_text())
    assert sorted(i["source"] for i in plan["items"]) == ["mirror/capp-1.0-py3-none-any.whl",
                                                          "mirror/clib-1.0-py3-none-any.whl"]
    backdoor = "backdoor-1.0-py3-none-any.whl"   # its real sha256, as the index lists it
    plan["items"].append(dict(plan["items"][0], source=f"mirror/{backdoor}", target=f"internal/{backdoor}",
                              digest="sha256:" + served(closure_index, backdoor).sha256, project="backdoor"))
    path.write_text(json.dumps(plan))

    result = pypi("sync", "-p", policy, "--plan", path)
    assert result.exit_code == 3, result.output
    assert sorted(p.name for p in (pypiserver.root / "packages").iterdir()) == [
        "capp-1.0-py3-none-any.whl", "clib-1.0-py3-none-any.whl"]
    [refused] = audit(tmp_path, "refused")
    assert refused["artifact"]["source"] == f"mirror/{backdoor}"
    assert "not allowed by the policy" in refused["reason"] and "not in the closure" in refused["reason"]
    assert sorted(r["artifact"]["source"] for r in audit(tmp_path, "pushed")) == [
        "mirror/capp-1.0-py3-none-any.whl", "mirror/clib-1.0-py3-none-any.whl"]
    # the apply re-derived each environment's closure once, not once per item
    assert sorted(resolutions) == ["cp311-manylinux_2_28_x86_64", "cp312-win_amd64"]


def test_a_saved_plan_keeps_its_versions_when_the_index_has_moved_on(tmp_path, closure_index, pypiserver):
    """The plan's versions are tried first when the closure is re-derived: a newer clib released
    since the plan neither fails the apply nor replaces what was reviewed."""
    policy = package_policy(tmp_path, closure_index, pypiserver, ["capp==1.0"], True,
                            (LINUX_311, {"python": "3.12", "platform": "win_amd64"}))
    path = tmp_path / "plan.json"
    assert pypi("plan", "-p", policy, "-o", path).exit_code == 0
    closure_index.add(build_wheel(tmp_path / "later", "clib", "1.1"))

    result = pypi("sync", "-p", policy, "--plan", path)
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in (pypiserver.root / "packages").iterdir()) == [
        "capp-1.0-py3-none-any.whl", "clib-1.0-py3-none-any.whl"]


# A plan file is input like any other: a hand edit, a truncated copy or a file that is no plan at all is
# one clear line, exit 2, before anything is touched (the registries here refuse connections: never asked).
CLOSED = """\
version: 1
registries:
  src: {url: "http://127.0.0.1:1"}
  dst: {url: "http://127.0.0.1:1"}
images:
  - from: src/library/alpine
    to: dst/mirror/alpine
    tags: {include: ["3.19"]}
audit: {path: audit.jsonl}
"""


def _plan_body(policy):
    import hashlib

    item = dict.fromkeys(V1_KEYS)
    item.update(kind="image", source="src/library/alpine:3.19", target="dst/mirror/alpine:3.19",
                digest="sha256:" + "a" * 64, action="copy", reason="", bytes=100, blobs_missing=1, media_type="",
                rule="images[0]")
    return {"version": 1, "policy_sha256": hashlib.sha256(policy.read_bytes()).hexdigest(),
            "created": "2026-12-03T10:00:00+00:00", "items": [item], "errors": []}


@pytest.mark.parametrize("name, edit_plan, expected", [
    ("not UTF-8", lambda body: json.dumps(body).encode().replace(b"alpine", b"alp\xe9ine"), "not UTF-8 text"),
    ("nested past the parser", lambda body: b"[" * 100_000 + b"]" * 100_000, "JSON nested too deeply"),
    ("truncated", lambda body: json.dumps(body, indent=2).encode()[:300], "not JSON: Unterminated string"),
    ("a list", lambda body: b"[]", "an object with version, policy_sha256, created and items is expected, not an array"),
    ("policy_sha256 a number", lambda body: {**body, "policy_sha256": 5}, "'policy_sha256' is a number, not a string"),
    ("items null", lambda body: {**body, "items": None}, "'items' is null, not an array"),
    ("an item that is a list", lambda body: {**body, "items": [[1, 2]]}, "an item is an array, not an object"),
    ("version as a string", lambda body: {**body, "version": "1"}, "'version' is a string, not a number"),
    ("a future version", lambda body: {**body, "version": 2}, "unsupported plan version 2"),
    ("a byte count that is a word", lambda body: {**body, "items": [{**body["items"][0], "bytes": "big"}]},
     "item src/library/alpine:3.19: bytes: input should be a valid integer"),
    ("a missing digest", lambda body: {**body, "items": [{k: v for k, v in body["items"][0].items() if k != "digest"}]},
     "item src/library/alpine:3.19: digest: field required"),
])
def test_a_plan_file_that_is_not_a_plan_is_one_clear_line(tmp_path, name, edit_plan, expected):
    policy = tmp_path / "policy.yaml"
    policy.write_text(CLOSED)
    edited = edit_plan(_plan_body(policy))
    path = tmp_path / "plan.json"
    path.write_bytes(edited if isinstance(edited, bytes) else json.dumps(edited).encode())
    for verb in (["plan", "show", path], ["sync", "-p", policy, "--plan", path]):
        result = run_cli(*verb)
        assert result.exit_code == 2, (name, verb, result.output)
        assert expected in " ".join(result.output.split()) and "internal error" not in result.output, (name, result.output)


def test_a_plan_that_is_a_fifo_is_not_waited_for_and_plan_o_names_where_it_cannot_write(tmp_path):
    import os

    policy = tmp_path / "policy.yaml"
    policy.write_text(CLOSED)
    fifo = tmp_path / "plan.json"
    os.mkfifo(fifo)   # nobody writes: reading it must not wait for a writer
    result = run_cli("sync", "-p", policy, "--plan", fifo)
    assert result.exit_code == 2 and "not a regsync plan (not JSON" in result.output, result.output
    (tmp_path / "afile").write_text("x")
    for output, expected in ((tmp_path, "is a directory: name a file"),
                             (tmp_path / "afile" / "plan.json", "cannot write there: " f"{tmp_path / 'afile'} is a file")):
        result = run_cli("plan", "-p", policy, "-o", output)
        assert result.exit_code == 2, result.output
        assert expected in " ".join(result.output.split()), result.output
        assert "connection refused" not in result.output   # said before resolving anything
    assert not [p for p in tmp_path.iterdir() if p.name.endswith((".tmp", ".probe"))]
