"""The audit trail: one JSON object per line, each chained to the previous line's exact bytes.

Records carry what a security reviewer needs (DESIGN.md's audit record) and never a secret:
only references, digests, sizes, rule names, verification evidence and reasons go in.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path

from regsync.errors import RegsyncError

GENESIS = "0" * 64
EVENTS = ("resolved", "verified", "pushed", "skipped", "refused", "failed")


def _tail(path: Path) -> tuple[int, str]:
    """(seq, sha256) of the last line of an existing trail, read from its end (trails grow large)."""
    if not path.exists() or path.stat().st_size == 0:
        return 0, GENESIS
    with path.open("rb") as handle:
        handle.seek(0, os.SEEK_END)
        end = handle.tell()
        block = b""
        pos = end
        while pos > 0 and block.count(b"\n") < 2:
            step = min(65536, pos)
            pos -= step
            handle.seek(pos)
            block = handle.read(step) + block
    last = block.rstrip(b"\n").rsplit(b"\n", 1)[-1] + b"\n"
    try:
        seq = int(json.loads(last)["seq"])
    except (ValueError, KeyError, TypeError):
        raise RegsyncError(f"{path}: the last line is not an audit record; refusing to extend it") from None
    return seq, hashlib.sha256(last).hexdigest()


class AuditLog:
    def __init__(self, path: Path | None, run_id: str):
        self.path, self.run_id = path, run_id
        self.counts: Counter[str] = Counter()
        self._lock = threading.Lock()
        self._handle = None
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._seq, self._prev = _tail(path)
            self._handle = path.open("ab")

    def record(self, event: str, *, artifact: dict | None = None, policy_rule: str | None = None,
               verification: dict | None = None, reason: str | None = None, **extra) -> dict:
        with self._lock:
            self.counts[event] += 1
            entry = {"ts": datetime.now(timezone.utc).isoformat(timespec="milliseconds"), "run_id": self.run_id,
                     "seq": 0, "prev": "", "event": event, "artifact": artifact, "policy_rule": policy_rule,
                     "verification": verification, "reason": reason, **extra}
            if self._handle is None:
                return entry
            self._seq += 1
            entry["seq"], entry["prev"] = self._seq, self._prev
            line = (json.dumps(entry, separators=(",", ":"), sort_keys=False) + "\n").encode()
            self._handle.write(line)
            self._handle.flush()
            self._prev = hashlib.sha256(line).hexdigest()
            return entry

    def close(self) -> None:
        with self._lock:
            if self._handle is not None:
                os.fsync(self._handle.fileno())
                self._handle.close()
                self._handle = None
