"""`regsync audit …`: check, query and report on an audit trail from the file alone."""

from __future__ import annotations

from pathlib import Path

import click

from regsync.errors import EXIT_OK, EXIT_RUNTIME
from regsync.guard import run_guarded


def _trail(fn):
    return click.argument("trail", type=click.Path(path_type=Path, exists=True, dir_okay=False))(fn)


@click.group("audit")
def audit_group():
    """Verify, query and report on audit trails (JSONL)."""


@audit_group.command("verify")
@_trail
@click.option("--key", "key_path", type=click.Path(path_type=Path, exists=True, dir_okay=False),
              help="Public key (PEM) that signed the run-finished records; then every run must be signed by it.")
@run_guarded
def verify_cmd(trail, key_path):
    """Recompute the hash chain and name the first line that is not what regsync wrote:
    edited, deleted, reordered, a truncated run, or (with --key) a forged tail.

    \b
    Examples:
      regsync audit verify /var/lib/regsync/audit.jsonl
      regsync audit verify audit.jsonl --key audit-signing.pub
    Exit 0 when intact, 1 when broken.
    """
    from regsync.audit.chain import verify_chain
    from regsync.verify.keys import load_public_key

    key = load_public_key(key_path, "--key") if key_path else None
    report = verify_chain(trail, key)
    if not report.ok:
        click.echo(f"{trail}:{report.broken_line}: {report.reason}")
        return EXIT_RUNTIME
    signed = f", {report.signed_runs} signed run(s) verified" if key else ""
    click.echo(f"{trail}: intact: {report.lines} records, {report.runs} run(s){signed}")
    for note in report.notes:
        click.echo(f"note: {note}")
    return EXIT_OK
