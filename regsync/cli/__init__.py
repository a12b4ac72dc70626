"""The command line: parse, call the library (regsync.runs), render, exit with the documented codes
(README, "Exit codes"). Nothing more: each verb group is a module here.

Start-up is kept short (issue 16, P9: `regsync --version` and `--help` in well under 0.2 s; benchmarks P10): a verb's
module is imported only when that verb is named or help lists it, and the library (pydantic
models, requests, rich, sigstore, pypi-simple) only inside the verb's function.
tests/test_startup.py holds every module here to that."""

from __future__ import annotations

import importlib
import re

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


# The global options that may also come after the verb (`regsync sync -q -p …`), as cobra-based tools
# (kubectl, helm, skopeo) accept persistent flags anywhere.
GLOBAL_FLAGS = re.compile(r"^(-v+|-q+|--verbose|--quiet|--no-progress)$")
GLOBAL_WITH_VALUE = "--log-format"


def hoist_global_options(group: click.Group, ctx: click.Context, args: list[str]) -> list[str]:
    """`args` with the global options found after the verb moved before it. Only where unambiguous:
    never past `--`, never the value of a verb's own option, never an option the verb defines itself."""
    verb_at = next((i for i, arg in enumerate(args) if not arg.startswith("-")
                    and (i == 0 or args[i - 1] != GLOBAL_WITH_VALUE)), None)
    command = group.get_command(ctx, args[verb_at]) if verb_at is not None else None
    if command is None or verb_at is None:
        return args
    hoisted, kept, i = [], args[:verb_at + 1], verb_at + 1
    while i < len(args):
        arg = args[i]
        own = {name for param in command.params if isinstance(param, click.Option) for name in param.opts}
        takes_value = {name for param in command.params if isinstance(param, click.Option)
                       and not param.is_flag and not param.count for name in param.opts}
        if arg == "--":
            kept += args[i:]
            break
        if isinstance(command, click.Group) and not arg.startswith("-"):
            command = command.get_command(ctx, arg) or command
        if arg in takes_value:
            kept += args[i:i + 2]
            i += 2
            continue
        if arg not in own and GLOBAL_FLAGS.match(arg):
            hoisted.append(arg)
        elif arg not in own and arg == GLOBAL_WITH_VALUE and i + 1 < len(args):
            hoisted += args[i:i + 2]
            i += 1
        elif arg not in own and arg.startswith(GLOBAL_WITH_VALUE + "="):
            hoisted.append(arg)
        else:
            kept.append(arg)
        i += 1
    return args[:verb_at] + hoisted + kept[verb_at:]


class LazyGroup(click.Group):
    def parse_args(self, ctx, args):
        return super().parse_args(ctx, hoist_global_options(self, ctx, args))

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
    """Replicate container images, Python packages and conda packages from public registries,
    package indexes and conda channels into private ones (Harbor, Nexus, distribution, pypiserver,
    devpi, a directory or an HTTP conda channel), driven by a policy: resolve, plan, verify, push, audit.

    \b
    A typical first session:
      regsync policy check -p policy.yaml      # is the policy valid?
      regsync plan -p policy.yaml              # what would move (read-only)
      regsync plan -p policy.yaml -o plan.json # save it for review
      regsync sync -p policy.yaml --plan plan.json   # apply exactly what was reviewed

    \b
    Exit codes: 0 done, 1 runtime failure, 2 usage/policy error, 3 something was refused,
    4 plan --detailed-exitcode found changes, 5 another run holds the lock.
    The options below may also follow the verb: regsync sync -q -p policy.yaml
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
    summaries = [section.summary(policy) for section in loaded.sections]   # each kind's lines
    for line in [line for entries, _ in summaries for line in entries]:
        click.echo(line)
    click.echo(f"  trust:      {', '.join(policy.trust) or '-'}")
    for line in [line for _, rules in summaries for line in rules]:
        click.echo(line)
    click.echo(f"  audit:      {policy.audit.path or '(default ./regsync-audit.jsonl)'}")
    if policy.bundle.signature != "off":
        click.echo(f"  bundles:    signature {policy.bundle.signature}, trust {', '.join(policy.bundle.trust)}")
    if policy.approval.trust:
        from regsync.times import format_duration

        approval = policy.approval
        age = f", valid {format_duration(approval.max_age)} after the plan is made" if approval.max_age else ""
        click.echo(f"  approvals:  {approval.required} required of {', '.join(approval.trust)}{age}")
    return EXIT_OK


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
    from regsync.kinds.registry import SECTIONS
    from regsync.policy import load_policy

    return print_config(load_policy(policy_path, sections=SECTIONS).policy, "pip", sections=SECTIONS)


def main() -> None:
    cli(prog_name="regsync")


if __name__ == "__main__":
    main()
