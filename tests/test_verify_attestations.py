"""`verify.require_attestations` end to end: SLSA provenance and SBOM attestations made by
tests/fixtures/attest.py in `cosign attest`'s exact layout (keyed, keyless with the tests' private
Sigstore, and sigstore bundle referrers), pushed to real docker-registry servers."""

import json
from datetime import datetime, timedelta, timezone

import pytest

from tests.fixtures.attest import BUILDER, SLSA_V1, SOURCE, SPDX, attest, attest_keyless, provenance, spdx_sbom
from tests.fixtures.cosign import attachment_tag, make_key, manifest_digest, push_image, write_public_key
from tests.fixtures.sigstore_root import PrivateSigstore
from tests.test_verify_keyless import BUNDLE_V03, attach_referrer
from tests.test_verify_signatures import audit, by_tag, run, write_policy

ISSUER = "https://token.actions.githubusercontent.com"
REQUIRE = f"""\
    verify:
      require_attestations:
        - type: {SLSA_V1}
          trust: [release]
          match:
            runDetails.builder.id: "re:^https://github.com/pytorch/"
            buildDefinition.externalParameters.workflow.repository: {SOURCE}
        - {{type: "{SPDX}", trust: [release]}}
    copy: {{signatures: true}}
"""


@pytest.fixture
def release_key(tmp_path):
    key = make_key("ecdsa")
    return key, write_public_key(key, tmp_path / "cosign.pub")


def test_provenance_and_sbom_gate_every_refusal_reason_while_the_good_image_syncs(tmp_path, registry, registry2,
                                                                                  unique_repo, release_key):
    key, fingerprint = release_key
    tags = ("good", "wrong-builder", "wrong-source", "none", "moved", "no-sbom", "wrong-key", "malformed")
    digests = {tag: push_image(registry, unique_repo, tag, salt=tag)[0] for tag in tags}
    for tag in ("good", "wrong-builder", "wrong-source", "moved", "wrong-key", "malformed"):
        attest(registry, unique_repo, digests[tag], key, SPDX, spdx_sbom(3))
    attest(registry, unique_repo, digests["good"], key, SLSA_V1, provenance())
    attest(registry, unique_repo, digests["no-sbom"], key, SLSA_V1, provenance())
    attest(registry, unique_repo, digests["wrong-builder"], key, SLSA_V1,
           provenance(builder="https://gitlab.example/evil/runner"))
    attest(registry, unique_repo, digests["wrong-source"], key, SLSA_V1,
           provenance(repository="https://github.com/evil/pytorch"))
    attest(registry, unique_repo, digests["moved"], key, SLSA_V1, provenance(), subject=digests["good"])
    attest(registry, unique_repo, digests["wrong-key"], make_key("ecdsa"), SLSA_V1, provenance())
    attest(registry, unique_repo, digests["malformed"], key, SLSA_V1, provenance(), raw_envelope=b'{"payload": 1}')
    policy = write_policy(tmp_path, registry, registry2, unique_repo, unique_repo, {"include": list(tags)}, REQUIRE)

    planned = json.loads(run("plan", "-p", policy, "--json").output)
    actions = {item["source"].rsplit(":", 1)[1]: (item["action"], item["reason"]) for item in planned["items"]}
    result = run("sync", "-p", policy)
    assert result.exit_code == 3, result.output

    reasons = {tag: r["reason"] for tag, r in by_tag(audit(tmp_path, "refused")).items()}
    assert set(reasons) == set(tags) - {"good"}
    assert reasons["wrong-builder"].startswith(f"attestation mismatch: require_attestations[0] ({SLSA_V1}): "
                                               f"runDetails.builder.id is 'https://gitlab.example/evil/runner', "
                                               f"required 're:^https://github.com/pytorch/'")
    assert reasons["wrong-source"].startswith("attestation mismatch: require_attestations[0] ") \
        and "'https://github.com/evil/pytorch'" in reasons["wrong-source"]
    assert reasons["none"].startswith(f"missing attestation: require_attestations[0] ({SLSA_V1}): ") \
        and attachment_tag(digests["none"], "att") in reasons["none"]
    assert reasons["moved"].startswith("subject mismatch: ") and digests["good"] in reasons["moved"] \
        and digests["moved"] in reasons["moved"]
    assert reasons["no-sbom"].startswith(f"missing attestation: require_attestations[1] ({SPDX})")
    assert reasons["wrong-key"].startswith("wrong key: ") and fingerprint in reasons["wrong-key"]
    assert reasons["malformed"].startswith("malformed statement: require_attestations[0]")
    for tag, (action, reason) in actions.items():  # decided at plan time already, with the same words
        assert (action, reason) == (("copy", "") if tag == "good" else ("refuse", reasons[tag]))

    assert manifest_digest(registry2, unique_repo, "good") == digests["good"]
    for tag in reasons:
        assert manifest_digest(registry2, unique_repo, tag) is None, f"{tag} reached the target"
    att = attachment_tag(digests["good"], "att")
    assert manifest_digest(registry2, unique_repo, att) == manifest_digest(registry, unique_repo, att)  # unchanged

    [pushed] = audit(tmp_path, "pushed")
    provenance_evidence, sbom = pushed["verification"]["attestations"]
    assert pushed["verification"]["rechecked"] is True
    assert provenance_evidence["status"] == "verified" and provenance_evidence["type"] == SLSA_V1
    assert (provenance_evidence["builder_id"], provenance_evidence["source_repository"]) == (BUILDER, SOURCE)
    assert provenance_evidence["signer"]["key_fingerprint"] == fingerprint
    assert (sbom["type"], sbom["sbom_format"], sbom["sbom_packages"]) == (SPDX, "SPDX-2.3", 3)

    html = tmp_path / "report.html"
    assert run("audit", "report", tmp_path / "audit.jsonl", "--html", html).exit_code == 0
    text = html.read_text()
    assert "Built by" in text and BUILDER in text and "SPDX-2.3 (3 packages)" in text


