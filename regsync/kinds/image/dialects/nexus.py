"""Nexus Repository (docker hosted): reached by a connector port (`https://nexus:8082`) or by
path-based routing (`https://nexus/repository/<repo>`); the client joins `<url>/v2/…` either way.

Quirks handled here or in the shared client: manifest PUTs always carry Content-Length (newer
OCI repositories answer 411 without it); blobs go up in one PUT whenever the size is known,
because older Nexus versions buffered PATCH chunks in memory; signatures use cosign's tag scheme
(Nexus has no referrers API).
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlsplit

from regsync.kinds.image.policy import Registry

# A monolithic PUT streams from the source (SizedBody): memory stays flat whatever the size.
MONOLITHIC_ANY_SIZE = 1 << 62


def nexus_options(cfg: Registry) -> dict[str, Any]:
    """Client options for a Nexus endpoint; an explicit `upload:` in the policy wins."""
    if "upload" in cfg.model_fields_set:
        return {}
    return {"monolithic_max": MONOLITHIC_ANY_SIZE}


def repository_of(url: str) -> str | None:
    """'https://nexus/repository/docker-hosted' → 'docker-hosted'; None for a connector port."""
    match = re.fullmatch(r"/repository/([^/]+)/?", urlsplit(url).path)
    return match.group(1) if match else None
