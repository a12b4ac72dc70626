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
