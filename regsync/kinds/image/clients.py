"""The image kind's clients, made through Endpoints: one pooled client per registry of the policy.

A registry read as a source is an ImageSource: the registry itself, or with `mirrors:` a
MirroredRegistry in front of it (a bundle's LayoutSource on import, handed in as a stand-in). A
registry written to is its primary client, never a mirror of it."""

from __future__ import annotations

from typing import TYPE_CHECKING

from regsync.kinds.image.client import RegistryClient
from regsync.kinds.image.credentials import endpoint_credentials
from regsync.kinds.image.dialects import build_client
from regsync.kinds.image.mirrors import MirroredRegistry
from regsync.kinds.image.policy import ImageSection
from regsync.kinds.image.source import ImageSource

if TYPE_CHECKING:
    from regsync.endpoints import Endpoints


def source_registry(endpoints: "Endpoints", name: str) -> ImageSource:
    """Registry `name` to read from: with its mirrors behind it, or the stand-in given for it."""
    def make() -> ImageSource:
        mirrors = [_client(endpoints, name, url, primary=False) for url in ImageSection.of(endpoints.policy).registries[name].mirrors]
        primary = target_registry(endpoints, name)
        return MirroredRegistry([primary, *mirrors]) if mirrors else primary

    return endpoints.client(source_key(name), make)


def target_registry(endpoints: "Endpoints", name: str) -> RegistryClient:
    """Registry `name` to write to (and to read what it holds)."""
    return endpoints.client(f"registry:{name}",
                            lambda: _client(endpoints, name, ImageSection.of(endpoints.policy).registries[name].url, primary=True))


def source_key(name: str) -> str:
    """The key a stand-in for source registry `name` is handed to Endpoints under."""
    return f"image-source:{name}"


def _client(endpoints: "Endpoints", name: str, url: str, primary: bool) -> RegistryClient:
    cfg = ImageSection.of(endpoints.policy).registries[name]
    return build_client(
        cfg, name, url, endpoint_credentials(cfg.auth, url, primary),
        ca_file=cfg.tls.ca_file if cfg.tls else None, monolithic_max=cfg.upload.monolithic_max,
        chunk_size=cfg.upload.chunk_size, spool_min=cfg.upload.spool_min, retries=cfg.retries.attempts,
        backoff=cfg.retries.backoff_seconds, max_requests_per_second=endpoints.max_requests_per_second,
        pool_size=endpoints.pool_size)
