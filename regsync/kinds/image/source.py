"""What the image kind reads an image from: a registry (RegistryClient), a registry with mirrors
(MirroredRegistry), or a bundle's OCI layout (LayoutSource). Each declares that it is one."""

from __future__ import annotations

from collections.abc import Mapping
from types import TracebackType
from typing import Any, Protocol

from regsync.kinds.image.manifest import Descriptor, Manifest


class BlobStream(Protocol):
    """An opened blob: `raw.read` gives its bytes, `headers` its Content-Length (an HTTP response,
    or a file of the layout); closed by `with` or `close()`."""

    @property
    def raw(self) -> Any: ...  # urllib3's response or a file: both read(n)

    @property
    def headers(self) -> Mapping[str, str]: ...

    def close(self) -> None: ...

    def __enter__(self) -> Any: ...

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> Any: ...


class ImageSource(Protocol):
    """The reads an image's source answers (plan, verify, copy, export); a target is a RegistryClient."""

    name: str   # the policy's name for it
    base: str   # where it is (a URL, a directory), for messages

    @property
    def resumable(self) -> bool:
        """Whether a big blob's partial download is kept for the next run (one registry over HTTP)."""

    def ref(self, repo: str, reference: str = "") -> str: ...

    def list_tags(self, repo: str) -> list[str]: ...

    def repository_exists(self, repo: str) -> bool | None: ...

    def head_manifest(self, repo: str, reference: str) -> Descriptor | None: ...

    def get_manifest(self, repo: str, reference: str, expect: str | None = None) -> Manifest: ...

    def get_referrers(self, repo: str, digest: str) -> dict[str, Any] | None: ...

    def open_blob(self, repo: str, digest: str) -> BlobStream: ...

    def open_blob_from(self, repo: str, digest: str, start: int) -> BlobStream:
        """The blob from byte `start` on (only asked of a `resumable` source)."""
