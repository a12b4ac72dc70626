"""The policy as typed, validated data. Unknown keys are errors (extra="forbid") everywhere."""

from __future__ import annotations

import re
from urllib.parse import urlsplit
from pathlib import Path
from typing import Annotated, Literal

from regsync.policy.names import check_tag
from regsync.policy.patterns import compile_pattern, is_exact
from regsync.policy.platforms import check_image_platform
from regsync.times import parse_duration
from regsync.policy.vulns import PackageGates, VulnDatabase, VulnGate
from pydantic import (AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, SecretStr,
                      ValidationInfo, field_validator, model_validator)

_UNITS = {"": 1, "b": 1, "k": 1000, "kb": 1000, "m": 1000**2, "mb": 1000**2, "g": 1000**3,
          "gb": 1000**3, "t": 1000**4, "tb": 1000**4, "kib": 1024, "mib": 1024**2,
          "gib": 1024**3, "tib": 1024**4}


def parse_size(value) -> int:
    """'12GiB' → 12884901888; plain integers are bytes."""
    if isinstance(value, bool):
        raise ValueError("a size is a number of bytes or a string like '12GiB'")
    if isinstance(value, int):
        return value
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*", str(value))
    if not match or match.group(2).lower() not in _UNITS:
        raise ValueError(f"'{value}' is not a size (examples: 512MiB, 12GiB, 1000000)")
    return int(float(match.group(1)) * _UNITS[match.group(2).lower()])


def _relative_to_policy(value: Path, info: ValidationInfo) -> Path:
    base = (info.context or {}).get("base_dir")
    return value if value.is_absolute() or base is None else (Path(base) / value)


Size = Annotated[int, BeforeValidator(parse_size)]
PolicyPath = Annotated[Path, AfterValidator(_relative_to_policy)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True, frozen=True)


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


class Upload(Strict):
    """How blobs are pushed: one PUT up to monolithic_max, else PATCH chunks of chunk_size."""

    monolithic_max: Size = 256 * 1024**2
    chunk_size: Size = 64 * 1024**2
    # Blobs at least this big also keep their source bytes in the state dir while they stream, so a
    # run killed mid-blob re-reads them from disk and fetches only the rest from the source. Costs
    # one local write per byte (measured ~0.7 s of CPU per GB with its fsyncs), hence only big ones.
    spool_min: Size = 1024**3


class Retries(Strict):
    """Retries of idempotent requests on connection errors, 429 (honouring Retry-After) and 5xx."""

    attempts: int = Field(default=4, ge=0, le=20)
    backoff_seconds: float = Field(default=0.5, ge=0, le=60)


class Harbor(Strict):
    create_projects: bool = False
    public: bool = False
    storage_limit: Size | Literal[-1] = -1


def http_urls(value):
    """http(s) URLs without credentials in them: a URL is printed in plans, logs and the audit trail,
    so a password there would leak; credentials go in `auth:`."""
    for url in [] if value is None else [value] if isinstance(value, str) else value:
        if not re.match(r"^https?://[^/\s]+", url):
            raise ValueError(f"'{url.rpartition('@')[2]}' must start with https:// (or http:// for plain HTTP)")
        if "@" in urlsplit(url).netloc:
            raise ValueError("credentials do not belong in a URL (it is printed in plans, logs and the audit "
                             "trail): use auth: {username: …, password: \"${ENV_VAR}\"}")
    return value


class Registry(Strict):
    url: str
    kind: Literal["registry", "harbor", "nexus"] = "registry"
    mirrors: list[str] = []
    auth: Auth | None = None
    tls: TLS | None = None
    upload: Upload = Upload()
    retries: Retries = Retries()
    harbor: Harbor | None = None

    @field_validator("url", "mirrors")
    @classmethod
    def _http_urls(cls, value):
        return http_urls(value)


class Index(Strict):
    url: str | None = None
    upload_url: str | None = None
    path: PolicyPath | None = None
    kind: Literal["simple", "pypiserver", "devpi", "nexus", "directory"] = "simple"
    mirrors: list[str] = []   # tried in order when the primary cannot answer; see docs/pypi.md for whose hashes count
    auth: Auth | None = None
    tls: TLS | None = None
    retries: Retries = Retries()

    @field_validator("url", "upload_url", "mirrors")
    @classmethod
    def _http_urls(cls, value):
        return http_urls(value)

    @model_validator(mode="after")
    def _where(self):
        if self.kind == "directory" and self.path is None:
            raise ValueError("kind: directory needs a path")
        if self.kind != "directory" and self.url is None:
            raise ValueError("an index needs a url (or kind: directory with a path)")
        if self.kind == "directory" and self.mirrors:
            raise ValueError("a directory target has no mirrors")
        return self


