"""Sign on import: the pushed digest is signed with the enterprise's key, exactly as
`cosign sign --key` would, so internal clusters can enforce admission policy on it.

The signature goes to the target's `sha256-<hex>.sig` tag; signatures already there (copied from
upstream) are kept and ours is appended as one more layer, as cosign does when signing again.
"""

from __future__ import annotations

import base64
import json
import os
from io import BytesIO
from pathlib import Path

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa

from regsync.errors import NotFound, PolicyError
from regsync.oci.client import RegistryClient
from regsync.oci.manifest import OCI_MANIFEST, Descriptor, Manifest
from regsync.policy.models import SignOnImport
from regsync.transfer import VerifyingReader, digest_of
from regsync.verify.cosign import SIGNATURE_ANNOTATION, SIGNATURE_TYPE, SIMPLE_SIGNING, attachment_tag
from regsync.verify.keys import fingerprint

OCI_CONFIG = "application/vnd.oci.image.config.v1+json"


def load_private_key(path: Path, password_env: str | None = None, what: str = "sign.key"):
    """A PKCS#8 PEM private key (optionally encrypted); `what` names the policy key in errors."""
    password = None
    if password_env:
        if password_env not in os.environ:
            raise PolicyError(f"{what}: environment variable {password_env} (the key's password) is not set")
        password = os.environ[password_env].encode()
    try:
        pem = Path(path).read_bytes()
        key = serialization.load_pem_private_key(pem, password)
    except OSError as exc:
        raise PolicyError(f"{what}: cannot read {path}: {exc.strerror}") from None
    except (ValueError, TypeError):
        # Never echo the password or the key; say what to check.
        raise PolicyError(f"{what}: {path} is not a PKCS#8 PEM private key, or the password is wrong") from None
    if not isinstance(key, (ec.EllipticCurvePrivateKey, rsa.RSAPrivateKey, ed25519.Ed25519PrivateKey)):
        raise PolicyError(f"{what}: only ECDSA, RSA and Ed25519 keys are supported")
    return key


def sign_bytes(key, payload: bytes) -> bytes:
    """The signature scheme cosign uses for each key type (the same one keys.PublicKey.verify checks)."""
    if isinstance(key, ec.EllipticCurvePrivateKey):
        return key.sign(payload, ec.ECDSA(hashes.SHA256()))
    if isinstance(key, rsa.RSAPrivateKey):
        return key.sign(payload, padding.PKCS1v15(), hashes.SHA256())
    return key.sign(payload)


def sign_pushed(config: SignOnImport, client: RegistryClient, repo: str, digest: str) -> dict:
    key = load_private_key(config.key, config.password_env)
    payload = json.dumps({"critical": {"identity": {"docker-reference": f"{client.host}/{repo}"},
                                       "image": {"docker-manifest-digest": digest},
                                       "type": SIGNATURE_TYPE},
                          "optional": None}, separators=(",", ":")).encode()
    layer = _push_bytes(client, repo, payload)
    layer.update(mediaType=SIMPLE_SIGNING,
                 annotations={SIGNATURE_ANNOTATION: base64.b64encode(sign_bytes(key, payload)).decode()})
    tag = attachment_tag(digest)
    try:
        doc = dict(client.get_manifest(repo, tag).doc)
    except NotFound:
        doc = {"schemaVersion": 2, "mediaType": OCI_MANIFEST,
               "config": {"mediaType": OCI_CONFIG, **_push_bytes(client, repo, b"{}")}, "layers": []}
    doc["layers"] = list(doc.get("layers") or []) + [layer]
    raw = json.dumps(doc, separators=(",", ":")).encode()
    manifest = Manifest(raw, OCI_MANIFEST, digest_of(raw), doc)
    client.put_manifest(repo, tag, manifest)
    return {"method": "cosign-key", "key_fingerprint": fingerprint(key.public_key()),
            "signature_manifest": manifest.digest, "tag": tag}


def _push_bytes(client: RegistryClient, repo: str, data: bytes) -> dict:
    digest = digest_of(data)
    if not client.blob_exists(repo, digest):
        reader = VerifyingReader(BytesIO(data).read, digest, len(data), client.ref(repo, digest))
        client.upload_blob(repo, Descriptor("application/octet-stream", digest, len(data)), reader)
    return {"digest": digest, "size": len(data)}
