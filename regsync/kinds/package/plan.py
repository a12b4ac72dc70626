"""Package rules → plan items: resolve each environment's closure, then diff files against the target.

Read-only: only index pages and metadata are read (PEP 658 files, or a wheel where an index offers
none); nothing is uploaded.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

from loguru import logger
from pypi_simple import DistributionPackage

from regsync.endpoints import Endpoints
from regsync.errors import RegistryError, VerificationError
from regsync.kinds.package.item import PackageDetails
from regsync.pipeline.plan import PlanError, PlanItem, details_of
from regsync.kinds.package.policy import PackageRule
from regsync.kinds.package.environment import TargetEnvironment, rule_environments
from regsync.kinds.package.fetch import kept_size
from regsync.kinds.package.ref import project_of, public_url, sha256_of
from regsync.kinds.package.closure import closures_of, rule_inputs
from regsync.kinds.package.resolver import ResolutionError, resolve
from regsync.pipeline.shard import Shard
from regsync.kinds.package.evidence import check_provenance
from regsync.kinds.package.clients import package_target, source_index


def plan_packages(rules: list[PackageRule], endpoints: Endpoints, jobs: int = 8,
                  shard: Shard | None = None) -> tuple[list[PlanItem], list[PlanError]]:
    """Resolution runs whole on every shard (a closure cannot be split); per-file work, such as
    provenance checks, only for the files this shard owns."""
    items: dict[tuple[str, str], PlanItem] = {}
    errors: list[PlanError] = []
    to_check: list[tuple[PlanItem, PackageRule]] = []
    unsized: list[tuple[PlanItem, object, object]] = []  # (item, index, file) the page gave no size for
    closures = closures_of(endpoints)
    for number, rule in enumerate(rules):
        rule_name = f"packages[{number}]"
        index, target = source_index(endpoints, rule.source), package_target(endpoints, rule.target)
        requirements, constraints, options = rule_inputs(rule, rule_name)
        for env in rule_environments(rule):
            refused: dict[str, Any] = {}
            try:
                closure = resolve(index, requirements, env, options, rule.dependencies, constraints, refused)
            except (ResolutionError, RegistryError, VerificationError) as exc:
                errors.append(_resolution_error(rule, rule_name, exc, refused))
                closures.record(rule_name, env, exc)
                closure = []
            else:
                closures.record(rule_name, env, closure)  # apply, in this run, admits from it
            for package, why in refused.values():  # failed its hash while read for metadata
                key = (rule.target, package.filename)
                if key not in items:
                    items[key] = _item(package, rule, rule_name, env, target, index)
                    items[key].action, items[key].reason = "refuse", why
            if not closure:
                continue
            logger.info("{} for {}: {} file(s)", rule.source, env.label, len(closure))
            for candidate in closure:
                key = (rule.target, candidate.file.filename)
                if key in items:
                    known = details_of(items[key], PackageDetails).environments
                    assert known is not None, "_item gives every package item its environments"
                    known.append(env.label)
                    continue
                items[key] = _item(candidate.file, rule, rule_name, env, target, index)
                if items[key].changes:
                    to_check.append((items[key], rule))
                    if not items[key].bytes:
                        unsized.append((items[key], index, candidate.file))

    def owned(item: PlanItem) -> bool:
        return shard is None or shard.owns(item.target)

    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:  # one small GET each: latency-bound
        list(pool.map(lambda pair: _check_provenance(pair[0], pair[1], endpoints),
                      [pair for pair in to_check if owned(pair[0])]))
        list(pool.map(_measure, [entry for entry in unsized if owned(entry[0])]))
    for item, rule in to_check:
        if owned(item) and item.changes and rule.gates is not None and rule.gates.vulnerabilities is not None:
            check_vulnerabilities(item, rule, endpoints)
    return [item for item in items.values() if owned(item)], errors


def _measure(entry: tuple[PlanItem, Any, DistributionPackage]) -> None:
    """A HEAD for the size a simple page (PEP 503 HTML) does not give, so the plan's total is true."""
    item, index, package = entry
    item.bytes = index.size_of(package) or 0


def _resolution_error(rule: PackageRule, rule_name: str, exc: Exception, refused: dict[str, Any]) -> PlanError:
    """A closure that cannot be resolved because verification refused candidates (tampered bytes) is
    a security refusal (exit 3) naming them; without refusals it is a runtime failure (exit 1)."""
    source = f"{rule.source}: {', '.join(rule.requirements)}"
    if isinstance(exc, ResolutionError) and refused:  # the resolver's message names the refused files
        return PlanError(source, f"refused by verification: {exc}", rule_name, refused=True)
    return PlanError(source, str(exc), rule_name)


def check_vulnerabilities(item: PlanItem, rule: PackageRule, endpoints: Endpoints) -> None:
    """The rule's vulnerability gate on the file (docs/vulnerabilities.md): a refusal names the ids,
    the package and the fixed version; every match goes into the item's evidence either way."""
    from regsync.vulns.files import gate_python_file
    from regsync.vulns.gate import VulnerabilityRefusal

    assert rule.gates is not None and rule.gates.vulnerabilities is not None, "called for a rule with the gate"
    try:
        evidence = gate_python_file(endpoints, rule.gates.vulnerabilities, item.source.split("/", 1)[1])
    except VulnerabilityRefusal as exc:
        item.action, item.reason, evidence = "refuse", exc.reason, exc.evidence
    item.verification = {**(item.verification or {}), "vulnerabilities": evidence}


def _check_provenance(item: PlanItem, rule: PackageRule, endpoints: Endpoints) -> None:
    """Metadata only (one small GET, verified offline), so refusals show in the plan as image gates do;
    apply checks again, because a saved plan may be old."""
    filename = item.source.split("/", 1)[1]
    try:
        evidence = check_provenance(rule, endpoints, filename, item.digest)
    except VerificationError as exc:
        item.action, item.reason = "refuse", exc.reason
        return
    except RegistryError as exc:  # an outage is not a refusal: apply will try again (and fail if it must)
        logger.warning("{}: provenance not checked at plan time: {}", filename, exc)
        return
    if evidence is not None:
        item.verification = {"provenance": evidence}


# index and target: PackageIndex, MirroredIndex, a sink or a bundle's stand-ins (no declared interface yet)
def _item(package: DistributionPackage, rule: PackageRule, rule_name: str, env: TargetEnvironment, target: Any,
          index: Any) -> PlanItem:
    digest = sha256_of(package) or ""
    # source_index: None from a bundle's stand-in, which has no pages
    details = PackageDetails([env.label], index.page_url(package), project_of(package))
    item = PlanItem("package", f"{rule.source}/{package.filename}", f"{rule.target}/{package.filename}", digest,
                    "copy", bytes=package.size or kept_size(index, package) or 0, rule=rule_name, details=details)
    if details.source_index is not None and details.source_index != public_url(index.url):
        item.reason = f"sha256 from mirror {details.source_index} (the primary did not answer)"
    if not digest:
        item.action, item.reason = "refuse", "the source index gives no sha256 for this file"
        return item
    present = target.existing(details.project).get(package.filename, "absent")
    if present == digest:
        item.action, item.reason, item.bytes = "skip", "already on the target", 0
    elif present != "absent":
        item.action = "refuse"
        item.reason = f"the target has {package.filename} with {present or 'an unknown hash'}; never overwritten"
    return item
