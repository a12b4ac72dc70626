"""Why a signature did not satisfy a trust entry: a documented category and a detail.

Failures are refusals with a reason that starts with one of the documented categories, so a
reader (and a script) can tell them apart: `unsigned`, `wrong key`, `signature invalid`,
`payload names another digest`, and for keyless `identity mismatch`, `issuer mismatch`,
`certificate expired at signing`, `untrusted certificate`.
"""

from __future__ import annotations

from dataclasses import dataclass

# When several signatures fail differently, the most telling reason is reported.
_SEVERITY = {"unsigned": 0, "untrusted certificate": 1, "wrong key": 1, "signature invalid": 2, "identity mismatch": 2,
             "issuer mismatch": 2, "certificate expired at signing": 3, "payload names another digest": 3}


@dataclass
class Failure:
    category: str
    detail: str

    @property
    def reason(self) -> str:
        return f"{self.category}: {self.detail}"


def worst(failures: list[Failure]) -> Failure:
    return max(failures, key=lambda f: _SEVERITY.get(f.category, 0))
