"""The vulnerability gate on an image (docs/vulnerabilities.md): the packages its layers hold, read
at apply time once every blob is verified on the target and before any manifest is pushed, so a
refused image is never tagged. Each layer is read again from the source through the verifying
reader (its digest checked), only for rules that ask (`gates: {vulnerabilities: …}`)."""

from __future__ import annotations

from regsync.content.reader import VerifyingReader
from regsync.kinds.oci.manifest import Manifest
from regsync.pipeline.plan import PlanItem


def image_vulnerabilities(item: PlanItem, gate, endpoints, src, src_repo: str, tree: list[Manifest]) -> dict:
    """The evidence for the `verified` record; VulnerabilityRefusal (a VerificationError) to refuse."""
    from regsync.vulns.files import database_for
    from regsync.vulns.gate import VulnerabilityRefusal, check_packages
    from regsync.vulns.layers import ImageContents, compression_of

    db = database_for(endpoints)
    packages: dict[tuple[str, str, str], None] = {}
    not_covered: dict[str, None] = {}
    for manifest in (m for m in tree if not m.is_index):
        contents = ImageContents()
        for layer in manifest.blobs()[1:]:   # blobs()[0] is the config
            what = src.ref(src_repo, layer.digest)
            with src.open_blob(src_repo, layer.digest) as response:
                contents.add_layer(VerifyingReader(response.raw.read, layer.digest, layer.size, what),
                                   compression_of(layer.media_type))
        found, missing = contents.packages()
        packages.update(dict.fromkeys(found))
        not_covered.update(dict.fromkeys(missing))
    try:
        return check_packages(db, gate, list(packages), item.target, list(not_covered), listed=True)
    except VulnerabilityRefusal as exc:
        item.verification = {**(item.verification or {}), "vulnerabilities": exc.evidence}
        raise
