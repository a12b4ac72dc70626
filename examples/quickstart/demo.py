"""The quickstart: real local servers, synthetic images and wheels, then regsync for real.

The whole mission in one run: images (multi-arch, platform-filtered), a wheel closure into a
pypiserver started with its shipped defaults, a signed image copied and an unsigned one refused
under `signature: required`, and the audit trail rendered as an HTML report.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from tests.fixtures.cosign import make_key, push_image, sign, write_public_key
from tests.fixtures.oci_layout import digest_of, inspect_raw, seed, write_image
from tests.fixtures.pypi import SimpleIndex, build_wheel, start_pypiserver
from tests.fixtures.registries import start_registry

HERE = Path(__file__).parent
POLICY = HERE / "policy.yaml"
CUDA_TAGS = ["2.9-cuda11.8-ubuntu20.04", "2.9-cuda12.1-ubuntu22.04", "2.9-cuda12.1-rc1"]
PYTHON_TAGS = ["3.10.14", "3.11.9", "3.12.4", "3.13.0"]
WHEELS = [("demo-trainer", "2.0", ("demo-tensors>=1.1", "demo-utils")), ("demo-trainer", "1.0", ()),
          ("demo-tensors", "1.0", ()), ("demo-tensors", "1.2", ("demo-utils",)), ("demo-utils", "0.3", ())]


def step(title: str, *args: str) -> int:
    print(f"\n\033[1m$ regsync {' '.join(args)}\033[0m   # {title}", flush=True)
    return subprocess.call([sys.executable, "-m", "regsync", *args])


def main() -> int:
    work = Path(tempfile.mkdtemp(prefix="regsync-demo-"))
    source = start_registry(work / "source")
    target = start_registry(work / "target")
    pypi = SimpleIndex.serving(build_wheel(work / "wheels", name, version, requires=requires)
                               for name, version, requires in WHEELS)
    internal_pypi = start_pypiserver(work / "pypiserver")  # its defaults, as users run it
    try:
        print(f"source registry (plays TUNA): {source.url}\ntarget registry (plays Harbor): {target.url}\n"
              f"source index (plays TUNA's PyPI mirror): {pypi.url}\ninternal index (pypiserver): {internal_pypi.simple}")
        layout = work / "layout"
        for n, tag in enumerate(CUDA_TAGS):
            write_image(layout, tag, shared_base=b"ubuntu-base" * 4096, env=["CUDA_VERSION=" + tag.split("cuda")[1][:4]],
                        layer_size=512 * 1024, seed=n)
            seed(source, "pytorch/cuda", tag, layout)
        for n, tag in enumerate(PYTHON_TAGS):
            write_image(layout, tag, shared_base=b"debian-base" * 4096, seed=100 + n)
            seed(source, "library/python", tag, layout)
        vendor = make_key()
        signed, _ = push_image(source, "vendor/inference", "1.0", layer_size=64 * 1024)
        sign(source, "vendor/inference", signed, vendor)
        push_image(source, "vendor/inference", "1.1", layer_size=64 * 1024, salt="unsigned")
        os.environ.update(DEMO_SOURCE_URL=source.url, DEMO_TARGET_URL=target.url, DEMO_PYPI_URL=pypi.url,
                          DEMO_PYPISERVER_URL=internal_pypi.url, DEMO_PYPISERVER_PASSWORD=internal_pypi.password,
                          DEMO_VENDOR_PUB=str(work / "vendor.pub"))
        write_public_key(vendor, work / "vendor.pub")
        os.chdir(work)
        step("validate the policy", "policy", "check", "-p", str(POLICY))
        step("what would move (read-only)", "plan", "-p", str(POLICY))
        audit = ["--audit-file", str(work / "audit.jsonl")]
        code = step("copy, verify, push, audit (1.1 is unsigned: refused, exit 3)", "sync", "-p", str(POLICY), *audit)
        again = step("again: nothing changed, nothing is written", "sync", "-p", str(POLICY), *audit)
        report = work / "audit-report.html"
        step("the audit trail as a report a security team can read", "audit", "report", str(work / "audit.jsonl"),
             "--html", str(report))
        ref = "ai-base/pytorch-cuda:2.9-cuda11.8-ubuntu20.04"
        same = digest_of(inspect_raw(source, "pytorch/cuda:2.9-cuda11.8-ubuntu20.04")) == digest_of(inspect_raw(target, ref))
        print(f"\nskopeo inspect --raw: source and target digests {'match' if same else 'DIFFER'} for {ref}")
        print(f"audit trail: {work / 'audit.jsonl'} ({len((work / 'audit.jsonl').read_text().splitlines())} records)")
        print(f"audit report: {report}")
        # exit 3 is the expected outcome of both syncs: the unsigned image is refused, the rest lands
        return 0 if same and code == again == 3 and report.exists() else 1
    finally:
        source.stop()
        target.stop()
        pypi.stop()
        internal_pypi.stop()
        shutil.rmtree(work / "layout", ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
