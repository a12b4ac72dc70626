"""The verbs as library functions, and the run frame every writing verb shares
(docs/architecture.md, "The run frame").

`sync()`, `export()` and `import_()` do the work a program, a test or the CLI asks for and return a
`RunResult`; nothing here prints. The frame around each: the run lock, the audit trail's run
records, SIGTERM and the deadline (both stop the run as Ctrl-C does), and the summary and metrics
files, written for every exit, also one that ends before the audit frame starts.
"""

from __future__ import annotations

import _thread
import signal
import sys
import threading
import uuid
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from regsync.audit.log import AuditLog, check_audit_path
from regsync.content.files import check_output_file
from regsync.endpoints import Endpoints
from regsync.errors import EXIT_RUNTIME, RegsyncError, UsageError, VerificationError
from regsync.kinds.registry import KINDS, SECTIONS
from regsync.lock import RunLock, lock_path
from regsync.ops import write_metrics, write_summary
from regsync.pipeline.apply import Outcome, apply_plan, check_not_stale
from regsync.pipeline.make import make_plan
from regsync.pipeline.plan import Plan
from regsync.pipeline.shard import Shard
from regsync.policy import LoadedPolicy, load_policy
from regsync.policy.files import check_files

DEFAULT_AUDIT = Path("regsync-audit.jsonl")


@dataclass
class RunOptions:
    audit_file: Path | None = None      # default: the policy's audit.path, else ./regsync-audit.jsonl
    wait_lock: float = 0
    max_duration: float | None = None   # then stop as SIGTERM does
    summary_json: Path | None = None
    metrics_file: Path | None = None
    jobs: int = 8
    rps: float | None = None
    bandwidth: int | None = None
    run_id: str = field(default_factory=lambda: uuid.uuid4().hex[:16])
    # progress(total_bytes) → a context giving the on_bytes callback (the CLI's progress bar)
    progress: Callable[[int], AbstractContextManager] | None = None


@dataclass
class RunResult:
    exit_code: int
    outcome: Outcome
    audit_path: Path
    lock_waited: float = 0.0   # seconds this run waited for another run's lock (--wait-lock)
    lock_holder: str = ""      # that run, as its lock file named it


def load_checked(policy_path: Path, offline_sources: bool = False) -> LoadedPolicy:
    """The policy, validated, with the files it names (CA bundles, keys, roots) opened and parsed.
    `offline_sources`: a bundle stands in for the sources, so their settings are not needed."""
    loaded = load_policy(policy_path, offline_sources=offline_sources, sections=SECTIONS)
    check_files(loaded)
    return loaded


def plan(policy_path: Path, jobs: int = 8, shard: Shard | None = None, rps: float | None = None,
         bundle: tuple[Path, ...] = ()) -> Plan:
    """Resolve the policy and diff it against the targets; read-only. `bundle`: an air-gap bundle
    (then its other volumes) stands in for the sources, as on import: the plan `import --plan` applies."""
    if not bundle:
        loaded = load_checked(policy_path)
        return make_plan(loaded, Endpoints(loaded, jobs, rps), KINDS, jobs, shard)
    from regsync.bundle.source import open_bundle

    loaded = load_checked(policy_path, offline_sources=True)
    sources = open_bundle(bundle[0], loaded, KINDS, bundle[1:]).sources
    return make_plan(loaded, Endpoints(loaded, jobs, rps, sources), KINDS, jobs, shard)


def sync(policy_path: Path, options: RunOptions, plan_path: Path | None = None,
         shard: Shard | None = None) -> RunResult:
    """Copy what the policy selects (or exactly the saved plan at `plan_path`) to the targets."""
    if plan_path and shard:
        raise UsageError("--shard applies when resolving; a saved plan is applied whole")
    loaded = _load_for_run(policy_path, options)

    def work(endpoints: Endpoints, audit: AuditLog) -> Outcome:
        if plan_path:
            planned = _saved_plan(plan_path, loaded, audit)
            check_not_stale(planned, endpoints, KINDS)
        else:
            _no_plan_needs_no_approval(loaded, "sync")
            planned = make_plan(loaded, endpoints, KINDS, options.jobs, shard)
        total = sum(item.bytes for item in planned.items if item.changes)
        with (options.progress(total) if options.progress else nullcontext()) as on_bytes:
            return apply_plan(planned, endpoints, KINDS, audit, options.jobs, on_bytes, options.bandwidth)

    return run_frame(loaded, "sync", work, options)


