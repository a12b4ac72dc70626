"""Signature policy on one source digest: any trusted signature suffices, or all (require_all).

Failures are refusals with a reason that starts with one of the documented categories, so a
reader (and a script) can tell them apart: `unsigned`, `wrong key`, `signature invalid`,
`payload names another digest`, and for keyless `identity mismatch`, `issuer mismatch`,
`certificate expired at signing`, `untrusted certificate`.
"""

from __future__ import annotations

from dataclasses import dataclass

from regsync.errors import VerificationError
from regsync.kinds.oci.client import RegistryClient
from regsync.policy.models import ImageVerify, Trust
from regsync.kinds.oci.cosign import SignedPayload, attachment_tag, fetch_signatures
from regsync.trust.keys import MalformedSignature, PublicKey, load_public_key

# When several signatures fail differently, the most telling reason is reported.
_SEVERITY = {"unsigned": 0, "untrusted certificate": 1, "wrong key": 1, "signature invalid": 2, "identity mismatch": 2,
             "issuer mismatch": 2, "certificate expired at signing": 3, "payload names another digest": 3}


@dataclass
class Failure:
    category: str
    detail: str

    @property
    def reason(self) -> str:
        return f"{self.category}: {self.detail}"


def check_signatures(client: RegistryClient, repo: str, digest: str, verify: ImageVerify,
                     trust: dict[str, Trust]) -> dict | None:
    """Evidence for the audit record; raises VerificationError when `required` is not met."""
    if verify.signature == "off":
        return None
    try:
        return _verified(client, repo, digest, verify, trust)
    except VerificationError as exc:
        if verify.signature == "required":
            raise
        return {"status": "unverified", "reason": exc.reason}


def _verified(client, repo, digest, verify: ImageVerify, trust: dict[str, Trust]) -> dict:
    found = fetch_signatures(client, repo, digest)
    bundles = []
    if any(trust[name].keyless is not None for name in verify.trust):
        from regsync.trust.sigstore import fetch_bundles

        bundles = fetch_bundles(client, repo, digest)
    if found is None and not bundles:
        raise VerificationError(f"unsigned: no cosign signature for {digest} "
                                f"(no tag {attachment_tag(digest)} in {client.name}/{repo}"
                                f"{', no sigstore bundle referrer' if any(trust[n].keyless for n in verify.trust) else ''})")
    manifest_digest, payloads = found or (None, [])
    if not payloads and not bundles:
        raise VerificationError(f"unsigned: {client.name}/{repo}:{attachment_tag(digest)} holds no signature")
    evidence, failures = [], []
    for name in verify.trust:
        outcome = verify_entry(name, trust[name], payloads, digest, bundles)
        (evidence if isinstance(outcome, dict) else failures).append(outcome)
    if failures and (verify.require_all or not evidence):
        raise VerificationError(worst(failures).reason)
    return {"status": "verified", "signature_manifest": manifest_digest, "signers": evidence}


def verify_entry(name: str, entry: Trust, payloads: list[SignedPayload], digest: str,
                 bundles=()) -> dict | Failure:
    if entry.cosign_key is not None:
        if not payloads:
            return Failure("unsigned", f"no cosign signature for {digest} to check with trust entry '{name}'")
        return verify_keyed(load_public_key(entry.cosign_key, name), payloads, digest)
    from regsync.trust.keyless import verify_keyless
    return verify_keyless(name, entry, payloads, digest, bundles)


def verify_keyed(key: PublicKey, payloads: list[SignedPayload], digest: str) -> dict | Failure:
    failures = []
    for signed in payloads:
        failure = _check_one(key, signed, digest)
        if failure is None:
            return {"method": "cosign-key", "trust": key.name, "key_fingerprint": key.fingerprint,
                    "algorithm": key.algorithm, "payload": signed.layer_digest}
        failures.append(failure)
    return worst(failures)


def worst(failures: list[Failure]) -> Failure:
    return max(failures, key=lambda f: _SEVERITY.get(f.category, 0))


def _check_one(key: PublicKey, signed: SignedPayload, digest: str) -> Failure | None:
    if signed.signature is None:
        return Failure("signature invalid", f"payload {signed.layer_digest} has no base64 "
                                            f"dev.cosignproject.cosign/signature annotation")
    try:
        valid = key.verify(signed.signature, signed.payload)
    except MalformedSignature as exc:
        return Failure("signature invalid", f"payload {signed.layer_digest}: {exc}")
    if not valid:
        # Keyed cosign carries no key id: a well-formed signature that fails was made by another
        # key, or over other bytes (a payload edited after signing looks the same).
        return Failure("wrong key", f"the signature on {digest} does not verify with trust entry "
                                    f"'{key.name}' ({key.fingerprint})")
    named = signed.signed_digest()
    if named is None:
        return Failure("signature invalid", f"payload {signed.layer_digest} is not a cosign simple-signing payload")
    if named != digest:
        return Failure("payload names another digest", f"the signed payload names {named}, the image is {digest}")
    return None
