"""What the cron job and its operator see: quiet when all is well, JSON when asked, and the
summary and metrics files telling the truth about every run (issue 13)."""

import json
import re
from pathlib import Path

from tests.fixtures.oci_layout import seed, write_image
from tests.fixtures.policies import run_cli, write_policy

ROOT = Path(__file__).resolve().parent.parent


def _policy(tmp_path, registry, registry2, unique_repo, oci_dir):
    write_image(oci_dir, "1.0", layer_size=20_000, seed=3)
    seed(registry, unique_repo, "1.0", oci_dir)
    return write_policy(tmp_path, registry.url, registry2.url, unique_repo, tags=["1.0"])


def test_quiet_success_prints_nothing_and_a_quiet_refusal_still_speaks(tmp_path, registry, registry2, unique_repo,
                                                                        oci_dir):
    policy = _policy(tmp_path, registry, registry2, unique_repo, oci_dir)
    first = run_cli("-q", "sync", "-p", policy)
    assert first.exit_code == 0 and first.output == ""  # cron mails nothing
    again = run_cli("-q", "sync", "-p", policy)
    assert again.exit_code == 0 and again.output == ""
    loud = run_cli("sync", "-p", policy)
    assert "0 pushed, 1 unchanged, 0 refused, 0 failed; 0 B moved" in loud.stderr
    pinned = policy.read_text().replace('"include": ["1.0"]', '"include": ["1.0"], "pin": {"1.0": "sha256:' + "0" * 64 + '"}')
    policy.write_text(pinned)
    refused = run_cli("-q", "sync", "-p", policy)
    assert refused.exit_code == 3
    assert "1 refused" in refused.stderr  # a refusal needs a human, -q or not


def test_json_logs_are_flat_objects_a_log_pipeline_filters_on(tmp_path, registry, registry2, unique_repo, oci_dir):
    write_image(oci_dir, "1.0", layer_size=20_000, seed=3)
    seed(registry, unique_repo, "1.0", oci_dir)
    write_image(oci_dir, "2.0", layer_size=5_000, seed=4)
    seed(registry, unique_repo, "2.0", oci_dir)
    policy = write_policy(tmp_path, registry.url, registry2.url, unique_repo,
                          tags={"include": ["1.0", "2.0", "9.9"], "pin": {"2.0": "sha256:" + "0" * 64}})
    result = run_cli("--log-format", "json", "-v", "sync", "-p", policy)
    assert result.exit_code == 1, result.output
    lines = [json.loads(line) for line in result.stderr.splitlines()]  # every line parses
    assert lines and all({"ts", "level", "message", "event", "run_id"} <= set(line) for line in lines), lines
    assert not any("record" in line or "text" in line for line in lines)  # no loguru nesting
    by_event = {}
    for line in lines:
        by_event.setdefault(line["event"], []).append(line)
    [pushed] = by_event["pushed"]
    assert (pushed["kind"], pushed["action"], pushed["target"]) == ("image", "copy", f"dst/{unique_repo}:1.0")
    assert pushed["digest"].startswith("sha256:") and pushed["bytes"] > 20_000
    [refused] = by_event["refused"]
    assert (refused["kind"], refused["source"], refused["action"]) == ("image", f"src/{unique_repo}:2.0", "refuse")
    assert refused["target"] == f"dst/{unique_repo}:2.0" and refused["digest"].startswith("sha256:")
    assert "pin" in refused["reason"], refused
    [failed] = by_event["failed"]
    assert failed["kind"] == "image" and failed["reason"] == "tag not found on the source", failed
    [summary] = by_event["summary"]
    assert (summary["pushed"], summary["refused"], summary["failed"], summary["exit_code"]) == (1, 1, 1, 1)
    assert summary["bytes"] > 20_000 and summary["level"] == "NOTICE"
    broken = tmp_path / "broken.yaml"
    broken.write_text(policy.read_text().replace("tags:", "tagz:"))
    error = run_cli("--log-format", "json", "sync", "-p", broken)
    assert error.exit_code == 2
    [line] = [json.loads(text) for text in error.stderr.splitlines()]
    assert (line["level"], line["event"], line["exit_code"]) == ("ERROR", "error", 2)
    assert "missing key 'tags'" in line["message"]


def test_a_quiet_refusal_summary_is_not_labelled_an_error(tmp_path, registry, registry2, unique_repo, oci_dir):
    policy = _policy(tmp_path, registry, registry2, unique_repo, oci_dir)
    policy.write_text(policy.read_text().replace('"include": ["1.0"]',
                                                 '"include": ["1.0"], "pin": {"1.0": "sha256:' + "0" * 64 + '"}'))
    for quiet in ("-q", "-qq"):
        refused = run_cli(quiet, "sync", "-p", policy)
        assert refused.exit_code == 3
        [summary] = [line for line in refused.stderr.splitlines() if "1 refused" in line]
        assert summary.startswith("0 pushed, 0 unchanged, 1 refused"), refused.stderr  # no "ERROR" label


