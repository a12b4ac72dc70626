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
    from tests.fixtures.policies import load_policy

    monkeypatch.setenv("HARBOR_TOKEN", "x")
    monkeypatch.setenv("NEXUS_PASSWORD", "x")
    for policy in sorted((ROOT / "policies").glob("*.yaml")):
        load_policy(policy)


@pytest.mark.parametrize("path", sorted((ROOT / "policies").glob("*.yaml")), ids=lambda p: p.name)
def test_shipped_policies_are_valid(path, monkeypatch):
    from tests.fixtures.policies import load_policy

    for name in ("HARBOR_TOKEN", "NEXUS_PASSWORD"):
        monkeypatch.setenv(name, "not-a-real-secret")
    loaded = load_policy(path)
    assert loaded.policy.images or loaded.policy.packages


def test_the_policy_in_readme_is_valid(tmp_path, monkeypatch):
    import re

    from tests.fixtures.policies import load_policy

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


def _one_image(tmp_path, registry, registry2, unique_repo, oci_dir, audit="audit: {path: audit.jsonl}"):
    from tests.fixtures.oci_layout import seed, write_image
    from tests.fixtures.policies import write_policy

    write_image(oci_dir, "1.0", layer_size=3_000, seed=len(unique_repo))
    seed(registry, unique_repo, "1.0", oci_dir)
    policy = write_policy(tmp_path, registry.url, registry2.url, unique_repo, tags=["1.0"])
    policy.write_text(policy.read_text().replace("audit: {path: audit.jsonl}", audit))
    return policy


def _ran(script, cwd):
    done = run_shell(script, cwd)
    assert done.returncode == 0, f"{script}\n--- stdout\n{done.stdout}\n--- stderr\n{done.stderr}"
    return done


def test_the_daily_commands_in_readme_run(tmp_path, registry, registry2, unique_repo, oci_dir):
    _one_image(tmp_path, registry, registry2, unique_repo, oci_dir)
    done = _ran(doc_example("README.md", "test_the_daily_commands_in_readme_run"), tmp_path)
    assert (tmp_path / "plan.json").exists() and "1 pushed" in done.stderr


def test_the_audit_commands_in_readme_run(tmp_path, registry, registry2, unique_repo, oci_dir):
    from tests.fixtures.policies import run_cli

    _one_image(tmp_path, registry, registry2, unique_repo, oci_dir, "audit: {path: audit.jsonl, sign_key: audit.key}")
    _ran("openssl genpkey -algorithm ed25519 -out audit.key && openssl pkey -in audit.key -pubout -out audit.pub",
         tmp_path)
    for shard in range(2):  # the shard trails `audit merge` joins
        assert run_cli("sync", "-p", tmp_path / "policy.yaml", "--shard", f"{shard}/2",
                       "--audit-file", tmp_path / f"audit-{shard}.jsonl").exit_code == 0
    script = doc_example("README.md", "test_the_audit_commands_in_readme_run")
    done = _ran(script.replace("/var/lib/node_exporter/", ""), tmp_path)
    assert "anchor is the last record" in done.stdout
    assert (tmp_path / "report.html").exists() and (tmp_path / "merged.jsonl").exists()


def test_the_audit_examples_in_docs_audit_md_run(tmp_path, registry, registry2, unique_repo, oci_dir):
    _one_image(tmp_path, registry, registry2, unique_repo, oci_dir,
               "audit: {path: audit.jsonl, sign_key: audit-signing.pem}")
    key = doc_example("docs/audit.md", "test_the_audit_examples_in_docs_audit_md_run (key)")
    script = doc_example("docs/audit.md", "test_the_audit_examples_in_docs_audit_md_run")
    done = _ran(key + script.replace("/var/lib/regsync/", ""), tmp_path)
    assert "1 signed run(s) verified" in done.stdout and (tmp_path / "report.json").exists()


def test_the_airgap_walkthrough_runs(tmp_path, registry, registry2, unique_repo, oci_dir):
    import shutil

    _one_image(tmp_path, registry, registry2, unique_repo, oci_dir)
    key = doc_example("docs/airgap.md", "test_the_airgap_walkthrough_runs (key)")
    check = doc_example("docs/airgap.md", "test_the_airgap_walkthrough_runs (check)")
    if not shutil.which("cosign"):  # not installed here; openssl checks the same signature
        check = "\n".join(line for line in check.splitlines() if not line.startswith("cosign "))
    walk = doc_example("docs/airgap.md", "test_the_airgap_walkthrough_runs")
    readme = doc_example("README.md", "test_the_airgap_walkthrough_runs (readme)")
    local = {"/srv/out/": "", "/media/usb/": "", "/etc/regsync/": "", "/var/lib/regsync/": ""}  # paths of the far side
    for script in (walk, readme):
        for far, here in local.items():
            script = script.replace(far, here)
        _ran(key + check + script, tmp_path)


