"""Private signing keys (PKCS#8 PEM or cosign.key) and the signature scheme cosign uses for each
key type. Used to sign on import (kinds/image/signing.py), audit records, bundles and approvals.
"""

from __future__ import annotations

import hashlib
import os
import threading
from pathlib import Path

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa

from regsync.errors import PolicyError
from regsync.content.files import read_local_file
from regsync.trust import cosign_key
from regsync.trust.keys import MAX_KEY_BYTES
COSIGN_PASSWORD_ENV = "COSIGN_PASSWORD"   # where cosign itself reads a key's password
_cache: dict[bytes, object] = {}
_cache_lock = threading.Lock()


def load_private_key(path: Path, password_env: str | None = None, what: str = "sign.key"):
    """A PKCS#8 PEM private key, encrypted or not, or cosign's own `cosign.key`; `what` names the
    policy key in errors. The password is read from `password_env`; a cosign.key without one reads
    COSIGN_PASSWORD, as cosign itself does. Loaded once per file and password: scrypt is slow on
    purpose, and every signed push asks again."""
    pem = _read_key(Path(path), what)
    cosign = cosign_key.is_cosign_key(pem)
    env = password_env or (COSIGN_PASSWORD_ENV if cosign else None)
    password = _password(env, what) if env else None
    cache_key = hashlib.sha256(hashlib.sha256(pem).digest() + hashlib.sha256(password or b"").digest()).digest()
    with _cache_lock:
        if cache_key not in _cache:
            key = _open_cosign_key(pem, password, path, env, what) if cosign else _open_pkcs8(pem, password, path, what)
            if not isinstance(key, (ec.EllipticCurvePrivateKey, rsa.RSAPrivateKey, ed25519.Ed25519PrivateKey)):
                raise PolicyError(f"{what}: only ECDSA, RSA and Ed25519 keys are supported")
            _cache[cache_key] = key
        return _cache[cache_key]


def _read_key(path: Path, what: str) -> bytes:
    return read_local_file(path, MAX_KEY_BYTES, what, "a private key")


def _password(env: str, what: str) -> bytes:
    if env not in os.environ:
        raise PolicyError(f"{what}: environment variable {env} (the key's password) is not set")
    return os.environ[env].encode()


def _open_pkcs8(pem: bytes, password: bytes | None, path, what: str):
    try:
        return serialization.load_pem_private_key(pem, password)
    except (ValueError, TypeError, UnsupportedAlgorithm):
        # Never echo the password or the key; say what to check.
        raise PolicyError(f"{what}: {path} is not a PKCS#8 PEM private key, or the password is wrong") from None


def _open_cosign_key(pem: bytes, password: bytes | None, path, env: str | None, what: str):
    try:
        der = cosign_key.decrypt(pem, password or b"")  # never None: a cosign.key always has a password env
    except cosign_key.CannotDecrypt:
        raise PolicyError(f"{what}: {path} does not open with the password in {env} (a wrong password, "
                          f"or the file was changed)") from None
    except cosign_key.DamagedKeyFile as exc:
        raise PolicyError(f"{what}: {path} is a damaged cosign key file: {exc}") from None
    try:
        return serialization.load_der_private_key(der, None)
    except (ValueError, TypeError, UnsupportedAlgorithm):
        raise PolicyError(f"{what}: {path} decrypts, but not to a PKCS#8 private key") from None


def sign_bytes(key, payload: bytes) -> bytes:
    """The signature scheme cosign uses for each key type (the same one keys.PublicKey.verify checks)."""
    if isinstance(key, ec.EllipticCurvePrivateKey):
        return key.sign(payload, ec.ECDSA(hashes.SHA256()))
    if isinstance(key, rsa.RSAPrivateKey):
        return key.sign(payload, padding.PKCS1v15(), hashes.SHA256())
    return key.sign(payload)

