"""Target dialects: what a Harbor or a Nexus needs beyond the distribution API every registry speaks."""

from __future__ import annotations

from typing import Any

from regsync.kinds.image.auth import Credentials
from regsync.kinds.image.client import RegistryClient
from regsync.kinds.image.dialects.harbor import HarborClient
from regsync.kinds.image.dialects.nexus import nexus_options
from regsync.kinds.image.policy import Registry


def build_client(cfg: Registry, name: str, url: str, credentials: Credentials | None, **options: Any) -> RegistryClient:
    """The registry client for one endpoint of the policy, shaped by its `kind`."""
    if cfg.flavour == "harbor":
        return HarborClient(name, url, credentials, harbor=cfg.harbor, **options)
    if cfg.flavour == "nexus":
        options.update(nexus_options(cfg))
    return RegistryClient(name, url, credentials, **options)
