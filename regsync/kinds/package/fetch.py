"""Downloading one distribution: streamed, sha256-verified, resumed with Range after a drop or a kill.

Bytes land in a partial file kept in the state dir under the file's sha256 (see partial.py), with
a checkpoint of the SHA-256 state. After a broken connection we ask for the rest (`Range:
bytes=N-`) and hash on from where we were; after a killed run the next run does the same from the
last checkpoint. Either way the digest is checked over every byte, exactly as for a file that came
down in one piece, before the file is handed on.
"""

from __future__ import annotations

import os
import re
import tempfile
import threading
import weakref
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO, TypeVar

from loguru import logger
from pypi_simple import DistributionPackage

from regsync.errors import NotFound, VerificationError
from regsync.kinds.package.ref import sha256_of
from regsync.kinds.package.source import Downloadable, FileStream, Opener, PackageSource
from regsync.content.partial import PartialFile
from regsync.content.reader import SourceReadError, VerifyingReader, continues_at

if TYPE_CHECKING:
    from regsync.content.layout import LayoutBlobs

RESUME_ATTEMPTS = 5
D = TypeVar("D", bound=Downloadable)


class _Kept:
    """Files one run already downloaded and verified (a wheel read for its METADATA at plan time),
    by sha256, in a private temporary directory that goes with the run's index object: apply then
    pushes those bytes instead of downloading a multi-GB wheel a second time."""

    def __init__(self) -> None:
        self.directory = tempfile.TemporaryDirectory(prefix="regsync-kept-")  # 0700, removed with the run
        self.files: dict[str | None, Path] = {}  # by sha256 (None for a file the index gave no sha256)
        self.lock = threading.Lock()


_KEPT: "weakref.WeakKeyDictionary[object, _Kept]" = weakref.WeakKeyDictionary()
_KEPT_LOCK = threading.Lock()


def _kept_for(index: PackageSource) -> _Kept:
    with _KEPT_LOCK:
        if index not in _KEPT:
            _KEPT[index] = _Kept()
        return _KEPT[index]


def fetch_and_keep(index: PackageSource, package: DistributionPackage) -> Path:
    """The verified file, downloaded once per run through `index` and kept for the run."""
    kept, digest = _kept_for(index), sha256_of(package)
    with kept.lock:
        path = kept.files.get(digest) if digest else None
    if path is None:
        path = Path(kept.directory.name) / package.filename
        fetch_verified(index, package, path)
        with kept.lock:
            kept.files[digest] = path
    return path


def kept_size(index: PackageSource, package: DistributionPackage) -> int | None:
    """The size of `package` when this run already holds it, else None."""
    kept = _KEPT.get(index)
    path = kept.files.get(sha256_of(package)) if kept else None
    return path.stat().st_size if path else None


def fetch_verified(index: Opener[D], package: D, path: Path, on_bytes: Callable[[int], None] | None = None,
                   where: str = "") -> str:
    """Stream `package` to `path`, its sha256 checked against the index; returns the digest. `where`
    names the file in messages (default `index/filename`)."""
    where = where or f"{index.name}/{package.filename}"
    digest = sha256_of(package)
    if digest is None:
        raise VerificationError(f"{where}: the index gives no sha256 for it")
    kept = _KEPT.get(index)
    earlier = kept.files.get(digest) if kept else None
    if earlier is not None and earlier != path:
        # planning downloaded it in this run: no second download. Its bytes still count as moved
        # (they crossed the network once in this run), so the summary matches the wire.
        _copy_verified(earlier, path, digest, where, on_bytes)
        return digest
    partial = PartialFile.kept(digest) or PartialFile.plain(path, digest)
    try:
        _download(index, package, partial, digest, where, on_bytes)
        partial.complete(path)
    except VerificationError:
        partial.discard()
        raise
    except BaseException:
        try:
            partial.checkpoint()  # a failed or interrupted run keeps what it wrote for the next one
        except OSError as exc:  # (a full disk, say) the original failure is the one to report
            logger.debug("{}: no checkpoint kept: {}", where, exc)
        raise
    finally:
        partial.close()
    return digest


