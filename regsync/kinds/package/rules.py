"""Which package rule of the policy covers a plan item, and whether the closure it resolves to holds the file."""

from __future__ import annotations

from typing import Any

from packaging.version import Version
from pypi_simple import DistributionPackage

from regsync.endpoints import Endpoints
from regsync.errors import VerificationError
from regsync.kinds.package.closure import closures_of
from regsync.content.python_names import parse_file_name
from regsync.pipeline.plan import PlanItem
from regsync.pipeline.rules import NOT_ALLOWED, rule_named, the_one
from regsync.kinds.package.policy import PackageRule, PackageSection
from regsync.policy.models import Policy


def authorize_package(item: PlanItem, policy: Policy) -> PackageRule:
    """The policy's rule for this package item, after setting `item.rule` to its name (or "" when none)."""
    item.rule = ""
    name, rule = package_rule_for(policy, item.source, item.target)
    item.rule = name
    return rule


def rule_of(policy: Policy, rule_name: str) -> PackageRule:
    """'packages[2]' → that rule of the policy (the name authorize found, never the plan's word)."""
    return rule_named(PackageSection.of(policy).packages, "packages", rule_name)


def package_rule_for(policy: Policy, source: str, target: str) -> tuple[str, PackageRule]:
    """('packages[N]', rule) for the one rule mapping source's index to target's, file name unchanged."""
    src_index, _, filename = source.partition("/")
    dst_index, _, dst_filename = target.partition("/")
    if not filename or "/" in filename or dst_filename != filename:
        raise VerificationError(f"{NOT_ALLOWED}: {target} is not {source} under the same file name")
    found = [(f"packages[{n}]", rule) for n, rule in enumerate(PackageSection.of(policy).packages)
             if rule.source == src_index and rule.target == dst_index]
    return the_one(found, f"no package rule maps index {src_index} to {dst_index}",
                    f"{len(found)} rules map index {src_index} to {dst_index}, so which one decides is ambiguous")


# index: PackageIndex, MirroredIndex or a bundle's stand-in (no declared interface for them yet)
def admit_package(rule_name: str, rule: PackageRule, package: DistributionPackage, endpoints: Endpoints,
                  index: Any) -> None:
    """The file, as the source index lists it now, belongs to the closure the rule resolves to (for
    `dependencies: false`, the files its requirements select) in one of its environments; raises
    VerificationError otherwise. The closure is the one this run resolved, or is re-derived once
    per rule and environment for a saved plan (kinds/package/closure.py): a plan edited to add a
    project no requirement of the policy leads to (`backdoor`, with its real sha256) is refused."""
    _name_and_version(package.filename)
    closures_of(endpoints).admit(rule_name, rule, index, package)


def _name_and_version(filename: str) -> tuple[str, Version]:
    try:
        return parse_file_name(filename)
    except ValueError:
        raise VerificationError(f"{NOT_ALLOWED}: {filename} is not a wheel or sdist file name") from None
