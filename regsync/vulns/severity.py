"""Severity from a record's CVSS vectors, computed by the `cvss` library (never by hand): the base
score and its qualitative rating (none, low, medium, high, critical). A record with no vector it
can read is *unscored*; the gate decides what that counts as (`unscored_as`)."""

from __future__ import annotations

from dataclasses import dataclass

from regsync.policy.vulns import SEVERITIES

# Newest CVSS version first: where a record gives several, the newest one speaks.
_ORDER = ("CVSS_V4", "CVSS_V3", "CVSS_V2")


@dataclass(frozen=True)
class Severity:
    level: str | None        # none … critical; None when unscored
    score: float | None = None
    vector: str | None = None

    @property
    def rank(self) -> int:
        return SEVERITIES.index(self.level) if self.level else -1


UNSCORED = Severity(None)


def severity_of(record: dict, entry: dict | None = None) -> Severity:
    """The affected entry's own severity when it has one (OSV allows either place), else the record's."""
    for source in ((entry or {}).get("severity"), record.get("severity")):
        found = _best(source if isinstance(source, list) else [])
        if found is not UNSCORED:
            return found
    return UNSCORED


def _best(entries: list) -> Severity:
    by_type = {e.get("type"): e.get("score") for e in entries if isinstance(e, dict)}
    for kind in _ORDER:
        vector = by_type.get(kind)
        if isinstance(vector, str):
            scored = _score(kind, vector)
            if scored is not None:
                return scored
    return UNSCORED


def _score(kind: str, vector: str) -> Severity | None:
    from cvss import CVSS2, CVSS3, CVSS4
    from cvss.exceptions import CVSSError

    try:
        if kind == "CVSS_V4":
            parsed = CVSS4(vector)
            return Severity(parsed.severity.lower(), float(parsed.base_score), vector)
        parsed = CVSS3(vector) if kind == "CVSS_V3" else CVSS2(vector)
        return Severity(parsed.severities()[0].lower(), float(parsed.scores()[0]), vector)
    except (CVSSError, ValueError, KeyError, IndexError):
        return None   # a vector the library cannot read: unscored, and the gate treats it as such


def worst(levels: list[Severity]) -> Severity:
    return max(levels, key=lambda s: (s.rank, s.score or 0.0), default=UNSCORED)
