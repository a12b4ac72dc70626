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


def doc_example(doc: str, test_name: str) -> str:
    """The ```sh block right after a `<!-- run by tests/test_examples.py::NAME -->` marker."""
    import re

    marker = f"<!-- run by tests/test_examples.py::{test_name} -->\n```sh\n"
    text = (ROOT / doc).read_text()
    assert marker in text, f"{doc} lost the example {test_name} runs"
    return re.match(r"(.*?)```", text[text.index(marker) + len(marker):], re.S).group(1)


def run_shell(script: str, cwd: Path):
    """bash -e in `cwd`, `regsync` on PATH being this checkout's (the one under test)."""
    import os
    import subprocess
    import sys

    bin_dir = cwd / "bin"
    bin_dir.mkdir(exist_ok=True)
    (bin_dir / "regsync").write_text(f'#!/bin/sh\nexec "{sys.executable}" -m regsync "$@"\n')
    (bin_dir / "regsync").chmod(0o755)
    env = dict(os.environ, PATH=f"{bin_dir}:{os.environ['PATH']}",
               PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    return subprocess.run(["bash", "-euo", "pipefail", "-c", script], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=120)


def test_the_anchor_example_in_docs_audit_md_runs(tmp_path, registry, registry2, unique_repo, oci_dir):
    import zlib

    from tests.fixtures.oci_layout import seed, write_image
    from tests.fixtures.policies import write_policy

    script = doc_example("docs/audit.md", "test_the_anchor_example_in_docs_audit_md_runs")
    for n, tag in enumerate(["a", "b"]):
        write_image(oci_dir, tag, seed=zlib.crc32(f"{unique_repo}{n}".encode()))
        seed(registry, unique_repo, tag, oci_dir)
    write_policy(tmp_path, registry.url, registry2.url, unique_repo, tags=["a", "b"])
    for _ in range(2):  # the second run skips what the first pushed; its anchor replaces the first's
        done = run_shell(script, tmp_path)
        assert done.returncode == 0, done.stderr
    assert "; head sha256 " in done.stdout and "anchor is the last record" in done.stdout

    trail = tmp_path / "audit.jsonl"
    lines = trail.read_bytes().splitlines(keepends=True)
    trail.write_bytes(b"".join(lines[:6]))  # the second run cut off the end: still a valid chain
    verify_line = [line for line in script.splitlines() if line.startswith("regsync audit verify")]
    cut = run_shell("\n".join(verify_line), tmp_path)
    assert cut.returncode == 1
    assert f"before the anchor (seq {len(lines)}): truncated" in cut.stdout
