"""The one streaming path for every byte regsync moves (image blobs and package files alike).

Content is hashed while it streams. The chunk that completes the expected size is handed on only
after the digest has been checked, so a receiver (a registry's PUT, a file) never sees the final
byte of content that does not match: a mismatching upload cannot be committed.
"""

from __future__ import annotations

import base64
import ctypes
import ctypes.util
import errno
import hashlib
import json
import os
import stat
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import requests
import urllib3
from loguru import logger

from regsync.digest import Digest, digest_of  # noqa: F401 (digest_of: re-exported for older imports)
from regsync.errors import PolicyError, RegistryError, VerificationError

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
                 on_bytes: Callable[[int], None] | None = None, hasher=None, count: int = 0):
        """`hasher` and `count` resume a stream: `hasher` has already seen the first `count` bytes."""
        self._read, self.digest, self.size, self.what = read, digest, size, what
        self._hash = hasher or new_hash(digest)
        self._on_bytes = on_bytes
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


def read_small_blob(client, repo: str, digest: str, size: int) -> bytes:
    """A small blob (signature payload, bundle, image config) whole in memory, its digest and size
    checked; the caller bounds `size` first."""
    with client.open_blob(repo, digest) as response:
        reader = VerifyingReader(response.raw.read, digest, size, client.ref(repo, digest))
        data = b"".join(reader.chunks())
        reader.read(1)  # size reached: the digest is checked here
    return data


def read_local_file(path, limit: int, what: str, noun: str) -> bytes:
    """A small local file a policy or a flag names (a key, a CA bundle, a trusted root), at most
    `limit` bytes; PolicyError naming `what` when it cannot be read or is too large to be `noun`."""
    try:
        with open(path, "rb") as handle:
            data = handle.read(limit + 1)
    except OSError as exc:
        raise PolicyError(f"{what}: cannot read {path}: {exc.strerror}") from None
    if len(data) > limit:
        raise PolicyError(f"{what}: {path} is too large to be {noun}")
    return data


def read_bounded(response: requests.Response, limit: int, decode: bool = True) -> bytes | None:
    """A response body whole when it is at most `limit` bytes (decoded, when `decode`), else None
    with the response closed: memory stays within `limit` whatever a server sends. (urllib3 >= 2.8
    decompresses only as much as each read asks for; see pyproject.toml.)"""
    if getattr(response, "_content_consumed", False):
        body = response.content  # read already, within the transport's own bound (regsync.http)
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


def continues_at(response: requests.Response, offset: int) -> bool:
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


class ResumableSha256:
    """SHA-256 whose running state can be saved and restored, so a resumed upload still hashes
    every byte of the blob: OpenSSL's SHA256_CTX is fixed-size and holds no pointers.

    Same speed as hashlib (the same OpenSSL code; ctypes releases the GIL during each update).
    """

    _CTX_SIZE = 112  # sizeof(SHA256_CTX): h[8], Nl, Nh, data[16], num, md_len (32-bit words)
    _lib = None

    def __init__(self, state: bytes | None = None):
        lib = self._libcrypto()
        self._ctx = ctypes.create_string_buffer(self._CTX_SIZE)
        if state is None:
            lib.SHA256_Init(self._ctx)
        elif len(state) != self._CTX_SIZE:
            raise ValueError("not a SHA-256 state")
        else:
            ctypes.memmove(self._ctx, state, self._CTX_SIZE)

    @classmethod
    def available(cls) -> bool:
        try:
            cls._libcrypto()
            return True
        except OSError:
            return False

    @classmethod
    def _libcrypto(cls):
        if cls._lib is None:
            name = ctypes.util.find_library("crypto")
            if not name:
                raise OSError("libcrypto not found")
            lib = ctypes.CDLL(name)
            lib.SHA256_Update.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_size_t]
            cls._lib = lib
        return cls._lib

    def update(self, data) -> None:
        self._lib.SHA256_Update(self._ctx, bytes(data) if not isinstance(data, bytes) else data, len(data))

    def state(self) -> bytes:
        return self._ctx.raw

    def hexdigest(self) -> str:
        copy = ctypes.create_string_buffer(self._ctx.raw, self._CTX_SIZE)  # finalising must not end the live state
        out = ctypes.create_string_buffer(32)
        self._lib.SHA256_Final(out, copy)
        return out.raw.hex()


def state_dir() -> Path | None:
    """Where resumable-upload checkpoints live: $REGSYNC_STATE_DIR, else ~/.local/state/regsync
    (an empty $REGSYNC_STATE_DIR turns checkpoints off)."""
    value = os.environ.get("REGSYNC_STATE_DIR")
    if value == "":
        return None
    return Path(value) if value else Path.home() / ".local" / "state" / "regsync"


def private_subdir(root: Path, name: str) -> Path:
    """`root/name`, both private to this user (see private_dir); OSError when either cannot be."""
    private_dir(root, follow=True)  # the state dir itself is the user's choice, a symlink included
    return private_dir(root / name)


