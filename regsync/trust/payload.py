"""What a cosign signature is, wherever it is stored: the "simple signing" payload naming an image
digest, and the annotations that carry the signature and its keyless evidence.

A payload of media type `application/vnd.dev.cosign.simplesigning.v1+json` names the image digest;
the signature over the payload's exact bytes sits in the annotation
`dev.cosignproject.cosign/signature` (base64), a keyless signature's certificate, chain and Rekor
bundle in the `dev.sigstore.cosign/...` annotations. Where these are found (a `.sig` tag in a
registry) is the image kind's business: kinds/image/cosign.py reads them, kinds/image/signing.py pushes.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass, field

SIMPLE_SIGNING = "application/vnd.dev.cosign.simplesigning.v1+json"
SIGNATURE_ANNOTATION = "dev.cosignproject.cosign/signature"
CERTIFICATE_ANNOTATION = "dev.sigstore.cosign/certificate"
CHAIN_ANNOTATION = "dev.sigstore.cosign/chain"
BUNDLE_ANNOTATION = "dev.sigstore.cosign/bundle"
SIGNATURE_TYPE = "cosign container image signature"

# A payload is a few hundred bytes; cosign itself refuses far less than this.
MAX_PAYLOAD_BYTES = 1 << 20


@dataclass(frozen=True)
class SignedPayload:
    layer_digest: str
    payload: bytes
    signature: bytes | None                 # None when the annotation is missing or not base64
    annotations: dict = field(default_factory=dict, compare=False)

    @classmethod
    def from_layer(cls, layer_digest: str, payload: bytes, annotations: dict) -> SignedPayload:
        """The payload with the signature decoded from its annotation (None when absent or not base64)."""
        return cls(layer_digest, payload, _b64(annotations.get(SIGNATURE_ANNOTATION)), annotations)

    def signed_digest(self) -> str | None:
        """The image digest the payload vouches for, or None when it is not a cosign payload."""
        try:
            doc = json.loads(self.payload)
            critical = doc["critical"]
            if critical.get("type", "").lower() != SIGNATURE_TYPE:
                return None
            digest = critical["image"]["docker-manifest-digest"]
        except (ValueError, KeyError, TypeError, AttributeError):
            return None
        return digest if isinstance(digest, str) else None


def simple_signing_payload(reference: str, digest: str) -> bytes:
    """The payload `cosign sign` writes for `digest` pushed as `reference` (host/repository)."""
    return json.dumps({"critical": {"identity": {"docker-reference": reference},
                                    "image": {"docker-manifest-digest": digest},
                                    "type": SIGNATURE_TYPE},
                       "optional": None}, separators=(",", ":")).encode()


def _b64(text) -> bytes | None:
    if not isinstance(text, str) or not text:
        return None
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        return None
