"""A distribution-spec (OCI v1.1) client for one registry: one pooled session, auth hidden in it."""

from __future__ import annotations

import json
import re
import threading
from collections import OrderedDict
from urllib.parse import urljoin, urlsplit

import requests
import urllib3

from regsync.errors import NotFound, RegistryError, VerificationError
from regsync.oci.auth import Credentials, RegistryAuth
from regsync.oci.manifest import ACCEPT, MAX_MANIFEST_BYTES, Descriptor, Manifest
from regsync.http import MAX_RETRY_AFTER, make_session, retry_after, retry_policy
from regsync.transfer import SizedBody, Throttle, VerifyingReader

_TIMEOUT = (15, 300)  # (connect, read) seconds; a stalled mirror must not hang a cron run
_MAX_TAG_PAGES = 10_000


class RegistryClient:
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
        token_session = make_session(ca_file, 4, retry, throttle)
        self.session.auth = RegistryAuth(credentials, token_session, name, self.host)
        self._pinged = False
        # Per-run memory, so plan and apply never ask twice: manifests by digest (content-addressed,
        # verified when first fetched) and whether a repository holds a blob.
        self._manifests = _BoundedCache(MAX_CACHED_MANIFESTS)
        self._present = _BoundedCache(MAX_CACHED_BLOBS)
        self._tag_sets: dict[str, frozenset[str] | None] = {}   # repo → its tags when the run began
        self._tag_lock = threading.Lock()

    # -- plumbing -------------------------------------------------------------------------------

    def _request(self, method: str, url: str, ref: str, ok=(200,), **kwargs) -> requests.Response:
        if not url.startswith("http"):
            url = self.base + url
        try:
            response = self.session.request(method, url, timeout=_TIMEOUT, **kwargs)
        except requests.exceptions.SSLError:
            raise RegistryError(ref, None, f"TLS verification failed for {self.host} (set tls.ca_file to its CA)") from None
        except requests.exceptions.ConnectionError:
            raise RegistryError(ref, None, f"cannot connect to {self.base}") from None
        except requests.exceptions.Timeout:
            raise RegistryError(ref, None, f"{self.base} timed out") from None
        except requests.exceptions.RetryError:
            raise RegistryError(ref, None, f"{self.base} kept failing after retries") from None
        except requests.exceptions.RequestException as exc:
            # A body that breaks off or does not decode, a garbage Retry-After, redirects in a loop
            # or to nowhere: the server's doing, so a failed request rather than a bug of ours.
            raise RegistryError(ref, None, f"{self.base} sent an unusable response: {_unusable(exc)}") from None
        except ValueError:  # urllib.parse on a redirect's Location, before requests can wrap it
            raise RegistryError(ref, None, f"{self.base} sent an unusable response: a redirect to an invalid URL") from None
        if response.status_code in ok:
            return response
        raise self._error(response, ref)

    @staticmethod
    def _error(response: requests.Response, ref: str) -> RegistryError:
        status = response.status_code
        detail = ""
        try:
            errors = response.json().get("errors") or []
            if errors:
                detail = f": {errors[0].get('code', '')} {errors[0].get('message', '')}".rstrip()
        except (ValueError, AttributeError, requests.exceptions.RequestException):
            pass  # the status says enough; a body that breaks off or is not JSON adds nothing
        wait = retry_after(response)
        if wait is not None and wait > MAX_RETRY_AFTER:
            detail += f"; it asks to retry later than regsync waits ({MAX_RETRY_AFTER:.0f} s)"
        response.close()
        error = RegistryClient._error_for(status, ref, detail)
        error.method = response.request.method if response.request else None
        return error

    @staticmethod
    def _error_for(status: int, ref: str, detail: str) -> RegistryError:
        if status == 401:
            return RegistryError(ref, status, "authentication failed (check the credentials)")
        if status == 403:
            return RegistryError(ref, status, "access denied")
        if status == 404:
            return NotFound(ref, status, "not found")
        return RegistryError(ref, status, f"registry error{detail}")

    def ref(self, repo: str, reference: str = "") -> str:
        sep = "@" if reference.startswith("sha256:") else ":"
        return f"{self.name}/{repo}{sep + reference if reference else ''}"

    # -- API ------------------------------------------------------------------------------------

    def ping(self) -> None:
        if not self._pinged:
            self._request("GET", "/v2/", self.name, ok=(200,))
            self._pinged = True

    def list_tags(self, repo: str) -> list[str]:
        tags: list[str] = []
        url = f"/v2/{repo}/tags/list?n={self.tag_page_size}"
        for _ in range(_MAX_TAG_PAGES):
            response = self._request("GET", url, self.ref(repo))
            try:
                tags.extend(response.json().get("tags") or [])
            except (ValueError, AttributeError):
                raise RegistryError(self.ref(repo), None, "tag list is not JSON") from None
            link = response.links.get("next", {}).get("url")
            if not link:
                return tags
            try:
                url = urljoin(response.url, link)
                elsewhere = urlsplit(url).netloc != self.host
            except ValueError:  # e.g. an unclosed IPv6 bracket
                raise RegistryError(self.ref(repo), None, "tag list pagination link is not a URL") from None
            if elsewhere:
                raise RegistryError(self.ref(repo), None, "tag list pagination points to another host")
        raise RegistryError(self.ref(repo), None, "tag list has too many pages")

    def may_have_tag(self, repo: str, tag: str) -> bool:
        """False only when this run's one listing of `repo` shows `tag` absent (one GET per page
        instead of one HEAD per tag on a new or sparse target); True when the listing failed."""
        with self._tag_lock:
            if repo not in self._tag_sets:
                try:
                    self._tag_sets[repo] = frozenset(self.list_tags(repo))
                except NotFound:  # no such repository yet: no tags
                    self._tag_sets[repo] = frozenset()
                except RegistryError:  # not allowed to list, say: ask tag by tag
                    self._tag_sets[repo] = None
            tags = self._tag_sets[repo]
        return tags is None or tag in tags

    def head_manifest(self, repo: str, reference: str) -> Descriptor | None:
        """The digest a tag (or digest) resolves to, or None when absent. One HEAD, no body."""
        response = self._request("HEAD", f"/v2/{repo}/manifests/{reference}", self.ref(repo, reference),
                                 ok=(200, 404), headers={"Accept": ACCEPT})
        if response.status_code == 404:
            return None
        digest = response.headers.get("Docker-Content-Digest")
        if not digest:  # not promised by the spec for HEAD; fall back to the body
            manifest = self.get_manifest(repo, reference)
            return Descriptor(manifest.media_type, manifest.digest, len(manifest.raw))
        media_type = response.headers.get("Content-Type", "").split(";")[0]
        return Descriptor(media_type, digest, declared_length(response, self.ref(repo, reference)) or 0)

    def get_manifest(self, repo: str, reference: str, expect: str | None = None) -> Manifest:
        """GET a manifest; its bytes must match the digest asked for (or announced)."""
        by_digest = reference.startswith("sha256:")
        cached = self._manifests.get((repo, reference)) if by_digest else None
        if cached is not None:
            return cached
        manifest = self._fetch_manifest(repo, reference, expect)
        self._manifests.put((repo, manifest.digest), manifest)
        return manifest

    def _fetch_manifest(self, repo: str, reference: str, expect: str | None) -> Manifest:
        ref = self.ref(repo, reference)
        response = self._request("GET", f"/v2/{repo}/manifests/{reference}", ref,
                                 headers={"Accept": ACCEPT}, stream=True)
        with response:
            declared = declared_length(response, ref) or 0
            if declared > MAX_MANIFEST_BYTES:
                raise VerificationError(f"{ref}: manifest of {declared} bytes exceeds the {MAX_MANIFEST_BYTES}-byte limit")
            raw = read_at_most(response, MAX_MANIFEST_BYTES + 1, ref)
        manifest = Manifest.parse(raw, response.headers.get("Content-Type"), ref)
        wanted = expect or (reference if reference.startswith("sha256:") else None)
        wanted = wanted or response.headers.get("Docker-Content-Digest")
        if wanted and manifest.digest != wanted:
            raise VerificationError(f"{ref}: manifest digest mismatch: content is {manifest.digest}, expected {wanted}")
        return manifest

    def get_referrers(self, repo: str, digest: str) -> dict | None:
        """The OCI 1.1 referrers index for `digest`, or None when the registry has no referrers API."""
        ref = self.ref(repo, digest)
        response = self._request("GET", f"/v2/{repo}/referrers/{digest}", ref, ok=(200, 404),
                                 headers={"Accept": "application/vnd.oci.image.index.v1+json"}, stream=True)
        with response:
            if response.status_code == 404:  # the spec's signal to fall back to the sha256-<hex> tag
                return None
            raw = read_at_most(response, MAX_MANIFEST_BYTES + 1, ref)
        if len(raw) > MAX_MANIFEST_BYTES:
            raise VerificationError(f"{ref}: referrers index exceeds {MAX_MANIFEST_BYTES} bytes")
        try:
            doc = json.loads(raw)
        except ValueError:
            raise RegistryError(ref, 200, "referrers response is not JSON") from None
        return doc if isinstance(doc, dict) else None

    def put_manifest(self, repo: str, reference: str, manifest: Manifest) -> None:
        ref = self.ref(repo, reference)
        # bytes body: requests sends Content-Length, which Nexus's OCI repos insist on.
        response = self._request("PUT", f"/v2/{repo}/manifests/{reference}", ref, ok=(200, 201, 202),
                                 data=manifest.raw, headers={"Content-Type": manifest.media_type})
        echoed = response.headers.get("Docker-Content-Digest")
        if echoed and echoed != manifest.digest:
            raise RegistryError(ref, response.status_code, f"registry stored {echoed}, expected {manifest.digest}")

    def blob_exists(self, repo: str, digest: str, size: int | None = None) -> bool:
        """Whether `repo` holds the blob. With `size`, a blob held there with another length is
        refused: the digest fixes the length, so the manifest that gives it `size` bytes lies."""
        # A remembered absence is safe to trust within a run: if another writer uploads the blob
        # meanwhile, the cost is one redundant upload, which registries accept.
        ref = self.ref(repo, digest)
        held = self._present.get((repo, digest))
        if held is None or (size is not None and held == _HELD):
            response = self._request("HEAD", f"/v2/{repo}/blobs/{digest}", ref, ok=(200, 404))
            length = declared_length(response, ref) if response.status_code == 200 else None
            held = _ABSENT if response.status_code == 404 else _HELD if length is None else length
            self._present.put((repo, digest), held)
        if size is not None and held not in (_ABSENT, _HELD) and held != size:
            raise VerificationError(f"{ref}: the manifest gives it {size} bytes, the blob has {held}")
        return held != _ABSENT

    def open_blob(self, repo: str, digest: str) -> requests.Response:
        return self._request("GET", f"/v2/{repo}/blobs/{digest}", self.ref(repo, digest), stream=True)

    def open_blob_from(self, repo: str, digest: str, start: int) -> requests.Response:
        """The blob from byte `start` on: 206, or 200 with the whole blob when ranges are ignored."""
        return self._request("GET", f"/v2/{repo}/blobs/{digest}", self.ref(repo, digest), ok=(200, 206),
                             stream=True, headers={"Range": f"bytes={start}-"})

    def upload_offset(self, location: str) -> int | None:
        """How many bytes an upload session holds (its Range), or None when the session is gone."""
        try:
            response = self.session.get(location, timeout=_TIMEOUT)
        except requests.RequestException:
            return None
        with response:
            held = response.headers.get("Range", "")
            if response.status_code != 204 or not held.startswith("0-") or not held[2:].isdigit():
                return None
            return int(held[2:]) + 1

    def mount_blob(self, repo: str, digest: str, from_repo: str) -> bool:
        """Cross-repo mount: True when the registry linked the blob without any bytes moving."""
        response = self._request("POST", f"/v2/{repo}/blobs/uploads/?mount={digest}&from={from_repo}",
                                 self.ref(repo, digest), ok=(201, 202))
        if response.status_code == 201:
            self._present.put((repo, digest), _HELD)
            return True
        self._cancel(response, repo)  # 202: the registry opened an upload session instead
        return False

    def upload_blob(self, repo: str, descriptor: Descriptor, reader: VerifyingReader, checkpoint=None) -> None:
        """`checkpoint` (chunked uploads only) resumes a session at `checkpoint.offset` and is
        saved after every acknowledged chunk; the session then survives a failure for a rerun."""
        ref = self.ref(repo, descriptor.digest)
        resuming = checkpoint is not None and checkpoint.location and descriptor.size > self.monolithic_max
        if resuming:
            location, offset = checkpoint.location, checkpoint.offset
        else:
            start = self._request("POST", f"/v2/{repo}/blobs/uploads/", ref, ok=(202,))
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
            self._request("PUT", _with_digest(location, descriptor.digest), ref, ok=(201,),
                          headers={"Content-Length": "0"})
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
        return urljoin(response.url, location)

    def _cancel(self, response: requests.Response, repo: str) -> None:
        if response.headers.get("Location"):
            self._cancel_url(urljoin(response.url, response.headers["Location"]))

    def _cancel_url(self, url: str) -> None:
        try:  # best effort: an abandoned upload session is garbage-collected by the registry anyway
            self.session.delete(url, timeout=_TIMEOUT)
        except requests.RequestException:
            pass


