"""Copy one image tree between registries: blobs, then child manifests, then the root, tag last.

A blob is copied at most once per target repository per run, however many tags share it; a blob
already pushed to another repository of the same target is cross-repo mounted instead.
"""

from __future__ import annotations

import threading
from functools import partial
from collections.abc import Callable
from typing import Any
from concurrent.futures import Future, ThreadPoolExecutor, wait

from loguru import logger

from regsync.errors import Interrupted, RegistryError, VerificationError
from regsync.net.http import TRANSIENT_STATUS
from regsync.kinds.image.answers import declared_length
from regsync.kinds.image.client import RegistryClient
from regsync.kinds.image.source import ImageSource
from regsync.kinds.image.manifest import Descriptor, Manifest
from regsync.content.partial import PartialFile
from regsync.content.reader import CHUNK, VerifyingReader, continues_at
from regsync.content.sha256 import ResumableSha256
from regsync.content.checkpoint import UploadCheckpoint
from regsync.content.files import state_dir
from regsync.pipeline.plan import PlanItem

UPLOAD_ATTEMPTS = 3
JobKey = tuple[str, str, str, int]   # (target, repository, digest, size): one copy job


class BlobCopier:
    def __init__(self, pool: ThreadPoolExecutor, on_bytes: Callable[[int], None] | None = None):
        self._pool, self._on_bytes = pool, on_bytes
        self._lock = threading.Lock()
        self._jobs: dict[JobKey, Future[str]] = {}
        self._first: dict[tuple[str, str, int], tuple[str, Future[str]]] = {}
        self.moved = 0      # bytes fetched from sources
        self.reused = 0     # bytes sent again from partial downloads a killed run kept
        self._fetched: dict[tuple[str, str, str, int], int] = {}  # per copy job: what it fetched
        self._stopping = threading.Event()
        self._manifest_locks: dict[tuple[str, str, str], threading.Lock] = {}
        self._manifests_pushed: set[tuple[str, str, str]] = set()
        self._taps: dict[str, Callable[[], Any]] = {}   # digest -> make a tap (feed, close, abort)
        self._tapped: dict[str, object] = {}               # digest -> a tap that saw the whole verified blob

    def tap(self, digest: str, make: Callable[[], object]) -> None:
        """See the blob's bytes as they are copied (the vulnerability gate reads layers so)."""
        with self._lock:
            self._taps.setdefault(digest, make)

    def tapped(self, digest: str) -> Any:   # what the tap's maker made (the vulnerability gate's reader), or None
        """The tap that saw every byte of `digest` verified in this run, or None (the blob was on the
        target already, mounted, resumed or spooled: the caller reads it itself)."""
        with self._lock:
            return self._tapped.get(digest)

    def stop(self) -> None:
        self._stopping.set()

    def finish(self) -> list[tuple[PlanItem, Exception]]:
        return []   # every blob is copied (or failed) with its item: nothing waits for the run's end

    def copy(self, src: ImageSource, src_repo: str, dst: RegistryClient, dst_repo: str,
             blob: Descriptor, started: list[JobKey] | None = None) -> Future[str]:
        """`started` collects the keys of the jobs this call started (not joined), for `fetched_by`."""
        # The size is part of the key: a descriptor giving a blob another size than one already
        # copied gets its own job, which refuses it, instead of riding on the verified copy.
        key = (dst.name, dst_repo, blob.digest, blob.size)
        with self._lock:
            if key in self._jobs:
                return self._jobs[key]
            mount_from = self._first.get((dst.name, blob.digest, blob.size))
            job = self._pool.submit(self._copy, src, src_repo, dst, dst_repo, blob, mount_from)
            self._jobs[key] = job
            if started is not None:
                started.append(key)
            self._first.setdefault((dst.name, blob.digest, blob.size), (dst_repo, job))
            return job

    def fetched_by(self, keys: list[JobKey]) -> int:
        """Bytes the source sent for these jobs: 0 for blobs the target had or mounted."""
        with self._lock:
            return sum(self._fetched.get(key, 0) for key in keys)

    def put_child_once(self, dst: RegistryClient, repo: str, manifest: Manifest) -> None:
        """Push a child manifest by digest once per run and repository.

        Tags sharing children (one image under many tags) would otherwise PUT the same manifest
        concurrently; distribution rewrites its link file non-atomically, and a concurrent index
        PUT that reads it half-written fails with DIGEST_INVALID.
        """
        key = (dst.name, repo, manifest.digest)
        with self._lock:
            lock = self._manifest_locks.setdefault(key, threading.Lock())
        with lock:
            if key not in self._manifests_pushed:
                dst.put_manifest(repo, manifest.digest, manifest)
                self._manifests_pushed.add(key)

    def _copy(self, src: ImageSource, src_repo: str, dst: RegistryClient, dst_repo: str, blob: Descriptor,
              mount_from: tuple[str, Future[str]] | None) -> str:
        if self._stopping.is_set():
            raise Interrupted()
        if dst.blob_exists(dst_repo, blob.digest, blob.size):
            return "exists"
        if mount_from is not None:
            from_repo, job = mount_from
            # FIFO pool: that job was queued first, so it runs before us or already has.
            if job.exception() is None and dst.mount_blob(dst_repo, blob.digest, from_repo):
                return "mounted"
        for attempt in range(1, UPLOAD_ATTEMPTS + 1):
            try:
                self._stream(src, src_repo, dst, dst_repo, blob)
                return "copied"
            except RegistryError as exc:
                if not _worth_another_stream(exc) or attempt == UPLOAD_ATTEMPTS:
                    raise
        raise AssertionError("unreachable")

    def _stream(self, src: ImageSource, src_repo: str, dst: RegistryClient, dst_repo: str, blob: Descriptor,
                spooling: bool = True) -> None:
        checkpoint = self._checkpoint(src, dst, dst_repo, blob)
        start = self._resume_point(dst, checkpoint) if checkpoint else 0
        # The upload session resumes at `start` (a clean stop), or the target starts afresh and the
        # bytes a killed run kept on disk (`kept`) are sent again without fetching them again.
        # (After a clean stop the spool is only cleared once the resumed upload is done.)
        spool = self._spool(src, dst, blob) if spooling else None
        kept = spool.resume(blob.size) if spool and start == 0 else 0
        appending = spool is not None and start == 0
        what = src.ref(src_repo, blob.digest)
        # A checkpointed upload stops only at a chunk boundary (its stop_check), never inside a PATCH:
        # distribution keeps a cut PATCH's bytes and then drops the whole session (issue 16, P7).
        count = partial(self._count, key=(dst.name, dst_repo, blob.digest, blob.size),
                        stop_within=checkpoint is None)
        offset = start or kept  # where the source is read from
        try:
            response = src.open_blob_from(src_repo, blob.digest, offset) if offset else src.open_blob(src_repo, blob.digest)
            if offset and not continues_at(response, offset):
                response.close()  # the source ignored the range: start over
                if checkpoint:
                    checkpoint.reset()
                kept = spool.restart() if spool is not None and appending else 0
                start, offset, response = 0, 0, src.open_blob(src_repo, blob.digest)
            with response:
                declared = declared_length(response, what)
                if declared is not None and declared != blob.size - offset:
                    raise VerificationError(f"{what}: server announces {declared} bytes, the manifest says {blob.size}"
                                            + (f" (from byte {offset})" if offset else ""))
                hasher = checkpoint.hasher if checkpoint else None
                tap = None
                if spool is not None and appending:
                    reader = _spooling_reader(spool, kept, response.raw.read, blob, what, hasher, count)
                else:
                    with self._lock:
                        make_tap = self._taps.get(blob.digest) if start == 0 else None
                    tap = make_tap() if make_tap else None
                    reader = VerifyingReader(response.raw.read, blob.digest, blob.size, what, on_bytes=count,
                                             hasher=hasher, count=start, tap=tap.feed if tap else None)
                try:
                    if checkpoint:
                        dst.upload_blob(dst_repo, blob, reader, checkpoint=checkpoint)
                    else:
                        dst.upload_blob(dst_repo, blob, reader)
                except BaseException:
                    if tap:
                        tap.abort()
                    raise
                if tap and reader.verified:
                    tap.close()
                    with self._lock:
                        self._tapped[blob.digest] = tap
            if spool:
                spool.discard()  # on the target now: the kept copy has done its job
            with self._lock:
                self.reused += kept
        except VerificationError:
            if spool:
                spool.discard()
            if not kept:
                raise
            # The kept bytes did not add up (a damaged disk): that says nothing about the source.
            logger.warning("{}: the bytes kept from an earlier run did not verify; fetching the blob again", what)
            self._stream(src, src_repo, dst, dst_repo, blob, spooling=False)
        except BaseException:
            if spool is not None and appending:
                try:
                    spool.checkpoint()  # a failed or killed run keeps what it fetched for the next one
                except OSError:
                    pass
            raise
        finally:
            if spool:
                spool.close()

    @staticmethod
    def _spool(src: ImageSource, dst: RegistryClient, blob: Descriptor) -> PartialFile | None:
        """Big blobs between registries keep their source bytes in the state dir as they stream."""
        if not src.resumable or not dst.resumable or blob.size < dst.spool_min:
            return None
        return PartialFile.kept(blob.digest)

    def _checkpoint(self, src: ImageSource, dst: RegistryClient, dst_repo: str,
                    blob: Descriptor) -> UploadCheckpoint | None:
        """Only chunked sha256 uploads between registries are resumable (and worth it)."""
        directory = state_dir()
        if (directory is None or not src.resumable or not dst.resumable
                or blob.size <= dst.monolithic_max or not blob.digest.startswith("sha256:")
                or not ResumableSha256.available()):
            return None
        return UploadCheckpoint(directory, f"{dst.host}/{dst_repo}", blob.digest, stop_check=self._stop_check)

    @staticmethod
    def _resume_point(dst: RegistryClient, checkpoint: UploadCheckpoint) -> int:
        """The saved offset when the registry's session still holds exactly that many bytes, else 0."""
        if not checkpoint.load():
            return 0
        if checkpoint.location is None or dst.upload_offset(checkpoint.location) != checkpoint.offset:
            checkpoint.reset()  # gone, expired, or a chunk was cut mid-body: distribution refuses those
            return 0
        return checkpoint.offset

    def _stop_check(self) -> None:
        if self._stopping.is_set():
            raise Interrupted()

    def _count(self, n: int, key: JobKey | None = None, stop_within: bool = True) -> None:
        with self._lock:
            self.moved += n
            if key is not None:
                self._fetched[key] = self._fetched.get(key, 0) + n
        if self._on_bytes:
            try:
                self._on_bytes(n)  # the run's counter raises Interrupted once the run is stopping
            except Interrupted:
                if stop_within:
                    raise


