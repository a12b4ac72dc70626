"""policy → desired artifacts → a plan diffed against the targets (read-only)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from regsync.endpoints import Endpoints
    from regsync.plan import Plan
    from regsync.policy import LoadedPolicy
    from regsync.shard import Shard


def make_plan(loaded: "LoadedPolicy", endpoints: "Endpoints", jobs: int = 8, shard: "Shard | None" = None,
              diff_target: bool = True) -> "Plan":
    from regsync.plan import Plan
    from regsync.resolve.images import plan_images
    from regsync.resolve.packages import plan_packages

    items, errors = plan_images(list(loaded.policy.images), endpoints, jobs, shard, diff_target)
    if loaded.policy.packages:
        package_items, package_errors = plan_packages(list(loaded.policy.packages), endpoints, jobs, shard)
        items += package_items
        errors += package_errors
    if loaded.policy.conda:
        from regsync.conda.plan import plan_conda

        conda_items, conda_errors = plan_conda(endpoints, shard, diff_target)
        items += conda_items
        errors += conda_errors
    for item in items:
        _authorize(item, loaded.policy)
    return Plan(loaded.sha256, items, errors)


def _authorize(item, policy) -> None:
    """What apply would refuse for want of one rule (two rules mapping the same repositories) shows
    as a refusal in the plan already."""
    from regsync.errors import VerificationError
    from regsync.verify.authority import authorize

    if item.changes:
        try:
            authorize(item, policy)
        except VerificationError as exc:
            item.action, item.reason = "refuse", exc.reason
