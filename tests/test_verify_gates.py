"""Gates refuse images by what they are (size, CUDA, labels, platforms), through `regsync sync`
against real docker-registry servers; what passes still syncs in the same run."""

import json

import pytest

from tests.fixtures.cosign import manifest_digest, push_image
from tests.test_verify_signatures import audit, by_tag, run, write_policy


def gated(tmp_path, registry, registry2, repo, tags, gates, platforms=""):
    rule = f"    gates: {gates}\n" + (f"    platforms: {platforms}\n" if platforms else "")
    return write_policy(tmp_path, registry, registry2, repo, repo, {"include": tags}, rule)


def test_cuda_max_reads_env_then_label_then_tag(tmp_path, registry, registry2, unique_repo):
    push_image(registry, unique_repo, "env-ok", env=["CUDA_VERSION=11.8.89"])
    push_image(registry, unique_repo, "env-new", env=["CUDA_VERSION=12.1.0", "PATH=/usr/bin"])
    push_image(registry, unique_repo, "label-new", labels={"com.nvidia.cuda.version": "12.4"})
    push_image(registry, unique_repo, "2.9-cuda12.1-ubuntu22.04")
    ok_by_tag, _ = push_image(registry, unique_repo, "2.9-cuda11.7-ubuntu20.04")
    no_cuda, _ = push_image(registry, unique_repo, "cpu-only")
    tags = ["env-ok", "env-new", "label-new", "2.9-cuda12.1-ubuntu22.04", "2.9-cuda11.7-ubuntu20.04", "cpu-only"]
    policy = gated(tmp_path, registry, registry2, unique_repo, tags, '{cuda_max: "11.8"}')
    assert run("sync", "-p", policy).exit_code == 3
    refused = {tag: r["reason"] for tag, r in by_tag(audit(tmp_path, "refused")).items()}
    assert refused == {
        "env-new": "gate cuda_max: linux/amd64 needs CUDA 12.1.0 (from env CUDA_VERSION), above the fleet's maximum 11.8",
        "label-new": "gate cuda_max: linux/amd64 needs CUDA 12.4 (from label com.nvidia.cuda.version), "
                     "above the fleet's maximum 11.8",
        "2.9-cuda12.1-ubuntu22.04": "gate cuda_max: linux/amd64 needs CUDA 12.1 (from tag 2.9-cuda12.1-ubuntu22.04), "
                                    "above the fleet's maximum 11.8"}
    pushed = by_tag(audit(tmp_path, "pushed"))
    assert set(pushed) == {"env-ok", "2.9-cuda11.7-ubuntu20.04", "cpu-only"}
    assert pushed["env-ok"]["verification"]["gates"]["cuda"] == {"linux/amd64": "11.8.89 (env CUDA_VERSION)"}
    assert pushed["cpu-only"]["verification"]["gates"]["cuda"] == {"linux/amd64": "none"}
    assert manifest_digest(registry2, unique_repo, "2.9-cuda11.7-ubuntu20.04") == ok_by_tag
    assert manifest_digest(registry2, unique_repo, "cpu-only") == no_cuda


def test_max_size_is_per_platform_compressed_layers(tmp_path, registry, registry2, unique_repo):
    push_image(registry, unique_repo, "small", layer_size=4000)
    push_image(registry, unique_repo, "big", platforms=("linux/amd64", "linux/arm64"), layer_size=6000)
    policy = gated(tmp_path, registry, registry2, unique_repo, ["small", "big"], "{max_size: 5KB}")
    planned = {i["source"].rsplit(":", 1)[1]: i for i in json.loads(run("plan", "-p", policy, "--json").output)["items"]}
    assert planned["small"]["action"] == "copy"
    assert planned["small"]["verification"]["gates"]["max_size"] == {"linux/amd64": 4000}
    assert planned["big"]["action"] == "refuse"
    assert planned["big"]["reason"] == ("gate max_size: linux/amd64 is 5.9 KiB compressed (6000 bytes), "
                                        "above the limit of 4.9 KiB (5000 bytes)")


def test_platforms_required_and_labels(tmp_path, registry, registry2, unique_repo):
    push_image(registry, unique_repo, "arm-only", platforms=("linux/arm64",), labels={"org.opencontainers.image.vendor": "NVIDIA"})
    push_image(registry, unique_repo, "unlabelled", platforms=("linux/amd64", "linux/arm64"))
    push_image(registry, unique_repo, "wrong-vendor", labels={"org.opencontainers.image.vendor": "Someone"})
    good, _ = push_image(registry, unique_repo, "good", platforms=("linux/amd64", "linux/arm64"),
                         labels={"org.opencontainers.image.vendor": "NVIDIA"})
    gates = '{platforms_required: [linux/amd64], require_labels: {"org.opencontainers.image.vendor": NVIDIA}}'
    policy = gated(tmp_path, registry, registry2, unique_repo, ["arm-only", "unlabelled", "wrong-vendor", "good"], gates)
    assert run("sync", "-p", policy).exit_code == 3
    refused = {tag: r["reason"] for tag, r in by_tag(audit(tmp_path, "refused")).items()}
    assert refused == {
        "arm-only": "gate platforms_required: linux/amd64 missing (image has: linux/arm64)",
        "unlabelled": "gate require_labels: linux/amd64 has no label org.opencontainers.image.vendor",
        "wrong-vendor": "gate require_labels: linux/amd64 has org.opencontainers.image.vendor='Someone', "
                        "the policy requires 'NVIDIA'"}
    assert manifest_digest(registry2, unique_repo, "good") == good


def test_gates_apply_to_the_platform_filtered_index(tmp_path, registry, registry2, unique_repo):
    push_image(registry, unique_repo, "multi", platforms=("linux/amd64", "linux/arm64"), layer_size=3000)
    policy = gated(tmp_path, registry, registry2, unique_repo, ["multi"],
                   "{platforms_required: [linux/arm64]}", platforms="[linux/amd64]")
    [item] = json.loads(run("plan", "-p", policy, "--json").output)["items"]
    assert (item["action"], item["reason"]) == (
        "refuse", "gate platforms_required: linux/arm64 missing (image has: linux/amd64)")


@pytest.mark.parametrize("value", ["'12GiB'", "1000000"])
def test_max_size_accepts_units_and_bytes(tmp_path, registry, registry2, unique_repo, value):
    push_image(registry, unique_repo, "v1")
    policy = gated(tmp_path, registry, registry2, unique_repo, ["v1"], f"{{max_size: {value}}}")
    [item] = json.loads(run("plan", "-p", policy, "--json").output)["items"]
    assert item["action"] == "copy" and item["verification"]["gates"]["max_size"] == {"linux/amd64": 1000}
