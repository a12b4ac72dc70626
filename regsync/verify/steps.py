"""Verification as steps of the one pipeline: what `_plan_tag` and `_apply_image` call.

Plan time decides (refuse with a reason, or record evidence); apply time runs the same checks again
against the rule the policy gives for the item, before any byte is pushed, because a saved plan may
be old or edited.
"""

from __future__ import annotations

from loguru import logger

from regsync.endpoints import Endpoints, split_ref
from regsync.errors import PolicyError, RegistryError, VerificationError
from regsync.oci.manifest import Manifest
from regsync.plan import PlanItem
from regsync.policy.models import ImageRule
from regsync.verify.authority import authorize
from regsync.verify.gates import evaluate_gates, gates_set
from regsync.verify.signatures import check_signatures


def rule_of(endpoints: Endpoints, rule_name: str) -> ImageRule:
    """'images[3]' → that rule of the policy the endpoints were built from.

    At apply time `item.rule` is the name verify.authority found in the policy for the item's source
    and target, never the plan's word."""
    try:
        return endpoints.policy.images[int(rule_name.removeprefix("images[").rstrip("]"))]
    except (ValueError, IndexError):
        raise VerificationError(f"the plan names rule '{rule_name}', which the policy does not have") from None


def check_before_plan(item: PlanItem, rule: ImageRule, endpoints: Endpoints, tag: str, root: Manifest) -> bool:
    """Fill item.verification, or turn the item into a refusal; False when refused."""
    if rule.sign is not None:
        from regsync.verify.signing import load_private_key

        load_private_key(rule.sign.key, rule.sign.password_env)  # a policy error: found before anything is pushed
    evidence: dict = {}
    try:
        _check(rule, endpoints, tag, item.source_digest or item.digest, root, evidence)
    except VerificationError as exc:
        item.action, item.reason = "refuse", exc.reason
        item.verification = evidence or None
        return False
    item.verification = evidence or None
    return True


def _check(rule: ImageRule, endpoints: Endpoints, tag: str, source_digest: str, root: Manifest,
           evidence: dict) -> None:
    """The rule's checks of one image in order, each one's evidence added as it passes; raises
    VerificationError at the first that fails. `root` is what would be pushed (platform-filtered)."""
    src_name, src_repo = split_ref(rule.source)
    src = endpoints.registry(src_name)
    if rule.crosscheck:
        evidence["crosscheck"] = crosscheck(endpoints, rule, src_repo, tag, source_digest)
    signature = check_signatures(src, src_repo, source_digest, rule.verify, endpoints.policy.trust)
    if signature is not None:
        evidence["signature"] = signature
    if rule.verify.require_attestations:
        from regsync.verify.image_attestations import check_attestations

        evidence["attestations"] = check_attestations(src, src_repo, source_digest, rule.verify, endpoints.policy.trust)
    if gates_set(rule.gates):
        evidence["gates"] = evaluate_gates(rule.gates, src, src_repo, root, tag)


def crosscheck(endpoints: Endpoints, rule: ImageRule, repo: str, tag: str, digest: str) -> dict:
    """The digest a second registry serves for the same tag must be the canonical one."""
    other = endpoints.registry(rule.crosscheck)
    found = other.head_manifest(repo, tag)
    if found is None:
        raise VerificationError(f"mirror cross-check mismatch: {rule.crosscheck} does not serve {repo}:{tag}, "
                                f"so {digest} cannot be confirmed")
    if found.digest != digest:
        raise VerificationError(f"mirror cross-check mismatch: {rule.crosscheck} serves {found.digest} for "
                                f"{repo}:{tag}, {rule.source} serves {digest}")
    return {"registry": rule.crosscheck, "digest": found.digest}


def evidence_before_push(item: PlanItem, endpoints: Endpoints, root: Manifest) -> dict:
    """Every check of the policy's rule run again now, as if the plan had not been seen: a saved
    plan may be old, or edited, and may only narrow what the policy allows. Nothing of the plan's
    evidence is carried over; `item.verification` holds what was found (also when refused)."""
    rule = authorize(item, endpoints.policy)
    evidence: dict = {"rechecked": True}
    item.verification = evidence
    _check(rule, endpoints, item.source.rpartition(":")[2], item.source_digest or item.digest, root, evidence)
    return evidence