def test_the_approval_workflow_in_docs_approvals_md_runs(tmp_path, registry, registry2, unique_repo, oci_dir):
    import shutil

    policy = _one_image(tmp_path, registry, registry2, unique_repo, oci_dir)
    policy.write_text(policy.read_text() + "trust:\n  secteam-alice: {cosign_key: alice.pub}\n"
                      "  secteam-bob: {cosign_key: bob.pub}\n"
                      "approval: {required: 2, trust: [secteam-alice, secteam-bob], max_age: 7d}\n")
    keys = doc_example("docs/approvals.md", "test_the_approval_workflow_in_docs_approvals_md_runs (keys)")
    walk = doc_example("docs/approvals.md", "test_the_approval_workflow_in_docs_approvals_md_runs")
    if not shutil.which("cosign"):  # not installed here; openssl checks the same signature
        walk = "\n".join(line for line in walk.splitlines() if not line.startswith("cosign "))
    unapproved = run_shell(keys + walk.split("# 2.")[0] + "regsync sync -p policy.yaml --plan plan.json", tmp_path)
    assert unapproved.returncode == 2 and "has 0 of 2 required approvals" in unapproved.stderr, unapproved.stderr
    done = _ran(keys + walk, tmp_path)
    assert "Verified OK" in done.stdout and "approved: 2 of 2 required" in done.stderr
    assert "1 pushed" in done.stderr
    assert "| image |" in (tmp_path / "change-ticket.md").read_text()
    report = (tmp_path / "report.html").read_text()
    assert "Approved by" in report and "secteam-alice (sha256:" in report and "secteam-bob (sha256:" in report


def _doc_yaml_blocks():
    import re

    for doc in ["README.md", *sorted(p.relative_to(ROOT).as_posix() for p in (ROOT / "docs").glob("*.md"))]:
        text = (ROOT / doc).read_text()
        for match in re.finditer(r"```yaml\n(.*?)```", text, re.S):
            yield pytest.param(match.group(1), id=f"{doc}:{text[:match.start()].count(chr(10)) + 1}")


_SNIPPET_BASE = {  # the names documented snippets refer to without defining them
    "version": 1,
    "registries": {name: {"url": f"https://{name}.example"} for name in ("tuna", "upstream", "upstream-mirror")}
    | {"harbor": {"url": "https://harbor.example", "kind": "harbor"}},
    "indexes": {"internal": {"url": "https://internal.example/simple/"}},
    "trust": {"release-key": {"cosign_key": "keys/cosign.pub"},
              "pypi-publishers": {"keyless": {"issuer": "https://token.actions.githubusercontent.com",
                                              "identity_regex": "^https://github.com/"},
                                  "trusted_root": "trust/trusted_root.json"}},
    "images": [{"from": "upstream/library/python", "to": "harbor/base/python", "tags": {"include": ["3.12"]}}],
}


@pytest.mark.parametrize("block", list(_doc_yaml_blocks()))
def test_every_policy_snippet_in_the_docs_is_valid(block, tmp_path):
    """Each ```yaml block of README.md and docs/, completed with the names it refers to (an indented
    block is part of a package rule), loads as a policy: a key renamed in the code but not in the
    docs fails here."""
    from tests.fixtures.policies import load_policy

    snippet = yaml.safe_load(block)
    merged = dict(_SNIPPET_BASE)
    if block.startswith(" "):  # a fragment of one package rule (the keys it shows, in context)
        merged["indexes"] = {**merged["indexes"], "pypi": {"url": "https://pypi.example/simple/"}}
        snippet = {"packages": [{"from": "pypi", "to": "internal", "requirements": ["widget==1.0"], **snippet}]}
    for key, value in snippet.items():
        merged[key] = {**merged.get(key, {}), **value} if isinstance(value, dict) and key != "audit" else value
    path = tmp_path / "policy.yaml"
    path.write_text(yaml.safe_dump(merged, sort_keys=False))

    class AnyVariable(dict):  # every ${VAR} the docs use, set to a placeholder
        def __contains__(self, name):
            return True

        def __missing__(self, name):
            return "not-a-real-secret"

    load_policy(path, environ=AnyVariable())


def test_the_client_config_synopsis_names_every_client_and_nothing_else():
    """docs/harbor-nexus.md's synopsis (each client's output is run by tests/test_clientconfig.py)."""
    import re

    from regsync.cli.clientconfig import clients

    [line] = re.findall(r"^regsync client-config .*$", (ROOT / "docs/harbor-nexus.md").read_text(), re.M)
    named = line.split("--for ", 1)[1].split("|")
    assert sorted(named) == sorted(clients())
    for client in named:
        accepted(["client-config", "-p", "policy.yaml", "--for", client])


