"""The verbs that plan and move artifacts: parse, call regsync.runs, print the result.

The library (regsync.runs, the console) is imported inside each verb: `regsync --help` reads this
module for its help text and must not pay for pydantic, requests and rich (issue 16, P9)."""

from __future__ import annotations

from pathlib import Path

import click

from regsync.cli.guard import run_guarded
from regsync.cli.options import (POLICY_HELP, SIZE, Finite, audit_options, jobs_option, policy_option,
                                 rate_option)
from regsync.errors import EXIT_CHANGES, EXIT_OK, EXIT_RUNTIME, UsageError


class PlanGroup(click.Group):
    """`plan` makes a plan; `plan approve|show` work on a saved one (regsync/cli/approvals.py, loaded when named)."""

    LAZY = {"approve": "approve_cmd", "show": "show_cmd"}

    def list_commands(self, ctx):
        return sorted(self.LAZY)

    def get_command(self, ctx, name):
        if name not in self.LAZY:
            return None
        from regsync.cli import approvals

        return getattr(approvals, self.LAZY[name])


@click.group("plan", cls=PlanGroup, invoke_without_command=True, subcommand_metavar="[approve|show] ...")
@click.option("-p", "--policy", "policy_path", type=click.Path(path_type=Path), help=POLICY_HELP)
@click.option("--json", "as_json", is_flag=True, help="Print the plan as JSON instead of a table.")
@click.option("-o", "--output", type=click.Path(path_type=Path), help="Save the plan JSON here (for sync --plan).")
@click.option("--detailed-exitcode", is_flag=True, help="Exit 4 when there are changes to apply, 0 when none.")
@click.option("--bundle", type=click.Path(path_type=Path, exists=True, file_okay=False), multiple=True,
              metavar="DIR", help="Plan an import: this bundle stands in for the sources (repeat for its other "
                                  "volumes); apply it with `regsync import DIR --plan PLAN`.")
@click.option("--compact", is_flag=True, help="Only the changes (copy, update, refuse, errors), one line each: "
              "reasons cut to their first line (all of it with -v or --json).")
@jobs_option
@rate_option
@click.pass_context
def plan_cmd(ctx, policy_path, as_json, output, detailed_exitcode, bundle, compact, jobs, rps):
    """Resolve the policy and diff it against the targets, without writing anything anywhere.
    `plan approve` signs a saved plan for review; `plan show` renders one (docs/approvals.md).

    \b
    Examples:
      regsync plan -p policy.yaml
      regsync plan -p policy.yaml --compact          # what would change, one line each
      regsync plan -p policy.yaml --json | jq '.items[] | select(.action != "skip")'
      regsync plan -p policy.yaml -o plan.json && regsync sync -p policy.yaml --plan plan.json
      regsync plan show plan.json --format markdown
      regsync plan approve plan.json --key reviewer.key -p policy.yaml
    """
    if ctx.invoked_subcommand is None:
        if policy_path is None:
            raise click.UsageError("Missing option '-p' / '--policy'.")
        _plan(policy_path, as_json, output, detailed_exitcode, bundle, compact, jobs, rps)


@run_guarded
def _plan(policy_path, as_json, output, detailed_exitcode, bundle, compact, jobs, rps):
    from regsync import runs
    from regsync.console import render_plan

    if output:
        from regsync.content.files import check_output_file

        check_output_file(output, "-o")   # before resolving, which may take minutes
    plan = runs.plan(policy_path, jobs, rps=rps, bundle=bundle)
    if output:
        plan.save(output)
        from regsync.console import say

        changes = sum(1 for item in plan.items if item.changes)
        say(f"plan written to {output}: {len(plan.items)} item(s), {changes} to apply, {len(plan.errors)} error(s); "
            f"apply exactly this with: regsync sync -p {policy_path} --plan {output}", event="plan-written",
            path=str(output))
    if as_json:
        click.echo(plan.to_json(), nl=False)
    else:
        render_plan(plan, compact, full_reasons=click.get_current_context().find_root().params["verbose"] > 0)
    if plan.errors:
        return EXIT_RUNTIME
    return EXIT_CHANGES if detailed_exitcode and plan.has_changes else EXIT_OK


@click.command("sync")
@policy_option
@click.option("--plan", "plan_path", type=click.Path(path_type=Path),
              help="Apply exactly this saved plan (no re-resolving); refused if the policy or target moved.")
@click.option("--dry-run", is_flag=True, help="Only show the plan (same as `regsync plan`).")
@click.option("--audit-file", type=click.Path(path_type=Path),
              help="Audit JSONL to append to (default: the policy's audit.path, else ./regsync-audit.jsonl).")
@click.option("--shard", metavar="I/N", help="Do only shard I of N of the work (stable hash of the target "
              "reference); e.g. --shard $(JOB_COMPLETION_INDEX)/4 in a Kubernetes Indexed Job.")
@click.option("--wait-lock", type=Finite(0), default=0, metavar="SECONDS",
              help="Wait this long for another run's lock instead of exiting 5 at once.")
