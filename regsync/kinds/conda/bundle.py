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
from pathlib import Path

from loguru import logger

from regsync.kinds.conda.attest import check_attestation
from regsync.kinds.conda.channel import CondaFile, rattler_json, records_in_file
from regsync.kinds.conda.transfer import admitted, planned_record
from regsync.kinds.conda.names import known_subdirs, split_filename, split_ref
from regsync.errors import NotFound, RegistryError, VerificationError
from regsync.content.layout import LayoutBlobs, LayoutWriter, blob_path, open_regular
from regsync.kinds.package.fetch import FileResponse, fetch_verified
from regsync.kinds.conda.policy import CondaSection

SHA256 = re.compile(r"sha256:[0-9a-f]{64}")
MAX_PACKAGE_BYTES = 1 << 40
MAX_SIDECAR = 4 << 20   # rattler's own bound on an attestation sidecar


def export_conda(item, endpoints, writer: LayoutWriter, on_bytes=None) -> tuple[dict, int]:
    """One planned file into the blob store (verified); returns its bundle.json entry and bytes moved."""
    rules, channels, source, record, published = planned_record(item, endpoints)
    source_name, subdir, filename = split_ref(item.source)
    admitted(item, rules, channels, record)
    if not SHA256.fullmatch(item.digest):
        raise VerificationError(f"{item.source}: a record with md5 only is not exported (a bundle's files are "
                                "named and signed by sha256)")
    entry = {"channel": source_name, "subdir": subdir, "filename": filename, "sha256": item.digest,
             "size": published.get("size"), "record": published}
    if check_attestation(rules, endpoints.policy, record, item.source) and record.attestations_sha256 is not None:
        # verified here; carried so the far side verifies it again, offline, from the bundle alone
        sidecar = _sidecar(source, subdir, source.file(subdir, record, published), published["attestations_sha256"])
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


def _sidecar(source, subdir: str, package: CondaFile, sha256: str) -> bytes:
    from regsync.content.reader import read_bounded

    filename = package.filename
    url = f"{package.url}.sigs.{sha256}"
    response = source.session.get(url, stream=True, timeout=(15, 60))
    if response.status_code != 200:
        response.close()
        raise RegistryError(f"{source.name}/{subdir}/{filename}.sigs.{sha256[:12]}", response.status_code,
                            "attestation sidecar not readable")
    raw = read_bounded(response, MAX_SIDECAR)
    if raw is None or hashlib.sha256(raw).hexdigest() != sha256:
        raise VerificationError(f"{source.name}/{subdir}/{filename}: its attestation sidecar does not match sha256 {sha256}")
    return raw


def conda_stand_ins(entries, policy, layout: LayoutBlobs) -> dict:
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


def _valid(entry) -> bool:
    """bundle.json is untrusted input (unless signed, and even then): typed and bounded before use."""
    if not isinstance(entry, dict) or not all(isinstance(entry.get(k), str) for k in ("channel", "subdir", "filename")):
        return False
    try:
        split_ref(f"{entry['channel']}/{entry['subdir']}/{entry['filename']}")
    except ValueError:
        return False
    record = entry.get("record")
    return (isinstance(entry.get("sha256"), str) and bool(SHA256.fullmatch(entry["sha256"]))
            and isinstance(entry.get("size"), int) and 0 <= entry["size"] <= MAX_PACKAGE_BYTES
            and isinstance(record, dict) and f"sha256:{record.get('sha256')}" == entry["sha256"]
            and record.get("size") == entry["size"] and record.get("fn", entry["filename"]) == entry["filename"]
            and entry["subdir"] in known_subdirs())


class BundleChannel:
    """A source channel read from the bundle: what Channels and the verified download use."""

    def __init__(self, name: str, entries: list[dict], layout: LayoutBlobs, scratch):
        self.name, self._layout, self._scratch = name, layout, scratch
        root = self._root = Path(scratch.name) / name
        by_subdir: dict[str, dict] = {"noarch": {}}
        for entry in entries:
            split_filename(entry["filename"])
            by_subdir.setdefault(entry["subdir"], {})[entry["filename"]] = entry["record"]
        self._records = by_subdir
        for subdir, records in by_subdir.items():
            repodata = {"info": {"subdir": subdir}, "packages": {}, "packages.conda": {}, "repodata_version": 1}
            for filename, record in records.items():
                key = "packages.conda" if filename.endswith(".conda") else "packages"
                repodata[key][filename] = record
            (root / subdir).mkdir(parents=True, exist_ok=True)
            (root / subdir / "repodata.json").write_text(json.dumps(repodata))
            for filename, record in records.items():
                self._place_sidecar(root / subdir, filename, record.get("attestations_sha256"))
        self.url = root.as_uri()

    def _place_sidecar(self, folder: Path, filename: str, sha256) -> None:
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

    def rattler_channel(self, subdirs=()):
        from rattler import Channel

        return Channel(self.url + "/")

    def upstream(self, record):
        return record

    def listed_in(self, record) -> str:
        return str(record.url).rsplit("/", 2)[-2]

    def files_elsewhere(self, subdir: str, url: str) -> None:
        return None

    def records_named(self, subdir: str, name: str) -> list:
        path = self._root / subdir / "repodata.json"
        return records_in_file(self.rattler_channel(), subdir, name, path) if path.exists() else []

    def published(self, subdir: str, record) -> dict:
        return self._records.get(subdir, {}).get(record.file_name) or rattler_json(record)

    def file(self, subdir: str, record, published: dict) -> CondaFile:
        filename = record.file_name
        split_filename(filename)
        return CondaFile(filename, f"bundle:{self.name}/{subdir}/{filename}", published.get("size"),
                         {"sha256": published.get("sha256")}, f"{self.name}/{subdir}/{filename}")

    def open(self, package: CondaFile, start: int = 0) -> FileResponse:
        return FileResponse.of_blob(self._layout, f"sha256:{package.digests['sha256']}",
                                    package.where, start)
