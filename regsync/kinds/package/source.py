"""What the package kind reads distributions from: a simple index (PackageIndex), an index with
mirrors (MirroredIndex), or an air-gap bundle's stand-in (BundleIndex). Each declares that it is one.
Where packages go is a PackageTarget: an upload API (UploadTarget), a directory tree
(DirectoryTarget), or nothing yet (export's NoTarget)."""

from __future__ import annotations

import email.message
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Protocol, TypeVar

from pypi_simple import DistributionPackage


class FileStream(Protocol):
    """An opened file: `raw.read` gives its bytes, `headers` its Content-Length and Content-Range
    (an HTTP response, or a file of the bundle), `close()` lets it go."""

    @property
    def raw(self) -> Any: ...  # urllib3's response or a file: both read(n)

    @property
    def headers(self) -> Mapping[str, str]: ...

    def close(self) -> None: ...


class Downloadable(Protocol):
    """A file as an index or a channel lists it: what the verified download (fetch.py) needs of it."""

    @property
    def filename(self) -> str: ...

    @property
    def size(self) -> int | None: ...

    @property
    def digests(self) -> Mapping[str, str]: ...


P = TypeVar("P", bound=Downloadable, contravariant=True)


class Opener(Protocol[P]):
    """Where the verified download reads a file from: a package source, a conda source."""

    name: str

    def open(self, package: P, start: int = 0) -> FileStream: ...


class PackageSource(Protocol):
    name: str      # the policy's name of the index
    url: str       # its simple API (bundle:<name>/ for a bundle)
    offline: bool  # serves what export stored, provenance included: nothing is fetched

    def files(self, project: str) -> list[DistributionPackage]:
        """The files the project's page lists (their sha256 is the page's word)."""

    def metadata(self, package: DistributionPackage) -> email.message.Message:
        """The file's core metadata (PEP 658, else read out of the wheel)."""

    def page_url(self, package: DistributionPackage) -> str | None:
        """The index whose page listed `package` (and so gave its sha256); None: a bundle."""

    def served_by(self, package: DistributionPackage) -> str | None:
        """The index that served the bytes of `package` last; None: a bundle."""

    def size_of(self, package: DistributionPackage) -> int | None:
        """The file's size when its page gave none (one HEAD), None when unknown."""

    def open(self, package: DistributionPackage, start: int = 0) -> FileStream:
        """The file from byte `start` (a server that ignores Range answers from byte 0)."""

    def download(self, package: DistributionPackage, path: Path,
                 on_bytes: Callable[[int], None] | None = None) -> str:
        """Stream to `path`, sha256 checked against the page; returns the digest."""

    def provenance(self, filename: str, limit: int) -> tuple[str, bytes]:
        """(where, raw JSON) of the file's PEP 740 provenance, at most `limit` bytes; VerificationError
        when the index has none for it (HTTP 404, or none in the bundle) or a larger one."""


class PackageTarget(Protocol):
    name: str

    def existing(self, project: str) -> Mapping[str, str | None]:
        """The project's files on the target: filename → its sha256 (None when the target gives none)."""

    def staging_dir(self) -> str | None:
        """Where a file is downloaded before it is put (None: the system's temporary directory)."""

    def put(self, path: Path, filename: str, digest: str) -> bool | None:
        """Put the verified file; True when the target already held exactly it (nothing replaced)."""
