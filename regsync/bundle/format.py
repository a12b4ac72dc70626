"""The air-gap bundle's own files: bundle.json, SHA256SUMS, volumes (docs/architecture.md, "Bundles").

The directory is an OCI image layout (blobs stored once across all artifacts) whose refs are named
"<registry>/<repository>:<tag>" as the policy names its sources, plus `bundle.json` (what was
exported and how it was verified) and `SHA256SUMS` (checkable with `sha256sum -c`).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
from pathlib import Path

from regsync.content.files import write_atomically
from regsync.content.layout import open_regular
from regsync.errors import NotFound, UsageError, VerificationError

BUNDLE_FORMAT = "regsync-bundle/1"
MAX_BUNDLE_JSON = 64 * 1024 * 1024
MAX_VOLUMES = 999
SMALL_FILES = ("oci-layout", "index.json", "bundle.json")


def volume(out: Path, n: int) -> Path:
    return out.with_name(f"{out.name}.vol{n}")


def split_volumes(out: Path, volume_size: int, bundle_json_size: int) -> list[Path]:
    """Move blobs that do not fit in `volume_size` into OUT.vol2, OUT.vol3… (one per medium)."""
    blobs = sorted((p for p in (out / "blobs" / "sha256").iterdir() if not p.name.startswith(".")),
                   key=lambda p: p.name)
    used = sum((out / name).stat().st_size for name in ("oci-layout", "index.json")) + 2 * bundle_json_size
    used += 100 * (len(blobs) + 3)  # SHA256SUMS lines
    groups: list[list[Path]] = [[]]
    for blob in blobs:
        size = blob.stat().st_size
        if size > volume_size:
            raise UsageError(f"blob {blob.name[:12]}… is {size} bytes, more than --volume-size {volume_size}")
        if used + size > volume_size:
            groups.append([])
            used = 100 * len(blobs)
        groups[-1].append(blob)
        used += size
    if len(groups) > MAX_VOLUMES:
        raise UsageError(f"--volume-size {volume_size} would make {len(groups)} volumes (at most {MAX_VOLUMES})")
    volumes = []
    for n, group in enumerate(groups[1:], start=2):
        target = volume(out, n) / "blobs" / "sha256"
        target.mkdir(parents=True, exist_ok=True)
        for blob in group:
            os.replace(blob, target / blob.name)
        volumes.append(volume(out, n))
    return volumes


def gather_volumes(out: Path) -> None:
    for n in range(2, MAX_VOLUMES + 1):
        blobs = volume(out, n) / "blobs" / "sha256"
        if not blobs.is_dir():
            return
        for blob in blobs.iterdir():
            if not blob.name.startswith(".") and not blob.is_symlink():
                os.replace(blob, out / "blobs" / "sha256" / blob.name)
        shutil.rmtree(volume(out, n))


def write_checksums(out: Path, small_files=SMALL_FILES) -> bytes:
    """Returns what it wrote (the bytes a signature covers)."""
    lines = []
    for name in small_files:
        lines.append(f"{hashlib.sha256((out / name).read_bytes()).hexdigest()}  {name}")
    for blob in sorted((out / "blobs" / "sha256").iterdir()):
        if not blob.name.startswith("."):
            lines.append(f"{blob.name}  blobs/sha256/{blob.name}")  # a blob is named by its verified sha256
    data = ("\n".join(lines) + "\n").encode()
    write_atomically(out / "SHA256SUMS", data)
    return data


def check_sums(root: Path, checked: dict[str, bytes]) -> None:
    """The bundle's small files must match SHA256SUMS (blobs are verified by digest as they stream);
    `checked` holds the bytes of each as read once, the ones import goes on to use."""
    try:
        sums = {name: digest for digest, name in (line.split("  ", 1) for line in
                                                  checked["SHA256SUMS"].decode().splitlines() if "  " in line)}
    except UnicodeDecodeError:
        raise VerificationError(f"{root}/SHA256SUMS is not a checksum list") from None
    for name in SMALL_FILES:
        if sums.get(name) != hashlib.sha256(checked[name]).hexdigest():
            raise VerificationError(f"{root}/{name} does not match SHA256SUMS: the bundle was altered or damaged")


_INCOMPLETE = "the bundle is incomplete (an export that did not finish, or a copy cut short): export again, or copy it again"


def read_present(root: Path, name: str) -> bytes:
    try:
        return read_small(root / name)
    except NotFound:
        raise UsageError(f"{root}/{name} is missing: {_INCOMPLETE}") from None


def check_complete(directory: Path, sums: bytes | None) -> None:
    """Every blob a directory's SHA256SUMS lists is there: a half-copied bundle is named as such up
    front, not found out blob by blob as "not in the bundle" halfway through an import."""
    if sums is None:
        try:
            sums = read_small(directory / "SHA256SUMS")
        except (NotFound, VerificationError):
            return  # a volume or base without its own list: its blobs are checked as they are read
    listed = re.findall(r"(?m)^[0-9a-f]{64}  (blobs/sha256/[0-9a-f]{64})$", sums.decode(errors="replace"))
    missing = [name for name in listed if not os.path.lexists(directory / name)]
    if missing:
        shown = ", ".join(f"{directory}/{name}" for name in missing[:3])
        more = f" and {len(missing) - 3} more" if len(missing) > 3 else ""
        raise UsageError(f"{shown}{more} missing: {_INCOMPLETE}")


def read_small(path: Path) -> bytes:
    """A regular file of at most MAX_BUNDLE_JSON bytes (never through a symlink)."""
    with open_regular(path) as handle:
        data = handle.read(MAX_BUNDLE_JSON + 1)
    if len(data) > MAX_BUNDLE_JSON:
        raise VerificationError(f"{path.name} is larger than a bundle's {MAX_BUNDLE_JSON >> 20} MiB limit")
    return data


def bundle_meta(raw: bytes) -> dict | None:
    """bundle.json's content when it is one (within bounds, JSON, this format), else None."""
    try:
        meta = json.loads(raw) if len(raw) <= MAX_BUNDLE_JSON else None
    except ValueError:
        return None
    return meta if isinstance(meta, dict) and meta.get("format") == BUNDLE_FORMAT else None
