"""In-toto attestations as cosign writes them: DSSE envelopes, statements, and `match:` on predicates.

A DSSE envelope (github.com/secure-systems-lab/dsse, envelope.md) is JSON `{payload (base64),
payloadType, signatures: [{keyid, sig (base64)}]}`; every signature is over the pre-authentication
encoding `"DSSEv1" SP len(type) SP type SP len(body) SP body`, never over the JSON itself. The
payload of an attestation is an in-toto Statement (in-toto/attestation spec, v0.1 and v1: `_type`,
`subject: [{name, digest: {sha256: hex}}]`, `predicateType`, `predicate`).

Nothing here checks a signature; it only reads the structures and evaluates the policy's `match:`,
so the keyed, keyless and sigstore-bundle verifiers share one reading of what was signed.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass

from regsync.policy.patterns import compile_pattern

DSSE_ENVELOPE = "application/vnd.dsse.envelope.v1+json"
INTOTO_PAYLOAD = "application/vnd.in-toto+json"
STATEMENT_TYPES = ("https://in-toto.io/Statement/v0.1", "https://in-toto.io/Statement/v1")
MAX_ENVELOPE_SIGNATURES = 16

SLSA_PROVENANCE = ("https://slsa.dev/provenance/v1", "https://slsa.dev/provenance/v0.2",
                   "https://slsa.dev/provenance/v0.1")
SPDX = "https://spdx.dev/Document"
SPDX3 = "https://spdx.dev/Document/v3"   # in-toto/attestation spec/predicates/spdx3.md: an SPDX 3 JSON-LD document
CYCLONEDX = "https://cyclonedx.org/bom"

# cosign's `--type` short names (cosign options/predicate.go), so `regsync verify --type` reads the same.
COSIGN_TYPES = {"custom": "https://cosign.sigstore.dev/attestation/v1",
                "slsaprovenance": "https://slsa.dev/provenance/v0.2",
                "slsaprovenance02": "https://slsa.dev/provenance/v0.2",
                "slsaprovenance1": "https://slsa.dev/provenance/v1",
                "spdx": SPDX, "spdxjson": SPDX, "cyclonedx": CYCLONEDX,
                "link": "https://in-toto.io/Link/v1",
                "vuln": "https://cosign.sigstore.dev/attestation/vuln/v1",
                "openvex": "https://openvex.dev/ns"}


class Malformed(ValueError):
    """Not a DSSE envelope or in-toto statement (the message says what is wrong)."""


@dataclass(frozen=True)
class Envelope:
    payload_type: str
    payload: bytes
    signatures: tuple[bytes, ...]

    def pae(self) -> bytes:
        """DSSE's pre-authentication encoding: the bytes every signature in the envelope covers."""
        kind = self.payload_type.encode()
        return b"DSSEv1 %d %s %d %s" % (len(kind), kind, len(self.payload), self.payload)

    def statement(self) -> dict:
        """The in-toto statement inside; Malformed when the payload is not one."""
        if self.payload_type != INTOTO_PAYLOAD:
            raise Malformed(f"payloadType is {self.payload_type[:100]!r}, not {INTOTO_PAYLOAD}")
        return parse_statement(self.payload)


def parse_envelope(raw: bytes) -> Envelope:
    try:
        doc = json.loads(raw)
        payload = base64.b64decode(doc["payload"], validate=True)
        payload_type = doc["payloadType"]
        sigs = doc["signatures"]
        if not isinstance(payload_type, str) or not isinstance(sigs, list):
            raise TypeError
        signatures = tuple(base64.b64decode(s["sig"], validate=True) for s in sigs[:MAX_ENVELOPE_SIGNATURES])
    except (ValueError, KeyError, TypeError, binascii.Error):
        raise Malformed("not a DSSE envelope (payload, payloadType and base64 signatures)") from None
    if not signatures:
        raise Malformed("the DSSE envelope carries no signature")
    return Envelope(payload_type, payload, signatures)


