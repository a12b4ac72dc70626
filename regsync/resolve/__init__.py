"""policy → desired artifacts → a plan diffed against the targets (read-only)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from regsync.endpoints import Endpoints
    from regsync.plan import Plan
    from regsync.policy import LoadedPolicy
    from regsync.shard import Shard


def make_plan(loaded: "LoadedPolicy", endpoints: "Endpoints", jobs: int = 8, shard: "Shard | None" = None) -> "Plan":
    from regsync.plan import Plan
    from regsync.resolve.images import plan_images

    items, errors = plan_images(list(loaded.policy.images), endpoints, jobs, shard)
    return Plan(loaded.sha256, items, errors)
