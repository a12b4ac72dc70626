"""Cosign keyed signatures end to end through `regsync sync` against real docker-registry servers.

Signatures are written in cosign's exact on-registry layout (tests/fixtures/cosign.py) with keys
made by `cryptography`; every refusal reason is exercised while the good image still syncs.
"""

import json
import subprocess

import pytest
from click.testing import CliRunner

from regsync.cli import cli
from tests.fixtures.policies import audit_records
from tests.fixtures.cosign import (attach, attachment_tag, get_manifest, make_key, manifest_digest, push_image,
                                   push_manifest, sign, sign_bytes, write_public_key)


def run(*args):
    result = CliRunner().invoke(cli, ["--no-progress", *map(str, args)])
    assert "Traceback" not in result.output, result.output
    return result


def write_policy(tmp_path, source, target, src_repo, dst_repo, tags, rule_extra="", trust="", extra_registries=""):
    path = tmp_path / "policy.yaml"
    path.write_text(f"""\
version: 1
registries:
  src: {{url: "{source.url}"}}
  dst: {{url: "{target.url}"}}
{extra_registries}trust:
{trust or "  release: {cosign_key: cosign.pub}"}
images:
  - from: src/{src_repo}
    to: dst/{dst_repo}
    tags: {json.dumps(tags)}
{rule_extra}audit: {{path: audit.jsonl}}
""")
    return path


def audit(tmp_path, event=None):
    records = audit_records(tmp_path / "audit.jsonl")
    return [r for r in records if event is None or r["event"] == event]


def by_tag(records):
    return {r["artifact"]["source"].rsplit(":", 1)[1]: r for r in records}


REQUIRED = "    verify: {signature: required, trust: [release]}\n"


@pytest.fixture
def release_key(tmp_path):
    key = make_key("ecdsa")
    return key, write_public_key(key, tmp_path / "cosign.pub")


def test_every_keyed_refusal_reason_while_the_good_image_syncs(tmp_path, registry, registry2, unique_repo, release_key):
    key, fingerprint = release_key
    digests = {tag: push_image(registry, unique_repo, tag, salt=tag)[0]
               for tag in ("good", "unsigned", "wrong-key", "damaged", "other-digest", "not-cosign")}
    sign(registry, unique_repo, digests["good"], key)
    sign(registry, unique_repo, digests["wrong-key"], make_key("ecdsa"))
    sign(registry, unique_repo, digests["damaged"], key, signature=b"\x30\x02garbage")
    sign(registry, unique_repo, digests["other-digest"], key, names=digests["good"])  # a replayed signature
    foreign = b'{"hello": "world"}'  # validly signed, but not a simple-signing payload
    sign(registry, unique_repo, digests["not-cosign"], key, payload=foreign, signature=sign_bytes(key, foreign))
    policy = write_policy(tmp_path, registry, registry2, unique_repo, unique_repo, {"include": sorted(digests)},
                          REQUIRED)

    planned = json.loads(run("plan", "-p", policy, "--json").output)
    actions = {item["source"].rsplit(":", 1)[1]: (item["action"], item["reason"]) for item in planned["items"]}
    assert actions["good"][0] == "copy"

    result = run("sync", "-p", policy)
    assert result.exit_code == 3, result.output
    reasons = {tag: r["reason"] for tag, r in by_tag(audit(tmp_path, "refused")).items()}
    assert reasons["unsigned"].startswith("unsigned: ") and attachment_tag(digests["unsigned"]) in reasons["unsigned"]
    assert reasons["wrong-key"].startswith("wrong key: ") and fingerprint in reasons["wrong-key"]
    assert reasons["damaged"].startswith("signature invalid: ")
    assert reasons["other-digest"] == (f"payload names another digest: the signed payload names {digests['good']}, "
                                       f"the image is {digests['other-digest']}")
    assert reasons["not-cosign"].startswith("signature invalid: ") and "simple-signing" in reasons["not-cosign"]
    for tag, (action, reason) in actions.items():  # the plan says the same as the audit trail
        assert (action, reason) == (("copy", "") if tag == "good" else ("refuse", reasons[tag]))

    assert manifest_digest(registry2, unique_repo, "good") == digests["good"]
    for tag in reasons:
        assert manifest_digest(registry2, unique_repo, tag) is None, f"{tag} reached the target"
    [pushed] = audit(tmp_path, "pushed")
    [signer] = pushed["verification"]["signature"]["signers"]
    assert pushed["verification"]["signature"]["status"] == "verified"
    assert (signer["method"], signer["key_fingerprint"], signer["trust"]) == ("cosign-key", fingerprint, "release")


