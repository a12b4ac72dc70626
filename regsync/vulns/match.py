"""Which known vulnerabilities a package at a version has, from the offline database.

Records that alias each other (PYSEC-… and GHSA-… for one CVE) are one vulnerability: one match,
its ids together, the worst severity any of them gives and the highest fixed version any names.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from regsync.vulns.database import OsvDatabase
from regsync.vulns.severity import Severity, severity_of, worst
from regsync.vulns.versions import affects, family, package_key, parse, parser_for


@dataclass
class Match:
    ids: list[str]                 # the first is the one shown; the rest are its aliases
    package: str
    version: str
    ecosystem: str
    severity: Severity
    fixed: str | None = None
    summary: str = ""
    aliases: list[str] = field(default_factory=list)

    @property
    def id(self) -> str:
        return self.ids[0]

    def names(self) -> set[str]:
        return {*self.ids, *self.aliases}

    def as_dict(self) -> dict[str, Any]:
        found: dict[str, Any] = {"id": self.id, "aliases": sorted(self.names() - {self.id}), "package": self.package,
                 "version": self.version, "ecosystem": self.ecosystem,
                 "severity": self.severity.level or "unscored", "fixed": self.fixed}
        if self.severity.score is not None:
            found["score"], found["vector"] = self.severity.score, self.severity.vector
        if self.summary:
            found["summary"] = self.summary[:200]
        return found


class NotCovered(Exception):
    """The database cannot answer for this package: the ecosystem is missing, versions of it are
    not compared by regsync, or records name it and its version is not one the ecosystem orders.
    Never read as "no vulnerabilities"."""


def find(db: OsvDatabase, ecosystem: str, name: str, version: str) -> list[Match]:
    parser = parser_for(ecosystem)
    if parser is None:
        raise NotCovered(f"{ecosystem} versions are not compared by regsync")
    folder = db.ecosystem(family(ecosystem))
    if folder is None:
        raise NotCovered(f"the database has no {family(ecosystem)}/ folder: add OSV's {family(ecosystem)}/all.zip "
                         f"(docs/vulnerabilities.md)")
    key = package_key(ecosystem, name)
    records = folder.by_package.get(key, [])
    found: list[Match] = []
    for record in records:
        hit, fixed, entry = False, None, None
        for candidate in record.get("affected") or []:
            package = candidate.get("package") if isinstance(candidate, dict) else None
            if not isinstance(package, dict) or package_key(str(package.get("ecosystem", "")),
                                                             str(package.get("name", ""))) != key:
                continue
            inside, fix = affects(candidate, version, parser)
            if inside:
                hit, entry, fixed = True, candidate, fixed or fix
        if hit:
            aliases = [a for a in record.get("aliases") or [] if isinstance(a, str)]
            aliases += [a for a in record.get("upstream") or [] if isinstance(a, str)]
            found.append(Match([record["id"]], key[1], version, ecosystem, severity_of(record, entry), fixed,
                               str(record.get("summary") or record.get("details") or "").strip(), aliases))
    if records and not found and parse(parser, version) is None:
        # its ranges could not be walked (a Go main module's "(devel)", a branch name): not clean
        raise NotCovered(f"{len(records)} {family(ecosystem)} record(s) name it, and {version!r} is not a version "
                         f"regsync can order against their ranges")
    return _merge_aliases(found, parser)


def _merge_aliases(matches: list[Match], parser: Callable[[str], Any]) -> list[Match]:
    merged: list[Match] = []
    for match in sorted(matches, key=lambda m: m.id):
        same = next((m for m in merged if m.names() & match.names()), None)
        if same is None:
            merged.append(match)
            continue
        same.ids.append(match.id)
        same.aliases = sorted(set(same.aliases) | set(match.aliases))
        same.severity = worst([same.severity, match.severity])
        same.fixed = _higher(same.fixed, match.fixed, parser)
        same.summary = same.summary or match.summary
    return sorted(merged, key=lambda m: (-m.severity.rank, m.id))


def _higher(a: str | None, b: str | None, parser: Callable[[str], Any]) -> str | None:
    if a is None or b is None:
        return a or b
    try:
        return b if parser(a) < parser(b) else a   # `<` only: see versions._in_range
    except Exception:  # noqa: BLE001 — two spellings the parser cannot order: keep the first
        return a
