"""An OCI image layout on disk: the sink of `regsync export` and, on the air-gapped side, a
source with the same read methods as a registry, so `regsync import` pushes with the same engine.

The layout on the import side is untrusted input: blob paths are built only from digests that
match `sha256:<64 hex>`, files are opened without following symlinks, and every read is bounded
and digest-checked like a registry's.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
import re
import stat
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, BinaryIO

from loguru import logger

from regsync.errors import InvalidName, NotFound, UsageError, VerificationError, shown
from regsync.kinds.oci.client import RegistryClient
from regsync.kinds.oci.manifest import MAX_MANIFEST_BYTES, Descriptor, Manifest
from regsync.kinds.oci.names import check_image_ref
from regsync.content.reader import CHUNK, VerifyingReader
from regsync.content.files import create_new, write_atomically

DIGEST = re.compile(r"sha256:[0-9a-f]{64}")


def blob_path(root: Path, digest: str) -> Path:
    if not DIGEST.fullmatch(digest or ""):
        # A bundle's blob store and its SHA256SUMS are sha256-addressed: other content is refused.
        raise VerificationError(f"'{str(digest)[:80]}' is not a sha256 digest (a bundle holds sha256-addressed "
                                f"content only)")
    return root / "blobs" / "sha256" / digest.split(":", 1)[1]


def open_regular(path: Path) -> BinaryIO:
    """Open a file that must be a regular file inside the layout: no symlink, no device."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except FileNotFoundError:
        raise NotFound(str(path.name), 404, "not in the bundle") from None
    except OSError:
        raise VerificationError(f"{path.name}: not a regular file (a symlink is never followed)") from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise VerificationError(f"{path.name}: not a regular file")
    return os.fdopen(fd, "rb")


class LayoutWriter:
    def __init__(self, root: Path):
        self.root = root
        (root / "blobs" / "sha256").mkdir(parents=True, exist_ok=True)
        write_atomically(root / "oci-layout", '{"imageLayoutVersion": "1.0.0"}')

    def has_blob(self, digest: str) -> bool:
        return blob_path(self.root, digest).exists()

    def write_blob(self, digest: str, chunks: Iterable[bytes]) -> None:
        """Blobs are stored once; a blob is renamed into place only after its digest checked out."""
        path = blob_path(self.root, digest)
        if path.exists():
            return
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.partial")
        try:
            with os.fdopen(create_new(tmp, 0o666), "wb") as out:
                for chunk in chunks:
                    out.write(chunk)
        except BaseException:
            tmp.unlink(missing_ok=True)  # a blob that failed verification leaves nothing behind
            raise
        os.replace(tmp, path)

    def drop_unverified_blobs(self, jobs: int = 4) -> int:
        """Remove every blob already here whose bytes do not hash to its name (or that is no regular
        file): a directory written to before is trusted for nothing, so what is kept is exactly what
        SHA256SUMS will claim. Returns how many were removed (they are fetched again)."""
        folder = self.root / "blobs" / "sha256"
        names = [entry.name for entry in os.scandir(folder) if not entry.name.startswith(".")]
        with ThreadPoolExecutor(max(1, jobs)) as pool:  # hashlib releases the GIL: disks, not threads, bound it
            bad = [name for name, ok in zip(names, pool.map(lambda n: _holds_its_digest(folder / n), names)) if not ok]
        for name in bad:
            logger.warning("{}: an existing blob does not match its name (altered or damaged); fetching it again",
                           name[:80])
            (folder / name).unlink(missing_ok=True)
        return len(bad)

    def write_manifest(self, manifest: Manifest) -> None:
        self.write_blob(manifest.digest, [manifest.raw])

    def write_index(self, refs: list[dict[str, Any]]) -> None:
        body = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": refs}
        write_atomically(self.root / "index.json", json.dumps(body, indent=1))


def _holds_its_digest(path: Path) -> bool:
    if not DIGEST.fullmatch(f"sha256:{path.name}"):
        return False
    try:
        with open_regular(path) as handle:
            hasher = hashlib.sha256()
            while chunk := handle.read(CHUNK):
                hasher.update(chunk)
    except (NotFound, VerificationError):
        return False
    return hasher.hexdigest() == path.name


class _BlobResponse:
    """What BlobCopier needs of an HTTP response: `.raw.read`, `.headers`, a context manager."""

    def __init__(self, handle: BinaryIO, size: int) -> None:
        self.raw, self.headers = handle, {"Content-Length": str(size)}

    def __enter__(self) -> _BlobResponse:
        return self

    def __exit__(self, *exc: object) -> None:
        self.raw.close()


REF_NAME = "org.opencontainers.image.ref.name"
# On a ref whose manifest regsync filtered by platform: the source's own (signed) index digest.
SOURCE_DIGEST = "io.github.regsync.source-digest"
MAX_INDEX_BYTES = 64 * 1024 * 1024


