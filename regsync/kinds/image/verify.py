"""Verification as steps of the one pipeline: what the image kind's plan and transfer call
(docs/architecture.md, "The Kind protocol").

Plan time decides (refuse with a reason, or record evidence); apply time runs the same checks again
against the rule the policy gives for the item, before any byte is pushed, because a saved plan may
be old or edited.
"""

from __future__ import annotations

from typing import Any

from regsync.endpoints import Endpoints
from regsync.kinds.image.names import split_image_ref, split_ref
from regsync.errors import VerificationError
from regsync.kinds.image.manifest import Manifest
from regsync.pipeline.plan import PlanItem
from regsync.kinds.image.policy import ImageRule
from regsync.kinds.image.rules import authorize_image
from regsync.kinds.image.attestations import check_attestations
from regsync.kinds.image.buildkit import carried_attestations
from regsync.kinds.image.tree import manifest_tree
from regsync.kinds.image.source import ImageSource
from regsync.kinds.image.vulns import AT_APPLY
from regsync.kinds.image.gates import evaluate_gates, gates_set
from regsync.kinds.image.signatures import check_signatures
from regsync.trust.signing import load_private_key
from regsync.kinds.image.clients import source_registry


def check_before_plan(item: PlanItem, rule: ImageRule, endpoints: Endpoints, tag: str, root: Manifest) -> bool:
    """Fill item.verification, or turn the item into a refusal; False when refused."""
    if rule.sign is not None:
        load_private_key(rule.sign.key, rule.sign.password_env)  # a policy error: found before anything is pushed
    evidence: dict[str, Any] = {}
    try:
        _check(rule, endpoints, tag, item.source_digest or item.digest, root, evidence)
    except VerificationError as exc:
        item.action, item.reason = "refuse", exc.reason
        item.verification = evidence or None
        return False
    item.verification = evidence or None
    if (evidence.get("vulnerabilities") or {}).get("package_list") == AT_APPLY:
        item.reason = "; ".join(filter(None, [item.reason, "vulnerabilities: the layers are scanned at apply "
                                              "(no verified SBOM attestation, no earlier scan of every layer)"]))
    return True


def _check(rule: ImageRule, endpoints: Endpoints, tag: str, source_digest: str, root: Manifest,
           evidence: dict[str, Any]) -> None:
    """The rule's checks of one image in order, each one's evidence added as it passes; raises
    VerificationError at the first that fails. `root` is what would be pushed (platform-filtered)."""
    src_name, src_repo = split_ref(rule.source)
    src = source_registry(endpoints, src_name)
    if rule.crosscheck:
        evidence["crosscheck"] = crosscheck(endpoints, rule, src_repo, tag, source_digest)
    signature = check_signatures(src, src_repo, source_digest, rule.verify, endpoints.policy.trust)
    if signature is not None:
        evidence["signature"] = signature
    statements: list[dict[str, Any]] = []   # of the attestations verified: a verified SBOM is a package list
    if rule.verify.require_attestations:
        evidence["attestations"] = check_attestations(src, src_repo, source_digest, rule.verify,
                                                      endpoints.policy.trust, statements)
    if gates_set(rule.gates):
        evidence["gates"] = evaluate_gates(rule.gates, src, src_repo, root, tag)
    if rule.gates.vulnerabilities is not None:
        _vulnerabilities(rule, endpoints, src, src_repo, root, tag, statements, evidence)
    carried = carried_attestations(manifest_tree(src, src_repo, root)) if root.is_index else None
    if carried is not None:  # read from manifests already fetched: unsigned evidence, never a check passed
        evidence["buildkit_attestations"] = carried


def _vulnerabilities(rule: ImageRule, endpoints: Endpoints, src: ImageSource, src_repo: str, root: Manifest,
                     tag: str, statements: list[dict[str, Any]], evidence: dict[str, Any]) -> None:
    """The vulnerability gate on what is known before any byte moves (kinds/image/vulns.py)."""
    from regsync.kinds.image.vulns import judge_listed
    from regsync.vulns.gate import VulnerabilityRefusal

    assert rule.gates.vulnerabilities is not None, "called for a rule with the gate"
    try:
        evidence["vulnerabilities"] = judge_listed(rule.gates.vulnerabilities, endpoints,
                                                   manifest_tree(src, src_repo, root), statements,
                                                   f"{rule.target}:{tag}")
    except VulnerabilityRefusal as exc:
        evidence["vulnerabilities"] = exc.evidence
        raise


def crosscheck(endpoints: Endpoints, rule: ImageRule, repo: str, tag: str, digest: str) -> dict[str, Any]:
    """The digest a second registry serves for the same tag must be the canonical one."""
    assert rule.crosscheck is not None, "called for a rule with crosscheck: only"
    other = source_registry(endpoints, rule.crosscheck)
    found = other.head_manifest(repo, tag)
    if found is None:
        raise VerificationError(f"mirror cross-check mismatch: {rule.crosscheck} does not serve {repo}:{tag}, "
                                f"so {digest} cannot be confirmed")
    if found.digest != digest:
        raise VerificationError(f"mirror cross-check mismatch: {rule.crosscheck} serves {found.digest} for "
                                f"{repo}:{tag}, {rule.source} serves {digest}")
    return {"registry": rule.crosscheck, "digest": found.digest}


def evidence_before_push(item: PlanItem, endpoints: Endpoints, root: Manifest) -> dict[str, Any]:
    """Every check of the policy's rule run again now, as if the plan had not been seen: a saved
    plan may be old, or edited, and may only narrow what the policy allows. Nothing of the plan's
    evidence is carried over; `item.verification` holds what was found (also when refused)."""
    rule = authorize_image(item, endpoints.policy)
    evidence: dict[str, Any] = {"rechecked": True}
    item.verification = evidence
    _check(rule, endpoints, split_image_ref(item.source)[2], item.source_digest or item.digest, root, evidence)
    return evidence
