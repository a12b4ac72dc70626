"""What follows an image to the target is what was verified, names the image, and counts as what it is.

Real docker-registry servers on loopback; signatures in cosign's layout (tests/fixtures/cosign.py),
sigstore bundles from a private Sigstore instance (tests/fixtures/sigstore_root.py), and a fault
proxy (tests/fixtures/faultproxy.py) in front of the source where the source has to change its mind.
"""

import base64
import hashlib
import json
from datetime import datetime, timedelta, timezone

import pytest

from tests.fixtures.cosign import (OCI_MANIFEST, attachment_tag, get_manifest, make_key, manifest_digest, push_blob,
                                   push_image, push_manifest, sign, sign_bytes, simple_signing_payload,
                                   write_public_key)
from tests.fixtures.faultproxy import FaultProxy
from tests.fixtures.sigstore_root import BUNDLE_V03
from tests.test_verify_keyless import (EMPTY, IDENTITY, ISSUER, OCI_INDEX, TRUST, attach_referrer, get_index,
                                       sigstore_instance)  # noqa: F401 (a fixture)
from tests.test_verify_signatures import audit, run, write_policy

REQUIRED = "    verify: {signature: required, trust: [release]}\n"


@pytest.fixture
def front(registry):
    proxy = FaultProxy(registry.url)
    yield proxy
    proxy.stop()


@pytest.mark.parametrize("verb", ["sync", "export"])
def test_the_copied_signature_is_the_verified_one_even_when_the_sig_tag_moves(tmp_path, registry, registry2, front,
                                                                             unique_repo, verb):
    key = make_key("ecdsa")
    write_public_key(key, tmp_path / "cosign.pub")
    digest, _ = push_image(registry, unique_repo, "v1", salt=f"sig-swap-{verb}")
    verified = sign(registry, unique_repo, digest, key)
    # The swapped-in .sig: cosign's shape, naming the same image, signed by a key nobody trusts.
    forged = make_key("ecdsa")
    payload = simple_signing_payload(f"{registry.host}/{unique_repo}", digest)
    layer = push_blob(registry.url, unique_repo, payload)
    layer.update(mediaType="application/vnd.dev.cosign.simplesigning.v1+json", annotations={
        "dev.cosignproject.cosign/signature": base64.b64encode(sign_bytes(forged, payload)).decode()})
    decoy_doc = dict(get_manifest(registry.url, unique_repo, attachment_tag(digest)), layers=[layer])
    decoy = push_manifest(registry.url, unique_repo, "decoy", decoy_doc)
    # Once the image's layer is being copied (verification is over), the .sig tag points elsewhere.
    image_layer = get_manifest(registry.url, unique_repo, digest)["layers"][0]["digest"]
    swap = front.add(kind="rewrite", path=f"/manifests/{attachment_tag(digest)}$", method="GET,HEAD", times=100,
                     to=f"/v2/{unique_repo}/manifests/decoy", armed_by=f"/blobs/{image_layer}")

    policy = write_policy(tmp_path, front, registry2, unique_repo, unique_repo, {"include": ["v1"]},
                          REQUIRED + "    copy: {signatures: true}\n")
    if verb == "sync":
        result = run("sync", "-p", policy)
        copied = manifest_digest(registry2, unique_repo, attachment_tag(digest))
        [record] = audit(tmp_path, "pushed")
        assert record["attachments"] == [f"{attachment_tag(digest)}@{verified}"]
    else:
        result = run("export", "-p", policy, "-o", tmp_path / "bundle")
        refs = json.loads((tmp_path / "bundle" / "index.json").read_text())["manifests"]
        [copied] = [r["digest"] for r in refs
                    if r["annotations"]["org.opencontainers.image.ref.name"].endswith(attachment_tag(digest))]
        [record] = audit(tmp_path, "verified")
    assert result.exit_code == 0, result.output
    assert swap.armed
    assert copied == verified != decoy
    assert record["verification"]["signature"]["signature_manifest"] == verified


