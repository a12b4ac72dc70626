"""Import's side: a bundle, checked, stands in for the policy's sources, so tag selection, signature
checks, the diff against the target and the push are the very code `regsync sync` runs."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from regsync.bundle.format import MAX_VOLUMES, SMALL_FILES, bundle_meta, check_complete, check_sums, read_present
from regsync.bundle.signature import check_signatures
from regsync.content.layout import LayoutBlobs
from regsync.errors import UsageError, VerificationError
from regsync.pipeline.kind import Kinds
from regsync.policy import LoadedPolicy
from regsync.vulns.carry import carried_in
from regsync.vulns.files import DB_KEY


@dataclass
class OpenedBundle:
    root: Path
    meta: dict            # bundle.json, checked against SHA256SUMS (and the signature, when signed)
    sha256: str           # of bundle.json's bytes: which bundle this is, exactly
    signature: dict | None  # the evidence of a verified bundle signature; None: unsigned (or not checked)
    sources: dict         # the stand-ins for the policy's sources (Endpoints keys)


def open_bundle(root: Path, loaded: LoadedPolicy, kinds: Kinds, more_blobs: tuple[Path, ...] = ()) -> OpenedBundle:
    """Check the bundle's own files and return it, with its stand-ins for the policy's sources (each
    of `kinds` makes its own from the bundle's layout).

    `more_blobs`: further directories with blobs only (the other volumes of a split bundle, or the
    base bundle of an incremental one); their blobs are verified by digest as they stream.
    Each small file is read once: its signature, its sum and its content are of the same bytes."""
    for directory in (root, *more_blobs):
        if directory.is_symlink() or not directory.is_dir():
            raise UsageError(f"{directory} is not a bundle directory")
    checked = {name: read_present(root, name) for name in ("SHA256SUMS", *SMALL_FILES)}
    evidence = check_signatures(root, loaded, checked)  # before any of it is read as authority
    check_sums(root, checked)
    bundle = bundle_meta(checked["bundle.json"])
    if bundle is None:
        raise VerificationError(f"{root}/bundle.json is not a regsync bundle")
    if bundle.get("policy_sha256") != loaded.sha256:
        raise UsageError(f"the bundle was exported with another policy (sha256 {str(bundle.get('policy_sha256'))[:12]},"
                         f" {loaded.path} is {loaded.sha256[:12]}): import with the policy that made it")
    volumes = bundle.get("volumes", 1)
    if isinstance(volumes, int) and 1 < volumes <= MAX_VOLUMES and len(more_blobs) < volumes - 1:
        raise UsageError(f"this bundle was split into {volumes} volumes: name them all, e.g. "
                         f"regsync import {root} " + " ".join(f"{root}.vol{n}" for n in range(2, volumes + 1)))
    for directory in (root, *more_blobs):
        check_complete(directory, checked["SHA256SUMS"] if directory == root else None)
    index, more = checked["index.json"], tuple(more_blobs)
    sources: dict = {}
    for kind in kinds.values():
        sources.update(kind.bundle_sources(bundle, loaded.policy, lambda name: LayoutBlobs(root, name, more, index)))
    if "vulnerabilities" in bundle:   # the gates use the database the export side used
        sources[DB_KEY] = carried_in(bundle["vulnerabilities"], LayoutBlobs(root, "vulns", more, index).blob_path,
                                     loaded.policy)
    return OpenedBundle(root, bundle, hashlib.sha256(checked["bundle.json"]).hexdigest(), evidence, sources)