def _download(index: Opener[D], package: D, partial: PartialFile, digest: str, where: str,
              on_bytes: Callable[[int], None] | None) -> None:
    start = partial.resume(package.size)
    from_disk = start > 0
    for attempt in range(RESUME_ATTEMPTS + 1):
        response, start, size = _open(index, package, partial, start, where)
        from_disk = from_disk and start > 0
        try:
            partial.size = size
            reader = partial.reader = VerifyingReader(response.raw.read, digest, size, where, on_bytes,
                                                      hasher=partial.hasher, count=start)
            try:
                for chunk in reader.chunks():
                    partial.write(chunk)
                return
            except SourceReadError:
                if attempt == RESUME_ATTEMPTS or size is None:
                    raise
                start = reader.count
            except VerificationError as exc:
                if not from_disk or attempt == RESUME_ATTEMPTS or "digest mismatch" not in exc.reason:
                    raise
                # Bytes kept from an earlier run did not add up (a damaged disk, a checkpoint edited):
                # that says nothing about the source, so fetch the whole file before judging it.
                logger.warning("{}: the kept partial download did not verify; downloading it again", where)
                start, from_disk = partial.restart(), False
        finally:
            response.close()


def _open(index: Opener[D], package: D, partial: PartialFile, start: int,
          where: str) -> tuple[FileStream, int, int | None]:
    """(response, start, size): from `start` when the server continues exactly the bytes kept so far,
    else from the start (a server that ignores Range, or now gives the file another length)."""
    response = index.open(package, start=start)
    if not start:
        return response, 0, _total_size(response, 0, package, where)
    if continues_at(response, start):
        size = _total_size(response, start, package, where)
        if partial.size is None or size == partial.size:
            return response, start, size
    logger.info("{}: the server does not continue the download at byte {}; starting over", where, start)
    response.close()
    partial.restart()
    response = index.open(package)
    return response, 0, _total_size(response, 0, package, where)


def _total_size(response: FileStream, start: int, package: Downloadable, where: str) -> int | None:
    """The file's whole length as the server states it, checked against the index when it says one."""
    declared = response.headers.get("Content-Length")
    total = int(declared) + start if declared and declared.isdigit() else None
    if start:
        match = re.fullmatch(r"bytes \d+-\d+/(\d+)", response.headers.get("Content-Range", "").strip())
        if match:
            total = int(match.group(1))
    if package.size is not None and total is not None and total != package.size:
        raise VerificationError(f"{where}: server announces {total} bytes, the index says {package.size}")
    return total if total is not None else package.size


def _copy_verified(source: Path, path: Path, digest: str, where: str, on_bytes: Callable[[int], None] | None = None) -> None:
    """A kept file copied to `path`, hashed again on the way: what was verified at plan time is a
    local file since, and the final check still covers every byte that is handed on."""
    size = source.stat().st_size
    with open(source, "rb") as src, open(path, "wb") as dst:
        reader = VerifyingReader(src.read, digest, size, where, on_bytes)
        for chunk in reader.chunks():
            dst.write(chunk)
        dst.flush()
        os.fsync(dst.fileno())


class FileResponse:
    """What fetch_verified needs of an HTTP response (`.raw.read`, `.headers`, `.close()`), for a
    local file: the bundle's stand-in sources serve their blobs through it."""

    def __init__(self, handle: BinaryIO, length: int, start: int = 0):
        self.raw, self.headers = handle, {"Content-Length": str(length)}
        if start:  # as a server that honours Range says it (fetch_verified starts over without it)
            self.headers["Content-Range"] = f"bytes {start}-{start + length - 1}/{start + length}"

    def close(self) -> None:
        self.raw.close()

    @classmethod
    def of_blob(cls, layout: LayoutBlobs, digest: str, what: str, start: int = 0) -> "FileResponse":
        """A bundle's blob from byte `start`, opened as a regular file of the bundle's (no symlink)."""
        from regsync.content.layout import open_regular

        try:
            handle = open_regular(layout.blob_path(digest))
        except NotFound:
            raise NotFound(what, 404, "not in the bundle") from None
        size = os.fstat(handle.fileno()).st_size
        handle.seek(start)
        return cls(handle, size - start, start)
