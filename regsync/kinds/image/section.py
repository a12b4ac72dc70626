"""The image kind's section of the policy (regsync.policy.section): `registries:` and `images:`,
their references, the files they name, their summary lines and their client configurations (client_config.py)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from pydantic import BaseModel

from regsync.kinds.image import client_config
from regsync.kinds.image.policy import ImageSection, ImageVerify, Registry
from regsync.policy.models import Policy
from regsync.policy.names import invalid_repository, is_repository
from regsync.policy.section import (BaseSection, NamedFile, Regex, Renderer, attestations_summary, entries_named,
                                    named_in)
from regsync.policy.vulns import VulnGate
from regsync.policy.yamlsource import Document, Path_


class ImagePolicy(BaseSection):
    model = ImageSection
    placeholders: Mapping[str, type[BaseModel]] = {"registries": Registry}
    clients: Mapping[str, Renderer] = {"docker": client_config.docker, "containerd": client_config.containerd,
                                       "podman": client_config.podman}

    def source_only(self, data: dict[str, Any]) -> set[tuple[str, str]]:
        images = data.get("images")
        return entries_named(data, "registries", named_in(images, "from") - named_in(images, "to", "crosscheck"))

    def check_references(self, policy: Policy, doc: Document) -> None:
        section = ImageSection.of(policy)
        registries = section.registries
        for i, rule in enumerate(section.images):
            for key, ref in (("from", rule.source), ("to", rule.target)):
                name, _, repo = ref.partition("/")
                if name not in registries:
                    known = ", ".join(sorted(registries)) or "none defined"
                    raise doc.error(("images", i, key), f"unknown registry '{name}' (registries: {known})")
                if not repo:
                    raise doc.error(("images", i, key), f"'{ref}' must be <registry>/<repository>")
                if not is_repository(repo):
                    raise doc.error(("images", i, key), f"'{ref}': {invalid_repository(repo)}")
                if key == "to" and registries[name].flavour == "harbor" and "/" not in repo:
                    raise doc.error(("images", i, key), f"'{ref}': Harbor repositories live in a project: "
                                                        f"{name}/<project>/<repository>")
            if rule.crosscheck and rule.crosscheck not in registries:
                raise doc.error(("images", i, "crosscheck"), f"unknown registry '{rule.crosscheck}'")
            for name in rule.verify.trust:
                if name not in policy.trust:
                    raise doc.error(("images", i, "verify", "trust"), f"unknown trust entry '{name}'")
            if rule.verify.signature == "required" and not rule.verify.trust:
                raise doc.error(("images", i, "verify"), "signature: required needs at least one trust entry")
            for n, wanted in enumerate(rule.verify.require_attestations):
                for name in wanted.trust:
                    if name not in policy.trust:
                        raise doc.error(("images", i, "verify", "require_attestations", n, "trust"),
                                        f"unknown trust entry '{name}'")

    def trust_used(self, policy: Policy) -> Iterable[str]:
        for rule in ImageSection.of(policy).images:
            yield from rule.verify.trust
            for wanted in rule.verify.require_attestations:
                yield from wanted.trust

    def files(self, policy: Policy) -> Iterable[NamedFile]:
        section = ImageSection.of(policy)
        for name, registry in section.registries.items():
            if registry.tls and registry.tls.ca_file:
                yield NamedFile(("registries", name, "tls", "ca_file"), registry.tls.ca_file, "ca_bundle")
        for i, rule in enumerate(section.images):
            if rule.sign:
                yield NamedFile(("images", i, "sign", "key"), rule.sign.key, "private_key",
                                rule.sign.password_env, "sign.key")

    def gates(self, policy: Policy) -> Iterable[tuple[Path_, VulnGate]]:
        for i, rule in enumerate(ImageSection.of(policy).images):
            if rule.gates.vulnerabilities is not None:
                yield ("images", i, "gates", "vulnerabilities"), rule.gates.vulnerabilities

    def regexes(self, policy: Policy) -> Iterable[Regex]:
        for i, rule in enumerate(ImageSection.of(policy).images):
            for key, verb in (("include", "matches"), ("exclude", "excludes")):
                for j, pattern in enumerate(getattr(rule.tags, key)):
                    if pattern.startswith("re:"):
                        yield ("images", i, "tags", key, j), pattern, pattern[3:], "tag", verb

    def summary(self, policy: Policy) -> tuple[list[str], list[str]]:
        section = ImageSection.of(policy)
        lines = []
        for rule in section.images:
            tags = ", ".join(rule.tags.include)
            extra = f"; exclude [{', '.join(rule.tags.exclude)}]" if rule.tags.exclude else ""
            extra += f"; platforms {', '.join(rule.platforms)}" if rule.platforms else ""
            lines += [f"  image   {rule.source} -> {rule.target}  [{tags}]{extra}",
                      f"          {_image_verification(rule.verify)}"]
        return [f"  registries: {', '.join(section.registries) or '-'}"], lines

    def describe(self, policy: Policy, key: str, index: int) -> str | None:
        images = ImageSection.of(policy).images
        if key != "images":
            return None
        if index >= len(images):
            return "not in this policy"
        rule = images[index]
        return f"{rule.source} -> {rule.target} [{', '.join(rule.tags.include)}]"


def _image_verification(verify: ImageVerify) -> str:
    """What a security reviewer reads first: is a signature required, from whom; which attestations."""
    if verify.signature == "off":
        signature = "signature off (not checked)"
    else:
        who = " and ".join(verify.trust) if verify.require_all else ", ".join(verify.trust)
        signature = f"signature {verify.signature}, by {'all of' if verify.require_all else 'one of'}: {who}"
    return signature + attestations_summary(verify.require_attestations)
