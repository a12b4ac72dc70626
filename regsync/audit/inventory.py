"""`audit inventory`: what the trail says was imported, as a CycloneDX 1.6 BOM or an SPDX 2.3 or
3.0.1 document (docs/vulnerabilities.md). Built from the trail alone.

The CycloneDX BOM is written with the CycloneDX project's own library (cyclonedx-python-lib): each
pushed image, wheel and conda package is a component with its purl and hash; how it was verified
and who signed it is its evidence; the packages found inside an image are nested components; the
gate's matches are the BOM's vulnerabilities, an ignore's reason as their analysis. The SPDX
documents (audit/spdx.py, audit/spdx3.py) carry the same artifacts, purls, hashes and nested packages.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any

from packageurl import PackageURL

from regsync.audit.report import build_report
from regsync.vulns.purls import purl_for

if TYPE_CHECKING:
    from cyclonedx.model.component import Component
    from cyclonedx.model.vulnerability import Vulnerability

_METHODS = {"CVSS:4": "CVSS_V4", "CVSS:3.1": "CVSS_V3_1", "CVSS:3.0": "CVSS_V3"}


@dataclass(frozen=True)
class Imported:
    """One artifact the trail says was pushed, as both formats name it."""
    row: dict[str, Any]          # the report's row (audit/report.py)
    ref: str                     # `<kind>:<target>`: unique in the inventory
    name: str
    version: str | None
    purl: PackageURL
    sha256: str | None           # hex, when the trail's digest is a sha256

    @property
    def kind(self) -> str:
        return str(self.row["kind"])


@dataclass(frozen=True)
class Inside:
    """A package the vulnerability gate found inside an image."""
    ref: str
    ecosystem: str
    name: str
    version: str
    purl: PackageURL


def imported(trail: Path) -> list[Imported]:
    """Every pushed artifact once (the same artifact pushed by two runs is one), in report order."""
    found: dict[str, Imported] = {}
    for row in build_report(trail)["artifacts"]:
        if row["decision"] != "pushed":
            continue
        kind, target, digest = row["kind"], row["target"] or row["source"], row["digest"] or ""
        ref = f"{kind}:{target}"
        if ref in found:
            continue
        name, version, purl = identity(kind, target, digest)
        algorithm, _, hexdigest = digest.partition(":")
        sha256 = hexdigest if algorithm == "sha256" and re.fullmatch("[0-9a-f]{64}", hexdigest) else None
        found[ref] = Imported(row, ref, name, version, purl, sha256)   # an edited trail's digest is not a hash
    return list(found.values())


def cyclonedx_bom(artifacts: list[Imported]) -> str:
    from cyclonedx.model.bom import Bom
    from cyclonedx.model.component import Component, ComponentType
    from cyclonedx.output.json import JsonV1Dot6

    from regsync import __version__

    bom = Bom()
    bom.metadata.tools.components.add(Component(type=ComponentType.APPLICATION, name="regsync", version=__version__))
    for artifact in artifacts:
        component = _component(artifact)
        bom.components.add(component)
        for vulnerability in _vulnerabilities(artifact, component):
            bom.vulnerabilities.add(vulnerability)
    return str(JsonV1Dot6(bom).output_as_string(indent=2))


def _component(artifact: Imported) -> Component:
    from cyclonedx.model import HashAlgorithm, HashType, Property
    from cyclonedx.model.component import Component, ComponentType
    from cyclonedx.model.component_evidence import (AnalysisTechnique, ComponentEvidence, Identity,
                                                    IdentityField, Method)

    row = artifact.row
    hashes = [HashType(alg=HashAlgorithm.SHA_256, content=artifact.sha256)] if artifact.sha256 else []
    methods = [Method(technique=AnalysisTechnique.HASH_COMPARISON, confidence=Decimal(1),
                      value=row["method"] or "sha256")]
    if row["signer"]:
        methods.append(Method(technique=AnalysisTechnique.ATTESTATION, confidence=Decimal(1), value=row["signer"]))
    if row.get("built_by"):
        methods.append(Method(technique=AnalysisTechnique.ATTESTATION, confidence=Decimal(1),
                              value=f"built by {row['built_by']}"))
    evidence = ComponentEvidence(identity=[Identity(field=IdentityField.HASH, confidence=Decimal(1),
                                                    concluded_value=row["digest"] or None, methods=methods)])
    properties = [Property(name=f"regsync:{key}", value=value) for key, value in properties_of(row)]
    kind_type = ComponentType.CONTAINER if artifact.kind == "image" else ComponentType.LIBRARY
    nested = [Component(name=p.name, version=p.version, bom_ref=p.ref, purl=p.purl) for p in inside(artifact)]
    return Component(name=artifact.name, version=artifact.version, type=kind_type, purl=artifact.purl,
                     bom_ref=artifact.ref, hashes=hashes, evidence=evidence, properties=properties, components=nested)


def properties_of(row: dict[str, Any]) -> list[tuple[str, str]]:
    """The trail's source, target, run and rule of an artifact, and who signed it."""
    return [(key, str(row[key])) for key in ("source", "target", "run_id", "rule", "signer") if row.get(key)]


