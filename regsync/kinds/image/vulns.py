"""The vulnerability gate on an image (docs/vulnerabilities.md).

Before any byte moves (plan, and again before the copy at apply), the package list comes from a
verified SBOM attestation (one that met a `require_attestations` entry of type SPDX or CycloneDX),
else from earlier scans of every layer (vulns/layer_cache.py); with neither, the plan says the
layers are scanned at apply. At apply the layers' packages are read as they stream through the
verified copy (BlobCopier's tap) and decided once every blob is verified on the target and before
any manifest is pushed, so a refused image is never tagged. A layer the copy did not stream in this
run (already on the target, mounted, resumed or spooled) is taken from the cache of earlier scans,
else read from the source through the verifying reader. Only for rules that ask.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from typing import Any

from regsync.content.reader import VerifyingReader
from regsync.endpoints import Endpoints
from regsync.kinds.image.client import RegistryClient
from regsync.kinds.image.copy import BlobCopier
from regsync.kinds.image.manifest import Descriptor, Manifest
from regsync.pipeline.plan import PlanItem
from regsync.policy.vulns import VulnGate
from regsync.vulns.database import OsvDatabase

AT_APPLY = "the layers, read at apply"
FROM_SBOM = "verified SBOM attestation"


def _layers(tree: list[Manifest]) -> Iterator[tuple[Manifest, list[Descriptor]]]:
    """Each image's layers. BuildKit's attestation manifests travel in the index but are no image:
    their layers are in-toto statements, not file systems (and their SBOM is unsigned)."""
    entries = [d for m in tree for d in m.children()]
    not_images = {d.digest for d in entries if not d.runnable} - {d.digest for d in entries if d.runnable}
    for manifest in (m for m in tree if not m.is_index and m.digest not in not_images):
        yield manifest, manifest.blobs()[1:]   # blobs()[0] is the config


def tap_layers(blobs: BlobCopier, tree: list[Manifest]) -> None:
    from regsync.vulns.layers import LayerCapture, compression_of

    for _, layers in _layers(tree):
        for layer in layers:
            blobs.tap(layer.digest, functools.partial(LayerCapture, compression_of(layer.media_type)))


def judge_listed(gate: VulnGate, endpoints: Endpoints, tree: list[Manifest], statements: list[dict[str, Any]],
                 what: str) -> dict[str, Any]:
    """The gate on the package list known before any byte moves; VulnerabilityRefusal to refuse.
    Evidence says where the list came from (`package_list`), or that the layers are read at apply."""
    from regsync.vulns.files import database_for
    from regsync.vulns.gate import VulnerabilityRefusal, check_packages

    listed = _from_sboms(statements) or _from_cache(tree)
    if listed is None:
        return {"package_list": AT_APPLY}
    source, packages, not_covered = listed
    try:
        evidence = check_packages(database_for(endpoints), gate, packages, what, not_covered, listed=True)
    except VulnerabilityRefusal as exc:
        exc.evidence["package_list"] = source
        raise
    evidence["package_list"] = source
    return evidence


def _from_sboms(statements: list[dict[str, Any]]) -> tuple[str, list[tuple[str, str, str]], list[str]] | None:
    from regsync.vulns.sbom import SBOM_TYPES, NotAnSbom, sbom_packages

    sboms = [s for s in statements if s.get("predicateType") in SBOM_TYPES]
    if not sboms:
        return None
    packages: dict[tuple[str, str, str], None] = {}
    not_covered: dict[str, None] = {}
    for statement in sboms:
        try:
            found, missing = sbom_packages(statement["predicateType"], statement.get("predicate"))
        except NotAnSbom as exc:
            found, missing = [], [f"the verified {statement['predicateType']} attestation: {exc}"]
        packages.update(dict.fromkeys(found))
        not_covered.update(dict.fromkeys(missing))
    if not packages and not not_covered:
        not_covered["the verified SBOM attestation lists no package"] = None
    types = ", ".join(sorted({str(s["predicateType"]) for s in sboms}))
    return f"{FROM_SBOM} ({types})", list(packages), list(not_covered)


def _from_cache(tree: list[Manifest]) -> tuple[str, list[tuple[str, str, str]], list[str]] | None:
    """Every platform's packages when an earlier scan read every one of its layers; else None."""
    from regsync.vulns.layer_cache import cached_layer
    from regsync.vulns.layers import ImageContents

    packages: dict[tuple[str, str, str], None] = {}
    not_covered: dict[str, None] = {}
    count = 0
    for _, layers in _layers(tree):
        contents = ImageContents()
        for layer in layers:
            files = cached_layer(layer.digest)
            if files is None:
                return None
            contents.apply(files)
            count += 1
        found, missing = contents.packages()
        packages.update(dict.fromkeys(found))
        not_covered.update(dict.fromkeys(missing))
    if not count:
        return None
    return f"earlier scans of its {count} layer(s) (the state dir's cache)", list(packages), list(not_covered)


