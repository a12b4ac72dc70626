"""Tag selection: exact, glob:, re:, semver: patterns; exclude; latest N.

Version ranges use packaging's PEP 440 specifiers (a well-kept parser) after translating the
semver shorthands users write for image tags: ^1.2, ~1.2, 1.2.x.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Callable
from datetime import datetime

from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.version import InvalidVersion, Version

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
            regex = re.compile(body)
        except re.error as exc:
            raise ValueError(f"'{pattern}': invalid regular expression: {exc}") from None
        return lambda tag: regex.search(tag) is not None
    spec = _semver_specifier(body)
    # Pre-releases match only when the range itself names one (npm's and pip's rule alike).
    prereleases = any(loose_version(s.version.rstrip(".*")).is_prerelease for s in spec)

    def in_range(tag: str) -> bool:
        version = loose_version(tag)
        return version is not None and spec.contains(version, prereleases=prereleases)
    return in_range


def is_exact(pattern: str) -> bool:
    kind, sep, _ = pattern.partition(":")
    return not (sep and kind in ("glob", "re", "semver"))


def select_tags(available: list[str], include: list[str], exclude: list[str] = (), latest: int | None = None,
                created: Callable[[str], datetime | None] | None = None, prereleases: bool = False) -> list[str]:
    """The tags to sync, newest first when `latest` orders them, else in listing order."""
    return select_tags_ordered(available, include, exclude, latest, created, prereleases)[0]


def select_tags_ordered(available: list[str], include: list[str], exclude: list[str] = (),
                        latest: int | None = None, created: Callable[[str], datetime | None] | None = None,
                        prereleases: bool = False) -> tuple[list[str], str]:
    """(the tags to sync, how `latest` ordered them: "", "version" or "created").

    `latest: N` orders by version among the tags that parse as versions, so one `latest` or
    `nightly` tag beside them does not switch the whole rule to creation-time order; pre-releases
    (`3.12.6rc1`) take part only when the rule asks. Creation time orders only a selection in which
    no tag is a version."""
    includes = [compile_pattern(p) for p in include]
    excludes = [compile_pattern(p) for p in exclude]
    chosen = [t for t in dict.fromkeys(available)
              if any(m(t) for m in includes) and not any(m(t) for m in excludes)]
    if latest is None:
        return chosen, ""
    versions = {t: v for t in chosen if (v := loose_version(t)) is not None and (prereleases or not v.is_prerelease)}
    if versions:
        return sorted(versions, key=lambda t: versions[t], reverse=True)[:latest], "version"
    if any(loose_version(t) is not None for t in chosen):
        return [], "version"  # only pre-releases matched, and the rule did not ask for them
    if created is None:
        raise ValueError("latest: N needs version-like tags or image creation times")
    stamps = {t: created(t) for t in chosen}
    ordered = sorted(chosen, key=lambda t: stamps[t].timestamp() if stamps[t] else float("-inf"), reverse=True)
    return ordered[:latest], "created"
