"""The OSV database, offline: one folder per ecosystem under the policy's `vulnerabilities.db`,
each holding OSV's `all.zip` (or any *.zip) and/or its records as *.json (docs/vulnerabilities.md).

regsync never downloads it. What a decision rests on is named in the audit trail: the sha256 of
the files (`sha256`) and, per ecosystem, the newest record's `modified` time, which is the
database's age. Age comes from the records, not from file times: a copy across the air gap
(or through a bundle) keeps it, and the hash covers it.
"""

from __future__ import annotations

import hashlib
import json
import threading
import zipfile
from typing import Any
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from regsync.errors import PolicyError
from regsync.times import parse_time
from regsync.vulns.versions import package_key

MAX_RECORD_BYTES = 8 << 20        # the largest OSV records (kernel USNs) are a few MiB
MAX_FILES = 2_000_000
_KEPT = ("id", "aliases", "upstream", "severity", "affected")


@dataclass
class Ecosystem:
    """One ecosystem folder, loaded: (record ecosystem, package name) → records naming it."""

    name: str
    newest: datetime | None = None
    records: int = 0
    withdrawn: int = 0
    by_package: dict[tuple[str, str], list[dict]] = field(default_factory=dict)

    def age_seconds(self, now: datetime | None = None) -> float | None:
        if self.newest is None:
            return None
        return ((now or datetime.now(timezone.utc)) - self.newest).total_seconds()


class OsvDatabase:
    def __init__(self, root: Path, max_age: int | None = None, where: str = "vulnerabilities.db",
                 files: dict[str, Path] | None = None, digests: dict[str, str] | None = None):
        """`where` names the setting in errors (the policy's key, or a bundle). `files` (relative path
        → file) and `digests` (relative path → sha256:…) when the files are a bundle's blobs, each
        checked against its digest as it is hashed."""
        self.root, self.max_age, self.where, self._digests = Path(root), max_age, where, digests or {}
        if files is None:
            if not self.root.is_dir():
                raise PolicyError(f"{where}: {self.root} is not a folder of OSV databases "
                                  f"(one folder per ecosystem: PyPI/all.zip, Debian/all.zip, …)")
            files = {p.relative_to(self.root).as_posix(): p for p in self.root.rglob("*")
                     if p.is_file() and p.suffix in (".zip", ".json") and len(p.relative_to(self.root).parts) > 1}
        if len(files) > MAX_FILES:
            raise PolicyError(f"{where}: {self.root} holds more than {MAX_FILES} files")
        self.files = sorted(files.items())
        self.ecosystems = sorted({relative.split("/", 1)[0] for relative, _ in self.files})
        if not self.ecosystems:
            raise PolicyError(f"{where}: {self.root} has no ecosystem folders (PyPI/, Debian/, …)")
        self._sha256: str | None = None
        self._loaded: dict[str, Ecosystem] = {}
        self._lock = threading.Lock()

    @property
    def sha256(self) -> str:
        """One digest over every file's relative path and bytes, as a bundle's SHA256SUMS would list them."""
        if self._sha256 is None:
            outer = hashlib.sha256()
            for relative, digest in self.file_digests().items():
                outer.update(f"{digest.removeprefix('sha256:')}  {relative}\n".encode())
            self._sha256 = "sha256:" + outer.hexdigest()
        return self._sha256

    def file_digests(self) -> dict[str, str]:
        """relative path → sha256 of each file (a bundle's blobs checked against their names here)."""
        found = {}
        for relative, path in self.files:
            inner = hashlib.sha256()
            with path.open("rb") as handle:
                for chunk in iter(lambda: handle.read(1 << 20), b""):
                    inner.update(chunk)
            found[relative] = "sha256:" + inner.hexdigest()
            expected = self._digests.get(relative)
            if expected is not None and expected != found[relative]:
                from regsync.errors import VerificationError

                raise VerificationError(f"{self.where}: {relative} is {found[relative]}, the bundle says {expected}")
        return found

    def ecosystem(self, name: str) -> Ecosystem | None:
        """The ecosystem folder `name` (PyPI, Debian, Go, npm, Wolfi, …: versions.COVERED), loaded once;
        None when the database does not hold it (the caller says "not covered", never "clean")."""
        with self._lock:
            if name not in self._loaded:
                if name not in self.ecosystems:
                    return None
                self._loaded[name] = self._load(name)
            return self._loaded[name]

    def evidence(self, name: str) -> dict:
        """What the audit trail says about the data a decision used."""
        eco = self.ecosystem(name)
        found: dict[str, Any] = {"sha256": self.sha256, "ecosystem": name}
        if eco is not None:
            found["records"] = eco.records
            found["newest_record"] = eco.newest.isoformat() if eco.newest else None
            age = eco.age_seconds()
            found["age_days"] = round(age / 86400, 1) if age is not None else None
        return found

    def _load(self, name: str) -> Ecosystem:
        eco = Ecosystem(name)
        for relative, path in self.files:
            if relative.split("/", 1)[0] != name:
                continue
            for where, raw in _records_in(path):
                try:
                    record = json.loads(raw)
                except (ValueError, RecursionError):   # RecursionError: nesting no OSV record has
                    raise PolicyError(f"{self.where}: {where} is not JSON (is {path.name} an OSV export?)") from None
                _add(eco, record, where)
        if eco.records == 0:
            raise PolicyError(f"{self.where}: {name}/ holds no OSV records (all.zip or *.json)")
        age = eco.age_seconds()
        if self.max_age is not None and age is not None and age > self.max_age:
            raise PolicyError(f"{self.where}: the {name} database is {age / 86400:.1f} days old (newest record "
                              f"{eco.newest:%Y-%m-%d}), older than max_age {self.max_age / 86400:g} days: "
                              f"fetch it again on the connected side (docs/vulnerabilities.md)")
        return eco


