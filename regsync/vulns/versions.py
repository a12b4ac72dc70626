"""Versions and ranges per ecosystem, compared by the libraries made for them: PEP 440 by
`packaging`, dpkg's ordering by `python-debian`; apk's (`_p1`, `-r2`: Alpine, Wolfi, Chainguard),
SemVer 2.0 (Go, npm, crates.io), Maven's, NuGet's and RubyGems' by `univers`; Packagist's (PHP's
version_compare) by vulns/packagist.py. The range walk is OSV's own ("Evaluation" in the OSV
schema): events sorted by version, `introduced` opens, `fixed` and `limit` close at the version,
`last_affected` closes after it; `versions` lists count on their own.
"""

from __future__ import annotations

from collections.abc import Callable

from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

# Ecosystem families regsync compares versions of; each is the name of OSV's folder (its all.zip).
COVERED = ("PyPI", "Debian", "Ubuntu", "Alpine", "Wolfi", "Chainguard",
           "Go", "npm", "crates.io", "Maven", "NuGet", "RubyGems", "Packagist")
_FOLDED = ("NuGet", "Packagist")   # names compared without case (NuGet ids; Composer lower-cases names)
# univers's class per ecosystem. Go's versions are SemVer with a `v` (GolangVersion drops it; OSV's
# Go records have none); npm and crates.io are SemVer 2.0.
_UNIVERS = {"Go": "GolangVersion", "npm": "SemverVersion", "crates.io": "SemverVersion",
            "Maven": "MavenVersion", "NuGet": "NugetVersion", "RubyGems": "RubygemsVersion"}


def family(ecosystem: str) -> str:
    """"Debian:12" → "Debian"; "Ubuntu:22.04:LTS" → "Ubuntu"."""
    return ecosystem.split(":", 1)[0]


def package_key(ecosystem: str, name: str) -> tuple[str, str]:
    """How records and packages meet: PyPI names normalised (PEP 503), NuGet and Packagist names
    without case, others as the ecosystem spells them."""
    kind = family(ecosystem)
    if kind == "PyPI":
        return ecosystem, canonicalize_name(name)
    return (ecosystem, name.lower()) if kind in _FOLDED else (ecosystem, name)


def parser_for(ecosystem: str) -> Callable[[str], object] | None:
    kind = family(ecosystem)
    if kind == "PyPI":
        return Version
    if kind in ("Debian", "Ubuntu"):
        from debian.debian_support import Version as DebianVersion

        return DebianVersion
    if kind in ("Alpine", "Wolfi", "Chainguard"):
        from univers.versions import AlpineLinuxVersion

        return AlpineLinuxVersion
    if kind == "Packagist":
        from regsync.vulns.packagist import PackagistVersion

        return PackagistVersion
    if kind in _UNIVERS:
        import univers.versions

        return getattr(univers.versions, _UNIVERS[kind])
    return None


def parse(parser, text: str):
    try:
        return parser(text)
    except (InvalidVersion, ValueError, TypeError):
        return None
    except Exception:  # noqa: BLE001 — univers raises its own InvalidVersion; any failure means "not a version"
        return None


def affects(entry: dict, version: str, parser) -> tuple[bool, str | None]:
    """(whether `entry` — one `affected` item — covers `version`, the first fixed version above it)."""
    have = parse(parser, version)
    listed = entry.get("versions") or []
    hit = version in listed or (have is not None and any(parse(parser, v) == have for v in listed if isinstance(v, str)))
    fixed: str | None = None
    for found in entry.get("ranges") or []:
        if not isinstance(found, dict) or found.get("type") not in ("ECOSYSTEM", "SEMVER") or have is None:
            continue  # GIT ranges name commits, not versions; an unparsable version is matched by lists only
        inside, fix = _in_range(found.get("events") or [], have, parser)
        hit = hit or inside
        if inside or (hit and fix is not None):
            fixed = fixed or fix
    if hit and fixed is None and have is not None:
        fixed = _next_fix(entry, have, parser)
    return hit, fixed


_LOWEST = (0,)


def _key(value: str, parser):
    if value == "0":
        return _LOWEST
    parsed = parse(parser, value)
    return None if parsed is None else (1, parsed)


def _in_range(events: list, have, parser) -> tuple[bool, str | None]:
    ordered = []
    for event in events:
        if not isinstance(event, dict) or len(event) != 1:
            continue
        (kind, value), = event.items()
        key = _key(str(value), parser)
        if key is not None and kind in ("introduced", "fixed", "last_affected", "limit"):
            ordered.append((key, kind, str(value)))
    ordered.sort(key=lambda e: e[0])
    # Only `<` is used: univers 32's AlpineLinuxVersion answers `>=` by another order than `<`
    # (10.4.3-r0 >= 10.4.25-r0 is True there, and so is 10.4.3-r0 < 10.4.25-r0).
    here = (1, have)
    vulnerable, fixed = False, None
    for key, kind, value in ordered:
        if kind == "introduced" and not here < key:
            vulnerable = True
        elif kind in ("fixed", "limit") and not here < key:
            vulnerable = False
        elif kind == "last_affected" and key < here:
            vulnerable = False
        if kind == "fixed" and here < key and fixed is None and vulnerable:
            fixed = value
    return vulnerable, fixed


def _next_fix(entry: dict, have, parser) -> str | None:
    """The lowest `fixed` above `have` in any range (a version listed as affected, fixed later)."""
    fixes = []
    for found in entry.get("ranges") or []:
        for event in (found.get("events") or []) if isinstance(found, dict) else []:
            if isinstance(event, dict) and "fixed" in event:
                key = _key(str(event["fixed"]), parser)
                if key is not None and (1, have) < key:
                    fixes.append((key, str(event["fixed"])))
    return min(fixes)[1] if fixes else None
