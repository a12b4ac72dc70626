"""A PEP 503/691 simple index, read with pypi-simple over regsync's own transport.

pypi-simple negotiates JSON vs HTML, resolves relative URLs and parses #sha256 fragments,
data-requires-python, yanked and PEP 658/714 metadata flags; we only add auth, CA, retries and
a per-run cache of project pages. Every read is bounded (see regsync.net.http), and credentials go to
the index's own origin (scheme, host and port) and its upload URL's, nowhere else.
"""

from __future__ import annotations

import email.message
import hashlib
import threading
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urljoin, urlsplit

import requests
import requests.auth
import urllib3
from loguru import logger
from urllib3.util.retry import Retry
from packaging.utils import canonicalize_name
from pypi_simple import DistributionPackage, NoSuchProjectError, ProjectPage, PyPISimple

from regsync.errors import RegistryError, VerificationError
from regsync.content.reader import IDENTITY, read_document
from regsync.kinds.image.auth import Credentials
from regsync.kinds.package.fetch import fetch_and_keep, fetch_verified
from regsync.kinds.package.ref import public_url
from regsync.kinds.package.wheel import MAX_METADATA_BYTES, wheel_metadata
from regsync.kinds.package.wheel import parse_metadata as _parse_metadata
from regsync.kinds.package.source import PackageSource
from regsync.net.http import OriginBoundBasicAuth, connection_failure, make_session, origin, require_https

# A project page read whole: the largest on pypi.org (nightly builds with tens of thousands of
# files) are tens of MiB of JSON.
MAX_PAGE_BYTES = 64 << 20
MAX_PAGE_REDIRECTS = 5
PAGE_TIMEOUT = (15, 120)


def _same_index(url: str, location: str) -> bool:
    """Whether a redirect stays on this index: the same origin, or an http index's own host upgrading
    to https (never the reverse: that is a downgrade, refused by the transport anyway)."""
    if origin(location) and origin(location) == origin(url):
        return True
    here, there = urlsplit(url), urlsplit(location)
    return here.scheme == "http" and there.scheme == "https" and bool(here.hostname) \
        and here.hostname == there.hostname


