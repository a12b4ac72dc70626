"""OCI 1.1 referrers (sigstore bundles, attestations) carried in an air-gap bundle.

A bundle is an OCI layout, which has no referrers API; so each image's referrers are written with
an index under the spec's referrers tag (`sha256-<hex>`), exactly what a client writes on a
registry without the API, and import reads them through the same fallback (kinds/image/referrers.py).
"""

from __future__ import annotations

import json
from collections.abc import Callable

from regsync.content.layout import LayoutWriter
from regsync.kinds.image.source import ImageSource
from regsync.kinds.image.layout import copy_into_layout
from regsync.kinds.image.manifest import OCI_INDEX, Manifest
from regsync.kinds.image.policy import ImageRule
from regsync.policy.models import Trust
from regsync.kinds.image.tree import manifest_tree
from regsync.content.digest import digest_of
from regsync.kinds.image.referrers import list_referrers, referrer_descriptor, referrers_tag, subject_of


def carries_referrers(rule: ImageRule, trust: dict[str, Trust]) -> bool:
    """Referrers go into the bundle when the rule copies them, or verifies what they hold on import."""
    names = set(rule.verify.trust) | {n for wanted in rule.verify.require_attestations for n in wanted.trust}
    return rule.copy_extras.referrers or any(trust[n].keyless is not None for n in names if n in trust)


def export_referrers(src: ImageSource, src_repo: str, ref_prefix: str, digest: str, writer: LayoutWriter,
                     on_bytes: Callable[[int], None] | None,
                     add_ref: Callable[[str, Manifest], None]) -> int:
    """Copy the referrers of `digest` and index them under `<ref_prefix>:sha256-<hex>`; bytes moved."""
    moved, kept = 0, []
    for descriptor in list_referrers(src, src_repo, digest):
        manifest = src.get_manifest(src_repo, descriptor["digest"])
        if subject_of(manifest) != digest:
            continue  # a client-written fallback index can list anything; import would refuse it anyway
        moved += copy_into_layout(src, src_repo, manifest_tree(src, src_repo, manifest), writer, on_bytes)
        kept.append(referrer_descriptor(manifest))
    if kept:
        doc = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": kept}
        raw = json.dumps(doc, separators=(",", ":")).encode()
        index = Manifest(raw, OCI_INDEX, digest_of(raw), json.loads(raw))
        writer.write_manifest(index)
        add_ref(f"{ref_prefix}:{referrers_tag(digest)}", index)
    return moved
