"""Apply one package item: find the exact file the plan named, check it belongs to the policy's
closure, download it verified, then upload it (or place it in the tree). Nothing reaches the target
before its sha256 matched the index and the wheel's own metadata matched its name."""

from __future__ import annotations

import email.message
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from loguru import logger
from pypi_simple import DistributionPackage

from regsync.audit.evidence import AlreadyThere, Evidence
from regsync.errors import RegistryError, VerificationError
from regsync.kinds.package.item import PackageDetails
from regsync.pipeline.plan import PlanItem, details_of
from regsync.content.python_names import parse_file_name
from regsync.kinds.package.ref import sha256_of
from regsync.kinds.package.evidence import check_provenance
from regsync.kinds.package.rules import admit_package, authorize_package
from regsync.kinds.package.identity import check_file
from regsync.kinds.package.clients import package_target, source_index
from regsync.kinds.package.source import PackageSource, PackageTarget
from regsync.kinds.package.policy import PackageRule

if TYPE_CHECKING:
    from regsync.endpoints import Endpoints


def planned_file(item: PlanItem, endpoints: Endpoints) -> tuple[PackageSource, DistributionPackage]:
    """(index, package) for the exact file a plan item names, as the source lists it now."""
    source_name, filename = item.source.split("/", 1)
    index = source_index(endpoints, source_name)
    project = _project_of_file(filename, details_of(item, PackageDetails).project)
    package = next((p for p in index.files(project) if p.filename == filename), None)
    if package is None:
        raise RegistryError(item.source, 404, "no longer on the source index")
    if sha256_of(package) != item.digest:
        # A saved plan applies exactly what was reviewed: a file whose hash moved is not that file.
        raise VerificationError(f"{item.source}: the index now gives {sha256_of(package)}, the plan says {item.digest}")
    return index, package


def already_there(item: PlanItem, endpoints: Endpoints) -> AlreadyThere | None:
    """The target read before anything is fetched (a saved plan applied twice, a cron retry): a file
    it lists with the planned sha256 is there already (nothing fetched or uploaded), one it lists
    with another sha256 is refused, as a fresh plan would say. Unreadable now: the upload finds out."""
    filename = item.source.split("/", 1)[1]
    try:
        target = package_target(endpoints, item.target.split("/", 1)[0])
        present = target.existing(_project_of_file(filename, details_of(item, PackageDetails).project)).get(filename, "absent")
    except RegistryError as exc:
        logger.debug("{}: the target is read again at upload: {}", item.target, exc)
        return None
    if present == item.digest:
        return AlreadyThere("unchanged: the target already has it with the planned sha256")
    if present != "absent":
        raise VerificationError(f"the target has {filename} with {present or 'an unknown hash'}; never overwritten")
    return None


def _project_of_file(filename: str, listed: str | None) -> str:
    """The file name decides (a plan's `project` field is what the page said, and an edited plan
    could say anything); `listed` only for a name no parser reads (a legacy `.zip` sdist, say)."""
    try:
        return parse_file_name(filename)[0]
    except ValueError:
        if listed:
            return listed
        raise VerificationError(f"{filename} is not a wheel or sdist file name") from None


def apply_package(item: PlanItem, endpoints: Endpoints, on_bytes: Callable[[int], None] | None = None,
                  on_verified: Callable[[Evidence], None] | None = None) -> Evidence | AlreadyThere:
    """What was verified, or AlreadyThere when the target holds the file (nothing fetched).
    `on_verified`: called once the file is verified, before it is uploaded.

    Everything is checked against the rule the policy gives for the item's source and target index,
    as if the plan had not been seen: the file must be in the closure that rule resolves to, with
    the sha256 its index lists now, its provenance is verified again, and a wheel must be what its
    file name and the metadata the resolution used say (kinds/package/wheel.py) before it is pushed."""
    rule = authorize_package(item, endpoints.policy)
    there = already_there(item, endpoints)
    if there is not None:
        return there
    index, package = planned_file(item, endpoints)
    admit_package(item.rule, rule, package, endpoints, index)
    source_name, filename = item.source.split("/", 1)[0], package.filename
    target = package_target(endpoints, item.target.split("/", 1)[0])
    # Provenance binds name + sha256, so it is checked before the download: a refusal moves no bytes,
    # and the download then proves the bytes are the ones attested.
    provenance = check_provenance(rule, endpoints, filename, item.digest)
    vulnerabilities = _vulnerability_gate(item, rule, endpoints)
    staging = _staging_dir(target)
    with tempfile.TemporaryDirectory(dir=staging, prefix=".regsync-") as work:
        path = Path(work) / filename
        index.download(package, path, on_bytes)
        check_file(path, filename, f"{source_name}/{filename}", used_metadata(index, package))
        evidence = Evidence(method="sha256", against=f"{source_name} index", rechecked=True,
                            facts=_where_from(index, package), provenance=provenance,
                            vulnerabilities=vulnerabilities)
        if on_verified is not None:
            on_verified(evidence)
        if target.put(path, filename, item.digest):
            # it landed there since the plan was read (another run, another operator): the same bytes
            evidence.on_target = "already had this file with the same sha256 (HTTP 409); not uploaded again"
    return evidence


def used_metadata(index: PackageSource, package: DistributionPackage) -> email.message.Message | None:
    """The PEP 658 metadata the resolution read for `package` (the run's copy), None when the index
    offers none: then the resolution read the wheel's own METADATA, which check_file reads again."""
    if not package.has_metadata or not package.filename.endswith(".whl"):
        return None
    return index.metadata(package)


def _vulnerability_gate(item: PlanItem, rule: PackageRule, endpoints: Endpoints) -> dict[str, Any] | None:
    """Again before the push, with the database as it is now (a saved plan may be old)."""
    if rule.gates is None or rule.gates.vulnerabilities is None:
        return None
    from regsync.kinds.package.plan import check_vulnerabilities

    check_vulnerabilities(item, rule, endpoints)
    if item.action == "refuse":
        raise VerificationError(item.reason)
    found: dict[str, Any] | None = (item.verification or {}).get("vulnerabilities")
    return found


def _where_from(index: PackageSource, package: DistributionPackage) -> dict[str, Any]:
    """Which page's sha256 was trusted and which index sent the bytes (they differ when a mirror helped)."""
    served_by = index.served_by(package)
    if served_by is None:
        return {}  # a bundle: the bytes come from the bundle, checked against the plan's sha256
    return {"hashes_from": index.page_url(package), "downloaded_from": served_by}


def _staging_dir(target: PackageTarget) -> str | None:
    return target.staging_dir()
