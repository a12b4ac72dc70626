"""Keyless (Fulcio certificate) signatures: not verified by this build yet.

A keyless trust entry never passes, so `signature: required` with only keyless trust refuses
rather than letting anything through unverified. See docs/signatures.md for what is missing.
"""

from __future__ import annotations

from regsync.policy.models import Trust
from regsync.verify.cosign import SignedPayload


def verify_keyless(name: str, entry: Trust, payloads: list[SignedPayload], digest: str):
    from regsync.verify.signatures import Failure

    return Failure("untrusted certificate", f"trust entry '{name}' is keyless, which this build cannot verify "
                                            f"offline yet; use a cosign_key entry")
