"""Keyless refusal reasons read from Fulcio-style certificates on a real registry.

Acceptance of keyless signatures is not implemented (docs/signatures.md says what is missing):
even a certificate that matches every constraint must be refused as `untrusted certificate`.
"""

import json
from datetime import datetime, timedelta, timezone

from tests.fixtures.cosign import fulcio_like_certificate, make_key, push_image, rekor_bundle, sign
from tests.test_verify_signatures import audit, by_tag, run, write_policy

ISSUER = "https://token.actions.githubusercontent.com"
IDENTITY = "https://github.com/pytorch/pytorch/.github/workflows/docker.yml@refs/heads/main"
TRUST = f'  ci: {{keyless: {{issuer: "{ISSUER}", identity_regex: "^https://github.com/pytorch/"}}}}'


def test_keyless_refusals_name_identity_issuer_expiry_and_never_accept(tmp_path, registry, registry2, unique_repo):
    now = datetime.now(timezone.utc)
    valid = (now - timedelta(minutes=5), now + timedelta(minutes=5))
    cases = {
        "wrong-issuer": ("https://accounts.google.com", IDENTITY, valid, now),
        "wrong-identity": (ISSUER, "https://github.com/evil/fork/.github/workflows/x.yml@refs/heads/main", valid, now),
        "expired": (ISSUER, IDENTITY, valid, now + timedelta(hours=1)),
        "matching": (ISSUER, IDENTITY, valid, now),
    }
    for tag, (issuer, identity, (start, end), signed_at) in cases.items():
        digest, _ = push_image(registry, unique_repo, tag, salt=tag)
        key = make_key("ecdsa")
        sign(registry, unique_repo, digest, key, annotations={
            "dev.sigstore.cosign/certificate": fulcio_like_certificate(key, issuer, identity, start, end),
            "dev.sigstore.cosign/bundle": rekor_bundle(int(signed_at.timestamp()))})
    policy = write_policy(tmp_path, registry, registry2, unique_repo, unique_repo, {"include": sorted(cases)},
                          "    verify: {signature: required, trust: [ci]}\n", trust=TRUST)
    assert run("sync", "-p", policy).exit_code == 3
    reasons = {tag: r["reason"] for tag, r in by_tag(audit(tmp_path, "refused")).items()}
    assert reasons["wrong-issuer"] == (f"issuer mismatch: certificate issuer is https://accounts.google.com, "
                                       f"trust entry 'ci' requires {ISSUER}")
    assert reasons["wrong-identity"].startswith("identity mismatch: certificate identity is https://github.com/evil/")
    assert reasons["expired"].startswith("certificate expired at signing: signed at ")
    assert reasons["matching"].startswith("untrusted certificate: identity and issuer match")
    assert audit(tmp_path, "pushed") == []
