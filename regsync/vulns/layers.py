"""What an image holds, read from its layers as they stream: the OS (etc/os-release), OS packages
(var/lib/dpkg/status and status.d/, lib/apk/db/installed), Python distributions (*.dist-info/METADATA),
conda environments (conda-meta/*.json), and npm, Composer and RubyGems packages (node_modules/…/package.json,
vendor/composer/installed.json, specifications/*.gemspec: vulns/records.py). Layers apply in order,
with OCI whiteouts: a later layer's file replaces or deletes an earlier one's. Only those files are
kept, each bounded, and of a language package's file only what names it.
"""

from __future__ import annotations

import io
import posixpath
import queue
import re
import threading
from typing import IO, cast

from regsync.vulns import records
from regsync.vulns.tarstream import BLOCK, HARD_LINK, REGULAR, TarError, TarStream, is_header

MAX_FILE = 32 << 20        # a dpkg status of a full desktop system is ~5 MiB
MAX_METADATA = 1 << 20     # headers only; a long description is cut, not read (and a package.json's limit)
# Five layers parsed at once peaked at 83 MB with 8 queued chunks and a 1 MiB read buffer, 50 MB
# with these, for the same CPU (2.9 s for 5 × 159 MB of tar+gzip, isal).
QUEUED = 3                 # chunks (1 MiB each, the copy's reads) between a copy and its parser
READ_BUFFER = 256 << 10    # the tar reader's, reused for every skip
_WANTED = re.compile(r"(etc|usr/lib)/os-release|var/lib/dpkg/status|var/lib/dpkg/status\.d/[^/]+|lib/apk/db/installed"
                     r"|.*/[^/]+\.dist-info/METADATA|(.*/)?conda-meta/[^/]+\.json"
                     f"|{records.NPM.pattern}|{records.COMPOSER.pattern}|{records.GEMSPEC.pattern}")
# every path _WANTED takes ends so (or is in status.d/): one endswith spares most members the regex
_ENDINGS = ("os-release", "/status", "installed", "/METADATA", ".json", ".gemspec")
_LANGUAGE_FILES = ("/package.json", ".gemspec")   # one a package: at most records.MAX_LANGUAGE a layer


def wanted(path: str) -> bool:
    return (path.endswith(_ENDINGS) or "/status.d/" in path) and _WANTED.fullmatch(path) is not None


def _limit(path: str) -> int:
    """How much of a wanted file is read: a METADATA's headers and a package.json are small; a
    gemspec is named by its file name alone."""
    if path.endswith(".gemspec"):
        return 0
    return MAX_METADATA if path.endswith(("METADATA", "/package.json")) else MAX_FILE


class LayerFiles:
    """What one layer says about the files the database needs: (op, path, data) in tar order,
    op being "file", "whiteout" (path deleted), "opaque" (nothing below path from earlier layers) or
    "more" (path is the first npm or RubyGems package file past records.MAX_LANGUAGE: not read)."""

    def __init__(self):
        self.ops: list[tuple[str, str, bytes | None]] = []


def read_layer(stream, compression: str = "") -> LayerFiles:
    """`stream` has read(n) (a verifying reader); read to its end, so its digest is checked.

    `compression` is the media type's word for it; the stream's first bytes decide (tarfile's
    "r|*" did the same: some registries serve plain tars under a gzip media type)."""
    found = LayerFiles()
    tar = TarStream(_decompressed(_Source(stream)), READ_BUFFER)
    kept: dict[str, bytes] = {}    # this layer's files read so far, for hard links to them
    cap = _LanguageCap()
    for member in tar.members():
        path = _normal(member.name)
        folder, base = posixpath.split(path)
        if base == ".wh..wh..opq":
            found.ops.append(("opaque", folder, None))
        elif base.startswith(".wh."):
            found.ops.append(("whiteout", posixpath.join(folder, base[4:]), None))
        elif not wanted(path) or member.kind not in REGULAR and member.kind != HARD_LINK:
            continue
        elif cap.skips(path):
            continue
        elif member.kind in REGULAR:
            if member.sparse:
                raise TarError(f"{path}: stored as a sparse file, which this reader does not expand")
            kept[path] = records.kept(path, tar.read(_limit(path)))
            found.ops.append(("file", path, kept[path]))
        elif member.kind == HARD_LINK and _normal(member.linkname) in kept:
            # conda hard-links site-packages to its pkgs/ cache: a later `conda clean` layer
            # whites out the cache, and the environment's link is what names the package then
            found.ops.append(("file", path, kept[_normal(member.linkname)]))
    while stream.read(1 << 20):   # the tar's end padding too: the digest is checked at the last byte
        pass
    if cap.first_skipped is not None:
        found.ops.append(("more", cap.first_skipped, None))
    return found


