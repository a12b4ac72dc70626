"""An image's package list from a verified SBOM attestation (docs/vulnerabilities.md): the purls of
an SPDX 2.x JSON document (`packages[].externalRefs`, referenceType purl), an SPDX 3.0 JSON-LD
document (`software_packageUrl` of the `software_Package` elements in its `@graph`) or a CycloneDX
JSON BOM (`components`, nested ones too), as syft, BuildKit's scanner and Trivy write them.

Only those fields are read, by hand: a full SPDX or CycloneDX parser refuses the documents real tools
attach for fields the gate never looks at (syft's SPDX 2.2 `PACKAGE_MANAGER`, Trivy's CycloneDX
1.3), and one unreadable licence would cost the whole list. The purls themselves are read by
`packageurl` and named as OSV names them by vulns/purls.py. A purl the database cannot answer for
(an rpm, a deb without its distribution release) is listed as not covered, never dropped: not
covered is not clean.
"""

from __future__ import annotations

from typing import Any

from packageurl import PackageURL

from regsync.trust.intoto import CYCLONEDX, SPDX, SPDX3
from regsync.vulns.purls import package_of

SBOM_TYPES = (SPDX, SPDX3, CYCLONEDX)
MAX_PACKAGES = 200_000        # a full desktop distribution lists ~5,000; more is not an image's SBOM
MAX_DEPTH = 32                # CycloneDX components nest


class NotAnSbom(ValueError):
    """The predicate is not a document of its predicate type (the message says why)."""


def sbom_packages(predicate_type: str, predicate: Any) -> tuple[list[tuple[str, str, str]], list[str]]:
    """((ecosystem, name, version) …, what the database cannot answer for) of one SBOM predicate."""
    if not isinstance(predicate, dict):
        raise NotAnSbom("the predicate is not a JSON object")
    if predicate_type == SPDX3 or (predicate_type == SPDX and "@graph" in predicate):
        purls = _spdx3_purls(predicate)   # some tools attach SPDX 3 under the SPDX 2 type
    elif predicate_type == SPDX:
        purls = _spdx_purls(predicate)
    elif predicate_type == CYCLONEDX:
        purls = _cyclonedx_purls(predicate.get("components"), 0)
    else:
        raise NotAnSbom(f"{predicate_type} is not an SBOM type regsync reads")
    found: dict[tuple[str, str, str], None] = {}
    not_covered: dict[str, None] = {}
    for text in purls[:MAX_PACKAGES]:
        try:
            named = package_of(PackageURL.from_string(text))
        except ValueError as exc:
            not_covered[f"{text[:200]} (not a purl: {exc})"] = None
            continue
        if isinstance(named, tuple):
            found[named] = None
        elif named:
            not_covered[named] = None
    if len(purls) > MAX_PACKAGES:
        not_covered[f"{len(purls) - MAX_PACKAGES} more packages than the {MAX_PACKAGES} read"] = None
    return list(found), list(not_covered)


def _spdx_purls(document: dict[str, Any]) -> list[str]:
    if not str(document.get("spdxVersion", "")).startswith("SPDX-2."):
        raise NotAnSbom(f"spdxVersion is {str(document.get('spdxVersion'))[:40]!r}, not SPDX-2.x")
    packages = document.get("packages") or []
    if not isinstance(packages, list):
        raise NotAnSbom("packages is not a list")
    described = {str(d) for d in document.get("documentDescribes") or []}
    described |= {str(r.get("relatedSpdxElement")) for r in document.get("relationships") or []
                  if isinstance(r, dict) and r.get("relationshipType") == "DESCRIBES"}
    purls = []
    for package in packages:
        if not isinstance(package, dict):
            continue
        refs = [r.get("referenceLocator") for r in package.get("externalRefs") or []
                if isinstance(r, dict) and r.get("referenceType") == "purl"]
        refs = [r for r in refs if isinstance(r, str)]
        if refs:
            purls.append(refs[0])
        elif package.get("SPDXID") not in described:   # the document's subject (the image, a folder) is no package
            purls.append(f"pkg:generic/{package.get('name') or 'unnamed'}@{package.get('versionInfo') or ''}")
    return purls


def _spdx3_purls(document: dict[str, Any]) -> list[str]:
    """The purls of an SPDX 3 document's packages, in compact JSON-LD as the SPDX 3 context spells it
    (the serialization SPDX 3.0's spec defines): a package's `software_packageUrl`, else an
    `externalIdentifier` of type `packageUrl`; a package with neither is listed as generic unless it
    is the document's subject (a root element, or what a `describes` relationship points to)."""
    context, graph = document.get("@context"), document.get("@graph")
    contexts = context if isinstance(context, list) else [context]
    if not any(isinstance(c, str) and "spdx.org/rdf/3." in c for c in contexts):
        raise NotAnSbom(f"@context is {str(context)[:80]!r}, not SPDX 3's")
    if not isinstance(graph, list):
        raise NotAnSbom("@graph is not a list")
    elements = [e for e in graph if isinstance(e, dict)]
    subjects: set[str] = set()
    for element in elements:
        if element.get("type") in ("SpdxDocument", "software_Sbom"):
            subjects.update(str(r) for r in _listed(element.get("rootElement")))
        elif element.get("type") == "Relationship" and element.get("relationshipType") == "describes":
            subjects.update(str(r) for r in _listed(element.get("to")))
    purls = []
    for element in elements:
        if element.get("type") != "software_Package":
            continue
        refs = [element.get("software_packageUrl")] + [
            i.get("identifier") for i in _listed(element.get("externalIdentifier"))
            if isinstance(i, dict) and i.get("externalIdentifierType") == "packageUrl"]
        refs = [r for r in refs if isinstance(r, str)]
        if refs:
            purls.append(refs[0])
        elif element.get("spdxId") not in subjects:
            purls.append(f"pkg:generic/{element.get('name') or 'unnamed'}@{element.get('software_packageVersion') or ''}")
    return purls


def _listed(value: Any) -> list:
    return value if isinstance(value, list) else [] if value is None else [value]


def _cyclonedx_purls(components: Any, depth: int) -> list[str]:
    if depth > MAX_DEPTH or not isinstance(components, list):
        return []
    purls = []
    for component in components:
        if not isinstance(component, dict):
            continue
        purl = component.get("purl")
        if isinstance(purl, str):
            purls.append(purl)
        elif component.get("type") not in ("operating-system", "container", "file") and not _trivy_target(component):
            purls.append(f"pkg:generic/{component.get('name') or 'unnamed'}@{component.get('version') or ''}")
        purls += _cyclonedx_purls(component.get("components"), depth + 1)
    return purls


def _trivy_target(component: dict[str, Any]) -> bool:
    """Trivy's scan targets (a lock file, a Go binary: `application` components without a purl,
    marked `aquasecurity:trivy:Class`) group the packages listed beside them; they are none themselves."""
    return any(isinstance(p, dict) and p.get("name") == "aquasecurity:trivy:Class"
               for p in component.get("properties") or [])
