"""A download that outlives its process: `<state>/downloads/<sha256>.part` and a checkpoint.

Package files land here while they download; the source bytes of multi-GB image blobs are kept
here as they stream to the target (see kinds/image/copy.py). Keyed by sha256, the same bytes are the same
partial whichever path fetched them.

The checkpoint (offset, total size, SHA-256 state) is written only after the bytes it counts were
fsynced, so a SIGKILL or a power cut can leave bytes past it but never a checkpoint that claims
more than the disk holds; whatever lies past it is cut off on resume. Anything unusable about a
checkpoint means starting over, and the sha256 is still checked over every byte at the end: a
checkpoint can save time, never change a verdict.
"""

from __future__ import annotations

import base64
import errno
import fcntl
import hashlib
import os
import re
import shutil
import stat
import time
from pathlib import Path
from typing import BinaryIO

from loguru import logger

from regsync.content.reader import CHUNK, VerifyingReader
from regsync.content.sha256 import ResumableSha256, Sha256
from regsync.content.files import create_new, private_subdir, read_private_json, state_dir, write_private_json

# fsync is what makes a checkpoint honest, and it stalls the stream: at most every 32 MiB on a fast
# link (64 stalls for a 2 GB wheel), every second on a slow one (so a kill loses a second's bytes).
CHECKPOINT_BYTES = 32 * 1024 * 1024
CHECKPOINT_SECONDS = 1.0
# A partial nobody has resumed for this long belongs to a file no policy asks for any more.
STALE_SECONDS = 14 * 24 * 3600
_HEX = re.compile(r"[0-9a-f]{64}")
_pruned: set[Path] = set()
_warned: set[Path] = set()


def new_sha256() -> Sha256:
    """A hasher whose state can be checkpointed when libcrypto is there; hashlib's otherwise."""
    return ResumableSha256() if ResumableSha256.available() else hashlib.sha256()


