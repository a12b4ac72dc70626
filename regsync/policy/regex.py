"""The regular expressions a policy writes (`re:` tag patterns, keyless `identity_regex`, an
attestation's expected `re:` values), read as cosign reads them: Go's regexp, which is RE2.

Compiled by google-re2 (RE2 itself), not Python's `re`, for two reasons. The syntax is cosign's:
a pattern cosign refuses (a lookahead, a back-reference, `\\Z`) is a policy error here too, not a
pattern that means something else. And RE2 matches in time linear in the text: with `re`, a
pattern such as `^(a+)+$` and a 128-character tag from a server backtracks for longer than any
run may last.
"""

from __future__ import annotations

from typing import Any

import re2

_OPTIONS = re2.Options()
_OPTIONS.log_errors = False   # RE2 would also print each refused pattern to stderr


def compile_regex(pattern: str) -> Any:
    """The compiled pattern (`search`, `fullmatch`); ValueError saying why RE2 refuses it."""
    try:
        return re2.compile(pattern, _OPTIONS)
    except re2.error as exc:
        reason = exc.args[0] if exc.args else "not a regular expression"
        if isinstance(reason, bytes):
            reason = reason.decode("utf-8", "replace")
        raise ValueError(f"invalid regular expression (RE2 syntax, as cosign's Go regexp reads it): {reason}") from None
