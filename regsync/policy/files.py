"""The files a policy names (CA bundles, keys, trusted roots), opened and parsed before any run.

Loading a policy checks its shape; the files it points at are checked here, by `policy check` and
by every verb that runs, so a missing or unparsable CA file is a policy error with its file:line
(exit 2) instead of a TLS failure deep inside the first request.
"""

from __future__ import annotations

import json
from pathlib import Path

from cryptography import x509

from regsync.errors import PolicyError
from regsync.policy import LoadedPolicy
from regsync.content.files import read_local_file
from regsync.trust.keys import load_public_key
from regsync.trust.signing import load_private_key

MAX_FILE_BYTES = 16 * 1024 * 1024  # a CA bundle or a trusted_root.json is kilobytes; this is generous


def check_files(loaded: LoadedPolicy) -> None:
    """Every file the policy names, each kind's (its section's `files` and `trust_used`) and the
    shared sections' (bundle, approval, audit): CA bundles first, then trust entries, then keys."""
    policy, doc = loaded.policy, loaded.document
    named = [found for section in loaded.sections for found in section.files(policy)]
    for found in named:
        if found.what == "ca_bundle":
            _guard(doc, found.where, lambda path=found.path: _ca_bundle(path))
    used = {name for section in loaded.sections for name in section.trust_used(policy)}
    used |= set(policy.bundle.trust) | set(policy.approval.trust)
    for name, entry in policy.trust.items():
        if name not in used:
            continue  # an entry no rule uses is never opened
        if entry.cosign_key:
            _guard(doc, ("trust", name, "cosign_key"), lambda e=entry, n=name: load_public_key(e.cosign_key, n))
        if entry.trusted_root:
            _guard(doc, ("trust", name, "trusted_root"), lambda path=entry.trusted_root: _json_file(path))
    for found in named:
        if found.what == "private_key":
            _guard(doc, found.where, lambda f=found: load_private_key(f.path, f.password_env, f.label))
    if policy.audit.sign_key:
        _guard(doc, ("audit", "sign_key"), lambda: load_private_key(
            policy.audit.sign_key, policy.audit.sign_key_password_env, "audit.sign_key"))


def _guard(doc, where: tuple, check) -> None:
    try:
        check()
    except PolicyError as exc:
        raise doc.error(where, exc.msg) from None


def _read(path: Path, noun: str) -> bytes:
    return read_local_file(path, MAX_FILE_BYTES, "file", noun)


def _ca_bundle(path: Path) -> None:
    try:
        x509.load_pem_x509_certificates(_read(path, "a CA bundle"))
    except ValueError:
        raise PolicyError(f"{path} holds no PEM certificate (a CA bundle is one or more "
                          "-----BEGIN CERTIFICATE----- blocks)") from None


def _json_file(path: Path) -> None:
    try:
        document = json.loads(_read(path, "a trusted_root.json"))
    except (ValueError, RecursionError):   # RecursionError: nested past the parser, as no trusted root is
        raise PolicyError(f"{path} is not JSON (a trusted_root.json is)") from None
    if not isinstance(document, dict):
        raise PolicyError(f"{path} is not a JSON object (a trusted_root.json is one, with tlogs and "
                          f"certificateAuthorities)")