class Keyless(Strict):
    issuer: str
    identity: str | None = None
    identity_regex: str | None = None

    @model_validator(mode="after")
    def _identity(self):
        if (self.identity is None) == (self.identity_regex is None):
            raise ValueError("keyless needs exactly one of identity or identity_regex")
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


def _tag_pattern(pattern: str) -> str:
    compile_pattern(pattern)  # raises ValueError with the reason
    prefix, colon, _ = pattern.partition(":")
    if colon and is_exact(pattern):  # a colon is never in a tag: a mistyped `semver:` is the usual cause
        import difflib

        near = difflib.get_close_matches(prefix, ["glob", "re", "semver"], n=1, cutoff=0.5)
        raise ValueError(f"unknown pattern prefix '{prefix}:' in '{pattern}'"
                         f"{f' (did you mean {near[0]}:?)' if near else ''}; the prefixes are glob:, re: "
                         "and semver:, and a bare string is an exact tag")
    # An exact entry outside the tag grammar can never name a real tag: a typo, or a name that would
    # change meaning in a URL. Either way the policy does not say what its author meant.
    return check_tag(pattern) if is_exact(pattern) else pattern


TagPattern = Annotated[str, AfterValidator(_tag_pattern)]   # per entry, so an error names its line
ExactTag = Annotated[str, AfterValidator(check_tag)]
ImagePlatform = Annotated[str, AfterValidator(check_image_platform)]   # os/arch[/variant], the spec's values


class TagSelect(Strict):
    include: list[TagPattern] = []
    exclude: list[TagPattern] = []
    latest: int | None = Field(default=None, ge=1)
    prereleases: bool = False   # may `latest: N` pick a pre-release (3.12.6rc1)?
    pin: dict[ExactTag, str] = {}

    @model_validator(mode="before")
    @classmethod
    def _latest_alone(cls, data):
        # `latest: 2` with no include means "the newest two", of every tag
        if isinstance(data, dict) and not data.get("include") and data.get("latest") is not None:
            return {**data, "include": ["glob:*"]}
        return data

    @model_validator(mode="after")
    def _selects_something(self):
        if not self.include:
            raise ValueError("tags needs include: [...] (or latest: N for the newest N tags)")
        return self

    @field_validator("include")
    @classmethod
    def _not_empty(cls, patterns):
        if not patterns:
            raise ValueError("an empty include selects nothing (latest: N alone means the newest N tags)")
        return patterns

    @field_validator("pin")
    @classmethod
    def _digests(cls, pins):
        for tag, digest in pins.items():
            if not re.fullmatch(r"sha256:[0-9a-f]{64}", digest):
                raise ValueError(f"pin for '{tag}' must be a digest like sha256:<64 hex>")
        return pins


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


class ImageVerify(Strict):
    signature: Literal["required", "optional", "off"] = "off"
    trust: list[str] = []
    require_all: bool = False
    require_attestations: list[AttestationRequirement] = []


class CopyExtras(Strict):
    signatures: bool = False
    referrers: bool = False


class Gates(Strict):
    max_size: Size | None = None
    cuda_max: str | None = None
    require_labels: dict[str, str] = {}
    platforms_required: list[ImagePlatform] = []
    vulnerabilities: VulnGate | None = None   # regsync/policy/vulns.py


class SignOnImport(Strict):
    """Sign the pushed digest with the enterprise's own key (PKCS#8 PEM, or cosign's cosign.key), in
    cosign's format."""

    key: PolicyPath
    password_env: str | None = None   # the variable holding the key's password (a cosign.key: COSIGN_PASSWORD)


class ImageRule(Strict):
    source: str = Field(alias="from")
    target: str = Field(alias="to")
    tags: TagSelect
    platforms: list[ImagePlatform] | None = None
    verify: ImageVerify = ImageVerify()
    copy_extras: CopyExtras = Field(default=CopyExtras(), alias="copy")
    gates: Gates = Gates()
    crosscheck: str | None = None
    sign: SignOnImport | None = None


class Environment(Strict):
    python: str
    platform: str
    implementation: str = "cp"
    abi: str | None = None

    @field_validator("python", mode="before")
    @classmethod
    def _python(cls, value):
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            raise ValueError(f"python {value} is a number in YAML, not a Python version: quote it, "
                             "e.g. \"3.10\" (unquoted, 3.10 is the number 3.1)")
        if not isinstance(value, str) or not re.fullmatch(r"[23]\.\d{1,2}", value):
            raise ValueError(f"python '{value}' is not a Python version like \"3.11\"")
        return value

    @field_validator("platform")
    @classmethod
    def _platform(cls, value):
        return check_platform_tag(value)


