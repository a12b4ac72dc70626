"""Keyless (Fulcio certificate) signatures, verified offline against the policy's trusted_root.json.

Two shapes reach this module:

- sigstore bundles attached as OCI 1.1 referrers: handed whole to the `sigstore` package's
  `Verifier` (see `bundle.py`); this module supplies the identity/issuer policy and the reasons.
- cosign's legacy annotations on a `.sig` layer (`dev.sigstore.cosign/certificate`, `…/chain`,
  `…/bundle`). Their Rekor bundle carries a signed entry timestamp but no inclusion proof, and
  `sigstore` (4.x) refuses any log entry without one, so these are checked here with
  `cryptography`, step for step as cosign's offline verification does: chain to a Fulcio CA of the
  trusted root at the signing time, the embedded SCT with a CT log key of the trusted root, the
  SET with a Rekor key of the trusted root, the log entry binding certificate, signature and
  payload, the signature itself, then the payload's digest. Identity and issuer go through the
  same policy object as bundles (sigstore's `Identity`, or a regex over the SANs).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import struct
from dataclasses import dataclass
from datetime import datetime, timezone
from functools import lru_cache
from pathlib import Path
from typing import cast

import rfc8785
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509 import ExtendedKeyUsage
from cryptography.x509.oid import ObjectIdentifier
from cryptography.x509.verification import Criticality, ExtensionPolicy, PolicyBuilder, Store
from sigstore.errors import VerificationError as SigstoreError

from regsync.errors import PolicyError
from regsync.policy.models import Keyless, Trust
from regsync.policy.regex import compile_regex
from regsync.trust.payload import BUNDLE_ANNOTATION, CERTIFICATE_ANNOTATION, CHAIN_ANNOTATION, SignedPayload

FULCIO_ISSUER_V2 = ObjectIdentifier("1.3.6.1.4.1.57264.1.8")   # DER UTF8String
FULCIO_ISSUER_V1 = ObjectIdentifier("1.3.6.1.4.1.57264.1.1")   # raw bytes (deprecated, still issued)
MAX_TRUSTED_ROOT_BYTES = 4 << 20


class Refusal(SigstoreError):
    """A reason with its documented category; a sigstore error so the verifier lets it through."""

    def __init__(self, category: str, detail: str):
        super().__init__(f"{category}: {detail}")
        self.category, self.detail = category, detail


# -- identity and issuer ------------------------------------------------------------------------

class Constraints:
    """The trust entry's `keyless:` as a sigstore VerificationPolicy (its `verify(cert)` protocol)."""

    def __init__(self, name: str, wanted: Keyless):
        self.name, self.wanted = name, wanted

    def verify(self, cert: x509.Certificate) -> None:
        issuer = fulcio_issuer(cert)
        if issuer != self.wanted.issuer:
            raise Refusal("issuer mismatch", f"certificate issuer is {issuer or 'absent'}, trust entry "
                                             f"'{self.name}' requires {self.wanted.issuer}")
        if not self._identity_matches(cert):
            expected = self.wanted.identity or f"~/{self.wanted.identity_regex}/"
            raise Refusal("identity mismatch", f"certificate identity is {', '.join(identities_of(cert)) or 'absent'}, "
                                               f"trust entry '{self.name}' requires {expected}")

    def _identity_matches(self, cert: x509.Certificate) -> bool:
        if self.wanted.identity is not None:
            from sigstore.verify.policy import Identity  # sigstore's verifier: only when a keyless entry is used

            try:  # sigstore's own SAN check (URI, e-mail and Sigstore's otherName)
                Identity(identity=self.wanted.identity).verify(cert)
            except (SigstoreError, x509.ExtensionNotFound):
                return False
            return True
        regex = self.wanted.identity_regex
        assert regex is not None, "a keyless entry names identity or identity_regex (policy/models.py checks)"
        compiled = compile_regex(regex)   # RE2, as cosign's Go regexp (regsync/policy/regex.py)
        return any(compiled.search(value) is not None for value in identities_of(cert))


