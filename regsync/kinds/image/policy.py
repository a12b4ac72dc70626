"""The image kind's part of the policy: `registries:` and `images:` rules (regsync.policy.section)."""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, Field, field_validator, model_validator

from regsync.policy.models import (TLS, AttestationRequirement, Auth, PolicyPath, Retries, Server, Size,
                                   Strict, V, http_urls)
from regsync.policy.names import check_tag
from regsync.policy.patterns import compile_pattern, is_exact
from regsync.policy.platforms import check_image_platform
from regsync.policy.section import Section
from regsync.policy.vulns import VulnGate


class Upload(Strict):
    """How blobs are pushed: one PUT up to monolithic_max, else PATCH chunks of chunk_size."""

    monolithic_max: Size = 256 * 1024**2
    chunk_size: Size = 64 * 1024**2
    # Blobs at least this big also keep their source bytes in the state dir while they stream, so a
    # run killed mid-blob re-reads them from disk and fetches only the rest from the source. Costs
    # one local write per byte (measured ~0.7 s of CPU per GB with its fsyncs), hence only big ones.
    spool_min: Size = 1024**3


class Harbor(Strict):
    create_projects: bool = False
    public: bool = False
    storage_limit: Size | Literal[-1] = -1


class Registry(Server):
    url: str
    # the server's flavour (its API dialect); `kind:` in the YAML, a word the kinds of artifact own here
    flavour: Literal["registry", "harbor", "nexus"] = Field(default="registry", alias="kind")
    mirrors: list[str] = []
    auth: Auth | None = None
    tls: TLS | None = None
    upload: Upload = Upload()
    retries: Retries = Retries()
    harbor: Harbor | None = None

    @field_validator("url", "mirrors")
    @classmethod
    def _http_urls(cls, value: V) -> V:
        return http_urls(value)


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
    def _latest_alone(cls, data: Any) -> Any:
        # `latest: 2` with no include means "the newest two", of every tag
        if isinstance(data, dict) and not data.get("include") and data.get("latest") is not None:
            return {**data, "include": ["glob:*"]}
        return data

    @model_validator(mode="after")
    def _selects_something(self) -> TagSelect:
        if not self.include:
            raise ValueError("tags needs include: [...] (or latest: N for the newest N tags)")
        return self

    @field_validator("include")
    @classmethod
    def _not_empty(cls, patterns: list[str]) -> list[str]:
        if not patterns:
            raise ValueError("an empty include selects nothing (latest: N alone means the newest N tags)")
        return patterns

    @field_validator("pin")
    @classmethod
    def _digests(cls, pins: dict[str, str]) -> dict[str, str]:
        for tag, digest in pins.items():
            if not re.fullmatch(r"sha256:[0-9a-f]{64}", digest):
                raise ValueError(f"pin for '{tag}' must be a digest like sha256:<64 hex>")
        return pins


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


class ImageSection(Section):
    registries: dict[str, Registry] = {}
    images: list[ImageRule] = []