_ABSENT, _HELD = "absent", "held"  # what `_present` remembers besides a held blob's size
MAX_CACHED_MANIFESTS = 20_000  # a few KiB each: tens of MiB at worst, for a 10,000-tag plan
MAX_CACHED_BLOBS = 200_000


class _BoundedCache:
    """A thread-safe LRU map; memory stays bounded however many tags a policy selects."""

    def __init__(self, limit: int):
        self._items: OrderedDict = OrderedDict()
        self._limit = limit
        self._lock = threading.Lock()

    def get(self, key):
        with self._lock:
            if key not in self._items:
                return None
            self._items.move_to_end(key)
            return self._items[key]

    def put(self, key, value) -> None:
        with self._lock:
            self._items[key] = value
            self._items.move_to_end(key)
            while len(self._items) > self._limit:
                self._items.popitem(last=False)


def declared_length(response: requests.Response, ref: str) -> int | None:
    """The Content-Length a server announced, or None; garbage (a hostile server) is a refusal."""
    value = response.headers.get("Content-Length")
    if value is None:
        return None
    if not value.strip().isdigit():
        raise VerificationError(f"{ref}: invalid Content-Length {value[:40]!r}")
    return int(value)


def read_at_most(response: requests.Response, limit: int, ref: str) -> bytes:
    """Up to `limit` bytes of a streamed body; one that breaks off or does not decode is a RegistryError."""
    try:
        return response.raw.read(limit, decode_content=True)
    except (urllib3.exceptions.HTTPError, OSError) as exc:
        raise RegistryError(ref, None, f"the response body broke off or does not decode ({type(exc).__name__})") from None


_UNUSABLE = ((requests.exceptions.ContentDecodingError, "a body that does not decode as its Content-Encoding says"),
             (requests.exceptions.ChunkedEncodingError, "a body that broke off"),
             (requests.exceptions.InvalidHeader, "an invalid header"),
             (requests.exceptions.TooManyRedirects, "too many redirects"),
             ((requests.exceptions.InvalidURL, requests.exceptions.MissingSchema, requests.exceptions.InvalidSchema),
              "a redirect to an invalid URL"))


def _unusable(exc: requests.exceptions.RequestException) -> str:
    named = re.match(r"Invalid ([\w-]+) header", str(exc))  # urllib3's words; the value is the server's
    if isinstance(exc, requests.exceptions.InvalidHeader) and named:
        return f"an invalid {named.group(1)} header"
    return next((what for kind, what in _UNUSABLE if isinstance(exc, kind)), type(exc).__name__)


def _with_digest(location: str, digest: str) -> str:
    return f"{location}{'&' if '?' in location else '?'}digest={digest}"
