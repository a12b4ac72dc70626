"""The vulnerability database across the air gap (docs/vulnerabilities.md, "Across the air gap"):
export stores its files as blobs of the bundle (so SHA256SUMS, and a signature over it, cover them)
and names them in bundle.json; import gates with exactly those files, checked against their
digests, and the trail on both sides names the same database sha256."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Iterable
from pathlib import Path

from regsync.errors import VerificationError
from regsync.vulns.database import OsvDatabase
from regsync.vulns.files import database_for

_PATH = re.compile(r"[A-Za-z][A-Za-z0-9._-]{0,63}(/[A-Za-z0-9._-]{1,128}){1,4}\.(zip|json)")
_DIGEST = re.compile(r"sha256:[0-9a-f]{64}")


def check_fresh(endpoints) -> None:
    """Before an export writes anything: every ecosystem it will carry is loaded, so one older than
    max_age (or unreadable) is a policy error now, not after hours of downloading."""
    if endpoints.policy.vulnerabilities is not None:
        db = database_for(endpoints)
        for name in db.ecosystems:
            db.ecosystem(name)


def carry_out(endpoints, write_blob: Callable[[str, Iterable[bytes]], None]) -> dict | None:
    """Write the policy's database into the bundle; bundle.json's `vulnerabilities` entry, or None."""
    if endpoints.policy.vulnerabilities is None:
        return None
    db = database_for(endpoints)
    files = []
    for relative, digest in db.file_digests().items():
        path = dict(db.files)[relative]
        write_blob(digest, _checked_chunks(path, digest))
        files.append({"path": relative, "digest": digest, "size": path.stat().st_size})
    # every ecosystem loaded here: one older than max_age stops the export (a policy error)
    return {"sha256": db.sha256, "files": files, "ecosystems": [db.evidence(name) for name in db.ecosystems]}


def _checked_chunks(path: Path, digest: str):
    hasher = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            hasher.update(chunk)
            yield chunk
    if "sha256:" + hasher.hexdigest() != digest:   # changed since it was hashed: never a mixed database
        raise VerificationError(f"{path}: changed while the export read it")


def carried_in(meta, blob_path: Callable[[str], Path], policy) -> OsvDatabase:
    """The bundle's database, every file checked against its digest before any record is read."""
    files, digests = {}, {}
    entries = meta.get("files") if isinstance(meta, dict) else None
    if not isinstance(entries, list) or not entries:
        raise VerificationError("bundle.json: vulnerabilities names no database files")
    for entry in entries:
        relative, digest = (entry.get("path"), entry.get("digest")) if isinstance(entry, dict) else (None, None)
        if not isinstance(relative, str) or not _PATH.fullmatch(relative) or ".." in relative.split("/") \
                or not isinstance(digest, str) or not _DIGEST.fullmatch(digest):
            raise VerificationError(f"bundle.json: vulnerabilities names a file it cannot hold: {str(relative)[:80]}")
        path = blob_path(digest)
        if path.is_symlink() or not path.is_file():
            raise VerificationError(f"the bundle's vulnerability database file {relative} ({digest[:19]}…) is missing")
        files[relative], digests[relative] = path, digest
    config = policy.vulnerabilities
    db = OsvDatabase(Path("bundle"), config.max_age if config else None, "the bundle's vulnerability database",
                     files=files, digests=digests)
    if db.sha256 != meta.get("sha256"):
        raise VerificationError(f"the bundle's vulnerability database is {db.sha256}, bundle.json says {meta.get('sha256')}")
    return db