def _real_exit_codes(tmp_path, registry, registry2, unique_repo, oci_dir) -> dict[str, int]:
    """Exit codes of real runs: a refusal, a missing tag, a broken policy, a held lock."""
    from regsync.lock import RunLock, lock_path
    from tests.fixtures.oci_layout import seed, write_image
    from tests.fixtures.policies import run_cli, write_policy

    write_image(oci_dir, "1.0", layer_size=2_000, seed=11)
    seed(registry, unique_repo, "1.0", oci_dir)
    codes = {}
    policy = write_policy(tmp_path, registry.url, registry2.url, unique_repo,
                          tags={"include": ["1.0"], "pin": {"1.0": "sha256:" + "0" * 64}})
    codes["refused"] = run_cli("sync", "-p", policy).exit_code
    policy.write_text(policy.read_text().replace('"pin": {"1.0": "sha256:' + "0" * 64 + '"}', '"pin": {}')
                      .replace('["1.0"]', '["1.0", "9.9"]'))
    codes["failed"] = run_cli("sync", "-p", policy).exit_code
    with RunLock(lock_path(tmp_path / "audit.jsonl")).acquire():
        codes["locked"] = run_cli("sync", "-p", policy, "--wait-lock", "0.5").exit_code
    policy.write_text(policy.read_text().replace("tags:", "tagz:"))
    codes["broken"] = run_cli("sync", "-p", policy).exit_code
    assert codes == {"refused": 3, "failed": 1, "locked": 5, "broken": 2}, codes
    return codes


def _pod_failure_action(policy: dict, container: str, exit_code: int) -> str:
    """What a Job controller does with a pod that failed with `exit_code` (the first rule that matches,
    as pkg/controller/job/pod_failure_policy.go reads them); "Count" when none does."""
    for rule in policy["rules"]:
        on = rule.get("onExitCodes")
        if on and on.get("containerName", container) == container:
            hit = exit_code in on["values"]
            if hit if on["operator"] == "In" else not hit:
                return rule["action"]
    return "Count"


def test_the_cronjob_and_the_systemd_unit_treat_each_real_exit_code_as_documented(tmp_path, registry, registry2,
                                                                                   unique_repo, oci_dir):
    codes = _real_exit_codes(tmp_path, registry, registry2, unique_repo, oci_dir)
    job = list(yaml.safe_load_all((ROOT / "examples/kubernetes/cronjob.yaml").read_text()))[0]["spec"]["jobTemplate"]["spec"]
    assert job["template"]["spec"]["restartPolicy"] == "Never"  # podFailurePolicy requires it
    assert "backoffLimitPerIndex" in job and "backoffLimit" not in job  # FailIndex requires it
    [container] = job["template"]["spec"]["containers"]
    actions = {what: _pod_failure_action(job["podFailurePolicy"], container["name"], code) for what, code in codes.items()}
    # a refusal ends its shard without a retry; a usage error the Job; a held lock is retried uncounted
    assert actions == {"refused": "FailIndex", "failed": "Count", "locked": "Ignore", "broken": "FailJob"}, actions
    assert {"type": "DisruptionTarget"} in [c for r in job["podFailurePolicy"]["rules"] for c in r.get("onPodConditions", [])]

    unit = configparser.ConfigParser(strict=False, interpolation=None)
    unit.read(ROOT / "examples/systemd/regsync.service")
    service = unit["Service"]
    success = {0, *map(int, service["SuccessExitStatus"].split())}
    prevent = set(map(int, service["RestartPreventExitStatus"].split()))
    assert service["Restart"] == "on-failure" and service["Type"] == "oneshot"
    outcome = {what: "success" if code in success else "failed" if code in prevent else "restarted"
               for what, code in codes.items()}
    assert outcome == {"refused": "success", "failed": "restarted", "locked": "restarted", "broken": "failed"}, outcome


def test_the_systemd_unit_passes_systemd_analyze_verify(tmp_path):
    import shutil
    import subprocess

    if not shutil.which("systemd-analyze"):
        pytest.skip("systemd-analyze is not installed")
    text = (ROOT / "examples/systemd/regsync.service").read_text()
    # the unit as installed, but runnable here: an existing binary and user, no secrets file
    text = (text.replace("ExecStart=/opt/regsync/bin/regsync", "ExecStart=/bin/true").replace("User=regsync", "User=root")
            .replace("Group=regsync", "Group=root").replace("EnvironmentFile=/etc/regsync/secrets.env\n", ""))
    (tmp_path / "regsync.service").write_text(text)
    shutil.copy(ROOT / "examples/systemd/regsync.timer", tmp_path / "regsync.timer")
    checked = subprocess.run(["systemd-analyze", "verify", str(tmp_path / "regsync.service")], capture_output=True,
                             text=True, timeout=60)
    assert checked.returncode == 0 and "regsync.service" not in checked.stderr, checked.stderr