@pytest.mark.parametrize("kind, algorithm", [("rsa", "rsa-2048-pkcs1v15-sha256"), ("ed25519", "ed25519"),
                                             ("ecdsa", "ecdsa-secp256r1-sha256")])
def test_each_cosign_key_type_verifies(tmp_path, registry, registry2, unique_repo, kind, algorithm):
    key = make_key(kind)
    write_public_key(key, tmp_path / "cosign.pub")
    digest, _ = push_image(registry, unique_repo, "v1")
    sign(registry, unique_repo, digest, key)
    policy = write_policy(tmp_path, registry, registry2, unique_repo, unique_repo, {"include": ["v1"]}, REQUIRED)
    [item] = json.loads(run("plan", "-p", policy, "--json").output)["items"]
    assert item["action"] == "copy", item["reason"]
    assert item["verification"]["signature"]["signers"][0]["algorithm"] == algorithm


def test_optional_copies_unsigned_and_audits_it_as_unverified(tmp_path, registry, registry2, unique_repo, release_key):
    digest, _ = push_image(registry, unique_repo, "v1")
    policy = write_policy(tmp_path, registry, registry2, unique_repo, unique_repo, {"include": ["v1"]},
                          "    verify: {signature: optional, trust: [release]}\n")
    assert run("sync", "-p", policy).exit_code == 0
    [pushed] = audit(tmp_path, "pushed")
    assert pushed["verification"]["signature"]["status"] == "unverified"
    assert pushed["verification"]["signature"]["reason"].startswith("unsigned: ")
    assert manifest_digest(registry2, unique_repo, "v1") == digest


def test_a_signature_on_the_index_covers_every_platform(tmp_path, registry, registry2, unique_repo, release_key):
    key, _ = release_key
    index, children = push_image(registry, unique_repo, "multi", platforms=("linux/amd64", "linux/arm64"))
    sign(registry, unique_repo, index, key)
    policy = write_policy(tmp_path, registry, registry2, unique_repo, unique_repo, {"include": ["multi"]}, REQUIRED)
    assert run("sync", "-p", policy).exit_code == 0
    assert manifest_digest(registry2, unique_repo, "multi") == index
    assert all(manifest_digest(registry2, unique_repo, child) == child for child in children)


def test_require_all_needs_every_trusted_key(tmp_path, registry, registry2, unique_repo, release_key):
    key, _ = release_key
    security = make_key("ed25519")
    write_public_key(security, tmp_path / "security.pub")
    digest, _ = push_image(registry, unique_repo, "v1")
    sign(registry, unique_repo, digest, key)
    trust = "  release: {cosign_key: cosign.pub}\n  security: {cosign_key: security.pub}"
    rule = "    verify: {signature: required, trust: [release, security], require_all: true}\n"
    policy = write_policy(tmp_path, registry, registry2, unique_repo, unique_repo, {"include": ["v1"]}, rule, trust)
    [item] = json.loads(run("plan", "-p", policy, "--json").output)["items"]
    assert item["action"] == "refuse" and item["reason"].startswith("wrong key: ") and "'security'" in item["reason"]

    sign(registry, unique_repo, digest, security)  # cosign appends a second signature layer
    assert run("sync", "-p", policy).exit_code == 0
    [pushed] = audit(tmp_path, "pushed")
    assert {s["trust"] for s in pushed["verification"]["signature"]["signers"]} == {"release", "security"}


def test_signature_is_checked_again_before_a_saved_plan_pushes(tmp_path, registry, registry2, unique_repo,
                                                              release_key):
    key, _ = release_key
    digest, _ = push_image(registry, unique_repo, "v1")
    sign(registry, unique_repo, digest, key)
    policy = write_policy(tmp_path, registry, registry2, unique_repo, unique_repo, {"include": ["v1"]}, REQUIRED)
    assert run("plan", "-p", policy, "-o", tmp_path / "plan.json").exit_code == 0
    # Between review and apply, the signature is swapped for one by a key nobody trusts.
    sig = get_manifest(registry.url, unique_repo, attachment_tag(digest))
    forged = make_key("ecdsa")
    sig["layers"] = []
    push_manifest(registry.url, unique_repo, attachment_tag(digest), sig)
    sign(registry, unique_repo, digest, forged)

    result = run("sync", "-p", policy, "--plan", tmp_path / "plan.json")
    assert result.exit_code == 3, result.output
    [refused] = audit(tmp_path, "refused")
    assert refused["reason"].startswith("wrong key: ")
    assert manifest_digest(registry2, unique_repo, "v1") is None
    assert audit(tmp_path, "pushed") == []


