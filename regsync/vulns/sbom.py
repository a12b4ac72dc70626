"""An image's package list from a verified SBOM attestation (docs/vulnerabilities.md): the purls of
an SPDX 2.x JSON document (`packages[].externalRefs`, referenceType purl) or a CycloneDX JSON BOM
(`components`, nested ones too), as syft, BuildKit's scanner and Trivy write them.

Only those fields are read, by hand: a full SPDX or CycloneDX parser refuses the documents real tools
attach for fields the gate never looks at (syft's SPDX 2.2 `PACKAGE_MANAGER`, Trivy's CycloneDX
1.3), and one unreadable licence would cost the whole list. The purls themselves are read by
`packageurl`. A purl the database cannot answer for (a Go module, an npm package, a deb without
its distribution release) is listed as not covered, never dropped: not covered is not clean.
"""

from __future__ import annotations

from typing import Any

from packageurl import PackageURL

from regsync.trust.intoto import CYCLONEDX, SPDX

SBOM_TYPES = (SPDX, CYCLONEDX)
MAX_PACKAGES = 200_000        # a full desktop distribution lists ~5,000; more is not an image's SBOM
MAX_DEPTH = 32                # CycloneDX components nest
_SELF = ("oci", "docker")     # the image itself (syft's and Trivy's root package)


class NotAnSbom(ValueError):
    """The predicate is not a document of its predicate type (the message says why)."""


def sbom_packages(predicate_type: str, predicate: Any) -> tuple[list[tuple[str, str, str]], list[str]]:
    """((ecosystem, name, version) …, what the database cannot answer for) of one SBOM predicate."""
    if not isinstance(predicate, dict):
        raise NotAnSbom("the predicate is not a JSON object")
    if predicate_type == SPDX:
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
        elif component.get("type") not in ("operating-system", "container", "file"):
            purls.append(f"pkg:generic/{component.get('name') or 'unnamed'}@{component.get('version') or ''}")
        purls += _cyclonedx_purls(component.get("components"), depth + 1)
    return purls


def package_of(purl: PackageURL) -> tuple[str, str, str] | str | None:
    """(ecosystem, name, version) as OSV names them; a not-covered line; None for the image itself.

    OSV's Debian, Ubuntu and Alpine records name source packages: the purl's `upstream` qualifier
    (syft: `upstream=glibc` or `upstream=openssl@3.0.11-1`) is used when it is there."""
    kind, name, version = purl.type, purl.name, purl.version or ""
    shown = f"{kind} {name} {version}".rstrip()
    if kind in _SELF:
        return None
    if kind == "pypi":
        return ("PyPI", name, version) if version else f"{shown} (no version in its purl)"
    qualifiers = purl.qualifiers if isinstance(purl.qualifiers, dict) else {}
    if kind in ("deb", "apk", "alpine"):
        ecosystem = _os_ecosystem(kind, (purl.namespace or "").lower(), str(qualifiers.get("distro", "")))
        if ecosystem is None:
            return f"{shown} (its purl names no distribution release OSV has: {qualifiers.get('distro') or 'none'})"
        upstream = str(qualifiers.get("upstream", ""))
        if upstream:
            source, _, source_version = upstream.partition("@")
            name, version = source or name, source_version or version
        return (ecosystem, name, version) if version else f"{shown} (no version in its purl)"
    return f"{shown} (regsync compares no {kind} versions)"


def _os_ecosystem(kind: str, namespace: str, distro: str) -> str | None:
    """Debian:12, Ubuntu:22.04[:LTS], Alpine:v3.16 from a purl's namespace and `distro` qualifier
    (syft: `debian-12`, `alpine-3.16.2`; Trivy: `debian-10.2`, `3.15.0`)."""
    release = distro.split("-", 1)[1] if "-" in distro else distro
    if not release or not release[0].isdigit():
        return None
    if kind == "deb" and namespace == "debian":
        return f"Debian:{release.split('.')[0]}"
    if kind == "deb" and namespace == "ubuntu":
        year, _, month = release.partition(".")
        # the purl does not say LTS; Ubuntu's LTS releases are the even years' April ones
        lts = month == "04" and year.isdigit() and int(year) % 2 == 0
        return f"Ubuntu:{year}.{month}" + (":LTS" if lts else "")
    if kind in ("apk", "alpine") and namespace in ("alpine", ""):
        return "Alpine:v" + ".".join(release.split(".")[:2])
    return None
