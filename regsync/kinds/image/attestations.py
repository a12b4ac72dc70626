"""`verify.require_attestations` on one source digest: in-toto attestations found where cosign puts
them, each verified like a signature, then its statement's subject and predicate checked.

Where: the legacy `sha256-<hex>.att` tag (`cosign attest`: an OCI manifest whose layers are DSSE
envelopes, keyless certificate and Rekor bundle in the same annotations as on `.sig`), and OCI 1.1
referrers holding a sigstore bundle with a DSSE envelope (`cosign attest --new-bundle-format`).
Who: the requirement's trust entries, through the verifiers signatures already use: a key over the
DSSE pre-authentication encoding; keyless annotations through keyless.py's certificate checks plus
the `intoto` log entry binding certificate, envelope and payload; bundles through sigstore's
Verifier (bundle.py). Reasons start with a category: `missing attestation`, `wrong key`,
`identity mismatch`, `issuer mismatch`, `untrusted certificate`, `signature invalid`,
`malformed statement`, `subject mismatch`, `attestation mismatch` (the predicate says otherwise).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from dataclasses import dataclass
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

from regsync.errors import VerificationError
from regsync.kinds.image.policy import ImageVerify
from regsync.kinds.image.source import ImageSource
from regsync.policy.models import AttestationRequirement, Trust
from regsync.kinds.image.cosign import attachment_tag, fetch_attached_layers
from regsync.trust.payload import SignedPayload
from regsync.trust.intoto import DSSE_ENVELOPE, Envelope, Malformed, mismatch, parse_envelope, subject_digests, summary
from regsync.trust.keys import MalformedSignature, load_entry_key
from regsync.kinds.image.signatures import FoundBundle, fetch_bundles
from regsync.trust.failures import Failure
from regsync.trust.requirements import evaluate, worst


@dataclass(frozen=True)
class Found:
    where: str                      # "<.att manifest> layer <digest>" or "referrer <digest>"
    manifest: str | None = None     # the `.att` manifest digest, pinned for the copy when verified
    envelope: Envelope | None = None
    layer: SignedPayload | None = None      # a `.att` layer (its bytes are the envelope JSON)
    bundle: FoundBundle | None = None
    problem: str | None = None              # unreadable: the reason it cannot count

    def statement(self) -> dict[str, Any]:
        if self.envelope is None:
            raise Malformed(self.problem or "no DSSE envelope")
        return self.envelope.statement()


def check_attestations(client: ImageSource, repo: str, digest: str, verify: ImageVerify,
                       trust: dict[str, Trust], statements: list[dict[str, Any]] | None = None) -> list[Any] | None:
    """Evidence per requirement for the audit record; raises VerificationError for the first
    `required` one that is not met (an `optional` one records its reason instead). `statements`
    receives the statement of each attestation that met a requirement (the vulnerability gate
    reads a verified SBOM's package list from it)."""
    if not verify.require_attestations:
        return None
    keyless = any(trust[name].keyless is not None for wanted in verify.require_attestations for name in wanted.trust)
    try:
        found = find_attestations(client, repo, digest, keyless)
    except VerificationError as exc:  # an unreadable .att or referrers index: no requirement can be met from it
        found = [Found(f"{client.ref(repo)} attachments of {digest}", problem=exc.reason)]
    missing = (f"on {digest} in {client.ref(repo)} (tag {attachment_tag(digest, 'att')} "
               f"or a sigstore bundle referrer)")

    def verify_candidate(wanted: AttestationRequirement, name: str, candidate: Found,
                         statement: dict[str, Any]) -> dict[str, Any] | Failure:
        outcome = _verify_candidate(wanted, name, candidate, statement, digest, trust)
        if isinstance(outcome, dict) and statements is not None:
            statements.append(statement)
        return outcome
    return evaluate(verify.require_attestations, found, missing, verify_candidate)


def find_attestations(client: ImageSource, repo: str, digest: str, keyless: bool) -> list[Found]:
    found = []
    attached = fetch_attached_layers(client, repo, digest, "att", DSSE_ENVELOPE)
    if attached is not None:
        manifest, layers = attached
        for layer in layers:
            where = f"{attachment_tag(digest, 'att')}@{manifest} layer {layer.layer_digest}"
            try:
                found.append(Found(where, manifest, parse_envelope(layer.payload), layer=layer))
            except Malformed as exc:
                found.append(Found(where, manifest, layer=layer, problem=str(exc)))
    if keyless:  # a referrer bundle is keyless by construction (Fulcio certificate, Rekor entry)
        for bundle in fetch_bundles(client, repo, digest):
            where = f"referrer {bundle.manifest_digest}"
            if bundle.problem:
                found.append(Found(where, bundle=bundle, problem=bundle.problem))
                continue
            assert bundle.raw is not None, "a bundle read without a problem has its bytes"
            try:
                envelope = json.loads(bundle.raw).get("dsseEnvelope")
            except (ValueError, AttributeError):
                envelope = None
            if envelope is None:
                continue  # a message-signature bundle: a signature, not an attestation
            try:
                found.append(Found(where, envelope=parse_envelope(json.dumps(envelope).encode()), bundle=bundle))
            except Malformed as exc:
                found.append(Found(where, bundle=bundle, problem=str(exc)))
    return found


def _verify_candidate(wanted: AttestationRequirement, name: str, candidate: Found, statement: dict[str, Any],
                      digest: str, trust: dict[str, Trust]) -> dict[str, Any] | Failure:
    failures = []
    for entry_name in wanted.trust:
        signer = _signed_by(entry_name, trust[entry_name], candidate, wanted.type, digest)
        if isinstance(signer, Failure):
            failures.append(Failure(signer.category, f"{name}: {candidate.where}: {signer.detail}"))
            continue
        named = subject_digests(statement, digest.partition(":")[0])
        if digest not in named:
            return Failure("subject mismatch", f"{name}: the statement in {candidate.where} names "
                                               f"{', '.join(named[:3]) or 'no subject digest'}, the image is {digest}")
        wrong = mismatch(statement.get("predicate"), wanted.match)
        if wrong is not None:
            return Failure("attestation mismatch", f"{name}: {wrong} (in {candidate.where})")
        evidence = {"type": wanted.type, "status": "verified", "attestation": candidate.where, "signer": signer,
                    **summary(statement)}
        if candidate.manifest:
            evidence["attestation_manifest"] = candidate.manifest
        return evidence
    return worst(failures)


def _signed_by(entry_name: str, entry: Trust, candidate: Found, predicate_type: str,
               digest: str) -> dict[str, Any] | Failure:
    """Who signed the envelope, when `entry` vouches for it; a Failure otherwise."""
    if candidate.bundle is not None:
        if entry.keyless is None:
            return Failure("wrong key", f"a sigstore bundle is keyless; trust entry '{entry_name}' is a key")
        from regsync.trust.sigstore import verify_bundle
        from regsync.trust.keyless import load_trust_root

        outcome: dict[str, Any] | Failure = verify_bundle(
            entry_name, entry.keyless, load_trust_root(entry, entry_name), candidate.bundle, digest, (predicate_type,))
        if isinstance(outcome, Failure) and outcome.category == "payload names another digest":
            return Failure("subject mismatch", outcome.detail)
        return outcome
    envelope = candidate.envelope
    assert envelope is not None, "a candidate without a problem or a bundle is a parsed .att layer"
    if entry.cosign_key is not None:
        return _keyed(entry_name, entry, envelope)
    return _keyless_legacy(entry_name, entry, candidate, envelope)


def _keyed(entry_name: str, entry: Trust, envelope: Envelope) -> dict[str, Any] | Failure:
    key = load_entry_key(entry_name, entry.cosign_key)
    pae = envelope.pae()
    malformed = None
    for signature in envelope.signatures:
        try:
            if key.verify(signature, pae):
                return {"method": "cosign-key", "trust": entry_name, "key_fingerprint": key.fingerprint,
                        "algorithm": key.algorithm}
        except MalformedSignature as exc:
            malformed = str(exc)
    if malformed and len(envelope.signatures) == 1:
        return Failure("signature invalid", f"the DSSE signature is {malformed}")
    return Failure("wrong key", f"no DSSE signature verifies with trust entry '{entry_name}' ({key.fingerprint})")


def _keyless_legacy(entry_name: str, entry: Trust, candidate: Found, envelope: Envelope) -> dict[str, Any] | Failure:
    from regsync.trust.keyless import Refusal, fulcio_issuer, load_trust_root, signer_identity, \
        verify_legacy_certificate

    layer, keyless = candidate.layer, entry.keyless
    assert layer is not None and keyless is not None, "a .att layer, checked by a keyless entry"
    root = load_trust_root(entry, entry_name)
    try:
        cert, rekor, signed_at = verify_legacy_certificate(entry_name, keyless, root, layer)
    except Refusal as exc:
        return Failure(exc.category, exc.detail)
    if not _log_entry_binds(rekor["body"], cert, layer.payload, envelope):
        return Failure("signature invalid", "the Rekor entry does not record this certificate and envelope")
    key = cert.public_key()
    pae = envelope.pae()
    for signature in envelope.signatures:
        try:
            if isinstance(key, ec.EllipticCurvePublicKey):
                key.verify(signature, pae, ec.ECDSA(hashes.SHA256()))
                return {"method": "cosign-keyless", "trust": entry_name, "identity": signer_identity(cert),
                        "issuer": fulcio_issuer(cert), "rekor_log_index": rekor["logIndex"],
                        "integrated_time": signed_at.isoformat()}
        except (InvalidSignature, ValueError):
            continue
    return Failure("signature invalid", "the DSSE signature does not verify with the certificate's key")


def _log_entry_binds(body: bytes, cert: x509.Certificate, envelope_bytes: bytes, envelope: Envelope) -> bool:
    """The Rekor entry is about this certificate, this envelope and this payload (what cosign logs
    for `attest`: an `intoto` 0.0.1 entry; newer cosign may log `dsse` 0.0.1)."""
    try:
        doc = json.loads(body)
        spec = doc["spec"]
        payload_hash = hashlib.sha256(envelope.payload).hexdigest()
        if doc["kind"] == "intoto":
            content = spec["content"]
            return (content["hash"]["value"] == hashlib.sha256(envelope_bytes).hexdigest()
                    and content["payloadHash"]["value"] == payload_hash
                    and _same_cert(spec["publicKey"], cert))
        if doc["kind"] == "dsse":
            return (spec["payloadHash"]["value"] == payload_hash
                    and any(_same_cert(s["verifier"], cert) and base64.b64decode(s["signature"]) in envelope.signatures
                            for s in spec["signatures"]))
    except (KeyError, TypeError, ValueError, binascii.Error):
        return False
    return False


def _same_cert(b64_pem: str | bytes, cert: x509.Certificate) -> bool:
    return x509.load_pem_x509_certificate(base64.b64decode(b64_pem)) == cert

