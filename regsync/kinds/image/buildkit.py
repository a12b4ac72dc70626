"""BuildKit's attestation manifests in an image index: what they hold, for the plan and the audit.

`docker buildx build --push` adds one per image (moby/buildkit exporter/containerimage/writer.go,
commitAttestationsManifest): an OCI manifest whose layers are in-toto statements (an SPDX SBOM,
SLSA provenance), each annotated with its predicate type. They travel with the index unchanged.
Nothing signs them, so they are named as evidence a reviewer can read, never counted as a verified
attestation: `verify.require_attestations` checks signed ones (kinds/image/attestations.py).
"""

from __future__ import annotations

import re
from typing import Any

from regsync.kinds.image.manifest import Manifest

PREDICATE_TYPE = "in-toto.io/predicate-type"
# A predicate type is a URI; anything else a server writes there is not echoed into the audit trail.
_PREDICATE = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*:[A-Za-z0-9/._~%:#?=&+@-]{1,200}")


def carried_attestations(tree: list[Manifest]) -> dict[str, Any] | None:
    """{"signed": False, "predicate_types": {platform: [types]}} for the attestation manifests under
    an image (`tree` from manifest_tree); None when it has none. Reads manifests only, no blob."""
    entries = [d for m in tree for d in m.children()]
    attesting = {d.digest: d.attestation_of for d in entries if d.attestation_of is not None}
    if not attesting:
        return None
    platforms = {d.digest: d.platform for d in entries if d.runnable}
    held: dict[str, list[str]] = {}
    for manifest in tree:
        if manifest.digest not in attesting or manifest.is_index:
            continue
        subject = attesting[manifest.digest]
        name = platforms.get(subject) or subject or "?"
        held[name] = sorted(set(held.get(name, [])) | {_predicate_type(layer) for layer in _layers(manifest)})
    return {"signed": False, "predicate_types": held,
            "note": "BuildKit attestation manifests carried with the index; unsigned, not verified"}


def _layers(manifest: Manifest) -> list[Any]:
    manifest.blobs()  # checks the shape (config and layers present)
    return [layer for layer in manifest.doc["layers"] if isinstance(layer, dict)]


def _predicate_type(layer: dict[str, Any]) -> str:
    annotations = layer.get("annotations")
    value = annotations.get(PREDICATE_TYPE) if isinstance(annotations, dict) else None
    return value if isinstance(value, str) and _PREDICATE.fullmatch(value) else "(not named)"