def image_vulnerabilities(item: PlanItem, gate: VulnGate, endpoints: Endpoints, src: RegistryClient, src_repo: str,
                          tree: list[Manifest], blobs: BlobCopier) -> dict[str, Any]:
    """The evidence for the `verified` record; VulnerabilityRefusal (a VerificationError) to refuse.
    What was judged before the copy (a verified SBOM's list) is kept with it as `before_copy`."""
    from regsync.vulns.files import database_for
    from regsync.vulns.gate import VulnerabilityRefusal

    before = (item.verification or {}).get("vulnerabilities")
    sbom = isinstance(before, dict) and str(before.get("package_list", "")).startswith(FROM_SBOM)
    earlier = {"before_copy": before} if sbom else {}
    try:
        return {**scan_image(database_for(endpoints), gate, src, src_repo, tree, item.target, blobs), **earlier}
    except VulnerabilityRefusal as exc:
        exc.evidence.update(earlier)
        item.verification = {**(item.verification or {}), "vulnerabilities": exc.evidence}
        raise


def scan_image(db: OsvDatabase, gate: VulnGate, src: RegistryClient, src_repo: str, tree: list[Manifest], what: str,
               blobs: BlobCopier | None = None) -> dict[str, Any]:
    """Every platform's packages, from the copy's tap where it saw a layer, else from an earlier
    scan of it, else read verified from `src`. Each layer read is kept for later plans."""
    from regsync.vulns.gate import VulnerabilityRefusal, check_packages
    from regsync.vulns.layer_cache import cached_layer, keep_layer
    from regsync.vulns.layers import ImageContents, compression_of, read_layer

    packages: dict[tuple[str, str, str], None] = {}
    not_covered: dict[str, None] = {}
    read_again = from_cache = 0
    for _, layers in _layers(tree):
        contents = ImageContents()
        for layer in layers:
            tapped = blobs.tapped(layer.digest) if blobs is not None else None
            files = tapped.files if tapped is not None else None
            cached = cached_layer(layer.digest) if files is None else None
            if cached is not None:
                files, from_cache = cached, from_cache + 1
            elif files is None:
                read_again += 1
                ref = src.ref(src_repo, layer.digest)
                with src.open_blob(src_repo, layer.digest) as response:
                    files = read_layer(VerifyingReader(response.raw.read, layer.digest, layer.size, ref),
                                       compression_of(layer.media_type))
            if cached is None:
                keep_layer(layer.digest, files)   # verified: by the copy's reader, or read to its last byte
            contents.apply(files)
        found, missing = contents.packages()
        packages.update(dict.fromkeys(found))
        not_covered.update(dict.fromkeys(missing))
    counts = {"layers_read_again": read_again, "layers_from_cache": from_cache}
    try:
        evidence = check_packages(db, gate, list(packages), what, list(not_covered), listed=True)
    except VulnerabilityRefusal as exc:
        exc.evidence.update(counts)
        raise
    evidence.update(counts)
    return evidence
