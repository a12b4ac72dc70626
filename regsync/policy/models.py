"""The policy as typed, validated data: what every kind shares (auth, TLS, retries, trust, audit,
bundle, approval). Unknown keys are errors (extra="forbid") everywhere."""

from __future__ import annotations

import re
from urllib.parse import urlsplit
from pathlib import Path
from typing import Annotated, Literal, TypeVar

from regsync.times import parse_duration
from regsync.policy.vulns import VulnDatabase
from regsync.policy.regex import compile_regex
from pydantic import (AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, SecretStr,
                      ValidationInfo, model_validator)

MAX_SIZE = 4 * 1024**6   # 4 EiB: larger is a typo, and a negative size gates everything out
_UNITS = {"": 1, "b": 1, "k": 1000, "kb": 1000, "m": 1000**2, "mb": 1000**2, "g": 1000**3,
          "gb": 1000**3, "t": 1000**4, "tb": 1000**4, "kib": 1024, "mib": 1024**2,
          "gib": 1024**3, "tib": 1024**4}


def parse_size(value) -> int:
    """'12GiB' → 12884901888; plain integers are bytes."""
    if isinstance(value, bool):
        raise ValueError("a size is a number of bytes or a string like '12GiB'")
    if isinstance(value, int):
        size = value
    else:
        match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*", str(value))
        if not match or match.group(2).lower() not in _UNITS:
            raise ValueError(f"'{value}' is not a size (examples: 512MiB, 12GiB, 1000000)")
        number = float(match.group(1)) * _UNITS[match.group(2).lower()]   # 400 digits: inf
        size = int(number) if number <= MAX_SIZE else MAX_SIZE + 1
    if not 0 <= size <= MAX_SIZE:
        raise ValueError(f"'{value}' is not a size from 0 to 4 EiB (examples: 512MiB, 12GiB, 1000000)")
    return size


def _relative_to_policy(value: Path, info: ValidationInfo) -> Path:
    base = (info.context or {}).get("base_dir")
    return value if value.is_absolute() or base is None else (Path(base) / value)


Size = Annotated[int, BeforeValidator(parse_size)]
M = TypeVar("M", bound=BaseModel)
V = TypeVar("V", str, list[str], str | None)
PolicyPath = Annotated[Path, AfterValidator(_relative_to_policy)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True, frozen=True)


class Server(Strict):
    """A registry, an index or a channel: its `flavour` field is read from the YAML key `kind:` only
    (the code's word for a server's flavour is no key of the policy)."""

    model_config = ConfigDict(extra="forbid", populate_by_name=False, frozen=True)


class Auth(Strict):
    username: str | None = None
    password: SecretStr | None = None
    docker_config: bool = False

    @model_validator(mode="after")
    def _one_source(self):
        if self.docker_config and (self.username or self.password):
            raise ValueError("use either username/password or docker_config: true, not both")
        if (self.username is None) != (self.password is None):
            raise ValueError("username and password go together")
        if self.password is not None and not self.password.get_secret_value():
            # sent as is, an empty password only ends in a 401 far from its cause
            raise ValueError("the password is empty (is its environment variable set to an empty value?)")
        for what, value in (("username", self.username), ("password", self.password and self.password.get_secret_value())):
            try:
                (value or "").encode("latin-1")
            except UnicodeEncodeError:  # never echo it: say which characters cannot go
                raise ValueError(f"the {what} has characters HTTP Basic authentication cannot carry "
                                 "(requests sends it as latin-1)") from None
        return self


class TLS(Strict):
    ca_file: PolicyPath | None = None


class Retries(Strict):
    """Retries of idempotent requests on connection errors, 429 (honouring Retry-After) and 5xx."""

    attempts: int = Field(default=4, ge=0, le=20)
    backoff_seconds: float = Field(default=0.5, ge=0, le=60)


def http_urls(value: V) -> V:
    """http(s) URLs without credentials in them: a URL is printed in plans, logs and the audit trail,
    so a password there would leak; credentials go in `auth:`."""
    for url in [] if value is None else [value] if isinstance(value, str) else value:
        if not re.match(r"^https?://[^/\s]+", url):
            raise ValueError(f"'{url.rpartition('@')[2]}' must start with https:// (or http:// for plain HTTP)")
        parts = urlsplit(url)
        if "@" in parts.netloc:
            raise ValueError("credentials do not belong in a URL (it is printed in plans, logs and the audit "
                             "trail): use auth: {username: …, password: \"${ENV_VAR}\"}")
        try:
            port = parts.port   # ValueError: "Port out of range 0-65535", "Port could not be cast…"
        except ValueError as exc:
            raise ValueError(f"'{url}': {str(exc).lower()}") from None
        if port == 0 or not parts.hostname or re.search(r"[\s<>\"{}|\\^`]", url):
            raise ValueError(f"'{url}' is not a valid URL (a host name, an optional port 1-65535, no spaces)")
    return value