def fulcio_issuer(cert: x509.Certificate) -> str | None:
    for oid in (FULCIO_ISSUER_V2, FULCIO_ISSUER_V1):
        try:
            value = _unrecognized(cert, oid)
        except x509.ExtensionNotFound:
            continue
        text = der_utf8(value) if oid == FULCIO_ISSUER_V2 else None
        return text if text is not None else value.decode("utf-8", "replace")
    return None


def fulcio_claim(cert: x509.Certificate, oid: ObjectIdentifier) -> str | None:
    """A Fulcio claim extension (1.3.6.1.4.1.57264.1.8 and later): a DER UTF8String."""
    try:
        return der_utf8(_unrecognized(cert, oid))
    except x509.ExtensionNotFound:
        return None


def _unrecognized(cert: x509.Certificate, oid: ObjectIdentifier) -> bytes:
    """The raw value of an extension cryptography does not parse (all of Fulcio's are such)."""
    return cast(x509.UnrecognizedExtension, cert.extensions.get_extension_for_oid(oid).value).value


def der_utf8(der: bytes) -> str | None:
    """The text of a DER UTF8String, or None when `der` is not one."""
    if len(der) < 2 or der[0] != 0x0C:
        return None
    return der[2 if der[1] < 0x80 else 2 + (der[1] & 0x7F):].decode("utf-8", "replace")


def signer_identity(cert: x509.Certificate) -> str | None:
    """The identity the audit names: the first URI or e-mail SAN (None for a certificate whose
    identity is only an otherName, which the `identity:` check accepts like sigstore does)."""
    return next(iter(identities_of(cert)), None)


def identities_of(cert: x509.Certificate) -> list[str]:
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return []
    return san.get_values_for_type(x509.UniformResourceIdentifier) + san.get_values_for_type(x509.RFC822Name)


def check_validity(cert: x509.Certificate, signed_at: datetime) -> None:
    if not cert.not_valid_before_utc <= signed_at <= cert.not_valid_after_utc:
        raise Refusal("certificate expired at signing", f"signed at {signed_at.isoformat()}, the certificate is "
                                                        f"valid {cert.not_valid_before_utc.isoformat()} to "
                                                        f"{cert.not_valid_after_utc.isoformat()}")


# -- the trusted root ---------------------------------------------------------------------------

@dataclass(frozen=True, eq=False)  # hashed by identity: one per file, cached
class TrustRoot:
    path: str
    sigstore_root: object          # sigstore.models.TrustedRoot, for the Verifier
    fulcio: tuple                  # trust anchors (every certificate of every CA chain)
    ct_keys: dict                  # log id (sha256 of the DER key) -> public key
    rekor_keys: dict


def load_trust_root(entry: Trust, name: str) -> TrustRoot:
    if entry.trusted_root is None:
        raise PolicyError(f"trust entry '{name}' is keyless but names no trusted_root: (a trusted_root.json "
                          f"with the Fulcio CA, CT log and Rekor keys; regsync never asks Fulcio or Rekor online)")
    return _load(str(entry.trusted_root))


@lru_cache(maxsize=16)
def _load(path: str) -> TrustRoot:
    from sigstore.models import TrustedRoot

    try:
        if Path(path).stat().st_size > MAX_TRUSTED_ROOT_BYTES:
            raise ValueError("too large")
        doc = json.loads(Path(path).read_bytes())
        sigstore_root = TrustedRoot.from_file(path)
        fulcio = tuple(sigstore_root.get_fulcio_certs())
    except OSError as exc:
        raise PolicyError(f"trusted_root {path}: {exc.strerror}") from None
    except Exception as exc:  # sigstore raises pydantic, ValueError and its own errors here
        raise PolicyError(f"trusted_root {path} is not a Sigstore trusted root: {str(exc).splitlines()[0]}") from None
    return TrustRoot(path, sigstore_root, fulcio, _log_keys(doc.get("ctlogs")), _log_keys(doc.get("tlogs")))


def _log_keys(logs) -> dict:
    keys = {}
    for log in logs or []:
        try:
            der = base64.b64decode(log["publicKey"]["rawBytes"])
            keys[hashlib.sha256(der).digest()] = serialization.load_der_public_key(der)
        except (KeyError, TypeError, ValueError):
            continue
    return keys


# -- legacy cosign annotations, checked with cryptography ----------------------------------------