def export(policy_path: Path, out: Path, options: RunOptions, since: Path | None = None,
           volume_size: int | None = None, sign_key: Path | None = None,
           sign_key_password_env: str | None = None) -> RunResult:
    """Everything the policy selects, verified, into the bundle directory `out`."""
    # bundles and signing keys (cryptography) are imported by the verbs that use them: a sync's
    # start-up does not pay for them (issue 16)
    from regsync.bundle.export import check_bundle_dir, export_bundle, export_stand_ins
    from regsync.bundle.signature import signing_key_for
    from regsync.trust.signing import load_private_key

    check_bundle_dir(out)
    loaded = _load_for_run(policy_path, options)
    key = load_private_key(sign_key, sign_key_password_env, "--sign-key") if sign_key else None
    key = signing_key_for(loaded, key)  # a bundle the far side would refuse is refused here, before any fetch

    def work(endpoints: Endpoints, audit: AuditLog) -> Outcome:
        return export_bundle(loaded, endpoints, KINDS, out, audit, options.jobs, since=since,
                             volume_size=volume_size, sign_key=key)

    return run_frame(loaded, "export", work, options, sources=lambda audit: export_stand_ins(loaded, KINDS))


def import_(policy_path: Path, bundle: Path, options: RunOptions, more_blobs: tuple[Path, ...] = (),
            plan_path: Path | None = None, allow_rollback: bool = False) -> RunResult:
    """The bundle stands in for the policy's sources; the sync pipeline runs on it (on exactly the
    saved plan at `plan_path`, made by `plan --bundle`, when given). `allow_rollback`: import a bundle
    older than the last one imported of its stream (audited)."""
    from regsync.bundle.importing import BundleImport

    loaded = _load_for_run(policy_path, options, offline_sources=True)
    job = BundleImport(bundle, loaded, KINDS, more_blobs, allow_rollback)

    def work(endpoints: Endpoints, audit: AuditLog) -> Outcome:
        planned = None
        if plan_path:
            planned = _saved_plan(plan_path, loaded, audit)
            check_not_stale(planned, endpoints, KINDS)
        else:
            _no_plan_needs_no_approval(loaded, "import")
        return job.run(endpoints, audit, options.jobs, planned)

    # the bundle is opened (its signature checked first) inside the audited run: a refusal is recorded
    return run_frame(loaded, "import", work, options, sources=job.sources)


def _saved_plan(plan_path: Path, loaded: LoadedPolicy, audit: AuditLog) -> Plan:
    """A saved plan, checked before anything is touched: its names, the policy it was made from and,
    when the policy has `approval:`, its signed approvals (recorded in the audit trail)."""
    if loaded.policy.approval.trust:  # the approvals' keys (cryptography) only for a policy that has them
        from regsync.approvals.check import load_approved

        return load_approved(plan_path, loaded, KINDS, audit)
    planned = Plan.load(plan_path, KINDS)
    if planned.policy_sha256 != loaded.sha256:
        raise UsageError(f"{plan_path} was made from another policy (sha256 {planned.policy_sha256[:12]}, "
                         f"{loaded.path} is {loaded.sha256[:12]}); run `regsync plan` again")
    return planned


def _no_plan_needs_no_approval(loaded: LoadedPolicy, verb: str) -> None:
    required = loaded.policy.approval.required
    if required:
        saved = "regsync plan -p POLICY --bundle BUNDLE -o plan.json" if verb == "import" else \
            "regsync plan -p POLICY -o plan.json"
        raise UsageError(f"the policy requires {required} approval(s) of a saved plan (approval: {{required: "
                         f"{required}}}): `{saved}`, have it approved (`regsync plan approve`), then "
                         f"`regsync {verb} … --plan plan.json`")


def run_frame(loaded: LoadedPolicy, command: str, work: Callable[[Endpoints, AuditLog], Outcome],
              options: RunOptions, sources: Callable[[AuditLog], dict] | None = None) -> RunResult:
    """What every writing verb shares: the run lock, the audit frame, SIGTERM and the deadline,
    the summary and metrics files. `sources`: stand-ins for source registries or indexes, made
    inside the audited run (an import's bundle is checked there, so a refusal is an audit record)."""
    policy = loaded.policy
    path = options.audit_file or policy.audit.path or DEFAULT_AUDIT
    lock = None
    try:
        check_audit_path(path, "--audit-file" if options.audit_file else "audit.path")
        lock = RunLock(lock_path(path)).acquire(options.wait_lock)
        sign_key = None
        if policy.audit.sign_key:  # the signing code (cryptography) only for a signed trail
            from regsync.trust.signing import load_private_key

            sign_key = load_private_key(policy.audit.sign_key, policy.audit.sign_key_password_env, "audit.sign_key")
        audit = AuditLog(path, options.run_id, sign_key)
    except RegsyncError as exc:  # ended before the audit frame (the lock held, say)
        if lock is not None:
            lock.release()
        report_early_exit(options, loaded.path, exc)
        raise
    restore = _on_sigterm_interrupt()
    deadline = None
    if options.max_duration:
        deadline = threading.Timer(options.max_duration, _thread.interrupt_main)
        deadline.daemon = True
        deadline.start()
    try:
        result = _audited(loaded, command, work, options, sources, audit)
        result.lock_waited, result.lock_holder = lock.waited, lock.waited_for
        return result
    finally:
        if deadline is not None:
            deadline.cancel()
        restore()
        lock.release()


