"""The registry of kinds of artifact (docs/architecture.md, "The Kind protocol").

Each kind is one folder here implementing regsync.pipeline.kind.Kind; adding one is one line below.
The order is the plan's order. regsync/runs.py hands this mapping to the pipeline and the bundle;
nothing below it imports this module.
"""

from __future__ import annotations

from regsync.kinds.conda.kind import CondaKind
from regsync.kinds.image.kind import ImageKind
from regsync.kinds.package.kind import PackageKind
from regsync.pipeline.kind import Kinds
from regsync.policy.section import Sections

KINDS: Kinds = {kind.name: kind for kind in (
    ImageKind(),
    PackageKind(),
    CondaKind(),
)}


# what regsync.policy.load_policy reads a policy with: each kind's keys
SECTIONS: Sections = tuple(kind.section for kind in KINDS.values())
