"""`audit inventory --format spdx`: an SPDX 2.3 JSON document of what the trail says was imported,
written and validated by the SPDX project's own library (spdx-tools).

The same artifacts as the CycloneDX BOM, as far as SPDX 2.3 carries them: each a package the
inventory's root package (the one the document DESCRIBES) CONTAINS, with its purl (an externalRef, PACKAGE-MANAGER purl), its SHA-256 (checksums),
the packages found inside an image as packages the image CONTAINS, every match of the gate as a
SECURITY `advisory` reference on the package it affects (its comment holding the id, rating,
decision and fixed version: SPDX 2.3 has no vulnerability element), and the trail's source,
target, run, rule and signer in the package comment.
"""

from __future__ import annotations

import hashlib
import json
import re
import uuid
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from regsync.audit.inventory import Imported, inside, matches_of, properties_of

if TYPE_CHECKING:
    from spdx_tools.spdx.model import ExternalPackageRef, Package


def spdx_document(artifacts: list[Imported], name: str) -> str:
    from spdx_tools.spdx.model import (Actor, ActorType, CreationInfo, Document, Package, PackagePurpose,
                                       Relationship, RelationshipType, SpdxNoAssertion)
    from spdx_tools.spdx.jsonschema.document_converter import DocumentConverter
    from spdx_tools.spdx.writer.write_utils import convert, validate_and_deduplicate

    from regsync import __version__

    created = datetime.now(timezone.utc).replace(microsecond=0)
    info = CreationInfo(spdx_version="SPDX-2.3", spdx_id="SPDXRef-DOCUMENT", name=f"regsync inventory of {name}",
                        document_namespace=f"https://spdx.org/spdxdocs/regsync-inventory-{uuid.uuid4()}",
                        creators=[Actor(ActorType.TOOL, f"regsync-{__version__}")], created=created)
    document = Document(info)
    # What the trail says was imported is the document's subject (as syft's root package for a
    # folder is): it CONTAINS each artifact, so an empty inventory is a valid document too.
    root = Package(spdx_id="SPDXRef-DocumentRoot-Inventory", name=f"imported by regsync ({name})",
                   download_location=SpdxNoAssertion(), files_analyzed=False, primary_package_purpose=PackagePurpose.OTHER,
                   comment="every artifact the audit trail records as pushed")
    document.packages.append(root)
    document.relationships.append(Relationship("SPDXRef-DOCUMENT", RelationshipType.DESCRIBES, root.spdx_id))
    for artifact in artifacts:
        purpose = PackagePurpose.CONTAINER if artifact.kind == "image" else PackagePurpose.LIBRARY
        advisories: dict[str, list[ExternalPackageRef]] = {}
        for match, ref in matches_of(artifact):
            advisories.setdefault(ref, []).append(_advisory(match))
        package = _package(artifact.ref, artifact.name, artifact.version, str(artifact.purl), artifact.sha256,
                           purpose, advisories.get(artifact.ref, []),
                           "; ".join(f"regsync:{key}={value}" for key, value in properties_of(artifact.row)))
        document.packages.append(package)
        document.relationships.append(Relationship(root.spdx_id, RelationshipType.CONTAINS, package.spdx_id))
        for found in inside(artifact):
            nested = _package(found.ref, found.name, found.version, str(found.purl), None, PackagePurpose.LIBRARY,
                              advisories.get(found.ref, []), f"found by the regsync vulnerability gate ({found.ecosystem})")
            document.packages.append(nested)
            document.relationships.append(Relationship(package.spdx_id, RelationshipType.CONTAINS, nested.spdx_id))
    checked = validate_and_deduplicate(document, True, True)   # ValueError naming what is invalid
    doc = convert(checked, DocumentConverter())
    for package in doc.get("packages", []):
        for reference in package.get("externalRefs", []):
            # spdx-tools 0.8 writes the enum's name (PACKAGE_MANAGER); the SPDX 2.3 JSON schema and
            # every reader expect the spec's spelling (PACKAGE-MANAGER, PERSISTENT-ID)
            reference["referenceCategory"] = reference["referenceCategory"].replace("_", "-")
    return json.dumps(doc, indent=2)


def _package(ref: str, name: str, version: str | None, purl: str, sha256: str | None, purpose: Any,
             advisories: list[ExternalPackageRef], comment: str) -> Package:
    from spdx_tools.spdx.model import (Checksum, ChecksumAlgorithm, ExternalPackageRef, ExternalPackageRefCategory,
                                       Package, SpdxNoAssertion)

    return Package(spdx_id=spdx_id(ref), name=name, download_location=SpdxNoAssertion(), version=version or None,
                   files_analyzed=False, primary_package_purpose=purpose, comment=comment or None,
                   checksums=[Checksum(ChecksumAlgorithm.SHA256, sha256)] if sha256 else [],
                   external_references=[ExternalPackageRef(ExternalPackageRefCategory.PACKAGE_MANAGER, "purl", purl),
                                        *advisories])


def _advisory(match: dict[str, Any]) -> ExternalPackageRef:
    from spdx_tools.spdx.model import ExternalPackageRef, ExternalPackageRefCategory

    rating = match.get("severity") or "unscored"
    if match.get("score") is not None:
        rating += f" {match['score']} {match.get('vector') or ''}".rstrip()
    comment = (f"{match['id']} ({', '.join(match.get('aliases') or []) or 'no aliases'}): {rating}; "
               f"regsync:decision={match.get('decision')}"
               + (f" ({match['note']})" if match.get("note") else "")
               + (f"; regsync:fixed={match['fixed']}" if match.get("fixed") else ""))
    return ExternalPackageRef(ExternalPackageRefCategory.SECURITY, "advisory",
                              f"https://osv.dev/vulnerability/{match['id']}", comment)


def spdx_id(ref: str) -> str:
    """SPDX ids allow letters, digits, `.` and `-` only: a readable stem and a hash of the whole ref."""
    stem = re.sub(r"[^A-Za-z0-9.-]+", "-", ref)[:60].strip("-")
    return f"SPDXRef-{stem}-{hashlib.sha256(ref.encode()).hexdigest()[:12]}"
