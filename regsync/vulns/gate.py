"""The vulnerability gate (`gates: {vulnerabilities: …}`): matches in, a decision out.

Each match is `refused` (rated above max_severity), `ignored` (an ignore entry names one of its
ids; the reason goes into the trail), `no-fix` (fixed_only and no fixed version is known) or
`allowed` (at or below max_severity). Packages the database cannot answer for are `not covered`,
never clean: the gate refuses what it was asked to check and could not.
"""

from __future__ import annotations

from typing import Any

from dataclasses import dataclass, field
from datetime import datetime, timezone

from loguru import logger

from regsync.errors import PolicyError, VerificationError
from regsync.policy.vulns import SEVERITIES, VulnGate
from regsync.vulns.database import OsvDatabase
from regsync.vulns.match import Match, NotCovered, find


class VulnerabilityRefusal(VerificationError):
    """Refused by the gate; `evidence` (every match, the database) goes into the refused record."""

    def __init__(self, reason: str, evidence: dict):
        super().__init__(reason)
        self.evidence = evidence


@dataclass
class Verdict:
    matches: list[tuple[Match, str, str]] = field(default_factory=list)   # (match, decision, note)
    not_covered: list[str] = field(default_factory=list)

    @property
    def refused(self) -> list[Match]:
        return [m for m, decision, _ in self.matches if decision == "refused"]


def judge(matches: list[Match], gate: VulnGate, verdict: Verdict | None = None) -> Verdict:
    verdict = verdict or Verdict()
    today = datetime.now(timezone.utc).date()
    limit = SEVERITIES.index(gate.max_severity)
    for match in matches:
        waiver = next((w for w in gate.ignore if w.id in match.names()), None)
        if waiver is not None and waiver.until < today:  # the policy was loaded before midnight
            raise PolicyError(f"the ignore of {waiver.id} expired on {waiver.until}: renew it or remove it")
        rank = match.severity.rank if match.severity.level else SEVERITIES.index(gate.unscored_as)
        if waiver is not None:
            verdict.matches.append((match, "ignored", f"{waiver.reason} (until {waiver.until})"))
        elif gate.fixed_only and match.fixed is None:
            verdict.matches.append((match, "no-fix", "no fixed version known (fixed_only)"))
        elif rank > limit:
            verdict.matches.append((match, "refused", f"above max_severity {gate.max_severity}"))
        else:
            verdict.matches.append((match, "allowed", f"at or below max_severity {gate.max_severity}"))
    return verdict


def check_packages(db: OsvDatabase, gate: VulnGate, packages: list[tuple[str, str, str]], what: str,
                   not_covered: tuple[str, ...] | list[str] = (), listed: bool = False) -> dict[str, Any]:
    """Gate (ecosystem, name, version) triples found in one artifact; returns the evidence for the
    plan and the audit record, or raises VerificationError naming ids, packages and fixed versions.
    `not_covered`: what the artifact holds that could not be named; `listed`: the evidence lists
    the packages (an image's, for the inventory)."""
    verdict = Verdict(not_covered=list(not_covered))
    for ecosystem, name, version in packages:
        try:
            judge(find(db, ecosystem, name, version), gate, verdict)
        except NotCovered as exc:
            verdict.not_covered.append(f"{name} {version} ({exc})")
    evidence = evidence_of(db, verdict, sorted({e.split(":", 1)[0] for e, _, _ in packages} & set(db.ecosystems)))
    if listed:
        evidence["packages"] = [{"ecosystem": e, "name": n, "version": v} for e, n, v in packages]
    for match, decision, note in verdict.matches:  # -v lists every match, whatever the decision
        logger.info("{}: {} {} {}: {} ({}), {}{}", what, match.package, match.version, match.id,
                    match.severity.level or "unscored", decision, note,
                    f"; fixed in {match.fixed}" if match.fixed else "")
    if verdict.refused:
        raise VulnerabilityRefusal(refusal(verdict.refused, gate), evidence)
    if verdict.not_covered and gate.not_covered == "refuse":
        raise VulnerabilityRefusal(f"gate vulnerabilities: not checked: {'; '.join(verdict.not_covered[:5])}"
                                f"{' …' if len(verdict.not_covered) > 5 else ''}: not covered is not clean", evidence)
    return evidence


def refusal(refused: list[Match], gate: VulnGate) -> str:
    """One line naming the ids, the package and the fixed version of each refusing match."""
    parts = []
    for match in refused[:8]:
        rating = (f"{match.severity.level} {match.severity.score}" if match.severity.level
                  else f"unscored, counted as {gate.unscored_as}")
        fix = f"fixed in {match.fixed}" if match.fixed else "no fixed version"
        parts.append(f"{match.package} {match.version}: {', '.join(match.ids)} ({rating}; {fix})")
    more = f" and {len(refused) - 8} more" if len(refused) > 8 else ""
    return f"gate vulnerabilities: known vulnerabilities above max_severity {gate.max_severity}: " \
           f"{'; '.join(parts)}{more}"


def evidence_of(db: OsvDatabase, verdict: Verdict, ecosystems: list[str]) -> dict:
    return {"db": [db.evidence(name) for name in ecosystems] if ecosystems else {"sha256": db.sha256},
            "matches": [{**m.as_dict(), "decision": decision, "note": note} for m, decision, note in verdict.matches],
            **({"not_covered": verdict.not_covered} if verdict.not_covered else {})}
