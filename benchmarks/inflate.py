"""P11's floor: what inflating a tar+gzip layer costs with each inflater this machine has, beside
what regsync's layer scan costs on the same layer (`python -m benchmarks.inflate [MB]`).

The gate must read every layer's tar headers, and a gzip stream has no index: every byte is
inflated. If the scan costs what the fastest inflater costs, the scan has nothing left to cut
and the rest of P11's ratio is the machine's cores. zlib-ng (`zlib-ng`), libdeflate (`deflate`,
whole buffers only, so not usable for a stream) and rapidgzip are timed when installed
(`pip install zlib-ng deflate rapidgzip`); regsync uses none of them.
"""

from __future__ import annotations

import sys
import tempfile
import time
import zlib
from pathlib import Path

from benchmarks.vulns import _layer
from regsync.vulns.layers import LayerCapture, read_layer

CHUNK = 1 << 20


def _chunks(path: Path):
    with path.open("rb") as handle:
        while chunk := handle.read(CHUNK):
            yield chunk


def _inflaters(path: Path) -> dict:
    found = {"zlib (standard library)": lambda: _stream(zlib.decompressobj(31), path)}
    try:
        from isal import isal_zlib
        found["ISA-L (isal), regsync's"] = lambda: _stream(isal_zlib.decompressobj(31), path)
    except ImportError:
        pass
    try:
        from zlib_ng import zlib_ng
        found["zlib-ng"] = lambda: _stream(zlib_ng.decompressobj(31), path)
    except ImportError:
        pass
    try:
        import deflate
        found["libdeflate (whole buffer)"] = lambda: len(deflate.gzip_decompress(path.read_bytes()))
    except ImportError:
        pass
    try:
        import rapidgzip

        def one_thread() -> int:
            with rapidgzip.open(str(path), parallelization=1) as handle:
                return sum(len(chunk) for chunk in iter(lambda: handle.read(CHUNK), b""))
        found["rapidgzip, one thread"] = one_thread
    except ImportError:
        pass
    return found


def _stream(inflater, path: Path) -> int:
    return sum(len(inflater.decompress(chunk)) for chunk in _chunks(path))


def _scan_as_the_copy_feeds_it(path: Path) -> int:
    capture = LayerCapture("gzip")
    for chunk in _chunks(path):
        capture.feed(chunk)
    capture.close()
    return 0


def _scan_from_the_file(path: Path) -> int:
    with path.open("rb") as handle:
        read_layer(handle)
    return 0


def main(size_mb: int) -> None:
    with tempfile.TemporaryDirectory(prefix="regsync-inflate-") as work:
        layout = Path(work)
        (layout / "blobs" / "sha256").mkdir(parents=True)
        layer = _layer(layout, size_mb * 1_000_000)
        path = layout / "blobs" / "sha256" / layer["digest"].removeprefix("sha256:")
        runs = {**_inflaters(path), "regsync read_layer (inflate + tar walk)": lambda: _scan_from_the_file(path),
                "regsync LayerCapture (as the copy feeds it)": lambda: _scan_as_the_copy_feeds_it(path)}
        print(f"| {layer['size'] / 1e6:.0f} MB tar+gzip layer | CPU s (best of 3) | wall s |\n|---|---|---|")
        for name, run in runs.items():
            best = min((_timed(run) for _ in range(3)), key=lambda t: t[0])
            print(f"| {name} | {best[0]:.2f} | {best[1]:.2f} |")


def _timed(run) -> tuple[float, float]:
    cpu, wall = time.process_time(), time.perf_counter()
    run()
    return time.process_time() - cpu, time.perf_counter() - wall


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 200)
