"""Keyless signatures end to end through `regsync sync`, against a private Sigstore instance.

tests/fixtures/sigstore_root.py plays Fulcio (root + intermediate, leaves with an embedded SCT),
the CT log and Rekor (SET, inclusion proof, signed checkpoint), and writes the trusted_root.json
the policy names. Bundles reach the registry as OCI 1.1 referrers through the referrers tag
schema (distribution 2.8 has no referrers API); legacy cosign keyless signatures as annotations
on the `.sig` layer. Every case goes through the real verifier: sigstore's for bundles, regsync's
cryptography checks for the legacy annotations (their Rekor bundle has no inclusion proof).
"""

import hashlib
import json
from datetime import datetime, timedelta, timezone

import pytest
import requests

from tests.fixtures.cosign import (OCI_MANIFEST, get_manifest, make_key, manifest_digest, push_blob, push_image,
                                   push_manifest, sign, sign_bytes, simple_signing_payload)
from tests.fixtures.sigstore_root import BUNDLE_V03, FulcioCA, PrivateSigstore
from tests.test_verify_signatures import audit, by_tag, run, write_policy

ISSUER = "https://token.actions.githubusercontent.com"
IDENTITY = "https://github.com/pytorch/pytorch/.github/workflows/docker.yml@refs/heads/main"
TRUST = (f'  ci: {{keyless: {{issuer: "{ISSUER}", identity_regex: "^https://github\\\\.com/pytorch/.+$"}}, '
         f'trusted_root: trusted_root.json}}')
REQUIRED = "    verify: {signature: required, trust: [ci]}\n"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
EMPTY = "application/vnd.oci.empty.v1+json"