def index_referrer(registry, repo: str, listed_under: str, subject: str, content: bytes,
                   listed_as: str = "application/spdx+json") -> str:
    """A referrer whose manifest names `subject`, listed (as `listed_as`) in the referrers tag of `listed_under`."""
    config = push_blob(registry.url, repo, b"{}")
    layer = push_blob(registry.url, repo, content)
    doc = {"schemaVersion": 2, "mediaType": OCI_MANIFEST, "artifactType": "application/spdx+json",
           "config": {"mediaType": EMPTY, **config}, "layers": [{"mediaType": "application/spdx+json", **layer}],
           "subject": {"mediaType": OCI_MANIFEST, "digest": subject, "size": 100}}
    raw = json.dumps(doc).encode()
    digest = push_manifest(registry.url, repo, "sha256:" + hashlib.sha256(raw).hexdigest(), doc)
    tag = listed_under.replace(":", "-")
    index = get_index(registry.url, repo, tag) or {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": []}
    index["manifests"].append({"mediaType": OCI_MANIFEST, "digest": digest, "size": len(raw),
                               "artifactType": listed_as})
    push_manifest(registry.url, repo, tag, index, OCI_INDEX)
    return digest


def test_a_referrer_whose_subject_is_another_image_is_not_copied(tmp_path, registry, registry2, unique_repo):
    image, _ = push_image(registry, unique_repo, "v1", salt="subject-image")
    other, _ = push_image(registry, unique_repo, "other", salt="subject-other")
    # Listed as a sigstore bundle by whoever wrote the fallback index; its manifest says SPDX.
    good = index_referrer(registry, unique_repo, image, image, b'{"spdxVersion": "SPDX-2.3", "for": "v1"}',
                          listed_as=BUNDLE_V03)
    stray = index_referrer(registry, unique_repo, image, other, b'{"spdxVersion": "SPDX-2.3", "for": "other"}')

    policy = write_policy(tmp_path, registry, registry2, unique_repo, unique_repo, {"include": ["v1"]},
                          "    copy: {referrers: true}\n")
    result = run("sync", "-p", policy)
    assert result.exit_code == 0, result.output
    assert manifest_digest(registry2, unique_repo, good) == good
    assert manifest_digest(registry2, unique_repo, stray) is None
    index = get_index(registry2.url, unique_repo, image.replace(":", "-"))
    assert [(d["digest"], d["artifactType"]) for d in index["manifests"]] == [(good, "application/spdx+json")]
    [pushed] = audit(tmp_path, "pushed")
    assert pushed["referrers"] == [f"{image} <- {good}"]
    assert pushed["referrers_refused"] == [f"{image} <- {stray}: its subject is {other}, not the image"]
    assert "not copied" in result.output


SLSA = "https://slsa.dev/provenance/v1"


def test_a_bundle_counts_as_a_signature_only_for_the_predicate_types_the_trust_entry_names(
        tmp_path, registry, registry2, unique_repo, sigstore_instance):  # noqa: F811
    now = datetime.now(timezone.utc).replace(microsecond=0)
    digest, _ = push_image(registry, unique_repo, "v1", salt="predicate")
    statement = json.dumps({"_type": "https://in-toto.io/Statement/v1",
                            "subject": [{"name": "image", "digest": {"sha256": digest.split(":", 1)[1]}}],
                            "predicateType": SLSA, "predicate": {"buildType": "x"}}).encode()
    key = make_key("ecdsa")
    cert = sigstore_instance.leaf(key, ISSUER, IDENTITY, now - timedelta(minutes=5), now + timedelta(minutes=5))
    bundle = attach_referrer(registry, unique_repo, digest, BUNDLE_V03,
                             sigstore_instance.statement_bundle(key, cert, statement, now))
    rule = "    verify: {signature: required, trust: [ci]}\n"

    policy = write_policy(tmp_path, registry, registry2, unique_repo, unique_repo, {"include": ["v1"]}, rule,
                          trust=TRUST)
    [item] = json.loads(run("plan", "-p", policy, "--json").output)["items"]
    assert item["action"] == "refuse"
    assert item["reason"] == (f"unsigned: bundle {bundle} is an attestation of predicate type {SLSA}, which trust "
                              f"entry 'ci' does not count as a signature (predicate_types: "
                              f"https://sigstore.dev/cosign/sign/v1)")

    listed = TRUST.replace("trusted_root: trusted_root.json}", f'trusted_root: trusted_root.json, '
                                                               f'predicate_types: ["{SLSA}"]}}')
    policy = write_policy(tmp_path, registry, registry2, unique_repo, unique_repo, {"include": ["v1"]}, rule,
                          trust=listed)
    [item] = json.loads(run("plan", "-p", policy, "--json").output)["items"]
    assert item["action"] == "copy", item["reason"]
    [signer] = item["verification"]["signature"]["signers"]
    assert (signer["method"], signer["predicate_type"]) == ("sigstore-bundle", SLSA)


def test_predicate_types_belong_to_keyless_entries(tmp_path, registry, registry2, unique_repo):
    trust = '  release: {cosign_key: cosign.pub, predicate_types: ["https://slsa.dev/provenance/v1"]}'
    policy = write_policy(tmp_path, registry, registry2, unique_repo, unique_repo, {"include": ["v1"]}, REQUIRED,
                          trust=trust)
    result = run("plan", "-p", policy)
    assert result.exit_code == 2, result.output
    assert "predicate_types" in result.output