def test_an_attestation_changed_after_the_plan_is_refused_before_push(tmp_path, registry, registry2, unique_repo,
                                                                      release_key):
    key, _ = release_key
    digest, _ = push_image(registry, unique_repo, "v1")
    attest(registry, unique_repo, digest, key, SLSA_V1, provenance())
    attest(registry, unique_repo, digest, key, SPDX, spdx_sbom())
    policy = write_policy(tmp_path, registry, registry2, unique_repo, unique_repo, {"include": ["v1"]}, REQUIRE)
    assert run("plan", "-p", policy, "-o", tmp_path / "plan.json").exit_code == 0
    # the source replaces the attestations between review and apply: only a bad provenance is left
    import requests

    requests.delete(f"{registry.url}/v2/{unique_repo}/manifests/"
                    f"{manifest_digest(registry, unique_repo, attachment_tag(digest, 'att'))}", timeout=10)
    attest(registry, unique_repo, digest, key, SLSA_V1, provenance(builder="https://evil.example/ci"))
    attest(registry, unique_repo, digest, key, SPDX, spdx_sbom())
    result = run("sync", "-p", policy, "--plan", tmp_path / "plan.json")
    assert result.exit_code == 3, result.output
    [refused] = audit(tmp_path, "refused")
    assert refused["reason"].startswith("attestation mismatch: ") and "https://evil.example/ci" in refused["reason"]
    assert manifest_digest(registry2, unique_repo, "v1") is None


def test_optional_requirement_records_without_refusing(tmp_path, registry, registry2, unique_repo, release_key):
    digest, _ = push_image(registry, unique_repo, "v1")
    rule = (f"    verify:\n      require_attestations:\n"
            f"        - {{type: \"{SPDX}\", trust: [release], mode: optional}}\n")
    policy = write_policy(tmp_path, registry, registry2, unique_repo, unique_repo, {"include": ["v1"]}, rule)
    assert run("sync", "-p", policy).exit_code == 0
    [pushed] = audit(tmp_path, "pushed")
    [sbom] = pushed["verification"]["attestations"]
    assert sbom["status"] == "unverified" and sbom["reason"].startswith("missing attestation: ")
    assert manifest_digest(registry2, unique_repo, "v1") == digest


@pytest.fixture
def sigstore_instance(tmp_path):
    instance = PrivateSigstore()
    instance.write_trusted_root(tmp_path / "trusted_root.json")
    return instance


