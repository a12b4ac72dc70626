"""`regsync plan show`: a saved plan as a reviewer reads it before approving it (docs/approvals.md).

One view (the plan file and its hash, the table, the rules the items came from, the approvals seen
beside it, what changed since an older plan) rendered as text for a terminal, as Markdown for a
change ticket, or as JSON for a tool. Every name in a plan came from a server or a file someone may have edited: shown
escaped (control characters) and, in Markdown, with the characters that would break a table or
start markup escaped.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from regsync.approvals.check import NotApproved, judge, parse_plan, refuse_unless_approved
from regsync.approvals.signatures import describe, read_plan_bytes, signature_files
from regsync.errors import one_line, shown
from regsync.pipeline.plan import ItemReader, Plan, PlanItem
from regsync.policy import LoadedPolicy

ACTIONS = ("copy", "update", "skip", "refuse")


@dataclass
class View:
    path: Path
    sha256: str
    plan: Plan
    rules: list[tuple[str, str, dict]] = field(default_factory=list)   # (rule, what it maps, action counts)
    signers: list[str] = field(default_factory=list)
    status: str = ""                                                   # the approval verdict, one line
    approved: bool | None = None                                       # None: not checked
    since: Path | None = None
    changes: list[tuple[str, str, str]] = field(default_factory=list)   # (added|removed|changed, item, detail)


def build_view(plan_path: Path, kinds: Mapping[str, ItemReader], loaded: LoadedPolicy | None = None,
               since: Path | None = None) -> View:
    """`kinds`: what reads each item's own part (regsync.kinds.registry.KINDS)."""
    data = read_plan_bytes(plan_path)
    plan = parse_plan(data, plan_path, kinds)
    view = View(plan_path, hashlib.sha256(data).hexdigest(), plan, since=since)
    view.rules = _rules(plan, loaded)
    _approvals(view, data, loaded)
    if since is not None:
        view.changes = diff(parse_plan(read_plan_bytes(since), since, kinds), plan)
    return view


def _rules(plan: Plan, loaded: LoadedPolicy | None) -> list[tuple[str, str, dict]]:
    counts: dict[str, dict] = {}
    for item in plan.items:
        per_rule = counts.setdefault(item.rule or "(none)", dict.fromkeys(ACTIONS, 0))
        per_rule[item.action] += 1
    return [(name, _rule_text(name, loaded), found) for name, found in counts.items()]


def _rule_text(name: str, loaded: LoadedPolicy | None) -> str:
    """`images[0]` → what that rule of the policy maps, when the policy is at hand (its kind's section says)."""
    match = re.fullmatch(r"(\w+)\[(\d+)\]", name)
    if loaded is None or match is None:
        return ""
    for section in loaded.sections:
        text = section.describe(loaded.policy, match.group(1), int(match.group(2)))
        if text is not None:
            return text
    return ""


def _approvals(view: View, data: bytes, loaded: LoadedPolicy | None) -> None:
    if loaded is None or not loaded.policy.approval.trust:
        view.signers = [f"{path.name}: not checked" for path in signature_files(view.path)]
        view.status = ("approvals not checked: give -p POLICY (with an approval: section)" if loaded is None
                       else "the policy has no approval: section")
        return
    verdict = judge(view.path, data, view.plan, loaded)
    view.signers = [describe(found) for found in verdict.seen]
    required = loaded.policy.approval.required
    try:
        refuse_unless_approved(verdict, view.path, loaded)
    except NotApproved as exc:
        view.status, view.approved = f"NOT APPROVED: {exc}", False
        return
    view.approved = True
    until = f", valid until {verdict.expires.isoformat(timespec='seconds')}" if verdict.expires else ""
    names = ", ".join(key.name for key in verdict.approvers) or "nobody"
    view.status = f"approved: {len(verdict.approvers)} of {required} required (signed by {names}){until}"


def _key(item: PlanItem) -> tuple[str, str]:
    return item.kind, item.target


