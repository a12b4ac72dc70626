"""The quickstart: real local registries, a synthetic pytorch/cuda image, then regsync for real."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from tests.fixtures.oci_layout import digest_of, inspect_raw, seed, write_image
from tests.fixtures.registries import start_registry

HERE = Path(__file__).parent
POLICY = HERE / "policy.yaml"
CUDA_TAGS = ["2.9-cuda11.8-ubuntu20.04", "2.9-cuda12.1-ubuntu22.04", "2.9-cuda12.1-rc1"]
PYTHON_TAGS = ["3.10.14", "3.11.9", "3.12.4", "3.13.0"]


def step(title: str, *args: str) -> int:
    print(f"\n\033[1m$ regsync {' '.join(args)}\033[0m   # {title}", flush=True)
    return subprocess.call([sys.executable, "-m", "regsync", *args])


def main() -> int:
    work = Path(tempfile.mkdtemp(prefix="regsync-demo-"))
    source = start_registry(work / "source")
    target = start_registry(work / "target")
    try:
        print(f"source registry (plays TUNA): {source.url}\ntarget registry (plays Harbor): {target.url}")
        layout = work / "layout"
        for n, tag in enumerate(CUDA_TAGS):
            write_image(layout, tag, shared_base=b"ubuntu-base" * 4096, env=["CUDA_VERSION=" + tag.split("cuda")[1][:4]],
                        layer_size=512 * 1024, seed=n)
            seed(source, "pytorch/cuda", tag, layout)
        for n, tag in enumerate(PYTHON_TAGS):
            write_image(layout, tag, shared_base=b"debian-base" * 4096, seed=100 + n)
            seed(source, "library/python", tag, layout)
        os.environ.update(DEMO_SOURCE_URL=source.url, DEMO_TARGET_URL=target.url)
        os.chdir(work)
        step("validate the policy", "policy", "check", "-p", str(POLICY))
        step("what would move (read-only)", "plan", "-p", str(POLICY))
        audit = ["--audit-file", str(work / "audit.jsonl")]
        code = step("copy, verify, push, audit", "sync", "-p", str(POLICY), *audit)
        step("again: nothing changed, nothing is written", "sync", "-p", str(POLICY), *audit)
        ref = "ai-base/pytorch-cuda:2.9-cuda11.8-ubuntu20.04"
        same = digest_of(inspect_raw(source, "pytorch/cuda:2.9-cuda11.8-ubuntu20.04")) == digest_of(inspect_raw(target, ref))
        print(f"\nskopeo inspect --raw: source and target digests {'match' if same else 'DIFFER'} for {ref}")
        print(f"audit trail: {work / 'audit.jsonl'} ({len((work / 'audit.jsonl').read_text().splitlines())} records)")
        return code if same else 1
    finally:
        source.stop()
        target.stop()
        shutil.rmtree(work / "layout", ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
