"""The vulnerability half of the policy (docs/vulnerabilities.md): where the offline OSV database is
and how old it may be (`vulnerabilities:`), and the gate a rule applies (`gates: {vulnerabilities:}`)."""

from __future__ import annotations

import re
from datetime import date, datetime, timezone
from typing import Annotated, Literal

from pathlib import Path

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationInfo, field_validator

SEVERITIES = ("none", "low", "medium", "high", "critical")   # CVSS qualitative ratings, in order
Severity = Literal["none", "low", "medium", "high", "critical"]
_DURATION = {"h": 3600, "d": 86400, "w": 7 * 86400}


def parse_duration(value) -> int:
    """'7d' → seconds; units h, d, w (a database's age is counted in days, not seconds)."""
    match = re.fullmatch(r"\s*(\d+)\s*([hdw])\s*", str(value))
    if isinstance(value, bool) or not match:
        raise ValueError(f"'{value}' is not a duration (examples: 36h, 7d, 2w)")
    return int(match.group(1)) * _DURATION[match.group(2)]


class Strict(BaseModel):
    # as regsync.policy.models.Strict, which imports this module (so it cannot be imported here)
    model_config = ConfigDict(extra="forbid", populate_by_name=True, frozen=True)


class VulnDatabase(Strict):
    """The OSV database, as downloaded on the connected side: one folder per ecosystem (PyPI,
    Debian, Ubuntu, …) holding OSV's all.zip or its records as *.json. regsync never downloads it."""

    db: Path
    max_age: Annotated[int, BeforeValidator(parse_duration)] = 7 * 86400

    @field_validator("db")
    @classmethod
    def _relative_to_policy(cls, value: Path, info: ValidationInfo) -> Path:
        base = (info.context or {}).get("base_dir")
        return value if value.is_absolute() or base is None else Path(base) / value


class VulnIgnore(Strict):
    id: str = Field(min_length=1)
    reason: str = Field(min_length=1)
    until: date

    @field_validator("until")
    @classmethod
    def _not_expired(cls, until: date) -> date:
        # an exception someone once accepted is not accepted forever: it lapses loudly, never silently
        if until < datetime.now(timezone.utc).date():
            raise ValueError(f"this ignore expired on {until}: renew it (a new until: and reason:) or remove it")
        return until


class VulnGate(Strict):
    max_severity: Severity = "none"      # refuse an artifact with a known vulnerability rated above this
    fixed_only: bool = False             # count only vulnerabilities with a fixed version available
    unscored_as: Severity = "critical"   # a record without a CVSS vector counts as this
    not_covered: Literal["refuse", "record"] = "refuse"   # what the database cannot answer for is never clean
    ignore: list[VulnIgnore] = []


class PackageGates(Strict):
    vulnerabilities: VulnGate | None = None


def check_vulnerability_references(policy, doc, gates) -> None:
    """A gate needs the database: said at the gate's line, before anything is read. `gates`: the
    kinds' (where, gate) pairs (regsync.policy.section.PolicySection.gates)."""
    if policy.vulnerabilities is not None:
        return
    for where, _ in gates:
        raise doc.error(where, "a vulnerabilities gate needs the database: add vulnerabilities: {db: /path/to/osv} "
                               "(docs/vulnerabilities.md)")