def diff(old: Plan, new: Plan) -> list[tuple[str, str, str]]:
    """What a reviewer of `new` has not seen in `old`: items added, removed, or with another digest or action."""
    before = {_key(item): item for item in old.items}
    after = {_key(item): item for item in new.items}
    changes = []
    for key, item in after.items():
        was = before.get(key)
        if was is None:
            changes.append(("added", item.target, f"{item.action} {_short(item.digest)}"))
        elif (was.digest, was.action) != (item.digest, item.action):
            changes.append(("changed", item.target, f"{was.action} {_short(was.digest)} -> "
                                                    f"{item.action} {_short(item.digest)}"))
    changes += [("removed", item.target, f"{item.action} {_short(item.digest)}")
                for key, item in before.items() if key not in after]
    return changes


def _short(digest: str) -> str:
    return digest.split(":", 1)[-1][:12] if digest else "-"


def header_lines(view: View) -> list[str]:
    plan = view.plan
    return [f"plan {view.path} (sha256 {view.sha256})",
            f"made {plan.created} from policy sha256 {plan.policy_sha256[:12]}; {len(plan.items)} item(s), "
            f"{len(plan.errors)} error(s)"]


def text_sections(view: View) -> str:
    """Everything after the table (which the console draws), as plain text."""
    lines = ["", "rules:"]
    for name, what, counts in view.rules:
        lines.append(f"  {shown(name)}: {_counts(counts)}" + (f"  ({shown(what, 200)})" if what else ""))
    lines += ["", "approvals:"] + [f"  {line}" for line in view.signers or ["none beside the plan"]]
    lines.append(f"  {view.status}")
    if view.since is not None:
        lines += ["", f"since {view.since}:"]
        lines += [f"  {what:<8}{shown(target, 200)}  {detail}" for what, target, detail in view.changes] or ["  no change"]
    return "\n".join(lines) + "\n"


def markdown(view: View) -> str:
    plan = view.plan
    out = [f"## regsync plan `{_md(view.path.name)}`", "",
           f"- sha256: `{view.sha256}`", f"- made: {_md(plan.created)}",
           f"- policy sha256: `{_md(plan.policy_sha256)}`",
           f"- approvals: {_md(view.status)}", "",
           "| kind | source | target | digest | action | bytes | reason |", "|---|---|---|---|---|---:|---|"]
    for item in plan.items:
        out.append(f"| {_md(item.kind)} | {_md(item.source)} | {_md(item.target)} | `{_short(item.digest)}` | "
                   f"{_md(item.action)} | {item.bytes if item.changes else ''} | {_md(item.reason)} |")
    for error in plan.errors:
        out.append(f"| | {_md(error.source)} | | | error | | {_md(error.reason)} |")
    out += ["", "### Rules", "", "| rule | maps | items |", "|---|---|---|"]
    out += [f"| {_md(name)} | {_md(what)} | {_counts(counts)} |" for name, what, counts in view.rules]
    out += ["", "### Approvals seen", ""] + [f"- {_md(line)}" for line in view.signers or ["none beside the plan"]]
    if view.since is not None:
        out += ["", f"### Changes since `{_md(view.since.name)}`", ""]
        out += [f"- **{what}** {_md(target)}: {_md(detail)}" for what, target, detail in view.changes] or ["- no change"]
    return "\n".join(out) + "\n"


def json_view(view: View) -> str:
    """The plan as regsync writes it (DESIGN.md's plan contract, canonical: a hand-edited file shows
    as `plan -o` would have written it, so it still reads as a plan), plus `review`: what the text
    and Markdown views say beside the table."""
    body = json.loads(view.plan.to_json())
    review: dict = {"plan": str(view.path), "sha256": view.sha256,
                    "rules": [{"rule": name, "maps": what, "items": counts} for name, what, counts in view.rules],
                    "approvals": {"seen": view.signers, "status": view.status, "approved": view.approved}}
    if view.since is not None:
        review["since"] = {"plan": str(view.since), "changes": [
            {"change": what, "target": target, "detail": detail} for what, target, detail in view.changes]}
    return json.dumps({**body, "review": review}, indent=2) + "\n"


def _counts(counts: dict) -> str:
    return ", ".join(f"{number} {action}" for action, number in counts.items() if number) or "none"


def _md(value) -> str:
    """A value inside a Markdown table cell: one line, no markup, no cell break."""
    return re.sub(r"([\\`*_{}\[\]<>|#!~])", r"\\\1", one_line(str(value))[:300])
