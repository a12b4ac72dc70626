"""An image's own part of a plan item (`PlanItem.details`): what the plan JSON carries for an image
beside the fields every kind shares (docs/architecture.md, "The Kind protocol": read_details)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from regsync.pipeline.plan import Details


@dataclass
class ImageDetails(Details):
    blobs_missing: int = 0              # blobs the target lacks (of `bytes`), when planned
    target_before: str | None = None    # what the target tag pointed to when planned
    media_type: str = ""                # the source manifest's
    platforms: list[str] | None = None  # the rule's platform filter: `digest` is the reduced index

    def artifact(self) -> dict[str, Any]:
        return {"platforms": self.platforms} if self.platforms else {}

    def replaces(self) -> str | None:
        return self.target_before

