"""Synthetic wheels for P5: a dependency tree of real, installable wheels whose payload is random
(incompressible, so a "4 MB wheel" moves 4 MB), and a static PEP 503 tree with PEP 658 metadata
files for nginx to serve. Each project also lists files that must *not* be picked (an older
version and a Windows wheel), so both tools select as well as download."""

from __future__ import annotations

import hashlib
import html
import os
import random
import shutil
import zipfile
from dataclasses import dataclass
from pathlib import Path

PLATFORM_TAG = "cp311-cp311-manylinux_2_17_x86_64"
OTHER_TAG = "cp311-cp311-win_amd64"


@dataclass
class Built:
    path: Path
    project: str
    picked: bool  # the file pip and regsync should both fetch for the benchmark's environment


def build_wheel(folder: Path, name: str, version: str, tag: str, requires: list[str], size: int) -> Path:
    """A wheel with `size` random bytes stored uncompressed, written in 1 MiB pieces (never whole in memory)."""
    dist = name.replace("-", "_")
    info = f"{dist}-{version}.dist-info"
    metadata = "\n".join(["Metadata-Version: 2.1", f"Name: {name}", f"Version: {version}",
                          "Requires-Python: >=3.9", *[f"Requires-Dist: {r}" for r in requires]]) + "\n"
    wheel_file = f"Wheel-Version: 1.0\nGenerator: regsync-benchmarks\nRoot-Is-Purelib: false\nTag: {tag}\n"
    path = folder / f"{dist}-{version}-{tag}.whl"
    folder.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w") as wheel:
        wheel.writestr(zipfile.ZipInfo(f"{dist}/__init__.py", (2020, 1, 1, 0, 0, 0)), b"")
        entry = zipfile.ZipInfo(f"{dist}/_payload.bin", (2020, 1, 1, 0, 0, 0))
        entry.file_size = size
        with wheel.open(entry, "w", force_zip64=size > 2**31) as out:
            left = size
            while left:
                piece = os.urandom(min(left, 1 << 20))
                out.write(piece)
                left -= len(piece)
        wheel.writestr(zipfile.ZipInfo(f"{info}/METADATA", (2020, 1, 1, 0, 0, 0)), metadata)
        wheel.writestr(zipfile.ZipInfo(f"{info}/WHEEL", (2020, 1, 1, 0, 0, 0)), wheel_file)
        wheel.writestr(zipfile.ZipInfo(f"{info}/RECORD", (2020, 1, 1, 0, 0, 0)),
                       f"{dist}/__init__.py,,\n{dist}/_payload.bin,,\n{info}/METADATA,,\n{info}/WHEEL,,\n{info}/RECORD,,\n")
    return path


def closure(folder: Path, count: int, scale: float = 1.0, seed: int = 5) -> list[Built]:
    """`count` projects in a tree (project n requires 2n+1 and 2n+2, and every fifth one also
    requires the shared leaf), sizes from 20 kB to 6 MB times `scale`, most small, a few large."""
    rng = random.Random(seed)
    names = [f"bench-pkg{n:03d}" for n in range(count)]
    built = []
    for n, name in enumerate(names):
        children = [names[c] for c in (2 * n + 1, 2 * n + 2) if c < count]
        if n % 5 == 4 and n != count - 1:
            children.append(names[-1])
        requires = [f"{child}>=1.0" for child in children]
        size = int(rng.choice([20_000, 60_000, 150_000, 400_000, 900_000, 2_500_000, 6_000_000]) * scale)
        built.append(Built(build_wheel(folder, name, "1.1.0", PLATFORM_TAG, requires, size), name, True))
        # what neither tool should fetch: an older release, and the same release for Windows
        built.append(Built(build_wheel(folder, name, "1.0.0", PLATFORM_TAG, requires, 4_000), name, False))
        built.append(Built(build_wheel(folder, name, "1.1.0", OTHER_TAG, requires, 4_000), name, False))
    return built