class Keyless(Strict):
    issuer: str
    identity: str | None = None
    identity_regex: str | None = None

    @model_validator(mode="after")
    def _identity(self):
        if (self.identity is None) == (self.identity_regex is None):
            raise ValueError("keyless needs exactly one of identity or identity_regex")
        if self.identity_regex is not None:
            compile_regex(self.identity_regex)   # refused here, at its line, not when a signature is checked
        return self


# The in-toto predicate cosign v3 puts in a DSSE bundle that *is* a signature; any other predicate
# (SLSA provenance, SBOM, vulnerability scan) attests something else about the image.
COSIGN_SIGNATURE_PREDICATES = ("https://sigstore.dev/cosign/sign/v1",)


class Trust(Strict):
    cosign_key: PolicyPath | None = None
    keyless: Keyless | None = None
    trusted_root: PolicyPath | None = None
    # Which DSSE (in-toto) sigstore bundles count as an image signature for this entry.
    predicate_types: list[str] = Field(default=list(COSIGN_SIGNATURE_PREDICATES), min_length=1)

    @model_validator(mode="after")
    def _one_kind(self):
        if (self.cosign_key is None) == (self.keyless is None):
            raise ValueError("a trust entry has exactly one of cosign_key or keyless")
        if "predicate_types" in self.model_fields_set and self.keyless is None:
            raise ValueError("predicate_types applies to keyless entries (sigstore bundles) only")
        return self


def _match_entries(match: dict) -> dict:
    from regsync.trust.intoto import check_match_pattern

    for path, expected in match.items():
        check_match_pattern(path, expected)
    return match


class AttestationRequirement(Strict):
    """One in-toto attestation the image must carry (docs/signatures.md, "Attestations"): its
    predicateType, who must have signed it, and what its predicate must say (dotted paths → an
    exact value, `re:` or `glob:`). `optional` records what was found without refusing."""

    type: str = Field(min_length=1)
    trust: list[str] = Field(min_length=1)
    match: Annotated[dict[str, str | bool | int | float], AfterValidator(_match_entries)] = {}
    mode: Literal["required", "optional"] = "required"


class AuditConfig(Strict):
    path: PolicyPath | None = None
    sign_key: PolicyPath | None = None          # signs each run's run-finished record (Ed25519/ECDSA/RSA)
    sign_key_password_env: str | None = None    # environment variable holding that key's password


class BundleConfig(Strict):
    """What import demands of an air-gap bundle: `signature: required` refuses one whose SHA256SUMS
    is not signed by a key of `trust` (cosign_key entries); `optional` checks a signature when present."""

    signature: Literal["required", "optional", "off"] = "off"
    trust: list[str] = []


class ApprovalConfig(Strict):
    """Signed plan approvals (docs/approvals.md): `sync` and `import` apply only a saved plan signed
    (`regsync plan approve`) by `required` distinct keys of `trust` (cosign_key entries), and only
    until `max_age` after the plan was made."""

    required: int = Field(default=0, ge=0)
    trust: list[str] = []
    max_age: Annotated[int, BeforeValidator(parse_duration), Field(gt=0)] | None = None

    @model_validator(mode="after")
    def _reachable(self):
        if self.required > len(set(self.trust)):
            raise ValueError(f"required: {self.required} needs at least {self.required} trust entries "
                             f"(the approvers' public keys), {len(set(self.trust))} given")
        return self


class Policy(Strict):
    """What every kind shares. Each kind's own keys (images: and registries:, packages: and
    indexes:, conda: and channels:) are its section (regsync.policy.section), composed into the
    model a policy file is read with; `section()` gives a kind its part, typed."""

    version: Literal[1]
    trust: dict[str, Trust] = {}
    audit: AuditConfig = AuditConfig()
    bundle: BundleConfig = BundleConfig()
    approval: ApprovalConfig = ApprovalConfig()
    vulnerabilities: VulnDatabase | None = None   # regsync/policy/vulns.py

    def section(self, model: type[M]) -> M:
        """The keys of `model` (a kind's section) as read into this policy: its defaults for a key
        this policy was composed without. Built without validation, the values being validated."""
        fields = type(self).model_fields
        return model.model_construct(**{name: getattr(self, name) for name in model.model_fields if name in fields})
