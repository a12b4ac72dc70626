"""Load a policy file: YAML with line numbers → validated models → cross-references checked."""

from __future__ import annotations

import hashlib
from typing import Any
from dataclasses import dataclass
from pathlib import Path

from loguru import logger
from pydantic import BaseModel, ValidationError

from regsync.errors import PolicyError
from regsync.policy.names import invalid_repository, is_repository
from regsync.policy.lint import unanchored_regexes
from regsync.policy.models import ImageRule, Index, PackageRule, Policy, Registry, parse_size  # noqa: F401
from regsync.policy import conda as _conda  # noqa: F401  (completes Policy with channels: and conda:)
from regsync.policy.vulns import check_vulnerability_references
from regsync.policy.yamlsource import Document, Path_, load_document


@dataclass(frozen=True)
class LoadedPolicy:
    policy: Policy
    path: Path
    sha256: str
    document: Document
    # ("registries"|"indexes"|"channels", name) of each source an air-gap bundle stands in for (import):
    # its settings were never read, and its entry in `policy` is a placeholder (stand_in_placeholder).
    stood_in: frozenset = frozenset()

    def registry_of(self, ref: str) -> str:
        return ref.split("/", 1)[0]


def load_policy(path: str | Path, environ: dict[str, str] | None = None, offline_sources: bool = False) -> LoadedPolicy:
    """`offline_sources` (import): a bundle stands in for every registry, index and channel the
    policy only reads from. Their settings (URLs, credentials, CA files, the variables in them) are
    neither required nor validated nor read: each becomes a placeholder the bundle's stand-in replaces."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise PolicyError(f"cannot read policy: {exc.strerror}", str(path)) from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise PolicyError("the policy is not UTF-8 text", str(path)) from None
    doc = load_document(text, str(path), environ, defer_unset=offline_sources)
    if not isinstance(doc.data, dict):
        raise PolicyError("the policy must be a mapping (version:, registries:, images: …)", str(path), 1)
    stood_in = frozenset(_source_only(doc.data)) if offline_sources else frozenset()
    for where, name in doc.unset.items():
        if tuple(where[:2]) not in stood_in:
            raise doc.error(where, f"environment variable '{name}' is not set")
    for section, name in stood_in:
        del doc.data[section][name]
    try:
        policy = Policy.model_validate(doc.data, context={"base_dir": path.resolve().parent})
    except ValidationError as exc:
        raise _all_errors(exc, doc) from None
    if stood_in:
        policy = policy.model_copy(update={section: {**getattr(policy, section), **{
            name: stand_in_placeholder(section) for where, name in stood_in if where == section}}
            for section in {section for section, _ in stood_in}})
    _check_references(policy, doc)
    for warning in unanchored_regexes(policy, doc):
        logger.warning(warning)
    return LoadedPolicy(policy, path, hashlib.sha256(raw).hexdigest(), doc, stood_in)


def stand_in_placeholder(section: str):
    """What a stood-in source's entry becomes: its model with nothing of the policy's settings in it
    (built without validation: nothing of it is ever used, the bundle's stand-in is)."""
    models: dict[str, type[BaseModel]] = {"registries": Registry, "indexes": Index,
                                          "channels": _conda.CondaChannel}
    return models[section].model_construct(url=None)


def _source_only(data: dict) -> set[tuple]:
    """(section, name) of every registry, index and channel the policy only reads from (`from:`,
    `provenance_from:`), never writes to or cross-checks against."""
    def names(rules, *keys) -> set[str]:
        found = set()
        for rule in rules if isinstance(rules, list) else []:
            for key in keys:
                value = rule.get(key) if isinstance(rule, dict) else None
                if key == "provenance_from":
                    value = (rule.get("verify") or {}).get(key) if isinstance(rule.get("verify"), dict) else None
                for one in value if isinstance(value, list) else [value]:
                    if isinstance(one, str):
                        found.add(one.split("/", 1)[0])
        return found

    images, packages, conda = data.get("images"), data.get("packages"), data.get("conda")
    sections = {"registries": names(images, "from") - names(images, "to", "crosscheck"),
                "indexes": names(packages, "from", "provenance_from") - names(packages, "to"),
                "channels": names(conda, "from") - names(conda, "to")}
    return {(section, name) for section, found in sections.items() for name in found
            if isinstance(data.get(section), dict) and name in data[section]}


def _all_errors(exc: ValidationError, doc: Document) -> PolicyError:
    """Every error pydantic found, in file order: a policy with three typos is fixed in one round."""
    found: list[PolicyError] = []
    for error in exc.errors(include_url=False):
        policy_error = _policy_error(error, doc)
        if str(policy_error) not in {str(e) for e in found}:  # union branches repeat one complaint
            found.append(policy_error)
    if len(found) == 1:
        return found[0]
    found.sort(key=lambda e: e.line or 0)
    # one line still (errors are, docs/security.md): each error with its line, in file order
    listed = "; ".join(f"line {e.line}: {e.msg}" if e.line else e.msg for e in found)
    return PolicyError(f"{len(found)} errors: {listed}", doc.file)


def _policy_error(error: Any, doc: Document) -> PolicyError:  # a pydantic ErrorDetails
    loc = _document_path(error["loc"])
    if error["type"] == "extra_forbidden":
        return doc.error(loc, f"unknown key '{loc[-1]}'")
    if error["type"] == "missing":
        return doc.error(loc[:-1], f"missing key '{loc[-1]}'")
    where = ".".join(str(part) for part in loc)
    msg = error["msg"].removeprefix("Value error, ")
    return doc.error(loc, f"{where}: {msg}" if where else msg)


def _document_path(loc) -> tuple:
    # pydantic inserts union-branch and model names into loc; keep only keys present in YAML.
    return tuple(part for part in loc if not (isinstance(part, str) and (part[:1].isupper() or "[" in part)))


def _check_references(policy: Policy, doc: Document) -> None:
    for i, rule in enumerate(policy.images):
        for key, ref in (("from", rule.source), ("to", rule.target)):
            name, _, repo = ref.partition("/")
            if name not in policy.registries:
                known = ", ".join(sorted(policy.registries)) or "none defined"
                raise doc.error(("images", i, key), f"unknown registry '{name}' (registries: {known})")
            if not repo:
                raise doc.error(("images", i, key), f"'{ref}' must be <registry>/<repository>")
            if not is_repository(repo):
                raise doc.error(("images", i, key), f"'{ref}': {invalid_repository(repo)}")
            if key == "to" and policy.registries[name].kind == "harbor" and "/" not in repo:
                raise doc.error(("images", i, key), f"'{ref}': Harbor repositories live in a project: "
                                                    f"{name}/<project>/<repository>")
        if rule.crosscheck and rule.crosscheck not in policy.registries:
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
    for i, rule in enumerate(policy.packages):
        named: list[tuple[Path_, str]] = [(("packages", i, "from"), rule.source), (("packages", i, "to"), rule.target)]
        if rule.verify.provenance_from is not None:
            named.append((("packages", i, "verify", "provenance_from"), rule.verify.provenance_from))
        for where, name in named:
            if name not in policy.indexes:
                known = ", ".join(sorted(policy.indexes)) or "none defined"
                raise doc.error(where, f"unknown index '{name}' (indexes: {known})")
            if where[2] != "to" and policy.indexes[name].kind == "directory":
                raise doc.error(where, f"index '{name}' is a kind: directory target; an index read from has a url")
        _check_provenance_references(policy, rule, ("packages", i, "verify"), doc)
        for n, wanted in enumerate(rule.verify.require_attestations):
            for name in wanted.trust:
                where = ("packages", i, "verify", "require_attestations", n, "trust")
                if name not in policy.trust:
                    raise doc.error(where, f"unknown trust entry '{name}'")
                if policy.trust[name].keyless is None or policy.trust[name].trusted_root is None:
                    raise doc.error(where, f"trust entry '{name}' must be keyless with a trusted_root: PEP 740 "
                                           f"attestations are sigstore bundles, verified offline")
    _check_bundle_references(policy, doc)
    _check_conda_references(policy, doc)
    _check_approval_references(policy, doc)
    check_vulnerability_references(policy, doc)


def _check_approval_references(policy: Policy, doc: Document) -> None:
    _check_key_entries(policy, doc, "approval", "approvals are signed offline with a key (regsync plan approve --key)")


def _check_key_entries(policy: Policy, doc: Document, section: str, why: str) -> None:
    """`section`.trust names cosign_key entries only: `why` says what is signed with the key."""
    for name in getattr(policy, section).trust:
        entry = policy.trust.get(name)
        if entry is None:
            raise doc.error((section, "trust"), f"unknown trust entry '{name}'")
        if entry.cosign_key is None:
            raise doc.error((section, "trust"), f"trust entry '{name}' must be a cosign_key: {why}")


def _check_conda_references(policy: Policy, doc: Document) -> None:
    known = ", ".join(sorted(policy.channels)) or "none defined"
    for i, rule in enumerate(policy.conda):
        for n, name in enumerate(rule.sources):
            channel = policy.channels.get(name)
            if channel is None:
                raise doc.error(("conda", i, "from", n), f"unknown channel '{name}' (channels: {known})")
            if channel.kind != "channel":
                raise doc.error(("conda", i, "from", n), f"channel '{name}' is a kind: {channel.kind} target; "
                                                         f"a source channel has a url")
        target = policy.channels.get(rule.target)
        if target is None:
            raise doc.error(("conda", i, "to"), f"unknown channel '{rule.target}' (channels: {known})")
        if target.kind == "channel":
            raise doc.error(("conda", i, "to"), f"channel '{rule.target}' is read-only: a target is kind: directory "
                                                f"or kind: http")
        for name in rule.verify.trust:
            entry = policy.trust.get(name)
            if entry is None:
                raise doc.error(("conda", i, "verify", "trust"), f"unknown trust entry '{name}'")
            if entry.keyless is None or entry.trusted_root is None:
                raise doc.error(("conda", i, "verify", "trust"), f"trust entry '{name}' must be keyless with a "
                                f"trusted_root: attestations are verified offline against its trusted_root.json")


def _check_bundle_references(policy: Policy, doc: Document) -> None:
    bundle = policy.bundle
    _check_key_entries(policy, doc, "bundle", "a bundle is signed with a key (regsync export --sign-key)")
    if bundle.signature != "off" and not bundle.trust:
        raise doc.error(("bundle",), f"signature: {bundle.signature} needs at least one trust entry "
                                     f"(the public key that signs the bundles)")


def _check_provenance_references(policy: Policy, rule: PackageRule, where: tuple, doc: Document) -> None:
    verify = rule.verify
    if verify.trust is None:
        return
    entry = policy.trust.get(verify.trust)
    if entry is None:
        raise doc.error((*where, "trust"), f"unknown trust entry '{verify.trust}'")
    if entry.keyless is None or entry.trusted_root is None:
        # PEP 740 attestations are Sigstore bundles: only a trusted root (Fulcio, Rekor) verifies them
        raise doc.error((*where, "trust"), f"trust entry '{verify.trust}' must be keyless with a trusted_root: "
                                           f"attestations are verified offline against its trusted_root.json")
