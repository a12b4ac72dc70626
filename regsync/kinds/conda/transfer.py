"""Apply one conda item: the exact record the plan named, as the channel lists it now; the file
streamed through the shared verifying download (package/fetch.py: sha256 and size from the repodata,
resumed after a kill), placed on the target, and only then listed in the target's repodata."""

from __future__ import annotations

import hashlib
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from regsync.kinds.conda.attest import check_attestation
from regsync.kinds.conda.channel import channels_of
from regsync.kinds.conda.names import record_digest, split_ref
from regsync.kinds.conda.rules import admit_record, conda_rules_for
from regsync.audit.evidence import AlreadyThere, Evidence
from regsync.content.reader import VerifyingReader
from regsync.errors import RegistryError, VerificationError
from regsync.kinds.package.fetch import fetch_verified

if TYPE_CHECKING:
    from rattler import RepoDataRecord

    from regsync.endpoints import Endpoints
    from regsync.kinds.conda.channel import Channels
    from regsync.kinds.conda.policy import CondaRule
    from regsync.kinds.conda.source import CondaFile, CondaSource
    from regsync.pipeline.plan import PlanItem


def planned_record(item: PlanItem, endpoints: Endpoints) -> tuple[list[tuple[str, CondaRule]], Channels, CondaSource,
                                                                  RepoDataRecord, dict[str, Any]]:
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
    weak = any(rule.weak_digests == "allow" for _, rule in rules)
    digest = record_digest(published, weak)
    if digest is None:
        raise VerificationError(f"{item.source}: the channel's repodata gives no sha256 for it"
                                + (" (md5 and size only: weak_digests: allow mirrors it)" if published.get("md5") else ""))
    if digest != item.digest:
        raise VerificationError(f"{item.source}: the channel's repodata now gives {digest}, the plan says {item.digest}")
    return rules, channels, source, record, published


def admitted(item: PlanItem, rules: list[tuple[str, CondaRule]], channels: Channels, record: RepoDataRecord) -> str:
    """The rule that admits the file: its specs match it, or the closure the policy solves holds it."""
    source_name, subdir, filename = split_ref(item.source)

    def platforms(rule: CondaRule) -> list[str]:
        return [subdir] if subdir != "noarch" else list(dict.fromkeys(rule.platforms))

    return admit_record(rules, record, lambda rule: any(
        (source_name, subdir, filename) in channels.closure(rule.sources, list(rule.specs), platform, virtual)
        for platform in platforms(rule) for virtual in rule.virtual_packages))


def apply_conda(item: PlanItem, endpoints: Endpoints, on_bytes: Callable[[int], None] | None = None,
                on_verified: Callable[[Evidence], None] | None = None) -> Evidence | AlreadyThere:
    """What was verified, or AlreadyThere when the target already lists the file with this very record
    (a saved plan applied again): nothing fetched or written. `on_verified`: called once the file is
    verified, before it is placed."""
    rules, channels, source, record, published = planned_record(item, endpoints)
    source_name, subdir, filename = split_ref(item.source)
    item.rule = admitted(item, rules, channels, record)
    attestation = check_attestation(rules, endpoints.policy, record, item.source)
    target = channels.target(split_ref(item.target)[0])
    held = target.listed_before(subdir).get(filename)
    if held is not None and record_digest(held, True) != item.digest:
        # the plan saw none (or this one); the target has since listed other bytes under the name
        raise VerificationError(f"{item.target}: the target lists it with {record_digest(held, True)}; "
                                f"never overwritten")
    method = item.digest.partition(":")[0]
    evidence = Evidence(method=method, against=f"{source_name}/{subdir}/repodata.json", attestation=attestation)
    if held == published:
        return AlreadyThere("already in the target channel with this record (the plan was applied before)")
    if held is not None:
        # a patched record for a file the target holds (its bytes verified when they were placed)
        target.publish(subdir, {filename: published}, source)
        evidence.facts, evidence.checked = {"record_only": True}, False
        return evidence
    with tempfile.TemporaryDirectory(dir=target.staging, prefix=".regsync-") as work:
        path = Path(work) / filename
        package = source.file(subdir, record, published)
        if method == "md5":
            fetch_md5_verified(source, package, item.digest, path, on_bytes)
        else:
            fetch_verified(source, package, path, on_bytes, package.where)
        evidence.rechecked = True
        evidence.facts = {"size": published.get("size")}
        if method == "md5":
            evidence.facts["weak_digest"] = "the channel gives md5 and size only (weak_digests: allow)"
        if on_verified is not None:
            on_verified(evidence)
        target.put(path, subdir, filename)
    target.publish(subdir, {filename: published}, source)
    return evidence


def fetch_md5_verified(source: CondaSource, package: CondaFile, digest: str, path: Path,
                       on_bytes: Callable[[int], None] | None = None) -> None:
    """A record with md5 and size only (weak_digests: allow): streamed, its md5 and size checked
    before the file is handed on. Not resumed after a kill (the resumable path is sha256's)."""
    response = source.open(package)
    try:
        reader = VerifyingReader(response.raw.read, digest, package.size, package.where, on_bytes,
                                 hasher=hashlib.md5(usedforsecurity=False))
        with open(path, "wb") as handle:
            for chunk in reader.chunks():
                handle.write(chunk)
            reader.read(1)  # at the stated size: the digest is checked here
    finally:
        response.close()
