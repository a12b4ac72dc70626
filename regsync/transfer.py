"""The one streaming path for every byte regsync moves (image blobs and package files alike).

Content is hashed while it streams. The chunk that completes the expected size is handed on only
after the digest has been checked, so a receiver (a registry's PUT, a file) never sees the final
byte of content that does not match: a mismatching upload cannot be committed.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable, Iterator

import requests
import urllib3

from regsync.errors import RegistryError, VerificationError

# What a dropped or reset source connection raises mid-read, depending on where it breaks.
_READ_ERRORS = (OSError, urllib3.exceptions.HTTPError, requests.RequestException)


class SourceReadError(RegistryError):
    """The source stream broke mid-transfer: transient, retried from a fresh stream."""

    def __init__(self, what: str, count: int, size: int | None, cause: Exception):
        of = f" of {size}" if size is not None else ""
        super().__init__(what, None, f"source connection lost after {count}{of} bytes ({type(cause).__name__})")

# 1 MiB: large enough that per-chunk Python overhead is noise next to hashing and socket I/O,
# small enough that a dozen parallel copies stay far below the memory budget.
CHUNK = 1 << 20


def new_hash(digest: str):
    algorithm, _, hexdigest = digest.partition(":")
    if algorithm not in ("sha256", "sha512") or not hexdigest:
        raise VerificationError(f"unsupported digest '{digest}'")
    return hashlib.new(algorithm)


def digest_of(data: bytes, algorithm: str = "sha256") -> str:
    return f"{algorithm}:{hashlib.new(algorithm, data).hexdigest()}"


class VerifyingReader:
    """Wraps `read(n)` of a source; fails before returning the last bytes of wrong content."""

    def __init__(self, read: Callable[[int], bytes], digest: str, size: int | None, what: str,
                 on_bytes: Callable[[int], None] | None = None):
        self._read, self.digest, self.size, self.what = read, digest, size, what
        self._hash = new_hash(digest)
        self._on_bytes = on_bytes
        self.count = 0
        self.verified = False

    def read(self, n: int = CHUNK) -> bytes:
        if self.size is not None:
            n = min(n, self.size - self.count)
            if n == 0:
                self._check_eof()
                return b""
        try:
            data = self._read(n)
        except _READ_ERRORS as exc:
            raise SourceReadError(self.what, self.count, self.size, exc) from None
        if not data:
            self._finish()
            return b""
        self.count += len(data)
        self._hash.update(data)
        if self.size is not None and self.count == self.size:
            self._finish()
        if self._on_bytes:
            self._on_bytes(len(data))
        return data

    def chunks(self, limit: int | None = None) -> Iterator[bytes]:
        """Yield up to `limit` bytes (all, when None) in CHUNK pieces."""
        left = limit
        while left is None or left > 0:
            data = self.read(CHUNK if left is None else min(CHUNK, left))
            if not data:
                return
            if left is not None:
                left -= len(data)
            yield data

    def _check_eof(self) -> None:
        if not self.verified:
            self._finish()

    def _finish(self) -> None:
        if self.verified:
            return
        if self.size is not None and self.count != self.size:
            raise VerificationError(
                f"{self.what}: size mismatch: got {self.count} bytes, expected {self.size}")
        actual = f"{self.digest.partition(':')[0]}:{self._hash.hexdigest()}"
        if actual != self.digest:
            raise VerificationError(f"{self.what}: digest mismatch: content is {actual}, expected {self.digest}")
        self.verified = True


class SizedBody:
    """An iterable with a length: requests sends it as a Content-Length body without buffering.

    (requests would use Transfer-Encoding: chunked for a bare generator; some registries, Nexus
    among them, answer 411 to that.)
    """

    def __init__(self, chunks: Iterator[bytes], length: int):
        self._chunks, self._length = chunks, length

    def __len__(self) -> int:
        return self._length

    def __iter__(self) -> Iterator[bytes]:
        return iter(self._chunks)


class Throttle:
    """A token bucket shared by threads: `consume(n)` blocks just long enough to hold `rate` per second.

    Used for bytes (--bandwidth, per run) and for requests (--max-requests-per-second, per registry).
    Debt is allowed, so one 1 MiB chunk under a 100 KiB/s limit waits ten seconds instead of never.
    """

    def __init__(self, rate: float):
        if rate <= 0:
            raise ValueError("rate must be positive")
        self.rate = rate
        self._tokens = rate
        self._last = time.monotonic()
        self._lock = threading.Lock()

    def consume(self, n: float = 1) -> None:
        with self._lock:
            now = time.monotonic()
            self._tokens = min(self.rate, self._tokens + (now - self._last) * self.rate)
            self._last = now
            self._tokens -= n
            wait = -self._tokens / self.rate if self._tokens < 0 else 0.0
        if wait:
            time.sleep(wait)
