"""P11: the vulnerability gate on P1's image size, made of real tar+gzip layers (a Debian-like base
with os-release and a dpkg status, then layers of files), synced with and without the gate.

The layers' package databases are read from the copy's own stream (docs/vulnerabilities.md), so the
gate's cost is the decompression and tar walk of every layer, on a second thread beside the copy."""

from __future__ import annotations

import base64
import gzip
import hashlib
import io
import json
import os
import shutil
import subprocess
import tarfile
from pathlib import Path

OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
FILE = 4 << 20


class _Digesting(io.RawIOBase):
    def __init__(self, out):
        self.out, self.hash, self.size = out, hashlib.sha256(), 0

    def writable(self):
        return True

    def write(self, data):
        self.out.write(data)
        self.hash.update(data)
        self.size += len(data)
        return len(data)


def _layer(layout: Path, size: int, extra: dict[str, bytes] | None = None) -> dict:
    """A tar+gzip layer of about `size` compressed bytes: files of base64 text (compresses to ~3/4)."""
    tmp = layout / "blobs" / "sha256" / "incoming"
    with tmp.open("wb") as raw:
        sink = _Digesting(raw)
        with gzip.GzipFile(fileobj=sink, mode="wb", compresslevel=1, mtime=0) as zipped:
            with tarfile.open(fileobj=zipped, mode="w|", format=tarfile.PAX_FORMAT) as tar:
                for name, data in (extra or {}).items():
                    info = tarfile.TarInfo(name)
                    info.size = len(data)
                    tar.addfile(info, io.BytesIO(data))
                n = 0
                while sink.size < size:
                    data = base64.b64encode(os.urandom(FILE * 3 // 4))
                    info = tarfile.TarInfo(f"usr/share/bench/{n:06d}.txt")
                    info.size = len(data)
                    tar.addfile(info, io.BytesIO(data))
                    n += 1
    digest = sink.hash.hexdigest()
    tmp.rename(tmp.with_name(digest))
    return {"mediaType": LAYER, "digest": "sha256:" + digest, "size": sink.size}


def debian_like_image(layout: Path, tag: str, total: int) -> None:
    (layout / "blobs" / "sha256").mkdir(parents=True, exist_ok=True)
    (layout / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')
    status = b"".join(f"Package: pkg{n}\nStatus: install ok installed\nVersion: 1.{n}-1\n\n".encode() for n in range(300))
    base = _layer(layout, total // 4, {"etc/os-release": b'ID=debian\nVERSION_ID="12"\n', "var/lib/dpkg/status": status})
    entries = []
    for arch in ("amd64", "arm64"):
        layers = [base] + [_layer(layout, total * 3 // 16) for _ in range(2)]
        config = json.dumps({"architecture": arch, "os": "linux", "rootfs": {"type": "layers", "diff_ids": []}}).encode()
        config_digest = hashlib.sha256(config).hexdigest()
        (layout / "blobs" / "sha256" / config_digest).write_bytes(config)
        manifest = json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "layers": layers, "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json", "digest": "sha256:" + config_digest,
            "size": len(config)}}).encode()
        digest = hashlib.sha256(manifest).hexdigest()
        (layout / "blobs" / "sha256" / digest).write_bytes(manifest)
        entries.append({"mediaType": OCI_MANIFEST, "digest": "sha256:" + digest, "size": len(manifest),
                        "platform": {"os": "linux", "architecture": arch}})
    index = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": entries}).encode()
    digest = hashlib.sha256(index).hexdigest()
    (layout / "blobs" / "sha256" / digest).write_bytes(index)
    (layout / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": [
        {"mediaType": OCI_INDEX, "digest": "sha256:" + digest, "size": len(index),
         "annotations": {"org.opencontainers.image.ref.name": tag}}]}))


def p11_image_scan(work: Path, size: int, regsync, fresh, with_server_cpu, start_registry, two_registries) -> dict:
    from tests.fixtures.osv import build_osv_db

    source = start_registry(work / "p11-src")
    layout = work / "p11-layout"
    debian_like_image(layout, "big", size)
    subprocess.run(["skopeo", "copy", "-q", "--all", "--preserve-digests", "--dest-tls-verify=false",
                    f"oci:{layout}:big", f"docker://{source.host}/bench/debian:12"], check=True)
    shutil.rmtree(layout)
    db = build_osv_db(work / "osv")
    gates = {"without the gate": "", "with the gate": "    gates: {vulnerabilities: {max_severity: high}}\n"
                                                      f"vulnerabilities: {{db: {db}, max_age: 1000w}}\n"}
    # Two placements. "shared": both registries and regsync on both cores, as in P1; on this 2-core
    # machine the registries' own CPU (about 6 s for 1 GB) leaves no free core for the scan.
    # "apart": the registries pinned to one core and regsync to the other, as when the source and
    # the target are other hosts (TUNA, Harbor) and regsync's machine is its own.
    runs: dict[str, dict[str, list[dict]]] = {}
    for placement in ("shared", "apart"):
        runs[placement] = _rounds(work, source, gates, placement, regsync, fresh, with_server_cpu, two_registries)
    source.stop()
    best = {placement: {name: min(found, key=lambda r: r["seconds"]) for name, found in by_gate.items()}
            for placement, by_gate in runs.items()}
    apart = best["apart"]
    return {"id": "P11", "work": f"vulnerability gate on a {size / 1e9:.2f} GB two-arch image of tar+gzip layers "
                                 f"(ratio: with / without the gate, the faster of two runs each; registries and "
                                 f"regsync sharing both cores)", "regsync": best["shared"]["with the gate"],
            "peers": {"regsync without the gate": best["shared"]["without the gate"]},
            "apart": {"work": "the same, registries pinned to core 1 and regsync to core 0",
                      "with the gate": apart["with the gate"], "without the gate": apart["without the gate"],
                      "ratio": round(apart["with the gate"]["seconds"] / apart["without the gate"]["seconds"], 2)},
            "runs": runs}


def _rounds(work, source, gates, placement, regsync, fresh, with_server_cpu, two_registries) -> dict[str, list[dict]]:
    """Two rounds in turn (without, with; with, without) so that a load that rises or falls during
    the row weighs on both sides; each run notes the 1-minute load average before it starts."""
    runs: dict[str, list[dict]] = {name: [] for name in gates}
    everywhere = os.sched_getaffinity(0)
    for order in (list(gates), list(gates)[::-1]):
        for name in order:
            target = fresh(work, "p11-dst")
            policy = two_registries(source.url, target.url, "bench/debian", "bench/debian", ["12"]) + gates[name]
            load = round(os.getloadavg()[0], 2)
            if placement == "apart":
                for registry in (source, target):
                    _pin(registry.process.pid, {1})
                os.sched_setaffinity(0, {0})   # regsync, started by this process, inherits it
            try:
                measured = with_server_cpu(target, lambda: regsync(work, policy, "sync"))
            finally:
                os.sched_setaffinity(0, everywhere)
                _pin(source.process.pid, everywhere)
            runs[name].append({**measured, "load_1m": load})
            target.stop()
    return runs


def _pin(pid: int, cpus: set[int]) -> None:
    """Every thread of a process (Go's registry runs many; a new one inherits its creator's set)."""
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            os.sched_setaffinity(int(task.name), cpus)
        except ProcessLookupError:   # a thread that ended meanwhile
            pass
