"""The pattern grammar of a policy: exact, glob:, re:, semver: (tags, and attestation `match:` values).

Version ranges use packaging's PEP 440 specifiers (a well-kept parser) after translating the
semver shorthands users write for image tags: ^1.2, ~1.2, 1.2.x.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Callable

from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.version import InvalidVersion, Version

from regsync.policy.regex import compile_regex

Matcher = Callable[[str], bool]


def loose_version(tag: str) -> Version | None:
    """'v2.9.0', '2.9', '2.9.1rc1' → Version; '2.9-cuda11.8-ubuntu20.04' → None."""
    try:
        return Version(tag[1:] if tag[:1] in "vV" else tag)
    except InvalidVersion:
        return None


def _semver_specifier(expr: str) -> SpecifierSet:
    parts = []
    for token in re.split(r"[,\s]+", expr.strip()):
        if not token:
            continue
        if token[0] in "^~" and token[1:2] != "=":
            base = loose_version(token[1:])
            if base is None:
                raise ValueError(f"'{token}' is not a version range")
            release = list(base.release) + [0] * (3 - len(base.release))
            if token[0] == "^":  # next breaking release: first non-zero component bumps
                bump = next((i for i, n in enumerate(release) if n), len(release) - 1)
            else:  # ~: patch updates when minor is given, minor updates for ~X
                bump = 0 if len(base.release) == 1 else 1
            upper = release[:bump] + [release[bump] + 1]
            parts += [f">={base}", f"<{'.'.join(map(str, upper))}"]
        elif re.fullmatch(r"v?\d+(\.(\d+|[x*]))*", token) and re.search(r"[x*]$", token):
            parts.append("==" + re.sub(r"\.[x*]$", ".*", token.lstrip("v")))
        elif token[0].isdigit() or token[0] in "vV":
            parts.append(f"=={token.lstrip('vV')}")
        else:
            parts.append(re.sub(r"^([<>=!~]+)v", r"\1", token))
    try:
        return SpecifierSet(",".join(parts))
    except InvalidSpecifier:
        raise ValueError(f"'{expr}' is not a version range (examples: >=2.9,<3  ^2.9  2.9.x)") from None


def compile_pattern(pattern: str) -> Matcher:
    """One include/exclude entry → a predicate. Raises ValueError for a bad pattern."""
    kind, sep, body = pattern.partition(":")
    if not sep or kind not in ("glob", "re", "semver"):
        return lambda tag: tag == pattern
    if kind == "glob":
        return lambda tag: fnmatch.fnmatchcase(tag, body)
    if kind == "re":
        try:
            regex = compile_regex(body)
        except ValueError as exc:
            raise ValueError(f"'{pattern}': {exc}") from None
        return lambda tag: regex.search(tag) is not None
    spec = _semver_specifier(body)
    # Pre-releases match only when the range itself names one (npm's and pip's rule alike).
    prereleases = any(v.is_prerelease for s in spec if (v := loose_version(s.version.rstrip(".*"))) is not None)

    def in_range(tag: str) -> bool:
        version = loose_version(tag)
        return version is not None and spec.contains(version, prereleases=prereleases)
    return in_range


def is_exact(pattern: str) -> bool:
    kind, sep, _ = pattern.partition(":")
    return not (sep and kind in ("glob", "re", "semver"))
