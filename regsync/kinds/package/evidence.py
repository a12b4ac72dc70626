"""What a package file's provenance proves, for the plan and the audit record: its PEP 740
publisher (provenance.py) and, when the rule requires them, its attestations (attestations.py)."""

from __future__ import annotations

from typing import Any

from regsync.endpoints import Endpoints
from regsync.kinds.package.attestations import check_package_attestations
from regsync.kinds.package.provenance import publish_provenance
from regsync.kinds.package.policy import PackageRule


def check_provenance(rule: PackageRule, endpoints: Endpoints, filename: str, digest: str) -> dict[str, Any] | None:
    """Evidence for the audit record (`verified: false` with a reason when optional and not
    verified); None when the rule does not ask. Raises VerificationError when required and not
    verified, RegistryError when the provenance index cannot be reached and provenance is required.
    `require_attestations` (SLSA provenance in the same answer) adds its evidence as `attestations`."""
    evidence = publish_provenance(rule, endpoints, filename, digest)
    if rule.verify.require_attestations:
        evidence = {**(evidence or {}), "attestations": check_package_attestations(rule, endpoints, filename, digest)}
    return evidence
