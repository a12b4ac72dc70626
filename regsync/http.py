"""The one HTTP transport for registries and package indexes: pooled, retried, throttled.

Shaped like go-containerregistry's transport stack: connection pooling and retries live in a
requests adapter (urllib3's Retry honours Retry-After), so callers never see either.
"""

from __future__ import annotations

import requests
from requests.adapters import HTTPAdapter
from urllib3.exceptions import InvalidHeader, MaxRetryError, ResponseError
from urllib3.util.retry import Retry

from regsync import __version__
from regsync.transfer import Throttle

TRANSIENT_STATUS = (429, 500, 502, 503, 504)
# A server asking for a longer pause gets its answer back at once instead: a cron run must not
# stall for the hours a rate limit (or a hostile "Retry-After: 99999999999") names.
MAX_RETRY_AFTER = 60.0


class BoundedRetry(Retry):
    """urllib3's Retry, honouring Retry-After only within reason: a value that is not a number of
    seconds or an HTTP date means our own backoff; one beyond MAX_RETRY_AFTER means no retry."""

    def get_retry_after(self, response) -> float | None:
        try:
            return super().get_retry_after(response)
        except InvalidHeader:
            return None

    def increment(self, method=None, url=None, response=None, error=None, _pool=None, _stacktrace=None):
        if response is not None and self.respect_retry_after_header \
                and (self.get_retry_after(response) or 0) > MAX_RETRY_AFTER:
            # urllib3 hands the response back as it is (raise_on_status=False): the caller reports its status
            raise MaxRetryError(_pool, url, ResponseError(f"Retry-After beyond {MAX_RETRY_AFTER:.0f} s"))
        return super().increment(method, url, response, error, _pool, _stacktrace)


def retry_after(response) -> float | None:
    """The seconds a response's Retry-After asks for (None when absent or garbage)."""
    return BoundedRetry().get_retry_after(response)


def retry_policy(attempts: int, backoff: float) -> Retry:
    # Only idempotent requests are retried here; uploads are retried a level up, where the
    # stream can be reopened from the source. Jitter keeps N shards from retrying in lockstep.
    return BoundedRetry(total=attempts, connect=attempts, read=attempts, backoff_factor=backoff, backoff_jitter=backoff,
                 status_forcelist=TRANSIENT_STATUS, allowed_methods=frozenset({"GET", "HEAD"}),
                 respect_retry_after_header=True, raise_on_status=False)


class ThrottledAdapter(HTTPAdapter):
    def __init__(self, throttle: Throttle | None, **kwargs):
        self._throttle = throttle
        super().__init__(**kwargs)

    def send(self, request, *args, **kwargs):
        if self._throttle:
            self._throttle.consume()
        return super().send(request, *args, **kwargs)


def make_session(ca_file=None, pool_size: int = 16, retry: Retry | None = None,
                 throttle: Throttle | None = None) -> requests.Session:
    session = requests.Session()
    session.verify = str(ca_file) if ca_file else True
    session.trust_env = False  # proxies and netrc from the environment must not capture our traffic
    adapter = ThrottledAdapter(throttle, pool_connections=4, pool_maxsize=pool_size,
                               max_retries=retry or retry_policy(4, 0.5))
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    session.headers["User-Agent"] = f"regsync/{__version__}"
    return session

