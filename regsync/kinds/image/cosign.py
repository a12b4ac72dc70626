"""Cosign signatures as they sit in a registry, in the legacy tag scheme every cosign version reads.

For an image `sha256:<hex>`, cosign pushes an OCI image manifest tagged `sha256-<hex>.sig` in the
same repository. Each layer of media type `application/vnd.dev.cosign.simplesigning.v1+json` is a
"simple signing" payload naming the image digest, with the signature over the payload's exact bytes
in the layer annotation `dev.cosignproject.cosign/signature` (base64); the payload format and the
annotation names are trust/payload.py's. Attestations and SBOMs use the same naming with `.att` and
`.sbom`.
"""

from __future__ import annotations

from typing import Any

from regsync.errors import NotFound, VerificationError
from regsync.kinds.image.source import ImageSource
from regsync.kinds.image.manifest import Manifest
from regsync.content.reader import read_small_blob
from regsync.trust.payload import MAX_PAYLOAD_BYTES, SIMPLE_SIGNING, SignedPayload

ATTACHMENT_SUFFIXES = ("sig", "att", "sbom")
MAX_SIGNATURE_LAYERS = 100


def attachment_tag(digest: str, suffix: str = "sig") -> str:
    """'sha256:ab…' → 'sha256-ab….sig' (cosign's tag for things attached to that digest)."""
    algorithm, _, hexdigest = digest.partition(":")
    return f"{algorithm}-{hexdigest}.{suffix}"


def fetch_signatures(client: ImageSource, repo: str, digest: str) -> tuple[str, list[SignedPayload]] | None:
    """(signature manifest digest, payloads) for `digest`, or None when the image is unsigned."""
    return fetch_attached_layers(client, repo, digest, "sig", SIMPLE_SIGNING)


def fetch_attached_layers(client: ImageSource, repo: str, digest: str, suffix: str,
                          media_type: str) -> tuple[str, list[SignedPayload]] | None:
    """(manifest digest, its `media_type` layers with their annotations) of the `sha256-<hex>.<suffix>`
    attachment of `digest`, or None when there is none. `.sig` holds simple-signing payloads,
    `.att` DSSE envelopes (cosign attest), both with the same keyless annotations."""
    tag = attachment_tag(digest, suffix)
    try:
        manifest = client.get_manifest(repo, tag)
    except NotFound:
        return None
    layers = manifest.doc.get("layers")
    if manifest.is_index or not isinstance(layers, list):
        raise VerificationError(f"signature invalid: {client.ref(repo, tag)} is not a cosign {suffix} manifest")
    signed = [layer for layer in layers if isinstance(layer, dict) and layer.get("mediaType") == media_type]
    if len(signed) > MAX_SIGNATURE_LAYERS:
        raise VerificationError(f"signature invalid: {client.ref(repo, tag)} has {len(signed)} layers, "
                                f"more than the {MAX_SIGNATURE_LAYERS} accepted")
    return manifest.digest, [_read_payload(client, repo, manifest, layer) for layer in signed]


def _read_payload(client: ImageSource, repo: str, manifest: Manifest, layer: dict[str, Any]) -> SignedPayload:
    where = f"{client.ref(repo, manifest.digest)} layer"
    digest, size = layer.get("digest"), layer.get("size")
    if not isinstance(digest, str) or not isinstance(size, int) or not 0 <= size <= MAX_PAYLOAD_BYTES:
        raise VerificationError(f"signature invalid: {where} has a malformed or oversized descriptor")
    payload = read_small_blob(client, repo, digest, size)
    annotations = got if isinstance(got := layer.get("annotations"), dict) else {}
    return SignedPayload.from_layer(digest, payload, annotations)

