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

from regsync.errors import LockedError

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

    def acquire(self, wait_seconds: float = 0) -> "RunLock":
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        deadline = time.monotonic() + wait_seconds
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    holder = os.pread(fd, 512, 0).decode(errors="replace").strip() or "unknown holder"
                    os.close(fd)
                    raise LockedError(f"another regsync run holds {self.path} ({holder})") from None
                time.sleep(POLL_SECONDS)
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
