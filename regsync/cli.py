"""The command line: parse, call the library, render, exit with DESIGN.md's codes. Nothing more."""

from __future__ import annotations

import _thread
import signal
import threading
import sys
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import click

from regsync import __version__
from regsync.errors import EXIT_CHANGES, EXIT_OK, EXIT_RUNTIME, RegsyncError, UsageError, VerificationError
from regsync.guard import run_guarded

POLICY_HELP = "Policy YAML (see examples/quickstart/policy.yaml)."


def policy_option(fn):
    return click.option("-p", "--policy", "policy_path", required=True, type=click.Path(path_type=Path),
                        help=POLICY_HELP)(fn)


class SizeType(click.ParamType):
    name = "size"

    def convert(self, value, param, ctx):
        from regsync.policy.models import parse_size

        try:
            return parse_size(value)
        except ValueError as exc:
            self.fail(str(exc), param, ctx)


SIZE = SizeType()


def jobs_option(fn):
    return click.option("-j", "--jobs", default=8, show_default=True, type=click.IntRange(1, 64),
                        help="Parallel transfers and lookups.")(fn)


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="regsync")
@click.option("-v", "--verbose", count=True, help="More log output (-vv for debug).")
@click.option("-q", "--quiet", count=True, help="Less log output.")
@click.option("--log-format", type=click.Choice(["text", "json"]), default="text", show_default=True,
              help="json: one object per line with the run id, for ELK/Loki.")
@click.option("--no-progress", is_flag=True, help="No progress bars (automatic when stderr is not a TTY).")
@click.pass_context
def cli(ctx, verbose, quiet, log_format, no_progress):
    """Replicate container images (and Python packages) from public registries into a private
    Harbor, Nexus or distribution registry, driven by a policy: resolve, plan, verify, push, audit.

    \b
    A typical first session:
      regsync policy check -p policy.yaml      # is the policy valid?
      regsync plan -p policy.yaml              # what would move (read-only)
      regsync plan -p policy.yaml -o plan.json # save it for review
      regsync sync -p policy.yaml --plan plan.json   # apply exactly what was reviewed

    \b
    Exit codes: 0 done, 1 runtime failure, 2 usage/policy error, 3 something was refused,
    4 plan --detailed-exitcode found changes, 5 another run holds the lock.
    """
    from regsync.console import setup_logging

    run_id = uuid.uuid4().hex[:16]
    ctx.obj = {"run_id": run_id, "progress": not no_progress}
    setup_logging(verbose - quiet, log_format, run_id)


@cli.group("policy")
def policy_group():
    """Work with policy files."""


@policy_group.command("check")
@policy_option
@run_guarded
def policy_check(policy_path):
    """Validate a policy and print a summary; exit 0 when valid, 2 with file:line when not.

    \b
    Example:
      regsync policy check -p policies/pytorch-cuda.yaml
    """
    loaded = load_checked(policy_path)
    policy = loaded.policy
    click.echo(f"{policy_path}: valid (sha256 {loaded.sha256[:12]})")
    click.echo(f"  registries: {', '.join(policy.registries) or '-'}")
    click.echo(f"  indexes:    {', '.join(policy.indexes) or '-'}")
    if policy.channels:
        click.echo(f"  channels:   {', '.join(policy.channels)}")
    click.echo(f"  trust:      {', '.join(policy.trust) or '-'}")
    for rule in policy.images:
        tags = ", ".join(rule.tags.include)
        extra = f"; platforms {', '.join(rule.platforms)}" if rule.platforms else ""
        click.echo(f"  image   {rule.source} -> {rule.target}  [{tags}]{extra}")
    for rule in policy.packages:
        click.echo(f"  package {rule.source} -> {rule.target}  [{', '.join(rule.requirements)}]"
                   f"{_provenance_summary(rule.verify)}")
    from regsync.conda.rules import describe

    for rule in policy.conda:
        click.echo(f"  conda   {describe(rule)}")
    click.echo(f"  audit:      {policy.audit.path or '(default ./regsync-audit.jsonl)'}")
    if policy.bundle.signature != "off":
        click.echo(f"  bundles:    signature {policy.bundle.signature}, trust {', '.join(policy.bundle.trust)}")
    return EXIT_OK