def identity(kind: str, target: str, digest: str) -> tuple[str, str | None, PackageURL]:
    """(name, version, purl) per the purl spec's oci, pypi and conda types."""
    if kind == "image":
        repository, _, tag = target.rpartition(":") if "@" not in target else (target.split("@")[0], "", "")
        name = repository.rsplit("/", 1)[-1]
        qualifiers = {"repository_url": repository, **({"tag": tag} if tag else {})}
        return name, digest, PackageURL(type="oci", name=name, version=digest, qualifiers=qualifiers)
    filename = target.rsplit("/", 1)[-1]
    if kind == "conda":
        channel, subdir = (target.split("/") + ["", ""])[:2]
        stem = filename.removesuffix(".conda").removesuffix(".tar.bz2")
        name, version, build = (stem.rsplit("-", 2) + ["", ""])[:3]
        return name, version, PackageURL(type="conda", name=name, version=version,
                                         qualifiers={"build": build, "channel": channel, "subdir": subdir,
                                                     "type": "conda" if filename.endswith(".conda") else "tar.bz2"})
    from regsync.vulns.files import python_package
    from regsync.vulns.match import NotCovered

    version_or_none: str | None
    try:
        _, name, version_or_none = python_package(filename)
    except NotCovered:
        name, version_or_none = filename, None
    return name, version_or_none, PackageURL(type="pypi", name=name, version=version_or_none,
                                             qualifiers={"file_name": filename})


def _gate(row: dict[str, Any]) -> dict[str, Any]:
    return ((row.get("verification") or {}).get("vulnerabilities") or {})


def inside(artifact: Imported) -> list[Inside]:
    """An image's packages, as its gate read them from the layers (or a verified SBOM)."""
    found = []
    for package in _gate(artifact.row).get("packages") or []:
        ecosystem, name, version = package.get("ecosystem", ""), package.get("name", ""), package.get("version", "")
        found.append(Inside(f"{artifact.ref}#{ecosystem}/{name}@{version}", ecosystem, name, version,
                            purl_for(ecosystem, name, version)))
    return found


def matches_of(artifact: Imported) -> list[tuple[dict[str, Any], str]]:
    """Each of the gate's matches, with the ref of what it affects (the nested package, else the artifact)."""
    nested = {(p.name, p.version): p.ref for p in inside(artifact)}
    return [(match, nested.get((match.get("package"), match.get("version")), artifact.ref))
            for match in _gate(artifact.row).get("matches") or []]


def _vulnerabilities(artifact: Imported, component: Component) -> list[Vulnerability]:
    from cyclonedx.model import Property, XsUri
    from cyclonedx.model.impact_analysis import ImpactAnalysisState
    from cyclonedx.model.vulnerability import (BomTarget, Vulnerability, VulnerabilityAnalysis, VulnerabilityRating,
                                               VulnerabilityScoreSource, VulnerabilitySeverity, VulnerabilitySource)

    found = []
    for match, ref in matches_of(artifact):
        ratings = []
        if match.get("score") is not None:
            vector = match.get("vector") or ""
            method = next((getattr(VulnerabilityScoreSource, v) for k, v in _METHODS.items() if vector.startswith(k)),
                          VulnerabilityScoreSource.CVSS_V2)
            ratings.append(VulnerabilityRating(score=Decimal(str(match["score"])), method=method, vector=vector,
                                               severity=VulnerabilitySeverity(match["severity"]),
                                               source=VulnerabilitySource(name="OSV")))
        analysis = None
        if match.get("decision") == "ignored":
            analysis = VulnerabilityAnalysis(state=ImpactAnalysisState.IN_TRIAGE,
                                             detail=f"ignored by the regsync policy: {match.get('note', '')}")
        properties = [Property(name="regsync:decision", value=str(match.get("decision")))]
        if match.get("fixed"):
            properties.append(Property(name="regsync:fixed", value=str(match["fixed"])))
        found.append(Vulnerability(
            bom_ref=f"{ref}#{match['id']}", id=match["id"], description=match.get("summary") or None,
            source=VulnerabilitySource(name="OSV", url=XsUri(f"https://osv.dev/vulnerability/{match['id']}")),
            ratings=ratings, analysis=analysis, affects=[BomTarget(ref=ref)], properties=properties,
            recommendation=f"upgrade to {match['fixed']}" if match.get("fixed") else None))
    return found
