"""The conda kind's part of the policy: `channels:` (sources by URL; targets as a directory or HTTP
PUT) and `conda:` rules (regsync.policy.section). Specs and subdirs are checked by rattler's own
parsers (regsync.kinds.conda.specs)."""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, Field, field_validator, model_validator

from regsync.policy.models import TLS, Auth, PolicyPath, Retries, Server, Strict, V, http_urls
from regsync.policy.section import Section


class CondaChannel(Server):
    """A conda channel: a source by URL, or a target (a static channel directory, or files by HTTP PUT)."""

    # the channel's flavour; `kind:` in the YAML, a word the kinds of artifact own here
    flavour: Literal["channel", "directory", "http"] = Field(default="channel", alias="kind")
    url: str | None = None
    path: PolicyPath | None = None
    auth: Auth | None = None
    tls: TLS | None = None
    retries: Retries = Retries()
    # a source subdir offering only CEP-16 shards: rattler reads those without regsync's bounds
    shards: Literal["refuse", "allow"] = "refuse"

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: V) -> V:
        return http_urls(value)

    @model_validator(mode="after")
    def _where(self) -> CondaChannel:
        # a directory's url is where clients read it (client-config); regsync itself writes the path
        if (self.flavour == "directory") != (self.path is not None) or (self.flavour != "directory" and self.url is None):
            raise ValueError("a channel has a url, or kind: directory and a path")
        if self.auth is not None and self.flavour != "http":
            raise ValueError("auth: is for kind: http targets (files written by HTTP PUT)")
        if self.shards == "allow" and self.flavour != "channel":
            raise ValueError("shards: is for source channels (kind: channel)")
        if self.tls is not None and self.flavour == "channel":
            # repodata is read by rattler's own client, which takes the system's CAs only
            raise ValueError("a source channel's CA comes from the system trust store; tls: is for kind: http targets")
        return self


def _spec(value: str) -> str:
    from regsync.kinds.conda.specs import check_spec  # rattler: imported when a policy has conda rules
    return check_spec(value)


def _subdir(value: str) -> str:
    from regsync.kinds.conda.specs import check_subdir
    return check_subdir(value)


class CondaVerify(Strict):
    """Sigstore attestations (CEP 27) where the channel advertises them (`attestations_sha256`),
    verified offline against the trust entries' trusted_root.json, signer matched to the entry."""

    attestations: Literal["required", "optional", "off"] = "off"
    trust: list[str] = []

    @model_validator(mode="after")
    def _trust(self) -> CondaVerify:
        if self.attestations != "off" and not self.trust:
            raise ValueError(f"attestations: {self.attestations} needs trust: [...] (keyless entries with a "
                             "trusted_root: who may sign, verified offline)")
        return self


class CondaRule(Strict):
    sources: list[str] = Field(alias="from", min_length=1)   # priority order (strict channel priority)
    target: str = Field(alias="to")
    platforms: list[Annotated[str, AfterValidator(_subdir)]] = Field(min_length=1)
    specs: list[Annotated[str, AfterValidator(_spec)]] = Field(min_length=1)
    dependencies: bool = False
    virtual_packages: list[dict[str, str]] = [{}]   # one closure per set: the hosts it is for
    verify: CondaVerify = CondaVerify()
    # records with md5 and size but no sha256 (older anaconda.org channels): refused unless allowed
    weak_digests: Literal["refuse", "allow"] = "refuse"

    @field_validator("sources", "virtual_packages", mode="before")
    @classmethod
    def _one_or_list(cls, value: Any) -> Any:
        for found in [value] if isinstance(value, dict) else value if isinstance(value, list) else []:
            for name, version in found.items() if isinstance(found, dict) else ():
                if isinstance(version, (int, float)) and not isinstance(version, bool):
                    raise ValueError(f"{name}: {version} is a number in YAML: quote the version (\"11.8\")")
        return [value] if isinstance(value, (str, dict)) else value

    @field_validator("virtual_packages")
    @classmethod
    def _virtual(cls, sets: list[dict[str, str]]) -> list[dict[str, str]]:
        for found in sets:
            for name, version in found.items():
                if not re.fullmatch(r"__[a-z0-9_-]+", name):
                    raise ValueError(f"'{name}' is not a virtual package (they start with __: __cuda, __glibc)")
                if not re.fullmatch(r"[0-9][0-9A-Za-z_.+!]*", version):
                    raise ValueError(f"{name}: '{version}' is not a version (quote it: \"11.8\")")
        return sets



class CondaSection(Section):
    channels: dict[str, CondaChannel] = {}
    conda: list[CondaRule] = []
