"""The vulnerability gate on an image (docs/vulnerabilities.md): the packages its layers hold, read
as the layers stream through the verified copy (BlobCopier's tap), and decided once every blob is
verified on the target and before any manifest is pushed, so a refused image is never tagged.
A layer the copy did not stream in this run (already on the target, mounted, resumed or spooled)
is read from the source through the verifying reader instead. Only for rules that ask."""

from __future__ import annotations

from regsync.content.reader import VerifyingReader
from regsync.kinds.image.copy import BlobCopier
from regsync.kinds.image.manifest import Manifest
from regsync.pipeline.plan import PlanItem


def _layers(tree: list[Manifest]):
    for manifest in (m for m in tree if not m.is_index):
        yield manifest, manifest.blobs()[1:]   # blobs()[0] is the config


def tap_layers(blobs: BlobCopier, tree: list[Manifest]) -> None:
    from regsync.vulns.layers import LayerCapture, compression_of

    for _, layers in _layers(tree):
        for layer in layers:
            blobs.tap(layer.digest, lambda kind=compression_of(layer.media_type): LayerCapture(kind))


def image_vulnerabilities(item: PlanItem, gate, endpoints, src, src_repo: str, tree: list[Manifest],
                          blobs: BlobCopier) -> dict:
    """The evidence for the `verified` record; VulnerabilityRefusal (a VerificationError) to refuse."""
    from regsync.vulns.files import database_for
    from regsync.vulns.gate import VulnerabilityRefusal

    try:
        return scan_image(database_for(endpoints), gate, src, src_repo, tree, item.target, blobs)
    except VulnerabilityRefusal as exc:
        item.verification = {**(item.verification or {}), "vulnerabilities": exc.evidence}
        raise


def scan_image(db, gate, src, src_repo: str, tree: list[Manifest], what: str, blobs: BlobCopier | None = None) -> dict:
    """Every platform's packages, from the copy's tap where it saw a layer, else read verified from `src`."""
    from regsync.vulns.gate import VulnerabilityRefusal, check_packages
    from regsync.vulns.layers import ImageContents, compression_of, read_layer

    packages: dict[tuple[str, str, str], None] = {}
    not_covered: dict[str, None] = {}
    read_again = 0
    for _, layers in _layers(tree):
        contents = ImageContents()
        for layer in layers:
            tapped = blobs.tapped(layer.digest) if blobs is not None else None
            files = tapped.files if tapped is not None else None
            if files is None:
                read_again += 1
                ref = src.ref(src_repo, layer.digest)
                with src.open_blob(src_repo, layer.digest) as response:
                    files = read_layer(VerifyingReader(response.raw.read, layer.digest, layer.size, ref),
                                       compression_of(layer.media_type))
            contents.apply(files)
        found, missing = contents.packages()
        packages.update(dict.fromkeys(found))
        not_covered.update(dict.fromkeys(missing))
    try:
        evidence = check_packages(db, gate, list(packages), what, list(not_covered), listed=True)
    except VulnerabilityRefusal as exc:
        exc.evidence["layers_read_again"] = read_again
        raise
    evidence["layers_read_again"] = read_again
    return evidence
