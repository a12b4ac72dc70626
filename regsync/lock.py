"""One run per policy/target set at a time: an flock'd file next to the audit trail.

flock is released by the kernel when its holder dies, so a lock left by a killed run is never
stale: the next run simply takes it. The file's text only names the holder for the message.
"""

from __future__ import annotations

import fcntl
import os
import socket
import time
from datetime import datetime, timezone
from pathlib import Path

from regsync.errors import LockedError, UsageError

POLL_SECONDS = 0.5


def lock_path(trail: Path) -> Path:
    """The lock a run holds while it writes `trail`."""
    return trail.with_name(trail.name + ".lock")


def run_lock_held(trail: Path) -> bool:
    """Whether a live run holds `trail`'s lock now (never creates the lock file)."""
    try:
        fd = os.open(lock_path(trail), os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        return False
    except BlockingIOError:
        return True
    finally:
        os.close(fd)  # closing drops a lock taken here


class RunLock:
    def __init__(self, path: Path):
        self.path = path
        self._fd: int | None = None
        self.waited = 0.0            # seconds spent waiting for another run to release it
        self.waited_for = ""         # that run, as its lock file named it

    def acquire(self, wait_seconds: float = 0) -> "RunLock":
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:   # the trail's folder is the user's choice (audit.path, --audit-file)
            raise UsageError(f"cannot create the run lock {self.path} beside the audit trail: "
                             f"{exc.strerror or exc}") from None
        begun = time.monotonic()
        deadline = begun + wait_seconds
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                holder = os.pread(fd, 512, 0).decode(errors="replace").strip() or "unknown holder"
                self.waited_for = self.waited_for or holder
                if time.monotonic() >= deadline:
                    os.close(fd)
                    waited = f"; waited {time.monotonic() - begun:.1f} s (--wait-lock {wait_seconds:g})" \
                        if wait_seconds else " (--wait-lock SECONDS waits for it)"
                    raise LockedError(f"another regsync run holds {self.path} ({holder}){waited}") from None
                time.sleep(min(POLL_SECONDS, max(0.0, deadline - time.monotonic())))
        if self.waited_for:
            self.waited = time.monotonic() - begun
        started = datetime.now(timezone.utc).isoformat(timespec="seconds")
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()} on {socket.gethostname()}, started {started}\n".encode(), 0)
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is not None:
            os.ftruncate(self._fd, 0)
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> "RunLock":
        return self

    def __exit__(self, *exc) -> None:
        self.release()
