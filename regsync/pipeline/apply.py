"""Execute a plan: the one pipeline that fetches, verifies and pushes (or exports into a bundle),
and audits each decision. It knows no kind of artifact: each item's Kind does the transfer
(docs/architecture.md, "Apply")."""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from loguru import logger

from regsync.audit.evidence import AlreadyThere, Evidence
from regsync.audit.log import AuditLog
from regsync.endpoints import Endpoints
from regsync.errors import (EXIT_OK, EXIT_REFUSED, EXIT_RUNTIME, Interrupted, RegistryError, UsageError,
                            VerificationError)
from regsync.net.throttle import Throttle
from regsync.pipeline.kind import BundleSink, Kinds, Run, kind_of
from regsync.pipeline.plan import Plan, PlanItem


@dataclass
class Outcome:
    pushed: int = 0         # exported, when applied into a bundle
    skipped: int = 0
    refused: int = 0
    failed: int = 0
    bytes: int = 0          # fetched from sources
    reused: int = 0         # sent again from partial downloads an earlier (killed) run kept on disk
    interrupted: bool = False
    problems: list[dict[str, str]] = field(default_factory=list)   # {source, reason, event} of each refusal and failure

    @property
    def exit_code(self) -> int:
        if self.failed or self.interrupted:
            return EXIT_RUNTIME
        return EXIT_REFUSED if self.refused else EXIT_OK


def check_not_stale(plan: Plan, endpoints: Endpoints, kinds: Kinds) -> None:
    """A saved plan applies only to the target state it was made against."""
    for item in plan.items:
        try:
            kind = kind_of(kinds, item)
        except VerificationError:  # apply refuses it; its target is never even looked at
            continue
        moved = None if item.action == "refuse" else kind.is_stale(item, endpoints)
        if moved:
            raise UsageError(f"the plan is stale: {moved}; run `regsync plan` again")


def apply_plan(plan: Plan, endpoints: Endpoints, kinds: Kinds, audit: AuditLog, jobs: int = 8,
               on_bytes: Callable[[int], None] | None = None, bandwidth: int | None = None,
               into: BundleSink | None = None) -> Outcome:
    """`kinds`: who transfers each item (its `kind` names one; an unknown one is refused).
    `into`: export, a bundle sink instead of the targets; each item is verified into it."""
    outcome = Outcome()
    if bandwidth:
        on_bytes = _throttled(on_bytes, Throttle(bandwidth))
    for error in plan.errors:
        event = "refused" if error.refused else "failed"
        artifact = {"kind": error.kind, "source": error.source} if error.kind else {"source": error.source}
        audit.event(event, artifact=artifact, policy_rule=error.rule, reason=error.reason)
        logger.bind(**artifact, event=event, reason=error.reason).error(
            "{}", error.reason if error.source in error.reason else f"{error.source}: {error.reason}")
        _count(outcome, error.source, error.reason, event)
    for item in plan.items:
        _authorize(kinds, item, endpoints)
        if item.action == "skip":
            audit.event("skipped", artifact=item.artifact(), policy_rule=item.rule, reason=item.reason)
            outcome.skipped += 1
        elif item.action == "refuse":
            _refuse(item, item.reason, audit, outcome)
    changes = [item for item in plan.items if item.changes]
    # Two pools: item workers wait on sub-transfers (an image's blobs), so they must never occupy those workers.
    sub_pool = ThreadPoolExecutor(jobs, thread_name_prefix="blob")
    item_pool = ThreadPoolExecutor(jobs, thread_name_prefix="item")
    records = _Records(audit)
    run = Run(endpoints, sub_pool, on_bytes, records.verified)
    if into is not None:
        sink = into

        def step(item: PlanItem) -> Exception | str | None:
            return _guarded(item, lambda: records.exported(item, kind_of(kinds, item).export(item, run, sink), sink))
    else:
        def step(item: PlanItem) -> Exception | str | None:
            return _guarded(item, lambda: records.transferred(item, kind_of(kinds, item).transfer(item, run)))
    try:
        for item, error in zip(changes, item_pool.map(step, changes)):
            if error == "skipped":
                outcome.skipped += 1
                logger.info("unchanged {} ({}): already on the target", item.target, item.digest)
            elif error is None:
                outcome.pushed += 1
                done = "exported" if into is not None else "pushed"
                logger.bind(**log_fields(item, done)).info("{} {} ({})", done, item.target, item.digest)
            elif isinstance(error, VerificationError):
                _refuse(item, error.reason, audit, outcome)
            else:
                audit.event("failed", artifact=item.artifact(), policy_rule=item.rule, reason=str(error))
                message = str(error)  # most errors already start with the reference they concern
                logger.bind(**log_fields(item, "failed", message)).error(
                    "{}", message if message.startswith(item.target) else f"{item.target}: {message}")
                _count(outcome, item.source, str(error), "failed")
    except KeyboardInterrupt:
        # SIGINT/SIGTERM: start nothing new; uploads in flight finish or are abandoned uncommitted,
        # and no tag is written for an image whose blobs did not all land.
        outcome.interrupted = True
        run.stop()
        logger.warning("interrupted: finishing in-flight transfers, starting no new ones")
    finally:
        item_pool.shutdown(wait=True, cancel_futures=True)
        sub_pool.shutdown(wait=True, cancel_futures=True)
    for item, error in run.finish():  # pushed, but what completes it (a listing) failed
        outcome.pushed -= 1
        audit.event("failed", artifact=item.artifact(), policy_rule=item.rule, reason=str(error))
        logger.error("{}", error)
        _count(outcome, item.source, str(error), "failed")
    outcome.bytes = run.moved
    outcome.reused = run.reused
    return outcome


