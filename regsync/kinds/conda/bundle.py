"""Conda packages across an air gap.

Export: each planned file through the shared verified download into the bundle's blob store (named
by its sha256, so stored once, listed in SHA256SUMS and covered by a bundle signature), and its
record as upstream published it into bundle.json. Import: the bundle stands in for the policy's
source channels. The records become a narrowed channel in a private temporary directory (only
repodata.json files, read by rattler as a file:// channel), so the closure is solved again exactly
as sync solves it, and each file streams out of the blob store through the same verified download.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from loguru import logger

from regsync.kinds.conda.attest import check_attestation
from regsync.kinds.conda.channel import rattler_json, records_in_file
from regsync.kinds.conda.source import MAX_SIDECAR, CondaFile, CondaSource
from regsync.kinds.conda.transfer import admitted, planned_record
from regsync.kinds.conda.names import package_name, split_filename, split_ref
from regsync.kinds.conda.specs import known_subdirs
from regsync.policy.models import Policy
from regsync.errors import NotFound, VerificationError
from regsync.content.layout import LayoutBlobs, LayoutWriter, blob_path, open_regular
from regsync.kinds.package.fetch import FileResponse, fetch_verified
from regsync.kinds.conda.policy import CondaSection
from regsync.pipeline.plan import PlanItem

if TYPE_CHECKING:
    from rattler import Channel, RepoDataRecord

    from regsync.endpoints import Endpoints

SHA256 = re.compile(r"sha256:[0-9a-f]{64}")
MAX_PACKAGE_BYTES = 1 << 40
MAX_REMOVED = 100_000   # upstream's `removed` entries carried with one file (those of its package)


def export_conda(item: PlanItem, endpoints: "Endpoints", writer: LayoutWriter,
                 on_bytes: Callable[[int], None] | None = None) -> tuple[dict[str, Any], int]:
    """One planned file into the blob store (verified); returns its bundle.json entry and bytes moved."""
    rules, channels, source, record, published = planned_record(item, endpoints)
    source_name, subdir, filename = split_ref(item.source)
    admitted(item, rules, channels, record)
    if not SHA256.fullmatch(item.digest):
        raise VerificationError(f"{item.source}: a record with md5 only is not exported (a bundle's files are "
                                "named and signed by sha256)")
    entry = {"channel": source_name, "subdir": subdir, "filename": filename, "sha256": item.digest,
             "size": published.get("size"), "record": published}
    withdrawn = _withdrawn_with(source, subdir, filename)
    if withdrawn:
        entry["removed"] = withdrawn
    if check_attestation(rules, endpoints.policy, record, item.source) and record.attestations_sha256 is not None:
        # verified here; carried so the far side verifies it again, offline, from the bundle alone
        sidecar = source.sidecar(source.file(subdir, record, published), published["attestations_sha256"])
        writer.write_blob(f"sha256:{published['attestations_sha256']}", [sidecar])
    if writer.has_blob(item.digest):
        return entry, 0
    final = blob_path(writer.root, item.digest)
    partial = final.with_name(f".{final.name}.{os.getpid()}.partial")
    try:
        package = source.file(subdir, record, published)
        fetch_verified(source, package, partial, on_bytes, package.where)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    os.replace(partial, final)
    return entry, final.stat().st_size


def _withdrawn_with(source: CondaSource, subdir: str, filename: str) -> list[str]:
    """Upstream's `removed` entries of this file's package (by name): carried with it, so that import
    withdraws on the target what a sync would (targets.py), and never another package's file."""
    listing = source.listing(subdir)
    name = package_name(filename)
    return [entry for entry in listing.removed() if package_name(entry) == name] if listing is not None else []


def conda_stand_ins(entries: object, policy: Policy, layout: LayoutBlobs) -> dict[str, CondaSource]:
    """The policy's source channels, served from the bundle: `channel:<name>` keys for Endpoints."""
    if not CondaSection.of(policy).conda:
        return {}
    valid = [e for e in entries if _valid(e)] if isinstance(entries, list) else []
    if isinstance(entries, list) and len(valid) != len(entries):
        logger.warning("bundle.json: {} malformed conda entr(y/ies) ignored", len(entries) - len(valid))
    scratch = tempfile.TemporaryDirectory(prefix="regsync-conda-bundle-")  # 0700; goes with the stand-ins
    names = {name for rule in CondaSection.of(policy).conda for name in rule.sources}
    return {f"channel:{name}": BundleChannel(name, [e for e in valid if e["channel"] == name], layout, scratch)
            for name in names}


def _valid(entry: object) -> bool:
    """bundle.json is untrusted input (unless signed, and even then): typed and bounded before use."""
    if not isinstance(entry, dict) or not all(isinstance(entry.get(k), str) for k in ("channel", "subdir", "filename")):
        return False
    try:
        split_ref(f"{entry['channel']}/{entry['subdir']}/{entry['filename']}")
    except ValueError:
        return False
    record, removed = entry.get("record"), entry.get("removed", [])
    name = package_name(entry["filename"])
    if not (isinstance(removed, list) and len(removed) <= MAX_REMOVED and all(package_name(e) == name for e in removed)):
        return False   # a bundle withdraws only files of the package it carries
    return (isinstance(entry.get("sha256"), str) and bool(SHA256.fullmatch(entry["sha256"]))
            and isinstance(entry.get("size"), int) and 0 <= entry["size"] <= MAX_PACKAGE_BYTES
            and isinstance(record, dict) and f"sha256:{record.get('sha256')}" == entry["sha256"]
            and record.get("size") == entry["size"] and record.get("fn", entry["filename"]) == entry["filename"]
            and entry["subdir"] in known_subdirs())