class _LanguageCap:
    """npm and RubyGems package files (one a package) counted as they come; past records.MAX_LANGUAGE
    they are skipped, the first of them named. Only they: an OS database after them is still read."""

    def __init__(self) -> None:
        self.count = 0
        self.first_skipped: str | None = None

    def skips(self, path: str) -> bool:
        if not path.endswith(_LANGUAGE_FILES):
            return False
        self.count += 1
        if self.count <= records.MAX_LANGUAGE:
            return False
        self.first_skipped = self.first_skipped or path
        return True


def is_layer(path) -> bool:
    """A tar, compressed as layers are or not, by its first block (`regsync scan FILE`)."""
    with path.open("rb") as handle:
        try:
            tar = _decompressed(_Source(handle))
            first = b""
            while len(first) < BLOCK:   # a plain tar's source answers its peeked bytes first: one read is short
                more = tar.read(BLOCK - len(first))
                if not more:
                    break
                first += more
            return is_header(first)
        except (OSError, EOFError, ValueError):   # what the decompressors raise on bytes that are not theirs
            return False


def _normal(name: str) -> str:
    return posixpath.normpath(name.lstrip("/")).lstrip("/")


class LayerCapture:
    """A layer read from the chunks another thread copies (BlobCopier's tap), never held whole: a
    parser thread pulls them through a small queue, which slows the copy when it falls behind.
    `files` is set only when the copy saw every byte and verified the digest (`close`)."""

    def __init__(self, compression: str = ""):
        self.files: LayerFiles | None = None
        self._queue: queue.Queue = queue.Queue(maxsize=QUEUED)
        self._result: LayerFiles | None = None
        self._thread = threading.Thread(target=self._parse, args=(compression,), daemon=True)
        self._thread.start()

    def feed(self, chunk: bytes) -> None:
        self._queue.put(chunk)

    def close(self) -> None:
        """The copy is done and its digest checked: what was parsed is the layer's."""
        self._queue.put(None)
        self._thread.join(60)
        self.files = self._result

    def abort(self) -> None:
        self._queue.put(None)

    def _parse(self, compression: str) -> None:
        source = _QueueFile(self._queue)
        try:
            self._result = read_layer(source, compression)
        except Exception:  # noqa: BLE001 — not a tar the parser reads: the gate reads the layer itself
            self._result = None
        while not source.ended:   # never leave the copy blocked on a full queue
            source.read(1 << 20)


class _QueueFile(io.RawIOBase):
    """A file over chunks from a queue (None ends it), copying each byte once, into the reader's buffer."""

    def __init__(self, chunks: queue.Queue):
        self._chunks, self._chunk, self._at, self.ended = chunks, memoryview(b""), 0, False

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        if self._at >= len(self._chunk):
            chunk = None if self.ended else self._chunks.get()
            if chunk is None:
                self.ended = True
                return 0
            self._chunk, self._at = memoryview(chunk), 0
        take = min(len(buffer), len(self._chunk) - self._at)
        buffer[:take] = self._chunk[self._at:self._at + take]
        self._at += take
        return take


class _Source(io.RawIOBase):
    """A file over `stream.read(n)` (a verifying reader, an open file) that can look at its first bytes."""

    def __init__(self, stream):
        self._read, self._head = stream.read, b""
        self._readinto = getattr(stream, "readinto", None)

    def readable(self) -> bool:
        return True

    def peek(self, n: int) -> bytes:
        while len(self._head) < n:
            more = self._read(n - len(self._head))
            if not more:
                break
            self._head += more
        return self._head[:n]

    def readinto(self, buffer) -> int:
        if self._head:
            take = min(len(buffer), len(self._head))
            buffer[:take], self._head = self._head[:take], self._head[take:]
            return take
        if self._readinto is not None:
            return self._readinto(buffer) or 0
        data = self._read(len(buffer))
        buffer[:len(data)] = data
        return len(data)


