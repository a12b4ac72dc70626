"""`regsync plan approve` and `regsync plan show`: sign a saved plan for review, and render one
(docs/approvals.md). The library (regsync.approvals) is imported inside each verb."""

from __future__ import annotations

from pathlib import Path

import click

from regsync.cli.guard import run_guarded
from regsync.cli.options import POLICY_HELP
from regsync.errors import EXIT_OK

_plan_argument = click.argument("plan_path", metavar="PLAN", type=click.Path(path_type=Path, dir_okay=False))


@click.command("approve")
@_plan_argument
@click.option("--key", "key_path", required=True, type=click.Path(path_type=Path, dir_okay=False),
              help="The approver's private key: cosign's cosign.key (password in COSIGN_PASSWORD) or a PKCS#8 PEM key.")
@click.option("--key-password-env", metavar="VAR", help="Environment variable holding a PKCS#8 key's password.")
@click.option("-p", "--policy", "policy_path", type=click.Path(path_type=Path),
              help="Also check what sync will: the plan is this policy's, not expired, and the key an approver's.")
@run_guarded
def approve_cmd(plan_path, key_path, key_password_env, policy_path):
    """Sign PLAN's exact bytes with KEY, as `cosign sign-blob` does, into
    PLAN.approval-<key id>.sig beside it. Each approver signs with their own key; `sync --plan` and
    `import --plan` count the distinct approval.trust keys that signed. Editing the plan afterwards
    voids every approval.

    \b
    Examples:
      regsync plan approve plan.json --key ~/.sigstore/cosign.key -p policy.yaml
      cosign verify-blob --key alice.pub --signature plan.json.approval-*.sig plan.json
    """
    from regsync.approvals.check import approve, load_for_review
    from regsync.kinds.registry import KINDS, SECTIONS
    from regsync.console import say
    from regsync.trust.signing import load_private_key

    loaded = load_for_review(policy_path, SECTIONS) if policy_path else None
    key = load_private_key(key_path, key_password_env, "--key")
    written, key_id = approve(plan_path, key, KINDS, loaded)
    say(f"approved {plan_path} with key {key_id[:19]}…: {written}")
    if loaded is not None and loaded.policy.approval.trust:
        from regsync.approvals.show import build_view

        say(build_view(plan_path, KINDS, loaded).status)
    return EXIT_OK


@click.command("show")
@_plan_argument
@click.option("-p", "--policy", "policy_path", type=click.Path(path_type=Path),
              help=POLICY_HELP + " With it: what each rule maps, and the approvals checked.")
@click.option("--since", type=click.Path(path_type=Path, dir_okay=False), metavar="OLD.json",
              help="An earlier plan: list what was added, removed or changed since.")
@click.option("--format", "fmt", type=click.Choice(["text", "markdown", "json"]), default="text", show_default=True,
              help="markdown: for pasting into a change ticket. json: the plan as `plan --json` prints it "
                   "(canonical), plus a `review` object (file sha256, rules, approvals, changes since).")
@run_guarded
def show_cmd(plan_path, policy_path, since, fmt):
    """Render a saved plan for review: the table, the rules its items came from, the approvals
    found beside it (checked against the policy's approval: section with -p), and with --since what
    changed since an older plan. Reads files only: nothing is contacted.

    \b
    Examples:
      regsync plan show plan.json -p policy.yaml
      regsync plan show plan.json --since last-week.json --format markdown > ticket.md
      regsync plan show plan.json -p policy.yaml --format json | jq .review.approvals
    """
    from regsync.approvals.check import load_for_review
    from regsync.kinds.registry import KINDS, SECTIONS
    from regsync.approvals.show import build_view, header_lines, json_view, markdown, text_sections

    loaded = load_for_review(policy_path, SECTIONS) if policy_path else None
    view = build_view(plan_path, KINDS, loaded, since)
    if fmt in ("markdown", "json"):
        click.echo(markdown(view) if fmt == "markdown" else json_view(view), nl=False)
        return EXIT_OK
    from regsync.console import render_plan

    click.echo("\n".join(header_lines(view)))
    render_plan(view.plan)
    click.echo(text_sections(view), nl=False)
    return EXIT_OK
