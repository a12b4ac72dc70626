"""The approval check `sync --plan` and `import --plan` run before anything is touched, and the
`plan approve` verb's signing: a plan counts as approved when `approval.required` distinct keys of
`approval.trust` signed its exact bytes, it was made from the policy in force, and it is younger
than `approval.max_age`."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path

from regsync.approvals.signatures import Seen, describe, examine, read_plan_bytes, write_approval
from regsync.errors import UsageError
from regsync.pipeline.plan import ItemReader, Plan
from regsync.policy import LoadedPolicy, load_policy
from regsync.policy.section import Sections
from regsync.times import format_duration, parse_time
from regsync.trust.keys import PublicKey, fingerprint, load_entry_key

# A plan stamped later than this is refused: a future `created` would stretch max_age.
CLOCK_SKEW = timedelta(minutes=5)


class NotApproved(UsageError):
    """The plan lacks what approval: demands (exit 2: nothing was touched)."""


@dataclass
class Verdict:
    plan: Plan
    plan_sha256: str
    seen: list[Seen]
    approvers: list[PublicKey] = field(default_factory=list)   # distinct keys, in approval.trust order
    missing: list[str] = field(default_factory=list)           # approval.trust entries that did not sign
    expires: datetime | None = None

    def evidence(self, loaded: LoadedPolicy) -> dict:
        """The audit record's `verification` for the approvals a run applied."""
        return {"method": "cosign-key approvals", "required": loaded.policy.approval.required,
                "plan_sha256": self.plan_sha256, "policy_sha256": self.plan.policy_sha256,
                "plan_created": self.plan.created, "expires": _stamp(self.expires),
                "approvers": [{"trust": key.name, "key_fingerprint": key.fingerprint, "algorithm": key.algorithm}
                              for key in self.approvers]}


class _Reviewing(dict):
    """The environment while reviewing: `plan approve` and `plan show` read the policy's approval:
    section and its keys only, so the targets' passwords need not be set on a reviewer's machine."""

    def __contains__(self, name):
        return True

    def __missing__(self, name):
        return "not-needed-for-review"


def load_for_review(policy_path: Path, sections: Sections) -> LoadedPolicy:
    """`sections`: the kinds' parts of the policy (regsync.kinds.registry.SECTIONS)."""
    return load_policy(policy_path, environ=_Reviewing(os.environ), sections=sections)


def trusted_keys(loaded: LoadedPolicy) -> list[PublicKey]:
    policy = loaded.policy
    return [load_entry_key(name, policy.trust[name].cosign_key) for name in dict.fromkeys(policy.approval.trust)]


def parse_plan(data: bytes, plan_path: Path, kinds: Mapping[str, ItemReader]) -> Plan:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise UsageError(f"{plan_path}: not a regsync plan (not UTF-8 text)") from None
    return Plan.from_json(text, str(plan_path), kinds)


def judge(plan_path: Path, data: bytes, plan: Plan, loaded: LoadedPolicy) -> Verdict:
    """Who approved these plan bytes, who is missing, and until when it holds (no decision here)."""
    keys = trusted_keys(loaded)
    seen = examine(plan_path, data, keys)
    signed = {found.signer.fingerprint for found in seen if found.signer is not None}
    verdict = Verdict(plan, hashlib.sha256(data).hexdigest(), seen)
    for key in keys:
        if key.fingerprint in signed:
            signed.discard(key.fingerprint)   # two entries holding one key are one approver
            verdict.approvers.append(key)
        elif all(key.fingerprint != other.fingerprint for other in verdict.approvers):
            verdict.missing.append(key.name)
    max_age = loaded.policy.approval.max_age
    if max_age is not None:
        verdict.expires = _created(plan, plan_path) + timedelta(seconds=max_age)
    return verdict


