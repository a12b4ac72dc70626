"""A source index with fallbacks (`mirrors:`), as MirroredRegistry is for registries.

Which hashes are trusted: those of the *page* that listed the file. The primary's page whenever
the primary answers for that project; a mirror's page only when the primary cannot answer at all
(connection error, or 5xx/429 after retries). A primary that answers 404 has answered: a mirror
never adds a project the primary does not have (that would be dependency confusion by mirror).

Files come from the index whose page was trusted first, then the others in order, each checked
against the trusted sha256 while it streams: a mirror can make a run slower, never make it wrong.
A mirror whose own page lists another sha256 for the same file name, or whose bytes do not match,
is refused, not skipped: a file name on an index is immutable, so a different file is tampering
or corruption and someone should see it. Policy credentials belong to the primary's host; a
mirror gets only docker's stored credentials for its own host (see kinds/package/clients.py).
"""

from __future__ import annotations

import email.message
import threading
import time
from collections.abc import Callable
from pathlib import Path

import requests
from loguru import logger
from packaging.utils import canonicalize_name
from pypi_simple import DistributionPackage

from regsync.errors import RegistryError, VerificationError
from regsync.net.http import TRANSIENT_STATUS
from regsync.kinds.package.index import PackageIndex, metadata_from_file
from regsync.kinds.package.ref import project_of, public_url, sha256_of
from regsync.kinds.package.fetch import fetch_verified

_FALL_THROUGH = (None, *TRANSIENT_STATUS)   # unreachable, or a server error left after retries
# An index that failed after its retries is skipped this long, so a primary that is down costs its
# retries once a minute instead of once per project page and per file.
COOL_DOWN_SECONDS = 60.0


class MirroredIndex:
    """A PackageSource (kinds/package/source.py): the primary index and its mirrors."""

    offline = False

    def __init__(self, endpoints: list[PackageIndex]):
        self.endpoints = endpoints
        self.primary = endpoints[0]
        self.name, self.url = self.primary.name, self.primary.url
        self._page_of: dict[str, PackageIndex] = {}     # project -> the endpoint whose page is trusted
        self._served: dict[str, PackageIndex] = {}      # filename -> the endpoint that served its bytes
        self._down_until: dict[int, float] = {}         # id(endpoint) -> monotonic time to try it again
        self._lock = threading.Lock()

    def files(self, project: str) -> list[DistributionPackage]:
        key = canonicalize_name(project)
        last_error: RegistryError | None = None
        for endpoint in self._available(self.endpoints):
            try:
                packages = endpoint.files(key)
            except RegistryError as exc:
                if exc.status not in _FALL_THROUGH:
                    raise  # 401/403 and the like: a configuration to fix, not an outage to route around
                last_error = exc
                self._failed(endpoint, exc)
                continue
            with self._lock:
                first = self._page_of.setdefault(key, endpoint)
            if first is not endpoint:
                return first.files(key)  # one run trusts one page per project, whichever came first
            if endpoint is not self.primary:
                logger.warning("{}: hashes for {} come from mirror {} (the primary did not answer)", self.name,
                               key, public_url(endpoint.url))
            return packages
        assert last_error is not None, "_available never returns an empty list"
        raise last_error

    def page_url(self, package: DistributionPackage) -> str:
        return public_url(self._page_endpoint(package).url)

    def served_by(self, package: DistributionPackage) -> str:
        page = self._page_endpoint(package)
        with self._lock:
            endpoint = self._served.get(package.filename, page)
        return public_url(endpoint.url)

    def metadata(self, package: DistributionPackage) -> email.message.Message:
        page = self._page_endpoint(package)
        if package.has_metadata:
            try:
                return page.metadata(package)  # checked against the trusted page's metadata hash
            except RegistryError as exc:
                logger.warning("{}: {}; reading it from the file instead", page.name, exc)
        return metadata_from_file(self, package)

    def download(self, package: DistributionPackage, path: Path, on_bytes: Callable[[int], None] | None = None) -> str:
        return fetch_verified(self, package, path, on_bytes)

    def size_of(self, package: DistributionPackage) -> int | None:
        return self.primary.size_of(package)

    def provenance(self, filename: str, limit: int) -> tuple[str, bytes]:
        return self.primary.provenance(filename, limit)   # an attestation binds name and sha256: any index will do

    def open(self, package: DistributionPackage, start: int = 0) -> requests.Response:
        """The file from the first endpoint that serves it; a resumed download may switch endpoints
        midway, which is safe because the hash runs over every byte whoever sent it."""
        trusted = sha256_of(package)
        page = self._page_endpoint(package)
        last_error: RegistryError | None = None
        for endpoint in self._available([page, *(e for e in self.endpoints if e is not page)]):
            try:
                candidate = package if endpoint is page else self._listed_by(endpoint, package, trusted)
                if candidate is None:
                    continue
                response = endpoint.open(candidate, start)
            except RegistryError as exc:
                if exc.status not in (*_FALL_THROUGH, 404):
                    raise
                last_error = exc
                if exc.status == 404:  # this file is missing there; the index itself is fine
                    logger.warning("{} ({}): {}; trying the next mirror", endpoint.name, public_url(endpoint.url), exc)
                else:
                    self._failed(endpoint, exc)
                continue
            with self._lock:
                self._served[package.filename] = endpoint
            return response
        raise last_error or RegistryError(f"{self.name}/{package.filename}", 404, "no index or mirror serves it")

    def _available(self, endpoints: list[PackageIndex]) -> list[PackageIndex]:
        """`endpoints` without those cooling down, unless that leaves none (then all, in order)."""
        now = time.monotonic()
        with self._lock:
            up = [e for e in endpoints if self._down_until.get(id(e), 0.0) <= now]
        return up or endpoints

    def _failed(self, endpoint: PackageIndex, exc: RegistryError) -> None:
        with self._lock:
            self._down_until[id(endpoint)] = time.monotonic() + COOL_DOWN_SECONDS
        logger.warning("{} ({}): {}; trying the next mirror (this one again in {:.0f} s)", endpoint.name,
                       public_url(endpoint.url), exc, COOL_DOWN_SECONDS)

    def _listed_by(self, endpoint: PackageIndex, package: DistributionPackage,
                   trusted: str | None) -> DistributionPackage | None:
        """`endpoint`'s own link for the same file name (its URLs are its own), if it lists one."""
        project = project_of(package)
        found = next((p for p in endpoint.files(project) if p.filename == package.filename), None)
        if found is not None and sha256_of(found) not in (None, trusted):
            raise VerificationError(f"{self.name}/{package.filename}: mirror {public_url(endpoint.url)} lists "
                                    f"{sha256_of(found)}, the trusted page ({self.page_url(package)}) says {trusted}")
        return found

    def _page_endpoint(self, package: DistributionPackage) -> PackageIndex:
        project = project_of(package)
        with self._lock:
            return self._page_of.get(project, self.primary)
