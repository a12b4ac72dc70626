"""What the cron job and its operator see: quiet when all is well, JSON when asked, and the
summary and metrics files telling the truth about every run (issue 13)."""

import json

from tests.fixtures.oci_layout import seed, write_image
from tests.fixtures.policies import run_cli, write_policy


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


def test_json_logs_are_one_object_per_line_summary_and_errors_included(tmp_path, registry, registry2, unique_repo,
                                                                       oci_dir):
    policy = _policy(tmp_path, registry, registry2, unique_repo, oci_dir)
    result = run_cli("--log-format", "json", "-v", "sync", "-p", policy)
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in result.stderr.splitlines()]  # every line parses
    [summary] = [line["record"]["extra"] for line in lines if line["record"]["extra"].get("event") == "summary"]
    assert (summary["pushed"], summary["exit_code"]) == (1, 0) and summary["bytes"] > 20_000
    broken = tmp_path / "broken.yaml"
    broken.write_text(policy.read_text().replace("tags:", "tagz:"))
    error = run_cli("--log-format", "json", "sync", "-p", broken)
    assert error.exit_code == 2
    [line] = [json.loads(text) for text in error.stderr.splitlines()]
    assert line["record"]["level"]["name"] == "ERROR" and "missing key 'tags'" in line["text"]


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
