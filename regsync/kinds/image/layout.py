"""An OCI image layout read as a registry, on the air-gapped side: `regsync import` serves the
bundle's refs and manifests with the same read methods as a registry, so it pushes with the same
engine; and the copy of an image tree into the layout on export. The blob store itself, which every
kind shares, is regsync/content/layout.py.

The layout on the import side is untrusted input: every read is bounded and digest-checked like a
registry's, and its refs' names are checked against the distribution grammar.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, BinaryIO

from regsync.content.layout import (DIGEST, MAX_INDEX_BYTES, REF_NAME, SOURCE_DIGEST, LayoutBlobs, LayoutWriter,
                                    blob_path, open_regular)
from regsync.content.reader import VerifyingReader
from regsync.errors import NotFound, UsageError, VerificationError
from regsync.kinds.image.manifest import MAX_MANIFEST_BYTES, Descriptor, Manifest
from regsync.policy.names import InvalidName, check_image_ref, shown

if TYPE_CHECKING:
    from regsync.kinds.image.source import ImageSource


class _BlobResponse:
    """A BlobStream (kinds/image/source.py): what BlobCopier needs of an HTTP response."""

    def __init__(self, handle: BinaryIO, size: int, start: int = 0) -> None:
        self.raw, self.headers = handle, {"Content-Length": str(size - start)}
        if start:
            handle.seek(start)
            self.headers["Content-Range"] = f"bytes {start}-{size - 1}/{size}"

    def close(self) -> None:
        self.raw.close()

    def __enter__(self) -> _BlobResponse:
        return self

    def __exit__(self, *exc: object) -> None:
        self.raw.close()


class LayoutSource(LayoutBlobs):
    """An ImageSource (kinds/image/source.py) over a layout: tags come from index.json refs named
    "<registry>/<repository>:<tag>", so tag selection, planning and copying run unchanged."""

    def __init__(self, root: Path, name: str = "bundle", more_blobs: tuple[Path, ...] = (),
                 index: bytes | None = None):
        """As LayoutBlobs; `more_blobs` are read only for blobs, never for refs, and the refs come
        from exactly the `index` bytes when given."""
        super().__init__(root, name, more_blobs, index)
        self.base = str(root)
        self.resumable = False   # a local file: nothing to resume
        self._refs = self._read_refs(self.read_index())

    @classmethod
    def over(cls, blobs: LayoutBlobs) -> "LayoutSource":
        """The refs and blobs of what the bundle hands a kind (regsync/bundle/source.py)."""
        return cls(blobs.root, blobs.name, blobs.more_blobs, blobs.index)

    def _read_refs(self, raw: bytes) -> dict[str, dict[str, Any]]:
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

    def open_blob(self, repo: str, digest: str, start: int = 0) -> _BlobResponse:
        try:
            handle = open_regular(self.blob_path(digest))
        except NotFound:
            raise NotFound(self.ref(repo, digest), 404, "not in the bundle (an incremental bundle leaves out layers "
                                                        "the base bundle had: import that first, or name its "
                                                        "directory after this one)") from None
        return _BlobResponse(handle, os.fstat(handle.fileno()).st_size, start)

    def open_blob_from(self, repo: str, digest: str, start: int) -> _BlobResponse:
        return self.open_blob(repo, digest, start)

    def repository_exists(self, repo: str) -> None:
        return None   # a bundle has no such question: what it lacks, it lacks by tag

    def may_have_tag(self, repo: str, tag: str) -> bool:
        return True   # head_manifest answers from index.json already

    def blob_exists(self, repo: str, digest: str) -> bool:
        return self.blob_path(digest).is_file()

    def get_referrers(self, repo: str, digest: str) -> dict[str, Any] | None:
        """A layout has no referrers API: None sends readers to the referrers tag, which export writes."""
        return None


def copy_into_layout(src: ImageSource, src_repo: str, tree: list[Manifest], writer: LayoutWriter,
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
