"""cosign's own private key file, as `cosign generate-key-pair` writes `cosign.key`.

A PEM block labelled `ENCRYPTED SIGSTORE PRIVATE KEY` (older cosign: `ENCRYPTED COSIGN PRIVATE
KEY`) around the JSON of go-securesystemslib's `encrypted` package: scrypt turns the password and
a 32-byte salt into a 32-byte key, and NaCl secretbox (XSalsa20-Poly1305) seals the PKCS#8 DER
key with it. Sources: sigstore/cosign pkg/cosign/keys.go (`LoadPrivateKey`, the PEM labels) and
secure-systems-lab/go-securesystemslib encrypted/encrypted.go (`Decrypt`, the JSON and the
accepted scrypt parameters).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re

import nacl.exceptions
import nacl.secret

PEM_LABELS = ("ENCRYPTED SIGSTORE PRIVATE KEY", "ENCRYPTED COSIGN PRIVATE KEY")
# go-securesystemslib's Legacy, Standard and OWASP strengths, the only ones it decrypts. Checked
# before scrypt runs, so a crafted file cannot make it claim gigabytes of memory.
SCRYPT_PARAMS = {(32768, 8, 1), (65536, 8, 1), (131072, 8, 1)}
_PEM = re.compile(rb"-----BEGIN (%s)-----\s*([A-Za-z0-9+/=\s]*?)\s*-----END \1-----" %
                  b"|".join(label.encode() for label in PEM_LABELS))


class DamagedKeyFile(ValueError):
    """Not a well-formed cosign key file (the message says what is wrong, never with key bytes)."""


class CannotDecrypt(ValueError):
    """The password does not open the box: a wrong password, or a ciphertext changed since."""


def is_cosign_key(pem: bytes) -> bool:
    return any(b"-----BEGIN " + label.encode() + b"-----" in pem for label in PEM_LABELS)


def decrypt(pem: bytes, password: bytes) -> bytes:
    """The PKCS#8 DER key inside a cosign.key."""
    match = _PEM.search(pem)
    if match is None:
        raise DamagedKeyFile("its PEM block is cut or has characters base64 does not use")
    try:
        doc = json.loads(base64.b64decode(re.sub(rb"\s+", b"", match.group(2)), validate=True))
        kdf, cipher = doc["kdf"], doc["cipher"]
        params = (kdf["params"]["N"], kdf["params"]["r"], kdf["params"]["p"])
        salt, nonce = _b64(kdf["salt"]), _b64(cipher["nonce"])
        ciphertext = _b64(doc["ciphertext"])
    except (binascii.Error, ValueError, KeyError, TypeError):
        raise DamagedKeyFile("its content is not the JSON cosign writes") from None
    if kdf.get("name") != "scrypt" or cipher.get("name") != "nacl/secretbox":
        raise DamagedKeyFile(f"unknown kdf {kdf.get('name')!r} or cipher {cipher.get('name')!r}")
    if params not in SCRYPT_PARAMS or not all(type(value) is int for value in params):
        raise DamagedKeyFile(f"unsupported scrypt parameters N={params[0]}, r={params[1]}, p={params[2]}")
    if len(nonce) != nacl.secret.SecretBox.NONCE_SIZE:
        raise DamagedKeyFile("its nonce is not 24 bytes")
    n, r, p = params
    # hashlib's default maxmem (32 MiB) is below what scrypt needs at N=32768, r=8 (128·r·N bytes)
    key = hashlib.scrypt(password, salt=salt, n=n, r=r, p=p, dklen=32, maxmem=2 * 128 * r * n)
    try:
        return nacl.secret.SecretBox(key).decrypt(ciphertext, nonce)
    except nacl.exceptions.CryptoError:
        raise CannotDecrypt() from None


def _b64(value) -> bytes:
    if not isinstance(value, str):
        raise TypeError
    return base64.b64decode(value, validate=True)
