"""What an sdist says about itself: its one top directory and that directory's `PKG-INFO`, read bounded.

An sdist named `app-1.0.tar.gz` whose `PKG-INFO` says `evil 6.6.6` would be mirrored as `app`;
pip builds it and then refuses the result on the client (the built metadata names another project),
after the closure was computed for `app`. So, as for wheels (kinds/package/wheel.py), the bytes
that pass through are checked before they are pushed or exported: every member lies below one top
directory (the leading directory pip strips when it unpacks: pip/_internal/utils/unpacking.py
`has_leading_dir`), that directory is `<name>-<version>` and its one `PKG-INFO` (the core metadata
an sdist carries: packaging.python.org "Source distribution format") says the Name and Version the
file name does, compared normalised.

Bounded: a `.tar.gz` is read as a stream (gzip inflated as it is read, never held), at most
MAX_INFLATED_BYTES inflated and MAX_MEMBERS members, and only `PKG-INFO` is kept, when its header
says it is at most MAX_METADATA_BYTES; a `.zip` has its central directory bounded as a wheel's is.
The whole archive is read, not only up to the first `PKG-INFO`: tar may name a member twice, and
unpacking keeps the last.
"""

from __future__ import annotations

import gzip
import tarfile
import zipfile
import zlib
from collections.abc import Callable
from pathlib import Path

from regsync.errors import VerificationError
from regsync.kinds.package.wheel import MAX_METADATA_BYTES, MAX_MEMBERS, bounded_zip, check_names, parse_metadata

# The largest sdists on PyPI inflate to a few GiB; a gzip bomb would otherwise be inflated to the end.
MAX_INFLATED_BYTES = 8 << 30


def check_sdist(path: Path, filename: str, where: str) -> None:
    """The verified local sdist at `path` is what its file name says: raises VerificationError otherwise.
    A `.tar.gz` or `.zip`; other (legacy) sdist formats are not read."""
    try:
        if filename.endswith(".tar.gz"):
            top, raw = _read_tar(path, where)
        elif filename.endswith(".zip"):
            top, raw = _read_zip(path, where)
        else:
            return
    except (tarfile.TarError, zipfile.BadZipFile, zlib.error, gzip.BadGzipFile, EOFError, OSError, ValueError,
            UnicodeDecodeError):
        raise VerificationError(f"{where}: not a readable sdist") from None
    name, _, version = top.rpartition("-")
    check_names({"Name": name, "Version": version}, filename, where, f"its top directory {top}/")
    check_names(parse_metadata(raw), filename, where, f"its {top}/PKG-INFO")


class _Top:
    """The one top directory every member lies below, and its PKG-INFO."""

    def __init__(self, where: str):
        self.where, self.members = where, 0
        self.name: str | None = None
        self.pkg_info: bytes | None = None

    def member(self, name: str) -> bool:
        """Counts a member; True when it is the top directory's PKG-INFO."""
        self.members += 1
        if self.members > MAX_MEMBERS:
            raise VerificationError(f"{self.where}: more than {MAX_MEMBERS} members, more than any sdist's")
        first, _, rest = name.strip("/").partition("/")
        if self.name is None:
            self.name = first
        if first != self.name or not first or first in (".", ".."):
            raise VerificationError(f"{self.where}: an sdist lies below one top directory, this one has "
                                    f"{self.name}/ and {first or '/'}")
        if rest != "PKG-INFO":
            return False
        if self.pkg_info is not None:
            raise VerificationError(f"{self.where}: {self.name}/PKG-INFO is in it twice")
        return True

    def found(self, size: int, read: Callable[[int], bytes]) -> None:
        if size > MAX_METADATA_BYTES:
            raise VerificationError(f"{self.where}: its {self.name}/PKG-INFO ({size} bytes) is larger than "
                                    f"{MAX_METADATA_BYTES} bytes")
        raw = self.pkg_info = read(MAX_METADATA_BYTES + 1)
        if len(raw) > MAX_METADATA_BYTES:
            raise VerificationError(f"{self.where}: its {self.name}/PKG-INFO is larger than {MAX_METADATA_BYTES} bytes")

    def result(self) -> tuple[str, bytes]:
        if self.pkg_info is None or self.name is None:
            raise VerificationError(f"{self.where}: an sdist has a PKG-INFO in its top directory, this one has none")
        return self.name, self.pkg_info


class _Inflated:
    """gzip's inflated stream, refused past MAX_INFLATED_BYTES."""

    def __init__(self, stream: gzip.GzipFile, where: str):
        self.stream, self.where, self.count = stream, where, 0

    def read(self, size: int = -1) -> bytes:
        data: bytes = self.stream.read(size if size >= 0 else 1 << 20)
        self.count += len(data)
        if self.count > MAX_INFLATED_BYTES:
            raise VerificationError(f"{self.where}: it inflates to more than {MAX_INFLATED_BYTES} bytes")
        return data


def _read_tar(path: Path, where: str) -> tuple[str, bytes]:
    top = _Top(where)
    with gzip.open(path, "rb") as inflated, tarfile.open(
            fileobj=_Inflated(inflated, where), mode="r|") as tar:  # type: ignore[call-overload]  # stream mode needs read() only
        for member in tar:
            if top.member(member.name):
                if not member.isfile():
                    raise VerificationError(f"{where}: its {top.name}/PKG-INFO is not a regular file")
                handle = tar.extractfile(member)
                assert handle is not None   # a regular file's
                top.found(member.size, handle.read)
    return top.result()


def _read_zip(path: Path, where: str) -> tuple[str, bytes]:
    top = _Top(where)
    with open(path, "rb") as handle, zipfile.ZipFile(bounded_zip(handle, where, "sdist")) as archive:
        for info in archive.infolist():
            if top.member(info.filename):
                with archive.open(info) as member:
                    top.found(info.file_size, member.read)
    return top.result()
