"""What travels with an image after it is pushed: its cosign attachments, its OCI 1.1 referrers,
and our own signature when the rule says `sign:`. Copying, not verification: what was verified is
named by the evidence handed in."""

from __future__ import annotations

from typing import Any

from loguru import logger

from regsync.endpoints import Endpoints
from regsync.errors import PolicyError, RegistryError
from regsync.kinds.image.client import RegistryClient
from regsync.kinds.image.source import ImageSource
from regsync.kinds.image.copy import BlobCopier, copy_tree
from regsync.kinds.image.cosign import ATTACHMENT_SUFFIXES, attachment_tag
from regsync.kinds.image.manifest import Manifest
from regsync.kinds.image.names import split_image_ref
from regsync.kinds.image.referrers import copy_referrers
from regsync.kinds.image.tree import manifest_tree
from regsync.kinds.image.rules import rule_of
from regsync.kinds.image.signing import sign_pushed
from regsync.pipeline.plan import PlanItem
from regsync.kinds.image.clients import source_registry, target_registry


def after_push(item: PlanItem, endpoints: Endpoints, tree: list[Manifest], blobs: BlobCopier,
               evidence: dict[str, Any] | None = None) -> dict[str, Any]:
    """Attachments copied along, then our own signature when `sign:` is set (extra audit fields).

    `evidence`: what was verified before the push; the `.sig` it names is the one copied."""
    extras: dict[str, Any] = {}
    rule = rule_of(endpoints.policy, item.rule)
    route = _extras_route(item, endpoints) if rule.copy_extras.signatures or rule.copy_extras.referrers else None
    if route and rule.copy_extras.signatures:
        attached = copy_attachments(*route, tree, blobs, verified_attachments(evidence, item.digest))
        if attached:
            extras["attachments"] = attached
    if route and rule.copy_extras.referrers:
        referrers, refused = copy_image_referrers(*route, tree, blobs)
        if referrers:
            extras["referrers"] = referrers
        if refused:
            extras["referrers_refused"] = refused
    if rule.sign is not None:
        dst_name, dst_repo, _ = split_image_ref(item.target)
        try:
            extras["signed"] = sign_pushed(rule.sign, target_registry(endpoints, dst_name), dst_repo, item.digest)
        except PolicyError as exc:  # pushed but unsigned: a failure of this item, not of the run
            raise RegistryError(item.target, None, f"pushed, but not signed: {exc}") from None
    return extras


def _extras_route(item: PlanItem, endpoints: Endpoints) -> tuple[ImageSource, str, RegistryClient, str] | None:
    """(src, src_repo, dst, dst_repo) for copying what names the image, or None when it names the
    unfiltered index and the target holds a platform-filtered one."""
    if item.source_digest and item.source_digest != item.digest:
        logger.warning("{}: signatures and referrers name the unfiltered index {}, not the platform-filtered {}; "
                       "not copied", item.source, item.source_digest, item.digest)
        return None
    src_name, src_repo, _ = split_image_ref(item.source)
    dst_name, dst_repo, _ = split_image_ref(item.target)
    return source_registry(endpoints, src_name), src_repo, target_registry(endpoints, dst_name), dst_repo


def verified_signature_manifest(evidence: dict[str, Any] | None) -> str | None:
    """The `.sig` manifest digest a verification accepted, when it accepted one."""
    signature = (evidence or {}).get("signature") or {}
    return signature.get("signature_manifest") if signature.get("status") == "verified" else None


def verified_attachments(evidence: dict[str, Any] | None, digest: str) -> dict[str, str]:
    """Attachment tag → the manifest digest a verification accepted (`.sig`, and `.att` when an
    attestation requirement was met from it): what is copied, whatever the tags say by then."""
    pinned = {}
    signature = verified_signature_manifest(evidence)
    if signature:
        pinned[attachment_tag(digest, "sig")] = signature
    for found in (evidence or {}).get("attestations") or []:
        if found.get("status") == "verified" and found.get("attestation_manifest"):
            pinned[attachment_tag(digest, "att")] = found["attestation_manifest"]
    return pinned


def copy_attachments(src: ImageSource, src_repo: str, dst: RegistryClient, dst_repo: str, tree: list[Manifest],
                     blobs: BlobCopier,
                     verified: dict[str, str] | None = None) -> list[str]:
    """Copy `.sig`/`.att`/`.sbom` of the image and its children, bytes (so digests) unchanged.

    `verified` maps an attachment tag to the manifest its verification accepted (verified_attachments):
    that one is fetched by digest, whatever the tag points to now (the source could have moved it since).
    Runs after the image is pushed, so an attachment never names a digest the target lacks.
    """
    copied = []
    for manifest in tree:
        for suffix in ATTACHMENT_SUFFIXES:
            tag = attachment_tag(manifest.digest, suffix)
            pinned = (verified or {}).get(tag)
            found = None if pinned else src.head_manifest(src_repo, tag)
            digest = pinned or (found.digest if found is not None else None)
            if digest is None:
                continue
            attached = src.get_manifest(src_repo, digest)
            copy_tree(src, src_repo, dst, dst_repo, manifest_tree(src, src_repo, attached), tag, blobs)
            copied.append(f"{tag}@{attached.digest}")
    return copied


def copy_image_referrers(src: ImageSource, src_repo: str, dst: RegistryClient, dst_repo: str, tree: list[Manifest],
                         blobs: BlobCopier) -> tuple[list[str], list[str]]:
    """`copy: {referrers: true}`: OCI 1.1 referrers of the image and its children, after the image;
    (copied, refused)."""
    return copy_referrers(src, src_repo, dst, dst_repo, [manifest.digest for manifest in tree], blobs)
