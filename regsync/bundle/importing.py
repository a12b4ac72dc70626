"""Air-gapped side: an opened bundle (regsync/bundle/source.py) runs through the sync pipeline, after
what only a bundle can say is settled: is it news or a replay (regsync/bundle/streams.py), what did
its export refuse, and, for an unsigned one, which items verify without it (docs/airgap.md)."""

from __future__ import annotations

from pathlib import Path

from loguru import logger

from regsync.bundle import streams
from regsync.bundle.source import OpenedBundle, open_bundle
from regsync.errors import VerificationError
from regsync.pipeline.apply import Outcome, apply_plan
from regsync.pipeline.kind import Kinds, kind_of
from regsync.pipeline.make import make_plan
from regsync.pipeline.plan import Plan, PlanError
from regsync.policy import LoadedPolicy
from regsync.times import parse_time

MAX_CARRIED = 100_000          # refusals bundle.json may carry over
MAX_CARRIED_TEXT = 4096        # characters of a carried source or reason
MAX_PLACED = 200_000           # target references remembered (the oldest are forgotten first)


class BundleImport:
    """One `regsync import`: `sources` opens and checks the bundle inside the audited run (so a
    refusal is an audit record), `run` plans against the target and applies."""

    def __init__(self, root: Path, loaded: LoadedPolicy, kinds: Kinds, more_blobs: tuple[Path, ...] = (),
                 allow_rollback: bool = False):
        self.root, self.loaded, self.more_blobs, self.allow_rollback = root, loaded, more_blobs, allow_rollback
        self.kinds = kinds
        self.bundle: OpenedBundle | None = None

    def sources(self, audit) -> dict:
        bundle = open_bundle(self.root, self.loaded, self.kinds, self.more_blobs)
        sid, sequence = streams.identity_of(bundle.meta) or (None, None)
        artifact = {"bundle": str(self.root), "bundle_sha256": bundle.sha256, "stream": sid, "sequence": sequence}
        replay = streams.claim(bundle.meta, bundle.sha256, self.allow_rollback)  # RollbackRefused: exit 2
        if replay:
            logger.warning("--allow-rollback: {}", replay)
            audit.event("verified", artifact=artifact, verification=bundle.signature,
                        reason=f"rollback allowed by the operator (--allow-rollback): {replay}")
        elif bundle.signature:
            audit.event("verified", artifact=artifact, verification=bundle.signature,
                        reason="bundle signature verified")
        self.bundle = bundle
        return bundle.sources

    def run(self, endpoints, audit, jobs: int, saved: Plan | None = None) -> Outcome:
        """Plan against the target (or take the saved, approved plan `saved`), then apply."""
        bundle, policy = self.bundle, self.loaded.policy
        assert bundle is not None, "sources() comes before run()"
        plan = saved or make_plan(self.loaded, endpoints, self.kinds, jobs)
        carry_refusals(plan, bundle.meta.get("not_exported"))
        if bundle.signature is None and policy.bundle.signature == "optional":
            refuse_what_only_the_bundle_vouches_for(plan, policy, self.kinds)
        verified_at = _verified_at(bundle.meta.get("artifacts"))
        _warn_of_older_images(plan, verified_at)
        outcome = apply_plan(plan, endpoints, self.kinds, audit, jobs)
        failed = {problem["source"] for problem in outcome.problems}
        pushed = {item.target: {"digest": item.digest, "verified_at": verified_at.get(item.target)}
                  for item in plan.items if item.changes and item.source not in failed}
        if pushed and not outcome.interrupted:  # interrupted, what did not start is not told from what did
            streams.remember_placed(bundle.meta, pushed, MAX_PLACED)
        return outcome


def carry_refusals(plan: Plan, not_exported) -> None:
    """What the export refused (or failed on) is not in the bundle: record it so, with the export's
    reason, instead of "not found on the source". bundle.json is untrusted input: a forged entry can
    only add a refusal, never an item."""
    entries = [e for e in not_exported[:MAX_CARRIED] if _valid_problem(e)] if isinstance(not_exported, list) else []
    planned = {item.source for item in plan.items}
    carried = {e["source"]: e for e in entries if e["source"] not in planned}
    kept = []
    for error in plan.errors:
        entry = carried.pop(error.source, None)
        kept.append(error if entry is None else _carried(entry, error.rule))
    plan.errors = kept + [_carried(entry, "") for entry in carried.values()]


def _carried(entry: dict, rule: str) -> PlanError:
    refused = entry["event"] == "refused"
    return PlanError(entry["source"], f"{'refused' if refused else 'failed'} at export, not in the bundle: "
                                      f"{entry['reason']}", rule, refused=refused)


def _valid_problem(entry) -> bool:
    return (isinstance(entry, dict) and entry.get("event") in ("refused", "failed")
            and all(isinstance(entry.get(key), str) and 0 < len(entry[key]) <= MAX_CARRIED_TEXT
                    for key in ("source", "reason")))


def refuse_what_only_the_bundle_vouches_for(plan: Plan, policy, kinds: Kinds) -> None:
    """An unsigned bundle under `bundle: {signature: optional}`: its sha256 sums and records are the
    carrier's word. Only items whose rule demands evidence that verifies without the bundle (an
    image signature or attestation, a package's or conda file's attestation, checked against the
    policy's own trust roots) go in; the rest are refused, saying why."""
    for item in plan.items:
        if not item.changes:
            continue
        kind = kind_of(kinds, item)
        try:
            rule = kind.authorize(item, policy)
        except VerificationError:
            continue  # apply refuses it anyway
        if not kind.verifies_without_bundle(rule):
            item.action, item.verification = "refuse", None
            item.reason = (f"the bundle is unsigned (bundle: {{signature: optional}}) and {item.rule} requires no "
                           f"signature or attestation of its own: nothing but the bundle vouches for it")


def _verified_at(artifacts) -> dict[str, str]:
    """Target reference → when the export verified it (bundle.json's own record)."""
    found = {}
    for entry in artifacts if isinstance(artifacts, list) else []:
        if isinstance(entry, dict) and isinstance(entry.get("target"), str) and isinstance(entry.get("verified_at"), str):
            found[entry["target"]] = entry["verified_at"]
    return found


def _warn_of_older_images(plan: Plan, verified_at: dict[str, str]) -> None:
    """A tag moving to what its export verified before the export of what the target has now (by the
    bundles' own records) is moving back in time: say so, tag by tag, whatever the sequence says."""
    moving = [item for item in plan.items if item.changes and item.details.replaces()]
    before = streams.placed({item.target for item in moving})
    for item in moving:
        now = before.get(item.target) or {}
        new, old = _time(verified_at.get(item.target)), _time(now.get("verified_at"))
        if now.get("digest") == item.details.replaces() and new and old and new < old:
            logger.warning("{} moves back to {} (verified by its export at {}) from {} (verified at {}): an older "
                           "image than the target has", item.target, item.digest, new.isoformat(),
                           item.details.replaces(), old.isoformat())


def _time(value):
    try:
        return parse_time(value) if isinstance(value, str) else None
    except (ValueError, TypeError):
        return None
