"""Packagist's version order: PHP's `version_compare`, which Composer and OSV's Packagist records use.

Hand-written because no maintained Python library implements it, and univers 32's ComposerVersion
orders by semver instead: it puts 1.0-dev above 1.0a1 and 1.0RC1 above 1.0pl1, and tells 1.0RC1
from 1.0rc1 (25 of the 92 cases OSV tests its own Packagist order with; tests/data/packagist).
This follows OSV's port (google/osv.dev osv/ecosystems/packagist.py) of php-src's
ext/standard/versioning.c: `-`, `_`, `+` become `.`, a `.` goes between digits and letters, and the
parts compare left to right, numbers as numbers, words in the order
any other word < dev < alpha = a < beta = b < RC = rc < (a number) < pl = p.
"""

from __future__ import annotations

import functools
import re

_ORDER = {"dev": 0, "alpha": 1, "a": 1, "beta": 2, "b": 2, "RC": 3, "rc": 3, "#": 4, "pl": 5, "p": 5}


def _canonical(version: str) -> list[str]:
    version = version[1:] if version.startswith("v") else version
    version = re.sub(r"[-_+.]+", ".", version)
    version = re.sub(r"([^\d.])(\d)", r"\1.\2", version)
    return re.sub(r"(\d)([^\d.])", r"\1.\2", version).split(".")


def _word(a: str, b: str) -> int:
    first, second = _ORDER.get(a, -1), _ORDER.get(b, -1)
    return (first > second) - (first < second)


def _compare(a: list[str], b: list[str]) -> int:
    for left, right in zip(a, b):
        if left.isdecimal() and right.isdecimal():
            found = (int(left) > int(right)) - (int(left) < int(right))
        else:   # a number against a word counts as "#"
            found = _word("#" if left.isdecimal() else left, "#" if right.isdecimal() else right)
        if found:
            return found
    if len(a) > len(b):
        return 1 if a[len(b)].isdecimal() else _compare(a[len(b):], ["#"])
    if len(a) < len(b):
        return -1 if b[len(a)].isdecimal() else _compare(["#"], b[len(a):])
    return 0


@functools.total_ordering
class PackagistVersion:
    def __init__(self, text: str):
        if not text.strip():
            raise ValueError("an empty Packagist version")
        self.text, self._parts = text, _canonical(text)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, PackagistVersion) and _compare(self._parts, other._parts) == 0

    def __lt__(self, other: PackagistVersion) -> bool:
        return _compare(self._parts, other._parts) < 0

    __hash__ = None   # type: ignore[assignment]  # equality is not transitive: 1.2.3.# equals 1.2.3 and 1.2.3.1

    def __str__(self) -> str:
        return self.text