def _spooling_reader(spool: PartialFile, kept: int, read_source: Callable[[int], bytes], blob: Descriptor, what: str,
                     hasher: ResumableSha256 | None, on_bytes: Callable[[int], None] | None) -> VerifyingReader:
    """A VerifyingReader over the `kept` bytes on disk, then the source from there on; every byte the
    source sends is appended to the spool, and only those count as fetched."""
    disk = spool.open_for_reading()
    position = {"at": 0}

    def read(n: int) -> bytes:
        if position["at"] < kept:  # never a read across the seam: disk bytes, then source bytes
            data = disk.read(min(n, kept - position["at"]))
            if not data:
                raise OSError(f"the kept partial of {blob.digest} is shorter than its checkpoint")
            position["at"] += len(data)
            if position["at"] == kept:
                disk.close()
            return data
        return read_source(n)

    reader = _SpoolingReader(read, blob.digest, blob.size, what, hasher=hasher)
    reader.spool, reader.kept, reader.fetched = spool, kept, on_bytes
    spool.hasher, spool.reader, spool.size = reader.hasher, reader, blob.size
    return reader


class _SpoolingReader(VerifyingReader):
    spool: PartialFile
    kept: int
    fetched: Callable[[int], None] | None

    def read(self, n: int = CHUNK) -> bytes:
        data = super().read(n)
        if data and self.count > self.kept:  # hashed already, so the spool's checkpoint state covers it
            self.spool.write(data)
            if self.fetched:
                self.fetched(len(data))
        return data