class PartialFile:
    """Where one file's bytes land while they download; `record` is None for a download that is
    resumed only within this process (no state dir, or another run holds this file)."""

    def __init__(self, part: Path, record: Path | None, digest: str, handle):
        self.part, self.record, self.digest = part, record, digest
        self._handle = handle
        self.size: int | None = None      # the file's total length, once a server has said it
        self.written = 0
        self.hasher: Sha256 | None = None  # has seen exactly the bytes written so far
        self.reader: VerifyingReader | None = None  # the VerifyingReader feeding it, when one is running
        self._saved_at = (0, time.monotonic())

    @classmethod
    def kept(cls, digest: str) -> PartialFile | None:
        """The state dir's partial for `digest`, locked for this run; None when there is no state dir,
        the digest is not a sha256, or another run is downloading the same file right now."""
        directory = state_dir()
        algorithm, _, hexdigest = digest.partition(":")
        if directory is None or algorithm != "sha256" or not _HEX.fullmatch(hexdigest):
            return None
        folder, part = directory / "downloads", directory / "downloads" / f"{hexdigest}.part"
        try:
            private_subdir(directory, "downloads")
            _prune_once(folder)
            fd = os.open(part, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK, 0o600)
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                logger.warning("{} is a symlink: not followed, nothing written through it; this file downloads "
                               "without resume (someone else can write to the state dir?)", part)
            elif folder not in _warned:  # once per run, not once per file
                _warned.add(folder)
                logger.warning("cannot keep partial downloads in {}: {}; a killed run will start its files over "
                               "(set REGSYNC_STATE_DIR to a writable directory of this user)", folder, exc.strerror)
            return None
        if not _own_regular_file(fd):
            os.close(fd)
            logger.warning("{} is not a regular file of this user with one link: not used; this file downloads "
                           "without resume", part)
            return None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            if os.fstat(fd).st_ino != os.stat(folder / f"{hexdigest}.part").st_ino:
                raise OSError("removed while we waited for it")  # pruned between our open and our lock
        except OSError:
            os.close(fd)
            return None
        return cls(folder / f"{hexdigest}.part", folder / f"{hexdigest}.json", digest, os.fdopen(fd, "r+b"))

    @classmethod
    def plain(cls, path: Path, digest: str) -> PartialFile:
        return cls(path, None, digest, os.fdopen(create_new(path, 0o666, os.O_RDWR), "w+b"))

    def open_for_reading(self) -> BinaryIO:
        """The kept bytes read by a second handle, which must be this very file (never a link, nor a
        file put in its place since we locked it)."""
        handle = open(os.open(self.part, os.O_RDONLY | os.O_NOFOLLOW), "rb")
        ours, theirs = os.fstat(self._handle.fileno()), os.fstat(handle.fileno())
        if (ours.st_dev, ours.st_ino) != (theirs.st_dev, theirs.st_ino):
            handle.close()
            raise OSError(errno.ESTALE, f"{self.part.name} was replaced while this run held it")
        return handle

    def resume(self, expected_size: int | None) -> int:
        """The offset to continue from (the checkpointed bytes, `hasher` set to match), or 0."""
        if self.record is None:
            return self.restart()
        try:
            doc = read_private_json(self.record)
            offset, size = int(doc["offset"]), doc.get("size")
            usable = (doc["digest"] == self.digest and 0 < offset and (size is None or offset < int(size))
                      and (expected_size is None or size is None or int(size) == expected_size)
                      and os.fstat(self._handle.fileno()).st_size >= offset)
        except (OSError, ValueError, KeyError, TypeError):
            usable = False
        if not usable:
            return self.restart()
        self._handle.truncate(offset)  # bytes past the checkpoint may never have reached the disk
        self._handle.seek(offset)
        self.size = int(size) if size is not None else None
        self.written, self._saved_at = offset, (offset, time.monotonic())
        try:
            self.hasher = self._rehash(offset)
        except OSError:
            return self.restart()
        saved = _restore(doc.get("sha256_state"))
        if saved is not None and saved.hexdigest() != self.hasher.hexdigest():
            # The saved state is the hash of the bytes as they arrived; the disk no longer has them.
            logger.warning("{}: the kept bytes changed since their checkpoint; downloading from the start",
                           self.digest)
            return self.restart()
        logger.info("{}: resuming a kept download at byte {}", self.digest, offset)
        return offset

    def restart(self) -> int:
        """Start from nothing (the checkpoint goes first, so it never outlives the bytes it counts)."""
        self._forget()
        self._handle.seek(0)
        self._handle.truncate(0)
        self.written, self._saved_at, self.hasher, self.reader = 0, (0, time.monotonic()), new_sha256(), None
        return 0

    def write(self, data: bytes) -> None:
        """Append bytes the hasher has just seen; checkpoint now and then."""
        self._handle.write(data)
        self.written += len(data)
        last_offset, last_time = self._saved_at
        if self.written - last_offset >= CHECKPOINT_BYTES or time.monotonic() - last_time >= CHECKPOINT_SECONDS:
            self.checkpoint()

    def checkpoint(self) -> None:
        """fsync, then record the offset and the state of a hasher that has seen exactly those bytes."""
        hasher = self.hasher
        if (self.record is None or hasher is None or self.written == 0 or self._saved_at[0] == self.written
                or (self.reader is not None and self.reader.count != self.written)
                or (self.size is not None and self.written >= self.size)):
            return
        self._handle.flush()
        os.fsync(self._handle.fileno())
        state = hasher.state() if isinstance(hasher, ResumableSha256) else None
        doc = {"digest": self.digest, "size": self.size, "offset": self.written,
               "sha256_state": base64.b64encode(state).decode() if state else None}
        write_private_json(self.record, doc)
        self._saved_at = (self.written, time.monotonic())

    def complete(self, path: Path) -> None:
        """The verified file goes to `path` (a rename on one filesystem, a copy across two)."""
        self._handle.flush()
        if self.record is None:
            return
        try:
            os.replace(self.part, path)
        except OSError as exc:
            if exc.errno != errno.EXDEV:
                raise
            shutil.copyfile(self.part, path)
            self.part.unlink(missing_ok=True)
        self._forget()

    def discard(self) -> None:
        """Bytes that failed verification are worth nothing: no checkpoint, no partial."""
        self._forget()
        self._handle.truncate(0)
        if self.record is not None:
            self.part.unlink(missing_ok=True)

    def close(self) -> None:
        self._handle.close()  # releases the lock

    def _forget(self) -> None:
        if self.record is not None:
            self.record.unlink(missing_ok=True)

    def _rehash(self, offset: int) -> Sha256:
        hasher = new_sha256()
        self._handle.seek(0)
        left = offset
        while left:
            data = self._handle.read(min(CHUNK, left))
            if not data:
                raise OSError("partial file shorter than its checkpoint")
            hasher.update(data)
            left -= len(data)
        return hasher


def _prune_once(folder: Path) -> None:
    """Delete partials untouched for STALE_SECONDS (once per process), never one a run holds."""
    if folder in _pruned:
        return
    _pruned.add(folder)
    cutoff = time.time() - STALE_SECONDS
    for part in folder.glob("*.part"):
        try:
            info = part.lstat()
            if stat.S_ISLNK(info.st_mode):
                part.unlink()  # the link, never its target
                logger.warning("{} was a symlink where a partial download goes: removed, not followed "
                               "(someone else can write to the state dir?)", part)
                continue
            if info.st_mtime >= cutoff:
                continue
            with open(os.open(part, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK), "rb") as handle:
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                part.with_suffix(".json").unlink(missing_ok=True)
                part.unlink()
        except OSError:
            continue  # held by a run right now, or already gone
        logger.info("removed a partial download untouched for {} days: {}", STALE_SECONDS // 86400, part.name)


def _own_regular_file(fd: int) -> bool:
    """A hard link to someone else's file would let a run truncate it: only a file of ours, alone."""
    info = os.fstat(fd)
    return stat.S_ISREG(info.st_mode) and info.st_uid == os.getuid() and info.st_nlink == 1


def _restore(state) -> ResumableSha256 | None:
    if not state or not ResumableSha256.available():
        return None
    try:
        return ResumableSha256(base64.b64decode(state, validate=True))
    except (ValueError, TypeError):
        return None