def attach_referrer(registry, repo: str, subject: str, artifact_type: str, content: bytes) -> str:
    """An OCI 1.1 referrer, indexed under the `sha256-<hex>` tag as clients do on registries without
    the referrers API (what `cosign sign --new-bundle-format` / oras do against distribution 2.8)."""
    config = push_blob(registry.url, repo, b"{}")
    layer = push_blob(registry.url, repo, content)
    subject_size = len(json.dumps(get_manifest(registry.url, repo, subject)).encode())
    doc = {"schemaVersion": 2, "mediaType": OCI_MANIFEST, "artifactType": artifact_type,
           "config": {"mediaType": EMPTY, **config}, "layers": [{"mediaType": artifact_type, **layer}],
           "subject": {"mediaType": OCI_MANIFEST, "digest": subject, "size": subject_size}}
    raw = json.dumps(doc).encode()
    digest = push_manifest(registry.url, repo, "sha256:" + hashlib.sha256(raw).hexdigest(), doc)
    tag = subject.replace(":", "-")
    index = get_index(registry.url, repo, tag) or {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": []}
    index["manifests"].append({"mediaType": OCI_MANIFEST, "digest": digest, "size": len(raw),
                               "artifactType": artifact_type})
    push_manifest(registry.url, repo, tag, index, OCI_INDEX)
    return digest


def get_index(url: str, repo: str, tag: str) -> dict | None:
    response = requests.get(f"{url}/v2/{repo}/manifests/{tag}", headers={"Accept": OCI_INDEX}, timeout=10)
    if response.status_code == 404:
        return None
    response.raise_for_status()
    return response.json()


@pytest.fixture
def sigstore_instance(tmp_path):
    instance = PrivateSigstore()
    instance.write_trusted_root(tmp_path / "trusted_root.json")
    return instance


def _cases(now):
    valid = (now - timedelta(minutes=5), now + timedelta(minutes=5))
    return {  # tag: (issuer, identity, validity, signed at, issued by an untrusted CA)
        "valid": (ISSUER, IDENTITY, valid, now, False),
        "expired": (ISSUER, IDENTITY, valid, now + timedelta(hours=1), False),
        "wrong-identity": (ISSUER, "https://github.com/evil/fork/.github/workflows/x.yml@refs/heads/main", valid,
                           now, False),
        "wrong-issuer": ("https://accounts.google.com", IDENTITY, valid, now, False),
        "untrusted-ca": (ISSUER, IDENTITY, valid, now, True),
    }


def _sign_bundle(instance, registry, repo, digest, case, rogue_ca):
    issuer, identity, (start, end), signed_at, untrusted = case
    key = make_key("ecdsa")
    cert = instance.leaf(key, issuer, identity, start, end, ca=rogue_ca if untrusted else None)
    return attach_referrer(registry, repo, digest, BUNDLE_V03, instance.bundle(key, cert, digest, signed_at))


def _sign_legacy(instance, registry, repo, digest, case, rogue_ca):
    issuer, identity, (start, end), signed_at, untrusted = case
    key = make_key("ecdsa")
    cert = instance.leaf(key, issuer, identity, start, end, ca=rogue_ca if untrusted else None)
    payload = simple_signing_payload(f"{registry.host}/{repo}", digest)
    signature = sign_bytes(key, payload)
    sign(registry, repo, digest, key, signature=signature,
         annotations=instance.legacy_annotations(cert, payload, signature, signed_at))


EXPECTED = {
    "expired": "certificate expired at signing: signed at ",
    "wrong-identity": "identity mismatch: certificate identity is https://github.com/evil/fork/",
    "wrong-issuer": (f"issuer mismatch: certificate issuer is https://accounts.google.com, "
                     f"trust entry 'ci' requires {ISSUER}"),
    "untrusted-ca": "untrusted certificate: ",
}


@pytest.mark.parametrize("shape", ["bundle", "legacy"])
def test_keyless_valid_is_copied_and_every_refusal_is_named(tmp_path, registry, registry2, unique_repo,
                                                           sigstore_instance, shape):
    now = datetime.now(timezone.utc).replace(microsecond=0)
    rogue_ca = FulcioCA()
    signer = _sign_bundle if shape == "bundle" else _sign_legacy
    digests = {}
    for tag, case in _cases(now).items():
        digests[tag], _ = push_image(registry, unique_repo, tag, salt=f"{shape}-{tag}")
        signer(sigstore_instance, registry, unique_repo, digests[tag], case, rogue_ca)
    policy = write_policy(tmp_path, registry, registry2, unique_repo, unique_repo, {"include": sorted(digests)},
                          REQUIRED, trust=TRUST)

    planned = json.loads(run("plan", "-p", policy, "--json").output)
    plan_reasons = {i["source"].rsplit(":", 1)[1]: (i["action"], i["reason"]) for i in planned["items"]}
    assert plan_reasons["valid"][0] == "copy"
    result = run("sync", "-p", policy)
    assert result.exit_code == 3, result.output

    refused = {tag: r["reason"] for tag, r in by_tag(audit(tmp_path, "refused")).items()}
    assert set(refused) == set(EXPECTED)
    for tag, prefix in EXPECTED.items():
        assert refused[tag].startswith(prefix), (tag, refused[tag])
        assert plan_reasons[tag] == ("refuse", refused[tag])
        assert manifest_digest(registry2, unique_repo, tag) is None
    assert "does not chain to a Fulcio CA" in refused["untrusted-ca"] or "chain" in refused["untrusted-ca"]

    [pushed] = audit(tmp_path, "pushed")
    assert manifest_digest(registry2, unique_repo, "valid") == digests["valid"]
    [signer_evidence] = pushed["verification"]["signature"]["signers"]
    assert signer_evidence["identity"] == IDENTITY and signer_evidence["issuer"] == ISSUER
    assert isinstance(signer_evidence["rekor_log_index"], int) and signer_evidence["trust"] == "ci"
    assert signer_evidence["method"] == ("sigstore-bundle" if shape == "bundle" else "cosign-keyless")
    if shape == "bundle":
        assert signer_evidence["verified_by"].startswith("sigstore ")


def test_a_tampered_rekor_entry_or_signature_is_refused(tmp_path, registry, registry2, unique_repo,
                                                        sigstore_instance):
    """The SET and the signature really are checked: edit one byte of each and the image is refused."""
    now = datetime.now(timezone.utc).replace(microsecond=0)
    good = _cases(now)["valid"]
    bad_set, _ = push_image(registry, unique_repo, "bad-set", salt="bad-set")
    bad_sig, _ = push_image(registry, unique_repo, "bad-sig", salt="bad-sig")
    for digest, field in ((bad_set, "set"), (bad_sig, "sig")):
        key = make_key("ecdsa")
        cert = sigstore_instance.leaf(key, ISSUER, IDENTITY, *good[2])
        raw = json.loads(sigstore_instance.bundle(key, cert, digest, now))
        if field == "set":
            entry = raw["verificationMaterial"]["tlogEntries"][0]
            entry["integratedTime"] = str(int(entry["integratedTime"]) - 1)
        else:
            raw["messageSignature"]["signature"] = raw["messageSignature"]["signature"][:-8] + "AAAAAAA="
        attach_referrer(registry, unique_repo, digest, BUNDLE_V03, json.dumps(raw).encode())
    policy = write_policy(tmp_path, registry, registry2, unique_repo, unique_repo, {"include": ["bad-set", "bad-sig"]},
                          REQUIRED, trust=TRUST)
    assert run("sync", "-p", policy).exit_code == 3
    refused = {tag: r["reason"] for tag, r in by_tag(audit(tmp_path, "refused")).items()}
    assert refused["bad-set"].startswith("untrusted certificate: ") and "SET" in refused["bad-set"]
    assert refused["bad-sig"].startswith(("signature invalid: ", "untrusted certificate: "))
    assert audit(tmp_path, "pushed") == []


def test_a_keyless_entry_without_trusted_root_is_a_policy_error(tmp_path, registry, registry2, unique_repo,
                                                                sigstore_instance):
    digest, _ = push_image(registry, unique_repo, "v1", salt="no-root")
    _sign_legacy(sigstore_instance, registry, unique_repo, digest, _cases(datetime.now(timezone.utc))["valid"],
                 None)
    trust = f'  ci: {{keyless: {{issuer: "{ISSUER}", identity: "{IDENTITY}"}}}}'
    policy = write_policy(tmp_path, registry, registry2, unique_repo, unique_repo, {"include": ["v1"]},
                          REQUIRED, trust=trust)
    result = run("sync", "-p", policy)
    assert result.exit_code == 2, result.output
    assert "trusted_root" in result.output
    assert manifest_digest(registry2, unique_repo, "v1") is None


def test_referrers_follow_the_image_with_digests_unchanged_and_verify_on_the_target(
        tmp_path, registry, registry2, unique_repo, sigstore_instance):
    """copy: {referrers: true} on distribution 2.8 (no referrers API): the bundle and an SBOM referrer
    arrive byte-identical, the target's sha256-<hex> index lists them, and `regsync verify` with
    cosign's keyless flags accepts the image on the target from the copied bundle alone."""
    now = datetime.now(timezone.utc).replace(microsecond=0)
    digest, _ = push_image(registry, unique_repo, "v1", salt="referrers")
    bundle = _sign_bundle(sigstore_instance, registry, unique_repo, digest, _cases(now)["valid"], None)
    sbom = attach_referrer(registry, unique_repo, digest, "application/spdx+json", b'{"spdxVersion": "SPDX-2.3"}')
    policy = write_policy(tmp_path, registry, registry2, unique_repo, unique_repo, {"include": ["v1"]},
                          REQUIRED + "    copy: {referrers: true}\n", trust=TRUST)
    result = run("sync", "-p", policy)
    assert result.exit_code == 0, result.output

    assert manifest_digest(registry2, unique_repo, "v1") == digest
    for referrer in (bundle, sbom):
        assert manifest_digest(registry2, unique_repo, referrer) == referrer
    index = get_index(registry2.url, unique_repo, digest.replace(":", "-"))
    assert {d["digest"]: d["artifactType"] for d in index["manifests"]} == {
        bundle: BUNDLE_V03, sbom: "application/spdx+json"}
    [pushed] = audit(tmp_path, "pushed")
    assert sorted(pushed["referrers"]) == sorted(f"{digest} <- {d}" for d in (bundle, sbom))

    verified = run("verify", f"{registry2.host}/{unique_repo}:v1", "--allow-http-registry",
                   "--certificate-identity", IDENTITY, "--certificate-oidc-issuer", ISSUER,
                   "--trusted-root", tmp_path / "trusted_root.json")
    assert verified.exit_code == 0, verified.output
    assert '"method": "sigstore-bundle"' in verified.output


def test_the_referrers_api_is_preferred_when_the_registry_has_it():
    """Corner case (distribution 2.8 has no referrers API): a minimal fake answering only
    /v2/<repo>/referrers/<digest>; the fallback tag is never asked for."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from regsync.kinds.image.client import RegistryClient
    from regsync.kinds.image.referrers import list_referrers

    subject = "sha256:" + "ab" * 32
    index = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [
        {"mediaType": OCI_MANIFEST, "digest": "sha256:" + "01" * 32, "size": 10, "artifactType": BUNDLE_V03},
        {"mediaType": OCI_MANIFEST, "digest": "sha256:" + "02" * 32, "size": 10, "artifactType": "application/spdx+json"}]}
    seen = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            seen.append(self.path)
            body = json.dumps(index).encode() if self.path == f"/v2/r/referrers/{subject}" else b"{}"
            self.send_response(200 if self.path == f"/v2/r/referrers/{subject}" else 404)
            self.send_header("Content-Type", OCI_INDEX)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        client = RegistryClient("fake", f"http://127.0.0.1:{server.server_port}")
        assert [d["digest"] for d in list_referrers(client, "r", subject, BUNDLE_V03)] == ["sha256:" + "01" * 32]
        assert len(list_referrers(client, "r", subject)) == 2
        assert list_referrers(client, "r", "sha256:" + "cd" * 32) == []  # 404 → tag → 404: none
    finally:
        server.shutdown()
    assert f"/v2/r/manifests/sha256-{'ab' * 32}" not in seen
    assert f"/v2/r/manifests/sha256-{'cd' * 32}" in seen


def test_dsse_bundles_as_cosign_v3_writes_them(tmp_path, registry, registry2, unique_repo, sigstore_instance):
    """A DSSE envelope around an in-toto statement (cosign v3's format): accepted when the statement
    names the image, refused when it names another one, through sigstore's verify_dsse."""
    now = datetime.now(timezone.utc).replace(microsecond=0)
    _, _, (start, end), _, _ = _cases(now)["valid"]
    digests = {tag: push_image(registry, unique_repo, tag, salt=f"dsse-{tag}")[0] for tag in ("good", "replayed")}
    for tag, digest in digests.items():
        key = make_key("ecdsa")
        cert = sigstore_instance.leaf(key, ISSUER, IDENTITY, start, end)
        named = digests["good"] if tag == "replayed" else None
        attach_referrer(registry, unique_repo, digest, BUNDLE_V03,
                        sigstore_instance.dsse_bundle(key, cert, digest, now, subject_digest=named))
    policy = write_policy(tmp_path, registry, registry2, unique_repo, unique_repo, {"include": sorted(digests)},
                          REQUIRED, trust=TRUST)
    assert run("sync", "-p", policy).exit_code == 3
    [refused] = audit(tmp_path, "refused")
    assert refused["artifact"]["source"].endswith(":replayed")
    assert refused["reason"].startswith("payload names another digest: the in-toto statement in bundle ")
    [pushed] = audit(tmp_path, "pushed")
    assert pushed["verification"]["signature"]["signers"][0]["method"] == "sigstore-bundle"
    assert manifest_digest(registry2, unique_repo, "good") == digests["good"]
