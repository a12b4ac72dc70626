"""The run's clients: each made once per run under its key, by the kind that uses it.

Endpoints knows no kind of client: a kind asks `client(key, make)` with its own key (the image kind
`registry:<name>`, packages `index:<name>` and `target:<name>`, conda `channel:<name>`) and its own
maker (kinds/*/clients.py). Stand-ins (a bundle playing the sources, export's empty targets) are
handed in by key and win over what the policy names."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, TypeVar, cast

from regsync.policy import LoadedPolicy
from regsync.policy.models import Policy

T = TypeVar("T")


class Endpoints:
    def __init__(self, loaded: LoadedPolicy, jobs: int = 8, max_requests_per_second: float | None = None,
                 sources: dict[str, Any] | None = None):
        """`sources` stands in for clients by key (an air-gap bundle plays the policy's sources)."""
        self.max_requests_per_second = max_requests_per_second
        self.pool_size = max(4, jobs * 2)   # connections per client: two per worker
        self._policy = loaded.policy
        self._clients: dict[str, Any] = dict(sources or {})
        self._lock = threading.Lock()

    @property
    def policy(self) -> Policy:
        """The policy these endpoints serve (trust entries and rules are read from it at apply time)."""
        return self._policy

    def client(self, key: str, make: Callable[[], T]) -> T:
        """The client under `key` (a kind's own namespace, e.g. `channel:<name>`), made once per run;
        a stand-in given for `key` is returned instead. The one way a kind gets its clients: what a
        key holds is the business of the kind that names it."""
        with self._lock:
            found = self._clients.get(key)
        if found is None:
            made = make()  # outside the lock: `make` may ask for other clients (a target's index)
            with self._lock:
                found = self._clients.setdefault(key, made)
        return cast(T, found)  # a key's client is always made by the same kind's `make`
