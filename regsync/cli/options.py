"""Options several commands share."""

from __future__ import annotations

import math
from pathlib import Path

import click

POLICY_HELP = "Policy YAML (see examples/quickstart/policy.yaml)."


def policy_option(fn):
    return click.option("-p", "--policy", "policy_path", required=True, type=click.Path(path_type=Path),
                        help=POLICY_HELP)(fn)


class SizeType(click.ParamType):
    name = "size"

    def convert(self, value, param, ctx):
        from regsync.policy.models import parse_size  # pydantic: only once a size is given

        try:
            return parse_size(value)
        except ValueError as exc:
            self.fail(str(exc), param, ctx)


SIZE = SizeType()


class Finite(click.FloatRange):
    """A float in range that is a number: click's FloatRange lets `nan` through (every comparison with
    it is false), and `inf` or 1e300 seconds overflow the timers that use it."""

    def convert(self, value, param, ctx):
        number = super().convert(value, param, ctx)
        if not math.isfinite(number) or number > MAX_FINITE:
            self.fail(f"{value!r} is not a finite number up to {MAX_FINITE:g}", param, ctx)
        return number


MAX_FINITE = 1e9   # about 31 years; threading.Timer refuses more than threading.TIMEOUT_MAX (~9.2e9 s)


def jobs_option(fn):
    return click.option("-j", "--jobs", default=8, show_default=True, type=click.IntRange(1, 64),
                        help="Parallel transfers and lookups.")(fn)


def rate_option(fn):
    return click.option("--max-requests-per-second", "rps", type=Finite(min=0.1), metavar="N",
                        help="Limit requests per registry (mirrors that rate-limit hard).")(fn)


def audit_options(fn):
    fn = click.option("--audit-file", type=click.Path(path_type=Path), help="Audit JSONL (default: the policy's).")(fn)
    fn = click.option("--wait-lock", type=Finite(0), default=0, metavar="SECONDS",
                      help="Wait this long for another run's lock instead of exiting 5.")(fn)
    return fn