def test_moved_pin_is_refused_and_other_tags_sync(tmp_path, registry, registry2, unique_repo):
    pinned, _ = push_image(registry, unique_repo, "2.9", salt="old")
    moved, _ = push_image(registry, unique_repo, "2.9", salt="new")
    other, _ = push_image(registry, unique_repo, "2.10")
    tags = {"include": ["2.9", "2.10"], "pin": {"2.9": pinned}}
    policy = write_policy(tmp_path, registry, registry2, unique_repo, unique_repo, tags)
    assert run("sync", "-p", policy).exit_code == 3
    [refused] = audit(tmp_path, "refused")
    assert refused["reason"] == f"pinned to {pinned} but the source now serves {moved}"
    assert manifest_digest(registry2, unique_repo, "2.10") == other
    assert manifest_digest(registry2, unique_repo, "2.9") is None


def test_mirror_cross_check_refuses_a_tampered_mirror(tmp_path, registry, registry2, unique_repo):
    canonical, _ = push_image(registry, unique_repo, "same", salt="a")
    push_image(registry, unique_repo, "tampered", salt="b")
    # The mirror serves the same repository: one tag faithfully, the other with other bytes.
    subprocess.run(["skopeo", "copy", "--all", "--preserve-digests", "--src-tls-verify=false", "--dest-tls-verify=false",
                    f"docker://{registry.host}/{unique_repo}:same", f"docker://{registry2.host}/{unique_repo}:same"],
                   check=True, capture_output=True, timeout=60)
    push_image(registry2, unique_repo, "tampered", salt="evil")
    rule = "    crosscheck: mirror\n"
    mirror = f'  mirror: {{url: "{registry2.url}"}}\n'
    policy = write_policy(tmp_path, registry, registry2, unique_repo, unique_repo + "-dst",
                          {"include": ["same", "tampered"]}, rule, extra_registries=mirror)
    assert run("sync", "-p", policy).exit_code == 3
    [refused] = audit(tmp_path, "refused")
    assert refused["reason"].startswith("mirror cross-check mismatch: mirror serves sha256:")
    assert refused["artifact"]["source"].endswith(":tampered")
    [pushed] = audit(tmp_path, "pushed")
    assert pushed["verification"]["crosscheck"] == {"registry": "mirror", "digest": canonical}


def test_signatures_attestations_and_sboms_arrive_with_digests_unchanged(tmp_path, registry, registry2, unique_repo,
                                                                        release_key):
    key, _ = release_key
    index, children = push_image(registry, unique_repo, "multi", platforms=("linux/amd64", "linux/arm64"))
    sig = sign(registry, unique_repo, index, key)
    child_sig = sign(registry, unique_repo, children[0], key)  # `cosign sign --recursive`
    att = attach(registry, unique_repo, index, "att", b'{"payloadType":"application/vnd.in-toto+json"}',
                 "application/vnd.dsse.envelope.v1+json")
    sbom = attach(registry, unique_repo, index, "sbom", b'{"spdxVersion":"SPDX-2.3"}', "text/spdx+json")
    rule = REQUIRED + "    copy: {signatures: true}\n"
    policy = write_policy(tmp_path, registry, registry2, unique_repo, unique_repo, {"include": ["multi"]}, rule)
    assert run("sync", "-p", policy).exit_code == 0
    expected = {attachment_tag(index): sig, attachment_tag(children[0]): child_sig,
                attachment_tag(index, "att"): att, attachment_tag(index, "sbom"): sbom}
    for tag, digest in expected.items():
        assert manifest_digest(registry2, unique_repo, tag) == digest, tag
    [pushed] = audit(tmp_path, "pushed")
    assert sorted(pushed["attachments"]) == sorted(f"{t}@{d}" for t, d in expected.items())
    assert manifest_digest(registry2, unique_repo, "multi") == index