def test_metrics_tell_a_completed_run_from_a_clean_one_per_kind(tmp_path, registry, registry2, unique_repo, oci_dir):
    from prometheus_client.parser import text_string_to_metric_families

    def read():
        families = {f.name: f for f in text_string_to_metric_families(metrics.read_text())}
        values = {s.name: s.value for f in families.values() for s in f.samples if not s.labels}
        kinds = {(s.labels["kind"], s.labels["event"]): s.value for s in families["regsync_kind_artifacts_total"].samples}
        return values, kinds

    policy = _policy(tmp_path, registry, registry2, unique_repo, oci_dir)
    metrics = tmp_path / "regsync.prom"
    assert run_cli("sync", "-p", policy, "--metrics-file", metrics).exit_code == 0
    clean, kinds = read()
    assert clean["regsync_last_completed_timestamp_seconds"] == clean["regsync_last_success_timestamp_seconds"]
    assert kinds == {("image", "refused"): 0, ("image", "failed"): 0}  # a series at 0 for an alert to clear on
    original = policy.read_text()
    policy.write_text(original.replace('"include": ["1.0"]', '"include": ["1.0"], "pin": {"1.0": "sha256:' + "0" * 64 + '"}'))
    assert run_cli("sync", "-p", policy, "--metrics-file", metrics).exit_code == 3
    refused, kinds = read()
    assert refused["regsync_last_completed_timestamp_seconds"] > clean["regsync_last_completed_timestamp_seconds"]
    assert refused["regsync_last_success_timestamp_seconds"] == clean["regsync_last_success_timestamp_seconds"]
    assert kinds[("image", "refused")] == 1 and kinds[("image", "failed")] == 0
    policy.write_text(original.replace('"include": ["1.0"]', '"include": ["1.0", "9.9"]'))
    assert run_cli("sync", "-p", policy, "--metrics-file", metrics).exit_code == 1
    failed, kinds = read()
    assert failed["regsync_last_completed_timestamp_seconds"] == refused["regsync_last_completed_timestamp_seconds"]
    assert failed["regsync_last_run_exit_code"] == 1 and kinds[("image", "failed")] == 1
    # the docs' alert rules name only metrics a run writes
    rules = re.search(r"```yml\ngroups:.*?```", (ROOT / "docs/audit.md").read_text(), re.S).group(0)
    written = set(re.findall(r"^(regsync_\w+)", metrics.read_text(), re.M))
    assert set(re.findall(r"regsync_\w+", rules)) <= written, rules


def test_the_json_log_fields_in_docs_audit_md_are_the_ones_written():
    from regsync.console import JSON_FIELDS

    section = (ROOT / "docs/audit.md").read_text().split("### Logs as JSON", 1)[1].split("\n\n", 2)[2]
    documented = {field for cell in re.findall(r"^\| ([^|]+) \|", section, re.M) for field in re.findall(r"`(\w+)`", cell)}
    assert documented == set(JSON_FIELDS), documented


def test_summary_and_metrics_are_written_for_every_exit(tmp_path, registry, registry2, unique_repo, oci_dir):
    policy = _policy(tmp_path, registry, registry2, unique_repo, oci_dir)
    summary, metrics = tmp_path / "summary.json", tmp_path / "metrics.prom"
    ok = run_cli("sync", "-p", policy, "--summary-json", summary, "--metrics-file", metrics)
    assert ok.exit_code == 0 and json.loads(summary.read_text())["exit_code"] == 0
    policy.write_text(policy.read_text().replace("tags:", "tagz:"))  # the next night, a broken policy
    bad = run_cli("sync", "-p", policy, "--summary-json", summary, "--metrics-file", metrics)
    assert bad.exit_code == 2
    written = json.loads(summary.read_text())
    assert written["exit_code"] == 2 and "missing key 'tags'" in written["error"]
    assert "regsync_last_run_exit_code 2" in metrics.read_text()


def test_the_progress_bar_counts_in_binary_units_like_the_plan_and_the_summary(monkeypatch):
    import io

    from rich.console import Console

    from regsync import console

    screen = io.StringIO()
    monkeypatch.setattr(console, "stderr", Console(file=screen, force_terminal=True, width=120))
    with console.byte_progress(3 << 20, enabled=True) as advance:
        advance(3 << 20)
    drawn = screen.getvalue()
    assert "3.0/3.0 MiB" in drawn and "MB" not in drawn.replace("MiB", ""), drawn
