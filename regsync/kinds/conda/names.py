"""Conda names as they reach paths, URLs and decisions: package file names, channel/subdir/file
references, digests (the subdir and match-spec grammar the policy checks: regsync/kinds/conda/specs.py).

Every file name read from repodata is checked here before it becomes part of a path or a URL
(DESIGN.md: names from a server are validated against their grammar)."""

from __future__ import annotations

import re
from typing import Any

from regsync.kinds.conda.specs import known_subdirs

# A package file name as conda-build and rattler-build write them: name-version-build.ext, with the
# characters conda allows in each part (rattler's PackageName, Version and BuildString grammars).
_FILENAME = re.compile(r"(?P<name>[A-Za-z0-9_.][A-Za-z0-9_.-]*)-(?P<version>[A-Za-z0-9_.!+]+)-(?P<build>[A-Za-z0-9_.+]+)"
                       r"(?P<ext>\.conda|\.tar\.bz2)")
_CHANNEL_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,99}")
_DIGEST = re.compile(r"sha256:[0-9a-f]{64}|md5:[0-9a-f]{32}")


def split_filename(filename: str) -> tuple[str, str, str]:
    """(name, version, build) of a package file name; ValueError for anything else."""
    match = _FILENAME.fullmatch(filename)
    if not match:
        raise ValueError(f"'{filename[:200]}' is not a conda package file name")
    return match["name"], match["version"], match["build"]


def package_name(filename: object) -> str | None:
    """The package name of a conda file name; None for anything else (a `removed` entry may be any text)."""
    try:
        return split_filename(filename)[0] if isinstance(filename, str) else None
    except ValueError:
        return None


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


def record_size(record: dict[str, Any]) -> int:
    size = record.get("size")
    return size if isinstance(size, int) and not isinstance(size, bool) and size > 0 else 0


def record_digest(record: dict[str, Any], weak_allowed: bool) -> str | None:
    """`sha256:…` of a record; `md5:…` for one with md5 and size only, when a rule allows that."""
    if isinstance(record.get("sha256"), str) and record["sha256"]:
        return f"sha256:{record['sha256']}"
    if weak_allowed and isinstance(record.get("md5"), str) and record_size(record):
        return f"md5:{record['md5']}"
    return None
