"""Content digests (`algorithm:hex`): parsed, and checked with their own algorithm, in one place.

The OCI image spec registers sha256 and sha512; anything else cannot be verified, so it is a
refusal, never a pass. A digest is checked against bytes only with the algorithm it names: a
sha512 reference is never satisfied by a sha256 the server announces for the same bytes.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

from regsync.errors import VerificationError

HEX_LENGTHS = {"sha256": 64, "sha512": 128}
_HEX = re.compile(r"[0-9a-f]+")


@dataclass(frozen=True)
class Digest:
    algorithm: str
    hex: str

    @classmethod
    def parse(cls, text: object, where: str = "") -> "Digest":
        """A supported, well-formed digest; VerificationError (a refusal) otherwise."""
        prefix = f"{where}: " if where else ""
        shown = str(text)[:150]
        algorithm, sep, hexdigest = str(text).partition(":") if isinstance(text, str) else ("", "", "")
        if not sep or not algorithm:
            raise VerificationError(f"{prefix}malformed digest '{shown}'")
        if algorithm not in HEX_LENGTHS:
            raise VerificationError(f"{prefix}unsupported digest algorithm '{algorithm[:20]}' in '{shown}'")
        if len(hexdigest) != HEX_LENGTHS[algorithm] or not _HEX.fullmatch(hexdigest):
            raise VerificationError(f"{prefix}malformed digest '{shown}' (a {algorithm} digest is "
                                    f"{HEX_LENGTHS[algorithm]} lowercase hex digits)")
        return cls(algorithm, hexdigest)

    def __str__(self) -> str:
        return f"{self.algorithm}:{self.hex}"

    def hasher(self):
        return hashlib.new(self.algorithm)

    def of(self, data: bytes) -> str:
        """The digest of `data` in this digest's algorithm."""
        return digest_of(data, self.algorithm)


def digest_of(data: bytes, algorithm: str = "sha256") -> str:
    return f"{algorithm}:{hashlib.new(algorithm, data).hexdigest()}"


def is_digest(reference: str) -> bool:
    """A manifest reference is a digest, not a tag (a tag never contains ':')."""
    return ":" in reference


def matches(data: bytes, digest: str) -> bool:
    """Whether `data` has `digest`, checked with its own algorithm (False when it is unusable)."""
    try:
        return Digest.parse(digest).of(data) == digest
    except VerificationError:
        return False
