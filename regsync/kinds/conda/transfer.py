"""Apply one conda item: the exact record the plan named, as the channel lists it now; the file
streamed through the shared verifying download (pypi/fetch.py: sha256 and size from the repodata,
resumed after a kill), placed on the target, and only then listed in the target's repodata."""

from __future__ import annotations

import tempfile
from pathlib import Path

from regsync.kinds.conda.attest import check_attestation
from regsync.kinds.conda.channel import channels_of
from regsync.kinds.conda.names import split_ref
from regsync.kinds.conda.rules import admit_record, conda_rules_for
from regsync.errors import RegistryError, VerificationError
from regsync.kinds.pypi.fetch import fetch_verified


def planned_record(item, endpoints):
    """(rules, channels, source channel, record, published record) for the exact file a plan item
    names: the rules from the policy, never from the plan, and the record as the channel lists it
    now (a plan's digest that moved is refused)."""
    rules = conda_rules_for(endpoints.policy, item.source, item.target)
    source_name, subdir, filename = split_ref(item.source)
    channels = channels_of(endpoints)
    source = channels.source(source_name)
    found = channels.record(source, subdir, filename)
    if found is None:
        raise RegistryError(item.source, 404, "no longer in the channel's repodata")
    record, published = found
    if f"sha256:{published.get('sha256')}" != item.digest:
        raise VerificationError(f"{item.source}: the channel's repodata now gives sha256 {published.get('sha256')}, "
                                f"the plan says {item.digest}")
    return rules, channels, source, record, published


def apply_conda(item, endpoints, audit, on_bytes=None, artifact=None) -> dict:
    """Returns the verification evidence (for the `pushed` record too)."""
    rules, channels, source, record, published = planned_record(item, endpoints)
    source_name, subdir, filename = split_ref(item.source)
    item.rule = admit_record(rules, record)
    attestation = check_attestation(rules, endpoints.policy, record, item.source)
    target = channels.target(split_ref(item.target)[0])
    held = target.listed_before(subdir).get(filename)
    if held is not None and f"sha256:{held.get('sha256')}" != item.digest:
        # the plan saw none (or this one); the target has since listed other bytes under the name
        raise VerificationError(f"{item.target}: the target lists it with sha256 {held.get('sha256')}; "
                                f"never overwritten")
    if held is not None:
        # a patched record for a file the target holds (its bytes verified when they were placed)
        target.publish(subdir, {filename: published})
        evidence = {"method": "sha256", "against": f"{source_name}/{subdir}/repodata.json", "record_only": True}
        return {**evidence, "attestation": attestation} if attestation else evidence
    with tempfile.TemporaryDirectory(dir=target.staging, prefix=".regsync-") as work:
        path = Path(work) / filename
        fetch_verified(source, source.file(subdir, published), path, on_bytes)
        verification = {"method": "sha256", "against": f"{source_name}/{subdir}/repodata.json", "rechecked": True,
                        "size": published.get("size")}
        if attestation is not None:
            verification["attestation"] = attestation
        audit.record("verified", artifact=artifact, policy_rule=item.rule, verification=verification)
        target.put(path, subdir, filename)
    target.publish(subdir, {filename: published})
    return verification
