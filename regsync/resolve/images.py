"""Image rules → plan items: select tags, resolve each to a digest, diff against the target.

Read-only by construction: only GET and HEAD reach any registry from here.
"""

from __future__ import annotations

import json
import re
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone

from loguru import logger

from regsync.endpoints import Endpoints, split_ref
from regsync.errors import NotFound, RegistryError, VerificationError
from regsync.oci.client import RegistryClient, read_at_most
from regsync.oci.manifest import Descriptor, Manifest, filter_index
from regsync.plan import PlanError, PlanItem
from regsync.policy.models import ImageRule
from regsync.resolve.tags import is_exact, select_tags
from regsync.verify.steps import check_before_plan
from regsync.shard import Shard

MAX_INDEX_DEPTH = 4  # an index of indexes is legal; deeper nesting is not seen in the wild


def plan_images(rules: list[ImageRule], endpoints: Endpoints, jobs: int, shard: Shard | None = None,
                diff_target: bool = True) -> tuple[list[PlanItem], list[PlanError]]:
    """`diff_target=False` (export): every selected image is planned as a copy, target unseen."""
    items: list[PlanItem] = []
    errors: list[PlanError] = []
    with ThreadPoolExecutor(max_workers=jobs, thread_name_prefix="resolve") as pool:
        for index, rule in enumerate(rules):
            rule_name = f"images[{index}]"
            src_name, src_repo = split_ref(rule.source)
            src = endpoints.registry(src_name)
            try:
                tags = _tags_for(rule, src, src_repo)
            except (RegistryError, VerificationError) as exc:
                errors.append(PlanError(rule.source, str(exc), rule_name))
                continue
            if shard is not None:
                tags = [tag for tag in tags if shard.owns(f"{rule.target}:{tag}")]
            logger.info("{}: {} tag(s) selected", rule.source, len(tags))
            for outcome in pool.map(lambda tag: _plan_tag(rule, rule_name, endpoints, tag, diff_target), tags):
                (errors if isinstance(outcome, PlanError) else items).append(outcome)
    return items, errors


def _tags_for(rule: ImageRule, src: RegistryClient, repo: str) -> list[str]:
    select = rule.tags
    if all(is_exact(p) for p in select.include) and select.latest is None:
        available = select.include  # no listing needed: each exact tag is resolved (or reported missing)
    else:
        available = src.list_tags(repo)
    return select_tags(available, select.include, select.exclude, select.latest,
                       created=lambda tag: image_created(src, repo, tag))


def image_created(client: RegistryClient, repo: str, tag: str) -> datetime | None:
    """The image config's `created` time (the first platform's, for an index)."""
    try:
        manifest = client.get_manifest(repo, tag)
        for _ in range(MAX_INDEX_DEPTH):
            if not manifest.is_index:
                break
            children = manifest.children()
            if not children:
                return None
            manifest = client.get_manifest(repo, children[0].digest)
        config = manifest.config
        with client.open_blob(repo, config.digest) as response:
            body = json.loads(read_at_most(response, 1 << 20, client.ref(repo, config.digest)))
        return parse_time(body["created"])
    except (RegistryError, VerificationError, ValueError, KeyError, TypeError, AttributeError):
        return None


def parse_time(text: str) -> datetime:
    """RFC 3339 as Go writes it (nanoseconds, 'Z'), which datetime.fromisoformat rejects before 3.11."""
    text = re.sub(r"(\.\d{6})\d+", r"\1", text.strip()).replace("Z", "+00:00")
    stamp = datetime.fromisoformat(text)
    return stamp if stamp.tzinfo else stamp.replace(tzinfo=timezone.utc)


