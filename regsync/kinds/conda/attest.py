"""Sigstore attestations of conda packages (CEP 27 statements, advertised in repodata by
`attestations_sha256`), verified by py-rattler's verifier offline against a trust entry's
trusted_root.json; the signer (Fulcio identity and OIDC issuer) must be the entry's.

The attestation binds the file name and sha256, so it is checked before the download: a refusal
moves no bytes, and the download then proves the bytes are the ones attested. The channel an
attestation names (`targetChannel`) is recorded, not required to match: a mirror (TUNA) serves
conda-forge's packages from another URL than the one they were published to.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from regsync.errors import VerificationError
from regsync.policy.models import Keyless, Policy
from regsync.policy.regex import compile_regex


def check_attestation(rules: list[tuple[str, Any]], policy: Policy, record: Any, where: str) -> dict[str, Any] | None:
    """Evidence for the audit trail, None when no rule asks; VerificationError when refused.
    The strictest of the rules that cover the file decides."""
    modes = [rule.verify.attestations for _, rule in rules]
    mode = "required" if "required" in modes else "optional" if "optional" in modes else "off"
    if mode == "off":
        return None
    if record.attestations_sha256 is None:
        if mode == "required":
            raise VerificationError(f"{where}: the channel advertises no attestation (attestations: required)")
        return {"method": "sigstore", "attestation": "none advertised (attestations: optional)"}
    names = list(dict.fromkeys(name for _, rule in rules for name in rule.verify.trust))
    failures = []
    for name in names:
        entry = policy.trust[name]
        if entry.keyless is None or entry.trusted_root is None:  # policy check refuses such an entry here
            failures.append(f"{name}: not keyless with a trusted_root")
            continue
        try:
            attestation = _verified(record, entry.trusted_root)
        except VerificationError as exc:
            failures.append(f"{name}: {exc.reason}")
            continue
        if not _signer_matches(entry.keyless, attestation.identity, attestation.issuer):
            failures.append(f"{name}: signed by {attestation.identity} ({attestation.issuer})")
            continue
        return {"method": "sigstore", "trust": name, "identity": attestation.identity, "issuer": attestation.issuer,
                "rekor_log_index": attestation.log_index, "target_channel": attestation.target_channel}
    raise VerificationError(f"{where}: attestation not verified: {'; '.join(failures)}")


def _verified(record: Any, trusted_root_path: Path) -> Any:  # rattler: a RepoDataRecord, its Attestation
    from rattler import ChannelCheck, TrustedRoot, VerificationPolicy, verify_attestation
    from rattler.exceptions import AttestationError

    try:
        root = TrustedRoot.from_path(trusted_root_path)
    except (OSError, ValueError) as exc:
        raise VerificationError(f"cannot read {trusted_root_path}: {str(exc).splitlines()[0][:200]}") from None
    policy = VerificationPolicy.require(None, channel_check=ChannelCheck.IGNORE)
    try:
        outcome = asyncio.run(verify_attestation(record, policy, trusted_root=root))
    except AttestationError as exc:
        raise VerificationError(" ".join(str(exc).split())[:500]) from None
    if not outcome.is_verified or outcome.attestation is None:
        raise VerificationError("no attestation verified")
    return outcome.attestation


def _signer_matches(keyless: Keyless, identity: str | None, issuer: str | None) -> bool:
    if identity is None or issuer != keyless.issuer:
        return False
    if keyless.identity is not None:
        return identity == keyless.identity
    return keyless.identity_regex is not None and compile_regex(keyless.identity_regex).fullmatch(identity) is not None
