"""A distribution-spec (OCI v1.1) client for one registry: one pooled session, auth hidden in it."""

from __future__ import annotations

import json
import threading
from collections import OrderedDict
from collections.abc import Iterable
from typing import Any, Generic, TypeVar
from urllib.parse import quote, urljoin, urlsplit

import requests
from loguru import logger

from regsync.content.digest import Digest, is_digest, matches
from regsync.errors import NotFound, RegistryError, VerificationError
from regsync.kinds.image.auth import MAX_TOKEN_BYTES, Credentials, RegistryAuth
from regsync.kinds.image.manifest import ACCEPT, MAX_MANIFEST_BYTES, Descriptor, Manifest
from regsync.kinds.image.names import quoted_repository, registry_path
from regsync.kinds.image.answers import NAME_UNKNOWN, declared_length, error_of, unusable
from regsync.policy.names import check_digest
from regsync.net.http import connection_failure, downgrades, make_session, origin, require_https, retry_policy
from regsync.content.reader import IDENTITY, SizedBody, VerifyingReader, read_document
from regsync.net.throttle import Throttle
from regsync.content.checkpoint import UploadCheckpoint

K = TypeVar("K")
V = TypeVar("V")

_TIMEOUT = (15, 300)  # (connect, read) seconds; a stalled mirror must not hang a cron run
_MAX_TAG_PAGES = 10_000


