"""Which image rule of the policy covers a plan item, and whether that rule admits it (no network).

A saved plan may only narrow what the policy allows: the rule is found from the item's source and
target repositories, and the tag, platforms, digests and pins must be ones it could have planned.
"""

from __future__ import annotations

import re

from regsync.errors import VerificationError
from regsync.policy.names import is_tag
from regsync.kinds.image.tags import select_tags
from regsync.kinds.image.item import ImageDetails
from regsync.pipeline.plan import PlanItem, details_of
from regsync.pipeline.rules import NOT_ALLOWED, rule_named, the_one
from regsync.kinds.image.policy import ImageRule, ImageSection
from regsync.policy.models import Policy

_DIGEST = re.compile(r"sha256:[0-9a-f]{64}|sha512:[0-9a-f]{128}")


def authorize_image(item: PlanItem, policy: Policy) -> ImageRule:
    """The policy's rule for this image item, after setting `item.rule` to its name (or "" when none)."""
    item.rule = ""
    name, rule = image_rule_for(policy, item.source, item.target)
    item.rule = name
    _admit_image(item, rule)
    return rule


def rule_of(policy: Policy, rule_name: str) -> ImageRule:
    """'images[3]' → that rule of the policy (the name authorize found, never the plan's word)."""
    return rule_named(ImageSection.of(policy).images, "images", rule_name)


def image_rule_for(policy: Policy, source: str, target: str) -> tuple[str, ImageRule]:
    """('images[N]', rule) for the one rule mapping source's repository to target's, tag unchanged."""
    src_path, _, tag = source.rpartition(":")
    dst_path, _, dst_tag = target.rpartition(":")
    if not is_tag(tag) or dst_tag != tag:
        raise VerificationError(f"{NOT_ALLOWED}: {target} is not {source} under the same tag")
    found = [(f"images[{n}]", rule) for n, rule in enumerate(ImageSection.of(policy).images)
             if rule.source == src_path and rule.target == dst_path]
    return the_one(found, f"no image rule maps {src_path} to {dst_path}",
                    f"{len(found)} rules map {src_path} to {dst_path}, so which one decides is ambiguous")


def _admit_image(item: PlanItem, rule: ImageRule) -> None:
    tag = item.source.rpartition(":")[2]
    select = rule.tags
    # `latest: N` is left out: which N tags are newest needs the source's tag listing (and creation
    # times), which is re-resolving, and a saved plan is applied without that. Include and exclude
    # still bound it: a plan cannot name a tag the rule would never consider.
    if select_tags([tag], select.include, select.exclude) != [tag]:
        raise VerificationError(f"{NOT_ALLOWED}: tag {tag} is outside the tag selection of {rule.source}")
    platforms = details_of(item, ImageDetails).platforms
    if platforms != rule.platforms:
        raise VerificationError(f"{NOT_ALLOWED}: the plan filters platforms {platforms}, "
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
