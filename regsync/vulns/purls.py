"""A package URL (purl, as an SBOM lists it) as OSV names the package: its ecosystem, its name in
that ecosystem and its version (docs/vulnerabilities.md). The mapping is OSV's own
(google/osv.dev osv/purl_helpers.py): the purl types golang, npm, cargo, gem, maven (and gradle),
nuget, composer, pypi; deb and apk by their distribution. What no OSV ecosystem names is returned
as a not-covered line, never dropped.
"""

from __future__ import annotations

from packageurl import PackageURL

_SELF = ("oci", "docker")     # the image itself (syft's and Trivy's root package)
# purl type → OSV ecosystem, for the language ecosystems (no release in the ecosystem's name)
LANGUAGES = {"golang": "Go", "npm": "npm", "cargo": "crates.io", "gem": "RubyGems", "maven": "Maven",
             "gradle": "Maven", "nuget": "NuGet", "composer": "Packagist", "pypi": "PyPI"}
_APK = {"alpine": "Alpine", "": "Alpine", "wolfi": "Wolfi", "chainguard": "Chainguard"}


def package_of(purl: PackageURL) -> tuple[str, str, str] | str | None:
    """(ecosystem, name, version) as OSV names them; a not-covered line; None for the image itself.

    OSV's Debian, Ubuntu, Alpine and Wolfi records name source packages: the purl's `upstream`
    qualifier (syft: `upstream=glibc` or `upstream=openssl@3.0.11-1`) is used when it is there."""
    kind, name, version = purl.type, purl.name, purl.version or ""
    shown = f"{kind} {purl.namespace + '/' if purl.namespace else ''}{name} {version}".rstrip()
    if kind in _SELF:
        return None
    if kind in LANGUAGES:
        if not version:
            return f"{shown} (no version in its purl)"
        return _language(LANGUAGES[kind], purl, shown)
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


def _language(ecosystem: str, purl: PackageURL, shown: str) -> tuple[str, str, str] | str:
    namespace, name, version = purl.namespace or "", purl.name, purl.version or ""
    if ecosystem == "Go":
        # the module path (a purl's subpath is a package inside the module, not part of its path);
        # OSV's Go versions have no `v`, and its standard library is "stdlib" at 1.22.1, not go1.22.1
        name = f"{namespace}/{name}" if namespace else name
        version = version.removeprefix("go") if name in ("stdlib", "toolchain") else version
        version = version.removeprefix("v")
    elif ecosystem in ("npm", "Packagist"):
        name = f"{namespace}/{name}" if namespace else name   # @scope/name, vendor/name
    elif ecosystem == "Maven":
        if not namespace:
            return f"{shown} (its purl names no Maven group)"
        name = f"{namespace}:{name}"   # group:artifact
    return ecosystem, name, version


def _os_ecosystem(kind: str, namespace: str, distro: str) -> str | None:
    """Debian:12, Ubuntu:22.04[:LTS], Alpine:v3.16 from a purl's namespace and `distro` qualifier
    (syft: `debian-12`, `alpine-3.16.2`; Trivy: `debian-10.2`, `3.15.0`); Wolfi and Chainguard
    (`pkg:apk/wolfi/…`), rolling distributions OSV names without a release."""
    if kind in ("apk", "alpine") and _APK.get(namespace) in ("Wolfi", "Chainguard"):
        return _APK[namespace]
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


def purl_for(ecosystem: str, name: str, version: str) -> PackageURL:
    """The purl of a package the gate found (the inventory's nested components): package_of's inverse."""
    kind = ecosystem.split(":", 1)[0]
    if kind in ("Debian", "Ubuntu"):
        return PackageURL(type="deb", namespace=kind.lower(), name=name, version=version)
    if kind in ("Alpine", "Wolfi", "Chainguard"):
        return PackageURL(type="apk", namespace=kind.lower(), name=name, version=version)
    purl_type = next((t for t, e in LANGUAGES.items() if e == kind), "generic")
    namespace = None
    if kind == "Maven" and ":" in name:
        namespace, _, name = name.partition(":")
    elif kind in ("Go", "npm", "Packagist") and "/" in name:
        namespace, _, name = name.rpartition("/")
    if kind == "Go" and version[:1].isdigit():
        version = ("go" if name in ("stdlib", "toolchain") else "v") + version
    return PackageURL(type=purl_type, namespace=namespace, name=name, version=version)
