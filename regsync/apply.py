"""Execute a plan: the one pipeline that fetches, verifies and pushes, and audits each decision."""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from loguru import logger

from regsync.audit import AuditLog
from regsync.conda.apply import apply_conda
from regsync.endpoints import Endpoints, split_ref
from regsync.errors import EXIT_OK, EXIT_REFUSED, EXIT_RUNTIME, RegistryError, UsageError, VerificationError
from regsync.oci.copy import BlobCopier, Interrupted, copy_tree
from regsync.oci.manifest import filter_index
from regsync.plan import Plan, PlanItem
from regsync.pypi.push import apply_package
from regsync.resolve.images import manifest_tree
from regsync.transfer import Throttle
from regsync.verify.authority import authorize, image_rule_for
from regsync.verify.steps import after_push, evidence_before_push


@dataclass
class Outcome:
    pushed: int = 0
    skipped: int = 0
    refused: int = 0
    failed: int = 0
    bytes: int = 0          # fetched from sources
    reused: int = 0         # sent again from partial downloads an earlier (killed) run kept on disk
    interrupted: bool = False

    @property
    def exit_code(self) -> int:
        if self.failed or self.interrupted:
            return EXIT_RUNTIME
        return EXIT_REFUSED if self.refused else EXIT_OK


def split_image_ref(ref: str) -> tuple[str, str, str]:
    """'src/pytorch/cuda:2.9' → ('src', 'pytorch/cuda', '2.9')."""
    path, _, tag = ref.rpartition(":")
    name, repo = split_ref(path)
    return name, repo, tag


def artifact_of(item: PlanItem) -> dict:
    artifact = {"kind": item.kind, "source": item.source, "target": item.target, "digest": item.digest,
                "size": item.bytes}
    if item.source_digest:
        artifact["source_digest"] = item.source_digest
    if item.platforms:
        artifact["platforms"] = item.platforms
    if item.environments:
        artifact["environments"] = item.environments
    return artifact


def check_not_stale(plan: Plan, endpoints: Endpoints) -> None:
    """A saved plan applies only to the target state it was made against."""
    for item in plan.items:
        if item.kind != "image" or item.action == "refuse" or not _policy_maps(item, endpoints):
            continue
        name, repo, tag = split_image_ref(item.target)
        current = endpoints.registry(name).head_manifest(repo, tag)
        now = current.digest if current else None
        if now not in (item.target_before, item.digest):
            raise UsageError(f"the plan is stale: {item.target} now points to {now or 'nothing'}, "
                             f"the plan saw {item.target_before or 'nothing'}; run `regsync plan` again")


def _policy_maps(item: PlanItem, endpoints: Endpoints) -> bool:
    try:
        image_rule_for(endpoints.policy, item.source, item.target)
        return True
    except VerificationError:  # apply_plan refuses it; its target is never even looked at
        return False


def apply_plan(plan: Plan, endpoints: Endpoints, audit: AuditLog, jobs: int = 8,
               on_bytes: Callable[[int], None] | None = None, bandwidth: int | None = None) -> Outcome:
    outcome = Outcome()
    if bandwidth:
        on_bytes = _throttled(on_bytes, Throttle(bandwidth))
    for error in plan.errors:
        audit.record("refused" if error.refused else "failed", artifact={"source": error.source},
                     policy_rule=error.rule, reason=error.reason)
        logger.error("{}", error.reason if error.source in error.reason else f"{error.source}: {error.reason}")
        if error.refused:
            outcome.refused += 1
        else:
            outcome.failed += 1
    for item in plan.items:
        _authorize(item, endpoints)
        if item.action == "skip":
            audit.record("skipped", artifact=artifact_of(item), policy_rule=item.rule, reason=item.reason)
            outcome.skipped += 1
        elif item.action == "refuse":
            _refuse(item, item.reason, audit, outcome)
    changes = [item for item in plan.items if item.changes]
    # Two pools: item workers wait on blob futures, so they must never occupy the blob workers.
    blob_pool = ThreadPoolExecutor(jobs, thread_name_prefix="blob")
    item_pool = ThreadPoolExecutor(jobs, thread_name_prefix="item")
    blobs = BlobCopier(blob_pool, on_bytes)
    package_bytes = _ByteCount(on_bytes)  # blobs count themselves; a package's bytes stream through here
    try:
        for item, error in zip(changes, item_pool.map(lambda i: _apply_item(i, endpoints, blobs, audit, package_bytes),
                                                       changes)):
            if error is None:
                outcome.pushed += 1
                logger.info("pushed {} ({})", item.target, item.digest)
            elif isinstance(error, VerificationError):
                _refuse(item, error.reason, audit, outcome)
            else:
                audit.record("failed", artifact=artifact_of(item), policy_rule=item.rule, reason=str(error))
                message = str(error)  # most errors already start with the reference they concern
                logger.error("{}", message if message.startswith(item.target) else f"{item.target}: {message}")
                outcome.failed += 1
    except KeyboardInterrupt:
        # SIGINT/SIGTERM: start nothing new; uploads in flight finish or are abandoned uncommitted,
        # and no tag is written for an image whose blobs did not all land.
        outcome.interrupted = True
        blobs.stop()
        package_bytes.stopping.set()
        logger.warning("interrupted: finishing in-flight transfers, starting no new ones")
    finally:
        item_pool.shutdown(wait=True, cancel_futures=True)
        blob_pool.shutdown(wait=True, cancel_futures=True)
    outcome.bytes = blobs.moved + package_bytes.total
    outcome.reused = blobs.reused
    return outcome


