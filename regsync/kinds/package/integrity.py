"""The Integrity API of an index (PEP 740): where a file's provenance is served, and reading it."""

from __future__ import annotations

from urllib.parse import quote, urlsplit, urlunsplit

import requests
import urllib3

from regsync.content.python_names import parse_file_name
from regsync.errors import RegistryError, VerificationError
from regsync.kinds.package.ref import public_url

INTEGRITY_ACCEPT = "application/vnd.pypi.integrity.v1+json"
MAX_PROVENANCE_BYTES = 4 << 20


def provenance_url(index_url: str, filename: str) -> str:
    """The Integrity API lives at the index host's root (pypi.org/integrity/…, next to /simple/)."""
    project, version = _name_and_version(filename)
    parts = urlsplit(index_url)
    path = "/integrity/" + "/".join(quote(p, safe="") for p in (project, version, filename)) + "/provenance"
    return urlunsplit((parts.scheme, parts.netloc, path, "", ""))


def fetch_integrity(session: requests.Session, name: str, index_url: str, filename: str,
                    limit: int) -> tuple[str, bytes]:
    """(url, raw JSON) from the index host's Integrity API; VerificationError when there is none."""
    request_url = provenance_url(index_url, filename)
    url = public_url(request_url)  # what messages and the audit trail show: never a user:password@
    try:
        with session.get(request_url, headers={"Accept": INTEGRITY_ACCEPT}, stream=True, timeout=(15, 60)) as response:
            # read (bounded) whatever the status: a connection closed on an unread body is reset, not reused
            raw = response.raw.read(limit + 1, decode_content=True)
            status = response.status_code
    except (requests.RequestException, urllib3.exceptions.HTTPError, OSError):
        raise RegistryError(f"{name}/{filename}", None, f"cannot reach {url} for its provenance") from None
    if status == 404:
        raise VerificationError(f"pep740: no provenance for {filename} at {url} (HTTP 404)")
    if status != 200:
        raise RegistryError(f"{name}/{filename}", status, f"provenance from {url}")
    if len(raw) > limit:
        raise VerificationError(f"pep740: the provenance of {filename} at {url} is larger than {limit} bytes")
    return url, raw


def _name_and_version(filename: str) -> tuple[str, str]:
    try:
        name, version = parse_file_name(filename)
    except ValueError:
        raise VerificationError(f"pep740: {filename} is not a wheel or sdist file name") from None
    return name, str(version)
