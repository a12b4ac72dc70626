"""What a registry's answers mean: its error bodies as one-line errors, the lengths it declares, and
the requests exceptions that say its response was unusable."""

from __future__ import annotations

import json
import re

import requests
import urllib3

from regsync.content.reader import Answered, read_bounded
from regsync.errors import NotFound, RegistryError, VerificationError
from regsync.net.http import MAX_RETRY_AFTER, TLS_SERVER_ANSWER, retry_after, speaks_tls

MAX_ERROR_BODY = 64 << 10  # only the first error's code and message are shown
NAME_UNKNOWN = "NAME_UNKNOWN"  # distribution spec: "repository name not known to registry"


def error_of(response: requests.Response, ref: str) -> RegistryError:
    status = response.status_code
    detail = code = ""
    try:
        body = read_bounded(response, MAX_ERROR_BODY) or b""
        if status == 400 and TLS_SERVER_ANSWER in body:
            return RegistryError(ref, status, speaks_tls(response.url))
        errors = json.loads(body).get("errors") or []
        if errors:
            code = str(errors[0].get("code", ""))[:100]
            detail = f": {code} {str(errors[0].get('message', ''))[:300]}".rstrip()
    except (ValueError, AttributeError, TypeError, urllib3.exceptions.HTTPError, OSError,
            requests.exceptions.RequestException):
        pass  # the status says enough; a body that breaks off or is not JSON adds nothing
    wait = retry_after(response)
    if wait is not None and wait > MAX_RETRY_AFTER:
        detail += f"; it asks to retry later than regsync waits ({MAX_RETRY_AFTER:.0f} s)"
    response.close()
    error = error_for(status, ref, detail, code)
    error.method = response.request.method if response.request else None
    error.code = code
    return error


def error_for(status: int, ref: str, detail: str, code: str = "") -> RegistryError:
    if status == 401:
        return RegistryError(ref, status, "authentication failed (check the credentials)")
    if status == 403:
        return RegistryError(ref, status, "access denied")
    if status == 404:
        return NotFound(ref, status, "repository not found" if code == NAME_UNKNOWN else "not found")
    return RegistryError(ref, status, f"registry error{detail}")


def declared_length(response: Answered, ref: str) -> int | None:
    """The Content-Length a server announced, or None; garbage (a hostile server) is a refusal."""
    value = response.headers.get("Content-Length")
    if value is None:
        return None
    if not value.strip().isdigit():
        raise VerificationError(f"{ref}: invalid Content-Length {value[:40]!r}")
    return int(value)


_UNUSABLE = ((requests.exceptions.ContentDecodingError, "a body that does not decode as its Content-Encoding says"),
             (requests.exceptions.ChunkedEncodingError, "a body that broke off"),
             (requests.exceptions.InvalidHeader, "an invalid header"),
             (requests.exceptions.TooManyRedirects, "too many redirects"),
             ((requests.exceptions.InvalidURL, requests.exceptions.MissingSchema, requests.exceptions.InvalidSchema),
              "a redirect to an invalid URL"))


def unusable(exc: requests.exceptions.RequestException) -> str:
    named = re.match(r"Invalid ([\w-]+) header", str(exc))  # urllib3's words; the value is the server's
    if isinstance(exc, requests.exceptions.InvalidHeader) and named:
        return f"an invalid {named.group(1)} header"
    return next((what for kind, what in _UNUSABLE if isinstance(exc, kind)), type(exc).__name__)
