"""Manifests and indexes of every media type regsync moves, as immutable data with their bytes.

The raw bytes are kept untouched: a manifest's digest is the hash of exactly those bytes (sha256,
or the algorithm it was addressed by), so re-serialising one would change its identity.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from regsync.errors import VerificationError
from regsync.content.digest import Digest, digest_of

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
INDEX_TYPES = frozenset({OCI_INDEX, DOCKER_LIST})
IMAGE_TYPES = frozenset({OCI_MANIFEST, DOCKER_MANIFEST})
MANIFEST_TYPES = INDEX_TYPES | IMAGE_TYPES
ACCEPT = ", ".join(sorted(MANIFEST_TYPES))

# Real manifests are a few KiB; distribution itself caps them at 4 MiB. Anything larger is hostile.
MAX_MANIFEST_BYTES = 4 * 1024 * 1024
# BuildKit's attestation manifests in an index (moby/buildkit util/attestation/types.go): the
# annotations that say which image of the index an entry attests.
REFERENCE_TYPE, REFERENCE_DIGEST = "vnd.docker.reference.type", "vnd.docker.reference.digest"
ATTESTATION_MANIFEST = "attestation-manifest"


@dataclass(frozen=True)
class Descriptor:
    media_type: str
    digest: str
    size: int
    platform: str | None = None  # "os/arch[/variant]" for index entries
    attests: str | None = None   # annotated as BuildKit's attestation manifest: the image it attests

    @property
    def runnable(self) -> bool:
        """An entry `docker pull` could pick. Pulling matches on the platform alone (containerd's
        platform matcher), so only the platform decides: an annotation cannot hide an image from the gates."""
        return self.platform != "unknown/unknown"

    @property
    def attestation_of(self) -> str | None:
        """The image digest a BuildKit attestation manifest (platform unknown/unknown) describes."""
        return None if self.runnable else self.attests

    @classmethod
    def parse(cls, obj: dict[str, Any], where: str) -> "Descriptor":
        try:
            digest, size = obj["digest"], int(obj["size"])
            media_type = obj.get("mediaType", "")
        except (KeyError, TypeError, ValueError):
            raise VerificationError(f"{where}: malformed descriptor") from None
        if not isinstance(digest, str) or size < 0:
            raise VerificationError(f"{where}: malformed descriptor")
        Digest.parse(digest, where)  # an algorithm we cannot verify is refused here, before any fetch
        platform = obj.get("platform")
        return cls(media_type, digest, size, format_platform(platform) if isinstance(platform, dict) else None,
                   _attests(obj.get("annotations"), where))


def _attests(annotations: object, where: str) -> str | None:
    if not isinstance(annotations, dict) or annotations.get(REFERENCE_TYPE) != ATTESTATION_MANIFEST:
        return None
    subject = annotations.get(REFERENCE_DIGEST)
    if subject is None:
        return ""  # attests nothing this index names
    if not isinstance(subject, str):
        raise VerificationError(f"{where}: malformed {REFERENCE_DIGEST}")
    Digest.parse(subject, where)  # from a server: its grammar is checked before it decides anything
    return subject


def format_platform(platform: dict[str, Any]) -> str:
    parts = [platform.get("os", ""), platform.get("architecture", "")]
    if platform.get("variant"):
        parts.append(platform["variant"])
    return "/".join(parts)


@dataclass(frozen=True)
class Manifest:
    raw: bytes
    media_type: str
    digest: str
    doc: dict[str, Any] = field(repr=False, compare=False)

    @classmethod
    def parse(cls, raw: bytes, content_type: str | None, where: str, algorithm: str = "sha256") -> "Manifest":
        """`algorithm`: the one the manifest is addressed by (its digest is computed with it)."""
        if len(raw) > MAX_MANIFEST_BYTES:
            raise VerificationError(f"{where}: manifest larger than {MAX_MANIFEST_BYTES} bytes")
        try:
            doc = json.loads(raw)
        except (ValueError, UnicodeDecodeError):
            raise VerificationError(f"{where}: manifest is not JSON") from None
        if not isinstance(doc, dict):
            raise VerificationError(f"{where}: manifest is not a JSON object")
        media_type = doc.get("mediaType") or (content_type or "").split(";")[0].strip()
        if media_type not in MANIFEST_TYPES:
            # An OCI manifest may omit mediaType; its shape tells it apart from an index.
            media_type = OCI_INDEX if "manifests" in doc else OCI_MANIFEST if "layers" in doc else media_type
        if media_type not in MANIFEST_TYPES:
            raise VerificationError(f"{where}: unsupported manifest media type '{media_type or 'unknown'}'")
        return cls(raw, media_type, digest_of(raw, algorithm), doc)

    @property
    def is_index(self) -> bool:
        return self.media_type in INDEX_TYPES

    @property
    def where(self) -> str:
        return self.digest

    def children(self) -> list[Descriptor]:
        """The manifests an index lists (empty for an image)."""
        if not self.is_index:
            return []
        entries = self.doc.get("manifests")
        if not isinstance(entries, list):
            raise VerificationError(f"{self.digest}: index without a manifests list")
        return [Descriptor.parse(entry, self.digest) for entry in entries]

    def blobs(self) -> list[Descriptor]:
        """Config then layers of an image manifest (empty for an index)."""
        if self.is_index:
            return []
        config, layers = self.doc.get("config"), self.doc.get("layers")
        if not isinstance(config, dict) or not isinstance(layers, list):
            raise VerificationError(f"{self.digest}: image manifest without config or layers")
        return [Descriptor.parse(config, self.digest)] + [Descriptor.parse(x, self.digest) for x in layers]

    @property
    def config(self) -> Descriptor:
        if self.is_index:
            raise VerificationError(f"{self.digest}: an index has no config")
        return self.blobs()[0]


def filter_index(index: Manifest, platforms: list[str]) -> Manifest:
    """A new, smaller index holding only the wanted platforms (its digest differs from the source),
    and the attestation manifests (SBOM, provenance) of the images it keeps."""
    wanted = set(platforms)
    entries = index.doc.get("manifests") or []
    children = index.children()  # each entry parsed and checked, in the same order
    chosen = [bool(child.runnable and child.platform and platform_matches(child.platform, wanted))
              for child in children]
    images = {child.digest for child, keep in zip(children, chosen) if keep}
    if not images:
        nested = any(d.media_type in INDEX_TYPES for d in children)
        have = [d.platform or ("a nested index" if d.media_type in INDEX_TYPES else "?")
                for d in children if d.runnable]
        raise VerificationError(f"no manifest for platforms {', '.join(platforms)} "
                                f"(index has: {', '.join(have) or 'none'})"
                                + (" (platforms: filters a top-level index only)" if nested else ""))
    kept = [entry for entry, child, keep in zip(entries, children, chosen)
            if keep or (child.attestation_of and child.attestation_of in images)]
    doc = dict(index.doc, manifests=kept)
    raw = json.dumps(doc, indent=3).encode()
    return Manifest(raw, index.media_type, digest_of(raw), doc)


def platform_matches(platform: str, wanted: set[str]) -> bool:
    # "linux/arm64" in a policy also accepts "linux/arm64/v8" as registries often spell it.
    return platform in wanted or "/".join(platform.split("/")[:2]) in wanted