class RegistryClient:
    # Transfers from and to a registry cross the network: a big blob keeps its partial download and
    # a chunked upload its checkpoint, for the next run (a bundle's layout reads a local file).
    resumable = True
    ca_setting = "tls.ca_file"  # named in a TLS error's hint; `regsync verify` names its flag instead

    def __init__(self, name: str, url: str, credentials: Credentials | None = None, ca_file: str | None = None,
                 monolithic_max: int = 256 << 20, chunk_size: int = 64 << 20, pool_size: int = 16,
                 tag_page_size: int = 1000, retries: int = 4, backoff: float = 0.5,
                 max_requests_per_second: float | None = None, spool_min: int = 1 << 30):
        self.name, self.base = name, url.rstrip("/")
        self.tag_page_size = tag_page_size
        self.host = urlsplit(self.base).netloc
        self.monolithic_max, self.chunk_size, self.spool_min = monolithic_max, chunk_size, spool_min
        retry = retry_policy(retries, backoff)
        throttle = Throttle(max_requests_per_second) if max_requests_per_second else None
        self.session = make_session(ca_file, pool_size, retry, throttle)
        token_session = make_session(ca_file, 4, retry, throttle, max_body=MAX_TOKEN_BYTES)
        self._auth = self.session.auth = RegistryAuth(credentials, token_session, name, self.base)
        self._pinged = False
        # Per-run memory, so plan and apply never ask twice: manifests by digest (content-addressed,
        # verified when first fetched) and whether a repository holds a blob.
        self._manifests: _BoundedCache[tuple[str, str], Manifest] = _BoundedCache(MAX_CACHED_MANIFESTS)
        self._present: _BoundedCache[tuple[str, str], int | str] = _BoundedCache(MAX_CACHED_BLOBS)
        self._tag_sets: dict[str, frozenset[str] | None] = {}   # repo → its tags when the run began
        self._new_repos: set[str] = set()   # repos the run's listing found absent (NAME_UNKNOWN)
        self._tag_lock = threading.Lock()

    # -- plumbing -------------------------------------------------------------------------------

    def _request(self, method: str, url: str, ref: str, ok: tuple[int, ...] = (200,), **kwargs: Any) -> requests.Response:
        if not url.startswith("http"):
            url = self.base + url
        require_https(self.base, url, ref, "a URL the registry gave")
        try:
            response = self.session.request(method, url, timeout=_TIMEOUT, **kwargs)
        except requests.exceptions.ConnectionError as exc:  # SSLError included: its cause is named
            raise RegistryError(ref, None, connection_failure(exc, self.base, self.ca_setting)) from None
        except requests.exceptions.Timeout:
            raise RegistryError(ref, None, f"{self.base} timed out") from None
        except requests.exceptions.RetryError:
            raise RegistryError(ref, None, f"{self.base} kept failing after retries") from None
        except requests.exceptions.RequestException as exc:
            # A body that breaks off or does not decode, a garbage Retry-After, redirects in a loop
            # or to nowhere: the server's doing, so a failed request rather than a bug of ours.
            raise RegistryError(ref, None, f"{self.base} sent an unusable response: {unusable(exc)}") from None
        except ValueError:  # urllib.parse on a redirect's Location, before requests can wrap it
            raise RegistryError(ref, None, f"{self.base} sent an unusable response: a redirect to an invalid URL") from None
        if response.status_code in ok:
            return response
        error = error_of(response, ref)
        if error.status == 401 and self._auth.credentials is None:  # nothing was sent
            from regsync.kinds.image.credentials import no_credentials_found

            error = RegistryError(ref, 401, no_credentials_found(self.host))
        raise error

    def ref(self, repo: str, reference: str = "") -> str:
        sep = "@" if is_digest(reference) else ":"
        return f"{self.name}/{repo}{sep + reference if reference else ''}"

    # -- API ------------------------------------------------------------------------------------

    def ping(self) -> None:
        if not self._pinged:
            self._request("GET", "/v2/", self.name, ok=(200,))
            self._pinged = True

    def check_target(self, repo: str) -> None:
        """Raise RegistryError when `repo` cannot be written here at all (a dialect's precondition,
        such as Harbor's project); checked once per rule at plan time. A plain registry has none."""

    def list_tags(self, repo: str) -> list[str]:
        tags: list[str] = []
        url = f"{registry_path(repo, 'tags/list')}?n={self.tag_page_size}"
        for _ in range(_MAX_TAG_PAGES):
            response = self._request("GET", url, self.ref(repo))
            try:
                page = response.json().get("tags") or []
            except (ValueError, AttributeError):
                raise RegistryError(self.ref(repo), None, "tag list is not JSON") from None
            if not isinstance(page, list) or not all(isinstance(tag, str) for tag in page):
                raise RegistryError(self.ref(repo), None, "tag list is not a list of strings")
            tags.extend(page)  # as listed: the planner checks each name and refuses the invalid ones
            link = response.links.get("next", {}).get("url")
            if not link:
                return tags
            try:
                url = urljoin(response.url, link)
                there = origin(url)
            except ValueError:  # e.g. an unclosed IPv6 bracket
                raise RegistryError(self.ref(repo), None, "tag list pagination link is not a URL") from None
            require_https(self.base, url, self.ref(repo), "the tag list's next page")
            if there != origin(self.base):
                raise RegistryError(self.ref(repo), None, f"tag list pagination points to another origin ({there})")
        raise RegistryError(self.ref(repo), None, "tag list has too many pages")

    def repository_exists(self, repo: str) -> bool | None:
        """Whether `repo` exists here: False only when the registry says NAME_UNKNOWN (a manifest's 404
        does not tell a missing tag from a missing repository), None when it cannot be told."""
        try:
            self._request("GET", f"{registry_path(repo, 'tags/list')}?n=1", self.ref(repo)).close()
            return True
        except RegistryError as exc:
            return False if exc.code == NAME_UNKNOWN else None

    def may_have_tag(self, repo: str, tag: str) -> bool:
        """False only when this run's one listing of `repo` shows `tag` absent (one GET per page
        instead of one HEAD per tag on a new or sparse target); True when the listing failed."""
        with self._tag_lock:
            if repo not in self._tag_sets:
                try:
                    self._tag_sets[repo] = frozenset(self.list_tags(repo))
                except NotFound:  # no such repository yet: no tags
                    self._tag_sets[repo] = frozenset()
                    self._new_repos.add(repo)
                except RegistryError:  # not allowed to list, say: ask tag by tag
                    self._tag_sets[repo] = None
            tags = self._tag_sets[repo]
        return tags is None or tag in tags

    def is_new_repository(self, repo: str) -> bool:
        """True when this run's one listing of `repo` found no such repository here."""
        self.may_have_tag(repo, "")
        return repo in self._new_repos

    def assume_absent(self, repo: str, digests: Iterable[str]) -> None:
        """Remember blobs as absent without asking (a repository this run found new holds none
        worth a HEAD); blob_exists then answers from memory, as for an absence it saw itself."""
        for digest in digests:
            if self._present.get((repo, digest)) is None:
                self._present.put((repo, digest), _ABSENT)

    def head_manifest(self, repo: str, reference: str) -> Descriptor | None:
        """The digest a tag (or digest) resolves to, or None when absent. One HEAD, no body."""
        response = self._request("HEAD", registry_path(repo, "manifests", reference), self.ref(repo, reference),
                                 ok=(200, 404), headers={"Accept": ACCEPT})
        if response.status_code == 404:
            return None
        # Asked by digest, the answer is that digest (a server's header never replaces what the
        # caller knows); by tag, the announced digest must be one we can verify when it is fetched.
        digest = reference if is_digest(reference) else response.headers.get("Docker-Content-Digest")
        if not digest:  # not promised by the spec for HEAD; fall back to the body
            manifest = self.get_manifest(repo, reference)
            return Descriptor(manifest.media_type, manifest.digest, len(manifest.raw))
        Digest.parse(digest, self.ref(repo, reference))
        media_type = response.headers.get("Content-Type", "").split(";")[0]
        return Descriptor(media_type, digest, declared_length(response, self.ref(repo, reference)) or 0)

    def get_manifest(self, repo: str, reference: str, expect: str | None = None) -> Manifest:
        """GET a manifest; its bytes must match the digest asked for (or announced)."""
        by_digest = is_digest(reference)
        cached = self._manifests.get((repo, reference)) if by_digest else None
        if cached is not None:
            return cached
        manifest = self._fetch_manifest(repo, reference, expect)
        self._manifests.put((repo, manifest.digest), manifest)
        return manifest

    def _fetch_manifest(self, repo: str, reference: str, expect: str | None) -> Manifest:
        ref = self.ref(repo, reference)
        # What the caller knows (the digest asked for) is the expectation; the server's
        # Docker-Content-Digest is one only for a tag, and each is checked with its own algorithm.
        known = expect or (reference if is_digest(reference) else None)
        if known is not None:
            Digest.parse(known, ref)  # refused before anything is fetched
        response = self._request("GET", registry_path(repo, "manifests", reference), ref,
                                 headers={"Accept": ACCEPT, **IDENTITY}, stream=True)
        with response:
            declared = declared_length(response, ref) or 0
            if declared > MAX_MANIFEST_BYTES:
                raise VerificationError(f"{ref}: manifest of {declared} bytes exceeds the {MAX_MANIFEST_BYTES}-byte limit")
            raw = read_document(response, MAX_MANIFEST_BYTES, ref)
        if raw is None:
            raise VerificationError(f"{ref}: manifest larger than {MAX_MANIFEST_BYTES} bytes")
        wanted = known or response.headers.get("Docker-Content-Digest")
        algorithm = Digest.parse(wanted, ref).algorithm if wanted else "sha256"
        manifest = Manifest.parse(raw, response.headers.get("Content-Type"), ref, algorithm)
        if wanted and manifest.digest != wanted:
            raise VerificationError(f"{ref}: manifest digest mismatch: content is {manifest.digest}, expected {wanted}")
        return manifest

    def get_referrers(self, repo: str, digest: str) -> dict[str, Any] | None:
        """The OCI 1.1 referrers index for `digest`, or None when the registry has no referrers API."""
        ref = self.ref(repo, digest)
        response = self._request("GET", registry_path(repo, "referrers", check_digest(digest)), ref, ok=(200, 404),
                                 headers={"Accept": "application/vnd.oci.image.index.v1+json", **IDENTITY}, stream=True)
        with response:
            if response.status_code == 404:  # the spec's signal to fall back to the sha256-<hex> tag
                return None
            raw = read_document(response, MAX_MANIFEST_BYTES, ref)
        if raw is None:
            raise VerificationError(f"{ref}: referrers index exceeds {MAX_MANIFEST_BYTES} bytes")
        try:
            doc = json.loads(raw)
        except ValueError:
            raise RegistryError(ref, 200, "referrers response is not JSON") from None
        return doc if isinstance(doc, dict) else None

    def put_manifest(self, repo: str, reference: str, manifest: Manifest) -> None:
        ref = self.ref(repo, reference)
        # bytes body: requests sends Content-Length, which Nexus's OCI repos insist on.
        try:
            response = self._request("PUT", registry_path(repo, "manifests", reference), ref, ok=(200, 201, 202),
                                     data=manifest.raw, headers={"Content-Type": manifest.media_type})
        except RegistryError as exc:
            algorithm = reference.partition(":")[0]
            if exc.status == 400 and "DIGEST_INVALID" in str(exc) and is_digest(reference) and algorithm != "sha256":
                # distribution 2.8 stores manifests by sha256 only
                raise RegistryError(ref, 400, f"the registry does not accept a manifest addressed by "
                                              f"{algorithm} (it stores manifests by sha256 only)") from None
            raise
        echoed = response.headers.get("Docker-Content-Digest")
        if echoed and echoed != manifest.digest and not matches(manifest.raw, echoed):
            raise RegistryError(ref, response.status_code, f"registry stored {echoed}, expected {manifest.digest}")

    def blob_exists(self, repo: str, digest: str, size: int | None = None) -> bool:
        """Whether `repo` holds the blob. With `size`, a blob held there with another length is
        refused: the digest fixes the length, so the manifest that gives it `size` bytes lies."""
        # A remembered absence is safe to trust within a run: if another writer uploads the blob
        # meanwhile, the cost is one redundant upload, which registries accept.
        ref = self.ref(repo, digest)
        held = self._present.get((repo, digest))
        if held is None or (size is not None and held == _HELD):
            response = self._request("HEAD", _blob_path(repo, digest), ref, ok=(200, 404))
            length = declared_length(response, ref) if response.status_code == 200 else None
            held = _ABSENT if response.status_code == 404 else _HELD if length is None else length
            self._present.put((repo, digest), held)
        if size is not None and held not in (_ABSENT, _HELD) and held != size:
            raise VerificationError(f"{ref}: the manifest gives it {size} bytes, the blob has {held}")
        return held != _ABSENT

    def open_blob(self, repo: str, digest: str) -> requests.Response:
        return self._request("GET", _blob_path(repo, digest), self.ref(repo, digest), stream=True)

    def open_blob_from(self, repo: str, digest: str, start: int) -> requests.Response:
        """The blob from byte `start` on: 206, or 200 with the whole blob when ranges are ignored."""
        return self._request("GET", _blob_path(repo, digest), self.ref(repo, digest), ok=(200, 206),
                             stream=True, headers={"Range": f"bytes={start}-"})

    def upload_offset(self, location: str) -> int | None:
        """How many bytes an upload session holds (its Range), or None when the session is gone."""
        if downgrades(self.base, location):  # saved when the registry was plain http, or tampered with
            logger.warning("{}: a saved upload session points to {}, not https; starting that upload afresh",
                           self.name, origin(location))
            return None
        try:
            response = self.session.get(location, timeout=_TIMEOUT)
        except (requests.RequestException, RegistryError):  # unusable, whatever the reason: a fresh upload
            return None
        with response:
            held = response.headers.get("Range", "")
            if response.status_code != 204 or not held.startswith("0-") or not held[2:].isdigit():
                return None
            return int(held[2:]) + 1

    def mount_blob(self, repo: str, digest: str, from_repo: str) -> bool:
        """Cross-repo mount: True when the registry linked the blob without any bytes moving."""
        query = f"mount={quote(check_digest(digest), safe=':')}&from={quoted_repository(from_repo)}"
        response = self._request("POST", f"{registry_path(repo, 'blobs/uploads/')}?{query}",
                                 self.ref(repo, digest), ok=(201, 202))
        if response.status_code == 201:
            self._present.put((repo, digest), _HELD)
            return True
        self._cancel(response, repo)  # 202: the registry opened an upload session instead
        return False

    def upload_blob(self, repo: str, descriptor: Descriptor, reader: VerifyingReader,
                    checkpoint: UploadCheckpoint | None = None) -> None:
        """`checkpoint` (chunked uploads only) resumes a session at `checkpoint.offset` and is
        saved after every acknowledged chunk; the session then survives a failure for a rerun."""
        ref = self.ref(repo, descriptor.digest)
        resumed = checkpoint if checkpoint is not None and descriptor.size > self.monolithic_max else None
        if resumed is not None and resumed.location:
            location, offset = resumed.location, resumed.offset
        else:
            resumed = None
            start = self._request("POST", registry_path(repo, "blobs/uploads/"), ref, ok=(202,))
            location, offset = self._location(start, ref), 0
        try:
            if descriptor.size <= self.monolithic_max:
                self._request("PUT", _with_digest(location, descriptor.digest), ref, ok=(201,),
                              data=SizedBody(reader.chunks(), descriptor.size),
                              headers={"Content-Type": "application/octet-stream"})
                self._present.put((repo, descriptor.digest), descriptor.size)
                return
            while offset < descriptor.size:
                length = min(self.chunk_size, descriptor.size - offset)
                response = self._request(
                    "PATCH", location, ref, ok=(202,), data=SizedBody(reader.chunks(length), length),
                    headers={"Content-Type": "application/octet-stream",
                             "Content-Range": f"{offset}-{offset + length - 1}"})
                location = self._location(response, ref)
                offset += length
                if checkpoint is not None:
                    checkpoint.save(location, offset)
            reader.read(1)  # size reached: the digest is checked here, before the commit
            try:
                self._request("PUT", _with_digest(location, descriptor.digest), ref, ok=(201,),
                              headers={"Content-Length": "0"})
            except RegistryError as exc:
                if resumed is None or exc.status != 400:
                    raise
                # The checkpoint's hash state vouched for bytes the session does not hold (a forged or
                # stale checkpoint): the registry's own digest check caught it. Start afresh next try.
                self._cancel_url(location)
                resumed.forget()
                raise RegistryError(ref, None, "the target refused the resumed upload's digest (its checkpoint "
                                               "did not match the session); uploading afresh") from None
            self._present.put((repo, descriptor.digest), descriptor.size)
            if checkpoint is not None:
                checkpoint.forget()
        except BaseException as exc:
            # A checkpointed session is kept for the next attempt; wrong content never is.
            if checkpoint is None or isinstance(exc, VerificationError) or descriptor.size <= self.monolithic_max:
                self._cancel_url(location)
                if checkpoint is not None:
                    checkpoint.forget()
            raise

    # -- helpers --------------------------------------------------------------------------------

    def _location(self, response: requests.Response, ref: str) -> str:
        location = response.headers.get("Location")
        if not location:
            raise RegistryError(ref, response.status_code, "upload response without a Location")
        location = urljoin(response.url, location)
        require_https(self.base, location, ref, "the upload Location")
        return location

    def _cancel(self, response: requests.Response, repo: str) -> None:
        if response.headers.get("Location"):
            self._cancel_url(urljoin(response.url, response.headers["Location"]))

    def _cancel_url(self, url: str) -> None:
        if downgrades(self.base, url):
            return
        try:  # best effort: an abandoned upload session is garbage-collected by the registry anyway
            self.session.delete(url, timeout=_TIMEOUT)
        except requests.RequestException:
            pass


_ABSENT, _HELD = "absent", "held"  # what `_present` remembers besides a held blob's size
MAX_CACHED_MANIFESTS = 20_000  # a few KiB each: tens of MiB at worst, for a 10,000-tag plan
MAX_CACHED_BLOBS = 200_000


class _BoundedCache(Generic[K, V]):
    """A thread-safe LRU map; memory stays bounded however many tags a policy selects."""

    def __init__(self, limit: int):
        self._items: OrderedDict[K, V] = OrderedDict()
        self._limit = limit
        self._lock = threading.Lock()

    def get(self, key: K) -> V | None:
        with self._lock:
            if key not in self._items:
                return None
            self._items.move_to_end(key)
            return self._items[key]

    def put(self, key: K, value: V) -> None:
        with self._lock:
            self._items[key] = value
            self._items.move_to_end(key)
            while len(self._items) > self._limit:
                self._items.popitem(last=False)


def _blob_path(repo: str, digest: str) -> str:
    return registry_path(repo, "blobs", check_digest(digest))


def _with_digest(location: str, digest: str) -> str:
    return f"{location}{'&' if '?' in location else '?'}digest={quote(check_digest(digest), safe=':')}"
