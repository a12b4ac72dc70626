"""Tag selection: include and exclude patterns (regsync/policy/patterns.py), latest N."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime

from regsync.policy.patterns import compile_pattern, loose_version


def select_tags(available: list[str], include: list[str], exclude: Sequence[str] = (), latest: int | None = None,
                created: Callable[[str], datetime | None] | None = None, prereleases: bool = False) -> list[str]:
    """The tags to sync, newest first when `latest` orders them, else in listing order."""
    return select_tags_ordered(available, include, exclude, latest, created, prereleases)[0]


def select_tags_ordered(available: list[str], include: list[str], exclude: Sequence[str] = (),
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
    ordered = sorted(chosen, key=lambda t: s.timestamp() if (s := stamps[t]) else float("-inf"), reverse=True)
    return ordered[:latest], "created"
