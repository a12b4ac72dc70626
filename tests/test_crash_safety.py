"""SIGKILL at any moment leaves no tag pointing at incomplete content, and a rerun converges."""

import os
import signal
import subprocess
import sys
import time
import zlib

import pytest
import requests

from tests.fixtures.faultproxy import FaultProxy
from tests.fixtures.policies import write_policy
from tests.fixtures.oci_layout import digest_of, inspect_raw, seed, write_image

TAGS = [f"2.9.{i}-cuda11.8" for i in range(5)]
REGSYNC = [sys.executable, "-m", "regsync", "--no-progress", "-q"]


@pytest.fixture
def many_images(registry, unique_repo, oci_dir):
    digests = {}
    for n, tag in enumerate(TAGS):
        info = write_image(oci_dir, tag, layer_size=1536 * 1024, shared_base=b"base" * 50_000,
                           seed=zlib.crc32(f"{unique_repo}{n}".encode()))
        seed(registry, unique_repo, tag, oci_dir)
        digests[tag] = info.index_digest
    return digests


def crash_policy(tmp_path, source, registry2, repo):
    return write_policy(tmp_path, source.url, registry2.url, repo, tags=["glob:2.9.*"],
                        dst_options=", upload: {monolithic_max: 512KiB, chunk_size: 512KiB}")


def target_tags(registry2, repo):
    response = requests.get(f"{registry2.url}/v2/{repo}/tags/list", timeout=10)
    return (response.json().get("tags") or []) if response.status_code == 200 else []


def assert_every_tag_complete(registry2, repo, tmp_path):
    for tag in target_tags(registry2, repo):
        out = tmp_path / f"pull-{tag}-{time.monotonic_ns()}"
        pulled = subprocess.run(["skopeo", "copy", "-q", "--all", *registry2.skopeo_tls_args("src"),
                                 f"docker://{registry2.host}/{repo}:{tag}", f"oci:{out}:{tag}"],
                                capture_output=True, text=True, timeout=120)
        assert pulled.returncode == 0, f"{tag} points at incomplete content: {pulled.stderr}"


def kill_when(process, predicate, limit=20.0):
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline and process.poll() is None:
        if predicate():
            break
        time.sleep(0.01)
    if process.poll() is None:
        os.kill(process.pid, signal.SIGKILL)
    process.wait(timeout=10)


def test_sigkill_at_many_points_then_rerun_converges(tmp_path, registry, registry2, unique_repo, many_images):
    policy = crash_policy(tmp_path, registry, registry2, unique_repo)
    started_at = {"t": 0.0}

    def after(seconds):
        return lambda: time.monotonic() - started_at["t"] >= seconds

    def after_writes(count, kind):
        mark = registry2.mark()
        return lambda: sum(1 for m, uri in registry2.writes_since(mark) if kind in uri) >= count

    kill_points = [after(0.3), after_writes(3, "/blobs/uploads/"), after_writes(1, "/manifests/sha256:"),
                   after(1.0), after_writes(4, "/manifests/sha256:"), after(2.0)]
    for point in kill_points:
        started_at["t"] = time.monotonic()
        process = subprocess.Popen([*REGSYNC, "sync", "-p", str(policy), "--jobs", "2"], cwd=tmp_path,
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        kill_when(process, point)
        assert_every_tag_complete(registry2, unique_repo, tmp_path)

    final = subprocess.run([*REGSYNC, "sync", "-p", str(policy)], cwd=tmp_path, capture_output=True, text=True,
                           timeout=120)
    assert final.returncode == 0, final.stderr
    assert sorted(target_tags(registry2, unique_repo)) == sorted(TAGS)
    for tag, digest in many_images.items():
        assert digest_of(inspect_raw(registry2, f"{unique_repo}:{tag}")) == digest
    again = subprocess.run([*REGSYNC, "plan", "-p", str(policy), "--detailed-exitcode"], cwd=tmp_path,
                           capture_output=True, text=True, timeout=60)
    assert again.returncode == 0, again.stdout


def test_sigterm_stops_cleanly_with_exit_1(tmp_path, registry, registry2, unique_repo, many_images):
    proxy = FaultProxy(registry.url)
    try:
        # The first blob stalls, so the signal lands while a transfer is in flight.
        stall = proxy.add(kind="stall", path="/blobs/sha256:", seconds=2.0)
        policy = crash_policy(tmp_path, proxy, registry2, unique_repo)
        process = subprocess.Popen([*REGSYNC[:-1], "sync", "-p", str(policy), "--jobs", "1"], cwd=tmp_path,
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and not stall.fired:
            time.sleep(0.02)
        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=60)
    finally:
        proxy.stop()
    assert process.returncode == 1, err
    assert "interrupted" in err and "Traceback" not in err
    assert len(target_tags(registry2, unique_repo)) < len(TAGS)
    assert_every_tag_complete(registry2, unique_repo, tmp_path)
