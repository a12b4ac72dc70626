"""Machine-readable results of a run for cron wrappers and monitoring, written atomically."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

from regsync.audit.events import EVENTS
from regsync.content.files import write_atomically


def write_summary(path: Path, summary: dict) -> None:
    write_atomically(path, json.dumps(summary, indent=2) + "\n")


# A run that finished its work: everything was looked at, though something may have been refused
# (exit 3 every night is normal for a policy with one tag that is never signed).
COMPLETED = (0, 3)


def write_metrics(path: Path, *, counts: dict[str, int], bytes_moved: int, duration: float, exit_code: int,
                  audit_head: dict | None = None, by_kind: dict[tuple[str, str], int] | None = None,
                  kinds: tuple[str, ...] = ()) -> None:
    """Prometheus text format for node_exporter's textfile collector. `audit_head` ({"sha256", "seq"}
    of the run's last audit record) is an anchor for `audit verify --expect-head`: a label, as a
    hash is not a number. `by_kind` counts (kind, event); every kind in `kinds` gets its refused and
    failed series, 0 included, so an alert sees a series go back to 0."""
    now = time.time()
    # The last completed and the last clean run outlive the runs after them: carry them over.
    last_completed = now if exit_code in COMPLETED else _previous_value(path, "regsync_last_completed_timestamp_seconds")
    last_success = now if exit_code == 0 else _previous_value(path, "regsync_last_success_timestamp_seconds")
    by_kind = by_kind or {}
    per_kind = sorted({*kinds, *(kind for kind, _ in by_kind)})
    lines = [
        "# HELP regsync_artifacts_total Artifacts by decision in the last run.",
        "# TYPE regsync_artifacts_total gauge",
        *(f'regsync_artifacts_total{{event="{event}"}} {counts.get(event, 0)}' for event in EVENTS),
        "# HELP regsync_kind_artifacts_total Refused and failed artifacts per kind (image, package, conda) in the last run.",
        "# TYPE regsync_kind_artifacts_total gauge",
        *(f'regsync_kind_artifacts_total{{kind="{kind}",event="{event}"}} {by_kind.get((kind, event), 0)}'
          for kind in per_kind for event in ("refused", "failed")),
        "# HELP regsync_bytes_total Bytes moved by the last run.",
        "# TYPE regsync_bytes_total gauge",
        f"regsync_bytes_total {bytes_moved}",
        "# HELP regsync_run_duration_seconds Duration of the last run.",
        "# TYPE regsync_run_duration_seconds gauge",
        f"regsync_run_duration_seconds {duration:.3f}",
        "# HELP regsync_last_run_exit_code Exit code of the last run (0 ok, 1 failure, 3 refused, ...).",
        "# TYPE regsync_last_run_exit_code gauge",
        f"regsync_last_run_exit_code {exit_code}",
        "# HELP regsync_last_run_timestamp_seconds When the last run ended.",
        "# TYPE regsync_last_run_timestamp_seconds gauge",
        f"regsync_last_run_timestamp_seconds {now:.3f}",
    ]
    if last_completed is not None:
        lines += ["# HELP regsync_last_completed_timestamp_seconds When a run last finished its work (exit 0, or 3: "
                  "something refused).",
                  "# TYPE regsync_last_completed_timestamp_seconds gauge",
                  f"regsync_last_completed_timestamp_seconds {last_completed:.3f}"]
    if last_success is not None:
        lines += ["# HELP regsync_last_success_timestamp_seconds When a run last ended clean (exit 0: nothing refused).",
                  "# TYPE regsync_last_success_timestamp_seconds gauge",
                  f"regsync_last_success_timestamp_seconds {last_success:.3f}"]
    if audit_head is not None:
        lines += ["# HELP regsync_audit_head_info The last audit record the last run wrote (for audit verify --expect-head).",
                  "# TYPE regsync_audit_head_info gauge",
                  f'regsync_audit_head_info{{sha256="{audit_head["sha256"]}",seq="{audit_head["seq"]}"}} 1']
    write_atomically(path, "\n".join(lines) + "\n")


def _previous_value(path: Path, name: str) -> float | None:
    try:
        match = re.search(rf"^{name} (\S+)$", path.read_text(), re.MULTILINE)
    except OSError:
        return None
    return float(match.group(1)) if match else None