def log_fields(item: PlanItem, event: str, reason: str | None = None) -> dict[str, Any]:
    """The flat fields a JSON log line carries for an item (docs/audit.md, "Logs as JSON")."""
    return {"event": event, "kind": item.kind, "source": item.source, "target": item.target, "digest": item.digest,
            "action": item.action, "reason": reason, "bytes": item.bytes}


def _throttled(on_bytes: Callable[[int], None] | None, throttle: Throttle) -> Callable[[int], None]:
    def count(n: int) -> None:
        if on_bytes:
            on_bytes(n)
        throttle.consume(n)  # sleeping in the reader slows the stream itself: no buffering piles up
    return count


def _authorize(kinds: Kinds, item: PlanItem, endpoints: Endpoints) -> None:
    """The item's rule from the policy, not from the plan; a copy or update the policy would not plan
    becomes a refusal. A skip or refusal stays what it is: neither pushes anything."""
    try:
        kind_of(kinds, item).authorize(item, endpoints.policy)
    except VerificationError as exc:
        if item.changes:
            item.action, item.reason, item.verification = "refuse", exc.reason, None


def _count(outcome: Outcome, source: str, reason: str, event: str) -> None:
    outcome.problems.append({"source": source, "reason": reason, "event": event})
    if event == "refused":
        outcome.refused += 1
    else:
        outcome.failed += 1


def _refuse(item: PlanItem, reason: str, audit: AuditLog, outcome: Outcome) -> None:
    # what was checked before the refusal (gates passed, signers found) is evidence for the reviewer too
    audit.event("refused", artifact=item.artifact(), policy_rule=item.rule, verification=item.verification,
                reason=reason)
    logger.bind(**log_fields(item, "refused", reason)).warning("refused {}: {}", item.source, reason)
    _count(outcome, item.source, reason, "refused")


class _Records:
    """The audit records of the items in flight, written from what each kind returns (regsync/audit/
    evidence.py): `verified` once per item (when the kind says its checks passed, else when its
    transfer returns), then `pushed` or `skipped`. A kind never writes one itself."""

    def __init__(self, audit: AuditLog):
        self.audit = audit
        self._verified: set[int] = set()   # id() of the items whose `verified` is written
        self._lock = threading.Lock()

    def verified(self, item: PlanItem, evidence: Evidence) -> None:
        """Run.verified: the kind's checks passed, before its push."""
        self._verified_record(item, evidence)

    def _verified_record(self, item: PlanItem, evidence: Evidence, reason: str | None = None) -> dict[str, Any]:
        with self._lock:
            self._verified.add(id(item))
        return self.audit.event("verified", artifact=item.artifact(), policy_rule=item.rule,
                                verification=evidence.verification(), reason=reason)

    def transferred(self, item: PlanItem, result: Evidence | AlreadyThere) -> str | None:
        """"skipped" when the target already held the item (a saved plan applied again)."""
        with self._lock:
            announced = id(item) in self._verified
            self._verified.discard(id(item))
        if isinstance(result, AlreadyThere):
            self.audit.event("skipped", artifact={**item.artifact(), "size": 0}, policy_rule=item.rule,
                             reason=result.reason)
            return "skipped"
        if not isinstance(result, Evidence):  # a kind that breaks the protocol: its item fails, nothing is written
            raise TypeError(f"the {item.kind} kind's transfer returned {type(result).__name__}, not Evidence")
        if result.checked and not announced:
            self._verified_record(item, result)
        artifact = item.artifact() if result.moved is None else {**item.artifact(), "size": result.moved}
        self.audit.event("pushed", artifact=artifact, policy_rule=item.rule,
                         verification=result.verification(pushed=True), **result.carried)
        return None

    def exported(self, item: PlanItem, evidence: Evidence, sink: BundleSink) -> None:
        record = self._verified_record(item, evidence, reason="exported to bundle")
        sink.add_artifact(item, {**item.artifact(), "verification": evidence.verification(),
                                 "audit_seq": record.get("seq"), "verified_at": record.get("ts")})


def _guarded(item: PlanItem, work: Callable[[], str | None]) -> Exception | str | None:
    try:
        return work()
    except (VerificationError, RegistryError, Interrupted) as exc:
        return exc
    except Exception as exc:  # a bug or an unforeseen failure: this artifact fails, the run goes on
        logger.opt(exception=exc).debug("unexpected error for {}", item.target)
        return RegistryError(item.target, None, f"unexpected {type(exc).__name__}: {exc}")
