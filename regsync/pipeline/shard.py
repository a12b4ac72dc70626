"""Deterministic work splitting for N cooperating runs (e.g. a Kubernetes Indexed Job)."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

from regsync.errors import UsageError


@dataclass(frozen=True)
class Shard:
    index: int
    count: int

    @classmethod
    def parse(cls, text: str) -> "Shard":
        match = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", text or "")
        if not match or not 0 <= int(match.group(1)) < int(match.group(2)):
            raise UsageError(f"--shard must be I/N with 0 <= I < N (got '{text}')")
        return cls(int(match.group(1)), int(match.group(2)))

    def owns(self, target_ref: str) -> bool:
        # sha256, not hash(): Python salts str hashes per process, and every pod must agree.
        bucket = int.from_bytes(hashlib.sha256(target_ref.encode()).digest()[:8], "big") % self.count
        return bucket == self.index