def test_keyless_attestations_legacy_and_bundle_referrer(tmp_path, registry, registry2, unique_repo,
                                                         sigstore_instance):
    now = datetime.now(timezone.utc).replace(microsecond=0)
    good_identity = "https://github.com/pytorch/pytorch/.github/workflows/docker.yml@refs/heads/main"
    digests = {tag: push_image(registry, unique_repo, tag, salt=tag)[0] for tag in ("legacy", "bundle", "fork")}

    def certificate(identity):
        signing_key = make_key("ecdsa")
        cert = sigstore_instance.leaf(signing_key, ISSUER, identity, now - timedelta(minutes=5),
                                      now + timedelta(minutes=5))
        return signing_key, cert

    for tag, identity in (("legacy", good_identity), ("fork", "https://github.com/evil/fork/.github/x.yml@main")):
        signing_key, cert = certificate(identity)
        attest_keyless(registry, unique_repo, digests[tag], sigstore_instance, signing_key, cert, now, SLSA_V1,
                       provenance())
    signing_key, cert = certificate(good_identity)
    from tests.fixtures.attest import statement

    bundle = sigstore_instance.statement_bundle(signing_key, cert, statement(digests["bundle"], SLSA_V1, provenance()),
                                                now)
    attach_referrer(registry, unique_repo, digests["bundle"], BUNDLE_V03, bundle)
    trust = (f'  ci: {{keyless: {{issuer: "{ISSUER}", identity_regex: "^https://github.com/pytorch/"}}, '
             f'trusted_root: trusted_root.json}}')
    rule = (f"    verify:\n      require_attestations:\n        - type: {SLSA_V1}\n          trust: [ci]\n"
            f"          match: {{runDetails.builder.id: \"glob:https://github.com/pytorch/*\"}}\n")
    policy = write_policy(tmp_path, registry, registry2, unique_repo, unique_repo,
                          {"include": sorted(digests)}, rule, trust=trust)
    result = run("sync", "-p", policy)
    assert result.exit_code == 3, result.output
    [refused] = audit(tmp_path, "refused")
    assert refused["artifact"]["source"].endswith(":fork")
    assert refused["reason"].startswith("identity mismatch: ") and "https://github.com/evil/fork" in refused["reason"]
    pushed = by_tag(audit(tmp_path, "pushed"))
    assert set(pushed) == {"legacy", "bundle"}
    legacy = pushed["legacy"]["verification"]["attestations"][0]["signer"]
    assert (legacy["method"], legacy["identity"], legacy["issuer"]) == ("cosign-keyless", good_identity, ISSUER)
    assert pushed["bundle"]["verification"]["attestations"][0]["signer"]["method"] == "sigstore-bundle"
    assert pushed["bundle"]["verification"]["attestations"][0]["builder_id"] == BUILDER


def test_an_attestation_does_not_count_as_a_signature(tmp_path, registry, registry2, unique_repo, release_key):
    """`signature: required` wants a signature: a verified attestation alone is not one."""
    key, _ = release_key
    digest, _ = push_image(registry, unique_repo, "v1")
    attest(registry, unique_repo, digest, key, SLSA_V1, provenance())
    rule = (f"    verify:\n      signature: required\n      trust: [release]\n      require_attestations:\n"
            f"        - {{type: \"{SLSA_V1}\", trust: [release]}}\n")
    policy = write_policy(tmp_path, registry, registry2, unique_repo, unique_repo, {"include": ["v1"]}, rule)
    assert run("sync", "-p", policy).exit_code == 3
    [refused] = audit(tmp_path, "refused")
    assert refused["reason"].startswith("unsigned: ")


def test_bundle_round_trip_carries_and_reverifies_attestations(tmp_path, registry, registry2, unique_repo,
                                                               release_key):
    key, _ = release_key
    digest, _ = push_image(registry, unique_repo, "v1")
    attest(registry, unique_repo, digest, key, SLSA_V1, provenance())
    attest(registry, unique_repo, digest, key, SPDX, spdx_sbom(2))
    policy = write_policy(tmp_path, registry, registry2, unique_repo, unique_repo, {"include": ["v1"]}, REQUIRE)
    bundle = tmp_path / "bundle"
    assert run("export", "-p", policy, "-o", bundle).exit_code == 0
    result = run("import", bundle, "-p", policy)
    assert result.exit_code == 0, result.output
    pushed = [r for r in audit(tmp_path, "pushed") if r["artifact"]["target"].endswith(":v1")]
    assert pushed and pushed[-1]["verification"]["attestations"][1]["sbom_packages"] == 2
    att = attachment_tag(digest, "att")
    assert manifest_digest(registry2, unique_repo, att) == manifest_digest(registry, unique_repo, att)


@pytest.mark.parametrize("requirement, message", [
    ('{type: "x", trust: [release], colour: red}', "unknown key 'colour'"),
    ('{type: "x", trust: [nobody]}', "unknown trust entry 'nobody'"),
    ('{type: "x", trust: [release], match: {runDetails.builder.id: "re:("}}', "invalid regular expression"),
    ('{type: "x", trust: [release], match: {"a..b": "v"}}', "is not a dotted path"),
    ('{type: "x", trust: [release], mode: sometimes}', "mode"),
])
def test_policy_errors_name_the_line(tmp_path, registry, registry2, unique_repo, release_key, requirement, message):
    rule = f"    verify:\n      require_attestations:\n        - {requirement}\n"
    policy = write_policy(tmp_path, registry, registry2, unique_repo, unique_repo, {"include": ["v1"]}, rule)
    result = run("policy", "check", "-p", policy)
    assert result.exit_code == 2
    assert message in result.output and "policy.yaml:13" in result.output, result.output


