"""policy → desired artifacts → a plan diffed against the targets (read-only), every kind alike."""

from __future__ import annotations

from regsync.endpoints import Endpoints
from regsync.errors import VerificationError
from regsync.pipeline.kind import Kinds, kind_of
from regsync.pipeline.plan import Plan, PlanItem
from regsync.pipeline.shard import Shard
from regsync.policy import LoadedPolicy
from regsync.policy.models import Policy


def make_plan(loaded: LoadedPolicy, endpoints: Endpoints, kinds: Kinds, jobs: int = 8, shard: Shard | None = None,
              diff_target: bool = True) -> Plan:
    """`kinds`: each kind plans its rules, in the mapping's order (regsync.kinds.registry.KINDS).
    `diff_target=False` (export): every selected artifact is planned as a copy, the target unseen."""
    items, errors = [], []
    for kind in kinds.values():
        kind_items, kind_errors = kind.plan(loaded.policy, endpoints, jobs, shard, diff_target)
        items += kind_items
        for error in kind_errors:
            error.kind = error.kind or kind.name
        errors += kind_errors
    for item in items:
        _authorize(kinds, item, loaded.policy)
    return Plan(loaded.sha256, items, errors)


def _authorize(kinds: Kinds, item: PlanItem, policy: Policy) -> None:
    """What apply would refuse for want of one rule (two rules mapping the same repositories) shows
    as a refusal in the plan already."""
    if item.changes:
        try:
            kind_of(kinds, item).authorize(item, policy)
        except VerificationError as exc:
            item.action, item.reason = "refuse", exc.reason