class PackageIndex:
    """A PackageSource (kinds/package/source.py), and what an UploadTarget reads the target through."""

    offline = False   # read over HTTP (a bundle's stand-in index is offline: it serves what export stored)

    def __init__(self, name: str, url: str, credentials: Credentials | None = None, ca_file: str | Path | None = None,
                 pool_size: int = 16, retry: Retry | None = None, upload_url: str | None = None) -> None:
        self.name, self.url = name, url.rstrip("/") + "/"
        self.session = make_session(ca_file, pool_size, retry, max_body=MAX_PAGE_BYTES)
        if credentials:
            origins = {origin(url)} | ({origin(upload_url)} if upload_url else set())
            self.session.auth = OriginBoundBasicAuth(credentials.username, credentials.password, origins)
        self._simple = PyPISimple(self.url, session=self.session)
        self._pages: dict[tuple[str, bool], list[DistributionPackage]] = {}   # (project, same_origin)
        self._metadata: dict[tuple[str, str], email.message.Message] = {}    # (file URL, its digests) → PEP 658
        self._lock = threading.Lock()

    def files(self, project: str, *, same_origin: bool = False) -> list[DistributionPackage]:
        """The files the project page lists. A page that redirects to another index (scheme, host or
        port; an http index moving to https on its own host is an upgrade, not another index) means
        the project is not on this index: for a target, it does not hold it (`same_origin`); for a
        source, the other index's listing and hashes would be recorded as this index's word (the
        dependency confusion a pypiserver's default fallback to pypi.org opens), so it is not read."""
        key = canonicalize_name(project)
        with self._lock:
            if (key, same_origin) in self._pages:
                return self._pages[key, same_origin]
        try:
            page = self._own_page(key, target=same_origin)
            packages = list(page.packages) if page else []
        except NoSuchProjectError:
            packages = []
        except requests.exceptions.ConnectionError as exc:  # SSLError included: its cause is named
            raise RegistryError(f"{self.name}/{key}", None, connection_failure(exc, self.url)) from None
        except requests.HTTPError as exc:
            status = exc.response.status_code if exc.response is not None else None
            raise RegistryError(f"{self.name}/{key}", status, "index error") from None
        except requests.RequestException:
            raise RegistryError(f"{self.name}/{key}", None, f"cannot reach {self.url}") from None
        with self._lock:
            self._pages[key, same_origin] = packages
        return packages

    def forget(self, project: str) -> None:
        """Drop the run's copy of the project's pages: the next read asks the index again."""
        key = canonicalize_name(project)
        with self._lock:
            self._pages.pop((key, True), None)
            self._pages.pop((key, False), None)

    def _own_page(self, key: str, target: bool = True) -> ProjectPage | None:
        """The project page as this index itself serves it, or None when it sends us elsewhere.

        pypiserver, by default, answers a project it lacks with `303` to https://pypi.org/simple/<p>/:
        followed, PyPI's listing would pass for the target's (files it lacks skipped as present) and,
        air-gapped, every new project would fail the run. Redirects on the same origin (a trailing
        slash, a normalised name) are followed; nothing, credentials least of all, goes elsewhere."""
        url = self._simple.get_project_url(key)
        for _ in range(MAX_PAGE_REDIRECTS + 1):
            response = self.session.get(url, timeout=PAGE_TIMEOUT, allow_redirects=False,
                                        headers={"Accept": self._simple.accept})
            if not response.is_redirect:
                break
            location = urljoin(url, response.headers["Location"])
            response.close()
            if not _same_index(url, location):
                if target:
                    logger.info("{}: {} redirects to {}: not on this target", self.name, key, public_url(location))
                else:
                    logger.warning("{}: {} redirects to another index ({}): not read, so treated as not on "
                                   "this source", self.name, key, public_url(location))
                return None
            url = location
        else:
            raise RegistryError(f"{self.name}/{key}", None, f"more than {MAX_PAGE_REDIRECTS} redirects")
        if response.status_code == 404:
            if not target:  # on a source, the usual cause is an index URL without its /simple/ part
                logger.bind(event="not-found", source=f"{self.name}/{key}", reason="HTTP 404").warning(
                    "{}: the project page of {} answered 404 at {} (is {} the index's simple API? it "
                    "usually ends in /simple/)", self.name, key, public_url(url), public_url(self.url))
            return None
        response.raise_for_status()
        if response.status_code != 200:
            raise RegistryError(f"{self.name}/{key}", response.status_code, "index error")
        return ProjectPage.from_response(response, key)

    def metadata(self, package: DistributionPackage) -> email.message.Message:
        """Core metadata: the PEP 658 file when offered (no wheel download), else read from the file."""
        where = f"{self.name}/{package.filename}"
        if not package.has_metadata:
            return metadata_from_file(self, package)
        # read once per run: each environment's resolution and the check of the wheel's own METADATA
        # at apply (kinds/package/wheel.py) use the same file
        key = (package.url, repr(sorted((package.metadata_digests or {}).items())))
        with self._lock:
            found = self._metadata.get(key)
        if found is None:
            found = _parse_metadata(self._metadata_bytes(package, where))
            with self._lock:
                self._metadata[key] = found
        return found

    def _metadata_bytes(self, package: DistributionPackage, where: str) -> bytes:
        """The PEP 658 file, at most MAX_METADATA_BYTES and unencoded, checked against every digest
        the page gives for it (read here rather than by pypi-simple, which reads it whole)."""
        expected = {alg: value.lower() for alg, value in (package.metadata_digests or {}).items()
                    if alg in hashlib.algorithms_guaranteed}
        if not expected:
            raise VerificationError(f"{where}.metadata: the index gives no digest for it")
        url = package.metadata_url
        require_https(self.url, url, where, "its .metadata link")
        try:
            with self.session.get(url, stream=True, timeout=PAGE_TIMEOUT, headers=IDENTITY) as response:
                if response.status_code == 404:
                    raise RegistryError(where, 404, "its .metadata is listed but not served")
                if response.status_code != 200:
                    raise RegistryError(where, response.status_code, "cannot fetch its .metadata")
                raw = read_document(response, MAX_METADATA_BYTES, f"{where}.metadata")
        except (requests.RequestException, urllib3.exceptions.HTTPError, OSError):
            raise RegistryError(where, None, "cannot fetch its .metadata") from None
        if raw is None:
            raise VerificationError(f"{where}.metadata: larger than {MAX_METADATA_BYTES} bytes")
        for alg, value in expected.items():
            if hashlib.new(alg, raw).hexdigest() != value:
                raise VerificationError(f"{where}.metadata: {alg} digest mismatch")
        return raw

    def page_url(self, package: DistributionPackage) -> str:
        """The index whose project page listed `package` (and so gave its sha256)."""
        return public_url(self.url)

    def served_by(self, package: DistributionPackage) -> str:
        """The index that served the bytes of `package` last."""
        return public_url(self.url)

    def size_of(self, package: DistributionPackage) -> int | None:
        """The file's Content-Length from one HEAD, for a plan whose page gave no size; None when the
        server does not say (the size is then only known once the file is read)."""
        try:
            require_https(self.url, package.url, f"{self.name}/{package.filename}", "its file link")
            with self.session.head(package.url, timeout=PAGE_TIMEOUT, allow_redirects=True,
                                   headers=IDENTITY) as response:
                length = response.headers.get("Content-Length", "")
                return int(length) if response.status_code == 200 and length.isdigit() else None
        except (requests.RequestException, RegistryError) as exc:
            logger.debug("{}: size not known at plan time: {}", package.filename, exc)
            return None

    def open(self, package: DistributionPackage, start: int = 0) -> requests.Response:
        """The file from byte `start`; a server that ignores Range answers 200 and the caller sees it."""
        headers = {"Range": f"bytes={start}-"} if start else {}
        require_https(self.url, package.url, f"{self.name}/{package.filename}", "its file link")
        try:
            response = self.session.get(package.url, stream=True, timeout=(15, 300), headers=headers)
        except requests.exceptions.ConnectionError as exc:
            raise RegistryError(f"{self.name}/{package.filename}", None, connection_failure(exc, package.url)) from None
        except requests.RequestException:
            raise RegistryError(f"{self.name}/{package.filename}", None, f"cannot reach {self.url}") from None
        if response.status_code not in ((200, 206) if start else (200,)):
            response.close()
            raise RegistryError(f"{self.name}/{package.filename}", response.status_code, "download failed")
        return response

    def download(self, package: DistributionPackage, path: Path, on_bytes: Callable[[int], None] | None = None) -> str:
        """Stream to `path`, sha256 checked against the index; returns the digest."""
        return fetch_verified(self, package, path, on_bytes)

    def provenance(self, filename: str, limit: int) -> tuple[str, bytes]:
        """From the Integrity API at this index's host (pypi.org/integrity/…)."""
        from regsync.kinds.package.integrity import fetch_integrity

        return fetch_integrity(self.session, self.name, self.url, filename, limit)


def metadata_from_file(index: "PackageSource", package: DistributionPackage) -> email.message.Message:
    """METADATA read out of the wheel, downloaded through `index` (so verified like any download)."""
    where = f"{index.name}/{package.filename}"
    if not package.filename.endswith(".whl"):
        return _parse_metadata(b"")  # an sdist's dependencies are only known after a build
    # checked against the file name as it is read: a wheel whose METADATA names another project or
    # version is refused (kinds/package/wheel.py)
    return _parse_metadata(wheel_metadata(fetch_and_keep(index, package), where, package.filename))