class _ByteCount:
    """Counts the bytes downloads report, and passes them on to the progress callback."""

    def __init__(self, on_bytes: Callable[[int], None] | None):
        self.total, self._on_bytes, self._lock = 0, on_bytes, threading.Lock()
        self.stopping = threading.Event()

    def __call__(self, count: int) -> None:
        with self._lock:
            self.total += count
        if self._on_bytes:
            self._on_bytes(count)
        if self.stopping.is_set():
            # SIGTERM: a package download stops within a chunk instead of running to the end of a
            # 2 GB wheel; its partial and checkpoint (at most a second old) stay for the next run.
            raise Interrupted()


def _throttled(on_bytes, throttle: Throttle):
    def count(n: int) -> None:
        if on_bytes:
            on_bytes(n)
        throttle.consume(n)  # sleeping in the reader slows the stream itself: no buffering piles up
    return count


def _authorize(item: PlanItem, endpoints: Endpoints) -> None:
    """The item's rule from the policy, not from the plan; a copy or update the policy would not plan
    becomes a refusal. A skip or refusal stays what it is: neither pushes anything."""
    try:
        authorize(item, endpoints.policy)
    except VerificationError as exc:
        if item.changes:
            item.action, item.reason, item.verification = "refuse", exc.reason, None


def _refuse(item: PlanItem, reason: str, audit: AuditLog, outcome: Outcome) -> None:
    # what was checked before the refusal (gates passed, signers found) is evidence for the reviewer too
    audit.record("refused", artifact=artifact_of(item), policy_rule=item.rule, verification=item.verification,
                 reason=reason)
    logger.warning("refused {}: {}", item.source, reason)
    outcome.refused += 1


def _apply_item(item: PlanItem, endpoints: Endpoints, blobs: BlobCopier, audit: AuditLog, on_bytes) -> Exception | None:
    try:
        if item.kind == "image":
            _apply_image(item, endpoints, blobs, audit)
        else:  # a wheel or a conda package is one more artifact: same pool, verification rule and audit records
            apply_file = apply_conda if item.kind == "conda" else apply_package
            verification = apply_file(item, endpoints, audit, on_bytes, artifact_of(item))
            audit.record("pushed", artifact=artifact_of(item), policy_rule=item.rule,
                         verification=verification or {"method": "sha256", "against": "source index"})
        return None
    except (VerificationError, RegistryError, Interrupted) as exc:
        return exc
    except Exception as exc:  # a bug or an unforeseen failure: this artifact fails, the run goes on
        logger.opt(exception=exc).debug("unexpected error for {}", item.target)
        return RegistryError(item.target, None, f"unexpected {type(exc).__name__}: {exc}")


def _apply_image(item: PlanItem, endpoints: Endpoints, blobs: BlobCopier, audit: AuditLog) -> None:
    src_name, src_repo, _ = split_image_ref(item.source)
    dst_name, dst_repo, tag = split_image_ref(item.target)
    src, dst = endpoints.registry(src_name), endpoints.registry(dst_name)
    # By digest, never by tag: a saved plan applies exactly what was reviewed.
    root = src.get_manifest(src_repo, item.source_digest or item.digest)
    if item.platforms and root.is_index:  # authorize made sure these are the policy's platforms
        root = filter_index(root, item.platforms)
        if root.digest != item.digest:
            raise VerificationError(f"platform-filtered index is {root.digest}, the plan says {item.digest}")
    elif root.digest != item.digest:
        raise VerificationError(f"the plan names source {item.source_digest} and digest {item.digest}, and no "
                                f"platform filter makes one from the other")
    tree = manifest_tree(src, src_repo, root)
    verified = {"method": "sha256", "manifests": len(tree), "blobs": len({b.digest for m in tree for b in m.blobs()})}
    verified.update(evidence_before_push(item, endpoints, root))  # a saved plan may be old or edited: check now
    moved = copy_tree(src, src_repo, dst, dst_repo, tree, tag, blobs,
                      on_verified=lambda: audit.record("verified", artifact=artifact_of(item), policy_rule=item.rule,
                                                       verification=verified))
    # What this push moved, not what the plan expected: a re-applied plan finds its blobs there.
    audit.record("pushed", artifact={**artifact_of(item), "size": moved}, policy_rule=item.rule, verification=verified,
                 **after_push(item, endpoints, tree, blobs, verified))
