"""Resumable chunked uploads: the checkpoint saved after each acknowledged chunk."""

from __future__ import annotations

import base64
import errno
import hashlib
import threading
from collections.abc import Callable
from pathlib import Path

from loguru import logger

from regsync.content.files import private_subdir, read_private_json, write_private_json
from regsync.content.sha256 import ResumableSha256


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
