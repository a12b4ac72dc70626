"""Synthetic images for benchmarks: big layers streamed to disk (never held in memory), and many
small tags PUT straight into a registry (seeding thousands of tags with skopeo takes minutes)."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import requests

OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"  # registries never look inside; raw random bytes do


def _blob_file(layout: Path, size: int) -> dict:
    digest, tmp = hashlib.sha256(), layout / "blobs" / "sha256" / "incoming"
    with tmp.open("wb") as out:
        left = size
        while left:
            chunk = os.urandom(min(left, 8 << 20))
            out.write(chunk)
            digest.update(chunk)
            left -= len(chunk)
    tmp.rename(tmp.with_name(digest.hexdigest()))
    return {"mediaType": LAYER, "digest": "sha256:" + digest.hexdigest(), "size": size}


def _blob(layout: Path, data: bytes) -> dict:
    digest = hashlib.sha256(data).hexdigest()
    (layout / "blobs" / "sha256" / digest).write_bytes(data)
    return {"digest": "sha256:" + digest, "size": len(data)}


def big_image_layout(layout: Path, tag: str, total: int, layers_per_arch: int = 2) -> None:
    """A two-arch image of about `total` bytes: a shared base (a quarter) and per-arch layers."""
    (layout / "blobs" / "sha256").mkdir(parents=True, exist_ok=True)
    (layout / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')
    base = _blob_file(layout, total // 4)
    entries = []
    for arch in ("amd64", "arm64"):
        layers = [base] + [_blob_file(layout, total * 3 // 8 // layers_per_arch) for _ in range(layers_per_arch)]
        config = _blob(layout, json.dumps({"architecture": arch, "os": "linux", "rootfs": {
            "type": "layers", "diff_ids": [x["digest"] for x in layers]}}).encode())
        manifest = {"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                    "config": {"mediaType": "application/vnd.oci.image.config.v1+json", **config}, "layers": layers}
        entries.append({"mediaType": OCI_MANIFEST, "platform": {"os": "linux", "architecture": arch},
                        **_blob(layout, json.dumps(manifest).encode())})
    index = _blob(layout, json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": entries}).encode())
    (layout / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": [
        {"mediaType": OCI_INDEX, **index, "annotations": {"org.opencontainers.image.ref.name": tag}}]}))


def push_many_tags(registry_url: str, repo: str, count: int, start: int = 0) -> None:
    """`count` small two-arch images sharing a base layer, each under its own tag."""
    session = requests.Session()
    base = os.urandom(64 * 1024)

    def blob(data: bytes) -> dict:
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        if session.head(f"{registry_url}/v2/{repo}/blobs/{digest}").status_code != 200:
            location = session.post(f"{registry_url}/v2/{repo}/blobs/uploads/").headers["Location"]
            sep = "&" if "?" in location else "?"
            session.put(f"{location}{sep}digest={digest}", data=data).raise_for_status()
        return {"digest": digest, "size": len(data)}

    def manifest(data: dict, reference: str | None = None) -> dict:
        raw = json.dumps(data).encode()
        reference = reference or "sha256:" + hashlib.sha256(raw).hexdigest()  # children go up by digest
        session.put(f"{registry_url}/v2/{repo}/manifests/{reference}", data=raw,
                    headers={"Content-Type": data["mediaType"]}).raise_for_status()
        return {"mediaType": data["mediaType"], "digest": "sha256:" + hashlib.sha256(raw).hexdigest(), "size": len(raw)}

    base_desc = {"mediaType": LAYER, **blob(base)}
    for n in range(start, start + count):
        entries = []
        for arch in ("amd64", "arm64"):
            layer = {"mediaType": LAYER, **blob(os.urandom(2048))}
            config = blob(json.dumps({"architecture": arch, "os": "linux", "n": n}).encode())
            child = manifest({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": {
                "mediaType": "application/vnd.oci.image.config.v1+json", **config}, "layers": [base_desc, layer]})
            entries.append({**child, "platform": {"os": "linux", "architecture": arch}})
        manifest({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": entries}, f"1.{n}.0")


def tag_manifest_many(registry_url: str, repo: str, source_tag: str, count: int) -> None:
    """The same manifest under `count` more tags: cheap, for plan-scaling runs."""
    session = requests.Session()
    accept = {"Accept": OCI_INDEX}
    response = session.get(f"{registry_url}/v2/{repo}/manifests/{source_tag}", headers=accept)
    response.raise_for_status()
    for n in range(count):
        session.put(f"{registry_url}/v2/{repo}/manifests/v{n}", data=response.content,
                    headers={"Content-Type": OCI_INDEX}).raise_for_status()


def one_layer_image_layout(layout: Path, tag: str, size: int) -> str:
    """A single-platform image whose one layer is `size` random bytes; returns the layer digest."""
    (layout / "blobs" / "sha256").mkdir(parents=True, exist_ok=True)
    (layout / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')
    layer = _blob_file(layout, size)
    config = _blob(layout, json.dumps({"architecture": "amd64", "os": "linux", "rootfs": {
        "type": "layers", "diff_ids": [layer["digest"]]}}).encode())
    manifest = {"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                "config": {"mediaType": "application/vnd.oci.image.config.v1+json", **config}, "layers": [layer]}
    entry = {"mediaType": OCI_MANIFEST, **_blob(layout, json.dumps(manifest).encode()),
             "annotations": {"org.opencontainers.image.ref.name": tag}}
    (layout / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": [entry]}))
    return layer["digest"]
