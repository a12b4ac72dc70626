"""The command line: parse, call the library (regsync.runs), render, exit with the documented codes
(README, "Exit codes"). Nothing more: each verb group is a module here.

Start-up is kept short (issue 16, P9: `regsync --version` and `--help` in well under 0.2 s; benchmarks P10): a verb's
module is imported only when that verb is named or help lists it, and the library (pydantic
models, requests, rich, sigstore, pypi-simple) only inside the verb's function.
tests/test_startup.py holds every module here to that."""

from __future__ import annotations

import importlib

import click

from regsync import __version__
from regsync.cli.guard import run_guarded
from regsync.cli.options import policy_option
from regsync.errors import EXIT_OK

# verb → "module:attribute", imported on first use
LAZY_VERBS = {
    "plan": "regsync.cli.verbs:plan_cmd",
    "sync": "regsync.cli.verbs:sync_cmd",
    "export": "regsync.cli.verbs:export_cmd",
    "import": "regsync.cli.verbs:import_cmd",
    "verify": "regsync.cli.verify:verify_cmd",
    "audit": "regsync.cli.audit:audit_group",
    "scan": "regsync.cli.scan:scan_cmd",
    "client-config": "regsync.cli.clientconfig:client_config_cmd",
}


class LazyGroup(click.Group):
    def list_commands(self, ctx):
        return sorted({*super().list_commands(ctx), *LAZY_VERBS})

    def get_command(self, ctx, name):
        if name in LAZY_VERBS and name not in self.commands:
            module, _, attribute = LAZY_VERBS[name].partition(":")
            self.add_command(getattr(importlib.import_module(module), attribute), name)
        return super().get_command(ctx, name)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
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
    import uuid

    # logging (loguru, rich) is set up by run_guarded when a verb runs, not here: this callback
    # also runs for `regsync sync --help`, which should start as fast as `regsync --help`
    ctx.obj = {"run_id": uuid.uuid4().hex[:16], "progress": not no_progress, "logging": (verbose - quiet, log_format)}


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
    from regsync import runs

    loaded = runs.load_checked(policy_path)
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
    if policy.conda:
        from regsync.kinds.conda.rules import describe

        for rule in policy.conda:
            click.echo(f"  conda   {describe(rule)}")
    click.echo(f"  audit:      {policy.audit.path or '(default ./regsync-audit.jsonl)'}")
    if policy.bundle.signature != "off":
        click.echo(f"  bundles:    signature {policy.bundle.signature}, trust {', '.join(policy.bundle.trust)}")
    if policy.approval.trust:
        from regsync.times import format_duration

        approval = policy.approval
        age = f", valid {format_duration(approval.max_age)} after the plan is made" if approval.max_age else ""
        click.echo(f"  approvals:  {approval.required} required of {', '.join(approval.trust)}{age}")
    return EXIT_OK


def _provenance_summary(verify) -> str:
    if verify.attestations == "off":
        return ""
    if verify.publisher is None:
        return "; provenance optional, NOT verified (no publisher/trust entry in the policy)"
    who = verify.publisher.repository or verify.publisher.email
    return f"; provenance {verify.attestations}: {verify.publisher.kind} {who}, trust {verify.trust}"


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
    from regsync.cli.clientconfig import print_config
    from regsync.policy import load_policy

    return print_config(load_policy(policy_path).policy, "pip")


def main() -> None:
    cli(prog_name="regsync")


if __name__ == "__main__":
    main()
