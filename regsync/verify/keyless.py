"""Keyless (Fulcio certificate) signatures: refusals are precise, acceptance is not implemented.

What is read: the leaf certificate in the `dev.sigstore.cosign/certificate` annotation, its
OIDC issuer (Fulcio extension 1.3.6.1.4.1.57264.1.8, or the older …1.1), its identity (SAN URI
or e-mail), and the signing time from the Rekor bundle in `dev.sigstore.cosign/bundle`. These
only ever *refuse* (identity mismatch, issuer mismatch, certificate expired at signing): without
the chain, SCT and Rekor checks against the policy's trusted_root.json nothing here may vouch for
an image, so a keyless entry whose constraints all match still ends in `untrusted certificate`.
"""

from __future__ import annotations

import json
import re
from datetime import datetime, timezone

from cryptography import x509
from cryptography.x509.oid import ObjectIdentifier

from regsync.policy.models import Trust
from regsync.verify.cosign import BUNDLE_ANNOTATION, CERTIFICATE_ANNOTATION, SignedPayload

FULCIO_ISSUER_V2 = ObjectIdentifier("1.3.6.1.4.1.57264.1.8")   # DER UTF8String
FULCIO_ISSUER_V1 = ObjectIdentifier("1.3.6.1.4.1.57264.1.1")   # raw bytes (deprecated)


def verify_keyless(name: str, entry: Trust, payloads: list[SignedPayload], digest: str):
    from regsync.verify.signatures import Failure, worst

    failures = [_check(name, entry, signed, Failure) for signed in payloads]
    return worst(failures)


def _check(name: str, entry: Trust, signed: SignedPayload, Failure):
    pem = signed.annotations.get(CERTIFICATE_ANNOTATION)
    if not isinstance(pem, str) or not pem:
        return Failure("untrusted certificate", f"trust entry '{name}' is keyless, but the signature "
                                                f"{signed.layer_digest} carries no certificate")
    try:
        cert = x509.load_pem_x509_certificate(pem.encode())
    except ValueError:
        return Failure("signature invalid", f"the certificate on {signed.layer_digest} is not PEM X.509")
    wanted = entry.keyless
    issuer = fulcio_issuer(cert)
    if issuer != wanted.issuer:
        return Failure("issuer mismatch", f"certificate issuer is {issuer or 'absent'}, trust entry "
                                          f"'{name}' requires {wanted.issuer}")
    identities = identities_of(cert)
    if not any(_identity_matches(wanted, identity) for identity in identities):
        expected = wanted.identity or f"~/{wanted.identity_regex}/"
        return Failure("identity mismatch", f"certificate identity is {', '.join(identities) or 'absent'}, "
                                            f"trust entry '{name}' requires {expected}")
    signed_at = signing_time(signed.annotations.get(BUNDLE_ANNOTATION))
    if signed_at is not None and not cert.not_valid_before_utc <= signed_at <= cert.not_valid_after_utc:
        return Failure("certificate expired at signing", f"signed at {signed_at.isoformat()}, the certificate "
                                                         f"is valid {cert.not_valid_before_utc.isoformat()} to "
                                                         f"{cert.not_valid_after_utc.isoformat()}")
    return Failure("untrusted certificate", f"identity and issuer match trust entry '{name}', but this build does "
                                            f"not verify the chain, SCT and Rekor entry against trusted_root.json; "
                                            f"refusing rather than trusting an unchecked certificate")


def fulcio_issuer(cert: x509.Certificate) -> str | None:
    for oid in (FULCIO_ISSUER_V2, FULCIO_ISSUER_V1):
        try:
            value = cert.extensions.get_extension_for_oid(oid).value.value
        except x509.ExtensionNotFound:
            continue
        if oid == FULCIO_ISSUER_V2 and len(value) >= 2 and value[0] == 0x0C:
            value = value[2:] if value[1] < 0x80 else value[2 + (value[1] & 0x7F):]  # DER UTF8String
        return value.decode("utf-8", "replace")
    return None


def identities_of(cert: x509.Certificate) -> list[str]:
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return []
    return san.get_values_for_type(x509.UniformResourceIdentifier) + san.get_values_for_type(x509.RFC822Name)


def _identity_matches(wanted, identity: str) -> bool:
    if wanted.identity is not None:
        return identity == wanted.identity
    return re.search(wanted.identity_regex, identity) is not None


def signing_time(bundle) -> datetime | None:
    """integratedTime of cosign's Rekor bundle annotation (not verified: used only to refuse)."""
    try:
        seconds = json.loads(bundle)["Payload"]["integratedTime"]
        return datetime.fromtimestamp(int(seconds), timezone.utc)
    except (TypeError, ValueError, KeyError, OverflowError, OSError):
        return None
