"""A source registry with fallbacks: each read goes to the first endpoint that can answer it.

Safe by construction: whatever a mirror serves is checked against digests (a manifest by the
digest asked for or announced, a blob while it streams), so a mirror can make a run slower but
never make it wrong. A mirror that serves *different* content fails verification and is refused,
not silently skipped: a tampering mirror is something to see. Credentials in the policy belong to
the primary URL only; mirrors get docker's stored credentials for their own host, or none.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from loguru import logger

from regsync.errors import RegistryError
from regsync.kinds.image.client import RegistryClient
from regsync.kinds.image.manifest import Descriptor, Manifest
from regsync.kinds.image.source import BlobStream

T = TypeVar("T")


class MirroredRegistry:
    """An ImageSource (kinds/image/source.py): the primary and its mirrors, asked in order."""

    # A kept partial download names no endpoint, and an upload checkpoint no source: both are made
    # for one registry to one registry, so transfers from a mirrored source start over instead.
    resumable = False

    def __init__(self, endpoints: list[RegistryClient]):
        self.endpoints = endpoints
        self.primary = endpoints[0]   # the registry as a target: writes go there, never to a mirror
        self.name, self.base = self.primary.name, self.primary.base

    def first_answer(self, ask: Callable[[RegistryClient], T], what: str, absent: object = None) -> T:
        """`ask(endpoint)` of each endpoint in order: the first answer that is not `absent` (the last
        endpoint's, whatever it is); the last error when every endpoint failed."""
        last_error: RegistryError | None = None
        for endpoint in self.endpoints:
            try:
                result = ask(endpoint)
            except RegistryError as exc:
                last_error = exc
                logger.warning("{} ({}): {}; trying the next mirror", endpoint.name, endpoint.base, exc)
                continue
            if result is not absent or endpoint is self.endpoints[-1]:
                return result
            logger.info("{} ({}) does not have {}; trying the next mirror", endpoint.name, endpoint.base, what)
        assert last_error is not None, "the last endpoint's answer is returned, whatever it is"
        raise last_error

    def ref(self, repo: str, reference: str = "") -> str:
        return self.primary.ref(repo, reference)

    def list_tags(self, repo: str) -> list[str]:
        return self.first_answer(lambda e: e.list_tags(repo), repo)

    # Whether a repository exists, and its referrers, are the primary's word (as they always were).
    def repository_exists(self, repo: str) -> bool | None:
        return self.primary.repository_exists(repo)

    def head_manifest(self, repo: str, reference: str) -> Descriptor | None:
        return self.first_answer(lambda e: e.head_manifest(repo, reference), self.ref(repo, reference))

    def get_manifest(self, repo: str, reference: str, expect: str | None = None) -> Manifest:
        return self.first_answer(lambda e: e.get_manifest(repo, reference, expect), self.ref(repo, reference))

    def get_referrers(self, repo: str, digest: str) -> dict[str, Any] | None:
        return self.primary.get_referrers(repo, digest)

    def open_blob(self, repo: str, digest: str) -> BlobStream:
        return self.first_answer(lambda e: e.open_blob(repo, digest), self.ref(repo, digest))

    def open_blob_from(self, repo: str, digest: str, start: int) -> BlobStream:
        return self.first_answer(lambda e: e.open_blob_from(repo, digest, start), self.ref(repo, digest))