def private_dir(path: Path, follow: bool = False) -> Path:
    """`path` as a directory only this user can enter: created 0700, and one of ours that is looser
    is tightened to 0700. Checkpoints and partial files there are trusted to be ours, so a directory
    of another user, or one others can write to and we cannot tighten, is refused (OSError)."""
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    info = os.stat(path) if follow else os.lstat(path)
    if not stat.S_ISDIR(info.st_mode):
        raise OSError(errno.ENOTDIR, f"{path} is not a directory (a symlink is not followed)")
    if info.st_uid != os.getuid():
        raise OSError(errno.EPERM, f"{path} belongs to uid {info.st_uid}, not to this user")
    if info.st_mode & stat.S_ISVTX:  # /tmp and its like are shared by design: never ours to tighten
        raise OSError(errno.EPERM, f"{path} is a shared directory (sticky bit); give regsync one of its own")
    if stat.S_IMODE(info.st_mode) & 0o077:
        os.chmod(path, 0o700)
        logger.info("{}: tightened to 0700 (state files of this user only)", path)
    return path


def create_new(path: Path, mode: int, flags: int = os.O_WRONLY) -> int:
    """A new file at `path`, never through a symlink: whatever is there (a killed run's leftover,
    a planted link) is unlinked first (the link, not its target), and O_EXCL fails should
    anything reappear in between."""
    try:
        path.unlink()
    except FileNotFoundError:
        pass
    return os.open(path, flags | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, mode)


def read_private_json(path: Path, limit: int = 64 * 1024):
    """A small JSON state file, never through a symlink (OSError: ELOOP) and bounded."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    with os.fdopen(fd, "rb") as handle:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError(errno.EINVAL, f"{path.name} is not a regular file")
        return json.loads(handle.read(limit))


def write_atomically(path: Path, data: str | bytes) -> None:
    """Replace `path` in one step: readers (node_exporter, a web server, a wrapper script, pip)
    never see a half-written file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with os.fdopen(create_new(tmp, 0o666), "wb") as handle:
        handle.write(data.encode() if isinstance(data, str) else data)
    os.replace(tmp, path)


def write_private_json(path: Path, doc: dict) -> None:
    """Replace `path` with `doc` in one step, readable by this user only (a checkpoint is read back
    only after it is whole: a crash leaves the old one or the new one)."""
    temporary = path.with_suffix(".tmp")
    with os.fdopen(create_new(temporary, 0o600), "w") as handle:
        json.dump(doc, handle)
    os.replace(temporary, path)


_warned_unwritable = threading.Event()  # one warning per run about an unwritable state dir


class UploadCheckpoint:
    """One chunked upload's session URL, offset and SHA-256 state, saved after each acknowledged
    chunk so a killed or failed run resumes instead of starting over.

    A checkpoint is only ever a shortcut: anything unusable about it means a fresh upload, and the
    resumed hash still covers every byte, so the digest check at the end is the same as ever.
    """

    def __init__(self, directory: Path, target: str, digest: str, stop_check: Callable[[], None] | None = None):
        key = hashlib.sha256(f"{target}@{digest}".encode()).hexdigest()[:40]
        self.root, self.path = directory, directory / "uploads" / f"{key}.json"
        self.target, self.digest = target, digest
        self._stop_check = stop_check
        self.location: str | None = None
        self.offset = 0
        self.hasher = ResumableSha256()
        self._unwritable = self._checked = False

    def load(self) -> bool:
        if not self._usable():
            return False
        try:
            doc = read_private_json(self.path)
            if doc["target"] != self.target or doc["digest"] != self.digest:
                return False
            hasher = ResumableSha256(base64.b64decode(doc["sha256_state"]))
            location, offset = str(doc["location"]), int(doc["offset"])
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                logger.warning("{} is a symlink: not followed; this upload starts afresh", self.path)
            return False
        except (ValueError, KeyError, TypeError):
            return False
        self.location, self.offset, self.hasher = location, offset, hasher
        return True

    def reset(self) -> None:
        self.location, self.offset, self.hasher = None, 0, ResumableSha256()
        self.forget()

    def save(self, location: str, offset: int) -> None:
        """Called with the hasher having seen exactly `offset` bytes (the acknowledged ones)."""
        self.location, self.offset = location, offset
        if self._usable():
            doc = {"target": self.target, "digest": self.digest, "location": location, "offset": offset,
                   "sha256_state": base64.b64encode(self.hasher.state()).decode()}
            try:
                write_private_json(self.path, doc)  # 0600: the session URL lets its holder append to the upload
            except OSError as exc:
                self._cannot_keep(exc)
        self._stop()

    def _usable(self) -> bool:
        """Whether checkpoints can live in the state dir: ours, 0700 (made so on first use)."""
        if not self._unwritable and not self._checked:
            try:
                private_subdir(self.root, "uploads")
                self._checked = True
            except OSError as exc:
                self._cannot_keep(exc)
        return not self._unwritable

    def _cannot_keep(self, exc: OSError) -> None:
        # A read-only home (a locked-down container) costs resumability, never the copy.
        self._unwritable = True
        if not _warned_unwritable.is_set():
            _warned_unwritable.set()
            logger.warning("cannot keep upload checkpoints in {} ({}); set REGSYNC_STATE_DIR to a "
                           "writable directory of this user to resume interrupted uploads", self.path.parent,
                           exc.strerror)

    def _stop(self) -> None:
        if self._stop_check:
            self._stop_check()  # an interrupted run stops here, at a chunk boundary it can resume from

    def forget(self) -> None:
        try:
            self.path.unlink(missing_ok=True)
        except OSError:  # an unwritable state dir holds no checkpoint of ours
            pass
