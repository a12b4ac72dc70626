"""Image rules → plan items: select tags, resolve each to a digest, diff against the target.

Read-only by construction: only GET and HEAD reach any registry from here.
"""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime

from loguru import logger

from regsync.endpoints import Endpoints
from regsync.kinds.image.names import split_ref
from regsync.errors import NotFound, RegistryError, VerificationError, shown
from regsync.kinds.image.client import RegistryClient
from regsync.kinds.image.source import ImageSource
from regsync.kinds.image.manifest import Descriptor, Manifest, filter_index
from regsync.kinds.image.tree import MAX_INDEX_DEPTH, manifest_tree
from regsync.policy.names import invalid_tag, is_tag
from regsync.pipeline.plan import PlanError, PlanItem
from regsync.kinds.image.item import ImageDetails
from regsync.kinds.image.answers import NAME_UNKNOWN
from regsync.kinds.image.policy import ImageRule
from regsync.kinds.image.tags import select_tags, select_tags_ordered
from regsync.policy.patterns import is_exact
from regsync.kinds.image.verify import check_before_plan
from regsync.pipeline.shard import Shard
from regsync.content.reader import read_small_blob
from regsync.times import parse_time
from regsync.kinds.image.clients import source_registry, target_registry

MAX_CONFIG_BYTES = 1 << 20


def plan_images(rules: list[ImageRule], endpoints: Endpoints, jobs: int, shard: Shard | None = None,
                diff_target: bool = True) -> tuple[list[PlanItem], list[PlanError]]:
    """`diff_target=False` (export): every selected image is planned as a copy, target unseen."""
    items: list[PlanItem] = []
    errors: list[PlanError] = []
    with ThreadPoolExecutor(max_workers=jobs, thread_name_prefix="resolve") as pool:
        for index, rule in enumerate(rules):
            rule_name = f"images[{index}]"
            src_name, src_repo = split_ref(rule.source)
            src = source_registry(endpoints, src_name)
            try:
                if diff_target:  # a dialect's precondition (Harbor: the project) fails this rule only
                    dst_name, dst_repo = split_ref(rule.target)
                    target_registry(endpoints, dst_name).check_target(dst_repo)
                tags, invalid = _tags_for(rule, src, src_repo)
            except NotFound as exc:
                errors.append(PlanError(rule.source, _not_found(exc), rule_name))
                continue
            except (RegistryError, VerificationError) as exc:
                errors.append(PlanError(rule.source, str(exc), rule_name))
                continue
            if shard is not None:
                tags = [tag for tag in tags if shard.owns(f"{rule.target}:{tag}")]
                invalid = [tag for tag in invalid if shard.owns(f"{rule.target}:{tag}")]
            logger.info("{}: {} tag(s) selected", rule.source, len(tags))
            items += [_refuse_invalid(rule, rule_name, tag) for tag in invalid]
            for outcome in pool.map(lambda tag: _plan_tag(rule, rule_name, endpoints, tag, diff_target), tags):
                if isinstance(outcome, PlanError):
                    errors.append(outcome)
                else:
                    items.append(outcome)
    return items, errors


def _tags_for(rule: ImageRule, src: ImageSource, repo: str) -> tuple[list[str], list[str]]:
    """The valid tags to plan, and the listed tags the rule's patterns select that break the tag
    grammar (a source listing `2.9.1?x` beside `2.9.1`): those are refused, never requested."""
    select = rule.tags
    if all(is_exact(p) for p in select.include) and select.latest is None:
        available = select.include  # no listing needed: each exact tag is resolved (or reported missing)
    else:
        available = src.list_tags(repo)
    valid = [tag for tag in available if is_tag(tag)]
    invalid = select_tags([tag for tag in available if not is_tag(tag)], select.include, select.exclude)
    tags, ordering = select_tags_ordered(valid, select.include, select.exclude, select.latest,
                                         created=lambda tag: image_created(src, repo, tag),
                                         prereleases=select.prereleases)
    if ordering:
        logger.info("{}: latest {} by {}{}", rule.source, select.latest,
                    "version" if ordering == "version" else "image creation time",
                    "" if select.prereleases or ordering != "version" else " (pre-releases left out)")
    if not tags and not invalid and available is not select.include:
        # a typo'd pattern or a wrong repository must not look like "nothing to do"
        logger.warning("{}: 0 of {} tags matched [{}]", rule.source, len(available), ", ".join(select.include))
    return tags, invalid


def _not_found(exc: NotFound) -> str:
    return f"{exc.ref}: repository not found on the source" if exc.code == NAME_UNKNOWN else str(exc)


