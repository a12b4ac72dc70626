"""The one streaming path for every byte regsync moves (image blobs and package files alike).

Content is hashed while it streams. The chunk that completes the expected size is handed on only
after the digest has been checked, so a receiver (a registry's PUT, a file) never sees the final
byte of content that does not match: a mismatching upload cannot be committed.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Protocol

import requests
import urllib3

from regsync.content.digest import Digest
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
    """A hasher of `digest`'s own algorithm; an unknown algorithm or malformed digest is refused."""
    return Digest.parse(digest).hasher()


class VerifyingReader:
    """Wraps `read(n)` of a source; fails before returning the last bytes of wrong content."""

    def __init__(self, read: Callable[[int], bytes], digest: str, size: int | None, what: str,
                 on_bytes: Callable[[int], None] | None = None, hasher=None, count: int = 0,
                 tap: Callable[[bytes], None] | None = None):
        """`hasher` and `count` resume a stream: `hasher` has already seen the first `count` bytes.
        `tap` sees each chunk as it passes (an image's layers read while they are copied)."""
        self._read, self.digest, self.size, self.what = read, digest, size, what
        self.hasher = hasher or new_hash(digest)
        self._on_bytes = on_bytes
        self._tap = tap
        self.count = count
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
        self.hasher.update(data)
        if self.size is not None and self.count == self.size:
            self._finish()
        if self._on_bytes:
            self._on_bytes(len(data))
        if self._tap:
            self._tap(data)
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
        actual = f"{self.digest.partition(':')[0]}:{self.hasher.hexdigest()}"
        if actual != self.digest:
            raise VerificationError(f"{self.what}: digest mismatch: content is {actual}, expected {self.digest}")
        self.verified = True


def read_small_blob(client, repo: str, digest: str, size: int) -> bytes:
    """A small blob (signature payload, bundle, image config) whole in memory, its digest and size
    checked; the caller bounds `size` first."""
    with client.open_blob(repo, digest) as response:
        reader = VerifyingReader(response.raw.read, digest, size, client.ref(repo, digest))
        data = b"".join(reader.chunks())
        reader.read(1)  # size reached: the digest is checked here
    return data


def read_bounded(response: requests.Response, limit: int, decode: bool = True) -> bytes | None:
    """A response body whole when it is at most `limit` bytes (decoded, when `decode`), else None
    with the response closed: memory stays within `limit` whatever a server sends. (urllib3 >= 2.8
    decompresses only as much as each read asks for; see pyproject.toml.)"""
    if getattr(response, "_content_consumed", False):
        body = response.content  # read already, within the transport's own bound (regsync.net.http)
    else:
        body = response.raw.read(limit + 1, decode_content=decode)
    if len(body) > limit:
        response.close()
        return None
    return body


# Asked for digest-checked documents (manifests, PEP 658 metadata): their digest covers the stored
# bytes, a few MiB at most never need compressing, and so data a server compressed is never
# decompressed on their path (read_document refuses it).
IDENTITY = {"Accept-Encoding": "identity"}


def read_document(response: requests.Response, limit: int, what: str) -> bytes | None:
    """The raw body of a response to a request sent with IDENTITY, as `read_bounded`; an encoded
    answer is refused."""
    encoding = response.headers.get("Content-Encoding", "").strip().lower()
    if encoding not in ("", "identity"):
        response.close()
        raise VerificationError(f"{what}: served with Content-Encoding {encoding[:40]!r} although "
                                "identity was asked; refused")
    return read_bounded(response, limit, decode=False)


class Answered(Protocol):
    """What is read of an answer's headers: an HTTP response, or a local file standing in for one."""

    @property
    def headers(self) -> Mapping[str, str]: ...


def continues_at(response: Answered, offset: int) -> bool:
    """Whether a ranged GET (`Range: bytes=offset-`) was answered from exactly that byte; a server
    that ignores Range sends the whole file with 200, and the caller starts over."""
    return response.headers.get("Content-Range", "").startswith(f"bytes {offset}-")


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