def test_verify_command_checks_attestations_with_cosign_flag_names(tmp_path, registry, unique_repo, release_key):
    key, fingerprint = release_key
    digest, _ = push_image(registry, unique_repo, "v1")
    attest(registry, unique_repo, digest, key, SLSA_V1, provenance())
    ref = f"{registry.host}/{unique_repo}:v1"
    good = run("verify", ref, "--type", "slsaprovenance1", "--key", tmp_path / "cosign.pub", "--allow-http-registry")
    assert good.exit_code == 0, good.output
    evidence = json.loads(good.output[good.output.index("{"):good.output.rindex("}") + 1])
    assert evidence["attestations"][0]["builder_id"] == BUILDER
    assert evidence["attestations"][0]["signer"]["key_fingerprint"] == fingerprint
    missing = run("verify", ref, "--attestation-type", SPDX, "--key", tmp_path / "cosign.pub", "--allow-http-registry")
    assert missing.exit_code == 3 and "missing attestation" in missing.output
    other = tmp_path / "other.pub"
    write_public_key(make_key("ecdsa"), other)
    wrong = run("verify", ref, "--type", "slsaprovenance1", "--key", other, "--allow-http-registry")
    assert wrong.exit_code == 3 and "wrong key" in wrong.output


def test_bundle_round_trip_carries_keyless_attestations_and_referrers(tmp_path, registry, registry2, unique_repo,
                                                                      sigstore_instance):
    """Legacy keyless `.att` and a sigstore bundle referrer both travel in the air-gap bundle, and
    import verifies them again from the bundle's bytes (the referrer through the referrers tag)."""
    from tests.fixtures.attest import statement

    now = datetime.now(timezone.utc).replace(microsecond=0)
    identity = "https://github.com/pytorch/pytorch/.github/workflows/docker.yml@refs/heads/main"
    digest, _ = push_image(registry, unique_repo, "v1")
    for predicate_type, predicate, how in ((SLSA_V1, provenance(), "legacy"), (SPDX, spdx_sbom(4), "bundle")):
        signing_key = make_key("ecdsa")
        cert = sigstore_instance.leaf(signing_key, ISSUER, identity, now - timedelta(minutes=5),
                                      now + timedelta(minutes=5))
        if how == "legacy":
            attest_keyless(registry, unique_repo, digest, sigstore_instance, signing_key, cert, now, predicate_type,
                           predicate)
        else:
            attach_referrer(registry, unique_repo, digest, BUNDLE_V03, sigstore_instance.statement_bundle(
                signing_key, cert, statement(digest, predicate_type, predicate), now))
    trust = (f'  ci: {{keyless: {{issuer: "{ISSUER}", identity_regex: "^https://github.com/pytorch/"}}, '
             f'trusted_root: trusted_root.json}}')
    rule = (f"    verify:\n      require_attestations:\n        - {{type: \"{SLSA_V1}\", trust: [ci]}}\n"
            f"        - {{type: \"{SPDX}\", trust: [ci]}}\n    copy: {{signatures: true, referrers: true}}\n")
    policy = write_policy(tmp_path, registry, registry2, unique_repo, unique_repo, {"include": ["v1"]}, rule,
                          trust=trust)
    bundle = tmp_path / "bundle"
    exported = run("export", "-p", policy, "-o", bundle)
    assert exported.exit_code == 0, exported.output
    result = run("import", bundle, "-p", policy)
    assert result.exit_code == 0, result.output
    [pushed] = audit(tmp_path, "pushed")
    provenance_evidence, sbom = pushed["verification"]["attestations"]
    assert provenance_evidence["signer"]["method"] == "cosign-keyless"
    assert (sbom["signer"]["method"], sbom["sbom_packages"]) == ("sigstore-bundle", 4)
    assert manifest_digest(registry2, unique_repo, digest.replace(":", "-")) is not None  # the referrer came along


