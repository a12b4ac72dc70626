"""A token bucket for bytes (--bandwidth) and requests (--max-requests-per-second)."""

from __future__ import annotations

import threading
import time


class Throttle:
    """A token bucket shared by threads: `consume(n)` blocks just long enough to hold `rate` per second.

    Used for bytes (--bandwidth, per run) and for requests (--max-requests-per-second, per registry).
    Debt is allowed, so one 1 MiB chunk under a 100 KiB/s limit waits ten seconds instead of never.
    """

    def __init__(self, rate: float):
        if rate <= 0:
            raise ValueError("rate must be positive")
        self.rate = rate
        self._tokens = rate
        self._last = time.monotonic()
        self._lock = threading.Lock()

    def consume(self, n: float = 1) -> None:
        with self._lock:
            now = time.monotonic()
            self._tokens = min(self.rate, self._tokens + (now - self._last) * self.rate)
            self._last = now
            self._tokens -= n
            wait = -self._tokens / self.rate if self._tokens < 0 else 0.0
        if wait:
            time.sleep(wait)
