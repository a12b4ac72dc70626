"""Connected side of an air gap: the plan applied into a bundle directory instead of the targets.

Export resolves and verifies exactly as sync does (the same make_plan and apply_plan); each kind
writes its bytes through the sink below, and the bundle's own files are written once at the end.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from loguru import logger

from regsync.bundle.format import (BUNDLE_FORMAT, bundle_meta, gather_volumes, read_small, split_volumes,
                                   write_checksums)
from regsync.bundle.signature import forget_signatures, sign_file
from regsync.bundle.streams import stamp
from regsync.content.files import write_atomically
from regsync.content.layout import DIGEST, REF_NAME, SOURCE_DIGEST, LayoutWriter
from regsync.endpoints import Endpoints
from regsync.errors import RegistryError, UsageError, VerificationError
from regsync.console import say
from regsync.pipeline.apply import Outcome, apply_plan
from regsync.pipeline.kind import Kinds, kind_of
from regsync.pipeline.make import make_plan
from regsync.pipeline.plan import PlanItem
from regsync.policy import LoadedPolicy
from regsync.vulns.carry import carry_out, check_fresh


class BundleDirectory:
    """The BundleSink (regsync/pipeline/kind.py) of one export: what the kinds wrote, gathered for
    index.json and bundle.json. Items are exported in parallel; the files list them in plan order."""

    def __init__(self, out: Path, items: list[PlanItem], leave_out: frozenset[str] = frozenset()):
        self.writer = LayoutWriter(out)
        self.leave_out = leave_out
        self._order = {id(item): n for n, item in enumerate(items)}
        self._lock = threading.Lock()
        self._refs: dict[str, dict] = {}
        self._artifacts: list[tuple[int, dict]] = []
        self._sections: dict[str, list[tuple[int, dict]]] = {}
        self._left_out: set[str] = set()

    def add_ref(self, name: str, manifest, source_digest: str | None = None) -> None:
        ref = {"mediaType": manifest.media_type, "digest": manifest.digest, "size": len(manifest.raw)}
        if source_digest is not None:
            ref["annotations"] = {SOURCE_DIGEST: source_digest}
        with self._lock:
            self._refs[name] = ref

    def add_artifact(self, item: PlanItem, entry: dict) -> None:
        with self._lock:
            self._artifacts.append((self._order.get(id(item), len(self._order)), entry))

    def add_entry(self, item: PlanItem, section: str, entry: dict) -> None:
        with self._lock:
            self._sections.setdefault(section, []).append((self._order.get(id(item), len(self._order)), entry))

    def left_out(self, digests: set[str]) -> None:
        with self._lock:
            self._left_out |= digests

    def index(self) -> list[dict]:
        return [dict(descriptor, annotations={**descriptor.get("annotations", {}), REF_NAME: name})
                for name, descriptor in sorted(self._refs.items())]

    def artifacts(self) -> list[dict]:
        return [entry for _, entry in sorted(self._artifacts, key=lambda pair: pair[0])]

    def section(self, name: str) -> list[dict]:
        return [entry for _, entry in sorted(self._sections.get(name, []), key=lambda pair: pair[0])]

    @property
    def layers_left_out(self) -> int:
        return len(self._left_out)


def check_bundle_dir(out: Path) -> None:
    """Before the run: `out` can hold a bundle. A new or empty folder, or a bundle (finished or
    half-written: re-running completes it); never a folder of other files, which the bundle's blobs
    and SHA256SUMS would be mixed into. UsageError naming `-o` otherwise."""
    in_the_way = next((parent for parent in (out, *out.parents) if parent.exists() and not parent.is_dir()), None)
    if in_the_way is not None:
        raise UsageError(f"-o {out}: {in_the_way} is a file, not a folder")
    if out.is_dir() and any(out.iterdir()) and not any((out / name).exists() for name in ("oci-layout", "bundle.json")):
        raise UsageError(f"-o {out} is a folder of other files, not a bundle: export into a new or empty folder")
    existing = next(parent for parent in (out, *out.parents) if parent.exists())
    probe = existing / f".regsync-probe-{os.getpid()}"
    try:   # created as the run will create it, and removed: a refused export leaves no folder behind
        probe.mkdir()
        probe.rmdir()
    except OSError as exc:
        raise UsageError(f"-o {out}: cannot create the bundle folder: {exc.strerror or exc}") from None


def export_bundle(loaded: LoadedPolicy, endpoints: Endpoints, kinds: Kinds, out: Path, audit, jobs: int = 8,
                  on_bytes=None, since: Path | None = None, volume_size: int | None = None, sign_key=None) -> Outcome:
    """`kinds`: what make_plan and apply_plan are given; each writes its own section of bundle.json.
    `sign_key`: a private key (signing.load_private_key) that signs SHA256SUMS and bundle.json."""
    base = _base_bundle(since) if since else None
    check_fresh(endpoints)
    stream = stamp(loaded.sha256)  # before resolving: a later export saw a later upstream
    plan = make_plan(loaded, endpoints, kinds, jobs, diff_target=False)
    leave_out = frozenset(base["blobs"]) if base else frozenset()
    if volume_size:
        _check_volume_size(plan, endpoints, kinds, volume_size, leave_out)  # before the first byte is written
    sink = BundleDirectory(out, plan.items, leave_out)
    gather_volumes(out)  # a re-run resumes with what earlier volumes already hold
    # Re-running completes a half-written bundle: blobs already there are kept once their bytes hash
    # to their names (what SHA256SUMS, and a signature over it, will say of them). Refs are not:
    # index.json names only what this run verified.
    sink.writer.drop_unverified_blobs(jobs)
    outcome = apply_plan(plan, endpoints, kinds, audit, jobs, on_bytes, into=sink)
    if outcome.interrupted:
        return outcome
    exported = sink.artifacts()
    if outcome.problems and not exported and (out / "bundle.json").exists():
        # nothing verified this time (a source gone, say): an earlier, finished bundle stays as it was
        logger.error("nothing exported: the bundle files in {} are left as they were", out)
        return outcome
    sink.writer.write_index(sink.index())
    carried = carry_out(endpoints, sink.writer.write_blob)   # the database the gates used, signed with the rest
    bundle: dict[str, Any] = {"format": BUNDLE_FORMAT, "policy_sha256": loaded.sha256, "stream": stream,
              "created": datetime.now(timezone.utc).isoformat(timespec="seconds"), "artifacts": exported,
              "not_exported": outcome.problems}
    for kind in kinds.values():
        if kind.bundle_section:
            bundle[kind.bundle_section] = sink.section(kind.bundle_section)
    if carried is not None:
        bundle["vulnerabilities"] = carried
    if base:
        bundle["since"] = {"bundle_sha256": base["sha256"], "created": base["created"],
                           "layers_left_out": sink.layers_left_out}
    volumes = split_volumes(out, volume_size, len(json.dumps(bundle))) if volume_size else []
    bundle["volumes"] = 1 + len(volumes)
    forget_signatures(out)
    raw = json.dumps(bundle, indent=1).encode()
    write_atomically(out / "bundle.json", raw)
    sums = write_checksums(out)
    if sign_key is not None:
        sign_file(out, "bundle.json", raw, sign_key)
        sign_file(out, "SHA256SUMS", sums, sign_key)
    for volume in volumes:
        write_checksums(volume, small_files=())
    if volumes:
        carry = [str(out), *map(str, volumes)]
        say(f"split into {len(carry)} volumes: carry {len(carry)} directories: {', '.join(carry)}",
            event="volumes", volumes=carry)
    return outcome


def _check_volume_size(plan, endpoints: Endpoints, kinds: Kinds, volume_size: int, leave_out: frozenset) -> None:
    """A blob is never split across media: one larger than a volume is refused before anything is
    written, rather than after hours of downloading. Manifests read here are cached for the export."""
    largest, what = 0, ""
    for item in plan.items:
        if item.action == "refuse":
            continue
        try:
            sizes = kind_of(kinds, item).export_sizes(item, endpoints, leave_out)
        except (RegistryError, VerificationError):
            continue  # the export itself reports it
        if sizes and max(sizes) > largest:
            largest, what = max(sizes), item.source
    if largest > volume_size:
        raise UsageError(f"--volume-size {volume_size} is smaller than the largest blob to export ({largest} bytes, "
                         f"in {what}); a blob is never split across volumes: nothing was written")


def export_stand_ins(loaded: LoadedPolicy, kinds: Kinds) -> dict:
    """What export reads in place of the targets: they are across the gap, so nothing is there yet."""
    stand_ins: dict = {}
    for kind in kinds.values():
        stand_ins.update(kind.export_stand_ins(loaded.policy))
    return stand_ins


def _base_bundle(old: Path) -> dict:
    """What an earlier bundle carried: its blob names (a blob file is named by its verified sha256)."""
    try:
        raw = read_small(old / "bundle.json")
    except (RegistryError, VerificationError):
        raw = b""
    meta = bundle_meta(raw)
    if meta is None:
        raise UsageError(f"--since-bundle {old}: not a regsync bundle (no readable bundle.json)")
    try:
        names = [p.name for p in (old / "blobs" / "sha256").iterdir()]
    except OSError:
        raise UsageError(f"--since-bundle {old}: its blobs/sha256 directory cannot be read") from None
    blobs = {f"sha256:{name}" for name in names if DIGEST.fullmatch(f"sha256:{name}")}
    return {"sha256": hashlib.sha256(raw).hexdigest(), "created": meta.get("created"), "blobs": blobs}