def verify_legacy_certificate(name: str, wanted: Keyless, root: TrustRoot,
                              signed: SignedPayload) -> tuple[x509.Certificate, dict, datetime]:
    """(certificate, Rekor payload with its body decoded, signing time) of a layer's cosign keyless
    annotations, once identity, issuer, chain, SCT and SET hold; raises Refusal. What the log entry
    and the signature cover is the caller's to check: a signature and an attestation differ there."""
    cert, chain = _certificates(signed)
    rekor = _rekor_bundle(signed)
    signed_at = datetime.fromtimestamp(rekor["integratedTime"], timezone.utc)
    Constraints(name, wanted).verify(cert)
    check_validity(cert, signed_at)
    issuer = verify_chain(cert, chain, root, signed_at)
    verify_sct(cert, issuer, root)
    _verify_set(rekor, signed.annotations[BUNDLE_ANNOTATION], root)
    return cert, rekor, signed_at


def verify_legacy(name: str, wanted: Keyless, root: TrustRoot, signed: SignedPayload, digest: str) -> dict:
    cert, rekor, signed_at = verify_legacy_certificate(name, wanted, root, signed)
    _verify_log_body(rekor, cert, signed)
    _verify_payload_signature(cert, signed)
    named = signed.signed_digest()
    if named is None:
        raise Refusal("signature invalid", f"payload {signed.layer_digest} is not a cosign simple-signing payload")
    if named != digest:
        raise Refusal("payload names another digest", f"the signed payload names {named}, the image is {digest}")
    return {"method": "cosign-keyless", "trust": name, "identity": signer_identity(cert),
            "issuer": fulcio_issuer(cert), "rekor_log_index": rekor["logIndex"],
            "integrated_time": signed_at.isoformat(), "payload": signed.layer_digest,
            "verified_by": "regsync (cryptography): chain, SCT, Rekor SET, log entry, signature"}


def _certificates(signed: SignedPayload) -> tuple[x509.Certificate, list[x509.Certificate]]:
    pem = signed.annotations.get(CERTIFICATE_ANNOTATION)
    if not isinstance(pem, str) or not pem:
        raise Refusal("untrusted certificate", f"the signature {signed.layer_digest} carries no certificate")
    try:
        cert = x509.load_pem_x509_certificate(pem.encode())
        chain_pem = signed.annotations.get(CHAIN_ANNOTATION)
        chain = x509.load_pem_x509_certificates(chain_pem.encode()) if isinstance(chain_pem, str) and chain_pem else []
    except ValueError:
        raise Refusal("signature invalid", f"the certificate on {signed.layer_digest} is not PEM X.509") from None
    return cert, chain


def _rekor_bundle(signed: SignedPayload) -> dict:
    try:
        payload = json.loads(signed.annotations[BUNDLE_ANNOTATION])["Payload"]
        payload["integratedTime"], payload["logIndex"] = int(payload["integratedTime"]), int(payload["logIndex"])
        payload["body"] = base64.b64decode(payload["body"], validate=True)
        str(payload["logID"])
        return payload
    except (KeyError, TypeError, ValueError, binascii.Error):
        raise Refusal("untrusted certificate", f"the signature {signed.layer_digest} has no readable Rekor bundle "
                                               f"(dev.sigstore.cosign/bundle): nothing proves when it was signed") from None


def verify_chain(cert: x509.Certificate, chain: list, root: TrustRoot, at: datetime) -> x509.Certificate:
    """Path to a Fulcio certificate of the trusted root, valid at `at`; returns the leaf's issuer.

    The same cryptography policy sigstore's Verifier builds: WebPKI defaults, with the EKU check
    relaxed because Fulcio leaves are code-signing, not client-auth, certificates.
    """
    ca_policy = ExtensionPolicy.webpki_defaults_ca().may_be_present(ExtendedKeyUsage, Criticality.NON_CRITICAL, None)
    ee_policy = ExtensionPolicy.webpki_defaults_ee().may_be_present(ExtendedKeyUsage, Criticality.NON_CRITICAL, None)
    verifier = (PolicyBuilder().store(Store(list(root.fulcio))).time(at)
                .extension_policies(ca_policy=ca_policy, ee_policy=ee_policy).build_client_verifier())
    try:
        return verifier.verify(cert, chain).chain[1]
    except Exception as exc:  # VerificationError, UnsupportedGeneralNameType
        raise Refusal("untrusted certificate", f"the certificate does not chain to a Fulcio CA of "
                                               f"{Path(root.path).name}: {exc}") from None


