"""Gates: refusals decided from what an image is, before any byte moves.

They are evaluated on what would be pushed (the platform-filtered index when `platforms:` is
set), per platform: compressed size, CUDA version, labels, and which platforms are present. Only
runnable images are judged; attestation manifests in the index are not platforms.
"""

from __future__ import annotations

import json
import re
from typing import Any

from packaging.version import InvalidVersion, Version

from regsync.errors import RegistryError, VerificationError
from regsync.kinds.image.source import ImageSource
from regsync.kinds.image.manifest import Manifest, platform_matches
from regsync.kinds.image.policy import Gates
from regsync.content.reader import read_small_blob
from regsync.kinds.image.tree import manifest_tree

MAX_CONFIG_BYTES = 4 << 20
_CUDA_IN_TAG = re.compile(r"cuda[-_]?v?(\d+(?:\.\d+)*)", re.IGNORECASE)


def gates_set(gates: Gates) -> bool:
    return bool(gates.max_size or gates.cuda_max or gates.require_labels or gates.platforms_required)


def evaluate_gates(gates: Gates, client: ImageSource, repo: str, root: Manifest, tag: str) -> dict[str, Any]:
    """What each gate saw (for plan and audit); raises VerificationError naming the first gate failed."""
    tree = manifest_tree(client, repo, root)
    entries = [d for m in tree for d in m.children()]
    platforms = {d.digest: d.platform for d in entries if d.runnable}
    # Runnable images only (what `docker pull` picks): BuildKit's attestation manifests travel with
    # the index but are no platform, and their "unknown" config has no labels or CUDA to judge.
    not_images = {d.digest for d in entries if not d.runnable} - set(platforms)
    images = [m for m in tree if not m.is_index and m.digest not in not_images]
    # A lone manifest names its platform only in its config; an index names each child's.
    need_config = bool(gates.cuda_max or gates.require_labels) or not root.is_index
    configs = {m.digest: _config(client, repo, m) if need_config else {} for m in images}
    named = {m.digest: platforms.get(m.digest) or _config_platform(configs[m.digest]) for m in images}
    results: dict[str, Any] = {}
    if gates.platforms_required:
        results["platforms"] = _platforms(gates.platforms_required, set(named.values()))
    if gates.max_size:
        results["max_size"] = {named[m.digest]: _size(m, named[m.digest], gates.max_size) for m in images}
    if gates.cuda_max:
        results["cuda"] = {named[m.digest]: _cuda(gates.cuda_max, configs[m.digest], tag, named[m.digest])
                           for m in images}
    if gates.require_labels:
        for m in images:
            _labels(gates.require_labels, configs[m.digest], named[m.digest])
        results["labels"] = "present"
    return results


def _config(client: ImageSource, repo: str, manifest: Manifest) -> dict[str, Any]:
    descriptor = manifest.config
    if descriptor.size > MAX_CONFIG_BYTES:
        raise VerificationError(f"{manifest.digest}: image config of {descriptor.size} bytes is too large")
    try:
        config = json.loads(read_small_blob(client, repo, descriptor.digest, descriptor.size))
    except ValueError:
        raise VerificationError(f"{manifest.digest}: image config is not JSON") from None
    except RegistryError:
        raise
    return config if isinstance(config, dict) else {}


def _config_platform(config: dict[str, Any]) -> str:
    parts = [config.get("os") or "?", config.get("architecture") or "?"]
    if config.get("variant"):
        parts.append(config["variant"])
    return "/".join(parts)


def _platforms(required: list[str], present: set[str]) -> list[str]:
    missing = [p for p in required if not any(platform_matches(have or "", {p}) for have in present)]
    if missing:
        have = ", ".join(sorted(p or "?" for p in present))
        raise VerificationError(f"gate platforms_required: {', '.join(missing)} missing (image has: {have})")
    return sorted(p or "?" for p in present)


def _size(manifest: Manifest, platform: str, limit: int) -> int:
    compressed = sum(layer.size for layer in manifest.blobs()[1:])
    if compressed > limit:
        raise VerificationError(f"gate max_size: {platform} is {_human(compressed)} compressed "
                                f"({compressed} bytes), above the limit of {_human(limit)} ({limit} bytes)")
    return compressed


def _cuda(limit: str, config: dict[str, Any], tag: str, platform: str) -> str:
    found, source = cuda_version(config, tag)
    if found is None:
        return "none"
    try:
        have, most = Version(found).release, Version(limit).release
    except InvalidVersion:
        raise VerificationError(f"gate cuda_max: {platform} declares CUDA '{found}' ({source}), "
                                f"which is not a version") from None
    # Drivers support a CUDA major.minor; 11.8.89 is within "11.8".
    if have[:len(most)] > most:
        raise VerificationError(f"gate cuda_max: {platform} needs CUDA {found} (from {source}), "
                                f"above the fleet's maximum {limit}")
    return f"{found} ({source})"


def cuda_version(config: dict[str, Any], tag: str) -> tuple[str | None, str]:
    inner = got if isinstance(got := config.get("config"), dict) else {}
    for entry in inner.get("Env") or []:
        if isinstance(entry, str) and entry.startswith("CUDA_VERSION="):
            return entry.split("=", 1)[1].strip(), "env CUDA_VERSION"
    labels = got if isinstance(got := inner.get("Labels"), dict) else {}
    if labels.get("com.nvidia.cuda.version"):
        return str(labels["com.nvidia.cuda.version"]), "label com.nvidia.cuda.version"
    match = _CUDA_IN_TAG.search(tag)
    return (match.group(1), f"tag {tag}") if match else (None, "")


def _labels(required: dict[str, str], config: dict[str, Any], platform: str) -> None:
    inner = got if isinstance(got := config.get("config"), dict) else {}
    labels = got if isinstance(got := inner.get("Labels"), dict) else {}
    for key, value in required.items():
        if key not in labels:
            raise VerificationError(f"gate require_labels: {platform} has no label {key}")
        if value != "*" and labels[key] != value:
            raise VerificationError(f"gate require_labels: {platform} has {key}={labels[key]!r}, "
                                    f"the policy requires {value!r}")


def _human(size: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.1f} {unit}" if unit != "B" else f"{size} B"
        size /= 1024
    return f"{size} B"