class LayoutSource:
    """Reads a layout the way RegistryClient reads registry `name`: tags come from index.json refs
    named "<registry>/<repository>:<tag>", so tag selection, planning and copying run unchanged."""

    def __init__(self, root: Path, name: str = "bundle", more_blobs: tuple[Path, ...] = (),
                 index: bytes | None = None):
        """`more_blobs`: further directories holding blobs (other volumes, the base of an incremental
        bundle); read as untrusted as the bundle itself, and only for blobs, never for refs.
        `index`: index.json's bytes as already checked (against SHA256SUMS and its signature), so
        the refs come from exactly those bytes; read from the file when not given."""
        self.root, self.name = root, name
        self.base = str(root)
        self.resumable = False   # a local file: nothing to resume
        self._blob_roots = (root, *more_blobs)
        self._refs = self._read_refs(index)

    def blob_path(self, digest: str) -> Path:
        paths = [blob_path(root, digest) for root in self._blob_roots]
        return next((path for path in paths if os.path.lexists(path)), paths[0])

    def _read_refs(self, raw: bytes | None) -> dict[str, dict[str, Any]]:
        if raw is None:
            with open_regular(self.root / "index.json") as handle:
                raw = handle.read(MAX_INDEX_BYTES + 1)
        if len(raw) > MAX_INDEX_BYTES:
            raise VerificationError("index.json is too large to be a bundle index")
        try:
            entries = json.loads(raw).get("manifests") or []
            refs = {e["annotations"][REF_NAME]: e for e in entries
                    if isinstance(e, dict) and isinstance(e.get("annotations"), dict) and REF_NAME in e["annotations"]}
        except (ValueError, AttributeError, TypeError):
            raise VerificationError("index.json is not an OCI image index") from None
        for name in refs:
            try:
                check_image_ref(name)
            except InvalidName as exc:
                raise UsageError(f"{self.root}/index.json: the bundle is refused: ref '{shown(name, 300)}': "
                                 f"{exc.reason}") from None
        return refs

    def ping(self) -> None:
        return None

    def list_tags(self, repo: str) -> list[str]:
        prefix = f"{self.name}/{repo}:"
        return [ref[len(prefix):] for ref in self._refs if ref.startswith(prefix)]

    def head_manifest(self, repo: str, reference: str) -> Descriptor | None:
        if DIGEST.fullmatch(reference):
            return Descriptor("", reference, 0) if self.blob_path(reference).is_file() else None
        entry = self._refs.get(f"{self.name}/{repo}:{reference}")
        if entry is None:
            return None
        descriptor = Descriptor.parse(entry, f"index.json ref {self.name}/{repo}:{reference}")
        blob_path(self.root, descriptor.digest)  # refuses anything but sha256:<64 hex> (e.g. a path)
        source = (entry.get("annotations") or {}).get(SOURCE_DIGEST)
        if source is not None:
            # The tag as the source served it: signatures name it, and import filters it again and
            # must arrive at the digest the ref names (checked like every plan item, at apply).
            manifest = self.get_manifest(repo, source)
            return Descriptor(manifest.media_type, manifest.digest, len(manifest.raw))
        return descriptor

    def ref(self, repo: str, reference: str = "") -> str:
        return f"{self.name}/{repo}@{reference}" if reference else f"{self.name}/{repo}"

    def get_manifest(self, repo: str, reference: str, expect: str | None = None) -> Manifest:
        if ":" not in reference:  # a tag; anything digest-like is checked as a digest below
            found = self.head_manifest(repo, reference)
            if found is None:
                raise NotFound(self.ref(repo, reference), 404, "not in the bundle")
            reference = found.digest
        with open_regular(self.blob_path(reference)) as handle:
            raw = handle.read(MAX_MANIFEST_BYTES + 1)
        manifest = Manifest.parse(raw, None, self.ref(repo, reference))
        if manifest.digest != reference:
            raise VerificationError(f"{self.ref(repo, reference)}: manifest digest mismatch: content is {manifest.digest}")
        return manifest

    def open_blob(self, repo: str, digest: str) -> _BlobResponse:
        try:
            handle = open_regular(self.blob_path(digest))
        except NotFound:
            raise NotFound(self.ref(repo, digest), 404, "not in the bundle (an incremental bundle leaves out layers "
                                                        "the base bundle had: import that first, or name its "
                                                        "directory after this one)") from None
        return _BlobResponse(handle, os.fstat(handle.fileno()).st_size)

    def repository_exists(self, repo: str) -> None:
        return None   # a bundle has no such question: what it lacks, it lacks by tag

    def may_have_tag(self, repo: str, tag: str) -> bool:
        return True   # head_manifest answers from index.json already

    def blob_exists(self, repo: str, digest: str) -> bool:
        return self.blob_path(digest).is_file()

    def get_referrers(self, repo: str, digest: str) -> dict[str, Any] | None:
        """A layout has no referrers API: None sends readers to the referrers tag, which export writes."""
        return None


def copy_into_layout(src: RegistryClient, src_repo: str, tree: list[Manifest], writer: LayoutWriter,
                     on_bytes: Callable[[int], None] | None = None,
                     leave_out: frozenset[str] = frozenset()) -> int:
    """Blobs then manifests of one image tree into the layout; every blob verified on the way.

    `leave_out`: layers an earlier bundle carried (`--since-bundle`). Manifests and configs are
    always written: import plans, verifies and gates from them before it knows what the target holds.
    """
    moved = 0
    layers = {b.digest for m in tree for b in m.blobs()[1:]}
    for blob in {b.digest: b for m in tree for b in m.blobs()}.values():
        if writer.has_blob(blob.digest) or (blob.digest in layers and blob.digest in leave_out):
            continue
        with src.open_blob(src_repo, blob.digest) as response:
            reader = VerifyingReader(response.raw.read, blob.digest, blob.size, src.ref(src_repo, blob.digest), on_bytes)
            writer.write_blob(blob.digest, reader.chunks())
            moved += blob.size
    for manifest in tree:
        writer.write_manifest(manifest)
    return moved


__all__ = ["LayoutWriter", "LayoutSource", "copy_into_layout", "blob_path", "Descriptor", "CHUNK"]
