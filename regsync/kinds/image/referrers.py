"""OCI 1.1 referrers: manifests whose `subject` is an image (sigstore bundles, attestations, SBOMs).

Discovery follows the distribution spec: ask the referrers API, and when the registry answers 404
(distribution 2.8, older Harbor/Nexus) read the fallback index tagged `sha256-<hex>` instead,
which clients pushing to such registries maintain themselves.
"""

from __future__ import annotations

import json
from typing import Any

from loguru import logger

from regsync.errors import NotFound, VerificationError
from regsync.kinds.image.client import RegistryClient
from regsync.kinds.image.source import ImageSource
from regsync.kinds.image.manifest import OCI_INDEX, Manifest
from regsync.content.digest import digest_of
from regsync.content.reader import read_small_blob
from regsync.kinds.image.copy import BlobCopier, copy_tree
from regsync.kinds.image.tree import manifest_tree

MAX_REFERRERS = 200
MAX_BUNDLE_BYTES = 1 << 20


def referrers_tag(digest: str) -> str:
    """'sha256:ab…' → 'sha256-ab…' (the spec's referrers tag schema)."""
    algorithm, _, hexdigest = digest.partition(":")
    return f"{algorithm}-{hexdigest}"


def list_referrers(client: ImageSource, repo: str, digest: str,
                   artifact_type: str | None = None) -> list[dict[str, Any]]:
    """Descriptors of the manifests that name `digest` as their subject (optionally of one artifactType)."""
    index = client.get_referrers(repo, digest)
    if index is None:
        try:
            index = client.get_manifest(repo, referrers_tag(digest)).doc
        except NotFound:
            return []
    found = [d for d in index.get("manifests") or [] if isinstance(d, dict) and isinstance(d.get("digest"), str)]
    if len(found) > MAX_REFERRERS:
        raise VerificationError(f"{client.ref(repo, digest)} has {len(found)} referrers, more than the "
                                f"{MAX_REFERRERS} accepted")
    return [d for d in found if artifact_type is None or d.get("artifactType") == artifact_type]


def read_artifact_layer(client: ImageSource, repo: str, subject: str, descriptor: dict[str, Any],
                        media_type: str) -> tuple[Manifest, bytes] | None:
    """The referrer manifest and its first `media_type` layer's bytes (digest checked); None if it has none.

    The referrer must name `subject`: a fallback tag is written by clients, not the registry, so
    an entry pointing at another image's attachment would otherwise be believed.
    """
    manifest = client.get_manifest(repo, descriptor["digest"])
    named = subject_of(manifest)
    if named != subject:
        raise VerificationError(f"payload names another digest: referrer {manifest.digest} has subject "
                                f"{named or 'none'}, the image is {subject}")
    for layer in manifest.doc.get("layers") or []:
        if isinstance(layer, dict) and layer.get("mediaType") == media_type:
            return manifest, _read_blob(client, repo, layer)
    return None


def subject_of(manifest: Manifest) -> str | None:
    """The digest a referrer manifest names as its `subject` (None when it names none)."""
    subject = manifest.doc.get("subject")
    named = subject.get("digest") if isinstance(subject, dict) else None
    return named if isinstance(named, str) else None


def _read_blob(client: ImageSource, repo: str, layer: dict[str, Any]) -> bytes:
    digest, size = layer.get("digest"), layer.get("size")
    if not isinstance(digest, str) or not isinstance(size, int) or not 0 <= size <= MAX_BUNDLE_BYTES:
        raise VerificationError(f"signature invalid: {client.ref(repo, str(digest))} is malformed or oversized")
    return read_small_blob(client, repo, digest, size)


def copy_referrers(src: ImageSource, src_repo: str, dst: RegistryClient, dst_repo: str,
                   digests: list[str], blobs: BlobCopier) -> tuple[list[str], list[str]]:
    """Copy every referrer of each digest, bytes unchanged, and index it on the target; returns
    (copied, refused).

    Runs after the image is pushed. A referrer whose manifest names another subject is refused:
    the fallback index is written by clients, not the registry, so it can list anything. On a
    registry without the referrers API the target's `sha256-<hex>` index is extended (never
    replaced), so referrers already there survive.
    """
    copied, refused = [], []
    for subject in digests:
        kept = []
        for descriptor in list_referrers(src, src_repo, subject):
            manifest = src.get_manifest(src_repo, descriptor["digest"])
            named = subject_of(manifest)
            if named != subject:
                logger.warning("{}: referrer {} names {} as its subject, not this image; not copied",
                               src.ref(src_repo, subject), manifest.digest, named or "nothing")
                refused.append(f"{subject} <- {manifest.digest}: its subject is {named or 'none'}, not the image")
                continue
            copy_tree(src, src_repo, dst, dst_repo, manifest_tree(src, src_repo, manifest), manifest.digest, blobs)
            copied.append(f"{subject} <- {manifest.digest}")
            kept.append(referrer_descriptor(manifest))
        if kept and dst.get_referrers(dst_repo, subject) is None:
            _extend_fallback_index(dst, dst_repo, subject, kept)
    return copied, refused


def referrer_descriptor(manifest: Manifest) -> dict[str, Any]:
    """The index entry for a referrer, built from its verified manifest as the spec's referrers API
    builds it (the source's client-written entry could misstate its type or size)."""
    config = got if isinstance(got := manifest.doc.get("config"), dict) else {}
    descriptor: dict[str, Any] = {"mediaType": manifest.media_type, "digest": manifest.digest,
                                  "size": len(manifest.raw)}
    artifact_type = manifest.doc.get("artifactType") or config.get("mediaType")
    if isinstance(artifact_type, str):
        descriptor["artifactType"] = artifact_type
    if isinstance(manifest.doc.get("annotations"), dict):
        descriptor["annotations"] = manifest.doc["annotations"]
    return descriptor


def _extend_fallback_index(client: RegistryClient, repo: str, subject: str, descriptors: list[dict[str, Any]]) -> None:
    tag = referrers_tag(subject)
    try:
        doc: dict[str, Any] = dict(client.get_manifest(repo, tag).doc)
    except NotFound:
        doc = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": []}
    present = {d.get("digest") for d in doc.get("manifests") or []}
    missing = [d for d in descriptors if d["digest"] not in present]
    if not missing:
        return
    doc["manifests"] = list(doc.get("manifests") or []) + missing
    raw = json.dumps(doc, separators=(",", ":")).encode()
    client.put_manifest(repo, tag, Manifest(raw, OCI_INDEX, digest_of(raw), doc))
