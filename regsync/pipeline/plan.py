"""A plan is plain data: what will move, from where to where, at which digest, and why.

It round-trips through JSON (docs/architecture.md, "The plan") so it can be saved, reviewed and applied
exactly: applying a saved plan never re-resolves a tag.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from datetime import datetime, timezone
from pathlib import Path

from typing import TYPE_CHECKING, Any, Protocol, TypeVar, cast

from pydantic import TypeAdapter, ValidationError

from regsync.content.files import open_input, write_atomically
from regsync.errors import InvalidName, UsageError, shown

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

D = TypeVar("D", bound="DataclassInstance")  # the shared core, PlanError, a kind's part
P = TypeVar("P", bound="Details")
T = TypeVar("T")

PLAN_VERSION = 1
ACTIONS = ("copy", "update", "skip", "refuse")
MAX_PLAN_BYTES = 256 * 1024 * 1024


class ItemDetails(Protocol):
    """A kind's own part of a plan item (images: the platform filter and what the target tag held;
    packages: the environments and the page that gave the sha256), defined and read by the kind
    (`Kind.read_details`): the pipeline only writes it back and asks it these."""

    def plan_fields(self) -> dict[str, Any]:
        """Its keys in the plan JSON, flat beside the shared ones, in the order version 1 has them."""

    def artifact(self) -> dict[str, Any]:
        """What it adds to the audit trail's `artifact` field (images: `platforms`)."""

    def replaces(self) -> str | None:
        """The digest the target named when planned and the item moves away from (an image tag's), or None."""


@dataclass
class RawDetails:
    """The part of an item of a kind this build does not know, kept as read (apply refuses the item:
    kind_of), and the part of a kind that keeps none."""
    fields: dict[str, Any] = field(default_factory=dict)

    def plan_fields(self) -> dict[str, Any]:
        return dict(self.fields)

    def artifact(self) -> dict[str, Any]:
        return {}

    def replaces(self) -> str | None:
        return None


class Details:
    """A base for a kind's part written as a dataclass of its plan keys (each with a default)."""

    @classmethod
    def read(cls: type[P], fields: dict[str, Any]) -> P:
        return read_part(cls, fields)

    def plan_fields(self) -> dict[str, Any]:
        return asdict(cast("DataclassInstance", self))

    def artifact(self) -> dict[str, Any]:
        return {}

    def replaces(self) -> str | None:
        return None


@dataclass
class ItemCore:
    """What every plan item holds whatever its kind (a saved plan's is validated here, pydantic)."""
    kind: str          # a Kind's name (regsync/kinds/registry.py): image | package | conda
    source: str        # "registry/repo:tag"
    target: str
    digest: str        # what the target will hold (the reduced index when platforms are filtered)
    action: str        # copy | update | skip | refuse
    reason: str = ""
    bytes: int = 0
    source_digest: str | None = None   # the source's own digest when it differs from `digest`
    rule: str = ""
    verification: dict[str, Any] | None = None   # signature, gate and cross-check evidence found at plan time


@dataclass
class PlanItem(ItemCore):
    """The shared core, and `details`: the part its kind owns, made and read by the kind."""
    details: ItemDetails = field(default_factory=RawDetails)

    @property
    def changes(self) -> bool:
        return self.action in ("copy", "update")

    def artifact(self) -> dict[str, Any]:
        """The item as the audit trail's `artifact` field names it."""
        artifact = {"kind": self.kind, "source": self.source, "target": self.target, "digest": self.digest,
                    "size": self.bytes}
        if self.source_digest:
            artifact["source_digest"] = self.source_digest
        artifact.update(self.details.artifact())
        return artifact

    def to_plan(self) -> dict[str, Any]:
        """The item as plan JSON version 1 writes it: every key of V1_KEYS in its order (a key another
        kind owns written empty), then any key of the kind's part that V1_KEYS does not list."""
        own = self.details.plan_fields()
        body = {key: getattr(self, key) if empty is _CORE else own.pop(key, empty) for key, empty in V1_KEYS.items()}
        return {**body, **own}


