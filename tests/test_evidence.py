"""Evidence (regsync/audit/evidence.py) is what a kind returns and what apply writes as a record's
`verification`; the report reads it back. Reading a record back must lose nothing, whatever the
kind, so the report and a re-export see exactly what the trail says. The records below are the
shapes the three kinds write (taken from trails the suite's runs leave)."""

import json

import pytest

from regsync.audit.evidence import Evidence
from regsync.audit.report import _evidence

IMAGE = {"method": "sha256", "manifests": 3, "blobs": 5, "rechecked": True,
         "crosscheck": {"registry": "mirror", "digest": "sha256:" + "5e" * 32},
         "signature": {"status": "verified", "signature_manifest": "sha256:" + "ab" * 32,
                       "signers": [{"method": "cosign-keyless", "identity": "https://github.com/acme/app/.github/"
                                    "workflows/release.yml@refs/tags/v1", "issuer": "https://token.actions."
                                    "githubusercontent.com", "rekor_log_index": 7}]},
         "attestations": [{"type": "https://slsa.dev/provenance/v1", "status": "verified",
                           "builder_id": "https://github.com/actions/runner", "source_repository": "acme/app"},
                          {"type": "https://spdx.dev/Document", "status": "verified", "sbom_format": "spdx",
                           "sbom_packages": 12}],
         "gates": {"cuda": {"linux/amd64": "11.8"}, "base": "ubuntu:22.04"},
         "buildkit_attestations": {"linux/amd64": ["https://slsa.dev/provenance/v0.2"]},
         "vulnerabilities": {"critical": 0, "high": 1}}
PACKAGE = {"method": "sha256", "against": "mirror index", "hashes_from": "http://127.0.0.1:1/simple/",
           "downloaded_from": "http://127.0.0.1:1/simple/", "rechecked": True,
           "provenance": {"method": "pep740", "verified": True, "trust": "pypi-publishers",
                          "publisher": {"kind": "github", "repository": "acme/widget", "workflow": "release.yml"},
                          "attestations": [{"type": "https://slsa.dev/provenance/v1", "status": "verified",
                                            "builder_id": "https://github.com/actions/runner"}]}}
CONDA = {"method": "md5", "against": "up/linux-64/repodata.json", "size": 1074, "rechecked": True,
         "weak_digest": "the channel gives md5 and size only (weak_digests: allow)",
         "attestation": {"method": "sigstore", "trust": "conda-forge", "identity": "https://github.com/conda-forge/"
                         "feedstock", "issuer": "https://token.actions.githubusercontent.com", "rekor_log_index": 3}}
CONDA_RECORD_ONLY = {"method": "sha256", "against": "up/noarch/repodata.json", "record_only": True}
PUSHED_AFTER_409 = {**PACKAGE, "target": "already had this file with the same sha256 (HTTP 409); not uploaded again"}
REFUSED_EARLY = {"rechecked": True}
OTHER_VERSION = {"method": 1, "gates": "none", "attestations": {"not": "a list"}, "rechecked": "yes"}


@pytest.mark.parametrize("verification", [IMAGE, PACKAGE, CONDA, CONDA_RECORD_ONLY, REFUSED_EARLY, OTHER_VERSION])
def test_a_records_verification_reads_back_whole(verification):
    evidence = Evidence.from_json(json.loads(json.dumps(verification)))
    assert evidence.verification() == verification
    assert Evidence.from_json(PUSHED_AFTER_409).verification(pushed=True) == PUSHED_AFTER_409
    assert "target" not in Evidence.from_json(PUSHED_AFTER_409).verification()   # `verified` never carries it


def test_nothing_verified_is_no_verification():
    """An image exported under a rule that checks no signature: its record says `verification: null`."""
    assert Evidence.from_json(None).verification() is None
    assert Evidence().verification(pushed=True) is None


def test_the_report_reads_every_kinds_evidence_from_the_same_fields():
    image, package, conda = _evidence(IMAGE), _evidence(PACKAGE), _evidence(CONDA)
    assert image == {"method": "sha256, cosign-keyless, cross-check with mirror",
                     "signer": "https://github.com/acme/app/.github/workflows/release.yml@refs/tags/v1 via "
                               "https://token.actions.githubusercontent.com",
                     "gates": "cuda linux/amd64: 11.8; base: ubuntu:22.04",
                     "built_by": "https://github.com/actions/runner from acme/app", "sbom": "spdx (12 packages)"}
    assert package == {"method": "sha256, pep740", "signer": "github publisher acme/widget (release.yml)",
                       "gates": "", "built_by": "https://github.com/actions/runner", "sbom": ""}
    assert conda == {"method": "md5, sigstore attestation",
                     "signer": "https://github.com/conda-forge/feedstock via https://token.actions.githubusercontent.com",
                     "gates": "", "built_by": "", "sbom": ""}