def _provenance_summary(verify) -> str:
    if verify.attestations == "off":
        return ""
    if verify.publisher is None:
        return "; provenance optional, NOT verified (no publisher/trust entry in the policy)"
    who = verify.publisher.repository or verify.publisher.email
    return f"; provenance {verify.attestations}: {verify.publisher.kind} {who}, trust {verify.trust}"


def rate_option(fn):
    return click.option("--max-requests-per-second", "rps", type=click.FloatRange(min=0.1), metavar="N",
                        help="Limit requests per registry (mirrors that rate-limit hard).")(fn)


def load_checked(policy_path, offline_sources: bool = False):
    """The policy, validated, with the files it names (CA bundles, keys, roots) opened and parsed."""
    from regsync.policy import load_policy
    from regsync.policy.files import check_files

    loaded = load_policy(policy_path, offline_sources=offline_sources)
    check_files(loaded)
    return loaded


def _plan(policy_path, jobs, shard=None, rps=None):
    from regsync.endpoints import Endpoints
    from regsync.resolve import make_plan

    loaded = load_checked(policy_path)
    endpoints = Endpoints(loaded, jobs, rps)
    return loaded, endpoints, make_plan(loaded, endpoints, jobs, shard)


@cli.command("plan")
@policy_option
@click.option("--json", "as_json", is_flag=True, help="Print the plan as JSON instead of a table.")
@click.option("-o", "--output", type=click.Path(path_type=Path), help="Save the plan JSON here (for sync --plan).")
@click.option("--detailed-exitcode", is_flag=True, help="Exit 4 when there are changes to apply, 0 when none.")
@jobs_option
@rate_option
@run_guarded
def plan_cmd(policy_path, as_json, output, detailed_exitcode, jobs, rps):
    """Resolve the policy and diff it against the targets, without writing anything anywhere.

    \b
    Examples:
      regsync plan -p policy.yaml
      regsync plan -p policy.yaml --json | jq '.items[] | select(.action != "skip")'
      regsync plan -p policy.yaml -o plan.json && regsync sync -p policy.yaml --plan plan.json
    """
    from regsync.console import render_plan

    _, _, plan = _plan(policy_path, jobs, rps=rps)
    if output:
        plan.save(output)
    if as_json:
        click.echo(plan.to_json(), nl=False)
    else:
        render_plan(plan)
    if plan.errors:
        return EXIT_RUNTIME
    return EXIT_CHANGES if detailed_exitcode and plan.has_changes else EXIT_OK


@cli.command("sync")
@policy_option
@click.option("--plan", "plan_path", type=click.Path(path_type=Path),
              help="Apply exactly this saved plan (no re-resolving); refused if the policy or target moved.")
@click.option("--dry-run", is_flag=True, help="Only show the plan (same as `regsync plan`).")
@click.option("--audit-file", type=click.Path(path_type=Path),
              help="Audit JSONL to append to (default: the policy's audit.path, else ./regsync-audit.jsonl).")
@click.option("--shard", metavar="I/N", help="Do only shard I of N of the work (stable hash of the target "
              "reference); e.g. --shard $(JOB_COMPLETION_INDEX)/4 in a Kubernetes Indexed Job.")
@click.option("--wait-lock", type=click.FloatRange(0), default=0, metavar="SECONDS",
              help="Wait this long for another run's lock instead of exiting 5 at once.")
@click.option("--max-duration", type=click.FloatRange(min=1), metavar="SECONDS",
              help="After this long, stop as SIGTERM does: nothing new starts, small transfers finish, large uploads and downloads stop at a chunk boundary and resume on the next run; exit 1.")
@click.option("--bandwidth", type=SIZE, metavar="SIZE", help="Limit bytes per second for the run (e.g. 50MiB).")
@click.option("--summary-json", type=click.Path(path_type=Path), metavar="FILE",
              help="Write the run's result as JSON here (for cron wrappers).")
@click.option("--metrics-file", type=click.Path(path_type=Path), metavar="FILE",
              help="Write Prometheus metrics here (node_exporter textfile collector), atomically.")
