"""`verify.require_attestations` for package files: attestations from the PEP 740 Integrity API answer.

PEP 740 lets a provenance object carry attestations of any predicate type pypi-attestations knows
(`AttestationType`: PyPI publish v1 and SLSA provenance v1). The publish attestation is what
`verify.attestations` checks (attestations.py); SLSA provenance from the same answer is evaluated
here under the same requirement shape as images (image_attestations.evaluate): the signed
statement's predicate type, one of the requirement's keyless trust entries through sigstore's
Verifier (trusted_root.json, offline), a subject naming this file and its sha256, then `match:`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from regsync.errors import VerificationError
from regsync.endpoints import Endpoints
from regsync.kinds.package.policy import PackageRule
from regsync.policy.models import AttestationRequirement, Trust
from regsync.trust.requirements import evaluate, worst
from regsync.kinds.package.provenance import fetch_provenance, parse_provenance
from regsync.kinds.package.clients import provenance_index
from regsync.trust.intoto import INTOTO_PAYLOAD, Malformed, mismatch, parse_statement, subject_digests, summary
from regsync.trust.failures import Failure

if TYPE_CHECKING:
    from pypi_attestations import Attestation  # 0.3 s to import: only runs that verify provenance pay


@dataclass(frozen=True)
class _Candidate:
    where: str
    attestation: Attestation

    def statement(self) -> dict[str, Any]:
        return parse_statement(self.attestation.envelope.statement)


def check_package_attestations(rule: PackageRule, endpoints: Endpoints, filename: str, digest: str) -> list[Any] | None:
    """Evidence per requirement; raises VerificationError for a `required` one not met, RegistryError
    when the provenance index cannot be reached."""

    if not rule.verify.require_attestations:
        return None
    index = provenance_index(rule, endpoints)
    try:
        url, raw = fetch_provenance(index, filename)
        provenance = parse_provenance(raw, filename, url)
    except VerificationError as exc:  # none served (or unusable): every requirement is missing
        found, missing = [], f"for {filename}: {exc.reason}"
    else:
        found = [_Candidate(f"{url} bundle {b + 1} attestation {a + 1}", attestation)
                 for b, bundle in enumerate(provenance.attestation_bundles)
                 for a, attestation in enumerate(bundle.attestations)]
        missing = f"for {filename} in the PEP 740 provenance at {url}"
    trust = endpoints.policy.trust
    return evaluate(rule.verify.require_attestations, found, missing,
                    lambda wanted, name, candidate, _: _verify(wanted, name, candidate, filename, digest, trust))


def _verify(wanted: AttestationRequirement, name: str, candidate: _Candidate, filename: str, digest: str,
            trust: dict[str, Trust]) -> dict[str, Any] | Failure:
    from pypi_attestations import ConversionError
    from sigstore.errors import Error as SigstoreError

    from regsync.trust.sigstore import signed_by, verifier
    from regsync.trust.keyless import Constraints, Refusal, load_trust_root

    failures = []
    for entry_name in wanted.trust:
        entry = trust[entry_name]
        assert entry.keyless is not None, "policy check: PEP 740 trust entries are keyless"
        try:
            bundle = candidate.attestation.to_bundle()
            payload_type, payload = verifier(load_trust_root(entry, entry_name)).verify_dsse(
                bundle, Constraints(entry_name, entry.keyless))
            if payload_type != INTOTO_PAYLOAD:
                raise Malformed(f"the envelope holds {payload_type[:100]}, not an in-toto statement")
            statement = parse_statement(payload)  # what was signed, not what the answer's JSON says
        except Refusal as exc:
            failures.append(Failure(exc.category, f"{name}: {candidate.where}: {exc.detail}"))
            continue
        except (ConversionError, Malformed) as exc:
            return Failure("malformed statement", f"{name}: {candidate.where}: {exc}")
        except SigstoreError as exc:
            failures.append(Failure("signature invalid", f"{name}: {candidate.where}: "
                                                         f"{str(exc).splitlines()[0][:300]}"))
            continue
        names = [str(s.get("name")) for s in statement["subject"] if isinstance(s, dict)]
        if digest not in subject_digests(statement) or filename not in names:
            about = ", ".join(names[:3]) or "nothing"
            return Failure("subject mismatch", f"{name}: the statement in {candidate.where} is about {about}, "
                                               f"not {filename} ({digest})")
        wrong = mismatch(statement.get("predicate"), wanted.match)
        if wrong is not None:
            return Failure("attestation mismatch", f"{name}: {wrong} (in {candidate.where})")
        return {"type": wanted.type, "status": "verified", "attestation": candidate.where,
                "signer": {"method": "pep740", "trust": entry_name, **signed_by(bundle)}, **summary(statement)}
    return worst(failures)
