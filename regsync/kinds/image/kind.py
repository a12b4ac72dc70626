"""Container images as a Kind (regsync/pipeline/kind.py; docs/architecture.md, "The Kind protocol")."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from regsync.audit.evidence import AlreadyThere, Evidence
from regsync.errors import VerificationError
from regsync.kinds.image.clients import source_key, source_registry, target_registry
from regsync.kinds.image.copy import BlobCopier, copy_tree
from regsync.kinds.image.cosign import ATTACHMENT_SUFFIXES, attachment_tag
from regsync.kinds.image.manifest import Manifest, filter_index
from regsync.kinds.image.names import split_image_ref, split_ref
from regsync.policy.names import check_digest, check_image_ref
from regsync.kinds.image.rules import authorize_image, image_rule_for, rule_of
from regsync.kinds.image.source import ImageSource
from regsync.kinds.image.tree import manifest_tree
from regsync.pipeline.kind import BundleSink, Run

# Verification (sigstore, cryptography), attachments and the bundle layout are imported by the
# methods that use them: a run with no image rule never loads them (issue 16, start-up).
from regsync.kinds.image.item import ImageDetails
from regsync.pipeline.plan import PlanError, PlanItem, details_of
from regsync.kinds.image.policy import ImageRule, ImageSection
from regsync.kinds.image.section import ImagePolicy

if TYPE_CHECKING:
    from regsync.content.layout import LayoutBlobs
    from regsync.endpoints import Endpoints
    from regsync.pipeline.shard import Shard
    from regsync.policy.models import Policy


class ImageKind:
    name = "image"
    section = ImagePolicy()   # its keys of the policy (regsync.policy.section)
    bundle_section = None   # images live in the bundle's OCI layout and index.json only

    def plan(self, policy: Policy, endpoints: Endpoints, jobs: int, shard: Shard | None,
             diff_target: bool) -> tuple[list[PlanItem], list[PlanError]]:
        images = ImageSection.of(policy).images
        if not images:
            return [], []
        from regsync.kinds.image.plan import plan_images

        return plan_images(list(images), endpoints, jobs, shard, diff_target)

    def authorize(self, item: PlanItem, policy: Policy) -> ImageRule:
        return authorize_image(item, policy)

    def read_details(self, fields: dict[str, Any]) -> ImageDetails:
        return ImageDetails.read(fields)

    def check_names(self, item: PlanItem) -> None:
        check_image_ref(item.source)
        check_image_ref(item.target)
        for digest in (item.digest, item.source_digest, details_of(item, ImageDetails).target_before):
            if digest is not None:
                check_digest(digest)

    def is_stale(self, item: PlanItem, endpoints: Endpoints) -> str | None:
        try:
            image_rule_for(endpoints.policy, item.source, item.target)
        except VerificationError:  # apply refuses it; its target is never even looked at
            return None
        name, repo, tag = split_image_ref(item.target)
        current = target_registry(endpoints, name).head_manifest(repo, tag)
        now, before = current.digest if current else None, details_of(item, ImageDetails).target_before
        if now in (before, item.digest):
            return None
        return f"{item.target} now points to {now or 'nothing'}, the plan saw {before or 'nothing'}"

    def transfer(self, item: PlanItem, run: Run) -> Evidence | AlreadyThere:
        from regsync.kinds.image.attachments import after_push
        from regsync.kinds.image.verify import evidence_before_push

        blobs = run.state("oci.blobs", lambda: BlobCopier(run.pool, run.on_bytes))
        endpoints = run.endpoints
        src_name, src_repo, _ = split_image_ref(item.source)
        dst_name, dst_repo, tag = split_image_ref(item.target)
        src, dst = source_registry(endpoints, src_name), target_registry(endpoints, dst_name)
        current = dst.head_manifest(dst_repo, tag) if dst.may_have_tag(dst_repo, tag) else None
        if current is not None and current.digest == item.digest:
            # A saved plan applied again (a cron retry, a second operator): the tag already names
            # exactly this digest, so nothing is fetched, verified or written.
            return AlreadyThere("already on the target (the plan was applied before)")
        root = _planned_root(item, src, src_repo)
        tree = manifest_tree(src, src_repo, root)
        checked = evidence_before_push(item, endpoints, root)  # a saved plan may be old or edited: check now
        verified = Evidence.from_json({"method": "sha256", **checked})
        verified.facts = {"manifests": len(tree), "blobs": len({b.digest for m in tree for b in m.blobs()}),
                          **verified.facts}
        gate = rule_of(endpoints.policy, item.rule).gates.vulnerabilities
        if gate is not None:
            from regsync.kinds.image.vulns import image_vulnerabilities, tap_layers

            tap_layers(blobs, tree)   # the layers' package databases are read as the layers are copied

        def before_manifests() -> None:  # every blob verified on the target, no manifest pushed yet
            if gate is not None:
                verified.vulnerabilities = image_vulnerabilities(item, gate, endpoints, src, src_repo, tree, blobs)
            run.verified(item, verified)
        moved = copy_tree(src, src_repo, dst, dst_repo, tree, tag, blobs, on_verified=before_manifests)
        # What this push moved, not what the plan expected: a re-applied plan finds its blobs there.
        verified.moved = moved
        verified.carried = after_push(item, endpoints, tree, blobs, verified.verification())
        return verified

    def export(self, item: PlanItem, run: Run, sink: BundleSink) -> Evidence:
        from regsync.kinds.image.attachments import verified_attachments
        from regsync.kinds.image.bundle_referrers import carries_referrers, export_referrers
        from regsync.kinds.image.layout import copy_into_layout

        src_name, src_repo, tag = split_image_ref(item.source)
        src = source_registry(run.endpoints, src_name)
        original, root, tree = _tree_of(item, src, src_repo)
        copy_into_layout(src, src_repo, tree, sink.writer, run.on_bytes, sink.leave_out)
        sink.left_out({b.digest for m in tree for b in m.blobs()[1:]} & sink.leave_out)
        sink.writer.write_manifest(original)  # signatures name the original digest: keep it resolvable
        # The ref names what the bundle holds (the filtered index, readable by any OCI tool); the
        # original digest rides along for import, whose signature checks and filter start there.
        sink.add_ref(f"{src_name}/{src_repo}:{tag}", root, original.digest if root is not original else None)
        pinned = verified_attachments(item.verification, original.digest)  # not what the tags say by now
        for suffix in ATTACHMENT_SUFFIXES:
            attached = attachment_tag(original.digest, suffix)
            known = pinned.get(attached)
            found = None if known else src.head_manifest(src_repo, attached)
            digest = known or (found.digest if found is not None else None)
            if digest:
                sig = src.get_manifest(src_repo, digest)
                copy_into_layout(src, src_repo, manifest_tree(src, src_repo, sig), sink.writer, run.on_bytes)
                sink.add_ref(f"{src_name}/{src_repo}:{attached}", sig)
        policy = run.endpoints.policy
        if carries_referrers(rule_of(policy, item.rule), policy.trust):
            export_referrers(src, src_repo, f"{src_name}/{src_repo}", original.digest, sink.writer, run.on_bytes,
                             sink.add_ref)
        return Evidence.from_json(item.verification)   # what the plan (made in this run) checked

    def export_sizes(self, item: PlanItem, endpoints: Endpoints, leave_out: frozenset[str]) -> list[int]:
        src_name, src_repo, _ = split_image_ref(item.source)
        _, _, tree = _tree_of(item, source_registry(endpoints, src_name), src_repo)
        return [b.size for m in tree for b in m.blobs() if b.digest not in leave_out]

    def targets(self, policy: Policy) -> set[str]:
        return {split_ref(rule.target)[0] for rule in ImageSection.of(policy).images}

    def export_stand_ins(self, policy: Policy) -> dict[str, Any]:
        return {}

    def bundle_sources(self, bundle: dict[str, Any], policy: Policy,
                       layout_for: Callable[[str], LayoutBlobs]) -> dict[str, ImageSource]:
        """The policy's source registries, served from the bundle's OCI layout."""
        from regsync.kinds.image.layout import LayoutSource

        return {source_key(name): LayoutSource.over(layout_for(name))
                for name in {split_ref(rule.source)[0] for rule in ImageSection.of(policy).images}}

    def verifies_without_bundle(self, rule: ImageRule) -> bool:
        verify = rule.verify
        return verify.signature == "required" or any(a.mode == "required" for a in verify.require_attestations)


def _tree_of(item: PlanItem, src: ImageSource, src_repo: str) -> tuple[Manifest, Manifest, list[Manifest]]:
    """(the source's manifest, the root exported (platform-filtered when asked), its tree)."""
    original = src.get_manifest(src_repo, item.source_digest or item.digest)
    platforms = details_of(item, ImageDetails).platforms
    root = filter_index(original, platforms) if platforms and original.is_index else original
    return original, root, manifest_tree(src, src_repo, root)


def _planned_root(item: PlanItem, src: ImageSource, src_repo: str) -> Manifest:
    # By digest, never by tag: a saved plan applies exactly what was reviewed.
    root = src.get_manifest(src_repo, item.source_digest or item.digest)
    platforms = details_of(item, ImageDetails).platforms
    if platforms and root.is_index:  # authorize made sure these are the policy's platforms
        root = filter_index(root, platforms)
        if root.digest != item.digest:
            raise VerificationError(f"platform-filtered index is {root.digest}, the plan says {item.digest}")
    elif root.digest != item.digest:
        raise VerificationError(f"the plan names source {item.source_digest} and digest {item.digest}, and no "
                                f"platform filter makes one from the other")
    return root