def _worth_another_stream(exc: RegistryError) -> bool:
    """A broken connection, or a write the transport could not retry itself (GET/HEAD already were)."""
    if exc.status is None:
        return not isinstance(exc, Interrupted)
    return exc.status in TRANSIENT_STATUS and exc.method not in ("GET", "HEAD")


def copy_tree(src: ImageSource, src_repo: str, dst: RegistryClient, dst_repo: str, tree: list[Manifest],
              tag: str, blobs: BlobCopier, on_verified: Callable[[], object] | None = None) -> int:
    """`tree` is children-first with the root last (see kinds/image/tree.manifest_tree). Returns the
    bytes fetched for it (a blob shared with another image of this run counts for whichever started it).

    `on_verified` runs once every blob is on the target with its digest checked, before the
    first manifest is pushed.
    """
    unique = {(b.digest, b.size): b for m in tree for b in m.blobs()}
    started: list[JobKey] = []
    jobs = [blobs.copy(src, src_repo, dst, dst_repo, b, started) for b in unique.values()]
    wait(jobs)
    for job in jobs:
        if job.cancelled():
            raise Interrupted()
        job.result()  # re-raise the first failure: no manifest goes up over a missing blob
    if on_verified:
        on_verified()
    for manifest in tree[:-1]:
        blobs.put_child_once(dst, dst_repo, manifest)
    dst.put_manifest(dst_repo, tag, tree[-1])
    return blobs.fetched_by(started)
