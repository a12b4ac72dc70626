"""Air-gap transfer: everything a policy selects into one directory, and back out on the far side.

The directory is an OCI image layout (blobs stored once across all images) whose refs are named
"<registry>/<repository>:<tag>" as the policy names its sources, plus `bundle.json` (what was
exported and how it was verified) and `SHA256SUMS` (checkable with `sha256sum -c`). On import the
bundle stands in for the policy's source registries, so tag selection, signature checks, the diff
against the target and the push are the very code `regsync sync` runs.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
from datetime import datetime, timezone
from pathlib import Path

from loguru import logger

from regsync.apply import artifact_of, split_image_ref
from regsync.endpoints import Endpoints, split_ref
from regsync.errors import NotFound, RegistryError, UsageError, VerificationError
from regsync.oci.layout import DIGEST, REF_NAME, SOURCE_DIGEST, LayoutSource, LayoutWriter, copy_into_layout, open_regular
from regsync.oci.manifest import filter_index
from regsync.bundle.packages import export_package, index_stand_ins
from regsync.bundle.referrers import carries_referrers, export_referrers
from regsync.conda.bundle import conda_stand_ins, export_conda
from regsync.bundle.signature import check_signatures, forget_signatures, sign_file
from regsync.console import say
from regsync.policy import LoadedPolicy
from regsync.resolve import make_plan
from regsync.resolve.images import manifest_tree
from regsync.transfer import write_atomically
from regsync.verify.steps import rule_of, verified_attachments

BUNDLE_FORMAT = "regsync-bundle/1"
MAX_BUNDLE_JSON = 64 * 1024 * 1024
ATTACHMENTS = (".sig", ".att", ".sbom")
MAX_VOLUMES = 999
SMALL_FILES = ("oci-layout", "index.json", "bundle.json")


def export_bundle(loaded: LoadedPolicy, endpoints: Endpoints, out: Path, audit, jobs: int = 8, on_bytes=None,
                  since: Path | None = None, volume_size: int | None = None, sign_key=None) -> dict:
    """`sign_key`: a private key (signing.load_private_key) that signs SHA256SUMS and bundle.json."""
    base = _base_bundle(since) if since else None
    leave_out = frozenset(base["blobs"]) if base else frozenset()
    plan = make_plan(loaded, endpoints, jobs, diff_target=False)
    if volume_size:
        _check_volume_size(plan, endpoints, volume_size, leave_out)  # before the first byte is written
    writer = LayoutWriter(out)
    _gather_volumes(out)  # a re-run resumes with what earlier volumes already hold
    # Re-running completes a half-written bundle: blobs already there are kept once their bytes hash
    # to their names (what SHA256SUMS, and a signature over it, will say of them). Refs are not:
    # index.json names only what this run verified.
    writer.drop_unverified_blobs(jobs)
    refs: dict[str, dict] = {}
    exported, refused, moved, left_out, packages, conda = [], [], 0, set(), [], []
    for error in plan.errors:
        logger.error("{}", error.reason)
        audit.record("failed", artifact={"source": error.source}, policy_rule=error.rule, reason=error.reason)
        refused.append({"source": error.source, "reason": error.reason, "event": "failed"})
    for item in plan.items:
        if item.action == "refuse":
            audit.record("refused", artifact=artifact_of(item), policy_rule=item.rule, reason=item.reason)
            refused.append({"source": item.source, "reason": item.reason, "event": "refused"})
            continue
        if item.kind != "image":
            entries = conda if item.kind == "conda" else packages
            moved += _export_package(item, endpoints, writer, audit, on_bytes, exported, entries, refused)
            continue
        src_name, src_repo, tag = split_image_ref(item.source)
        src = endpoints.registry(src_name)
        try:
            original, root, tree = _tree_of(item, src, src_repo)
            moved += copy_into_layout(src, src_repo, tree, writer, on_bytes, leave_out)
            left_out |= {b.digest for m in tree for b in m.blobs()[1:]} & leave_out
            writer.write_manifest(original)  # signatures name the original digest: keep it resolvable
            # The ref names what the bundle holds (the filtered index, readable by any OCI tool); the
            # original digest rides along for import, whose signature checks and filter start there.
            refs[f"{src_name}/{src_repo}:{tag}"] = _ref(root, original if root is not original else None)
            pinned = verified_attachments(item.verification, original.digest)  # not what the tags say by now
            for suffix in ATTACHMENTS:
                attached = f"sha256-{original.digest.split(':', 1)[1]}{suffix}"
                known = pinned.get(attached)
                found = None if known else src.head_manifest(src_repo, attached)
                if known or found is not None:
                    sig = src.get_manifest(src_repo, known or found.digest)
                    moved += copy_into_layout(src, src_repo, manifest_tree(src, src_repo, sig), writer, on_bytes)
                    refs[f"{src_name}/{src_repo}:{attached}"] = _ref(sig)
            if carries_referrers(rule_of(endpoints, item.rule), endpoints.policy.trust):
                moved += export_referrers(src, src_repo, f"{src_name}/{src_repo}", original.digest, writer, on_bytes,
                                          refs)
        except (RegistryError, VerificationError) as exc:
            event = "refused" if isinstance(exc, VerificationError) else "failed"
            logger.error("{}: {}", item.source, exc)
            audit.record(event, artifact=artifact_of(item), policy_rule=item.rule, reason=str(exc))
            refused.append({"source": item.source, "reason": str(exc), "event": event})
            continue
        record = audit.record("verified", artifact=artifact_of(item), policy_rule=item.rule,
                              verification=item.verification, reason="exported to bundle")
        exported.append({**artifact_of(item), "verification": item.verification, "audit_seq": record.get("seq")})
    result = {"exported": len(exported), "refused": sum(r["event"] == "refused" for r in refused),
              "failed": sum(r["event"] == "failed" for r in refused), "bytes": moved}
    if refused and not exported and (out / "bundle.json").exists():
        # nothing verified this time (a source gone, say): an earlier, finished bundle stays as it was
        logger.error("nothing exported: the bundle files in {} are left as they were", out)
        return result
    writer.write_index([dict(descriptor, annotations={REF_NAME: name}) for name, descriptor in sorted(refs.items())])
    bundle = {"format": BUNDLE_FORMAT, "policy_sha256": loaded.sha256,
              "created": datetime.now(timezone.utc).isoformat(timespec="seconds"), "artifacts": exported,
              "not_exported": refused, "packages": packages, "conda": conda}
    if base:
        bundle["since"] = {"bundle_sha256": base["sha256"], "created": base["created"],
                           "layers_left_out": len(left_out)}
    volumes = _split_volumes(out, volume_size, len(json.dumps(bundle))) if volume_size else []
    bundle["volumes"] = 1 + len(volumes)
    forget_signatures(out)
    raw = json.dumps(bundle, indent=1).encode()
    write_atomically(out / "bundle.json", raw)
    sums = _write_checksums(out)
    if sign_key is not None:
        sign_file(out, "bundle.json", raw, sign_key)
        sign_file(out, "SHA256SUMS", sums, sign_key)
    for volume in volumes:
        _write_checksums(volume, small_files=())
    if volumes:
        carry = [str(out), *map(str, volumes)]
        say(f"split into {len(carry)} volumes: carry {len(carry)} directories: {', '.join(carry)}",
            event="volumes", volumes=carry)
    return result


def open_bundle(root: Path, loaded: LoadedPolicy, more_blobs: tuple[Path, ...] = (),
                audit=None) -> dict[str, LayoutSource]:
    """Check the bundle's own files and return it as the policy's source registries.

    `more_blobs`: further directories with blobs only (the other volumes of a split bundle, or the
    base bundle of an incremental one); their blobs are verified by digest as they stream.
    Each small file is read once: its signature, its sum and its content are of the same bytes."""
    for directory in (root, *more_blobs):
        if directory.is_symlink() or not directory.is_dir():
            raise UsageError(f"{directory} is not a bundle directory")
    checked = {name: _read_present(root, name) for name in ("SHA256SUMS", *SMALL_FILES)}
    evidence = check_signatures(root, loaded, checked)  # before any of it is read as authority
    if evidence and audit is not None:
        audit.record("verified", artifact={"bundle": str(root)}, verification=evidence,
                     reason="bundle signature verified")
    _check_sums(root, checked)
    bundle = _bundle_meta(checked["bundle.json"])
    if bundle is None:
        raise VerificationError(f"{root}/bundle.json is not a regsync bundle")
    if bundle.get("policy_sha256") != loaded.sha256:
        raise UsageError(f"the bundle was exported with another policy (sha256 {str(bundle.get('policy_sha256'))[:12]},"
                         f" {loaded.path} is {loaded.sha256[:12]}): import with the policy that made it")
    volumes = bundle.get("volumes", 1)
    if isinstance(volumes, int) and 1 < volumes <= MAX_VOLUMES and len(more_blobs) < volumes - 1:
        raise UsageError(f"this bundle was split into {volumes} volumes: name them all, e.g. "
                         f"regsync import {root} " + " ".join(f"{root}.vol{n}" for n in range(2, volumes + 1)))
    for directory in (root, *more_blobs):
        _check_complete(directory, checked["SHA256SUMS"] if directory == root else None)
    names = {split_ref(rule.source)[0] for rule in loaded.policy.images}
    index, more = checked["index.json"], tuple(more_blobs)
    sources = {name: LayoutSource(root, name, more, index) for name in names}
    sources.update(index_stand_ins(bundle.get("packages"), loaded, LayoutSource(root, "packages", more, index)))
    sources.update(conda_stand_ins(bundle.get("conda"), loaded, LayoutSource(root, "conda", more, index)))
    return sources


def _export_package(item, endpoints, writer, audit, on_bytes, exported, packages, refused) -> int:
    try:
        exporter = export_conda if item.kind == "conda" else export_package
        entry, moved = exporter(item, endpoints, writer, on_bytes)
    except (RegistryError, VerificationError) as exc:
        event = "refused" if isinstance(exc, VerificationError) else "failed"
        audit.record(event, artifact=artifact_of(item), policy_rule=item.rule, reason=str(exc))
        refused.append({"source": item.source, "reason": str(exc), "event": event})
        return 0
    against = f"{entry['index']} index" if "index" in entry else f"{entry['channel']}/{entry['subdir']}/repodata.json"
    verification = {"method": "sha256", "against": against}
    record = audit.record("verified", artifact=artifact_of(item), policy_rule=item.rule, verification=verification,
                          reason="exported to bundle")
    exported.append({**artifact_of(item), "verification": verification, "audit_seq": record.get("seq")})
    packages.append(entry)
    return moved


def _base_bundle(old: Path) -> dict:
    """What an earlier bundle carried: its blob names (a blob file is named by its verified sha256)."""
    try:
        raw = _read_small(old / "bundle.json")
    except (RegistryError, VerificationError):
        raw = b""
    meta = _bundle_meta(raw)
    if meta is None:
        raise UsageError(f"--since-bundle {old}: not a regsync bundle (no readable bundle.json)")
    try:
        names = [p.name for p in (old / "blobs" / "sha256").iterdir()]
    except OSError:
        raise UsageError(f"--since-bundle {old}: its blobs/sha256 directory cannot be read") from None
    blobs = {f"sha256:{name}" for name in names if DIGEST.fullmatch(f"sha256:{name}")}
    return {"sha256": hashlib.sha256(raw).hexdigest(), "created": meta.get("created"), "blobs": blobs}


def _ref(manifest, original=None) -> dict:
    ref = {"mediaType": manifest.media_type, "digest": manifest.digest, "size": len(manifest.raw)}
    if original is not None:
        ref["annotations"] = {SOURCE_DIGEST: original.digest}
    return ref


def _tree_of(item, src, src_repo: str):
    """(the source's manifest, the root exported (platform-filtered when asked), its tree)."""
    original = src.get_manifest(src_repo, item.source_digest or item.digest)
    root = filter_index(original, item.platforms) if item.platforms and original.is_index else original
    return original, root, manifest_tree(src, src_repo, root)


def _check_volume_size(plan, endpoints: Endpoints, volume_size: int, leave_out: frozenset) -> None:
    """A blob is never split across media: one larger than a volume is refused before anything is
    written, rather than after hours of downloading. Manifests read here are cached for the export."""
    largest, what = 0, ""
    for item in plan.items:
        if item.action == "refuse":
            continue
        sizes = [item.bytes] if item.kind != "image" else []
        if item.kind == "image":
            src_name, src_repo, _ = split_image_ref(item.source)
            try:
                _, _, tree = _tree_of(item, endpoints.registry(src_name), src_repo)
            except (RegistryError, VerificationError):
                continue  # the export itself reports it
            sizes = [b.size for m in tree for b in m.blobs() if b.digest not in leave_out]
        if sizes and max(sizes) > largest:
            largest, what = max(sizes), item.source
    if largest > volume_size:
        raise UsageError(f"--volume-size {volume_size} is smaller than the largest blob to export ({largest} bytes, "
                         f"in {what}); a blob is never split across volumes: nothing was written")


def _volume(out: Path, n: int) -> Path:
    return out.with_name(f"{out.name}.vol{n}")


def _split_volumes(out: Path, volume_size: int, bundle_json_size: int) -> list[Path]:
    """Move blobs that do not fit in `volume_size` into OUT.vol2, OUT.vol3… (one per medium)."""
    blobs = sorted((p for p in (out / "blobs" / "sha256").iterdir() if not p.name.startswith(".")),
                   key=lambda p: p.name)
    used = sum((out / name).stat().st_size for name in ("oci-layout", "index.json")) + 2 * bundle_json_size
    used += 100 * (len(blobs) + 3)  # SHA256SUMS lines
    groups: list[list[Path]] = [[]]
    for blob in blobs:
        size = blob.stat().st_size
        if size > volume_size:
            raise UsageError(f"blob {blob.name[:12]}… is {size} bytes, more than --volume-size {volume_size}")
        if used + size > volume_size:
            groups.append([])
            used = 100 * len(blobs)
        groups[-1].append(blob)
        used += size
    if len(groups) > MAX_VOLUMES:
        raise UsageError(f"--volume-size {volume_size} would make {len(groups)} volumes (at most {MAX_VOLUMES})")
    volumes = []
    for n, group in enumerate(groups[1:], start=2):
        target = _volume(out, n) / "blobs" / "sha256"
        target.mkdir(parents=True, exist_ok=True)
        for blob in group:
            os.replace(blob, target / blob.name)
        volumes.append(_volume(out, n))
    return volumes


def _gather_volumes(out: Path) -> None:
    for n in range(2, MAX_VOLUMES + 1):
        blobs = _volume(out, n) / "blobs" / "sha256"
        if not blobs.is_dir():
            return
        for blob in blobs.iterdir():
            if not blob.name.startswith(".") and not blob.is_symlink():
                os.replace(blob, out / "blobs" / "sha256" / blob.name)
        shutil.rmtree(_volume(out, n))


def _write_checksums(out: Path, small_files=SMALL_FILES) -> bytes:
    """Returns what it wrote (the bytes a signature covers)."""
    lines = []
    for name in small_files:
        lines.append(f"{hashlib.sha256((out / name).read_bytes()).hexdigest()}  {name}")
    for blob in sorted((out / "blobs" / "sha256").iterdir()):
        if not blob.name.startswith("."):
            lines.append(f"{blob.name}  blobs/sha256/{blob.name}")  # a blob is named by its verified sha256
    data = ("\n".join(lines) + "\n").encode()
    write_atomically(out / "SHA256SUMS", data)
    return data


def _check_sums(root: Path, checked: dict[str, bytes]) -> None:
    """The bundle's small files must match SHA256SUMS (blobs are verified by digest as they stream);
    `checked` holds the bytes of each as read once, the ones import goes on to use."""
    try:
        sums = dict(reversed(line.split("  ", 1)) for line in checked["SHA256SUMS"].decode().splitlines()
                    if "  " in line)
    except UnicodeDecodeError:
        raise VerificationError(f"{root}/SHA256SUMS is not a checksum list") from None
    for name in SMALL_FILES:
        if sums.get(name) != hashlib.sha256(checked[name]).hexdigest():
            raise VerificationError(f"{root}/{name} does not match SHA256SUMS: the bundle was altered or damaged")


_INCOMPLETE = "the bundle is incomplete (an export that did not finish, or a copy cut short): export again, or copy it again"


def _read_present(root: Path, name: str) -> bytes:
    try:
        return _read_small(root / name)
    except NotFound:
        raise UsageError(f"{root}/{name} is missing: {_INCOMPLETE}") from None


def _check_complete(directory: Path, sums: bytes | None) -> None:
    """Every blob a directory's SHA256SUMS lists is there: a half-copied bundle is named as such up
    front, not found out blob by blob as "not in the bundle" halfway through an import."""
    if sums is None:
        try:
            sums = _read_small(directory / "SHA256SUMS")
        except (NotFound, VerificationError):
            return  # a volume or base without its own list: its blobs are checked as they are read
    listed = re.findall(r"(?m)^[0-9a-f]{64}  (blobs/sha256/[0-9a-f]{64})$", sums.decode(errors="replace"))
    missing = [name for name in listed if not os.path.lexists(directory / name)]
    if missing:
        shown = ", ".join(f"{directory}/{name}" for name in missing[:3])
        more = f" and {len(missing) - 3} more" if len(missing) > 3 else ""
        raise UsageError(f"{shown}{more} missing: {_INCOMPLETE}")


def _read_small(path: Path) -> bytes:
    """A regular file of at most MAX_BUNDLE_JSON bytes (never through a symlink)."""
    with open_regular(path) as handle:
        data = handle.read(MAX_BUNDLE_JSON + 1)
    if len(data) > MAX_BUNDLE_JSON:
        raise VerificationError(f"{path.name} is larger than a bundle's {MAX_BUNDLE_JSON >> 20} MiB limit")
    return data


def _bundle_meta(raw: bytes) -> dict | None:
    """bundle.json's content when it is one (within bounds, JSON, this format), else None."""
    try:
        meta = json.loads(raw) if len(raw) <= MAX_BUNDLE_JSON else None
    except ValueError:
        return None
    return meta if isinstance(meta, dict) and meta.get("format") == BUNDLE_FORMAT else None