def _records_in(path: Path):
    """(name for errors, bytes) of each record in a zip or a JSON file, each read bounded."""
    if path.suffix == ".json":
        if path.stat().st_size > MAX_RECORD_BYTES:
            raise PolicyError(f"{path}: larger than an OSV record can be ({MAX_RECORD_BYTES} bytes)")
        yield str(path), path.read_bytes()
        return
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as exc:
        raise PolicyError(f"{path}: not a zip of OSV records ({exc})") from None
    with archive:
        for entry in archive.infolist():
            if entry.is_dir() or not entry.filename.endswith(".json"):
                continue
            if entry.file_size > MAX_RECORD_BYTES:  # the declared size; the read below is bounded too
                raise PolicyError(f"{path}: {entry.filename} is larger than an OSV record can be")
            with archive.open(entry) as handle:
                yield f"{path}:{entry.filename}", handle.read(MAX_RECORD_BYTES + 1)[:MAX_RECORD_BYTES]


def _add(eco: Ecosystem, record, where: str) -> None:
    if not isinstance(record, dict) or not isinstance(record.get("id"), str):
        raise PolicyError(f"{where}: not an OSV record (no id)")
    eco.records += 1
    modified = record.get("modified")
    if isinstance(modified, str):
        try:
            stamp = parse_time(modified)
        except ValueError:
            stamp = None
        if stamp is not None and (eco.newest is None or stamp > eco.newest):
            eco.newest = stamp
    if record.get("withdrawn"):   # OSV: a withdrawn record no longer claims anything
        eco.withdrawn += 1
        return
    # Kept in memory for the run: only what matching and the trail use (details and references are
    # most of a record's bytes, and Debian's export holds over a hundred thousand records).
    summary = str(record.get("summary") or record.get("details") or "")[:200]
    record = {key: record[key] for key in _KEPT if key in record} | {"summary": summary}
    for affected in record.get("affected") or []:
        package = affected.get("package") if isinstance(affected, dict) else None
        if not isinstance(package, dict) or not isinstance(package.get("name"), str):
            continue
        key = package_key(str(package.get("ecosystem", "")), package["name"])
        bucket = eco.by_package.setdefault(key, [])
        if not bucket or bucket[-1] is not record:   # a record may name a package in several entries
            bucket.append(record)
