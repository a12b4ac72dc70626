"""Files regsync keeps: the state directory, private files and directories, atomic replacement."""

from __future__ import annotations

import errno
import fcntl
import json
import os
import stat
import threading
from pathlib import Path
from typing import BinaryIO

from loguru import logger

from regsync.errors import PolicyError, UsageError


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
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")  # writers may race
    with os.fdopen(create_new(tmp, 0o666), "wb") as handle:
        handle.write(data.encode() if isinstance(data, str) else data)
    os.replace(tmp, path)


def check_output_file(path: Path, option: str) -> None:
    """Before any work: a file the user asked for (`-o`, `--summary-json`, `--html`) can be written at
    `path`, so a long run does not end in an error it could have given at once. UsageError when
    `path` is a directory, or its folder cannot be made or written to (a file on the way, /proc)."""
    if path.is_dir():
        raise UsageError(f"{option} {path} is a directory: name a file (e.g. {path / 'out.json'})")
    probe = path.with_name(f".{path.name}.{os.getpid()}.probe")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)   # as write_atomically will
        os.close(create_new(probe, 0o600))
        probe.unlink()
    except OSError as exc:
        in_the_way = next((parent for parent in path.parents if parent.exists() and not parent.is_dir()), None)
        reason = f"{in_the_way} is a file, not a folder" if in_the_way else exc.strerror or str(exc)
        raise UsageError(f"{option} {path}: cannot write there: {reason}") from None


def published_mode() -> int:
    """The mode of a file published for others to read: 0666 less the process's umask, what open()
    gives a new file (0644 under the usual 022). Read from /proc where it is said, since setting the
    umask to learn it would change it for every thread for a moment."""
    global _PUBLISHED_MODE
    if _PUBLISHED_MODE is None:
        umask = None
        try:
            with open("/proc/self/status") as status:
                umask = next((int(line.split()[1], 8) for line in status if line.startswith("Umask:")), None)
        except OSError:
            pass
        if umask is None:
            with _UMASK_LOCK:
                umask = os.umask(0o077)
                os.umask(umask)
        _PUBLISHED_MODE = 0o666 & ~umask
    return _PUBLISHED_MODE


_PUBLISHED_MODE: int | None = None
_UMASK_LOCK = threading.Lock()


def place_published(path: Path, destination: Path) -> None:
    """Move a finished file (same filesystem) into a tree a web server serves, in one step and with
    the mode of a published file: the bytes may have waited in the private state dir (0600), and a
    server running as another user (nginx as www-data) must be able to read what it serves."""
    os.chmod(path, published_mode())
    os.replace(path, destination)


def write_private_json(path: Path, doc: dict) -> None:
    """Replace `path` with `doc` in one step, readable by this user only (a checkpoint is read back
    only after it is whole: a crash leaves the old one or the new one)."""
    temporary = path.with_suffix(".tmp")
    with os.fdopen(create_new(temporary, 0o600), "w") as handle:
        json.dump(doc, handle)
    os.replace(temporary, path)


def open_input(path) -> BinaryIO:
    """A file a user named (a policy, a plan, a key, an audit trail), opened to read without ever
    waiting for a writer: a FIFO nobody writes to reads as empty instead of blocking forever, while
    a pipe that has its writer (`-p <(envsubst < policy.yaml)`) streams as usual. OSError as open()."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)   # a FIFO's open() blocks until a writer comes
    try:
        fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) & ~os.O_NONBLOCK)   # reads block as usual
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def read_local_file(path, limit: int, what: str, noun: str) -> bytes:
    """A small local file a policy or a flag names (a key, a CA bundle, a trusted root), at most
    `limit` bytes; PolicyError naming `what` when it cannot be read or is too large to be `noun`."""
    try:
        with open_input(path) as handle:
            data = handle.read(limit + 1)
    except OSError as exc:
        raise PolicyError(f"{what}: cannot read {path}: {exc.strerror}") from None
    if len(data) > limit:
        raise PolicyError(f"{what}: {path} is too large to be {noun}")
    return data
