"""Load a policy file: YAML with line numbers → validated models → cross-references checked."""

from __future__ import annotations

import hashlib
from typing import Any
from dataclasses import dataclass
from pathlib import Path

from loguru import logger
from pydantic import ValidationError

from regsync.content.files import open_input
from regsync.errors import PolicyError
from regsync.policy.lint import unanchored_regexes
from regsync.policy.models import Policy
from regsync.policy.section import Sections, placeholder, policy_model, source_only
from regsync.policy.vulns import check_vulnerability_references
from regsync.policy.yamlsource import Document, load_document

MAX_POLICY_BYTES = 16 * 1024 * 1024   # the largest policies in policies/ are a few KiB


@dataclass(frozen=True)
class LoadedPolicy:
    policy: Policy
    path: Path
    sha256: str
    document: Document
    # ("registries"|"indexes"|"channels", name) of each source an air-gap bundle stands in for (import):
    # its settings were never read, and its entry in `policy` is a placeholder (regsync.policy.section.placeholder).
    stood_in: frozenset[tuple[str, str]] = frozenset()
    sections: Sections = ()   # the kinds' parts of the policy it was read with, in the kinds' order

    def registry_of(self, ref: str) -> str:
        return ref.split("/", 1)[0]


def load_policy(path: str | Path, environ: dict[str, str] | None = None, offline_sources: bool = False,
                sections: Sections = ()) -> LoadedPolicy:
    """`sections`: the kinds' parts of the policy (their keys, models, checks), which the caller
    hands in (regsync.kinds.registry.SECTIONS); a key none of them owns is refused.
    `offline_sources` (import): a bundle stands in for every registry, index and channel the
    policy only reads from. Their settings (URLs, credentials, CA files, the variables in them) are
    neither required nor validated nor read: each becomes a placeholder the bundle's stand-in replaces."""
    path = Path(path)
    try:
        with open_input(path) as handle:   # a FIFO without a writer reads as empty, never hangs
            raw = handle.read(MAX_POLICY_BYTES + 1)
    except OSError as exc:
        raise PolicyError(f"cannot read policy: {exc.strerror}", str(path)) from None
    if len(raw) > MAX_POLICY_BYTES:
        raise PolicyError(f"larger than {MAX_POLICY_BYTES >> 20} MiB: not a policy file", str(path))
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise PolicyError("the policy is not UTF-8 text", str(path)) from None
    doc = load_document(text, str(path), environ, defer_unset=offline_sources)
    if not isinstance(doc.data, dict):
        raise PolicyError("the policy must be a mapping (version:, registries:, images: …)", str(path), 1)
    stood_in = frozenset(source_only(sections, doc.data)) if offline_sources else frozenset()
    for where, name in doc.unset.items():
        if tuple(where[:2]) not in stood_in:
            raise doc.error(where, f"environment variable '{name}' is not set")
    for section, name in stood_in:
        del doc.data[section][name]
    try:
        policy = policy_model(sections).model_validate(doc.data, context={"base_dir": path.resolve().parent})
    except ValidationError as exc:
        raise _all_errors(exc, doc) from None
    if stood_in:
        policy = policy.model_copy(update={section: {**getattr(policy, section), **{
            name: placeholder(sections, section) for where, name in stood_in if where == section}}
            for section in {section for section, _ in stood_in}})
    _check_references(policy, doc, sections)
    regexes = [regex for section in sections for regex in section.regexes(policy)]
    for warning in unanchored_regexes(policy, doc, regexes):
        logger.warning(warning)
    return LoadedPolicy(policy, path, hashlib.sha256(raw).hexdigest(), doc, stood_in, sections)


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


def _check_references(policy: Policy, doc: Document, sections: Sections) -> None:
    for section in sections:
        section.check_references(policy, doc)
    _check_bundle_references(policy, doc)
    _check_approval_references(policy, doc)
    check_vulnerability_references(policy, doc, [gate for section in sections for gate in section.gates(policy)])


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


def _check_bundle_references(policy: Policy, doc: Document) -> None:
    bundle = policy.bundle
    _check_key_entries(policy, doc, "bundle", "a bundle is signed with a key (regsync export --sign-key)")
    if bundle.signature != "off" and not bundle.trust:
        raise doc.error(("bundle",), f"signature: {bundle.signature} needs at least one trust entry "
                                     f"(the public key that signs the bundles)")
