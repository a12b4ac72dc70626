"""The registry of kinds of artifact (docs/architecture.md, "The Kind protocol").

Each kind is one folder here implementing regsync.pipeline.kind.Kind; adding one is one line below.
The order is the plan's order.
"""

from __future__ import annotations

from regsync.errors import VerificationError
from regsync.kinds.conda.kind import CondaKind
from regsync.kinds.oci.kind import ImageKind
from regsync.kinds.pypi.kind import PackageKind
from regsync.pipeline.kind import Kind
from regsync.pipeline.plan import PlanItem

KINDS: dict[str, Kind] = {kind.name: kind for kind in (
    ImageKind(),
    PackageKind(),
    CondaKind(),
)}


def kind_of(item: PlanItem) -> Kind:
    """The Kind of a plan item; a kind this build does not know is refused, never guessed."""
    try:
        return KINDS[item.kind]
    except (KeyError, TypeError):
        raise VerificationError(f"not allowed by the policy: unknown kind of artifact '{item.kind}'") from None
