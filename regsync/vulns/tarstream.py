"""A layer's tar stream walked header by header, reading the data of only the members asked for.

Hand-written rather than `tarfile`: tarfile's stream mode ("r|") moves every member's data through
its own buffer, joining and slicing bytes objects in bufsize steps, even to skip it, and a layer
scan wants only a handful of small files out of hundreds of megabytes. Here a member's data nobody
reads is skipped inside one reused buffer (`readinto`), so scanning a layer costs about what
inflating it costs (benchmarks P11). The headers are read as tarfile reads them: ustar (with its
name prefix), GNU (long names and link names, `L`/`K`; old sparse headers, `S`) and POSIX.1-2001
PAX (`x`/`X` for the next member: `path`, `linkpath`, `size`), checksums checked; the data of
header-only types (links, directories, devices, FIFOs) is never skipped, whatever their size says.
A PAX global header (`g`) is read past: tarfile would apply its `path` to every later member,
which no layer writer does.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import NamedTuple

BLOCK = 512
REGULAR = (b"0", b"\0", b"7", b"S")                  # tarfile's REGULAR_TYPES
HEADER_ONLY = (b"1", b"2", b"3", b"4", b"5", b"6")   # no data follows, whatever `size` says
HARD_LINK = b"1"
MAX_EXTENDED = 1 << 20    # a PAX or GNU long-name header's own data
_PAX_RECORD = re.compile(rb"(\d+) ([^=]+)=")


class TarError(ValueError):
    """Not a tar stream this reader reads (bad checksum, truncated, a header field that is no number)."""


class Member(NamedTuple):
    name: str
    kind: bytes          # the typeflag
    linkname: str
    size: int
    sparse: bool         # data stored as a GNU sparse map: not the file's bytes as they are


class TarStream:
    """`fileobj` has readinto(buffer) (a decompressing file, a socket's reader); read once, forwards."""

    def __init__(self, fileobj, buffer_size: int = 1 << 20):
        self._file = fileobj
        self._view = memoryview(bytearray(buffer_size))
        self._start = self._end = 0
        self._left = 0       # data bytes of the current member not read yet
        self._padding = 0    # and its padding to the next block

    def members(self) -> Iterator[Member]:
        """Each member in order; before asking for the next, `read` may take the start of its data."""
        long_name = long_link = None
        extended: dict[str, str] = {}
        while True:
            self._skip(self._left + self._padding)
            self._left = self._padding = 0
            header = self._take(BLOCK)
            if not header or header.count(0) == BLOCK:
                return   # the end-of-archive block (or a stream that ends without one, as tarfile allows)
            if len(header) < BLOCK:
                raise TarError("truncated tar header")
            _check(header)
            kind, size = header[156:157], _number(header[124:136])
            if kind in (b"L", b"K"):
                text = _text(self._extended(size))
                long_name, long_link = (text, long_link) if kind == b"L" else (long_name, text)
                continue
            if kind in (b"x", b"X", b"g"):
                records = _pax(self._extended(size))
                if kind != b"g":
                    extended = records
                continue
            name, linkname, prefix = _text(header[0:100]), _text(header[157:257]), _text(header[345:500])
            if kind == b"\0" and name.endswith("/"):
                kind = b"5"     # old V7 tars write a directory as a file named with a slash
            if prefix and kind not in (b"L", b"K", b"S"):
                name = prefix + "/" + name
            sparse = kind == b"S"
            if sparse and header[482]:
                self._sparse_blocks()
            name, linkname = long_name or name, long_link or linkname
            if extended:
                name = extended.get("GNU.sparse.name") or extended.get("path") or name
                linkname = extended.get("linkpath", linkname)
                size = _number(extended["size"].encode()) if "size" in extended else size
                sparse = sparse or any(key.startswith("GNU.sparse.") for key in extended)
            long_name = long_link = None
            extended = {}
            if size < 0:
                raise TarError(f"{name}: a negative size in its tar header")
            if kind not in HEADER_ONLY:
                self._left, self._padding = size, -size % BLOCK
            yield Member(name.rstrip("/") if kind == b"5" else name, kind, linkname, size, sparse)

    def read(self, limit: int) -> bytes:
        """Up to `limit` bytes of the current member's data (the rest is skipped by `members`)."""
        n = min(limit, self._left)
        data = self._take(n)
        if len(data) < n:
            raise TarError("the tar stream ends inside a member's data")
        self._left -= n
        return data

    def _extended(self, size: int) -> bytes:
        if size > MAX_EXTENDED:
            raise TarError(f"a {size}-byte extended tar header (at most {MAX_EXTENDED})")
        data = self._take(size + -size % BLOCK)
        if len(data) < size:
            raise TarError("the tar stream ends inside an extended header")
        return data[:size]

    def _sparse_blocks(self) -> None:
        """Old GNU sparse headers continue in extra blocks while their `isextended` byte is set."""
        while True:
            block = self._take(BLOCK)
            if len(block) < BLOCK:
                raise TarError("the tar stream ends inside a sparse header")
            if not block[504]:
                return

    def _take(self, n: int) -> bytes:
        parts = []
        while n:
            if self._start == self._end and not self._refill():
                break
            k = min(n, self._end - self._start)
            parts.append(bytes(self._view[self._start:self._start + k]))
            self._start += k
            n -= k
        return b"".join(parts)

    def _skip(self, n: int) -> None:
        while n:
            if self._start == self._end and not self._refill():
                raise TarError("the tar stream ends inside a member's data")
            k = min(n, self._end - self._start)
            self._start += k
            n -= k

    def _refill(self) -> bool:
        got = self._file.readinto(self._view)
        self._start, self._end = 0, got or 0
        return bool(got)


def is_header(block: bytes) -> bool:
    """A tar's first block: a header whose checksum holds, or the end-of-archive block."""
    if len(block) != BLOCK:
        return False
    if block.count(0) == BLOCK:
        return True
    try:
        _check(block)
    except TarError:
        return False
    return True


def _check(header: bytes) -> None:
    """The header checksum, unsigned or (as some old tars wrote it) signed, as tarfile accepts."""
    stored = _number(header[148:156])
    unsigned = 256 + sum(header[:148]) + sum(header[156:])
    if stored == unsigned:
        return
    high = sum(1 for byte in header[:148] + header[156:] if byte >= 128)
    if stored != unsigned - 256 * high:
        raise TarError("bad tar header checksum")


def _number(field: bytes) -> int:
    if field[:1] in (b"\x80", b"\xff"):   # GNU base-256 for values octal cannot hold
        value = int.from_bytes(field[1:], "big")
        return value - 256 ** (len(field) - 1) if field[0] == 0xFF else value
    try:
        return int(field.split(b"\0", 1)[0].strip() or b"0", 8)
    except ValueError:
        raise TarError("a tar header field that is not a number") from None


def _text(field: bytes) -> str:
    return field.split(b"\0", 1)[0].decode("utf-8", "surrogateescape")


def _pax(data: bytes) -> dict[str, str]:
    """"%d %s=%s\\n" records; the length counts the whole record."""
    records, at = {}, 0
    while match := _PAX_RECORD.match(data, at):
        length = int(match[1])
        if length <= 0:
            raise TarError("a PAX record of length 0")
        value = data[match.end(2) + 1:match.start(1) + length - 1]
        records[match[2].decode("utf-8", "surrogateescape")] = value.decode("utf-8", "surrogateescape")
        at += length
    if "path" in records:
        records["path"] = records["path"].rstrip("/")
    return records