class ImageContents:
    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.more: list[str] = []    # layers with more language package files than were read

    def add_layer(self, stream, compression: str = "") -> None:
        self.apply(read_layer(stream, compression))

    def apply(self, layer: LayerFiles) -> None:
        """Layers in order: a later layer's file replaces an earlier one's. A layer's whiteouts
        delete from the layers below it only, wherever they stand in its tar (OCI image-spec,
        layer.md: "Whiteout files MUST only apply to resources in lower/parent layers")."""
        for op, path, data in layer.ops:
            if op == "more":
                self.more.append(path)
            elif op != "file":
                prefix = path + "/"
                self.files = {p: d for p, d in self.files.items()
                              if not p.startswith(prefix) and (op == "opaque" or p != path)}
        for op, path, data in layer.ops:
            if op == "file":
                assert data is not None, "a file op carries its bytes"
                self.files[path] = data

    def add_tree(self, root) -> None:
        """An unpacked layer or root file system on disk (`regsync scan DIR`)."""
        cap = _LanguageCap()
        for path in sorted(root.rglob("*")):
            relative = path.relative_to(root).as_posix()
            if path.is_file() and not path.is_symlink() and wanted(relative) and not cap.skips(relative):
                with path.open("rb") as handle:
                    self.files[relative] = records.kept(relative, handle.read(_limit(relative)))
        if cap.first_skipped is not None:
            self.more.append(cap.first_skipped)

    def os_release(self) -> dict[str, str]:
        text = (self.files.get("etc/os-release") or self.files.get("usr/lib/os-release") or b"").decode("utf-8", "replace")
        found = {}
        for line in text.splitlines():
            key, eq, value = line.partition("=")
            if eq:
                found[key.strip()] = value.strip().strip('"').strip("'")
        return found

    def packages(self) -> tuple[list[tuple[str, str, str]], list[str]]:
        """((ecosystem, name, version) …, what could not be named for the database)."""
        found: list[tuple[str, str, str]] = []
        not_covered: list[str] = []
        ecosystem = records.os_ecosystem(self.os_release())
        dpkg = [d for p, d in sorted(self.files.items()) if p == "var/lib/dpkg/status" or p.startswith("var/lib/dpkg/status.d/")]
        for name, version in records.dpkg(dpkg):
            if ecosystem is None or ecosystem.split(":")[0] not in ("Debian", "Ubuntu"):
                not_covered.append(f"dpkg {name} {version} (the OS release is not one OSV names)")
            else:
                found.append((ecosystem, name, version))
        for name, version in records.apk(self.files.get("lib/apk/db/installed", b"")):
            if ecosystem is None or ecosystem.split(":")[0] not in ("Alpine", "Wolfi", "Chainguard"):
                not_covered.append(f"apk {name} {version} (the OS release is not one OSV names)")
            else:
                found.append((ecosystem, name, version))
        python = set()
        for path, data in self.files.items():
            if path.endswith(".dist-info/METADATA"):
                named = records.python_distribution(data)
                if named is not None:
                    python.add(named)
            elif "conda-meta/" in path:
                named = records.conda_record(data)
                if named is not None:
                    not_covered.append(f"conda {named[0]} {named[1]} (conda packages are not in OSV's data)")
        found.extend(("PyPI", name, version) for name, version in sorted(python))
        languages, missing = records.language_packages(self.files)
        found.extend(languages)
        not_covered.extend(missing)
        not_covered.extend(f"more than {records.MAX_LANGUAGE} npm and RubyGems package files in one layer: "
                           f"{path} and those after it not checked" for path in self.more)
        if not found and not not_covered:
            not_covered.append("no package database found in the image (no dpkg, apk, Python, conda, npm, "
                               "Composer or RubyGems records)")
        return found, not_covered


def _decompressed(source: _Source):
    """The layer's tar, by its first bytes: gzip (with ISA-L's inflate where python-isal is
    installed: about half zlib's CPU on layers, benchmarks P11), zstd, bzip2, xz, or plain."""
    head = source.peek(6)
    if head[:2] == b"\x1f\x8b":
        try:
            from isal import igzip
        except ImportError:   # no wheel for this platform: the standard library's zlib
            import gzip
            return gzip.GzipFile(fileobj=source, mode="rb")
        return igzip.IGzipFile(fileobj=source, mode="rb")
    if head[:4] == b"\x28\xb5\x2f\xfd":
        try:
            from compression import zstd
        except ImportError:
            from backports import zstd
        return zstd.ZstdFile(source)
    if head[:3] == b"BZh":
        import bz2
        return bz2.BZ2File(source)
    if head == b"\xfd7zXZ\x00":
        import lzma
        return lzma.LZMAFile(cast(IO[bytes], source))
    return source


def compression_of(media_type: str) -> str:
    return "zstd" if media_type.endswith("zstd") else "gzip" if "gzip" in media_type else ""
