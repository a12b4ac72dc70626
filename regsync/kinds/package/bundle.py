"""Python packages in a bundle.

Export downloads each planned file through the shared verified path (sha256 from the index, Range
resume) into the layout's blob store, named by its sha256 like any blob: stored once, listed in
SHA256SUMS, split into volumes and resumed like layers. bundle.json lists them. On import a
`BundleIndex` stands in for the policy's source index, so resolution, verification and upload are
the code `regsync sync` runs.
"""

from __future__ import annotations

import email.parser
import hashlib
import os
import re
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from loguru import logger
from packaging.utils import canonicalize_name
from pypi_simple import DistributionPackage

from regsync.errors import NotFound, VerificationError
from regsync.content.layout import LayoutBlobs, LayoutWriter, blob_path, open_regular
from regsync.pipeline.plan import PlanItem
from regsync.kinds.package.identity import check_file
from regsync.kinds.package.wheel import wheel_metadata
from regsync.kinds.package.ref import project_of, sha256_of
from regsync.kinds.package.transfer import planned_file, used_metadata
from regsync.kinds.package.provenance import fetch_provenance
from regsync.kinds.package.clients import provenance_index
from regsync.kinds.package.rules import rule_of
from regsync.kinds.package.fetch import FileResponse, fetch_verified
from regsync.kinds.package.policy import PackageSection
from regsync.kinds.package.source import PackageSource
from regsync.policy.models import Policy

if TYPE_CHECKING:
    from regsync.endpoints import Endpoints

FILENAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+!-]{0,250}\.(?:whl|tar\.gz|zip)")
SHA256 = re.compile(r"sha256:[0-9a-f]{64}")
MAX_PACKAGE_BYTES = 1 << 40


class NoTarget:
    """Export's view of a package target (a PackageTarget): it is on the other side of the gap, so
    nothing is there yet, and export never writes to it."""

    def __init__(self, name: str):
        self.name = name

    def existing(self, project: str) -> dict[str, str | None]:
        return {}

    def staging_dir(self) -> str | None:
        return None

    def put(self, path: Path, filename: str, digest: str) -> bool:
        raise AssertionError(f"{self.name}: export writes the bundle, never a package target")


def export_package(item: PlanItem, endpoints: Endpoints, writer: LayoutWriter,
                   on_bytes: Callable[[int], None] | None = None) -> dict[str, Any]:
    """One planned file into the blob store (verified); returns its bundle.json entry."""
    index, package = planned_file(item, endpoints)
    source_name, filename = item.source.split("/", 1)[0], package.filename
    entry = {"index": source_name, "filename": filename, "sha256": item.digest, "size": package.size,
             "project": project_of(package), "version": package.version,
             "requires_python": package.requires_python, "yanked": bool(package.is_yanked)}
    provenance = _export_provenance(item, endpoints, writer, filename)
    if provenance:
        entry["provenance"] = provenance
    if writer.has_blob(item.digest):
        return entry
    final = blob_path(writer.root, item.digest)
    partial = final.with_name(f".{final.name}.{os.getpid()}.{threading.get_ident()}.partial")
    try:
        index.download(package, partial, on_bytes)  # sha256 checked before we keep a byte of it
        check_file(partial, filename, f"{source_name}/{filename}", used_metadata(index, package))
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    os.replace(partial, final)
    entry["size"] = final.stat().st_size
    return entry


def _export_provenance(item: PlanItem, endpoints: Endpoints, writer: LayoutWriter, filename: str) -> str | None:
    """The PEP 740 provenance as the index served it, stored as a blob beside the file, so the
    air-gapped side verifies it offline with its own trusted_root.json; None when there is none."""
    rule = rule_of(endpoints.policy, item.rule)
    if rule.verify.attestations == "off" and not rule.verify.require_attestations:
        return None
    try:
        _, raw = fetch_provenance(provenance_index(rule, endpoints), filename)
    except VerificationError as exc:  # none, or too large: the import decides by its policy
        logger.warning("{}: no provenance exported: {}", filename, exc.reason)
        return None
    digest = "sha256:" + hashlib.sha256(raw).hexdigest()
    writer.write_blob(digest, [raw])
    return digest


def index_stand_ins(entries: object, policy: Policy, layout: LayoutBlobs) -> dict[str, PackageSource]:
    """The policy's source indexes, served from the bundle: `index:<name>` keys for Endpoints."""
    from regsync.kinds.package.clients import source_key

    valid = [e for e in entries if _valid(e)] if isinstance(entries, list) else []
    if isinstance(entries, list) and len(valid) != len(entries):
        logger.warning("bundle.json: {} malformed package entr(y/ies) ignored", len(entries) - len(valid))
    names = {rule.source for rule in PackageSection.of(policy).packages}
    return {source_key(name): BundleIndex(name, [e for e in valid if e["index"] == name], layout) for name in names}