@jobs_option
@rate_option
@click.pass_context
@run_guarded
def sync_cmd(ctx, policy_path, plan_path, dry_run, audit_file, shard, wait_lock, max_duration, bandwidth,
             summary_json, metrics_file, jobs, rps):
    """Copy what the policy selects to the targets: verify every digest, push children before
    parents, tag last, and record each decision in the audit trail.

    \b
    Examples:
      regsync sync -p policy.yaml
      regsync sync -p policy.yaml --plan plan.json --jobs 16
    """
    from regsync.apply import apply_plan, check_not_stale
    from regsync.console import byte_progress, render_plan
    from regsync.plan import Plan
    from regsync.resolve import make_plan
    from regsync.shard import Shard

    if plan_path and dry_run:
        raise UsageError("--plan and --dry-run do not go together")
    shard = Shard.parse(shard) if shard else None
    if plan_path and shard:
        raise UsageError("--shard applies when resolving; a saved plan is applied whole")
    if dry_run:
        _, _, plan = _plan(policy_path, jobs, shard, rps)
        render_plan(plan)
        return EXIT_OK
    try:
        loaded = load_checked(policy_path)
    except RegsyncError as exc:
        _report_early_exit(ctx.obj["run_id"], policy_path, exc, summary_json, metrics_file)
        raise

    def work(endpoints, audit):
        if plan_path:
            plan = Plan.load(plan_path)
            if plan.policy_sha256 != loaded.sha256:
                raise UsageError(f"{plan_path} was made from another policy (sha256 {plan.policy_sha256[:12]}, "
                                 f"{policy_path} is {loaded.sha256[:12]}); run `regsync plan` again")
            check_not_stale(plan, endpoints)
        else:
            plan = make_plan(loaded, endpoints, jobs, shard)
        total = sum(item.bytes for item in plan.items if item.changes)
        with byte_progress(total, ctx.obj["progress"]) as on_bytes:
            return apply_plan(plan, endpoints, audit, jobs, on_bytes, bandwidth)

    try:
        return run_with_audit(ctx, loaded, "sync", work, RunOptions(audit_file, wait_lock, max_duration,
                                                                      summary_json, metrics_file, jobs, rps))
    except RegsyncError as exc:
        if not ctx.obj.get("reported"):  # ended before the audit frame (the lock held, say)
            _report_early_exit(ctx.obj["run_id"], policy_path, exc, summary_json, metrics_file)
        raise


def _report_early_exit(run_id, policy_path, exc, summary_json, metrics_file) -> None:
    """A run that ends before its audit frame still replaces the summary and metrics files, with its
    own exit code: a cron wrapper must never read the previous run's `exit_code: 0`."""
    from datetime import datetime, timezone

    from regsync.ops import write_metrics, write_summary

    if summary_json:
        write_summary(summary_json, {"run_id": run_id, "policy": str(policy_path), "exit_code": exc.exit_code,
                                     "error": str(exc), "counts": {}, "bytes": 0,
                                     "finished": datetime.now(timezone.utc).isoformat(timespec="seconds")})
    if metrics_file:
        write_metrics(metrics_file, counts={}, bytes_moved=0, duration=0.0, exit_code=exc.exit_code)


@dataclass
class RunOptions:
    audit_file: Path | None = None
    wait_lock: float = 0
    max_duration: float | None = None
    summary_json: Path | None = None
    metrics_file: Path | None = None
    jobs: int = 8
    rps: float | None = None
    # Stand-ins for source registries, made inside the audited run (an import's bundle is checked
    # there, so a refused bundle is an audit record); given the run's AuditLog.
    sources: Callable[[object], dict] | None = None


