"""What a kind owns of the policy (docs/architecture.md, "Policy sections").

A kind of artifact names its own top-level keys (images: registries:, packages: indexes:, conda:
channels:), and everything about them: their models, the references between them, the files they
name, its lines in `policy check`'s summary, the client configurations it renders, and which of its
entries only ever read (what an air-gap bundle stands in for on import). `regsync.policy` keeps what
every kind shares (trust, audit, bundle, approval, vulnerabilities) and composes the sections it is
given: nothing here, nor anywhere below the kinds, imports one.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol, TypeVar

from pydantic import BaseModel, create_model

from regsync.policy.models import AttestationRequirement, Policy, Strict
from regsync.policy.vulns import VulnGate
from regsync.policy.yamlsource import Document, Path_

S = TypeVar("S", bound="Section")


class Section(Strict):
    """A kind's top-level keys, as one model: each field is a key of the policy YAML."""

    @classmethod
    def of(cls: type[S], policy: Policy) -> S:
        """This section of a composed policy (empty when the policy was read without it)."""
        return policy.section(cls)


@dataclass(frozen=True)
class NamedFile:
    """A file the policy names, opened and parsed before any run (regsync.policy.files)."""

    where: Path_                      # its key in the document, for the error's file:line
    path: Path
    what: Literal["ca_bundle", "private_key"]
    password_env: str | None = None   # a private key's password, by environment variable
    label: str = ""                   # how an error names it ("sign.key")


@dataclass
class Rendered:
    """One client's configuration file (client-config): the file itself, and notes for the human."""

    text: str
    notes: list[str] = field(default_factory=list)


# (policy, --upstream) → the file; a usage error when the policy gives the client nothing
Renderer = Callable[[Policy, "str | None"], Rendered]
# (document path, the text shown, the regex, what it matches, the verb) of a regex to lint
Regex = tuple[Path_, str, str, str, str]


class PolicySection(Protocol):
    """A kind's part of the policy; `BaseSection` gives the parts a kind may leave out."""

    @property
    def model(self) -> type[Section]:
        """Its keys: the fields of this model are top-level keys of the policy."""

    @property
    def placeholders(self) -> Mapping[str, type[BaseModel]]:
        """key → the model of its entries, for each key whose entries a bundle may stand in for."""

    @property
    def clients(self) -> Mapping[str, Renderer]:
        """`client-config --for` name → its renderer, in the order `--help` lists them."""

    def source_only(self, data: dict[str, Any]) -> set[tuple[str, str]]:
        """(key, name) of each entry the policy's rules only read from (the raw YAML data): on
        import, a bundle stands in for these, and their settings are never read."""

    def check_references(self, policy: Policy, doc: Document) -> None:
        """Names that must refer to something (an entry, a trust entry): an error at its file:line."""

    def trust_used(self, policy: Policy) -> Iterable[str]:
        """The trust entries its rules use: the files of these are opened before any run."""

    def files(self, policy: Policy) -> Iterable[NamedFile]:
        """The other files it names (CA bundles, signing keys)."""

    def gates(self, policy: Policy) -> Iterable[tuple[Path_, VulnGate]]:
        """Its vulnerability gates, with where they are: each needs the policy's database."""

    def regexes(self, policy: Policy) -> Iterable[Regex]:
        """Regexes whose anchoring is worth a warning (regsync.policy.lint)."""

    def summary(self, policy: Policy) -> tuple[list[str], list[str]]:
        """Its lines in `policy check`'s summary: (its entries, printed before trust:; its rules, after)."""

    def describe(self, policy: Policy, key: str, index: int) -> str | None:
        """`key[index]` (a plan item's rule) as one line, or None when the key is not its own."""


class BaseSection:
    """Defaults for a section that names no files, no gates, nothing a bundle stands in for."""

    placeholders: Mapping[str, type[BaseModel]] = {}
    clients: Mapping[str, Renderer] = {}

    def source_only(self, data: dict[str, Any]) -> set[tuple[str, str]]:
        return set()

    def check_references(self, policy: Policy, doc: Document) -> None:
        return None

    def trust_used(self, policy: Policy) -> Iterable[str]:
        return ()

    def files(self, policy: Policy) -> Iterable[NamedFile]:
        return ()

    def gates(self, policy: Policy) -> Iterable[tuple[Path_, VulnGate]]:
        return ()

    def regexes(self, policy: Policy) -> Iterable[Regex]:
        return ()

    def summary(self, policy: Policy) -> tuple[list[str], list[str]]:
        return [], []

    def describe(self, policy: Policy, key: str, index: int) -> str | None:
        return None


Sections = tuple[PolicySection, ...]   # in the kinds' order: summary lines and clients follow it


@functools.cache
def policy_model(sections: Sections) -> type[Policy]:
    """The policy's model with every section's keys: still one model, so pydantic reports every
    error of a file in one pass, each at its file:line, and refuses a key no section owns."""
    fields: dict[str, Any] = {}
    for section in sections:
        for name, info in section.model.model_fields.items():
            if name in fields or name in Policy.model_fields:
                raise ValueError(f"two sections of the policy own the key '{name}'")
            fields[name] = (info.annotation, info)
    if not fields:
        return Policy
    return create_model("Policy", __base__=Policy, **fields)


def source_only(sections: Sections, data: dict[str, Any]) -> set[tuple[str, str]]:
    return {found for section in sections for found in section.source_only(data)}


def placeholder(sections: Sections, key: str) -> BaseModel:
    """What a stood-in source's entry becomes: its model with nothing of the policy's settings in it
    (built without validation: nothing of it is ever used, the bundle's stand-in is)."""
    for section in sections:
        if key in section.placeholders:
            return section.placeholders[key].model_construct(url=None)
    raise KeyError(key)


def named_in(rules: object, *keys: str) -> set[str]:
    """The first path segment of each string (or list of strings) under `keys` of each rule, in the
    raw YAML data (`from: upstream/library/python` → upstream): what `source_only` compares."""
    found = set()
    for rule in rules if isinstance(rules, list) else []:
        for key in keys:
            value = rule.get(key) if isinstance(rule, dict) else None
            for one in value if isinstance(value, list) else [value]:
                if isinstance(one, str):
                    found.add(one.split("/", 1)[0])
    return found


def entries_named(data: dict[str, Any], key: str, names: set[str]) -> set[tuple[str, str]]:
    """(key, name) for each of `names` that is an entry of the mapping `key` of the raw data."""
    entries = data.get(key)
    return {(key, name) for name in names if isinstance(entries, dict) and name in entries}


def attestations_summary(required: list[AttestationRequirement]) -> str:
    """The attestations a rule requires, for `policy check`'s summary (images and packages name them alike)."""
    if not required:
        return "; no attestation required"
    return "; " + "; ".join(f"attestation {wanted.type} {wanted.mode}, trust {', '.join(wanted.trust)}"
                            + (f", match {', '.join(f'{k}={v}' for k, v in wanted.match.items())}" if wanted.match else "")
                            for wanted in required)
