"""Which conda rule covers a plan item, found from the policy alone (a saved plan may only narrow it)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from regsync.errors import VerificationError
from regsync.kinds.conda.names import split_ref
from regsync.pipeline.rules import NOT_ALLOWED
from regsync.kinds.conda.policy import CondaRule, CondaSection
from regsync.policy.models import Policy

if TYPE_CHECKING:
    from rattler import RepoDataRecord


def conda_rules_for(policy: Policy, source: str, target: str) -> list[tuple[str, CondaRule]]:
    """[('conda[N]', rule)] of every rule that maps source's channel and subdir to target's, file name
    unchanged; raises VerificationError when none does. Several rules may share a channel pair (one
    per stack, say): a file is admitted when any of them admits it."""
    try:
        src_channel, subdir, filename = split_ref(source)
        dst_channel, dst_subdir, dst_filename = split_ref(target)
    except ValueError as exc:
        raise VerificationError(f"{NOT_ALLOWED}: {exc}") from None
    if (dst_subdir, dst_filename) != (subdir, filename):
        raise VerificationError(f"{NOT_ALLOWED}: {target} is not {source} under the same subdir and file name")
    found = [(f"conda[{n}]", rule) for n, rule in enumerate(CondaSection.of(policy).conda)
             if src_channel in rule.sources and rule.target == dst_channel
             and (subdir == "noarch" or subdir in rule.platforms)]
    if not found:
        raise VerificationError(f"{NOT_ALLOWED}: no conda rule maps {src_channel}/{subdir} to {dst_channel}")
    return found


def admit_record(rules: list[tuple[str, CondaRule]], record: RepoDataRecord, in_closure: Callable[[CondaRule], bool]) -> str:
    """The name of a rule that admits `record` (a rattler record, as the channel lists it now): one
    whose closure, solved again from the policy (`in_closure(rule)`), holds this very file, or one
    whose specs match it (rattler's own MatchSpec.matches). A saved plan only narrows the policy."""
    from rattler import MatchSpec

    for name, rule in rules:
        if not rule.dependencies and any(MatchSpec(spec).matches(record) for spec in rule.specs):
            return name
    for name, rule in rules:
        if rule.dependencies and in_closure(rule):
            return name
    closures = [s for _, r in rules if r.dependencies for s in r.specs]
    matching = [s for _, r in rules if not r.dependencies for s in r.specs]
    what = " and ".join(part for part in (
        f"is in no closure the policy solves for {closures}" if closures else "",
        f"matches none of the specs {matching}" if matching else "") if part)
    raise VerificationError(f"{NOT_ALLOWED}: {record.file_name} {what}")


def describe(rule: CondaRule) -> str:
    """One line for `policy check`."""
    hosts = "; ".join(" ".join(f"{k}={v}" for k, v in found.items()) or "no virtual packages"
                      for found in rule.virtual_packages)
    what = f"closure for {hosts}" if rule.dependencies else "matching records only"
    if rule.weak_digests == "allow":
        what += "; md5-only records verified by md5 and size"
    verify = f"; attestations {rule.verify.attestations}, trust {', '.join(rule.verify.trust)}" \
        if rule.verify.attestations != "off" else ""
    return (f"{', '.join(rule.sources)} -> {rule.target}  [{', '.join(rule.specs)}]; "
            f"{', '.join(rule.platforms)} + noarch; {what}{verify}")