def _refuse_invalid(rule: ImageRule, rule_name: str, tag: str) -> PlanItem:
    name = shown(tag)
    return PlanItem("image", f"{rule.source}:{name}", f"{rule.target}:{name}", "", "refuse", rule=rule_name,
                    reason=f"{invalid_tag(tag)}, listed by the source: refused, never requested",
                    details=ImageDetails())


def image_created(client: ImageSource, repo: str, tag: str) -> datetime | None:
    """The image config's `created` time (the first platform's, for an index)."""
    try:
        manifest = client.get_manifest(repo, tag)
        for _ in range(MAX_INDEX_DEPTH):
            if not manifest.is_index:
                break
            children = [child for child in manifest.children() if child.runnable]
            if not children:
                return None
            manifest = client.get_manifest(repo, children[0].digest)
        config = manifest.config
        if config.size > MAX_CONFIG_BYTES:
            return None
        body = json.loads(read_small_blob(client, repo, config.digest, config.size))
        return parse_time(body["created"])
    except (RegistryError, VerificationError, ValueError, KeyError, TypeError, AttributeError):
        return None


def _plan_tag(rule: ImageRule, rule_name: str, endpoints: Endpoints, tag: str,
              diff_target: bool = True) -> PlanItem | PlanError:
    src_name, src_repo = split_ref(rule.source)
    dst_name, dst_repo = split_ref(rule.target)
    src, dst = source_registry(endpoints, src_name), target_registry(endpoints, dst_name)
    source, target = f"{rule.source}:{tag}", f"{rule.target}:{tag}"
    try:
        # When the target cannot have this tag (this run's listing of it) there is nothing to compare
        # and the manifest is needed anyway: one GET by tag instead of HEAD, then GET by digest.
        target_may_have = diff_target and dst.may_have_tag(dst_repo, tag)
        found = src.head_manifest(src_repo, tag) if target_may_have else _get_by_tag(src, src_repo, tag)
        if found is None:
            exists = src.repository_exists(src_repo)
            return PlanError(source, "repository not found on the source" if exists is False
                             else "tag not found on the source", rule_name)
        details = ImageDetails(media_type=found.media_type, platforms=rule.platforms)
        item = PlanItem("image", source, target, found.digest, "copy", rule=rule_name, details=details)
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
                item.reason = _carried_note(reduced)
        existing = dst.head_manifest(dst_repo, tag) if target_may_have else None
        if existing is not None:
            details.target_before = existing.digest
            if existing.digest == item.digest:
                item.action = "skip"
                item.reason = "already on the target"
                return item
            item.action = "update"
            item.reason = "; ".join(filter(None, [f"target tag points to {existing.digest}", item.reason]))
        root = root or src.get_manifest(src_repo, found.digest)
        if not check_before_plan(item, rule, endpoints, tag, root):
            return item
        item.bytes, details.blobs_missing = _measure(src, src_repo, dst if diff_target else None, dst_repo, root)
        return item
    except VerificationError as exc:
        return PlanItem("image", source, target, "", "refuse", reason=exc.reason, rule=rule_name,
                        details=ImageDetails())
    except RegistryError as exc:
        return PlanError(source, str(exc), rule_name)


def _carried_note(reduced: Manifest) -> str:
    """What the plan says when a platform filter keeps attestation manifests with their images."""
    carried = sum(1 for child in reduced.children() if child.attestation_of)
    return (f"keeps the {carried} attestation manifest{'s' if carried > 1 else ''} (SBOM, provenance) of the "
            f"kept platforms" if carried else "")


def _get_by_tag(client: ImageSource, repo: str, tag: str) -> Descriptor | None:
    """The tag's manifest, fetched and remembered by digest (so the later GET by digest is free)."""
    try:
        manifest = client.get_manifest(repo, tag)
    except NotFound:
        return None
    return Descriptor(manifest.media_type, manifest.digest, len(manifest.raw))


# Up to this size a blob in a repository the target listing found absent is taken as absent without
# a HEAD (plan and apply, one run; issue 16: 4 requests fewer per tag of a new mirror). Bigger blobs
# are still asked: a killed earlier run may have left them there (untagged, so the repository still
# lists as absent), and sending one again would cost far more than a HEAD.
ASSUME_ABSENT_MAX = 1 << 20


def _measure(src: ImageSource, src_repo: str, dst: RegistryClient | None, dst_repo: str, root: Manifest) -> tuple[int, int]:
    blobs = {b.digest: b.size for m in manifest_tree(src, src_repo, root) for b in m.blobs()}
    if dst is not None and dst.is_new_repository(dst_repo):
        dst.assume_absent(dst_repo, [d for d, size in blobs.items() if size <= ASSUME_ABSENT_MAX])
    missing = [d for d in blobs if dst is None or not dst.blob_exists(dst_repo, d)]
    return sum(blobs[d] for d in missing), len(missing)
