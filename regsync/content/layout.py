"""The bundle's blob store, an OCI image layout on disk, as every kind and the bundle use it:
blobs named by their sha256 (written once, renamed into place only when verified), `oci-layout`,
and `index.json` with its named refs. What reads the refs as images (tags, manifests) is the image
kind's: kinds/image/layout.py.

The layout on the import side is untrusted input: blob paths are built only from digests that
match `sha256:<64 hex>`, and files are opened without following symlinks.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import stat
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from loguru import logger

from regsync.content.files import create_new, write_atomically
from regsync.content.reader import CHUNK
from regsync.errors import NotFound, VerificationError

DIGEST = re.compile(r"sha256:[0-9a-f]{64}")


def blob_path(root: Path, digest: str) -> Path:
    if not DIGEST.fullmatch(digest or ""):
        # A bundle's blob store and its SHA256SUMS are sha256-addressed: other content is refused.
        raise VerificationError(f"'{str(digest)[:80]}' is not a sha256 digest (a bundle holds sha256-addressed "
                                f"content only)")
    return root / "blobs" / "sha256" / digest.split(":", 1)[1]


def open_regular(path: Path):
    """Open a file that must be a regular file inside the layout: no symlink, no device."""
    try:   # O_NONBLOCK: a FIFO planted in a bundle would block open() until a writer came (forever)
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
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

    def write_blob(self, digest: str, chunks) -> None:
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

    def write_manifest(self, manifest) -> None:
        """A manifest is a blob too (`manifest`: anything with the `.digest` of its `.raw` bytes)."""
        self.write_blob(manifest.digest, [manifest.raw])

    def write_index(self, refs: list[dict]) -> None:
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


REF_NAME = "org.opencontainers.image.ref.name"
# On a ref whose manifest regsync filtered by platform: the source's own (signed) index digest.
SOURCE_DIGEST = "io.github.regsync.source-digest"
MAX_INDEX_BYTES = 64 * 1024 * 1024




class LayoutBlobs:
    """The blobs of a layout on the read side, as the kinds' bundle stand-ins read them: the layout
    named `name` (a policy source), its blobs found in `root` or in `more_blobs`, further directories
    holding blobs (other volumes, the base of an incremental bundle) read as untrusted as the bundle
    itself. `index`: index.json's bytes as already checked (against SHA256SUMS and its signature),
    for whoever reads the refs (kinds/image/layout.py's LayoutSource); read from the file when None."""

    def __init__(self, root: Path, name: str = "bundle", more_blobs: tuple[Path, ...] = (),
                 index: bytes | None = None):
        self.root, self.name = root, name
        self.more_blobs, self.index = tuple(more_blobs), index
        self._blob_roots = (root, *self.more_blobs)

    def blob_path(self, digest: str) -> Path:
        paths = [blob_path(root, digest) for root in self._blob_roots]
        return next((path for path in paths if os.path.lexists(path)), paths[0])

    def read_index(self) -> bytes:
        """index.json's bytes: as checked when given, else read (bounded, no symlink)."""
        if self.index is not None:
            return self.index
        with open_regular(self.root / "index.json") as handle:
            return handle.read(MAX_INDEX_BYTES + 1)
