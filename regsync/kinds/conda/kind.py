"""Conda packages as a Kind (regsync/pipeline/kind.py; docs/architecture.md, "The Kind protocol").

Clients are the run's Endpoints under `channel:<name>` (a source channel, a target channel, or an
air-gap bundle's stand-in for a source), and `conda:channels` for the rattler Gateway they share."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from regsync.audit.evidence import AlreadyThere, Evidence
from regsync.errors import InvalidName
from regsync.kinds.conda.channel import channels_of
from regsync.kinds.conda.bundle import conda_stand_ins, export_conda
from regsync.kinds.conda.names import check_item
from regsync.kinds.conda.plan import plan_conda
from regsync.kinds.conda.rules import conda_rules_for
from regsync.kinds.conda.targets import RunListings
from regsync.kinds.conda.transfer import apply_conda
from regsync.pipeline.kind import BundleSink, Run
from regsync.kinds.conda.item import CondaDetails
from regsync.pipeline.plan import PlanError, PlanItem
from regsync.kinds.conda.policy import CondaRule, CondaSection
from regsync.kinds.conda.section import CondaPolicy

if TYPE_CHECKING:
    from regsync.content.layout import LayoutBlobs
    from regsync.endpoints import Endpoints
    from regsync.kinds.conda.source import CondaSource
    from regsync.pipeline.shard import Shard
    from regsync.policy.models import Policy


class CondaKind:
    name = "conda"
    section = CondaPolicy()   # its keys of the policy (regsync.policy.section)
    bundle_section = "conda"

    def plan(self, policy: Policy, endpoints: Endpoints, jobs: int, shard: Shard | None,
             diff_target: bool) -> tuple[list[PlanItem], list[PlanError]]:
        if not CondaSection.of(policy).conda:
            return [], []
        return plan_conda(endpoints, shard, diff_target)

    def authorize(self, item: PlanItem, policy: Policy) -> CondaRule:
        name, rule = conda_rules_for(policy, item.source, item.target)[0]
        item.rule = name
        return rule

    def read_details(self, fields: dict[str, Any]) -> CondaDetails:
        return CondaDetails.read(fields)

    def check_names(self, item: PlanItem) -> None:
        try:
            check_item(item.source, item.target, item.digest)
        except ValueError as exc:
            raise InvalidName(str(exc)) from None

    def is_stale(self, item: PlanItem, endpoints: Endpoints) -> str | None:
        """A file is never overwritten: apply refuses one the target has since listed with other bytes
        (a refusal of that item, not a stale plan), and lists a patched record anew."""
        return None

    def transfer(self, item: PlanItem, run: Run) -> Evidence | AlreadyThere:
        # a conda package is one more artifact: same pool, same verification rule, same audit records;
        # its record is listed when the run's transfers are over (RunListings: one rewrite per listing)
        listings = run.state("conda:listings", lambda: RunListings(channels_of(run.endpoints).target))
        result = apply_conda(item, run.endpoints, run.on_bytes, lambda evidence: run.verified(item, evidence))
        if isinstance(result, Evidence):
            listings.expect(item)
        return result

    def export(self, item: PlanItem, run: Run, sink: BundleSink) -> Evidence:
        entry, _ = export_conda(item, run.endpoints, sink.writer, run.on_bytes)
        sink.add_entry(item, self.bundle_section, entry)
        return Evidence(method="sha256", against=f"{entry['channel']}/{entry['subdir']}/repodata.json")

    def export_sizes(self, item: PlanItem, endpoints: Endpoints, leave_out: frozenset[str]) -> list[int]:
        return [item.bytes]

    def targets(self, policy: Policy) -> set[str]:
        return {rule.target for rule in CondaSection.of(policy).conda}

    def export_stand_ins(self, policy: Policy) -> dict[str, Any]:
        """None: export plans without reading the target channels (plan_conda, diff_target=False)."""
        return {}

    def bundle_sources(self, bundle: dict[str, Any], policy: Policy,
                       layout_for: Callable[[str], LayoutBlobs]) -> dict[str, CondaSource]:
        return conda_stand_ins(bundle.get(self.bundle_section), policy, layout_for("conda"))

    def verifies_without_bundle(self, rule: CondaRule) -> bool:
        # the attestation binds the file's sha256, never the record: a record's depends stay the bundle's word
        return rule.verify.attestations == "required"
