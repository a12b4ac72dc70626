"""Conda names as they reach paths, URLs and decisions: subdirs, package file names, match specs.

Every file name read from repodata is checked here before it becomes part of a path or a URL
(DESIGN.md: names from a server are validated against their grammar)."""

from __future__ import annotations

import difflib
import re
import typing

from loguru import logger

# A package file name as conda-build and rattler-build write them: name-version-build.ext, with the
# characters conda allows in each part (rattler's PackageName, Version and BuildString grammars).
_FILENAME = re.compile(r"(?P<name>[A-Za-z0-9_.][A-Za-z0-9_.-]*)-(?P<version>[A-Za-z0-9_.!+]+)-(?P<build>[A-Za-z0-9_.+]+)"
                       r"(?P<ext>\.conda|\.tar\.bz2)")
_CHANNEL_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,99}")
_DIGEST = re.compile(r"sha256:[0-9a-f]{64}|md5:[0-9a-f]{32}")
_EXPORTED = re.compile(r"[A-Za-z0-9_.][A-Za-z0-9_.-]*==?[A-Za-z0-9_.!+*]+=[A-Za-z0-9_.+*]+")


def known_subdirs() -> tuple[str, ...]:
    """The subdirs rattler knows (its Subdir grammar), noarch included."""
    from rattler.platform.subdir import SubdirLiteral

    return typing.get_args(SubdirLiteral)


def check_subdir(value: str) -> str:
    known = known_subdirs()
    if value in known:
        return value
    near = difflib.get_close_matches(value, known, n=1, cutoff=0.6)
    hint = f" (did you mean '{near[0]}'?)" if near else ""
    raise ValueError(f"'{value}' is not a conda subdir{hint}; examples: linux-64, linux-aarch64, osx-arm64, win-64")


def check_spec(value: str) -> str:
    """A match spec as conda and pixi read it (rattler's strict parser: what it refuses, they refuse),
    or `name=version=build` as `conda list --export` writes it, returned in the form it was read as."""
    from rattler import MatchSpec
    from rattler.exceptions import InvalidMatchSpecError

    if "::" in value:  # the rule's `from:` says which channels; a spec naming one would bypass it
        raise ValueError(f"'{value}': a spec names no channel here; the rule's from: does")
    try:
        MatchSpec(value, strict=True)
        return value
    except InvalidMatchSpecError as exc:
        reason = str(exc).splitlines()[0]
    if _EXPORTED.fullmatch(value):
        # rattler's lenient parser reads it as conda does (version exact, then the build); the strict
        # parser accepts what it made of it, so the solver and the plan see one reading
        read = str(MatchSpec(value, strict=False))
        try:
            MatchSpec(read, strict=True)
        except InvalidMatchSpecError:
            pass
        else:
            logger.info("conda spec '{}' (name=version=build, as conda list --export writes it) read as '{}'",
                        value, read)
            return read
    raise ValueError(f"'{value}' is not a match spec: {reason}")


def split_filename(filename: str) -> tuple[str, str, str]:
    """(name, version, build) of a package file name; ValueError for anything else."""
    match = _FILENAME.fullmatch(filename)
    if not match:
        raise ValueError(f"'{filename[:200]}' is not a conda package file name")
    return match["name"], match["version"], match["build"]


def split_ref(ref: str) -> tuple[str, str, str]:
    """'channel/subdir/file' → its three parts, each checked; ValueError otherwise."""
    parts = ref.split("/")
    if len(parts) != 3 or not _CHANNEL_NAME.fullmatch(parts[0]):
        raise ValueError(f"'{ref[:300]}' is not channel/subdir/file")
    if parts[1] not in known_subdirs():
        raise ValueError(f"'{parts[1][:50]}' is not a conda subdir")
    split_filename(parts[2])
    return parts[0], parts[1], parts[2]


def check_item(source: str, target: str, digest: str) -> None:
    """What a plan item names before apply turns it into URLs and paths; ValueError otherwise."""
    split_ref(source)
    split_ref(target)
    if not _DIGEST.fullmatch(digest):
        raise ValueError(f"'{digest[:80]}' is not a sha256 digest (or md5, for a record with no sha256)")


def record_size(record: dict) -> int:
    size = record.get("size")
    return size if isinstance(size, int) and not isinstance(size, bool) and size > 0 else 0


def record_digest(record: dict, weak_allowed: bool) -> str | None:
    """`sha256:…` of a record; `md5:…` for one with md5 and size only, when a rule allows that."""
    if isinstance(record.get("sha256"), str) and record["sha256"]:
        return f"sha256:{record['sha256']}"
    if weak_allowed and isinstance(record.get("md5"), str) and record_size(record):
        return f"md5:{record['md5']}"
    return None
