"""`regsync audit …`: check, query and report on an audit trail from the file alone."""

from __future__ import annotations

from pathlib import Path

import click

import json
from datetime import datetime, timezone

from regsync.audit.events import EVENTS
from regsync.errors import EXIT_OK, EXIT_RUNTIME, UsageError
from regsync.cli.guard import run_guarded
from regsync.times import parse_time


def _regular_files(ctx, param, value):
    """A trail is read twice (the chain, then the records) and seeked: a FIFO or a device is not one."""
    for path in value if isinstance(value, tuple) else (value,):
        if not path.is_file():
            raise click.BadParameter(f"'{path}' is not a regular file (an audit trail is a file regsync wrote)")
    return value


def _trail(fn):
    return click.argument("trail", type=click.Path(path_type=Path, exists=True, dir_okay=False),
                          callback=_regular_files)(fn)


@click.group("audit")
def audit_group():
    """Verify, query and report on audit trails (JSONL)."""


@audit_group.command("verify")
@_trail
@click.option("--key", "key_path", type=click.Path(path_type=Path, exists=True, dir_okay=False),
              help="Public key (PEM) that signed the run-finished records; then every run must be signed by it.")
@click.option("--expect-head", metavar="SHA256",
              help="A record's sha256 kept outside the trail (a head printed earlier, or the metrics' "
                   "regsync_audit_head_info): the trail must still contain it, so cutting runs from the end shows.")
@click.option("--anchor", "anchor_path", type=click.Path(path_type=Path, exists=True, dir_okay=False),
              help="A run's --summary-json file: its audit_head is checked as --expect-head is, with its seq.")
@run_guarded
def verify_cmd(trail, key_path, expect_head, anchor_path):
    """Recompute the hash chain and name the first line that is not what regsync wrote:
    edited, deleted, reordered, a truncated run, (with --key) a forged tail, or (with
    --expect-head/--anchor) whole runs cut from the end.

    \b
    Examples:
      regsync audit verify /var/lib/regsync/audit.jsonl
      regsync audit verify audit.jsonl --key audit-signing.pub --anchor last-run.json
    Exit 0 when intact (printing the head sha256 to keep as the next anchor), 1 when broken.
    """
    from regsync.audit.chain import anchor_problem, verify_chain
    from regsync.lock import lock_path, run_lock_held
    from regsync.trust.keys import load_public_key

    if expect_head and anchor_path:
        raise UsageError("give --expect-head or --anchor, not both")
    anchor, anchor_seq = _anchor_of(anchor_path) if anchor_path else (_sha256_arg(expect_head), None)
    key = load_public_key(key_path, "--key") if key_path else None
    report = verify_chain(trail, key, anchor)
    running = report.open_run if report.open_run and run_lock_held(trail) else None
    if running:  # the open run's records are checked like the rest; its run-finished is yet to come
        report.broken_line = None
        report.notes.append(f"run in progress: {running} (another regsync holds {lock_path(trail).name}); "
                            f"verified up to its last record so far")
    problem = anchor_problem(report, anchor, anchor_seq) if report.ok and anchor else None
    if not report.ok or problem:
        click.echo(f"{trail}:{report.broken_line}: {report.reason}" if not report.ok else f"{trail}: {problem}")
        return EXIT_RUNTIME
    signed = f", {report.signed_runs} signed run(s) verified" if key else ""
    click.echo(f"{trail}: intact: {report.lines} records, {report.runs} run(s){signed}; last record {report.last_ts}; "
               f"head sha256 {report.head} (seq {report.last_seq})")
    if anchor and report.anchor_line is not None:  # an anchor not found is the `problem` above
        after = report.lines - report.anchor_line
        click.echo(f"anchor found at line {report.anchor_line}; {after} record(s) after it" if after
                   else "anchor is the last record")
    for note in report.notes:
        click.echo(f"note: {note}")
    return EXIT_OK


def _sha256_arg(value: str | None) -> str | None:
    if value is None:
        return None
    digest = value.lower().removeprefix("sha256:")
    if len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
        raise UsageError(f"--expect-head: '{value}' is not a sha256 (64 hex digits)")
    return digest


def _anchor_of(path: Path) -> tuple[str, int]:
    """(sha256, seq) from a summary JSON that `sync --summary-json` wrote."""
    from regsync.content.files import open_input

    try:
        with open_input(path) as handle:   # a FIFO without a writer reads as empty
            head = json.loads(handle.read(1 << 20))["audit_head"]
        digest = _sha256_arg(head["sha256"])
        if digest is None:
            raise TypeError("no sha256")
        return digest, int(head["seq"])
    except (OSError, ValueError, KeyError, TypeError, OverflowError, RecursionError, UsageError):
        raise UsageError(f"--anchor: {path} is not a summary JSON with an audit_head "
                         "(as `regsync sync --summary-json` writes)") from None


