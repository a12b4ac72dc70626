"""Signed bundles: `SHA256SUMS.sig` and `bundle.json.sig` as `cosign sign-blob --key` writes them
(base64 of the signature over the file's bytes; ECDSA P-256 signs SHA-256 and writes DER), so
`cosign verify-blob` and `openssl dgst -sha256 -verify` check them without regsync.

SHA256SUMS lists bundle.json, index.json and every blob, and every digest import trusts comes
from those files: one signature over it vouches for the whole bundle. Import checks it over the
very bytes it then parses, before any of them is read as authority.
"""

from __future__ import annotations

import base64
from pathlib import Path

from regsync.errors import NotFound, UsageError, VerificationError
from regsync.policy import LoadedPolicy
from regsync.content.files import write_atomically
from regsync.content.layout import open_regular
from regsync.trust.keys import (MAX_SIGNATURE_BYTES, PublicKey, decode_blob_signature, fingerprint, load_entry_key,
                                verifies)
from regsync.trust.signing import sign_bytes

SIGNED = ("SHA256SUMS", "bundle.json")


def signing_key_for(loaded: LoadedPolicy, key):
    """Check an export's key against the policy before anything is fetched: a bundle the far side
    would refuse is better refused here. Returns `key` (None: unsigned)."""
    config = loaded.policy.bundle
    if key is None:
        if config.signature == "required":
            raise UsageError("the policy requires signed bundles (bundle: {signature: required}): "
                             "pass --sign-key with the private key of one of " + ", ".join(config.trust))
        return None
    trusted = {k.fingerprint for k in trusted_keys(loaded)}
    if trusted and fingerprint(key.public_key()) not in trusted:
        raise UsageError(f"--sign-key is not the key of any bundle.trust entry ({', '.join(config.trust)}): "
                         f"import would refuse the bundle")
    return key


def forget_signatures(directory: Path) -> None:
    """Before the signed files are rewritten: a signature never outlives the bytes it covered."""
    for name in SIGNED:
        (directory / f"{name}.sig").unlink(missing_ok=True)


def sign_file(directory: Path, name: str, data: bytes, key) -> None:
    """`data`: the bytes just written to `name` (signed as written, never read back)."""
    write_atomically(directory / f"{name}.sig", base64.b64encode(sign_bytes(key, data)))


def trusted_keys(loaded: LoadedPolicy) -> list[PublicKey]:
    policy = loaded.policy
    return [load_entry_key(name, policy.trust[name].cosign_key) for name in policy.bundle.trust]


def check_signatures(root: Path, loaded: LoadedPolicy, checked: dict[str, bytes]) -> dict | None:
    """Verify the bundle's signatures over `checked` (name → the bytes import goes on to use) as
    the policy's `bundle:` demands; the evidence for the audit trail, or None when unsigned and
    allowed. Refuses (VerificationError) a missing signature that is required, and a wrong one always."""
    config = loaded.policy.bundle
    if config.signature == "off":
        return None
    keys = trusted_keys(loaded)
    evidence = None
    for name in SIGNED:
        signature = _read_signature(root, name)
        if signature is None:
            if name == "SHA256SUMS" and config.signature == "required":
                raise VerificationError(f"bundle signature: {name}.sig is missing, and the policy requires a "
                                        f"signed bundle (bundle: {{signature: required}})")
            continue
        signer = next((key for key in keys if verifies(key, signature, checked[name])), None)
        if signer is None:
            raise VerificationError(f"bundle signature: {name} is not signed by a key of bundle.trust "
                                    f"({', '.join(config.trust)}): altered after signing, or signed with another key")
        if name == "SHA256SUMS":
            evidence = {"method": "cosign-key", "trust": signer.name, "key_fingerprint": signer.fingerprint,
                        "algorithm": signer.algorithm, "signed": "SHA256SUMS"}
    return evidence


def _read_signature(root: Path, name: str) -> bytes | None:
    try:
        with open_regular(root / f"{name}.sig") as handle:
            raw = handle.read(MAX_SIGNATURE_BYTES + 1)
    except NotFound:
        return None
    try:
        return decode_blob_signature(raw)
    except ValueError:
        raise VerificationError(f"bundle signature: {name}.sig is not a base64 signature") from None
