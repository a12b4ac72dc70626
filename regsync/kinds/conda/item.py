"""A conda package's own part of a plan item (`PlanItem.details`): the package name its repodata
record gives, beside the fields every kind shares (docs/architecture.md, "The Kind protocol": read_details)."""

from __future__ import annotations

from dataclasses import dataclass

from regsync.pipeline.plan import Details


@dataclass
class CondaDetails(Details):
    project: str | None = None   # the record's `name`