def _plan_tag(rule: ImageRule, rule_name: str, endpoints: Endpoints, tag: str,
              diff_target: bool = True) -> PlanItem | PlanError:
    src_name, src_repo = split_ref(rule.source)
    dst_name, dst_repo = split_ref(rule.target)
    src, dst = endpoints.registry(src_name), endpoints.registry(dst_name)
    source, target = f"{rule.source}:{tag}", f"{rule.target}:{tag}"
    try:
        # When the target cannot have this tag (this run's listing of it) there is nothing to compare
        # and the manifest is needed anyway: one GET by tag instead of HEAD, then GET by digest.
        target_may_have = diff_target and _may_have_tag(dst, dst_repo, tag)
        found = src.head_manifest(src_repo, tag) if target_may_have else _get_by_tag(src, src_repo, tag)
        if found is None:
            return PlanError(source, "tag not found on the source", rule_name)
        item = PlanItem("image", source, target, found.digest, "copy", media_type=found.media_type,
                        platforms=rule.platforms, rule=rule_name)
        pinned = rule.tags.pin.get(tag)
        if pinned and pinned != found.digest:
            item.action = "refuse"
            item.reason = f"pinned to {pinned} but the source now serves {found.digest}"
            return item
        root = None
        if rule.platforms:
            root = src.get_manifest(src_repo, found.digest)
            if root.is_index:
                reduced = filter_index(root, rule.platforms)
                item.source_digest, item.digest, root = found.digest, reduced.digest, reduced
        existing = dst.head_manifest(dst_repo, tag) if target_may_have else None
        if existing is not None:
            item.target_before = existing.digest
            if existing.digest == item.digest:
                item.action = "skip"
                item.reason = "already on the target"
                return item
            item.action = "update"
            item.reason = f"target tag points to {existing.digest}"
        root = root or src.get_manifest(src_repo, found.digest)
        if not check_before_plan(item, rule, endpoints, tag, root):
            return item
        item.bytes, item.blobs_missing = _measure(src, src_repo, dst if diff_target else None, dst_repo, root)
        return item
    except VerificationError as exc:
        return PlanItem("image", source, target, "", "refuse", reason=exc.reason, rule=rule_name)
    except RegistryError as exc:
        return PlanError(source, str(exc), rule_name)


def _may_have_tag(client, repo: str, tag: str) -> bool:
    may_have = getattr(client, "may_have_tag", None)  # a mirrored or stand-in client asks tag by tag
    return may_have(repo, tag) if may_have else True


def _get_by_tag(client, repo: str, tag: str) -> Descriptor | None:
    """The tag's manifest, fetched and remembered by digest (so the later GET by digest is free)."""
    try:
        manifest = client.get_manifest(repo, tag)
    except NotFound:
        return None
    return Descriptor(manifest.media_type, manifest.digest, len(manifest.raw))


def manifest_tree(client: RegistryClient, repo: str, root: Manifest, depth: int = 0,
                  sizes: dict[str, int] | None = None) -> list[Manifest]:
    """Every manifest under `root` once, children before parents, `root` last; each digest- and
    size-checked. Once: indexes repeating a child would otherwise multiply the walk per level."""
    if depth > MAX_INDEX_DEPTH:
        raise VerificationError(f"{root.digest}: indexes nested deeper than {MAX_INDEX_DEPTH}")
    sizes = {} if sizes is None else sizes  # digest → size of every manifest already in the tree
    tree: list[Manifest] = []
    for child in root.children():
        manifest = None if child.digest in sizes else client.get_manifest(repo, child.digest)
        if manifest is not None:
            sizes[child.digest] = len(manifest.raw)
        _check_size(root, child, sizes)
        if manifest is not None:
            tree += manifest_tree(client, repo, manifest, depth + 1, sizes)
    return tree + [root]


def _check_size(index: Manifest, child: Descriptor, sizes: dict[str, int]) -> None:
    # Clients check it when they pull (containerd refuses a mismatch): copying it would push an
    # index nobody can pull.
    if child.size != sizes[child.digest]:
        raise VerificationError(f"{index.digest}: lists {child.digest} as {child.size} bytes, "
                                f"the manifest has {sizes[child.digest]}")


def _measure(src: RegistryClient, src_repo: str, dst: RegistryClient | None, dst_repo: str, root: Manifest) -> tuple[int, int]:
    blobs = {b.digest: b.size for m in manifest_tree(src, src_repo, root) for b in m.blobs()}
    missing = [d for d in blobs if dst is None or not dst.blob_exists(dst_repo, d)]
    return sum(blobs[d] for d in missing), len(missing)
