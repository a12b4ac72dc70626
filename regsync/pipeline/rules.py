"""A saved plan is what a reviewer approved: it may only narrow what the policy allows, never widen it.

So apply never takes a plan item's word for which rule covers it. The rule is found in the policy
from the item's source and target (the plan's `rule` field is ignored), and the item must be one
that rule could have planned: same tag or file name on both sides, a tag the rule selects, the
rule's platform filter, its pins, and for packages a file its requirements and environments admit.
These checks need no network; the ones that do (signatures, gates, cross-checks, the index's
sha256) are run again by each kind's transfer against the rule found here. Each kind finds its rule
(Kind.authorize); what they share is here.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeVar

from regsync.errors import VerificationError

R = TypeVar("R")  # a kind's rule model (ImageRule, PackageRule, …)

NOT_ALLOWED = "not allowed by the policy"


def the_one(found: list[tuple[str, R]], none: str, several: str) -> tuple[str, R]:
    """The single (name, rule) found; refused when none or several rules match."""
    if len(found) != 1:
        raise VerificationError(f"{NOT_ALLOWED}: {several if found else none}")
    return found[0]


def rule_named(rules: Sequence[R], section: str, rule_name: str) -> R:
    """'images[3]' (section 'images') → rules[3]. At apply time the name is the one authorize found
    in the policy for the item's source and target, never the plan's word."""
    try:
        if not rule_name.startswith(f"{section}["):
            raise ValueError(rule_name)
        return rules[int(rule_name.removeprefix(f"{section}[").rstrip("]"))]
    except (ValueError, IndexError):
        raise VerificationError(f"the plan names rule '{rule_name}', which the policy does not have") from None
