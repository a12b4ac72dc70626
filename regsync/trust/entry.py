"""One trust entry of the policy against the signatures found for one digest: evidence or a Failure."""

from __future__ import annotations

from regsync.policy.models import Trust
from regsync.trust.failures import Failure, worst
from regsync.trust.keys import MalformedSignature, PublicKey, load_public_key
from regsync.trust.payload import SignedPayload


def verify_entry(name: str, entry: Trust, payloads: list[SignedPayload], digest: str,
                 bundles=()) -> dict | Failure:
    if entry.cosign_key is not None:
        if not payloads:
            return Failure("unsigned", f"no cosign signature for {digest} to check with trust entry '{name}'")
        return verify_keyed(load_public_key(entry.cosign_key, name), payloads, digest)
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


def verify_keyless(name: str, entry: Trust, payloads: list[SignedPayload], digest: str, bundles=()):
    """Evidence (dict) for the first signature that satisfies the entry, else the worst Failure."""
    # sigstore takes 0.4 s to import: only runs that verify keyless signatures pay for it
    from regsync.trust.keyless import Refusal, load_trust_root, verify_legacy
    from regsync.trust.sigstore import verify_bundle

    keyless = entry.keyless
    assert keyless is not None, "a trust entry without cosign_key is keyless (policy/models.py checks)"
    root = load_trust_root(entry, name)
    failures = []
    for found in bundles:
        outcome = verify_bundle(name, keyless, root, found, digest, tuple(entry.predicate_types))
        if isinstance(outcome, dict):
            return outcome
        failures.append(outcome)
    for signed in payloads:
        try:
            return verify_legacy(name, keyless, root, signed, digest)
        except Refusal as exc:
            failures.append(Failure(exc.category, exc.detail))
    if not failures:
        return Failure("unsigned", f"no keyless signature (cosign certificate or sigstore bundle) on {digest}")
    return worst(failures)
