"""A source registry with fallbacks: each read goes to the first endpoint that can answer it.

Safe by construction: whatever a mirror serves is checked against digests (a manifest by the
digest asked for or announced, a blob while it streams), so a mirror can make a run slower but
never make it wrong. A mirror that serves *different* content fails verification and is refused,
not silently skipped: a tampering mirror is something to see. Credentials in the policy belong to
the primary URL only; mirrors get docker's stored credentials for their own host, or none.
"""

from __future__ import annotations

from loguru import logger

from regsync.errors import RegistryError
from regsync.kinds.image.client import RegistryClient


class MirroredRegistry:
    # A kept partial download names no endpoint, and an upload checkpoint no source: both are made
    # for one registry to one registry, so transfers from a mirrored source start over instead.
    resumable = False

    def __init__(self, endpoints: list[RegistryClient]):
        self.endpoints = endpoints
        self.primary = endpoints[0]

    def __getattr__(self, name):
        # Writes, name, host, ref(): a source with mirrors is still one registry to everyone else.
        return getattr(self.primary, name)

    def _first(self, method: str, *args, absent=None, **kwargs):
        last_error: RegistryError | None = None
        for endpoint in self.endpoints:
            try:
                result = getattr(endpoint, method)(*args, **kwargs)
            except RegistryError as exc:
                last_error = exc
                logger.warning("{} ({}): {}; trying the next mirror", endpoint.name, endpoint.base, exc)
                continue
            if result is not absent or endpoint is self.endpoints[-1]:
                return result
            logger.info("{} ({}) does not have {}; trying the next mirror", endpoint.name, endpoint.base, args)
        if last_error is not None:
            raise last_error
        return absent

    def ping(self):
        return self._first("ping")

    def list_tags(self, repo):
        return self._first("list_tags", repo)

    def head_manifest(self, repo, reference):
        return self._first("head_manifest", repo, reference)

    def get_manifest(self, repo, reference, expect=None):
        return self._first("get_manifest", repo, reference, expect)

    def open_blob(self, repo, digest):
        return self._first("open_blob", repo, digest)
