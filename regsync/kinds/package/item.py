"""A package's own part of a plan item (`PlanItem.details`): what the plan JSON carries for a
Python package file beside the fields every kind shares (docs/architecture.md, "The Kind protocol": read_details)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from regsync.pipeline.plan import Details


@dataclass
class PackageDetails(Details):
    environments: list[str] | None = None   # the target environments whose closure needs this file
    source_index: str | None = None         # the index (primary or mirror) whose page gave the sha256
    project: str | None = None              # the project the file belongs to, as its index page names it

    def artifact(self) -> dict[str, Any]:
        return {"environments": self.environments} if self.environments else {}