def run_with_audit(ctx, loaded, command: str, work, options: RunOptions) -> int:
    """What every writing verb shares: the run lock, the audit frame, SIGTERM and the deadline,
    the summary and metrics files, and the closing line."""
    from regsync.audit import AuditLog
    from regsync.console import human_size, say
    from regsync.endpoints import Endpoints
    from regsync.lock import RunLock, lock_path
    from regsync.verify.signing import load_private_key

    policy = loaded.policy
    path = options.audit_file or policy.audit.path or Path("regsync-audit.jsonl")
    lock = RunLock(lock_path(path)).acquire(options.wait_lock)
    ctx.call_on_close(lock.release)
    signal.signal(signal.SIGTERM, _interrupt)
    if options.max_duration:
        deadline = threading.Timer(options.max_duration, _thread.interrupt_main)
        deadline.daemon = True
        deadline.start()
        ctx.call_on_close(deadline.cancel)
    sign_key = (load_private_key(policy.audit.sign_key, policy.audit.sign_key_password_env, "audit.sign_key")
                if policy.audit.sign_key else None)
    audit = AuditLog(path, ctx.obj["run_id"], sign_key)
    audit.start_run(policy_sha256=loaded.sha256, policy_path=str(loaded.path), command=command,
                    targets=sorted({rule.target.split("/", 1)[0] for rule in policy.images}
                                   | {rule.target for rule in policy.packages} | {rule.target for rule in policy.conda}))
    outcome, exit_code = None, EXIT_RUNTIME
    try:
        sources = options.sources(audit) if options.sources else None
        outcome = work(Endpoints(loaded, options.jobs, options.rps, sources), audit)
        exit_code = outcome.exit_code
    except RegsyncError as exc:
        exit_code = exc.exit_code
        audit.record("refused" if isinstance(exc, VerificationError) else "failed", reason=str(exc))
        raise
    finally:
        moved = outcome.bytes if outcome else 0
        interrupted = outcome.interrupted if outcome else sys.exc_info()[0] is KeyboardInterrupt
        finished = audit.finish_run(exit_code=exit_code, bytes_moved=moved, interrupted=interrupted)
        audit.close()
        _report_run(ctx.obj["run_id"], loaded, path, audit, finished, options.summary_json, options.metrics_file)
    if outcome.interrupted:
        say("interrupted: completed work stays completed; the next run finishes the rest", needs_a_human=True)
    verb = "exported" if command == "export" else "pushed"
    reused = f" (+{human_size(outcome.reused)} re-sent from partial downloads a killed run kept)" if outcome.reused else ""
    say(f"{outcome.pushed} {verb}, {outcome.skipped} unchanged, {outcome.refused} refused, {outcome.failed} failed; "
        f"{human_size(outcome.bytes)} moved{reused}; audit: {path}", needs_a_human=exit_code != EXIT_OK,
        event="summary", exit_code=exit_code, pushed=outcome.pushed, unchanged=outcome.skipped,
        refused=outcome.refused, failed=outcome.failed, bytes=outcome.bytes, reused_bytes=outcome.reused,
        audit=str(path))
    return exit_code


def _report_run(run_id, loaded, audit_path, audit, finished, summary_json, metrics_file) -> None:
    from regsync.ops import write_metrics, write_summary

    click.get_current_context().obj["reported"] = True

    if summary_json:
        write_summary(summary_json, {
            "run_id": run_id, "policy": str(loaded.path), "policy_sha256": loaded.sha256,
            "exit_code": finished["exit_code"], "interrupted": finished["interrupted"],
            "counts": finished["counts"], "bytes": finished["bytes"],
            "duration_seconds": finished["duration_seconds"], "finished": finished["ts"],
            "audit": str(audit_path), "audit_head": audit.head, "problems": audit.problems})
    if metrics_file:
        write_metrics(metrics_file, counts=finished["counts"], bytes_moved=finished["bytes"],
                      duration=finished["duration_seconds"], exit_code=finished["exit_code"],
                      audit_head=audit.head)


def _audit_options(fn):
    fn = click.option("--audit-file", type=click.Path(path_type=Path), help="Audit JSONL (default: the policy's).")(fn)
    fn = click.option("--wait-lock", type=click.FloatRange(0), default=0, metavar="SECONDS",
                      help="Wait this long for another run's lock instead of exiting 5.")(fn)
    return fn


@cli.command("export")
@policy_option
@click.option("-o", "--output", required=True, type=click.Path(path_type=Path, file_okay=False),
              help="Bundle directory (created; re-running completes a half-written one).")
@click.option("--since-bundle", type=click.Path(path_type=Path, exists=True, file_okay=False),
              help="An earlier bundle: layers it carried are left out (import it first, or name it after this one).")
@click.option("--volume-size", type=SIZE, metavar="SIZE",
              help="Split for removable media: blobs beyond SIZE go to DIR.vol2, DIR.vol3, … (e.g. 4GiB).")
@click.option("--sign-key", type=click.Path(path_type=Path, dir_okay=False), metavar="KEY",
              help="PKCS#8 PEM private key: sign SHA256SUMS and bundle.json as `cosign sign-blob` does "
                   "(SHA256SUMS.sig, bundle.json.sig); the policy's bundle: section can require it on import.")