# Version 1 of the plan file (DESIGN.md, "Plan"), kept byte for byte: every item carries each of these
# keys in this order, whatever its kind. The shared core's are _CORE; the others are keys of the kinds'
# parts as the file format lists them (the value: how one is written on an item of another kind, and
# left out of what that kind reads); the pipeline reads none of them. A new kind's keys follow these,
# on its own items only.
_CORE = object()
V1_KEYS: dict[str, Any] = {
    "kind": _CORE, "source": _CORE, "target": _CORE, "digest": _CORE, "action": _CORE, "reason": _CORE,
    "bytes": _CORE, "blobs_missing": 0, "source_digest": _CORE, "target_before": None, "media_type": "",
    "platforms": None, "rule": _CORE, "environments": None, "verification": _CORE, "source_index": None,
    "project": None}


class ItemReader(Protocol):
    """What loading a saved plan asks of an item's Kind (regsync.pipeline.kind.Kind has both)."""

    def read_details(self, fields: dict[str, Any]) -> ItemDetails: ...

    def check_names(self, item: PlanItem) -> None: ...


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
                "items": [item.to_plan() for item in self.items], "errors": [asdict(e) for e in self.errors]}
        return json.dumps(body, indent=2) + "\n"

    @classmethod
    def from_json(cls, text: str, where: str, kinds: Mapping[str, ItemReader]) -> "Plan":
        """`kinds`: each item's kind reads its own part (`read_details`) and checks every name apply
        turns into a URL or a path (`check_names`, raises InvalidName); a refuse row is only
        recorded, never acted on, and is not checked. An item of a kind not in `kinds` keeps its part
        as read: apply refuses it. A file that is not such a plan is a UsageError naming what is wrong."""
        body = _plan_body(text, where)
        try:
            items = [_item(raw, kinds) for raw in body["items"]]
            errors = [_build(PlanError, raw) for raw in body.get("errors") or []]
            plan = cls(body["policy_sha256"], items, errors, body["created"])
        except _BadPart as exc:
            raise UsageError(f"{where}: not a regsync plan: {exc}") from None
        for item in plan.items:
            if item.action not in ACTIONS:
                raise UsageError(f"{where}: unknown action '{shown(item.action)}' for {shown(item.source)}")
            reader = kinds.get(item.kind)
            if reader is not None and item.action != "refuse":
                try:
                    reader.check_names(item)
                except InvalidName as exc:
                    raise UsageError(f"{where}: item {shown(item.source)} -> {shown(item.target)}: "
                                     f"{exc.reason}") from None
        return plan

    def save(self, path: Path) -> None:
        """Replace `path` in one step (never a half-written plan); UsageError when it cannot be written."""
        try:
            write_atomically(path, self.to_json())
        except OSError as exc:
            raise UsageError(f"{path}: cannot write the plan: {exc.strerror}") from None

    @classmethod
    def load(cls, path: Path, kinds: Mapping[str, ItemReader]) -> "Plan":
        try:
            with open_input(path) as handle:   # a FIFO without a writer reads as empty, never hangs
                data = handle.read(MAX_PLAN_BYTES + 1)
        except OSError as exc:
            raise UsageError(f"{path}: cannot read plan: {exc.strerror}") from None
        if len(data) > MAX_PLAN_BYTES:
            raise UsageError(f"{path}: too large to be a plan")
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            raise UsageError(f"{path}: not a regsync plan (not UTF-8 text)") from None
        return cls.from_json(text, str(path), kinds)


def _plan_body(text: str, where: str) -> dict[str, Any]:
    """The plan file's top level, its shape checked: each complaint names what is wrong where."""
    try:
        body = json.loads(text)
    except json.JSONDecodeError as exc:
        raise UsageError(f"{where}: not a regsync plan (not JSON: {exc.msg}, line {exc.lineno} column "
                         f"{exc.colno})") from None
    except RecursionError:   # the parser recurses per level: no plan nests more than a few
        raise UsageError(f"{where}: not a regsync plan (JSON nested too deeply)") from None
    if not isinstance(body, dict):
        raise UsageError(f"{where}: not a regsync plan (an object with version, policy_sha256, created and items "
                         f"is expected, not {_json_type(body)})")
    for key, kind in (("version", int), ("policy_sha256", str), ("created", str), ("items", list)):
        if key not in body:
            raise UsageError(f"{where}: not a regsync plan (no '{key}')")
        if not isinstance(body[key], kind) or isinstance(body[key], bool):
            raise UsageError(f"{where}: not a regsync plan ('{key}' is {_json_type(body[key])}, not "
                             f"{_json_type(kind())})")
        if key == "version" and body[key] != PLAN_VERSION:
            raise UsageError(f"{where}: unsupported plan version {body[key]} (this regsync reads version "
                             f"{PLAN_VERSION}: make the plan again with `regsync plan -o`)")
    if not isinstance(body.get("errors") or [], list):
        raise UsageError(f"{where}: not a regsync plan ('errors' is {_json_type(body['errors'])}, not an array)")
    return body


