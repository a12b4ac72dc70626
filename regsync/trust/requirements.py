"""`require_attestations`, whatever the artifact: each requirement met by the first candidate
attestation that verifies, else refused with the most telling failure (docs/signatures.md)."""

from __future__ import annotations

from regsync.errors import VerificationError
from regsync.policy.models import AttestationRequirement
from regsync.trust.failures import Failure
from regsync.trust.intoto import Malformed

_SEVERITY = {"missing attestation": 0, "wrong key": 1, "untrusted certificate": 1, "identity mismatch": 2,
             "issuer mismatch": 2, "signature invalid": 2, "certificate expired at signing": 3,
             "malformed statement": 3, "subject mismatch": 4, "attestation mismatch": 5}


def evaluate(requirements: list[AttestationRequirement], found: list, missing: str, verify_candidate) -> list:
    """Evidence per requirement; VerificationError for the first `required` one not met (an
    `optional` one records its reason instead). `found` are candidates with `where` and
    `statement()`; `verify_candidate(wanted, name, candidate, statement)` gives evidence or a Failure."""
    results = []
    for n, wanted in enumerate(requirements):
        try:
            results.append(satisfy(wanted, f"require_attestations[{n}]", found, verify_candidate, missing))
        except VerificationError as exc:
            if wanted.mode == "required":
                raise
            results.append({"type": wanted.type, "status": "unverified", "reason": exc.reason})
    return results


def satisfy(wanted: AttestationRequirement, label: str, found: list, verify_candidate, missing: str) -> dict:
    """Evidence of the first attestation meeting the requirement, else VerificationError with the
    most telling failure among those of its predicate type."""
    name = f"{label} ({wanted.type})"
    failures = []
    for candidate in found:
        try:
            statement = candidate.statement()
        except Malformed as exc:
            failures.append(Failure("malformed statement", f"{name}: {candidate.where}: {exc}"))
            continue
        if statement["predicateType"] != wanted.type:
            continue
        outcome = verify_candidate(wanted, name, candidate, statement)
        if isinstance(outcome, dict):
            return outcome
        failures.append(outcome)
    if not failures:
        raise VerificationError(f"missing attestation: {name}: no attestation of this predicate type {missing}")
    raise VerificationError(worst(failures).reason)


def worst(failures: list[Failure]) -> Failure:
    """The most telling of several failures (a verified attestation that says otherwise first)."""
    return max(failures, key=lambda f: _SEVERITY.get(f.category, 0))
