"""Public keys as cosign writes them (`cosign.pub`, PEM SubjectPublicKeyInfo) and signature checks.

All primitives come from `cryptography`; this module only chooses the scheme cosign uses for each
key type: ECDSA with SHA-256 (DER signatures), RSA PKCS#1 v1.5 with SHA-256, and pure Ed25519.
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from regsync.errors import PolicyError
from regsync.content.files import read_local_file

MAX_KEY_BYTES = 64 * 1024
MAX_SIGNATURE_BYTES = 16 * 1024  # base64 of an RSA-4096 signature is 684 bytes


class MalformedSignature(ValueError):
    """The bytes cannot be a signature of this key's type at all (as opposed to a wrong key)."""


@dataclass(frozen=True)
class PublicKey:
    name: str          # the trust entry's name in the policy
    key: ec.EllipticCurvePublicKey | rsa.RSAPublicKey | ed25519.Ed25519PublicKey
    fingerprint: str   # sha256 of the DER SubjectPublicKeyInfo, the key id sigstore tools print

    @property
    def algorithm(self) -> str:
        if isinstance(self.key, ec.EllipticCurvePublicKey):
            return f"ecdsa-{self.key.curve.name}-sha256"
        if isinstance(self.key, rsa.RSAPublicKey):
            return f"rsa-{self.key.key_size}-pkcs1v15-sha256"
        return "ed25519"

    def verify(self, signature: bytes, payload: bytes) -> bool:
        """True when `signature` is this key's over `payload`; MalformedSignature when not a signature."""
        if not looks_like_signature(signature):
            raise MalformedSignature(f"{len(signature)} bytes that are no ECDSA, RSA or Ed25519 signature")
        try:
            if isinstance(self.key, ec.EllipticCurvePublicKey):
                self.key.verify(signature, payload, ec.ECDSA(hashes.SHA256()))
            elif isinstance(self.key, rsa.RSAPublicKey):
                _verify_rsa(self.key, signature, payload)
            else:
                self.key.verify(signature, payload)
        except (InvalidSignature, ValueError):
            return False
        return True


def _verify_rsa(key: rsa.RSAPublicKey, signature: bytes, payload: bytes) -> None:
    try:
        key.verify(signature, payload, padding.PKCS1v15(), hashes.SHA256())
    except InvalidSignature:
        # cosign's default is PKCS#1 v1.5; keys from some KMS sign with PSS instead.
        key.verify(signature, payload, padding.PSS(padding.MGF1(hashes.SHA256()), padding.PSS.AUTO),
                   hashes.SHA256())


def decode_blob_signature(raw: bytes) -> bytes:
    """A signature file as `cosign sign-blob` writes it (base64, whitespace allowed); ValueError when not one."""
    if len(raw) > MAX_SIGNATURE_BYTES:
        raise ValueError("too large to be a signature")
    return base64.b64decode(b"".join(raw.split()), validate=True)   # binascii.Error is a ValueError


def verifies(key: PublicKey, signature: bytes, payload: bytes) -> bool:
    """`key.verify`, where bytes that are no signature at all are simply not this key's."""
    try:
        return key.verify(signature, payload)
    except MalformedSignature:
        return False


def looks_like_signature(signature: bytes) -> bool:
    """Could these bytes be an ECDSA (DER), Ed25519 or RSA signature from *some* key?

    This separates a damaged signature (`signature invalid`) from a sound one by another key
    (`wrong key`): keyed cosign carries no key id, so nothing finer can be known.
    """
    if len(signature) in (64, 256, 384, 512):
        return True
    try:
        decode_dss_signature(signature)
    except ValueError:
        return False
    return True


def fingerprint(key) -> str:
    der = key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return "sha256:" + hashlib.sha256(der).hexdigest()


def _label(name: str) -> str:
    """A command's flag (`--key`) is named as such; anything else is a policy trust entry."""
    return name if name.startswith("--") else f"trust entry '{name}'"


def parse_public_key(pem: bytes, name: str, where: str) -> PublicKey:
    try:
        key = serialization.load_pem_public_key(pem)
    except (ValueError, UnsupportedAlgorithm):
        if b"PRIVATE KEY-----" in pem:  # PKCS#8, SEC1, PKCS#1, cosign's ENCRYPTED SIGSTORE PRIVATE KEY
            raise PolicyError(f"{_label(name)}: {where} is a private key, where the public key is needed "
                              f"(cosign.pub, or `openssl pkey -pubout`)") from None
        raise PolicyError(f"{_label(name)}: {where} is not a PEM public key") from None
    if isinstance(key, ec.EllipticCurvePublicKey):
        if key.curve.name not in ("secp256r1", "secp384r1", "secp521r1"):
            raise PolicyError(f"{_label(name)}: curve {key.curve.name} is not one cosign uses")
    elif not isinstance(key, (rsa.RSAPublicKey, ed25519.Ed25519PublicKey)):
        raise PolicyError(f"{_label(name)}: only ECDSA, RSA and Ed25519 keys are supported")
    return PublicKey(name, key, fingerprint(key))


def load_public_key(path: Path, name: str) -> PublicKey:
    pem = read_local_file(path, MAX_KEY_BYTES, _label(name), "a public key")
    return parse_public_key(pem, name, str(path))


def load_entry_key(name: str, cosign_key: Path | None) -> PublicKey:
    """The key of a trust entry that `bundle.trust` or `approval.trust` names."""
    if cosign_key is None:  # policy check refuses this already (policy/__init__.py, _check_key_entries)
        raise PolicyError(f"trust entry '{name}' must be a cosign_key")
    return load_public_key(cosign_key, name)
