"""PEP 740 provenance of package files, verified offline against the policy's trusted_root.json.

The provenance comes from an index's Integrity API (`GET /integrity/<project>/<version>/<file>/
provenance`), by default the rule's source index; `verify.provenance_from` names another one,
because mirrors such as TUNA's carry no provenance. That is safe: an attestation binds a file
name and sha256, so it verifies a file whichever index served the bytes.

`pypi-attestations` parses the provenance, converts each attestation into a sigstore bundle
(`Attestation.to_bundle`) and turns a Trusted Publisher into its certificate policy (build config
URI, source repository, OIDC issuer). Its `Attestation.verify` cannot be used whole: it builds
sigstore's production or staging Verifier (their TUF roots), never one from our trusted root, so
the three steps after the conversion are done here: sigstore's Verifier from the trust entry's
trusted_root.json, then the in-toto statement's single subject compared with the file name and the
sha256 the download is checked against. That comparison is what binds the provenance to bytes.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from cryptography.x509.oid import ObjectIdentifier
from loguru import logger

from regsync.errors import RegistryError, VerificationError
from regsync.kinds.package.policy import PackageRule, Publisher
from regsync.policy.models import Keyless
from regsync.kinds.package.integrity import MAX_PROVENANCE_BYTES
from regsync.kinds.package.clients import provenance_index
from regsync.kinds.package.source import PackageSource

if TYPE_CHECKING:
    from cryptography.x509 import Certificate
    from pypi_attestations import Attestation, GitHubPublisher, GitLabPublisher, GooglePublisher, Provenance

    from regsync.endpoints import Endpoints
    from regsync.trust.keyless import TrustRoot

IN_TOTO = "application/vnd.in-toto+json"
BUILD_CONFIG_URI = ObjectIdentifier("1.3.6.1.4.1.57264.1.18")


def publish_provenance(rule: PackageRule, endpoints: Endpoints, filename: str, digest: str) -> dict[str, Any] | None:
    verify = rule.verify
    if verify.attestations == "off":
        return None
    # optional, with nothing to verify against (the policy check says so; publisher and trust go together)
    if verify.publisher is None or verify.trust is None:
        return {"method": "pep740", "verified": False,
                "reason": "the policy names no publisher and trust entry to verify provenance against"}
    index = provenance_index(rule, endpoints)
    try:
        return verify_provenance(endpoints, index, verify.trust, verify.publisher, filename, digest)
    except (VerificationError, RegistryError) as exc:
        if verify.attestations == "required":
            raise
        reason = (exc.reason if isinstance(exc, VerificationError) else "") or str(exc)
        logger.warning("{}: copied without verified provenance (attestations: optional): {}", filename, reason)
        return {"method": "pep740", "verified": False, "provenance_from": index.name, "reason": reason}


def verify_provenance(endpoints: Endpoints, index: PackageSource, trust_name: str, publisher: Publisher, filename: str,
                      digest: str) -> dict[str, Any]:
    # sigstore takes 0.4 s to import: only runs that verify provenance pay for it
    from regsync.trust.keyless import load_trust_root

    entry = endpoints.policy.trust[trust_name]
    root = load_trust_root(entry, trust_name)
    url, raw = fetch_provenance(index, filename)
    provenance = parse_provenance(raw, filename, url)
    assert entry.keyless is not None, "policy check: a provenance trust entry is keyless"
    failures = []
    for bundle in provenance.attestation_bundles:
        for number, attestation in enumerate(bundle.attestations):
            try:
                evidence = _verify_attestation(attestation, root, trust_name, entry.keyless, publisher, filename,
                                               digest)
            except _Failed as exc:
                failures.append(f"attestation {number + 1}: {exc}")
                continue
            _check_environment(publisher, bundle.publisher, filename)
            return {**evidence, "provenance_from": index.name, "provenance_url": url}
    if not failures:
        raise VerificationError(f"pep740: the provenance of {filename} at {url} holds no attestation")
    raise VerificationError(f"pep740: no attestation of {filename} verifies: {'; '.join(failures)}")


def fetch_provenance(index: PackageSource, filename: str) -> tuple[str, bytes]:
    """(where, raw JSON) of the provenance of `filename`; VerificationError when there is none."""
    return index.provenance(filename, MAX_PROVENANCE_BYTES)


def parse_provenance(raw: bytes, filename: str, url: str) -> Provenance:
    from pydantic import ValidationError
    from pypi_attestations import Provenance

    try:
        return Provenance.model_validate_json(raw)
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        where = ".".join(str(part) for part in first["loc"])
        raise VerificationError(f"pep740: the provenance of {filename} at {url} is not a PEP 740 provenance "
                                f"object ({where}: {first['msg']})") from None


class _Failed(Exception):
    pass


def _verify_attestation(attestation: Attestation, root: TrustRoot, trust_name: str, keyless: Keyless,
                        publisher: Publisher, filename: str, digest: str) -> dict[str, Any]:
    from pypi_attestations import ConversionError
    from sigstore.errors import Error as SigstoreError

    from regsync.trust.keyless import Refusal
    from regsync.trust.sigstore import signed_by, verifier

    try:
        bundle = attestation.to_bundle()
    except ConversionError as exc:
        raise _Failed(f"not convertible to a sigstore bundle: {exc}") from None
    policy = _PublisherPolicy(publisher, trust_name, keyless)
    try:
        payload_type, payload = verifier(root).verify_dsse(bundle, policy)
    except Refusal as exc:
        raise _Failed(f"{exc.category}: {exc.detail}") from None
    except SigstoreError as exc:
        raise _Failed(f"signature or log entry invalid: {str(exc).splitlines()[0][:300]}") from None
    predicate_type = _check_subject(payload_type, payload, filename, digest)
    return {"method": "pep740", "verified": True, "trust": trust_name, "publisher": _evidence_of(publisher),
            **signed_by(bundle), "predicate_type": predicate_type,
            "verified_by": "sigstore Verifier (trusted_root.json, offline) with pypi-attestations' publisher policy"}


class _PublisherPolicy:
    """A sigstore VerificationPolicy: the publisher's policy from pypi-attestations, then the trust
    entry's own issuer/identity constraints (a trust entry always holds, whatever rule uses it).
    Whatever the publisher policy raises (a missing extension, say) becomes a refusal."""

    def __init__(self, publisher: Publisher, trust_name: str, keyless: Keyless):
        self.publisher = publisher
        # `_as_policy` is private, but it is the library's only way to the publisher's certificate
        # policy short of `Attestation.verify`, which cannot take our trusted root (pinned <0.1).
        from regsync.trust.keyless import Constraints

        self._policy = _library_publisher(publisher)._as_policy()
        self._constraints = Constraints(trust_name, keyless)

    def verify(self, cert: Certificate) -> None:
        from regsync.trust.keyless import Refusal, fulcio_claim

        try:
            self._policy.verify(cert)
        except Exception as exc:  # sigstore's VerificationError, x509.ExtensionNotFound, ValueError
            detail = str(exc).splitlines()[0][:300] if str(exc) else type(exc).__name__
            if "Build Config URI" in detail:  # the library's message shows the extension object, not its value
                detail = f"its Build Config URI is {fulcio_claim(cert, BUILD_CONFIG_URI) or 'absent'}"
            raise Refusal("publisher mismatch", f"the signing certificate is not from {_describe(self.publisher)}: "
                                                f"{detail}") from None
        self._constraints.verify(cert)


def _library_publisher(publisher: Publisher) -> GitHubPublisher | GitLabPublisher | GooglePublisher:
    from pypi_attestations import GitHubPublisher, GitLabPublisher, GooglePublisher

    # Publisher._fields_of_kind: github and gitlab have repository and workflow, google an email.
    repository, workflow, email = publisher.repository or "", publisher.workflow or "", publisher.email or ""
    if publisher.kind == "github":
        return GitHubPublisher(repository=repository, workflow=workflow, environment=publisher.environment)
    if publisher.kind == "gitlab":
        return GitLabPublisher(repository=repository, workflow_filepath=workflow, environment=publisher.environment)
    return GooglePublisher(email=email)


def _check_subject(payload_type: str, payload: bytes, filename: str, digest: str) -> str:
    """Exactly one subject, naming this file and its sha256 (as PEP 740 and pypi-attestations require)."""
    from pypi_attestations import AttestationType
    from pydantic import ValidationError
    from sigstore.dsse import _Statement

    if payload_type != IN_TOTO:
        raise _Failed(f"the envelope holds {payload_type}, not an in-toto statement")
    try:
        statement = _Statement.model_validate_json(payload)
    except ValidationError:
        raise _Failed("the signed statement is not an in-toto statement") from None
    if len(statement.subjects) != 1:
        raise _Failed(f"the statement has {len(statement.subjects)} subjects, PEP 740 allows exactly one")
    subject = statement.subjects[0]
    named = subject.digest.root.get("sha256")
    if subject.name != filename:
        raise _Failed(f"subject mismatch: the statement is about {subject.name}, not {filename}")
    if f"sha256:{named}" != digest:
        raise _Failed(f"subject mismatch: the statement names sha256:{named}, the file is {digest}")
    try:
        AttestationType(statement.predicate_type)
    except ValueError:
        raise _Failed(f"unknown attestation type {statement.predicate_type}") from None
    return statement.predicate_type


def _check_environment(publisher: Publisher, declared: object, filename: str) -> None:
    """Fulcio certificates do not carry the CI environment: only the index's publisher record names
    it, so this is as strong as that index's TLS, weaker than the certificate checks before it."""
    if publisher.environment is None:
        return
    found = getattr(declared, "environment", None)
    if found != publisher.environment:
        raise VerificationError(f"pep740: publisher mismatch: the index records environment "
                                f"{json.dumps(found)} for {filename}, the policy requires {publisher.environment!r}")


def _evidence_of(publisher: Publisher) -> dict[str, Any]:
    return {key: value for key, value in publisher.model_dump().items() if value is not None}


def _describe(publisher: Publisher) -> str:
    if publisher.kind == "google":
        return f"google publisher {publisher.email}"
    return f"{publisher.kind} publisher {publisher.repository} ({publisher.workflow})"
