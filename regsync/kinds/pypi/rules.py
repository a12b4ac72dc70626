"""Which package rule of the policy covers a plan item, and whether its requirements admit the file."""

from __future__ import annotations

from packaging.utils import canonicalize_name
from packaging.version import Version

from regsync.errors import VerificationError
from regsync.kinds.pypi.environment import rule_environments
from regsync.kinds.pypi.ref import parse_file_name
from regsync.kinds.pypi.resolver import Options, allows_prereleases, best_file, exactly_pinned, parse_requirement
from regsync.pipeline.plan import PlanItem
from regsync.pipeline.rules import NOT_ALLOWED, rule_named, the_one
from regsync.policy.models import PackageRule, Policy


def authorize_package(item: PlanItem, policy: Policy) -> PackageRule:
    """The policy's rule for this package item, after setting `item.rule` to its name (or "" when none)."""
    item.rule = ""
    name, rule = package_rule_for(policy, item.source, item.target)
    item.rule = name
    return rule


def rule_of(policy: Policy, rule_name: str) -> PackageRule:
    """'packages[2]' → that rule of the policy (the name authorize found, never the plan's word)."""
    return rule_named(policy.packages, "packages", rule_name)


def package_rule_for(policy: Policy, source: str, target: str) -> tuple[str, PackageRule]:
    """('packages[N]', rule) for the one rule mapping source's index to target's, file name unchanged."""
    src_index, _, filename = source.partition("/")
    dst_index, _, dst_filename = target.partition("/")
    if not filename or "/" in filename or dst_filename != filename:
        raise VerificationError(f"{NOT_ALLOWED}: {target} is not {source} under the same file name")
    found = [(f"packages[{n}]", rule) for n, rule in enumerate(policy.packages)
             if rule.source == src_index and rule.target == dst_index]
    return the_one(found, f"no package rule maps index {src_index} to {dst_index}",
                    f"{len(found)} rules map index {src_index} to {dst_index}, so which one decides is ambiguous")


def admit_package(rule: PackageRule, package) -> None:
    """The file, as the source index lists it now, is one the rule's requirements and environments
    admit; raises VerificationError otherwise.

    With `dependencies: false` this is the resolver's own test: a requirement (its marker true for
    an environment) names the project and admits the version, and the file is one pip could install
    there. With `dependencies: true` the closure is not resolved again (a full resolution per
    environment, against an index that may have moved on since the plan); what is checked is what
    holds for every file of any closure: it fits an environment, meets the constraints, and meets
    the rule's own requirement on its project when there is one. Hashes and provenance are verified
    again as always, so a file of the right project can still only be bytes its index vouches for.
    """
    project, version = _name_and_version(package.filename)
    options = Options(rule.sdists, frozenset(canonicalize_name(n) for n in rule.only_binary))
    requirements = [parse_requirement(text, "requirements") for text in rule.requirements]
    constraints = [c.specifier for c in (parse_requirement(text, "constraints") for text in rule.constraints)
                   if canonicalize_name(c.name) == project]
    for env in rule_environments(rule):
        named = [r for r in requirements if canonicalize_name(r.name) == project
                 and (r.marker is None or r.marker.evaluate(dict(env.markers, extra="")))]
        if not named and not rule.dependencies:
            continue
        specifiers = [r.specifier for r in named] + constraints
        # a dependency's own requirement may name a pre-release or pin exactly: unknown without resolving
        prereleases = rule.dependencies or allows_prereleases(specifiers)
        if not all(spec.contains(version, prereleases=prereleases) for spec in specifiers):
            continue
        if best_file([package], env, options, rule.dependencies or exactly_pinned(named)) is not None:
            return
    raise VerificationError(f"{NOT_ALLOWED}: {package.filename} is not a file the requirements "
                            f"{rule.requirements} select for any of the rule's environments")


def _name_and_version(filename: str) -> tuple[str, Version]:
    try:
        return parse_file_name(filename)
    except ValueError as exc:
        raise VerificationError(f"{NOT_ALLOWED}: {exc}") from None