def verify_sct(cert: x509.Certificate, issuer: x509.Certificate, root: TrustRoot) -> None:
    """RFC 6962 §3.2: the embedded precertificate SCT, signed by a CT log of the trusted root."""
    try:
        scts = cert.extensions.get_extension_for_class(x509.PrecertificateSignedCertificateTimestamps).value
    except x509.ExtensionNotFound:
        raise Refusal("untrusted certificate", "the certificate has no embedded SCT") from None
    issuer_hash = hashlib.sha256(issuer.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)).digest()
    tbs = cert.tbs_precertificate_bytes
    for sct in scts:
        key = root.ct_keys.get(sct.log_id)
        if key is None or not isinstance(key, ec.EllipticCurvePublicKey):
            continue
        millis = round(sct.timestamp.replace(tzinfo=timezone.utc).timestamp() * 1000)
        signed = (struct.pack("!BBQH", sct.version.value, 0, millis, 1) + issuer_hash
                  + len(tbs).to_bytes(3, "big") + tbs + struct.pack("!H", len(sct.extension_bytes))
                  + sct.extension_bytes)
        try:
            key.verify(sct.signature, signed, ec.ECDSA(hashes.SHA256()))
            return
        except InvalidSignature:
            continue
    raise Refusal("untrusted certificate", f"no SCT on the certificate verifies with a CT log of {Path(root.path).name}")


def _verify_set(rekor: dict, annotation: str, root: TrustRoot) -> None:
    try:
        log_id = bytes.fromhex(rekor["logID"])
        signature = base64.b64decode(json.loads(annotation)["SignedEntryTimestamp"], validate=True)
    except (KeyError, TypeError, ValueError, binascii.Error):
        raise Refusal("untrusted certificate", "the Rekor bundle has no readable SignedEntryTimestamp") from None
    key = root.rekor_keys.get(log_id)
    if key is None:
        raise Refusal("untrusted certificate", f"the Rekor log {rekor['logID'][:16]}… is not in {Path(root.path).name}")
    canonical = rfc8785.dumps({"body": base64.b64encode(rekor["body"]).decode(), "integratedTime": rekor["integratedTime"],
                               "logID": rekor["logID"], "logIndex": rekor["logIndex"]})
    try:
        key.verify(signature, canonical, ec.ECDSA(hashes.SHA256()))
    except (InvalidSignature, ValueError, AttributeError):
        raise Refusal("untrusted certificate", "the Rekor SignedEntryTimestamp does not verify with the "
                                               "trusted root's Rekor key") from None


def _verify_log_body(rekor: dict, cert: x509.Certificate, signed: SignedPayload) -> None:
    """The log entry must be about this certificate, this signature and this payload (CVE-2022-36056)."""
    try:
        body = json.loads(rekor["body"])
        spec = body["spec"]
        ok = (body["kind"] == "hashedrekord"
              and spec["data"]["hash"]["value"] == hashlib.sha256(signed.payload).hexdigest()
              and base64.b64decode(spec["signature"]["content"]) == signed.signature
              and x509.load_pem_x509_certificate(base64.b64decode(spec["signature"]["publicKey"]["content"])) == cert)
    except (KeyError, TypeError, ValueError, binascii.Error):
        ok = False
    if not ok:
        raise Refusal("signature invalid", f"the Rekor entry does not record this certificate, signature and "
                                           f"payload ({signed.layer_digest})")


def _verify_payload_signature(cert: x509.Certificate, signed: SignedPayload) -> None:
    key = cert.public_key()
    try:
        if signed.signature is None or not isinstance(key, ec.EllipticCurvePublicKey):
            raise InvalidSignature
        key.verify(signed.signature, signed.payload, ec.ECDSA(hashes.SHA256()))
    except (InvalidSignature, ValueError):
        raise Refusal("signature invalid", f"the signature on {signed.layer_digest} does not verify with the "
                                           f"certificate's key") from None
