"""What a kind hands the pipeline for one item, and what apply writes to the audit trail from it
(docs/architecture.md, "The Kind protocol"; the record's shape is the audit record contract,
docs/audit.md, which this type does not change).

`Kind.transfer` returns `Evidence` (pushed) or `AlreadyThere` (the target already holds the item);
`Kind.export` returns `Evidence`. Kinds never write audit records: apply writes `verified`,
`pushed` and `skipped` from these (and `refused`, `failed` from the error a kind raises). The report reads a record's `verification` back into
`Evidence` (`from_json`) and renders it the same way whatever the kind.

Every field is one key of the record's `verification` object, named as the trail has always named
it; `facts` is the kind's own part (an image's manifest and blob counts, where a package's sha256
was read), kept as the kind gives it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

JSON = dict[str, Any]

# The typed keys of a record's `verification`, in the order they are written after `facts`.
_CHECKS = ("crosscheck", "signature", "attestations", "provenance", "attestation", "gates", "vulnerabilities")


@dataclass
class Evidence:
    """What was verified for one item, and what its push moved."""

    method: str | None = None           # the digest checked over the bytes: "sha256", "md5"
    against: str | None = None          # where that digest was read ("pypi index", "<channel>/<subdir>/repodata.json")
    rechecked: bool = False             # every check of the policy's rule run again at apply, the plan unseen
    crosscheck: JSON | None = None      # a second registry served the same digest (images)
    signature: JSON | None = None       # signatures checked against the policy's trust (cosign: images)
    attestations: list[Any] | None = None    # in-toto attestations a rule requires (images)
    provenance: JSON | None = None      # PEP 740 publisher, and its attestations (packages)
    attestation: JSON | None = None     # a Sigstore attestation (CEP 27: conda)
    gates: JSON | None = None           # what each gate saw
    vulnerabilities: JSON | None = None  # the vulnerability gate's findings
    facts: JSON = field(default_factory=dict)   # the kind's own part of `verification`
    # -- the push (apply's `pushed` record; never in `verified`) --
    on_target: str | None = None        # what the target said (a 409 for the same bytes: not uploaded again)
    moved: int | None = None            # bytes this push moved (the record's artifact size), None: the plan's
    carried: JSON = field(default_factory=dict)  # what travelled with it: top-level fields of `pushed`
    checked: bool = True                # False: this push fetched and verified no bytes (a conda record
                                        # patched for a file the target holds): no `verified` record

    def verification(self, pushed: bool = False) -> JSON | None:
        """The record's `verification` object; None when nothing was checked (an image exported under a
        rule that checks no signature). `pushed`: the `pushed` record's, with what the target said."""
        out: JSON = {}
        if self.method is not None:
            out["method"] = self.method
        if self.against is not None:
            out["against"] = self.against
        out.update(self.facts)
        if self.rechecked:
            out["rechecked"] = True
        for name in _CHECKS:
            value = getattr(self, name)
            if value is not None:
                out[name] = value
        if pushed and self.on_target is not None:
            out["target"] = self.on_target
        return out or None

    @classmethod
    def from_json(cls, verification: JSON | None) -> "Evidence":
        """A record's (or a plan item's) `verification` read back; keys it does not name stay `facts`."""
        found = dict(verification or {})
        evidence = cls()
        # a value of another shape than its key's (a trail from another version) stays a fact: nothing is lost
        for name, shape in (("method", str), ("against", str), ("target", str)):
            if isinstance(found.get(name), shape):
                setattr(evidence, "on_target" if name == "target" else name, found.pop(name))
        if found.get("rechecked") is True:
            evidence.rechecked = found.pop("rechecked")
        for name in _CHECKS:
            value = found.get(name)
            if isinstance(value, list if name == "attestations" else dict):
                setattr(evidence, name, found.pop(name))
        evidence.facts = found
        return evidence

    # -- the same words for every kind: the report's columns, the plan table's "Signed by" --

    def methods(self) -> list[str]:
        """How it was verified: the digest, then each signature, attestation and cross-check."""
        methods = [self.method or ""]
        for signer in _dicts((self.signature or {}).get("signers")):
            methods.append(str(signer.get("method", "signature")))
        if (self.attestation or {}).get("identity"):
            methods.append("sigstore attestation")
        if self.crosscheck:
            methods.append(f"cross-check with {self.crosscheck.get('registry', '?')}")
        if (self.provenance or {}).get("verified"):
            methods.append("pep740")
        return [m for m in dict.fromkeys(methods) if m]

    def signers(self) -> list[str]:
        """Who signed it: a key's trust entry and fingerprint, a keyless identity and its issuer, a publisher."""
        signature, provenance = self.signature or {}, self.provenance or {}
        signers = []
        for signer in _dicts(signature.get("signers")):
            if signer.get("key_fingerprint"):
                signers.append(f"{signer.get('trust', 'key')} ({str(signer['key_fingerprint'])[:19]}…)")
            elif signer.get("identity"):
                signers.append(f"{signer['identity']} via {signer.get('issuer', '?')}")
        if signature.get("status") == "unverified":
            signers.append(f"unverified: {signature.get('reason', '')}")
        attestation = self.attestation or {}
        if attestation.get("identity"):
            signers.append(f"{attestation['identity']} via {attestation.get('issuer', '?')}")
        if provenance.get("verified"):
            found = provenance.get("publisher")
            publisher: JSON = found if isinstance(found, dict) else {}
            who = publisher.get("email") or f"{publisher.get('repository', '?')} ({publisher.get('workflow', '?')})"
            signers.append(f"{publisher.get('kind', '?')} publisher {who}")
        elif "verified" in provenance:
            signers.append(f"provenance unverified: {provenance.get('reason', '')}")
        return signers

    def attested(self) -> tuple[list[str], list[str]]:
        """(built by, SBOMs): what the required attestations say, an image's or a package's."""
        built: list[str] = []
        sbom: list[str] = []
        found_in = self.attestations or (self.provenance or {}).get("attestations")
        for found in _dicts(found_in):
            kind = str(found.get("type"))
            if found.get("status") != "verified":
                (sbom if "spdx" in kind or "cyclonedx" in kind else built).append(f"unverified: {found.get('reason', '')}")
            elif found.get("builder_id") or found.get("source_repository"):
                built.append(" from ".join(str(found[k]) for k in ("builder_id", "source_repository") if found.get(k)))
            elif found.get("sbom_format"):
                sbom.append(f"{found['sbom_format']} ({found.get('sbom_packages', 0)} packages)")
        return built, sbom


@dataclass(frozen=True)
class AlreadyThere:
    """What `transfer` returns when the target already holds the item (a saved plan applied again, a
    cron retry): nothing was fetched or pushed; apply writes `skipped` with this reason."""

    reason: str


def _dicts(value: object) -> list[JSON]:
    return [v for v in value if isinstance(v, dict)] if isinstance(value, list) else []
