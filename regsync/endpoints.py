"""The run's clients, built from the policy: one pooled client per registry, index or target name.

A kind reads its clients here; stand-ins (a bundle playing the sources, export's empty targets)
are handed in by key and win over what the policy names."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from regsync.kinds.image.client import RegistryClient
from regsync.kinds.image.credentials import resolve_credentials
from regsync.kinds.image.mirrors import MirroredRegistry
from regsync.kinds.image.policy import ImageSection
from regsync.kinds.package.policy import PackageSection
from regsync.policy import LoadedPolicy


class Endpoints:
    def __init__(self, loaded: LoadedPolicy, jobs: int = 8, max_requests_per_second: float | None = None,
                 sources: dict | None = None):
        """`sources` stands in for registries by name (an air-gap bundle plays the policy's sources)."""
        self._max_rps = max_requests_per_second
        self._policy = loaded.policy
        self._pool_size = max(4, jobs * 2)
        # Registry clients (or MirroredRegistry, which stands for one), package indexes and targets,
        # a kind's own clients, stand-ins: each caller knows what its key holds.
        self._clients: dict[str, Any] = dict(sources or {})
        self._lock = threading.Lock()

    @property
    def policy(self):
        """The policy these endpoints serve (trust entries and rules are read from it at apply time)."""
        return self._policy

    def client(self, key: str, make: Callable[[], object]):
        """The client under `key` (a kind's own namespace, e.g. `channel:<name>`), made once per run;
        a stand-in given for `key` is returned instead. The seam a new kind uses for its clients."""
        with self._lock:
            found = self._clients.get(key)
        if found is None:
            made = make()  # outside the lock: `make` may ask for other clients (a target's index)
            with self._lock:
                found = self._clients.setdefault(key, made)
        return found

    def registry(self, name: str) -> RegistryClient:
        with self._lock:
            if name not in self._clients:
                cfg = ImageSection.of(self._policy).registries[name]
                primary = self._client(name, cfg, cfg.url, resolve_credentials(cfg.auth, _host(cfg.url)))
                mirrors = [self._client(name, cfg, url, _mirror_credentials(cfg, url)) for url in cfg.mirrors]
                self._clients[name] = MirroredRegistry([primary, *mirrors]) if mirrors else primary
            return self._clients[name]

    def index(self, name: str):
        """The package index `name`, for reading (its simple pages), with its mirrors behind it."""
        from regsync.kinds.package.mirrors import MirroredIndex

        with self._lock:
            key = f"index:{name}"
            if key not in self._clients:
                cfg = PackageSection.of(self._policy).indexes[name]
                # Index checks that only kind: directory has no url (a directory is not read through here).
                assert cfg.url is not None, f"index '{name}' has no url"
                primary = self._package_index(name, cfg, cfg.url, resolve_credentials(cfg.auth, _host(cfg.url)),
                                              cfg.upload_url)
                mirrors = [self._package_index(name, cfg, url, _mirror_credentials(cfg, url)) for url in cfg.mirrors]
                self._clients[key] = MirroredIndex([primary, *mirrors]) if mirrors else primary
            return self._clients[key]

    def _package_index(self, name: str, cfg, url: str, credentials, upload_url: str | None = None):
        from regsync.net.http import retry_policy
        from regsync.kinds.package.index import PackageIndex

        return PackageIndex(name, url, credentials, cfg.tls.ca_file if cfg.tls else None, self._pool_size,
                            retry_policy(cfg.retries.attempts, cfg.retries.backoff_seconds), upload_url)

    def package_target(self, name: str):
        """Where packages for index `name` go: an upload API, or a directory tree."""
        from regsync.kinds.package.sinks import DirectoryTarget, UploadTarget

        cfg = PackageSection.of(self._policy).indexes[name]
        key = f"target:{name}"
        if key not in self._clients:
            # what a target holds is read from the target itself, never from a mirror of it
            if cfg.flavour == "directory":
                assert cfg.path is not None, "Index checks that kind: directory has a path"
                target = DirectoryTarget(name, cfg.path)
            else:
                assert cfg.url is not None, "Index checks that every other kind has a url"
                target = UploadTarget(name, self.index(name).primary, cfg.upload_url or cfg.url)
            with self._lock:
                self._clients.setdefault(key, target)
        return self._clients[key]

    def _client(self, name: str, cfg, url: str, credentials) -> RegistryClient:
        from regsync.kinds.image.dialects import build_client

        return build_client(
            cfg, name, url, credentials, ca_file=cfg.tls.ca_file if cfg.tls else None,
            monolithic_max=cfg.upload.monolithic_max, chunk_size=cfg.upload.chunk_size, spool_min=cfg.upload.spool_min,
            retries=cfg.retries.attempts, backoff=cfg.retries.backoff_seconds,
            max_requests_per_second=self._max_rps, pool_size=self._pool_size)


def _host(url: str) -> str:
    return url.split("://", 1)[1].split("/", 1)[0]


def _mirror_credentials(cfg, url: str):
    # The policy's username/password are for the primary URL; never hand them to another host.
    return resolve_credentials(cfg.auth, _host(url)) if cfg.auth and cfg.auth.docker_config else None