def _when(value: str | None, end_of_day: bool = False) -> datetime | None:
    """A bare date means the whole day: --until 2026-11-01 includes that day's records."""
    if value is None:
        return None
    clock = "23:59:59.999" if end_of_day else "00:00:00"
    try:
        # records are stamped in UTC, and the index compares the text of the stamps
        return parse_time(value if "T" in value else f"{value}T{clock}+00:00").astimezone(timezone.utc)
    except ValueError:
        raise UsageError(f"'{value}' is not a date or time (examples: 2026-11-01, 2026-11-01T02:00:00Z)") from None


@audit_group.command("list")
@_trail
@click.option("--since", help="Records at or after this time (2026-11-01 or an RFC 3339 time).")
@click.option("--until", help="Records at or before this time.")
@click.option("--event", type=click.Choice(["run-started", "run-finished", *EVENTS]), help="Only this event.")
@click.option("--artifact", metavar="PATTERN", help="Shell-style pattern on source or target, e.g. '*pytorch*'.")
@click.option("--run", "run_id", metavar="ID", help="Only this run.")
@click.option("--json", "as_json", is_flag=True, help="One JSON record per line instead of a table.")
@run_guarded
def list_cmd(trail, since, until, event, artifact, run_id, as_json):
    """Query a trail through an SQLite index built next to it (rebuilt whenever the trail changed).

    \b
    Examples:
      regsync audit list audit.jsonl --event refused --since 2026-11-01
      regsync audit list audit.jsonl --artifact '*pytorch-cuda*' --json | jq .artifact.digest
    """
    from regsync.audit.index import open_index, query

    bounds = [_when(since), _when(until, end_of_day=True)]
    db = open_index(trail)
    try:
        records = query(db, since=bounds[0].isoformat(timespec="milliseconds") if bounds[0] else None,
                        until=bounds[1].isoformat(timespec="milliseconds") if bounds[1] else None,
                        event=event, artifact=artifact, run=run_id, raw=as_json)
    finally:
        db.close()
    if as_json:  # the lines as the trail holds them: their sha256 is what the chain and anchors name
        for line in records:
            click.echo(line)
        return EXIT_OK
    from rich.table import Table

    from regsync.console import stdout

    table = Table(title=f"{len(records)} record(s)", title_justify="left")
    for column in ("seq", "time", "run", "event", "artifact", "digest", "reason"):
        table.add_column(column, overflow="fold")
    for r in records:
        artifact_ref = (r.get("artifact") or {}).get("target") or (r.get("artifact") or {}).get("source") or ""
        digest = ((r.get("artifact") or {}).get("digest") or "")[:19]
        table.add_row(str(r["seq"]), r["ts"], r["run_id"], r["event"], artifact_ref, digest, r.get("reason") or "")
    stdout.print(table)
    return EXIT_OK


@audit_group.command("report")
@_trail
@click.option("--html", "html_out", type=click.Path(path_type=Path), help="Write a self-contained HTML report here.")
@click.option("--json", "json_out", type=click.Path(path_type=Path), help="Write the report as JSON here.")
@click.option("--since", help="Only records at or after this time.")
@click.option("--key", "key_path", type=click.Path(path_type=Path, exists=True, dir_okay=False),
              help="Public key that signed the run-finished records; the report says whether they verify.")
@run_guarded
def report_cmd(trail, html_out, json_out, since, key_path):
    """Per run and per artifact: what entered, from where, verified how and by whom, and what was
    refused and why (refusals first). The HTML works offline, sorts, filters and prints.

    \b
    Example:
      regsync audit report /var/lib/regsync/audit.jsonl --html report.html --json report.json
    """
    from regsync.audit.report import build_report, render_html
    from regsync.ops import write_atomically, write_summary

    if not html_out and not json_out:
        raise UsageError("say where the report goes: --html FILE and/or --json FILE")
    from regsync.content.files import check_output_file

    for path, option in ((html_out, "--html"), (json_out, "--json")):
        if path is not None:
            check_output_file(path, option)
    from regsync.trust.keys import load_public_key

    report = build_report(trail, _when(since), load_public_key(key_path, "--key") if key_path else None)
    if html_out:
        write_atomically(html_out, render_html(report))
    if json_out:
        write_summary(json_out, report)
    totals = ", ".join(f"{v} {k}" for k, v in report["totals"].items())
    click.echo(f"{len(report['artifacts'])} artifact(s) in {len(report['runs'])} run(s): {totals}")
    if not report["integrity"]["intact"]:
        # the report is still written (it shows what the file says), but a script must not take it as clean
        click.echo(f"{trail}:{report['integrity']['broken_line']}: {report['integrity']['reason']}", err=True)
        return EXIT_RUNTIME
    return EXIT_OK