def _audited(loaded, command, work, options: RunOptions, sources, audit: AuditLog) -> RunResult:
    policy = loaded.policy
    audit_path = audit.path
    assert audit_path is not None, "run_frame opens the audit log on a file"
    targets: set[str] = set()
    for kind in KINDS.values():
        targets |= kind.targets(policy)
    audit.start_run(policy_sha256=loaded.sha256, policy_path=str(loaded.path), command=command,
                    targets=sorted(targets))
    outcome, exit_code = None, EXIT_RUNTIME
    try:
        outcome = work(Endpoints(loaded, options.jobs, options.rps, sources(audit) if sources else None), audit)
        exit_code = outcome.exit_code
    except RegsyncError as exc:
        exit_code = exc.exit_code
        audit.event("refused" if isinstance(exc, VerificationError) else "failed", reason=str(exc))
        raise
    finally:
        moved = outcome.bytes if outcome else 0
        interrupted = outcome.interrupted if outcome else sys.exc_info()[0] is KeyboardInterrupt
        finished = audit.finish_run(exit_code=exit_code, bytes_moved=moved, interrupted=interrupted)
        audit.close()
        _report_run(options, loaded, audit_path, audit, finished)
    return RunResult(exit_code, outcome, audit_path)


def _load_for_run(policy_path: Path, options: RunOptions, offline_sources: bool = False) -> LoadedPolicy:
    for path, option in ((options.summary_json, "--summary-json"), (options.metrics_file, "--metrics-file")):
        if path is not None:
            check_output_file(path, option)   # before the run: its result must have somewhere to go
    try:
        return load_checked(policy_path, offline_sources)
    except RegsyncError as exc:
        report_early_exit(options, policy_path, exc)
        raise


def report_early_exit(options: RunOptions, policy_path, exc: RegsyncError) -> None:
    """A run that ends before its audit frame still replaces the summary and metrics files, with its
    own exit code: a cron wrapper must never read the previous run's `exit_code: 0`."""
    if options.summary_json:
        write_summary(options.summary_json, {
            "run_id": options.run_id, "policy": str(policy_path), "exit_code": exc.exit_code, "error": str(exc),
            "counts": {}, "bytes": 0, "finished": datetime.now(timezone.utc).isoformat(timespec="seconds")})
    if options.metrics_file:
        write_metrics(options.metrics_file, counts={}, bytes_moved=0, duration=0.0, exit_code=exc.exit_code)


def _kinds_in(policy) -> tuple[str, ...]:
    """The kinds the policy has rules for: each gets its refused/failed series, at 0 when clean."""
    return tuple(name for name, kind in KINDS.items() if kind.targets(policy))


def _report_run(options: RunOptions, loaded, audit_path: Path, audit: AuditLog, finished: dict) -> None:
    if options.summary_json:
        write_summary(options.summary_json, {
            "run_id": options.run_id, "policy": str(loaded.path), "policy_sha256": loaded.sha256,
            "exit_code": finished["exit_code"], "interrupted": finished["interrupted"],
            "counts": finished["counts"], "bytes": finished["bytes"],
            "duration_seconds": finished["duration_seconds"], "finished": finished["ts"],
            "audit": str(audit_path), "audit_head": audit.head, "problems": audit.problems})
    if options.metrics_file:
        write_metrics(options.metrics_file, counts=finished["counts"], bytes_moved=finished["bytes"],
                      duration=finished["duration_seconds"], exit_code=finished["exit_code"],
                      audit_head=audit.head, by_kind=dict(audit.by_kind), kinds=_kinds_in(loaded.policy))


def _on_sigterm_interrupt() -> Callable[[], object]:
    """SIGTERM (cron timeout, Kubernetes) takes the same clean path as Ctrl-C. Signals can only be
    handled on the main thread: a run started from another thread stops on its deadline only."""
    if threading.current_thread() is not threading.main_thread():
        return lambda: None
    previous = signal.signal(signal.SIGTERM, _interrupt)
    return lambda: signal.signal(signal.SIGTERM, previous)


def _interrupt(signum, frame):
    raise KeyboardInterrupt
