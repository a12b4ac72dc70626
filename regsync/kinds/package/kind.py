"""Python packages as a Kind (regsync/pipeline/kind.py; docs/architecture.md, "The Kind protocol")."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from regsync.audit.evidence import AlreadyThere, Evidence
from regsync.pipeline.kind import BundleSink, Run
from regsync.kinds.package.item import PackageDetails
from regsync.pipeline.plan import PlanError, PlanItem
from regsync.kinds.package.policy import PackageRule, PackageSection
from regsync.kinds.package.section import PackagePolicy
from regsync.kinds.package.source import PackageTarget

if TYPE_CHECKING:
    from regsync.content.layout import LayoutBlobs
    from regsync.endpoints import Endpoints
    from regsync.kinds.package.source import PackageSource
    from regsync.pipeline.shard import Shard
    from regsync.policy.models import Policy

# The package modules (pypi-simple, BeautifulSoup, packaging) are imported by the methods that use
# them: a run with no package rule never loads them (issue 16, start-up).


class PackageKind:
    name = "package"
    section = PackagePolicy()   # its keys of the policy (regsync.policy.section)
    bundle_section = "packages"

    def plan(self, policy: Policy, endpoints: Endpoints, jobs: int, shard: Shard | None,
             diff_target: bool) -> tuple[list[PlanItem], list[PlanError]]:
        packages = PackageSection.of(policy).packages
        if not packages:
            return [], []
        from regsync.kinds.package.plan import plan_packages

        return plan_packages(list(packages), endpoints, jobs, shard)

    def authorize(self, item: PlanItem, policy: Policy) -> PackageRule:
        from regsync.kinds.package.rules import authorize_package

        return authorize_package(item, policy)

    def read_details(self, fields: dict[str, Any]) -> PackageDetails:
        return PackageDetails.read(fields)

    def check_names(self, item: PlanItem) -> None:
        """File names are checked against the index's listing when applied (planned_file)."""

    def is_stale(self, item: PlanItem, endpoints: Endpoints) -> str | None:
        """Never stale: a file is never overwritten on the target, and its sha256 is checked against
        the index again when applied (there is no tag that could have moved); a file the target
        already holds is found by transfer (AlreadyThere). Its version is noted for its rule's
        closure, re-derived at apply."""
        from regsync.kinds.package.closure import closures_of

        closures_of(endpoints).prefer(item.source, item.target)
        return None

    def transfer(self, item: PlanItem, run: Run) -> Evidence | AlreadyThere:
        # a wheel is one more artifact: same pool, same verification rule, same audit records
        from regsync.kinds.package.transfer import apply_package

        return apply_package(item, run.endpoints, run.on_bytes, lambda evidence: run.verified(item, evidence))

    def export(self, item: PlanItem, run: Run, sink: BundleSink) -> Evidence:
        from regsync.kinds.package.bundle import export_package

        entry = export_package(item, run.endpoints, sink.writer, run.on_bytes)
        sink.add_entry(item, self.bundle_section, entry)
        return Evidence(method="sha256", against=f"{entry['index']} index")

    def export_sizes(self, item: PlanItem, endpoints: Endpoints, leave_out: frozenset[str]) -> list[int]:
        return [item.bytes]

    def targets(self, policy: Policy) -> set[str]:
        return {rule.target for rule in PackageSection.of(policy).packages}

    def export_stand_ins(self, policy: Policy) -> dict[str, PackageTarget]:
        # package targets are across the gap: export plans every selected file as absent there
        from regsync.kinds.package.bundle import NoTarget
        from regsync.kinds.package.clients import target_key

        return {target_key(rule.target): NoTarget(rule.target) for rule in PackageSection.of(policy).packages}

    def bundle_sources(self, bundle: dict[str, Any], policy: Policy,
                       layout_for: Callable[[str], LayoutBlobs]) -> dict[str, PackageSource]:
        from regsync.kinds.package.bundle import index_stand_ins

        return index_stand_ins(bundle.get(self.bundle_section), policy, layout_for("packages"))

    def verifies_without_bundle(self, rule: PackageRule) -> bool:
        verify = rule.verify  # a PEP 740 attestation binds the file's sha256 to its publisher
        return verify.attestations == "required" or any(a.mode == "required" for a in verify.require_attestations)