def _valid(entry: object) -> bool:
    """bundle.json is untrusted input: every field typed and bounded before it names a file."""
    if not isinstance(entry, dict):
        return False
    def text(key: str, limit: int) -> bool:
        value = entry.get(key)
        return value is None or (isinstance(value, str) and len(value) <= limit)

    return (isinstance(entry.get("index"), str) and isinstance(entry.get("filename"), str)
            and bool(FILENAME.fullmatch(entry["filename"])) and isinstance(entry.get("sha256"), str)
            and bool(SHA256.fullmatch(entry["sha256"])) and isinstance(entry.get("size"), int)
            and 0 <= entry["size"] <= MAX_PACKAGE_BYTES and isinstance(entry.get("project"), str)
            and 0 < len(entry["project"]) <= 200 and text("version", 100) and text("requires_python", 200)
            and (entry.get("provenance") is None
                 or (isinstance(entry["provenance"], str) and bool(SHA256.fullmatch(entry["provenance"])))))


class BundleIndex:
    """A PackageSource (kinds/package/source.py) read from the bundle."""

    offline = True   # what it serves was stored by export, provenance included: nothing is fetched

    def __init__(self, name: str, entries: list[dict[str, Any]], layout: LayoutBlobs):
        self.name, self.url = name, f"bundle:{name}/"
        self._layout = layout
        self._packages = [_package(e) for e in entries]
        self._provenance = {e["filename"]: e["provenance"] for e in entries if e.get("provenance")}

    def page_url(self, package: DistributionPackage) -> None:
        return None   # no pages: the sha256 is the one export verified and bundle.json names

    def size_of(self, package: DistributionPackage) -> int | None:
        return package.size   # bundle.json lists every file's size

    def served_by(self, package: DistributionPackage) -> None:
        return None

    def files(self, project: str) -> list[DistributionPackage]:
        key = canonicalize_name(project)
        return [p for p in self._packages if canonicalize_name(p.project or "") == key]

    def open(self, package: DistributionPackage, start: int = 0) -> FileResponse:
        digest = sha256_of(package)
        assert digest is not None, "a bundle lists its files by sha256"
        return FileResponse.of_blob(self._layout, digest, f"{self.name}/{package.filename}", start)

    def download(self, package: DistributionPackage, path: Path, on_bytes: Callable[[int], None] | None = None) -> str:
        return fetch_verified(self, package, path, on_bytes)

    def provenance(self, filename: str, limit: int) -> tuple[str, bytes]:
        """The provenance export stored for `filename`, checked against its sha256."""
        digest = self._provenance.get(filename)
        if digest is None:
            raise VerificationError(f"pep740: no provenance for {filename} in the bundle (export found none)")
        try:
            with open_regular(self._layout.blob_path(digest)) as handle:
                raw = handle.read(limit + 1)
        except NotFound:
            raise VerificationError(f"{self.name}/{filename}: its provenance {digest} is not in the bundle") from None
        if len(raw) > limit or "sha256:" + hashlib.sha256(raw).hexdigest() != digest:
            raise VerificationError(f"{self.name}/{filename}: its provenance in the bundle does not match {digest}")
        return f"bundle:{self.name}/{filename}/provenance", raw

    def metadata(self, package: DistributionPackage) -> email.message.Message:
        """From the wheel itself (read, not trusted: the file's sha256 is checked before any upload)."""
        where = f"{self.name}/{package.filename}"
        if not package.filename.endswith(".whl"):
            return email.parser.BytesParser().parsebytes(b"", headersonly=True)
        response = self.open(package)
        try:
            raw = wheel_metadata(response.raw, where, package.filename)
        finally:
            response.close()
        return email.parser.BytesParser().parsebytes(raw, headersonly=True)


def _package(entry: dict[str, Any]) -> DistributionPackage:
    filename = entry["filename"]
    return DistributionPackage(
        filename=filename, url=f"bundle:///{entry['sha256']}", project=entry["project"], version=entry.get("version"),
        package_type="wheel" if filename.endswith(".whl") else "sdist",
        digests={"sha256": entry["sha256"].split(":", 1)[1]}, requires_python=entry.get("requires_python"),
        has_sig=None, is_yanked=bool(entry.get("yanked")), yanked_reason=None, has_metadata=False,
        metadata_digests=None, size=entry["size"], upload_time=None, provenance_sha256=None, provenance_url=None)
