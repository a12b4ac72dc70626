"""The audit trail: one JSON object per line, each chained to the previous line's exact bytes.

Every line carries `seq` and `prev` (sha256 of the previous line, newline included). A run is
framed by `run-started` and `run-finished`; the latter can be signed, and since it carries `prev`
its signature covers the whole trail before it. Records hold references, digests, sizes, rule
names, verification evidence and reasons: never a secret.
"""

from __future__ import annotations

import base64
import fcntl
import getpass
import hashlib
import json
import os
import socket
import threading
import time
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path

from regsync import __version__
from regsync.errors import RegsyncError, UsageError

GENESIS = "0" * 64
EVENTS = ("resolved", "verified", "pushed", "skipped", "refused", "failed")
TAIL_BLOCK = 65536


def encode(entry: dict) -> bytes:
    """The one serialisation used for writing, hashing and signing records."""
    return (json.dumps(entry, separators=(",", ":"), ensure_ascii=True) + "\n").encode()


def signed_bytes(entry: dict) -> bytes:
    """What a run-finished signature covers: the record as written, minus its signature."""
    return encode({k: v for k, v in entry.items() if k != "signature"})


def read_tail(handle) -> tuple[int, str, dict | None]:
    """(seq, sha256, record) of the last line, read backwards from the end (trails grow large)."""
    end = os.fstat(handle.fileno()).st_size
    if end == 0:
        return 0, GENESIS, None
    if os.pread(handle.fileno(), 1, end - 1) != b"\n":
        # a write cut short (power loss): appending would glue the next record onto that line
        raise RegsyncError("the audit trail's last line is incomplete (no newline); refusing to extend it "
                           "(check it with `regsync audit verify`)")
    block, pos = b"", end
    while pos > 0 and block.rstrip(b"\n").count(b"\n") < 1:
        step = min(TAIL_BLOCK, pos)
        pos -= step
        block = os.pread(handle.fileno(), step, pos) + block
    last = block.rstrip(b"\n").rsplit(b"\n", 1)[-1] + b"\n"
    try:
        record = json.loads(last)
        seq = int(record["seq"])
    except (ValueError, KeyError, TypeError):
        raise RegsyncError("the audit trail's last line is not an audit record; "
                           "refusing to extend it (check it with `regsync audit verify`)") from None
    return seq, hashlib.sha256(last).hexdigest(), record


def check_audit_path(path: Path, setting: str) -> None:
    """A trail must be a file: a directory (`--audit-file /tmp`) or, for `--audit-file`, a path in a
    directory that does not exist (a typo more often than a wish) is a usage error, before anything
    runs. The policy's `audit.path` keeps its directory created, as a fresh host needs."""
    if path.is_dir():
        raise UsageError(f"{setting} {path} is a directory: name a file in it, e.g. {path / 'regsync-audit.jsonl'}")
    if path.exists() and not path.is_file():   # a FIFO, /dev/null: a trail is re-read and chained, never streamed
        raise UsageError(f"{setting} {path} is not a regular file: an audit trail is a file regsync appends to "
                         f"and reads back")
    if setting == "--audit-file" and not path.parent.is_dir():
        raise UsageError(f"--audit-file {path}: the directory {path.parent} does not exist (create it, or fix the path)")


class AuditLog:
    def __init__(self, path: Path | None, run_id: str, sign_key=None):
        self.path, self.run_id, self._sign_key = path, run_id, sign_key
        self.counts: Counter[str] = Counter()
        self.problems: list[dict] = []  # refused and failed artifacts, for the run summary
        self.by_kind: Counter[tuple[str, str]] = Counter()  # (artifact kind, event), for per-kind metrics
        self._lock = threading.Lock()
        self._handle = None
        self._started = time.monotonic()
        self._new_file = False
        self.head: dict | None = None  # {"seq", "sha256"} of the last record this log wrote
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._new_file = not path.exists()
            self._handle = path.open("a+b")  # read too: the tail is re-read under the lock

    def start_run(self, *, policy_sha256: str, policy_path: str, targets: list[str], command: str) -> dict:
        self._started = time.monotonic()
        return self.event("run-started", tool=f"regsync {__version__}", policy_sha256=policy_sha256,
                          policy_path=policy_path, host=socket.gethostname(), user=_user(), targets=targets,
                          command=command)

    def finish_run(self, *, exit_code: int, bytes_moved: int, interrupted: bool = False) -> dict:
        counts = {event: self.counts[event] for event in EVENTS if self.counts[event]}
        return self.event("run-finished", counts=counts, bytes=bytes_moved, exit_code=exit_code,
                          interrupted=interrupted, duration_seconds=round(time.monotonic() - self._started, 3),
                          sign=True)

    def event(self, event: str, *, artifact: dict | None = None, policy_rule: str | None = None,
              verification: dict | None = None, reason: str | None = None, sign: bool = False, **extra) -> dict:
        with self._lock:
            if event in EVENTS:
                self.counts[event] += 1
                if artifact and artifact.get("kind"):
                    self.by_kind[(artifact["kind"], event)] += 1
            if event in ("refused", "failed"):
                self.problems.append({"event": event, "artifact": (artifact or {}).get("target")
                                      or (artifact or {}).get("source"), "reason": reason})
            entry = {"ts": datetime.now(timezone.utc).isoformat(timespec="milliseconds"), "run_id": self.run_id,
                     "seq": 0, "prev": GENESIS, "event": event}
            if event not in ("run-started", "run-finished"):
                entry.update(artifact=artifact, policy_rule=policy_rule, verification=verification, reason=reason)
            entry.update(extra)
            if self._handle is None:
                return entry
            # Several runs (other policies, shards) may share one trail: hold an exclusive lock while
            # reading the tail and appending, so the chain never forks.
            fcntl.flock(self._handle.fileno(), fcntl.LOCK_EX)
            try:
                seq, entry["prev"], last = read_tail(self._handle)
                entry["seq"] = seq + 1
                if event == "run-started" and last and last.get("event") != "run-finished":
                    # A crash (SIGKILL, OOM, power loss) leaves a run without run-finished. Say so
                    # now: `audit verify` still fails on it, but can tell the investigator that the
                    # gap already existed when this run started, i.e. it was not cut out later.
                    entry["previous_run_unfinished"] = last.get("run_id")
                if sign and self._sign_key is not None:
                    entry["signature"] = signature_of(self._sign_key, signed_bytes(entry))
                line = encode(entry)
                self._handle.write(line)
                self._handle.flush()
                self.head = {"sha256": hashlib.sha256(line).hexdigest(), "seq": entry["seq"]}
            finally:
                fcntl.flock(self._handle.fileno(), fcntl.LOCK_UN)
            return entry

    def close(self) -> None:
        with self._lock:
            if self._handle is not None:
                os.fsync(self._handle.fileno())
                self._handle.close()
                self._handle = None
                # a new file's name lives in its directory: make that durable too
                if self._new_file and self.path is not None:
                    _fsync_directory(self.path.parent)


def signature_of(key, payload: bytes) -> dict:
    from regsync.trust.keys import fingerprint
    from regsync.trust.signing import sign_bytes

    public = key.public_key()
    return {"key_id": fingerprint(public), "value": base64.b64encode(sign_bytes(key, payload)).decode()}


def _fsync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return str(os.getuid())