@click.option("--max-duration", type=Finite(min=1), metavar="SECONDS",
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
    from regsync import runs
    from regsync.console import render_plan
    from regsync.pipeline.shard import Shard

    if plan_path and dry_run:
        raise UsageError("--plan and --dry-run do not go together")
    shard = Shard.parse(shard) if shard else None
    if plan_path and shard:
        raise UsageError("--shard applies when resolving; a saved plan is applied whole")
    if dry_run:
        render_plan(runs.plan(policy_path, jobs, shard, rps))
        return EXIT_OK
    options = runs.RunOptions(audit_file, wait_lock, max_duration, summary_json, metrics_file, jobs, rps, bandwidth,
                              run_id=ctx.obj["run_id"], progress=_progress(ctx))
    return _summarize(runs.sync(policy_path, options, plan_path, shard), "pushed")


@click.command("export")
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
@audit_options
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
    from regsync import runs

    import time

    options = runs.RunOptions(audit_file, wait_lock, jobs=jobs, run_id=ctx.obj["run_id"])
    started = time.time()
    exit_code = _summarize(runs.export(policy_path, output, options, since_bundle, volume_size, sign_key,
                                       sign_key_password_env), "exported")
    _say_bundle_written(output, started, sign_key)
    return exit_code


def _say_bundle_written(output: Path, started: float, sign_key: Path | None) -> None:
    """What export wrote where: the operator carries this directory (and its volumes) across."""
    from regsync.console import human_size, say

    manifest = output / "bundle.json"
    if not manifest.is_file() or manifest.stat().st_mtime < started - 1:
        return  # interrupted, or nothing exported and an earlier bundle left as it was
    files = [path for path in output.rglob("*") if path.is_file()]
    signed = (f"signed with {sign_key} (bundle.json.sig, SHA256SUMS.sig)"
              if sign_key and (output / "SHA256SUMS.sig").is_file() else "not signed (--sign-key signs it)")
    say(f"bundle written to {output}: {len(files)} file(s), {human_size(sum(f.stat().st_size for f in files))}; "
        f"{signed}; check it with: cd {output} && sha256sum -c SHA256SUMS", event="bundle-written", path=str(output))


@click.command("import")
@click.argument("bundle", type=click.Path(path_type=Path, exists=True, file_okay=False))
@click.argument("more_blobs", nargs=-1, type=click.Path(path_type=Path, exists=True, file_okay=False))
@policy_option
@click.option("--plan", "plan_path", type=click.Path(path_type=Path),
              help="Apply exactly this saved plan (`regsync plan --bundle BUNDLE -o PLAN`); needed, and "
                   "approved, when the policy has approval: {required: N}.")
@click.option("--allow-rollback", is_flag=True,
              help="Import a bundle that is not newer than the last one imported of its export stream (a replay "
                   "would move tags and records back to what it carried); audited.")
@audit_options
@jobs_option
@click.pass_context
@run_guarded
def import_cmd(ctx, bundle, more_blobs, policy_path, plan_path, allow_rollback, audit_file, wait_lock, jobs):
    """Air-gapped side: the bundle stands in for the policy's source registries, and the very
    plan → verify → push pipeline of `sync` runs on it: every digest and signature is checked again
    from the bundle alone before anything is pushed; refusals are audited, nothing half-tagged.

    \b
    Example:
      regsync import /media/usb/bundle-2026-11-25 -p policy.yaml
      regsync import bundle-12-01 bundle-12-01.vol2 -p policy.yaml     # a split bundle: every volume
      regsync import bundle-12-01 -p policy.yaml --plan plan.json      # an approved plan (docs/approvals.md)

    More directories after BUNDLE hold blobs only: the other volumes of a split bundle, or the
    base bundle of an incremental one.

    A bundle older than the last one imported of its export stream (the same policy) is refused,
    exit 2, nothing touched: replaying it would roll tags back. The last bundle may be imported again.
    """
    from regsync import runs

    options = runs.RunOptions(audit_file, wait_lock, jobs=jobs, run_id=ctx.obj["run_id"])
    return _summarize(runs.import_(policy_path, bundle, options, more_blobs, plan_path, allow_rollback), "pushed")


def _progress(ctx):
    from regsync.console import byte_progress

    enabled = ctx.obj["progress"]
    return lambda total: byte_progress(total, enabled)


def _summarize(result, verb: str) -> int:
    """The run's closing line (stderr; with -q only when a human must look) for a runs.RunResult."""
    from regsync.console import human_size, say

    outcome, exit_code = result.outcome, result.exit_code
    if outcome.interrupted:
        say("interrupted: completed work stays completed; the next run finishes the rest", needs_a_human=True)
    reused = f" (+{human_size(outcome.reused)} re-sent from partial downloads a killed run kept)" if outcome.reused else ""
    waited = f"; waited {result.lock_waited:.1f} s for the lock ({result.lock_holder})" if result.lock_holder else ""
    say(f"{outcome.pushed} {verb}, {outcome.skipped} unchanged, {outcome.refused} refused, {outcome.failed} failed; "
        f"{human_size(outcome.bytes)} moved{reused}; audit: {result.audit_path}{waited}",
        needs_a_human=exit_code != EXIT_OK, lock_waited_seconds=round(result.lock_waited, 1),
        event="summary", exit_code=exit_code, pushed=outcome.pushed, unchanged=outcome.skipped,
        refused=outcome.refused, failed=outcome.failed, bytes=outcome.bytes, reused_bytes=outcome.reused,
        audit=str(result.audit_path))
    return exit_code
