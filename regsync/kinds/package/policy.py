"""The package kind's part of the policy: `indexes:` and `packages:` rules (regsync.policy.section)."""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from regsync.policy.models import TLS, AttestationRequirement, Auth, PolicyPath, Retries, Server, Strict, V, http_urls
from regsync.policy.section import Section
from regsync.policy.vulns import PackageGates


class Index(Server):
    url: str | None = None
    upload_url: str | None = None
    path: PolicyPath | None = None
    # the server's flavour; `kind:` in the YAML, a word the kinds of artifact own here
    flavour: Literal["simple", "pypiserver", "devpi", "nexus", "directory"] = Field(default="simple", alias="kind")
    mirrors: list[str] = []   # tried in order when the primary cannot answer; see docs/pypi.md for whose hashes count
    auth: Auth | None = None
    tls: TLS | None = None
    retries: Retries = Retries()

    @field_validator("url", "upload_url", "mirrors")
    @classmethod
    def _http_urls(cls, value: V) -> V:
        return http_urls(value)

    @model_validator(mode="after")
    def _where(self) -> Index:
        if self.flavour == "directory" and self.path is None:
            raise ValueError("kind: directory needs a path")
        if self.flavour != "directory" and self.url is None:
            raise ValueError("an index needs a url (or kind: directory with a path)")
        if self.flavour == "directory" and self.mirrors:
            raise ValueError("a directory target has no mirrors")
        return self



class Environment(Strict):
    python: str
    platform: str
    implementation: str = "cp"
    abi: str | None = None

    @field_validator("python", mode="before")
    @classmethod
    def _python(cls, value: Any) -> str:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            raise ValueError(f"python {value} is a number in YAML, not a Python version: quote it, "
                             "e.g. \"3.10\" (unquoted, 3.10 is the number 3.1)")
        if not isinstance(value, str) or not re.fullmatch(r"[23]\.\d{1,2}", value):
            raise ValueError(f"python '{value}' is not a Python version like \"3.11\"")
        return value

    @field_validator("platform")
    @classmethod
    def _platform(cls, value: str) -> str:
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
    def _fields_of_kind(self) -> Publisher:
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
    def _attestations_need(self) -> PackageVerify:
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


class PackageSection(Section):
    indexes: dict[str, Index] = {}
    packages: list[PackageRule] = []