@audit_group.command("merge")
@click.argument("trails", nargs=-1, required=True, type=click.Path(path_type=Path, exists=True, dir_okay=False),
                callback=_regular_files)
@click.option("-o", "--output", required=True, type=click.Path(path_type=Path), help="The merged trail (a new file).")
@click.option("--key", "key_path", type=click.Path(path_type=Path, exists=True, dir_okay=False),
              help="Check the inputs' run-finished signatures with this public key first (every run must be signed).")
@click.option("--sign-key", "sign_key_path", type=click.Path(path_type=Path, exists=True, dir_okay=False),
              help="Sign the merged run-finished records with this private key (PKCS#8 PEM, or a cosign.key "
                   "with its password in COSIGN_PASSWORD); needs --key.")
@run_guarded
def merge_cmd(trails, output, key_path, sign_key_path):
    """Join shard trails (e.g. audit-0.jsonl … audit-3.jsonl of an Indexed Job) into one trail
    that `audit verify` accepts. Every input is verified first; runs stay whole, in start order.
    --sign-key signs only what verified under --key.

    \b
    Example:
      regsync audit merge /var/lib/regsync/audit-*.jsonl -o merged.jsonl --key audit.pub --sign-key audit.key
    Exit 0 when merged, 1 when an input does not verify (named by file, line and run), 2 on usage errors.
    """
    from regsync.audit.merge import merge_trails
    from regsync.trust.keys import load_public_key
    from regsync.trust.signing import load_private_key

    key = load_public_key(key_path, "--key") if key_path else None
    sign_key = load_private_key(sign_key_path, None, "--sign-key") if sign_key_path else None
    count = merge_trails(list(trails), output, key, sign_key)
    click.echo(f"{output}: {count} records from {len(trails)} trail(s)")
    return EXIT_OK


@audit_group.command("inventory")
@_trail
@click.option("--format", "fmt", type=click.Choice(["cyclonedx", "spdx", "spdx3"]), default="cyclonedx",
              show_default=True,
              help="cyclonedx: CycloneDX 1.6 JSON (Dependency-Track, Grype and Trivy read it); "
                   "spdx: SPDX 2.3 JSON (the same artifacts, purls, hashes and nested packages); "
                   "spdx3: SPDX 3.0.1 JSON-LD (the same, each match a security_Vulnerability with its "
                   "CVSS and VEX assessments).")
@click.option("-o", "--output", type=click.Path(path_type=Path), help="Write the BOM here (default: stdout).")
@run_guarded
def inventory_cmd(trail, fmt, output):
    """A bill of materials of what the trail says was imported: each pushed image, wheel and conda
    package with its purl and sha256, how it was verified and who signed it (as evidence), the
    packages the vulnerability gate found inside images (nested), and every known vulnerability
    the gate matched, an ignore's reason as its analysis. Built from the trail alone.

    \b
    Example:
      regsync audit inventory /var/lib/regsync/audit.jsonl --format cyclonedx -o imported.cdx.json
      regsync audit inventory /var/lib/regsync/audit.jsonl --format spdx -o imported.spdx.json
      regsync audit inventory /var/lib/regsync/audit.jsonl --format spdx3 -o imported.spdx3.json
    """
    from regsync.audit.inventory import cyclonedx_bom, imported
    from regsync.content.files import check_output_file
    from regsync.ops import write_atomically

    if output:
        check_output_file(output, "-o")
    artifacts = imported(trail)
    if fmt == "spdx":
        from regsync.audit.spdx import spdx_document

        text = spdx_document(artifacts, trail.name)
    elif fmt == "spdx3":
        from regsync.audit.spdx3 import spdx3_document

        text = spdx3_document(artifacts, trail.name)
    else:
        text = cyclonedx_bom(artifacts)
    if output:
        write_atomically(output, text)
        named = {"spdx": "SPDX 2.3", "spdx3": "SPDX 3.0.1"}.get(fmt, "CycloneDX 1.6")
        click.echo(f"{output}: {len(artifacts)} component(s), {named}", err=True)
    else:
        click.echo(text)
    return EXIT_OK