@click.option("--sign-key-password-env", metavar="VAR", help="Environment variable holding KEY's password.")
@_audit_options
@jobs_option
@click.pass_context
@run_guarded
def export_cmd(ctx, policy_path, output, since_bundle, volume_size, sign_key, sign_key_password_env, audit_file,
               wait_lock, jobs):
    """Connected side of an air gap: resolve and verify exactly as `sync` does, then write every
    selected image (and its signatures) into one directory: an OCI image layout with blobs stored
    once, bundle.json and SHA256SUMS (check it with `cd DIR && sha256sum -c SHA256SUMS`).

    \b
    Example:
      regsync export -p policy.yaml -o /media/usb/bundle-2026-11-25
      regsync export -p policy.yaml -o bundle-12-01 --since-bundle bundle-11-25 --volume-size 25GiB
      regsync export -p policy.yaml -o /media/usb/bundle --sign-key /etc/regsync/bundle.key
    """
    from regsync.apply import Outcome
    from regsync.bundle import export_bundle
    from regsync.bundle.packages import export_stand_ins
    from regsync.bundle.signature import signing_key_for
    from regsync.verify.signing import load_private_key

    loaded = load_checked(policy_path)
    key = load_private_key(sign_key, sign_key_password_env, "--sign-key") if sign_key else None
    key = signing_key_for(loaded, key)  # a bundle the far side would refuse is refused here, before any fetch

    def work(endpoints, audit):
        result = export_bundle(loaded, endpoints, output, audit, jobs, since=since_bundle, volume_size=volume_size,
                               sign_key=key)
        return Outcome(pushed=result["exported"], refused=result["refused"], failed=result["failed"],
                       bytes=result["bytes"])

    # package targets are across the gap: export plans every selected file as absent there
    return run_with_audit(ctx, loaded, "export", work, RunOptions(audit_file, wait_lock, jobs=jobs,
                                                                   sources=lambda audit: export_stand_ins(loaded)))


@cli.command("import")
@click.argument("bundle", type=click.Path(path_type=Path, exists=True, file_okay=False))
@click.argument("more_blobs", nargs=-1, type=click.Path(path_type=Path, exists=True, file_okay=False))
@policy_option
@_audit_options
@jobs_option
@click.pass_context
@run_guarded
def import_cmd(ctx, bundle, more_blobs, policy_path, audit_file, wait_lock, jobs):
    """Air-gapped side: the bundle stands in for the policy's source registries, and the very
    plan → verify → push pipeline of `sync` runs on it: every digest and signature is checked again
    from the bundle alone before anything is pushed; refusals are audited, nothing half-tagged.

    \b
    Example:
      regsync import /media/usb/bundle-2026-11-25 -p policy.yaml
      regsync import bundle-12-01 bundle-12-01.vol2 -p policy.yaml     # a split bundle: every volume

    More directories after BUNDLE hold blobs only: the other volumes of a split bundle, or the
    base bundle of an incremental one.
    """
    from regsync.apply import apply_plan
    from regsync.bundle import open_bundle
    from regsync.resolve import make_plan

    loaded = load_checked(policy_path, offline_sources=True)  # the bundle stands in for the sources

    def work(endpoints, audit):
        return apply_plan(make_plan(loaded, endpoints, jobs), endpoints, audit, jobs)

    # the bundle is opened (its signature checked first) inside the audited run: a refusal is recorded
    return run_with_audit(ctx, loaded, "import", work, RunOptions(
        audit_file, wait_lock, jobs=jobs, sources=lambda audit: open_bundle(bundle, loaded, more_blobs, audit)))


@cli.command("pip-config")
@policy_option
@run_guarded
def pip_config_cmd(policy_path):
    """Print the pip.conf that points pip at the policy's internal index (with its CA file;
    never `trusted-host`, never a password). Only the file goes to stdout; notes go to stderr.
    The same as `client-config --for pip`; `client-config --for uv` prints uv.toml.

    \b
    Example:
      regsync pip-config -p policy.yaml > /etc/pip.conf
    """
    from regsync.clientconfig import print_config
    from regsync.policy import load_policy

    return print_config(load_policy(policy_path).policy, "pip")


def _interrupt(signum, frame):
    # SIGTERM (cron timeout, Kubernetes) takes the same clean path as Ctrl-C.
    raise KeyboardInterrupt


from regsync.verify.commands import verify_cmd  # noqa: E402  (commands living in their own modules)
from regsync.audit.commands import audit_group  # noqa: E402
from regsync.clientconfig import client_config_cmd  # noqa: E402

cli.add_command(verify_cmd)
cli.add_command(audit_group)
cli.add_command(client_config_cmd)


def main() -> None:
    cli(prog_name="regsync")


if __name__ == "__main__":
    main()
