"""Approval signatures: `cosign sign-blob --key` over a saved plan's exact bytes, beside the plan.

An approval is `PLAN.approval-<key id>.sig`, the base64 of the approver's signature over the plan
file, exactly what `cosign sign-blob --key KEY --output-signature FILE PLAN` writes, so
`cosign verify-blob` and `openssl dgst -sha256 -verify` check it without regsync. Everything an
approval vouches for is in the signed bytes: the items and digests, the policy hash the plan was
made from, and the time it was made (`created`, where `max_age` counts from). Nothing beside the
signature is trusted: the file name is only where to look.
"""

from __future__ import annotations

import base64
import errno
import os
import stat
from dataclasses import dataclass
from pathlib import Path

from regsync.content.files import read_local_file, write_atomically
from regsync.errors import shown
from regsync.pipeline.plan import MAX_PLAN_BYTES
from regsync.trust.keys import MAX_SIGNATURE_BYTES, PublicKey, decode_blob_signature, verifies

MAX_SIGNATURE_FILES = 64          # more approvals than any change board has: the rest are not read
SUFFIX = ".sig"


def approval_prefix(plan_path: Path) -> str:
    return f"{plan_path.name}.approval-"


def approval_path(plan_path: Path, key_fingerprint: str) -> Path:
    """One file per approver key: approving again replaces the approver's own signature only."""
    return plan_path.with_name(f"{approval_prefix(plan_path)}{key_fingerprint.split(':', 1)[-1][:16]}{SUFFIX}")


def read_plan_bytes(plan_path: Path) -> bytes:
    """The plan file's exact bytes, read once: they are verified and then parsed, never re-read."""
    return read_local_file(plan_path, MAX_PLAN_BYTES, "plan", "a plan")


def write_approval(plan_path: Path, key_fingerprint: str, signature: bytes) -> Path:
    path = approval_path(plan_path, key_fingerprint)
    write_atomically(path, base64.b64encode(signature))
    return path


@dataclass
class Seen:
    """One approval file beside the plan, and what it proved."""

    file: str
    signer: PublicKey | None = None   # the approval.trust key it verifies with
    problem: str = ""                 # why it does not count, when it does not


def signature_files(plan_path: Path) -> list[Path]:
    directory = plan_path.parent if str(plan_path.parent) else Path(".")
    prefix = approval_prefix(plan_path)
    try:
        names = sorted(entry.name for entry in directory.iterdir()
                       if entry.name.startswith(prefix) and entry.name.endswith(SUFFIX))
    except OSError:
        return []
    return [directory / name for name in names[:MAX_SIGNATURE_FILES]]


def examine(plan_path: Path, data: bytes, keys: list[PublicKey]) -> list[Seen]:
    """Every approval file beside the plan, checked against `keys` over the plan bytes `data`."""
    seen = []
    for path in signature_files(plan_path):
        found = Seen(path.name)
        signature = _read_signature(path, found)
        if signature is not None:
            found.signer = next((key for key in keys if verifies(key, signature, data)), None)
            if found.signer is None:
                found.problem = ("does not verify with any approval.trust key: the plan changed after it was "
                                 "signed, or another key signed it")
        seen.append(found)
    return seen


def _read_signature(path: Path, found: Seen) -> bytes | None:
    try:
        # a symlink planted beside the plan is never followed: an approval is a regular file
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError as exc:
        found.problem = "a symlink, never followed" if exc.errno == errno.ELOOP else f"cannot be read: {exc.strerror}"
        return None
    with os.fdopen(fd, "rb") as handle:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            found.problem = "not a regular file"
            return None
        raw = handle.read(MAX_SIGNATURE_BYTES + 1)
    try:
        return decode_blob_signature(raw)
    except ValueError:
        found.problem = "not a base64 signature (cosign sign-blob's format)"
        return None


def describe(seen: Seen) -> str:
    if seen.signer is not None:
        return f"{seen.file}: {seen.signer.name} ({seen.signer.fingerprint[:19]}…)"
    return f"{shown(seen.file)}: {seen.problem}"