def after_push(item: PlanItem, endpoints: Endpoints, tree: list[Manifest], blobs, evidence: dict | None = None) -> dict:
    """Attachments copied along, then our own signature when `sign:` is set (extra audit fields).

    `evidence`: what was verified before the push; the `.sig` it names is the one copied."""
    from regsync.apply import split_image_ref
    from regsync.verify.signing import sign_pushed

    extras: dict = {}
    rule = rule_of(endpoints, item.rule)
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
            extras["signed"] = sign_pushed(rule.sign, endpoints.registry(dst_name), dst_repo, item.digest)
        except PolicyError as exc:  # pushed but unsigned: a failure of this item, not of the run
            raise RegistryError(item.target, None, f"pushed, but not signed: {exc}") from None
    return extras


def _extras_route(item: PlanItem, endpoints: Endpoints):
    """(src, src_repo, dst, dst_repo) for copying what names the image, or None when it names the
    unfiltered index and the target holds a platform-filtered one."""
    from regsync.apply import split_image_ref

    if item.source_digest and item.source_digest != item.digest:
        logger.warning("{}: signatures and referrers name the unfiltered index {}, not the platform-filtered {}; "
                       "not copied", item.source, item.source_digest, item.digest)
        return None
    src_name, src_repo, _ = split_image_ref(item.source)
    dst_name, dst_repo, _ = split_image_ref(item.target)
    return endpoints.registry(src_name), src_repo, endpoints.registry(dst_name), dst_repo


def verified_signature_manifest(evidence: dict | None) -> str | None:
    """The `.sig` manifest digest a verification accepted, when it accepted one."""
    signature = (evidence or {}).get("signature") or {}
    return signature.get("signature_manifest") if signature.get("status") == "verified" else None


def verified_attachments(evidence: dict | None, digest: str) -> dict[str, str]:
    """Attachment tag → the manifest digest a verification accepted (`.sig`, and `.att` when an
    attestation requirement was met from it): what is copied, whatever the tags say by then."""
    from regsync.verify.cosign import attachment_tag

    pinned = {}
    signature = verified_signature_manifest(evidence)
    if signature:
        pinned[attachment_tag(digest, "sig")] = signature
    for found in (evidence or {}).get("attestations") or []:
        if found.get("status") == "verified" and found.get("attestation_manifest"):
            pinned[attachment_tag(digest, "att")] = found["attestation_manifest"]
    return pinned


def copy_attachments(src, src_repo: str, dst, dst_repo: str, tree: list[Manifest], blobs,
                     verified: dict[str, str] | None = None) -> list[str]:
    """Copy `.sig`/`.att`/`.sbom` of the image and its children, bytes (so digests) unchanged.

    `verified` maps an attachment tag to the manifest its verification accepted (verified_attachments):
    that one is fetched by digest, whatever the tag points to now (the source could have moved it since).
    Runs after the image is pushed, so an attachment never names a digest the target lacks.
    """
    from regsync.oci.copy import copy_tree
    from regsync.resolve.images import manifest_tree
    from regsync.verify.cosign import ATTACHMENT_SUFFIXES, attachment_tag

    copied = []
    for manifest in tree:
        for suffix in ATTACHMENT_SUFFIXES:
            tag = attachment_tag(manifest.digest, suffix)
            pinned = (verified or {}).get(tag)
            found = None if pinned else src.head_manifest(src_repo, tag)
            if pinned is None and found is None:
                continue
            attached = src.get_manifest(src_repo, pinned or found.digest)
            copy_tree(src, src_repo, dst, dst_repo, manifest_tree(src, src_repo, attached), tag, blobs)
            copied.append(f"{tag}@{attached.digest}")
    return copied


def copy_image_referrers(src, src_repo: str, dst, dst_repo: str, tree: list[Manifest],
                         blobs) -> tuple[list[str], list[str]]:
    """`copy: {referrers: true}`: OCI 1.1 referrers of the image and its children, after the image;
    (copied, refused)."""
    from regsync.verify.referrers import copy_referrers

    return copy_referrers(src, src_repo, dst, dst_repo, [manifest.digest for manifest in tree], blobs)
