"""A plan is plain data: what will move, from where to where, at which digest, and why.

It round-trips through JSON (docs/architecture.md, "The plan") so it can be saved, reviewed and applied
exactly: applying a saved plan never re-resolves a tag.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from datetime import datetime, timezone
from pathlib import Path

from typing import TYPE_CHECKING, Any, TypeVar

from pydantic import TypeAdapter, ValidationError

from regsync.errors import InvalidName, UsageError, shown

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

D = TypeVar("D", bound="DataclassInstance")  # PlanItem, PlanError

PLAN_VERSION = 1
ACTIONS = ("copy", "update", "skip", "refuse")
MAX_PLAN_BYTES = 256 * 1024 * 1024


@dataclass
class PlanItem:
    kind: str          # a Kind's name (regsync/kinds/registry.py): image | package
    source: str        # "registry/repo:tag"
    target: str
    digest: str        # what the target will hold (the reduced index when platforms are filtered)
    action: str        # copy | update | skip | refuse
    reason: str = ""
    bytes: int = 0
    blobs_missing: int = 0
    source_digest: str | None = None   # the source's own digest when it differs from `digest`
    target_before: str | None = None   # what the target tag pointed to when planned
    media_type: str = ""
    platforms: list[str] | None = None
    rule: str = ""
    environments: list[str] | None = None   # packages: the target environments that need this file
    verification: dict[str, Any] | None = None   # signature, gate and cross-check evidence found at plan time
    source_index: str | None = None    # packages: the index (primary or mirror) whose page gave the sha256
    project: str | None = None         # packages: the project the file belongs to, as its index page names it

    @property
    def changes(self) -> bool:
        return self.action in ("copy", "update")

    def artifact(self) -> dict[str, Any]:
        """The item as the audit trail's `artifact` field names it."""
        artifact = {"kind": self.kind, "source": self.source, "target": self.target, "digest": self.digest,
                    "size": self.bytes}
        if self.source_digest:
            artifact["source_digest"] = self.source_digest
        if self.platforms:
            artifact["platforms"] = self.platforms
        if self.environments:
            artifact["environments"] = self.environments
        return artifact


@dataclass
class PlanError:
    source: str
    reason: str
    rule: str = ""
    refused: bool = False   # it failed only because verification refused what it needed: exit 3, not 1
    kind: str = ""          # the Kind that planned it (PlanItem.kind), for per-kind metrics and logs


@dataclass
class Plan:
    policy_sha256: str
    items: list[PlanItem] = field(default_factory=list)
    errors: list[PlanError] = field(default_factory=list)
    created: str = field(default_factory=lambda: datetime.now(timezone.utc).isoformat(timespec="seconds"))
    version: int = PLAN_VERSION

    @property
    def has_changes(self) -> bool:
        return any(item.changes for item in self.items)

    def to_json(self) -> str:
        body = {"version": self.version, "policy_sha256": self.policy_sha256, "created": self.created,
                "items": [asdict(item) for item in self.items], "errors": [asdict(e) for e in self.errors]}
        return json.dumps(body, indent=2) + "\n"

    @classmethod
    def from_json(cls, text: str, where: str = "plan",
                  check_names: Callable[[PlanItem], None] | None = None) -> "Plan":
        """`check_names`: the item's kind checks every name apply turns into a URL or a path
        (raises InvalidName); a refuse row is only recorded, never acted on, and is not checked."""
        try:
            body = json.loads(text)
            if body.get("version") != PLAN_VERSION:
                raise UsageError(f"{where}: unsupported plan version {body.get('version')!r}")
            items = [_build(PlanItem, raw) for raw in body["items"]]
            errors = [_build(PlanError, raw) for raw in body.get("errors", [])]
            plan = cls(body["policy_sha256"], items, errors, body["created"])
        except UsageError:
            raise
        except (ValueError, KeyError, TypeError, AttributeError):
            raise UsageError(f"{where}: not a regsync plan (malformed JSON or missing fields)") from None
        for item in plan.items:
            if item.action not in ACTIONS:
                raise UsageError(f"{where}: unknown action '{shown(item.action)}' for {shown(item.source)}")
            if check_names is not None and item.action != "refuse":
                try:
                    check_names(item)
                except InvalidName as exc:
                    raise UsageError(f"{where}: item {shown(item.source)} -> {shown(item.target)}: "
                                     f"{exc.reason}") from None
        return plan

    def save(self, path: Path) -> None:
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(self.to_json())
        tmp.replace(path)  # never a half-written plan

    @classmethod
    def load(cls, path: Path, check_names: Callable[[PlanItem], None] | None = None) -> "Plan":
        try:
            if path.stat().st_size > MAX_PLAN_BYTES:
                raise UsageError(f"{path}: too large to be a plan")
            return cls.from_json(path.read_text(), str(path), check_names)
        except OSError as exc:
            raise UsageError(f"{path}: cannot read plan: {exc.strerror}") from None


@functools.cache
def _adapter(cls: type[D]) -> TypeAdapter[D]:
    return TypeAdapter(cls)


def _build(cls: type[D], raw: dict[str, Any]) -> D:
    names = {f.name for f in fields(cls)}
    unknown = set(raw) - names
    if unknown:
        raise KeyError(unknown)
    try:  # a plan file is input like any other: a digest that is a number is refused here, not deep in apply
        built: D = _adapter(cls).validate_python(raw)  # functools.cache hides TypeAdapter[D]'s parameter
    except ValidationError as exc:
        raise ValueError(str(exc)) from None
    return built
