"""`audit inventory`: a CycloneDX 1.6 BOM of what the trail says was imported (docs/vulnerabilities.md).

Written with the CycloneDX project's own library (cyclonedx-python-lib): each pushed image, wheel and
conda package is a component with its purl and hash; how it was verified and who signed it is its
evidence; the packages found inside an image are nested components; the gate's matches are the
BOM's vulnerabilities, an ignore's reason as their analysis. Built from the trail alone.
"""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

from regsync.audit.report import build_report

_METHODS = {"CVSS:4": "CVSS_V4", "CVSS:3.1": "CVSS_V3_1", "CVSS:3.0": "CVSS_V3"}


def inventory(trail: Path) -> tuple[str, int]:
    """(the BOM as CycloneDX 1.6 JSON, how many artifacts it lists)."""
    from cyclonedx.model.bom import Bom
    from cyclonedx.model.component import Component, ComponentType
    from cyclonedx.output.json import JsonV1Dot6

    from regsync import __version__

    report = build_report(trail)
    bom = Bom()
    bom.metadata.tools.components.add(Component(type=ComponentType.APPLICATION, name="regsync", version=__version__))
    rows = [row for row in report["artifacts"] if row["decision"] == "pushed"]
    seen: set[str] = set()
    for row in rows:
        component = _component(row)
        if str(component.bom_ref) in seen:   # the same artifact pushed by two runs is one component
            continue
        seen.add(str(component.bom_ref))
        bom.components.add(component)
        for vulnerability in _vulnerabilities(row, component):
            bom.vulnerabilities.add(vulnerability)
    return JsonV1Dot6(bom).output_as_string(indent=2), len(seen)


def _component(row: dict):
    from cyclonedx.model import HashAlgorithm, HashType, Property
    from cyclonedx.model.component import Component, ComponentType
    from cyclonedx.model.component_evidence import (AnalysisTechnique, ComponentEvidence, Identity,
                                                    IdentityField, Method)

    kind, target, digest = row["kind"], row["target"] or row["source"], row["digest"] or ""
    name, version, purl = _identity(kind, target, digest)
    algorithm, _, hexdigest = digest.partition(":")
    hashes = [HashType(alg=HashAlgorithm.SHA_256, content=hexdigest)] if algorithm == "sha256" and hexdigest else []
    methods = [Method(technique=AnalysisTechnique.HASH_COMPARISON, confidence=Decimal(1),
                      value=row["method"] or "sha256")]
    if row["signer"]:
        methods.append(Method(technique=AnalysisTechnique.ATTESTATION, confidence=Decimal(1), value=row["signer"]))
    if row.get("built_by"):
        methods.append(Method(technique=AnalysisTechnique.ATTESTATION, confidence=Decimal(1),
                              value=f"built by {row['built_by']}"))
    evidence = ComponentEvidence(identity=[Identity(field=IdentityField.HASH, confidence=Decimal(1),
                                                    concluded_value=digest or None, methods=methods)])
    properties = [Property(name=f"regsync:{key}", value=str(row[key]))
                  for key in ("source", "target", "run_id", "rule", "signer") if row.get(key)]
    kind_type = ComponentType.CONTAINER if kind == "image" else ComponentType.LIBRARY
    return Component(name=name, version=version, type=kind_type, purl=purl, bom_ref=f"{kind}:{target}",
                     hashes=hashes, evidence=evidence, properties=properties,
                     components=_inside(row, f"{kind}:{target}"))


def _identity(kind: str, target: str, digest: str):
    """(name, version, purl) per the purl spec's oci, pypi and conda types."""
    from packageurl import PackageURL

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

    try:
        _, name, version = python_package(filename)
    except NotCovered:
        name, version = filename, None
    return name, version, PackageURL(type="pypi", name=name, version=version, qualifiers={"file_name": filename})


def _inside(row: dict, parent: str) -> list:
    """An image's packages, as its gate read them from the layers (nested components)."""
    from cyclonedx.model.component import Component
    from packageurl import PackageURL

    found = ((row.get("verification") or {}).get("vulnerabilities") or {}).get("packages") or []
    components = []
    for package in found:
        ecosystem, name, version = package.get("ecosystem", ""), package.get("name", ""), package.get("version", "")
        purl_type = {"PyPI": "pypi", "Debian": "deb", "Ubuntu": "deb", "Alpine": "apk"}.get(ecosystem.split(":")[0],
                                                                                           "generic")
        namespace = ecosystem.split(":")[0].lower() if purl_type in ("deb", "apk") else None
        components.append(Component(name=name, version=version, bom_ref=f"{parent}#{ecosystem}/{name}@{version}",
                                    purl=PackageURL(type=purl_type, namespace=namespace, name=name, version=version)))
    return components


def _vulnerabilities(row: dict, component) -> list:
    from cyclonedx.model import Property
    from cyclonedx.model.impact_analysis import ImpactAnalysisState
    from cyclonedx.model.vulnerability import (BomTarget, Vulnerability, VulnerabilityAnalysis, VulnerabilityRating,
                                               VulnerabilityScoreSource, VulnerabilitySeverity, VulnerabilitySource)

    gate = (row.get("verification") or {}).get("vulnerabilities") or {}
    nested = {(c.name, c.version): str(c.bom_ref) for c in component.components}
    found = []
    for match in gate.get("matches") or []:
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
        ref = nested.get((match.get("package"), match.get("version")), str(component.bom_ref))
        properties = [Property(name="regsync:decision", value=str(match.get("decision")))]
        if match.get("fixed"):
            properties.append(Property(name="regsync:fixed", value=str(match["fixed"])))
        found.append(Vulnerability(
            bom_ref=f"{ref}#{match['id']}", id=match["id"], description=match.get("summary") or None,
            source=VulnerabilitySource(name="OSV", url=f"https://osv.dev/vulnerability/{match['id']}"),
            ratings=ratings, analysis=analysis, affects=[BomTarget(ref=ref)], properties=properties,
            recommendation=f"upgrade to {match['fixed']}" if match.get("fixed") else None))
    return found
