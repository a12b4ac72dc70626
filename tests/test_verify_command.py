"""`regsync verify IMAGE-REF --key …` against a real registry, with cosign's flag names."""

import json

from tests.fixtures.cosign import make_key, push_image, sign, write_public_key
from tests.test_verify_signatures import run


def test_verify_by_hand_prints_evidence_and_exits_3_on_refusal(tmp_path, registry, unique_repo):
    key = make_key("ecdsa")
    fingerprint = write_public_key(key, tmp_path / "cosign.pub")
    digest, _ = push_image(registry, unique_repo, "signed")
    push_image(registry, unique_repo, "unsigned", salt="u")
    sign(registry, unique_repo, digest, key)

    ok = run("verify", f"{registry.host}/{unique_repo}:signed", "--key", tmp_path / "cosign.pub",
             "--allow-http-registry")
    assert ok.exit_code == 0, ok.output
    evidence = json.loads(ok.stdout)
    assert evidence["image"] == f"{registry.host}/{unique_repo}@{digest}"
    assert evidence["signers"][0]["key_fingerprint"] == fingerprint

    by_digest = run("verify", f"{registry.host}/{unique_repo}@{digest}", "--key", tmp_path / "cosign.pub",
                    "--allow-http-registry")
    assert by_digest.exit_code == 0, by_digest.output

    refused = run("verify", f"{registry.host}/{unique_repo}:unsigned", "--key", tmp_path / "cosign.pub",
                  "--allow-http-registry")
    assert refused.exit_code == 3
    assert refused.stderr.startswith("error: unsigned: no cosign signature for sha256:")


def test_verify_usage_errors_exit_2(tmp_path):
    (tmp_path / "k.pub").write_text("not a key")
    assert run("verify", "not-a-ref", "--key", tmp_path / "k.pub").exit_code == 2
    both = run("verify", "127.0.0.1:1/x:y", "--key", tmp_path / "k.pub", "--certificate-oidc-issuer", "https://i")
    assert both.exit_code == 2 and "either --key" in both.stderr
    bad_key = run("verify", "127.0.0.1:1/x:y", "--key", tmp_path / "k.pub", "--allow-http-registry")
    assert bad_key.exit_code == 2 and "is not a PEM public key" in bad_key.stderr


def test_sign_on_import_appends_an_enterprise_signature_cosign_can_verify(tmp_path, registry, registry2,
                                                                          unique_repo, monkeypatch):
    from cryptography.hazmat.primitives import serialization

    from tests.fixtures.cosign import manifest_digest
    from tests.test_verify_signatures import audit, write_policy

    upstream = make_key("ecdsa")
    write_public_key(upstream, tmp_path / "cosign.pub")
    enterprise = make_key("ecdsa")
    fingerprint = write_public_key(enterprise, tmp_path / "enterprise.pub")
    (tmp_path / "enterprise.key").write_bytes(enterprise.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"s3cret-pass")))
    monkeypatch.setenv("ENTERPRISE_KEY_PASSWORD", "s3cret-pass")
    digest, _ = push_image(registry, unique_repo, "v1")
    sign(registry, unique_repo, digest, upstream)
    rule = ("    verify: {signature: required, trust: [release]}\n    copy: {signatures: true}\n"
            "    sign: {key: enterprise.key, password_env: ENTERPRISE_KEY_PASSWORD}\n")
    policy = write_policy(tmp_path, registry, registry2, unique_repo, unique_repo, {"include": ["v1"]}, rule)
    assert run("sync", "-p", policy).exit_code == 0
    assert manifest_digest(registry2, unique_repo, "v1") == digest
    [pushed] = audit(tmp_path, "pushed")
    assert pushed["signed"]["key_fingerprint"] == fingerprint
    assert "s3cret-pass" not in (tmp_path / "audit.jsonl").read_text()
    target = f"{registry2.host}/{unique_repo}:v1"
    for pub in ("enterprise.pub", "cosign.pub"):  # ours appended, upstream's kept
        verified = run("verify", target, "--key", tmp_path / pub, "--allow-http-registry")
        assert verified.exit_code == 0, verified.output

    push_image(registry, unique_repo, "v2", salt="2")  # something to plan, so the key is loaded again
    policy.write_text(policy.read_text().replace('include": ["v1"]', 'include": ["v1", "v2"]'))
    monkeypatch.setenv("ENTERPRISE_KEY_PASSWORD", "hunter2-not-it")
    again = run("plan", "-p", policy)
    assert again.exit_code == 2 and "or the password is wrong" in again.stderr
    assert "hunter2" not in again.output