def _json_type(value: Any) -> str:
    """What a JSON value is, in JSON's words (an error names what it found, not Python's type)."""
    for kind, name in ((bool, "a boolean"), (int, "a number"), (float, "a number"), (str, "a string"),
                       (list, "an array"), (dict, "an object")):
        if isinstance(value, kind):
            return name
    return "null"


@functools.cache
def _adapter(cls: type[D]) -> TypeAdapter[D]:
    return TypeAdapter(cls)


def _build(cls: type[D], raw: Any) -> D:
    """The shared core of an item, or an error row, from a saved plan; _BadPart naming the key."""
    if not isinstance(raw, dict):
        raise _BadPart(f"an error row is {_json_type(raw)}, not an object")
    unknown = sorted(set(raw) - {f.name for f in fields(cls)})
    if unknown:
        raise _BadPart(f"{', '.join(shown(key) for key in unknown)}: not a key of a plan's {cls.__name__}")
    try:  # a plan file is input like any other: a digest that is a number is refused here, not deep in apply
        built: D = _adapter(cls).validate_python(raw)  # functools.cache hides TypeAdapter[D]'s parameter
    except ValidationError as exc:
        what = f"item {shown(raw.get('source', '?'))}" if cls is ItemCore else "error"
        raise _BadPart(f"{what}: {_errors_text(exc)}") from None
    return built


def _errors_text(exc: ValidationError) -> str:
    """pydantic's complaints as one line: each key, what it should be, and what it was."""
    return "; ".join(f"{'.'.join(str(part) for part in error['loc'])}: {error['msg'].lower()}"
                     + ("" if error["type"] == "missing" else f", not {shown(json.dumps(error['input'])[:80])}")
                     for error in exc.errors())


def details_of(item: PlanItem, cls: type[P]) -> P:
    """The part of `item` its kind made or read, typed; TypeError if it holds another kind's."""
    if not isinstance(item.details, cls):
        raise TypeError(f"{item.source}: a {item.kind} item holds no {cls.__name__}")
    return item.details


class _BadPart(ValueError):
    """A kind's part of an item is not what the kind writes: the message names the item."""


def _written_empty(key: str, value: Any) -> bool:
    """`value` is how version 1 writes `key` on an item whose kind does not own it."""
    empty = V1_KEYS.get(key, _CORE)
    return empty is not _CORE and type(value) is type(empty) and value == empty


def _item(raw: Any, kinds: Mapping[str, ItemReader]) -> PlanItem:
    if not isinstance(raw, dict):
        raise _BadPart(f"an item is {_json_type(raw)}, not an object")
    core = {f.name for f in fields(ItemCore)}
    shared = _build(ItemCore, {key: value for key, value in raw.items() if key in core})
    rest = {key: value for key, value in raw.items() if key not in core and not _written_empty(key, value)}
    reader = kinds.get(shared.kind)
    try:
        details = reader.read_details(rest) if reader is not None else RawDetails(rest)
    except ValueError as exc:
        raise _BadPart(f"item {shown(shared.kind)} {shown(shared.source)} -> {shown(shared.target)}: "
                       f"{exc}") from None
    return PlanItem(**{name: getattr(shared, name) for name in core}, details=details)


def read_part(cls: type[T], raw: dict[str, Any]) -> T:
    """A kind's part of a saved plan's item (a dataclass of its keys, each with a default) from the
    item's keys beside the shared ones; ValueError naming the key that is not the kind's or not of
    its type (a list of platforms written as one string, say)."""
    unknown = sorted(set(raw) - {f.name for f in fields(cast("type[DataclassInstance]", cls))})
    if unknown:
        raise ValueError(f"{', '.join(shown(key) for key in unknown)}: not a key of this kind's items")
    try:
        built = cast(T, _adapter(cast("type[DataclassInstance]", cls)).validate_python(raw))
    except ValidationError as exc:
        raise ValueError(_errors_text(exc)) from None
    return built