# The wheel platform tags pip knows (packaging.tags), for a "did you mean" on a near miss.
_WHEEL_ARCHES = ("x86_64", "aarch64", "i686", "ppc64le", "s390x", "armv7l", "riscv64")
_PLATFORM_TAG = re.compile(
    r"any|(many|musl)linux_\d+_\d+_(%s)|manylinux(1|2010|2014)_(%s)|linux_(%s)"
    r"|macosx_\d+_\d+_(x86_64|arm64|universal2|intel)|win32|win_amd64|win_arm64" % (("|".join(_WHEEL_ARCHES),) * 3))
_COMMON_PLATFORMS = ("manylinux_2_17_x86_64", "manylinux_2_28_x86_64", "manylinux_2_17_aarch64",
                     "manylinux_2_28_aarch64", "manylinux2014_x86_64", "manylinux2014_aarch64",
                     "musllinux_1_2_x86_64", "macosx_11_0_arm64", "macosx_10_9_x86_64", "win_amd64", "any")


def check_platform_tag(value: str) -> str:
    if _PLATFORM_TAG.fullmatch(value):
        return value
    import difflib

    near = difflib.get_close_matches(value, [*_COMMON_PLATFORMS, value.replace("-", "_")], n=1, cutoff=0.8)
    hint = f" (did you mean '{near[0]}'?)" if near and near[0] != value and _PLATFORM_TAG.fullmatch(near[0]) else ""
    raise ValueError(f"platform '{value}' is not a wheel platform tag{hint}; "
                     "examples: manylinux_2_28_x86_64, musllinux_1_2_aarch64, macosx_11_0_arm64, win_amd64")


class Publisher(Strict):
    """A PyPI Trusted Publisher, as PEP 740 provenance names it: who built and uploaded the file.

    github: repository (owner/name) and workflow (the file name under .github/workflows/);
    gitlab: repository (namespace/project) and workflow (the CI file path, e.g. .gitlab-ci.yml);
    google: email (the service account). environment is checked against the index's record.
    """

    kind: Literal["github", "gitlab", "google"]
    repository: str | None = None
    workflow: str | None = None
    environment: str | None = None
    email: str | None = None

    @model_validator(mode="after")
    def _fields_of_kind(self):
        needed = ("email",) if self.kind == "google" else ("repository", "workflow")
        allowed = set(needed) | ({"environment"} if self.kind != "google" else set())
        for name in ("repository", "workflow", "environment", "email"):
            value = getattr(self, name)
            if value is None and name in needed:
                raise ValueError(f"a {self.kind} publisher needs {name}")
            if value is not None and name not in allowed:
                raise ValueError(f"a {self.kind} publisher has no {name}")
        if self.repository is not None and not re.fullmatch(r"[\w.-]+(/[\w.-]+)+", self.repository):
            raise ValueError(f"repository '{self.repository}' must be owner/name")
        return self


class PackageVerify(Strict):
    hashes: Literal["required", "optional", "off"] = "required"
    attestations: Literal["required", "optional", "off"] = "off"
    publisher: Publisher | None = None
    provenance_from: str | None = None   # the index whose Integrity API serves provenance (default: from)
    trust: str | None = None             # the trust entry whose trusted_root.json verifies it, offline
    require_attestations: list[AttestationRequirement] = []   # e.g. SLSA provenance in the same PEP 740 answer

    @model_validator(mode="after")
    def _attestations_need(self):
        # `optional` alone (docs/pypi.md, "Provenance") is valid: files are copied and audited as
        # unverified, saying that the policy names nothing to verify against. Half a setup is not.
        configured = (self.publisher is not None) + (self.trust is not None)
        if (self.attestations == "required" and configured < 2) or configured == 1:
            raise ValueError(f"attestations: {self.attestations} needs both a publisher and a trust entry "
                             f"(its trusted_root.json verifies the attestation offline)")
        return self


class PackageRule(Strict):
    source: str = Field(alias="from")
    target: str = Field(alias="to")
    requirements: list[str] = Field(min_length=1)
    dependencies: bool = False
    environments: list[Environment] = []
    sdists: bool = False
    only_binary: list[str] = []
    constraints: list[str] = []
    verify: PackageVerify = PackageVerify()
    gates: PackageGates | None = None        # regsync/policy/vulns.py


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
    version: Literal[1]
    registries: dict[str, Registry] = {}
    indexes: dict[str, Index] = {}
    trust: dict[str, Trust] = {}
    images: list[ImageRule] = []
    packages: list[PackageRule] = []
    channels: dict[str, "CondaChannel"] = {}  # type: ignore[name-defined]  # regsync/policy/conda.py completes
    conda: list["CondaRule"] = []  # type: ignore[name-defined]  # these two (importing it here would be a cycle)
    audit: AuditConfig = AuditConfig()
    bundle: BundleConfig = BundleConfig()
    approval: ApprovalConfig = ApprovalConfig()
    vulnerabilities: VulnDatabase | None = None   # regsync/policy/vulns.py
