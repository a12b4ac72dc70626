"""Sign on import: the pushed digest is signed with the enterprise's key, exactly as
`cosign sign --key` would, so internal clusters can enforce admission policy on it.

The signature goes to the target's `sha256-<hex>.sig` tag; signatures already there (copied from
upstream) are kept and ours is appended as one more layer, as cosign does when signing again. What
is signed (the simple-signing payload) is trust/payload.py's, how (the key) trust/signing.py's.
"""

from __future__ import annotations

import base64
import json
from io import BytesIO
from typing import Any

from regsync.content.digest import digest_of
from regsync.content.reader import VerifyingReader
from regsync.errors import NotFound
from regsync.kinds.image.client import RegistryClient
from regsync.kinds.image.cosign import attachment_tag
from regsync.kinds.image.manifest import OCI_MANIFEST, Descriptor, Manifest
from regsync.kinds.image.policy import SignOnImport
from regsync.trust.keys import fingerprint
from regsync.trust.payload import SIGNATURE_ANNOTATION, SIMPLE_SIGNING, simple_signing_payload
from regsync.trust.signing import load_private_key, sign_bytes

OCI_CONFIG = "application/vnd.oci.image.config.v1+json"


def sign_pushed(config: SignOnImport, client: RegistryClient, repo: str, digest: str) -> dict[str, Any]:
    key = load_private_key(config.key, config.password_env)
    payload = simple_signing_payload(f"{client.host}/{repo}", digest)
    layer = _push_bytes(client, repo, payload)
    layer.update(mediaType=SIMPLE_SIGNING,
                 annotations={SIGNATURE_ANNOTATION: base64.b64encode(sign_bytes(key, payload)).decode()})
    tag = attachment_tag(digest)
    try:
        doc = dict(client.get_manifest(repo, tag).doc)
    except NotFound:
        doc = {"schemaVersion": 2, "mediaType": OCI_MANIFEST,
               "config": {"mediaType": OCI_CONFIG, **_push_bytes(client, repo, b"{}")}, "layers": []}
    layers = doc.get("layers")
    doc["layers"] = (list(layers) if isinstance(layers, list) else []) + [layer]
    raw = json.dumps(doc, separators=(",", ":")).encode()
    manifest = Manifest(raw, OCI_MANIFEST, digest_of(raw), doc)
    client.put_manifest(repo, tag, manifest)
    return {"method": "cosign-key", "key_fingerprint": fingerprint(key.public_key()),
            "signature_manifest": manifest.digest, "tag": tag}


def _push_bytes(client: RegistryClient, repo: str, data: bytes) -> dict[str, Any]:
    digest = digest_of(data)
    if not client.blob_exists(repo, digest):
        reader = VerifyingReader(BytesIO(data).read, digest, len(data), client.ref(repo, digest))
        client.upload_blob(repo, Descriptor("application/octet-stream", digest, len(data)), reader)
    return {"digest": digest, "size": len(data)}
