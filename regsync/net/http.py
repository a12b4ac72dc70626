"""The one HTTP transport for registries and package indexes: pooled, retried, throttled, bounded.

Shaped like go-containerregistry's transport stack: connection pooling and retries live in a
requests adapter (urllib3's Retry honours Retry-After), so callers never see either. The same
adapter keeps two promises for every request: no body read whole is larger than the session's
`max_body`, and an https request is never redirected to plain http.
"""

from __future__ import annotations

import threading
from typing import Any
from urllib.parse import urljoin, urlsplit

import requests
import requests.auth
import urllib3
from loguru import logger
from requests.adapters import HTTPAdapter
from urllib3.exceptions import InvalidHeader, MaxRetryError, ResponseError
from urllib3.util.retry import Retry

from regsync import __version__
from regsync.errors import RegistryError
from regsync.net.throttle import Throttle
from regsync.content.reader import read_bounded

TRANSIENT_STATUS = (429, 500, 502, 503, 504)
# The largest body read whole (a tag-list page, a token, an error): anything longer is refused.
MAX_BODY = 16 << 20
_REDIRECT_BODY = 64 << 10  # a redirect's body is never used: read a little so the connection is reused
_DEFAULT_PORTS = {"http": 80, "https": 443}


def origin(url: str) -> str:
    """`scheme://host:port` with the default port spelled out (https://h == https://h:443), or ""
    for a URL without one. Never holds a user:password@ part, so it is fit for messages."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    try:
        port = parts.port or _DEFAULT_PORTS.get(scheme)
    except ValueError:  # a port that is not a number
        return ""
    host = parts.hostname or ""
    if not scheme or not host or port is None:
        return ""
    return f"{scheme}://[{host}]:{port}" if ":" in host else f"{scheme}://{host}:{port}"


def downgrades(base: str, url: str) -> bool:
    """Whether going to `url` leaves https, `base` (the registry or index the user named) being https."""
    return urlsplit(base).scheme.lower() == "https" and urlsplit(url).scheme.lower() != "https"


def require_https(base: str, url: str, ref: str, what: str) -> None:
    """Refuse `url` when it `downgrades` from `base`: a server's word (a Location, a Link, a realm, a
    redirect, a saved session) never moves us to plain text, where credentials could be read."""
    if downgrades(base, url):
        where = origin(url) or "a URL without a host"
        raise RegistryError(ref, None, f"{what} points to {where}: refusing to leave https for plain http")


# How OpenSSL says the peer answered a handshake with something that is not TLS (plain HTTP).
_NOT_TLS = ("wrong version number", "record layer failure", "packet length too long", "http request")


def cause(error: BaseException | None) -> str:
    """Why a request could not be made, in a few words that hold no secret (no URL, no header)."""
    for _ in range(8):  # requests wraps urllib3's MaxRetryError, which holds the last real error
        inner = getattr(error, "reason", None) if isinstance(error, urllib3.exceptions.MaxRetryError) else (
            error.args[0] if isinstance(error, requests.exceptions.RequestException) and error.args else None)
        if not isinstance(inner, BaseException):
            break
        error = inner
    text = str(error).lower()
    if isinstance(error, urllib3.exceptions.NameResolutionError):
        return "name resolution failed (DNS)"
    if isinstance(error, urllib3.exceptions.SSLError):
        return "the server does not speak TLS" if any(s in text for s in _NOT_TLS) else "TLS verification failed"
    if isinstance(error, urllib3.exceptions.NewConnectionError):
        return "connection refused" if "refused" in text else "connection failed"
    if isinstance(error, urllib3.exceptions.ConnectTimeoutError):
        return "connect timed out"
    if isinstance(error, urllib3.exceptions.ReadTimeoutError):
        return "read timed out"
    if isinstance(error, urllib3.exceptions.ProtocolError):
        return "connection dropped"
    return type(error).__name__ if error else "request failed"


def connection_failure(error: BaseException, base: str, ca_setting: str = "tls.ca_file") -> str:
    """The message for a request to `base` (a registry's or index's URL) that never got an answer;
    `ca_setting` is what the user sets to trust its CA (a policy key, or a command's flag)."""
    why = cause(error)
    where = origin(base) or base
    if why.startswith("name resolution"):
        return f"name resolution failed for {urlsplit(base).hostname} (DNS): check the host name"
    if why == "the server does not speak TLS":
        return f"{where} does not speak TLS (a plain-HTTP server? then its URL starts with http://)"
    if why == "TLS verification failed":
        return f"TLS verification failed for {urlsplit(base).netloc} (set {ca_setting} to its CA)"
    return f"cannot connect to {where} ({why})"


# What Go's net/http (docker-registry, Harbor, Nexus's Go front ends) answers, with a 400, to plain
# HTTP on its TLS port (src/net/http/server.go, "Client sent an HTTP request to an HTTPS server.").
TLS_SERVER_ANSWER = b"Client sent an HTTP request to an HTTPS server"


def speaks_tls(url: str) -> str:
    """The message for a plain-HTTP request that a TLS server answered."""
    where = origin(url).replace("http://", "", 1) or url
    return f"{where} speaks TLS, not plain HTTP (it answered 400 'Client sent an HTTP request to an HTTPS " \
           f"server'): its URL starts with https://"


# A server asking for a longer pause gets its answer back at once instead: a cron run must not
# stall for the hours a rate limit (or a hostile "Retry-After: 99999999999") names.
MAX_RETRY_AFTER = 60.0


class LoggedRetry(Retry):
    """urllib3's Retry that says what it is retrying (an unreachable registry is otherwise tens of
    seconds of silence; the first retry is INFO, so a blip that heals does not wake cron under -q),
    and honours Retry-After only within reason: a value that is not a number of seconds or an HTTP
    date means our own backoff; one beyond MAX_RETRY_AFTER means no retry."""

    def get_retry_after(self, response) -> float | None:
        try:
            return super().get_retry_after(response)
        except InvalidHeader:
            return None

    def increment(self, method=None, url=None, response=None, error=None, _pool=None, _stacktrace=None):
        if isinstance(error, urllib3.exceptions.SSLError):  # a certificate or a non-TLS peer stays so
            raise urllib3.exceptions.MaxRetryError(_pool, url, error) from error
        if response is not None and self.respect_retry_after_header \
                and (self.get_retry_after(response) or 0) > MAX_RETRY_AFTER:
            # urllib3 hands the response back as it is (raise_on_status=False): the caller reports its status
            raise MaxRetryError(_pool, url, ResponseError(f"Retry-After beyond {MAX_RETRY_AFTER:.0f} s"))
        retry = super().increment(method, url, response, error, _pool, _stacktrace)  # raises when spent
        where = f"{_pool.scheme}://{_pool.host}:{_pool.port}" if _pool is not None else "a server"
        why = cause(error) if error is not None else f"HTTP {response.status}" if response is not None else "failed"
        attempt = len(retry.history)
        wait = (response is not None and retry.get_retry_after(response)) or retry.get_backoff_time()
        logger.bind(event="retry", reason=why).log(
            "INFO" if attempt == 1 else "WARNING", "{} {}{}: {}; retry {} of {} in about {:.1f} s",
            method, where, urlsplit(url or "").path, why, attempt, attempt + (retry.total or 0), wait)
        return retry


def retry_after(response) -> float | None:
    """The seconds a response's Retry-After asks for (None when absent or garbage)."""
    return LoggedRetry().get_retry_after(response)


def retry_policy(attempts: int, backoff: float) -> Retry:
    # Only idempotent requests are retried here; uploads are retried a level up, where the
    # stream can be reopened from the source. Jitter keeps N shards from retrying in lockstep.
    return LoggedRetry(total=attempts, connect=attempts, read=attempts, backoff_factor=backoff, backoff_jitter=backoff,
                 status_forcelist=TRANSIENT_STATUS, allowed_methods=frozenset({"GET", "HEAD"}),
                 respect_retry_after_header=True, raise_on_status=False)


class Transport(HTTPAdapter):
    def __init__(self, throttle: Throttle | None, max_body: int = MAX_BODY, **kwargs):
        self._throttle, self.max_body = throttle, max_body
        # Origins that refused a connection through all their retries: down for the rest of the run
        # (a session lives for one run). Asking again would cost every item the same retries (~16 s
        # each with the defaults) for the same answer; a server that is only slow is not put here.
        self._down: dict[str, requests.exceptions.ConnectionError] = {}
        self._down_lock = threading.Lock()
        super().__init__(**kwargs)

    def send(self, request: requests.PreparedRequest, stream: bool = False,  # type: ignore[override]
             **kwargs: Any) -> requests.Response:
        where = origin(request.url or "")  # a prepared request always has its url
        refused = self._down.get(where)
        if refused is not None:
            raise requests.exceptions.ConnectionError(*refused.args, request=request)
        if self._throttle:
            self._throttle.consume()
        try:
            response = super().send(request, stream=stream, **kwargs)
        except requests.exceptions.ConnectionError as exc:
            if cause(exc) == "connection refused":
                self._mark_down(where, exc)
            raise
        if response.is_redirect:
            url = request.url or ""  # a prepared request always has its url
            target = urljoin(url, response.headers["Location"])
            self._preload(response, _REDIRECT_BODY, decode=False)  # requests would read it whole to drain it
            require_https(url, target, origin(url), "a redirect")
        elif not stream:
            # requests reads a body it was not asked to stream with no limit at all (`r.content`):
            # read it here, bounded, and hand requests the bytes.
            self._preload(response, self.max_body)
        return response

    def _mark_down(self, where: str, exc: requests.exceptions.ConnectionError) -> None:
        with self._down_lock:
            first = where not in self._down
            self._down[where] = exc
        if first:  # said once per run, however many items were waiting on it
            logger.bind(event="down", reason="connection refused").error(
                "{} refuses connections: treated as down for the rest of this run; what needs it fails "
                "without asking it again", where)

    @staticmethod
    def _preload(response: requests.Response, limit: int, decode: bool = True) -> None:
        try:
            body = read_bounded(response, limit, decode)
        except urllib3.exceptions.DecodeError as exc:
            raise requests.exceptions.ContentDecodingError(exc, request=response.request) from None
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise requests.exceptions.ConnectionError(exc, request=response.request) from None
        if body is None and decode:
            where = origin(response.url) + urlsplit(response.url).path
            raise RegistryError(where, response.status_code, f"response larger than {limit} bytes refused")
        # What requests itself does once it has read a body (Response.content).
        # requests' private fields (undeclared in its stubs), set as Response.content sets them
        response._content, response._content_consumed = body or b"", True  # type: ignore[attr-defined]


def make_session(ca_file=None, pool_size: int = 16, retry: Retry | None = None,
                 throttle: Throttle | None = None, max_body: int = MAX_BODY) -> requests.Session:
    session = requests.Session()
    session.verify = str(ca_file) if ca_file else True
    session.trust_env = False  # proxies and netrc from the environment must not capture our traffic
    adapter = Transport(throttle, max_body, pool_connections=4, pool_maxsize=pool_size,
                        max_retries=retry or retry_policy(4, 0.5))
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    session.headers["User-Agent"] = f"regsync/{__version__}"
    return session


class OriginBoundBasicAuth(requests.auth.AuthBase):
    """Basic auth for the named origins only (scheme, host and port): a page may link files anywhere
    (a CDN, the same host over plain http, whatever a hostile mirror names), and those get none."""

    def __init__(self, username: str, password: str, origins: set[str]):
        self._basic = requests.auth.HTTPBasicAuth(username, password)
        self._origins = origins

    def __call__(self, request):
        return self._basic(request) if origin(request.url) in self._origins else request
