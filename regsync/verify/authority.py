"""A saved plan is what a reviewer approved: it may only narrow what the policy allows, never widen it.

So apply never takes a plan item's word for which rule covers it. The rule is found in the policy
from the item's source and target (the plan's `rule` field is ignored), and the item must be one
that rule could have planned: same tag or file name on both sides, a tag the rule selects, the
rule's platform filter, its pins, and for packages a file its requirements and environments admit.
These checks need no network; the ones that do (signatures, gates, cross-checks, the index's
sha256) are run again by verify.steps and pypi.push against the rule found here.
"""

from __future__ import annotations

import re

from packaging.utils import canonicalize_name
from packaging.version import Version

from regsync.conda.rules import conda_rules_for
from regsync.endpoints import split_ref
from regsync.errors import VerificationError
from regsync.plan import PlanItem
from regsync.policy.models import ImageRule, PackageRule, Policy
from regsync.pypi.index import parse_file_name
from regsync.resolve.tags import select_tags

NOT_ALLOWED = "not allowed by the policy"
_TAG = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,127}")  # the OCI distribution spec's tag grammar
_DIGEST = re.compile(r"sha256:[0-9a-f]{64}|sha512:[0-9a-f]{128}")


def authorize(item: PlanItem, policy: Policy) -> ImageRule | PackageRule:
    """The policy's rule for this item, after setting `item.rule` to its name (or "" when none).

    Raises VerificationError when the policy would not plan this item as it stands.
    """
    item.rule = ""
    if item.kind == "image":
        name, rule = image_rule_for(policy, item.source, item.target)
        item.rule = name
        _admit_image(item, rule)
    elif item.kind == "package":
        name, rule = package_rule_for(policy, item.source, item.target)
        item.rule = name
    elif item.kind == "conda":
        name, rule = conda_rules_for(policy, item.source, item.target)[0]
        item.rule = name
    else:
        raise VerificationError(f"{NOT_ALLOWED}: unknown kind of artifact '{item.kind}'")
    return rule


def image_rule_for(policy: Policy, source: str, target: str) -> tuple[str, ImageRule]:
    """('images[N]', rule) for the one rule mapping source's repository to target's, tag unchanged."""
    src_path, _, tag = source.rpartition(":")
    dst_path, _, dst_tag = target.rpartition(":")
    if not _TAG.fullmatch(tag) or dst_tag != tag:
        raise VerificationError(f"{NOT_ALLOWED}: {target} is not {source} under the same tag")
    found = [(f"images[{n}]", rule) for n, rule in enumerate(policy.images)
             if rule.source == src_path and rule.target == dst_path]
    return _the_one(found, f"no image rule maps {src_path} to {dst_path}",
                    f"{len(found)} rules map {src_path} to {dst_path}, so which one decides is ambiguous")


def package_rule_for(policy: Policy, source: str, target: str) -> tuple[str, PackageRule]:
    """('packages[N]', rule) for the one rule mapping source's index to target's, file name unchanged."""
    src_index, _, filename = source.partition("/")
    dst_index, _, dst_filename = target.partition("/")
    if not filename or "/" in filename or dst_filename != filename:
        raise VerificationError(f"{NOT_ALLOWED}: {target} is not {source} under the same file name")
    found = [(f"packages[{n}]", rule) for n, rule in enumerate(policy.packages)
             if rule.source == src_index and rule.target == dst_index]
    return _the_one(found, f"no package rule maps index {src_index} to {dst_index}",
                    f"{len(found)} rules map index {src_index} to {dst_index}, so which one decides is ambiguous")


def _the_one(found: list, none: str, several: str):
    if len(found) != 1:
        raise VerificationError(f"{NOT_ALLOWED}: {several if found else none}")
    return found[0]


def _admit_image(item: PlanItem, rule: ImageRule) -> None:
    tag = item.source.rpartition(":")[2]
    select = rule.tags
    # `latest: N` is left out: which N tags are newest needs the source's tag listing (and creation
    # times), which is re-resolving, and a saved plan is applied without that. Include and exclude
    # still bound it: a plan cannot name a tag the rule would never consider.
    if select_tags([tag], select.include, select.exclude) != [tag]:
        raise VerificationError(f"{NOT_ALLOWED}: tag {tag} is outside the tag selection of {rule.source}")
    if item.platforms != rule.platforms:
        raise VerificationError(f"{NOT_ALLOWED}: the plan filters platforms {item.platforms}, "
                                f"the policy's rule for {rule.source} {rule.platforms}")
    for digest in (item.digest, item.source_digest):
        if digest is not None and not _DIGEST.fullmatch(digest):
            raise VerificationError(f"{NOT_ALLOWED}: '{digest}' is not a digest")
    if not rule.platforms and item.source_digest not in (None, item.digest):
        raise VerificationError(f"{NOT_ALLOWED}: without a platform filter the pushed digest is the source's, "
                                f"but the plan names {item.source_digest} and {item.digest}")
    pinned = select.pin.get(tag)
    source_digest = item.source_digest or item.digest
    if pinned and pinned != source_digest:
        raise VerificationError(f"pinned to {pinned} but the plan says {source_digest}")


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
    from regsync.pypi.environment import rule_environments
    from regsync.pypi.resolver import Options, allows_prereleases, best_file, exactly_pinned, parse_requirement

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
