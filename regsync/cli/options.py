"""Options several commands share."""

from __future__ import annotations

from pathlib import Path

import click

from regsync.policy.models import parse_size

POLICY_HELP = "Policy YAML (see examples/quickstart/policy.yaml)."


def policy_option(fn):
    return click.option("-p", "--policy", "policy_path", required=True, type=click.Path(path_type=Path),
                        help=POLICY_HELP)(fn)


class SizeType(click.ParamType):
    name = "size"

    def convert(self, value, param, ctx):
        try:
            return parse_size(value)
        except ValueError as exc:
            self.fail(str(exc), param, ctx)


SIZE = SizeType()


def jobs_option(fn):
    return click.option("-j", "--jobs", default=8, show_default=True, type=click.IntRange(1, 64),
                        help="Parallel transfers and lookups.")(fn)


def rate_option(fn):
    return click.option("--max-requests-per-second", "rps", type=click.FloatRange(min=0.1), metavar="N",
                        help="Limit requests per registry (mirrors that rate-limit hard).")(fn)


def audit_options(fn):
    fn = click.option("--audit-file", type=click.Path(path_type=Path), help="Audit JSONL (default: the policy's).")(fn)
    fn = click.option("--wait-lock", type=click.FloatRange(0), default=0, metavar="SECONDS",
                      help="Wait this long for another run's lock instead of exiting 5.")(fn)
    return fn