def parse_statement(payload: bytes) -> dict:
    try:
        statement = json.loads(payload)
    except ValueError:
        raise Malformed("the payload is not JSON") from None
    if not isinstance(statement, dict) or statement.get("_type") not in STATEMENT_TYPES:
        raise Malformed(f"_type is not one of {', '.join(STATEMENT_TYPES)}")
    if not isinstance(statement.get("predicateType"), str) or not isinstance(statement.get("subject"), list):
        raise Malformed("the statement has no predicateType or no subject list")
    return statement


def subject_digests(statement: dict, algorithm: str = "sha256") -> list[str]:
    """Every `algorithm:hex` the statement names as its subject."""
    named = []
    for subject in statement.get("subject") or []:
        digests = subject.get("digest") if isinstance(subject, dict) else None
        value = digests.get(algorithm) if isinstance(digests, dict) else None
        if isinstance(value, str):
            named.append(f"{algorithm}:{value.lower()}")
    return named


# -- match: ----------------------------------------------------------------------------------------

_MISSING = object()


def check_match_pattern(path: str, expected) -> None:
    """Policy-load check of one `match:` entry; ValueError with the reason."""
    if not path or any(not part for part in path.split(".")):
        raise ValueError(f"'{path}' is not a dotted path (e.g. runDetails.builder.id)")
    if isinstance(expected, str):
        if expected.startswith("semver:"):
            raise ValueError(f"'{expected}': match takes an exact value, re: or glob:")
        compile_pattern(expected)


def lookup(document, path: str):
    """The value at a dotted path (`a.b.0.c`: a list index is a number); _MISSING when absent."""
    value = document
    for part in path.split("."):
        if isinstance(value, dict) and part in value:
            value = value[part]
        elif isinstance(value, list) and part.isdigit() and int(part) < len(value):
            value = value[int(part)]
        else:
            return _MISSING
    return value


def mismatch(predicate, match: dict) -> str | None:
    """None when every `match:` entry holds on the predicate, else what was found where."""
    for path, expected in match.items():
        found = lookup(predicate, path)
        if found is _MISSING:
            return f"{path} is absent, required {_shown(expected)}"
        if isinstance(expected, str) and not isinstance(found, (dict, list)):
            ok = isinstance(found, str) and compile_pattern(expected)(found)
        else:
            ok = found == expected and type(found) is type(expected)
        if not ok:
            return f"{path} is {_shown(found)}, required {_shown(expected)}"
    return None


def _shown(value) -> str:
    text = json.dumps(value) if not isinstance(value, str) else f"'{value}'"
    return text if len(text) <= 200 else text[:200] + "…"


# -- what the audit record says of a verified statement ---------------------------------------------

def summary(statement: dict) -> dict:
    """Builder, source repository, SBOM format and package count, where the predicate says them."""
    kind, predicate = statement.get("predicateType"), statement.get("predicate")
    if not isinstance(predicate, dict):
        return {}
    out: dict = {}
    if kind in SLSA_PROVENANCE:
        builder = _first_str(predicate, "runDetails.builder.id", "builder.id")
        source = _first_str(predicate, "buildDefinition.externalParameters.workflow.repository",
                            "invocation.configSource.uri", "buildDefinition.externalParameters.source.uri",
                            "buildDefinition.externalParameters.configSource.uri")
        out.update({k: v for k, v in (("builder_id", builder), ("source_repository", source)) if v})
    elif kind == SPDX:
        version = predicate.get("spdxVersion")
        out["sbom_format"] = version if isinstance(version, str) else "SPDX"
        packages = predicate.get("packages")
        out["sbom_packages"] = len(packages) if isinstance(packages, list) else 0
    elif kind == SPDX3:
        graph = predicate.get("@graph")
        out["sbom_format"] = "SPDX-3"
        out["sbom_packages"] = sum(isinstance(e, dict) and e.get("type") == "software_Package"
                                   for e in graph) if isinstance(graph, list) else 0
    elif kind == CYCLONEDX:
        spec = predicate.get("specVersion")
        out["sbom_format"] = f"CycloneDX-{spec}" if isinstance(spec, str) else "CycloneDX"
        components = predicate.get("components")
        out["sbom_packages"] = len(components) if isinstance(components, list) else 0
    return out


def _first_str(predicate: dict, *paths: str) -> str | None:
    for path in paths:
        value = lookup(predicate, path)
        if isinstance(value, str) and value:
            return value[:500]
    return None