class BundleChannel:
    """A CondaSource (kinds/conda/source.py) read from the bundle."""

    def __init__(self, name: str, entries: list[dict[str, Any]], layout: LayoutBlobs,
                 scratch: tempfile.TemporaryDirectory[str]):
        self.name, self._layout, self._scratch = name, layout, scratch
        root = self._root = Path(scratch.name) / name
        by_subdir: dict[str, dict[str, dict[str, Any]]] = {"noarch": {}}
        removed: dict[str, dict[str, None]] = {}
        for entry in entries:
            split_filename(entry["filename"])
            by_subdir.setdefault(entry["subdir"], {})[entry["filename"]] = entry["record"]
            removed.setdefault(entry["subdir"], {}).update(dict.fromkeys(entry.get("removed", [])))
        self._records, self._removed = by_subdir, {subdir: list(names) for subdir, names in removed.items()}
        for subdir, records in by_subdir.items():
            sections: dict[str, dict[str, Any]] = {"packages": {}, "packages.conda": {}}
            for filename, record in records.items():
                sections["packages.conda" if filename.endswith(".conda") else "packages"][filename] = record
            repodata = {"info": {"subdir": subdir}, **sections, "repodata_version": 1}
            (root / subdir).mkdir(parents=True, exist_ok=True)
            (root / subdir / "repodata.json").write_text(json.dumps(repodata))
            for filename, record in records.items():
                self._place_sidecar(root / subdir, filename, record.get("attestations_sha256"))
        self.url = root.as_uri()

    def _place_sidecar(self, folder: Path, filename: str, sha256: object) -> None:
        """The attestation sidecar export carried, where rattler's verifier looks for it (named by its
        sha256, re-checked here; one that is missing or altered leaves the file unattested)."""
        if not isinstance(sha256, str) or not re.fullmatch(r"[0-9a-f]{64}", sha256):
            return
        try:
            with open_regular(self._layout.blob_path(f"sha256:{sha256}")) as handle:
                raw = handle.read(MAX_SIDECAR + 1)
        except NotFound:
            return
        if hashlib.sha256(raw).hexdigest() == sha256:
            (folder / f"{filename}.sigs.{sha256}").write_bytes(raw)

    def listing(self, subdir: str) -> "CarriedListing":
        """What the target keeps of a source's listing: the `removed` entries export carried."""
        return CarriedListing(self._removed.get(subdir, []))

    def rattler_channel(self, subdirs: Sequence[str] = ()) -> "Channel":
        from rattler import Channel

        return Channel(self.url + "/")

    def upstream(self, record: "RepoDataRecord") -> "RepoDataRecord":
        return record

    def listed_in(self, record: "RepoDataRecord") -> str:
        return str(record.url).rsplit("/", 2)[-2]

    def files_elsewhere(self, subdir: str, url: str) -> None:
        return None

    def records_named(self, subdir: str, name: str) -> "list[RepoDataRecord]":
        path = self._root / subdir / "repodata.json"
        return records_in_file(self.rattler_channel(), subdir, name, path) if path.exists() else []

    def sharded(self, subdirs: Sequence[str]) -> list[str]:
        return []

    def read_shards(self, subdirs: Sequence[str], name: str) -> list[str]:
        return []   # a bundle carries repodata.json records, never shards

    def published(self, subdir: str, record: "RepoDataRecord") -> dict[str, Any]:
        return self._records.get(subdir, {}).get(record.file_name) or rattler_json(record)

    def file(self, subdir: str, record: "RepoDataRecord", published: dict[str, Any]) -> CondaFile:
        filename = record.file_name
        split_filename(filename)
        sha256 = published.get("sha256")
        return CondaFile(filename, f"bundle:{self.name}/{subdir}/{filename}", published.get("size"),
                         {"sha256": sha256} if isinstance(sha256, str) else {}, f"{self.name}/{subdir}/{filename}")

    def open(self, package: CondaFile, start: int = 0) -> FileResponse:
        return FileResponse.of_blob(self._layout, f"sha256:{package.digests['sha256']}",
                                    package.where, start)

    def sidecar(self, package: CondaFile, sha256: str) -> bytes:
        """The sidecar export carried (checked against `sha256`)."""
        try:
            with open_regular(self._layout.blob_path(f"sha256:{sha256}")) as handle:
                raw: bytes = handle.read(MAX_SIDECAR + 1)
        except NotFound:
            raise NotFound(f"{package.where}.sigs.{sha256[:12]}", 404, "not in the bundle") from None
        if hashlib.sha256(raw).hexdigest() != sha256:
            raise VerificationError(f"{package.where}: its attestation sidecar does not match sha256 {sha256}")
        return raw


class CarriedListing:
    """A source subdir's listing as a bundle carries it: no order (bundle.json's is the plan's), and
    upstream's `removed` entries for the packages the bundle carries."""

    def __init__(self, removed: list[str]):
        self._removed = removed

    def positions(self) -> dict[str, int]:
        return {}

    def removed(self) -> list[str]:
        return list(self._removed)