def write_tree(tree: Path, wheels: list[Built]) -> None:
    """`tree/simple/<project>/index.html` (PEP 503, #sha256, PEP 658/714 attributes) and
    `tree/files/<wheel>` with its `.metadata` beside it."""
    files = tree / "files"
    files.mkdir(parents=True, exist_ok=True)
    pages: dict[str, list[str]] = {}
    for built in wheels:
        target = files / built.path.name
        shutil.copyfile(built.path, target)
        with zipfile.ZipFile(target) as archive:
            metadata = archive.read(next(n for n in archive.namelist() if n.endswith(".dist-info/METADATA")))
        (files / f"{target.name}.metadata").write_bytes(metadata)
        meta_sha = hashlib.sha256(metadata).hexdigest()
        pages.setdefault(built.project, []).append(
            f'<a href="../../files/{html.escape(target.name)}#sha256={_sha256(target)}" '
            f'data-requires-python="&gt;=3.9" data-dist-info-metadata="sha256={meta_sha}" '
            f'data-core-metadata="sha256={meta_sha}">{html.escape(target.name)}</a><br>')
    for project, links in pages.items():
        page = tree / "simple" / project
        page.mkdir(parents=True, exist_ok=True)
        (page / "index.html").write_text("<!DOCTYPE html><html><body>\n" + "\n".join(links) + "\n</body></html>\n")
    (tree / "simple" / "index.html").write_text("<!DOCTYPE html><html><body>\n" + "\n".join(
        f'<a href="{p}/">{p}</a><br>' for p in sorted(pages)) + "\n</body></html>\n")


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for piece in iter(lambda: handle.read(1 << 20), b""):
            digest.update(piece)
    return digest.hexdigest()


ECHO_MODULE = Path("/usr/lib/nginx/modules/ngx_http_echo_module.so")  # Debian's libnginx-mod-http-echo


class TreeServer:
    """nginx serving a static tree, optionally `latency_ms` late on every request (the echo module's
    `echo_sleep`, then the file as usual: Range, sendfile and keep-alive unchanged), so a run can
    model an index a network away as well as one on the same machine."""

    def __init__(self, workdir: Path, tree: Path, latency_ms: int = 0):
        import socket
        import subprocess
        import time

        import requests

        workdir.mkdir(parents=True, exist_ok=True)
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        if latency_ms and not ECHO_MODULE.exists():
            raise RuntimeError(f"latency needs {ECHO_MODULE} (apt-get install libnginx-mod-http-echo)")
        first = f"echo_sleep {latency_ms / 1000:.3f}; echo_exec @file;" if latency_ms else "try_files $uri $uri/index.html =404;"
        conf = workdir / "nginx.conf"
        conf.write_text(f"""{f"load_module {ECHO_MODULE};" if latency_ms else ""}
worker_processes 1;
user root;  # workers read files under 0700 temp dirs
pid {workdir}/nginx.pid;
error_log {workdir}/error.log warn;
daemon off;
events {{ worker_connections 256; }}
http {{
  access_log off;
  client_body_temp_path {workdir}/body;
  proxy_temp_path {workdir}/proxy;
  fastcgi_temp_path {workdir}/fastcgi;
  uwsgi_temp_path {workdir}/uwsgi;
  scgi_temp_path {workdir}/scgi;
  sendfile on;
  server {{
    listen 127.0.0.1:{port};
    root {tree};
    default_type application/octet-stream;
    types {{ text/html html; }}
    location / {{ {first} }}
    location @file {{ try_files $uri $uri/index.html =404; }}
  }}
}}
""")
        log = (workdir / "stderr.log").open("ab")
        self.process = subprocess.Popen(["nginx", "-p", str(workdir), "-c", str(conf)], stdout=log, stderr=log,
                                        stdin=subprocess.DEVNULL)
        self.url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 15
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"nginx exited: {(workdir / 'error.log').read_text()[-1500:]}")
            try:
                requests.get(self.url + "/simple/", timeout=1)
                return
            except requests.RequestException:
                if time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError("nginx did not answer within 15 s") from None
                time.sleep(0.1)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)
