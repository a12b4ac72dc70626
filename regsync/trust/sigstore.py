"""Sigstore bundles attached to an image as OCI 1.1 referrers, verified by the `sigstore` package.

A referrer of artifactType `application/vnd.dev.sigstore.bundle.v0.3+json` holds the bundle as
its layer. Either its message signature covers the image manifest's sha256 (the image digest
itself), or (cosign v3) its DSSE envelope signs an in-toto statement whose subject is that digest. `sigstore.verify.Verifier`, built from the
policy's trusted_root.json (no network), checks everything: the chain to Fulcio at the signing
time, the SCT, the Rekor inclusion proof and signed checkpoint, the SET, the certificate's
validity at the integrated time, our identity/issuer policy, the signature over the digest and
the log entry's consistency with all of it.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from functools import lru_cache

from regsync.policy.models import COSIGN_SIGNATURE_PREDICATES, Keyless
from regsync.trust.failures import Failure
from regsync.trust.keyless import Constraints, Refusal, check_validity, fulcio_issuer, signer_identity


@lru_cache(maxsize=16)
def verifier(trust_root):
    from sigstore.verify import Verifier

    return Verifier(trusted_root=trust_root.sigstore_root)


def verify_bundle(name: str, wanted: Keyless, root, found, digest: str,
                  predicate_types: tuple[str, ...] = COSIGN_SIGNATURE_PREDICATES):
    """Evidence for the audit record, or a Failure with a documented category. `found`: a bundle
    as read from where it was attached (kinds/image/signatures.FoundBundle: manifest_digest, raw, problem).

    A DSSE bundle is a signature only when its in-toto predicate type is one of `predicate_types`:
    a verified SLSA provenance or SBOM attestation says something about the image, not that the
    signer vouches for it."""
    from sigstore.errors import Error as SigstoreError
    from sigstore.hashes import Hashed
    from sigstore.models import Bundle
    from sigstore_models.common.v1 import HashAlgorithm

    if found.problem:
        category, _, detail = found.problem.partition(": ")
        return Failure(category if detail else "signature invalid", detail or found.problem)
    try:
        bundle = Bundle.from_json(found.raw)
    except (SigstoreError, ValueError) as exc:
        return Failure("signature invalid", f"referrer {found.manifest_digest} is not a sigstore bundle: "
                                            f"{str(exc).splitlines()[0][:200]}")
    algorithm, _, hexdigest = digest.partition(":")
    hashed = Hashed(algorithm={"sha512": HashAlgorithm.SHA2_512}.get(algorithm, HashAlgorithm.SHA2_256),
                    digest=bytes.fromhex(hexdigest))
    predicate = None
    try:
        if bundle._inner.message_signature is not None:
            verifier(root).verify_artifact(hashed, bundle, Constraints(name, wanted))
        else:
            payload_type, payload = verifier(root).verify_dsse(bundle, Constraints(name, wanted))
            statement = _statement(payload_type, payload)
            predicate = statement.get("predicateType")
            if statement and predicate not in predicate_types:
                return Failure("unsigned", f"bundle {found.manifest_digest} is an attestation of predicate type "
                                           f"{str(predicate)[:200]}, which trust entry '{name}' does not count as "
                                           f"a signature (predicate_types: {', '.join(predicate_types)})")
            named = _statement_subject(statement, digest)
            if named != digest:
                return Failure("payload names another digest", f"the in-toto statement in bundle "
                                                               f"{found.manifest_digest} names {named}, the image is {digest}")
    except Refusal as exc:
        return Failure(exc.category, exc.detail)
    except SigstoreError as exc:
        return _classify(exc, bundle, found, digest)
    evidence = {"method": "sigstore-bundle", "trust": name, **signed_by(bundle), "bundle_manifest": found.manifest_digest,
                "verified_by": f"sigstore {_sigstore_version()} Verifier (trusted_root.json, offline)"}
    if predicate is not None:
        evidence["predicate_type"] = predicate
    return evidence


def signed_by(bundle) -> dict:
    """Who signed a verified sigstore bundle, and when Rekor logged it: the audit's evidence."""

    cert, entry = bundle.signing_certificate, bundle.log_entry._inner
    return {"identity": signer_identity(cert), "issuer": fulcio_issuer(cert),
            "rekor_log_index": int(entry.log_index), "integrated_time": _time(entry.integrated_time)}


def _statement(payload_type: str, payload: bytes) -> dict:
    """A (now verified) in-toto statement; empty when the payload is not one."""
    if payload_type != "application/vnd.in-toto+json":
        return {}
    try:
        statement = json.loads(payload)
    except ValueError:
        return {}
    return statement if isinstance(statement, dict) else {}


def _statement_subject(statement: dict, digest: str) -> str | None:
    """The subject digest of an in-toto statement: `digest` when it is among them."""
    try:
        subjects = statement["subject"]
        algorithm = digest.partition(":")[0]
        named = [f"{algorithm}:{s['digest'][algorithm]}" for s in subjects if algorithm in s.get("digest", {})]
    except (ValueError, KeyError, TypeError, AttributeError):
        return None
    return digest if digest in named else (named[0] if named else None)


def _classify(exc, bundle, found, digest: str):
    """Name sigstore's refusal in our categories; the message is kept as the detail."""

    message = str(exc).splitlines()[0][:300]
    signed_at = bundle.log_entry._inner.integrated_time
    if signed_at:
        try:  # an integrated time outside the validity is why the chain check failed
            check_validity(bundle.signing_certificate, datetime.fromtimestamp(int(signed_at), timezone.utc))
        except Refusal as expired:
            return Failure(expired.category, expired.detail)
    if "message digest mismatch" in message:
        return Failure("payload names another digest", f"bundle {found.manifest_digest} signs another digest "
                                                       f"than {digest}")
    if "Signature is invalid" in message or "inconsistent" in message:
        return Failure("signature invalid", f"bundle {found.manifest_digest}: {message}")
    return Failure("untrusted certificate", f"bundle {found.manifest_digest}: {message}")


def _time(seconds) -> str | None:
    return datetime.fromtimestamp(int(seconds), timezone.utc).isoformat() if seconds else None


def _sigstore_version() -> str:
    import sigstore

    return sigstore.__version__

