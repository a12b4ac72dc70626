"""The conda kind's section of the policy (regsync.policy.section): `channels:` and `conda:` rules,
their references, the files they name, their summary lines and their client configurations (client_config.py)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from pydantic import BaseModel

from regsync.kinds.conda import client_config
from regsync.kinds.conda.policy import CondaChannel, CondaSection
from regsync.kinds.conda.rules import describe
from regsync.policy.models import Policy
from regsync.policy.section import BaseSection, NamedFile, Renderer, entries_named, named_in
from regsync.policy.yamlsource import Document


class CondaPolicy(BaseSection):
    model = CondaSection
    placeholders: Mapping[str, type[BaseModel]] = {"channels": CondaChannel}
    clients: Mapping[str, Renderer] = {"conda": client_config.conda, "pixi": client_config.pixi}

    def source_only(self, data: dict[str, Any]) -> set[tuple[str, str]]:
        rules = data.get("conda")
        return entries_named(data, "channels", named_in(rules, "from") - named_in(rules, "to"))

    def check_references(self, policy: Policy, doc: Document) -> None:
        section = CondaSection.of(policy)
        known = ", ".join(sorted(section.channels)) or "none defined"
        for i, rule in enumerate(section.conda):
            for n, name in enumerate(rule.sources):
                channel = section.channels.get(name)
                if channel is None:
                    raise doc.error(("conda", i, "from", n), f"unknown channel '{name}' (channels: {known})")
                if channel.flavour != "channel":
                    raise doc.error(("conda", i, "from", n), f"channel '{name}' is a kind: {channel.flavour} target; "
                                                             f"a source channel has a url")
            target = section.channels.get(rule.target)
            if target is None:
                raise doc.error(("conda", i, "to"), f"unknown channel '{rule.target}' (channels: {known})")
            if target.flavour == "channel":
                raise doc.error(("conda", i, "to"), f"channel '{rule.target}' is read-only: a target is kind: "
                                                    f"directory or kind: http")
            for name in rule.verify.trust:
                entry = policy.trust.get(name)
                if entry is None:
                    raise doc.error(("conda", i, "verify", "trust"), f"unknown trust entry '{name}'")
                if entry.keyless is None or entry.trusted_root is None:
                    raise doc.error(("conda", i, "verify", "trust"), f"trust entry '{name}' must be keyless with a "
                                    f"trusted_root: attestations are verified offline against its trusted_root.json")

    def trust_used(self, policy: Policy) -> Iterable[str]:
        for rule in CondaSection.of(policy).conda:
            yield from rule.verify.trust

    def files(self, policy: Policy) -> Iterable[NamedFile]:
        for name, channel in CondaSection.of(policy).channels.items():
            if channel.tls and channel.tls.ca_file:
                yield NamedFile(("channels", name, "tls", "ca_file"), channel.tls.ca_file, "ca_bundle")

    def summary(self, policy: Policy) -> tuple[list[str], list[str]]:
        section = CondaSection.of(policy)
        channels = [f"  channels:   {', '.join(section.channels)}"] if section.channels else []
        return channels, [f"  conda   {describe(rule)}" for rule in section.conda]

    def describe(self, policy: Policy, key: str, index: int) -> str | None:
        rules = CondaSection.of(policy).conda
        if key != "conda":
            return None
        if index >= len(rules):
            return "not in this policy"
        rule = rules[index]
        return f"{', '.join(rule.sources)} -> {rule.target} [{', '.join(rule.specs)}]"
