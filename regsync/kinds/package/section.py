"""The package kind's section of the policy (regsync.policy.section): `indexes:` and `packages:`,
their references, the files they name, their summary lines and their client configurations (client_config.py)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from pydantic import BaseModel

from regsync.kinds.package import client_config
from regsync.kinds.package.policy import Index, PackageSection, PackageVerify
from regsync.policy.models import Policy
from regsync.policy.section import BaseSection, NamedFile, Renderer, attestations_summary, entries_named, named_in
from regsync.policy.vulns import VulnGate
from regsync.policy.yamlsource import Document, Path_


class PackagePolicy(BaseSection):
    model = PackageSection
    placeholders: Mapping[str, type[BaseModel]] = {"indexes": Index}
    clients: Mapping[str, Renderer] = {"pip": client_config.pip, "uv": client_config.uv}

    def source_only(self, data: dict[str, Any]) -> set[tuple[str, str]]:
        packages = data.get("packages")
        rules = packages if isinstance(packages, list) else []
        provenance = [rule["verify"] for rule in rules if isinstance(rule, dict) and isinstance(rule.get("verify"), dict)]
        read = named_in(packages, "from") | named_in(provenance, "provenance_from")
        return entries_named(data, "indexes", read - named_in(packages, "to"))

    def check_references(self, policy: Policy, doc: Document) -> None:
        section = PackageSection.of(policy)
        for i, rule in enumerate(section.packages):
            named: list[tuple[Path_, str]] = [(("packages", i, "from"), rule.source),
                                              (("packages", i, "to"), rule.target)]
            if rule.verify.provenance_from is not None:
                named.append((("packages", i, "verify", "provenance_from"), rule.verify.provenance_from))
            for where, name in named:
                if name not in section.indexes:
                    known = ", ".join(sorted(section.indexes)) or "none defined"
                    raise doc.error(where, f"unknown index '{name}' (indexes: {known})")
                if where[2] != "to" and section.indexes[name].flavour == "directory":
                    raise doc.error(where, f"index '{name}' is a kind: directory target; an index read from has a url")
            _check_provenance_references(policy, rule.verify, ("packages", i, "verify"), doc)
            for n, wanted in enumerate(rule.verify.require_attestations):
                for name in wanted.trust:
                    where = ("packages", i, "verify", "require_attestations", n, "trust")
                    if name not in policy.trust:
                        raise doc.error(where, f"unknown trust entry '{name}'")
                    if policy.trust[name].keyless is None or policy.trust[name].trusted_root is None:
                        raise doc.error(where, f"trust entry '{name}' must be keyless with a trusted_root: PEP 740 "
                                               f"attestations are sigstore bundles, verified offline")

    def trust_used(self, policy: Policy) -> Iterable[str]:
        for rule in PackageSection.of(policy).packages:
            if rule.verify.trust:
                yield rule.verify.trust
            for wanted in rule.verify.require_attestations:
                yield from wanted.trust

    def files(self, policy: Policy) -> Iterable[NamedFile]:
        for name, index in PackageSection.of(policy).indexes.items():
            if index.tls and index.tls.ca_file:
                yield NamedFile(("indexes", name, "tls", "ca_file"), index.tls.ca_file, "ca_bundle")

    def gates(self, policy: Policy) -> Iterable[tuple[Path_, VulnGate]]:
        for i, rule in enumerate(PackageSection.of(policy).packages):
            if rule.gates is not None and rule.gates.vulnerabilities is not None:
                yield ("packages", i, "gates", "vulnerabilities"), rule.gates.vulnerabilities

    def summary(self, policy: Policy) -> tuple[list[str], list[str]]:
        section = PackageSection.of(policy)
        lines = []
        for rule in section.packages:
            lines += [f"  package {rule.source} -> {rule.target}  [{', '.join(rule.requirements)}]"
                      f"{_provenance_summary(rule.verify)}",
                      f"          hashes {rule.verify.hashes}{attestations_summary(rule.verify.require_attestations)}"]
        return [f"  indexes:    {', '.join(section.indexes) or '-'}"], lines

    def describe(self, policy: Policy, key: str, index: int) -> str | None:
        packages = PackageSection.of(policy).packages
        if key != "packages":
            return None
        if index >= len(packages):
            return "not in this policy"
        rule = packages[index]
        return f"{rule.source} -> {rule.target} [{', '.join(rule.requirements)}]"


def _check_provenance_references(policy: Policy, verify: PackageVerify, where: Path_, doc: Document) -> None:
    if verify.trust is None:
        return
    entry = policy.trust.get(verify.trust)
    if entry is None:
        raise doc.error((*where, "trust"), f"unknown trust entry '{verify.trust}'")
    if entry.keyless is None or entry.trusted_root is None:
        # PEP 740 attestations are Sigstore bundles: only a trusted root (Fulcio, Rekor) verifies them
        raise doc.error((*where, "trust"), f"trust entry '{verify.trust}' must be keyless with a trusted_root: "
                                           f"attestations are verified offline against its trusted_root.json")


def _provenance_summary(verify: PackageVerify) -> str:
    if verify.attestations == "off":
        return ""
    if verify.publisher is None:
        return "; provenance optional, NOT verified (no publisher/trust entry in the policy)"
    who = verify.publisher.repository or verify.publisher.email
    return f"; provenance {verify.attestations}: {verify.publisher.kind} {who}, trust {verify.trust}"
