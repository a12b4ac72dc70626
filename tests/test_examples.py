"""The shipped operations examples parse, and their command lines are ones regsync accepts."""

import configparser
import shlex
import warnings
from pathlib import Path

import click
import pytest
import yaml

from regsync.cli import cli

ROOT = Path(__file__).resolve().parent.parent


def accepted(argv):
    """Parse (not run) a regsync command line the way click would."""
    with warnings.catch_warnings():  # click 8.2 deprecates protected_args; 8.1 still needs it
        warnings.simplefilter("ignore", DeprecationWarning)
        ctx = cli.make_context("regsync", list(argv), resilient_parsing=False)
        name, command, rest = cli.resolve_command(ctx, ctx.protected_args + ctx.args)
    command.make_context(name, rest, parent=ctx)


def test_the_parse_check_rejects_unknown_options():
    with pytest.raises(click.UsageError):
        accepted(["sync", "-p", "x.yaml", "--no-such-option"])


def test_kubernetes_cronjob_is_indexed_and_sharded():
    docs = list(yaml.safe_load_all((ROOT / "examples/kubernetes/cronjob.yaml").read_text()))
    job = docs[0]["spec"]["jobTemplate"]["spec"]
    assert job["completionMode"] == "Indexed"
    [container] = job["template"]["spec"]["containers"]
    args = [a.replace("$(JOB_COMPLETION_INDEX)", "0") for a in container["args"]]
    assert "--shard" in args and args[args.index("--shard") + 1] == f"0/{job['completions']}"
    accepted(args)


def test_systemd_service_command_line_is_valid():
    unit = configparser.ConfigParser(strict=False, interpolation=None)
    unit.read(ROOT / "examples/systemd/regsync.service")
    argv = shlex.split(unit["Service"]["ExecStart"])
    assert argv[0].endswith("/regsync")
    accepted(argv[1:])
    timer = configparser.ConfigParser(strict=False, interpolation=None)
    timer.read(ROOT / "examples/systemd/regsync.timer")
    assert timer["Timer"]["OnCalendar"]


def test_ready_policies_validate(monkeypatch):
    from regsync.policy import load_policy

    monkeypatch.setenv("HARBOR_TOKEN", "x")
    monkeypatch.setenv("NEXUS_PASSWORD", "x")
    for policy in sorted((ROOT / "policies").glob("*.yaml")):
        load_policy(policy)


@pytest.mark.parametrize("path", sorted((ROOT / "policies").glob("*.yaml")), ids=lambda p: p.name)
def test_shipped_policies_are_valid(path, monkeypatch):
    from regsync.policy import load_policy

    for name in ("HARBOR_TOKEN", "NEXUS_PASSWORD"):
        monkeypatch.setenv(name, "not-a-real-secret")
    loaded = load_policy(path)
    assert loaded.policy.images or loaded.policy.packages


def test_the_policy_in_readme_is_valid(tmp_path, monkeypatch):
    import re

    from regsync.policy import load_policy

    blocks = [b for b in re.findall(r"```yaml\n(.*?)```", (ROOT / "README.md").read_text(), re.S)
              if b.startswith("version: 1")]
    assert blocks
    monkeypatch.setenv("HARBOR_TOKEN", "not-a-real-secret")
    for number, block in enumerate(blocks):
        path = tmp_path / f"readme-{number}.yaml"
        path.write_text(block)
        load_policy(path)
