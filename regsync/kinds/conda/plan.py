"""Conda rules → plan items: per rule, platform and virtual-package set, the closure solved as pixi
would solve it, then diffed against what the target channel's repodata lists. Read-only."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from loguru import logger

from regsync.kinds.conda.channel import Channels, Found, channels_of
from regsync.kinds.conda.names import check_item, record_digest, record_size as _size
from regsync.errors import RegistryError
from regsync.kinds.conda.item import CondaDetails
from regsync.pipeline.plan import PlanError, PlanItem
from regsync.kinds.conda.policy import CondaRule, CondaSection

if TYPE_CHECKING:
    from regsync.endpoints import Endpoints
    from regsync.pipeline.shard import Shard


def plan_conda(endpoints: Endpoints, shard: Shard | None = None,
               diff_target: bool = True) -> tuple[list[PlanItem], list[PlanError]]:
    """A closure is solved whole on every shard; only the items are split. Without `diff_target`
    (export: the target is across the gap) every file is planned as absent there."""
    channels = channels_of(endpoints)
    items: dict[str, tuple[PlanItem, dict[str, Any]]] = {}
    errors: list[PlanError] = []
    for number, rule in enumerate(CondaSection.of(endpoints.policy).conda):
        rule_name = f"conda[{number}]"
        for subdir in dict.fromkeys(rule.platforms):
            for virtual in rule.virtual_packages:
                label = f"{'/'.join(rule.sources)} {subdir}" + "".join(f" {k}={v}" for k, v in virtual.items())
                try:
                    found = channels.solve(rule.sources, list(rule.specs), subdir, virtual, rule.dependencies)
                except Exception as exc:  # rattler's solver and fetch errors carry their own explanation
                    errors.append(PlanError(f"{label}: {', '.join(rule.specs)}", _reason(exc), rule_name))
                    continue
                logger.info("{}: {} record(s)", label, len(found))
                for one in found:
                    item = _item(one, rule, rule_name)
                    if item.target not in items:
                        items[item.target] = (item, one.record)
    existing: dict[tuple[str, str], Mapping[str, dict[str, Any]]] = {}
    for item, record in items.values() if diff_target else ():
        _diff(item, record, channels, existing)
    return [item for item, _ in items.values() if shard is None or shard.owns(item.target)], errors


def _item(found: Found, rule: CondaRule, rule_name: str) -> PlanItem:
    subdir, filename, record = found.subdir, found.filename, found.record
    digest = record_digest(record, rule.weak_digests == "allow")
    item = PlanItem("conda", f"{found.channel.name}/{subdir}/{filename}", f"{rule.target}/{subdir}/{filename}",
                    digest or "", "copy", bytes=_size(record), rule=rule_name,
                    details=CondaDetails(record.get("name")))
    if not digest:
        item.action, item.reason = "refuse", ("the channel's repodata gives no sha256 for this file (md5 and size "
                                              "only: a rule with weak_digests: allow mirrors it)"
                                              if isinstance(record.get("md5"), str) and _size(record)
                                              else "the channel's repodata gives no sha256 for this file")
        return item
    try:  # names from the server's repodata, before they reach a path or a URL
        check_item(item.source, item.target, item.digest)
    except ValueError as exc:
        item.action, item.reason, item.bytes = "refuse", f"the channel's repodata lists {exc}", 0
        return item
    elsewhere = found.channel.files_elsewhere(subdir, found.url)
    if elsewhere:
        item.reason = f"from {elsewhere}/ (the channel's base_url)"
    return item


def _diff(item: PlanItem, record: dict[str, Any], channels: Channels,
          cache: dict[tuple[str, str], Mapping[str, dict[str, Any]]]) -> None:
    if item.action == "refuse":
        return
    target_name, subdir, filename = item.target.split("/")
    key = (target_name, subdir)
    if key not in cache:
        cache[key] = channels.target(target_name).existing(subdir)
    present = cache[key].get(filename)
    if present is None:
        return
    if record_digest(present, True) == item.digest:
        item.bytes = 0
        if present == record:
            item.action, item.reason = "skip", "already in the target channel"
        else:  # the file is the same; clients must resolve with the channel's record as it is now
            item.action, item.reason = "update", "upstream changed its record (a repodata patch): listing it anew"
    else:
        item.action = "refuse"
        item.reason = f"the target lists {filename} with {record_digest(present, True)}; never overwritten"


def _reason(exc: Exception) -> str:
    from rattler.exceptions import SolverError

    if isinstance(exc, RegistryError):
        return str(exc)
    text = " ".join(str(exc).split())[:2000]
    return f"cannot solve: {text}" if isinstance(exc, SolverError) else f"cannot read the channels' repodata: {text}"