@pytest.mark.parametrize("verb", ["sync", "export"])
def test_the_copied_att_is_the_verified_one_even_when_the_att_tag_moves(tmp_path, registry, registry2, unique_repo,
                                                                        release_key, verb):
    from tests.fixtures.cosign import get_manifest, push_manifest
    from tests.fixtures.faultproxy import FaultProxy

    key, _ = release_key
    digest, _ = push_image(registry, unique_repo, "v1", salt=f"att-swap-{verb}")
    attest(registry, unique_repo, digest, key, SLSA_V1, provenance())
    verified = attest(registry, unique_repo, digest, key, SPDX, spdx_sbom())
    # the decoy .att: the same layers' shape, but a provenance from another builder (never verified)
    decoy_doc = get_manifest(registry.url, unique_repo, attachment_tag(digest, "att"))
    attest(registry, unique_repo, digests_other := push_image(registry, unique_repo, "other", salt=verb)[0], key,
           SLSA_V1, provenance(builder="https://evil.example/ci"))
    decoy_doc["layers"][0] = get_manifest(registry.url, unique_repo, attachment_tag(digests_other, "att"))["layers"][0]
    decoy = push_manifest(registry.url, unique_repo, "decoy", decoy_doc)
    image_layer = get_manifest(registry.url, unique_repo, digest)["layers"][0]["digest"]
    proxy = FaultProxy(registry.url)
    try:
        swap = proxy.add(kind="rewrite", path=f"/manifests/{attachment_tag(digest, 'att')}$", method="GET,HEAD",
                         times=100, to=f"/v2/{unique_repo}/manifests/decoy", armed_by=f"/blobs/{image_layer}")
        policy = write_policy(tmp_path, proxy, registry2, unique_repo, unique_repo, {"include": ["v1"]}, REQUIRE)
        if verb == "sync":
            result = run("sync", "-p", policy)
            copied = manifest_digest(registry2, unique_repo, attachment_tag(digest, "att"))
        else:
            result = run("export", "-p", policy, "-o", tmp_path / "bundle")
            refs = json.loads((tmp_path / "bundle" / "index.json").read_text())["manifests"]
            [copied] = [r["digest"] for r in refs
                        if r["annotations"]["org.opencontainers.image.ref.name"].endswith(attachment_tag(digest, "att"))]
    finally:
        proxy.stop()
    assert result.exit_code == 0, result.output
    assert swap.armed
    assert copied == verified != decoy


def test_multi_arch_the_index_is_the_subject_as_cosign_attest_recursive_writes(tmp_path, registry, registry2,
                                                                               unique_repo, release_key):
    """`cosign attest --recursive` attests the index and each platform manifest; the index's
    attestation is the one required, the platform ones travel along. Platform ones alone do not do."""
    key, _ = release_key
    index, children = push_image(registry, unique_repo, "multi", platforms=("linux/amd64", "linux/arm64"))
    only_children, others = push_image(registry, unique_repo, "children-only", platforms=("linux/amd64", "linux/arm64"),
                                       salt="children")
    for digest in (index, *children, *others):
        attest(registry, unique_repo, digest, key, SLSA_V1, provenance())
    rule = (f"    verify:\n      require_attestations:\n        - {{type: \"{SLSA_V1}\", trust: [release]}}\n"
            f"    copy: {{signatures: true}}\n")
    policy = write_policy(tmp_path, registry, registry2, unique_repo, unique_repo,
                          {"include": ["multi", "children-only"]}, rule)
    assert run("sync", "-p", policy).exit_code == 3
    [refused] = audit(tmp_path, "refused")
    assert refused["artifact"]["source"].endswith(":children-only")
    assert refused["reason"].startswith("missing attestation: ") and only_children in refused["reason"]
    for digest in (index, *children):
        att = attachment_tag(digest, "att")
        assert manifest_digest(registry2, unique_repo, att) == manifest_digest(registry, unique_repo, att)


def test_match_steps_into_lists_by_index_and_reports_what_it_found():
    from regsync.verify.intoto import mismatch

    predicate = provenance()
    uri = f"git+{SOURCE}@refs/heads/main"
    assert mismatch(predicate, {"buildDefinition.resolvedDependencies.0.uri": uri}) is None
    assert mismatch(predicate, {"buildDefinition.resolvedDependencies.0.uri": "glob:git+https://github.com/*"}) is None
    assert mismatch(predicate, {"buildDefinition.resolvedDependencies.1.uri": uri}) == \
        f"buildDefinition.resolvedDependencies.1.uri is absent, required '{uri}'"
    assert mismatch(predicate, {"runDetails.builder.id": "re:^https://github.com/evil/"}) == \
        f"runDetails.builder.id is '{BUILDER}', required 're:^https://github.com/evil/'"
    assert mismatch(predicate, {"runDetails.builder": "x"}).startswith('runDetails.builder is {"id": ')