def load_approved(plan_path: Path, loaded: LoadedPolicy, kinds: Mapping[str, ItemReader], audit=None,
                  now: datetime | None = None) -> Plan:
    """The saved plan, parsed from the very bytes its approvals were checked over; NotApproved
    (exit 2) naming who signed and who is missing when approval: is not met. With `audit`, the
    approvers are recorded (a `verified` record for the plan)."""
    data = read_plan_bytes(plan_path)
    plan = parse_plan(data, plan_path, kinds)
    verdict = judge(plan_path, data, plan, loaded)
    refuse_unless_approved(verdict, plan_path, loaded, now)
    if audit is not None and verdict.approvers:
        names = ", ".join(key.name for key in verdict.approvers)
        audit.event("verified", artifact={"plan": str(plan_path), "digest": "sha256:" + verdict.plan_sha256},
                    verification=verdict.evidence(loaded), reason=f"plan approved by {names}")
    return plan


def refuse_unless_approved(verdict: Verdict, plan_path: Path, loaded: LoadedPolicy, now: datetime | None = None) -> None:
    approval = loaded.policy.approval
    problem = _standing(verdict.plan, plan_path, loaded, now or datetime.now(timezone.utc))
    if problem:
        raise NotApproved(f"{problem}; run `regsync plan` again and have the new plan approved")
    if len(verdict.approvers) >= approval.required:
        return
    signed = ", ".join(key.name for key in verdict.approvers) or "nobody"
    bad = [describe(found) for found in verdict.seen if found.signer is None]
    raise NotApproved(f"{plan_path} has {len(verdict.approvers)} of {approval.required} required approvals "
                      f"(signed by {signed}; missing: {_missing(verdict, approval.required)})"
                      + (f"; not counted: {'; '.join(bad)}" if bad else "")
                      + f"; approve it with `regsync plan approve {plan_path} --key KEY`")


def _standing(plan: Plan, plan_path: Path, loaded: LoadedPolicy | None, now: datetime) -> str | None:
    """Why no approval of this plan can count, whoever signed it: made from another policy than
    `loaded`, stamped in the future, or older than approval.max_age."""
    if loaded is not None and plan.policy_sha256 != loaded.sha256:
        return (f"{plan_path} was made from another policy (sha256 {plan.policy_sha256[:12]}, {loaded.path} is "
                f"{loaded.sha256[:12]}): its approvals were for that policy")
    created = _created(plan, plan_path)
    if created > now + CLOCK_SKEW:
        return f"{plan_path} says it was made at {plan.created}, in the future (it would stretch approval.max_age)"
    max_age = loaded.policy.approval.max_age if loaded is not None else None
    if max_age is not None and now > created + timedelta(seconds=max_age):
        return (f"the approvals of {plan_path} expired at {_stamp(created + timedelta(seconds=max_age))} "
                f"(approval.max_age {format_duration(max_age)} after the plan was made, {plan.created})")
    return None


def _missing(verdict: Verdict, required: int) -> str:
    more = required - len(verdict.approvers)
    who = ", ".join(verdict.missing)
    return f"{who}" if more >= len(verdict.missing) else f"{more} more of {who}"


def approve(plan_path: Path, key, kinds: Mapping[str, ItemReader], loaded: LoadedPolicy | None = None,
            now: datetime | None = None) -> tuple[Path, str]:
    """Sign the plan's exact bytes with `key` (a private key) beside it; the signature file and the
    key's fingerprint. With the policy, refuse what sync would not count anyway: a key that is not
    an approver's, another policy's plan, an expired one."""
    data = read_plan_bytes(plan_path)
    plan = parse_plan(data, plan_path, kinds)   # only a regsync plan is approved, never any file
    key_id = fingerprint(key.public_key())
    if loaded is not None and key_id not in {trusted.fingerprint for trusted in trusted_keys(loaded)}:
        raise UsageError(f"--key is not the key of any approval.trust entry "
                         f"({', '.join(loaded.policy.approval.trust) or 'none'}): sync would not count it")
    problem = _standing(plan, plan_path, loaded, now or datetime.now(timezone.utc))
    if problem:
        raise UsageError(f"{problem}: not approved")
    from regsync.trust.signing import sign_bytes

    return write_approval(plan_path, key_id, sign_bytes(key, data)), key_id


def _created(plan: Plan, plan_path: Path) -> datetime:
    try:
        return parse_time(plan.created)
    except (ValueError, TypeError):
        raise UsageError(f"{plan_path}: 'created' is not a time ({plan.created!r})") from None


def _stamp(when: datetime | None) -> str | None:
    return when.isoformat(timespec="seconds") if when else None
