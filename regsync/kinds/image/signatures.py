"""Signature policy on one source digest: any trusted signature suffices, or all (require_all).

The signatures are read from the registry here (cosign `.sig` tags, sigstore bundle referrers);
trust/ decides whether each trust entry accepts them (reasons: trust/failures.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from regsync.errors import RegistryError, VerificationError
from regsync.kinds.image.policy import ImageVerify
from regsync.kinds.image.source import ImageSource
from regsync.policy.models import Trust
from regsync.kinds.image.cosign import attachment_tag, fetch_signatures
from regsync.kinds.image.referrers import list_referrers, read_artifact_layer
from regsync.trust.entry import verify_entry
from regsync.trust.failures import Failure, worst
BUNDLE_ARTIFACT_TYPES = ("application/vnd.dev.sigstore.bundle.v0.3+json",
                         "application/vnd.dev.sigstore.bundle+json;version=0.3")


@dataclass(frozen=True)
class FoundBundle:
    manifest_digest: str
    raw: bytes | None
    problem: str | None = None   # a referrer that could not be read: a refusal reason, not a crash


def check_signatures(client: ImageSource, repo: str, digest: str, verify: ImageVerify,
                     trust: dict[str, Trust]) -> dict[str, Any] | None:
    """Evidence for the audit record; raises VerificationError when `required` is not met."""
    if verify.signature == "off":
        return None
    try:
        return _verified(client, repo, digest, verify, trust)
    except VerificationError as exc:
        if verify.signature == "required":
            raise
        return {"status": "unverified", "reason": exc.reason}


def _verified(client: ImageSource, repo: str, digest: str, verify: ImageVerify,
              trust: dict[str, Trust]) -> dict[str, Any]:
    found = fetch_signatures(client, repo, digest)
    bundles = []
    if any(trust[name].keyless is not None for name in verify.trust):
        bundles = fetch_bundles(client, repo, digest)
    if found is None and not bundles:
        raise VerificationError(f"unsigned: no cosign signature for {digest} "
                                f"(no tag {attachment_tag(digest)} in {client.name}/{repo}"
                                f"{', no sigstore bundle referrer' if any(trust[n].keyless for n in verify.trust) else ''})")
    manifest_digest, payloads = found or (None, [])
    if not payloads and not bundles:
        raise VerificationError(f"unsigned: {client.name}/{repo}:{attachment_tag(digest)} holds no signature")
    evidence: list[dict[str, Any]] = []
    failures: list[Failure] = []
    for name in verify.trust:
        outcome = verify_entry(name, trust[name], payloads, digest, bundles)
        if isinstance(outcome, dict):
            evidence.append(outcome)
        else:
            failures.append(outcome)
    if failures and (verify.require_all or not evidence):
        raise VerificationError(worst(failures).reason)
    return {"status": "verified", "signature_manifest": manifest_digest, "signers": evidence}


def fetch_bundles(client: ImageSource, repo: str, digest: str) -> list[FoundBundle]:
    found = []
    for descriptor in list_referrers(client, repo, digest):
        media_type = descriptor.get("artifactType")
        if media_type not in BUNDLE_ARTIFACT_TYPES:
            continue
        try:
            read = read_artifact_layer(client, repo, digest, descriptor, media_type)
        except (VerificationError, RegistryError) as exc:
            found.append(FoundBundle(descriptor["digest"], None, (exc.reason if isinstance(exc, VerificationError) else "") or str(exc)))
            continue
        if read is not None:
            found.append(FoundBundle(read[0].digest, read[1]))
    return found
