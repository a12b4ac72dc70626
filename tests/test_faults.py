"""Flaky sources: dropped connections, 429 with Retry-After, 503s, corrupted bytes, stalls.

A fault proxy sits between regsync and a real source registry; results are checked with skopeo.
"""

import json
import time
import zlib

import pytest
from tests.fixtures.faultproxy import FaultProxy
from tests.fixtures.policies import audit_records, run_cli, write_policy
from tests.fixtures.oci_layout import digest_of, inspect_raw, seed, write_image

TAG = "2.9-cuda11.8-ubuntu20.04"


@pytest.fixture
def proxy(registry):
    front = FaultProxy(registry.url)
    yield front
    front.stop()


@pytest.fixture
def image(registry, unique_repo, oci_dir):
    info = write_image(oci_dir, TAG, layer_size=2 * 1024 * 1024, seed=zlib.crc32(unique_repo.encode()))
    seed(registry, unique_repo, TAG, oci_dir)
    return info


def sync(tmp_path, proxy, registry2, repo, tags=(TAG,)):
    options = ", retries: {attempts: 4, backoff_seconds: 0.05}"
    return run_cli("sync", "-p", write_policy(tmp_path, proxy.url, registry2.url, repo, tags=tags, src_options=options))


def blob_path(digest):
    return f"/blobs/{digest}"


def test_connection_dropped_mid_blob_is_retried(tmp_path, proxy, registry2, unique_repo, image):
    layer = image.layer_digests["linux/amd64"][-1]
    fault = proxy.add(kind="drop", path=blob_path(layer), after_bytes=1024 * 1024, times=2)
    result = sync(tmp_path, proxy, registry2, unique_repo)
    assert result.exit_code == 0, result.output
    assert fault.fired == 2
    assert digest_of(inspect_raw(registry2, f"{unique_repo}:{TAG}")) == image.index_digest


def test_429_with_retry_after_is_honoured(tmp_path, proxy, registry2, unique_repo, image):
    fault = proxy.add(kind="status", path=f"/manifests/{TAG}", status=429, retry_after=1, times=1)
    started = time.monotonic()
    result = sync(tmp_path, proxy, registry2, unique_repo)
    assert result.exit_code == 0, result.output
    assert fault.fired == 1 and time.monotonic() - started >= 1.0
    assert digest_of(inspect_raw(registry2, f"{unique_repo}:{TAG}")) == image.index_digest


def test_503s_are_retried(tmp_path, proxy, registry2, unique_repo, image):
    layer = image.layer_digests["linux/arm64"][-1]
    fault = proxy.add(kind="status", path=blob_path(layer), status=503, times=3)
    result = sync(tmp_path, proxy, registry2, unique_repo)
    assert result.exit_code == 0, result.output
    assert fault.fired == 3


def test_persistent_failure_fails_one_artifact_and_the_run_goes_on(tmp_path, registry, proxy, registry2,
                                                                   unique_repo, image, oci_dir):
    other = write_image(oci_dir, "other", platforms=(("linux", "amd64"),), seed=zlib.crc32(b"o" + unique_repo.encode()))
    seed(registry, unique_repo, "other", oci_dir)
    broken = image.layer_digests["linux/arm64"][-1]
    proxy.add(kind="status", path=blob_path(broken), status=503, times=1000)
    result = sync(tmp_path, proxy, registry2, unique_repo, tags=(TAG, "other"))
    assert result.exit_code == 1, result.output
    assert digest_of(inspect_raw(registry2, f"{unique_repo}:other")) == other.index_digest
    events = {(r["event"], r["artifact"]["target"].rsplit(":", 1)[1]) for r in audit_records(tmp_path / "audit.jsonl")}
    assert ("failed", TAG) in events and ("pushed", "other") in events
    assert ("pushed", TAG) not in events


def test_corrupted_byte_in_flight_is_refused(tmp_path, proxy, registry2, unique_repo, image):
    layer = image.layer_digests["linux/amd64"][-1]
    proxy.add(kind="corrupt", path=blob_path(layer), after_bytes=500_000, times=1000)
    result = sync(tmp_path, proxy, registry2, unique_repo)
    assert result.exit_code == 3, result.output
    assert "digest mismatch" in result.output


def test_mirror_fallback_when_the_primary_fails(tmp_path, registry, proxy, registry2, unique_repo, image):
    # The primary (through the proxy) is down for everything; the mirror is the real registry.
    proxy.add(kind="status", method="HEAD", path="/", status=503, times=1000)
    proxy.add(kind="status", method="GET", path="/", status=503, times=1000)
    options = f', mirrors: ["{registry.url}"], retries: {{attempts: 1, backoff_seconds: 0.01}}'
    policy = write_policy(tmp_path, proxy.url, registry2.url, unique_repo, tags=[TAG], src_options=options)
    result = run_cli("-v", "sync", "-p", policy)
    assert result.exit_code == 0, result.output
    assert "trying the next mirror" in result.output
    assert digest_of(inspect_raw(registry2, f"{unique_repo}:{TAG}")) == image.index_digest


def test_mirror_serving_other_bytes_is_refused_not_skipped(tmp_path, registry, proxy, registry2, unique_repo, image):
    # Primary down; the only mirror corrupts a layer: verification refuses, nothing is tagged.
    dead = "http://127.0.0.1:9"
    layer = image.layer_digests["linux/amd64"][-1]
    proxy.add(kind="corrupt", path=blob_path(layer), after_bytes=1000, times=1000)
    options = f', mirrors: ["{proxy.url}"], retries: {{attempts: 0, backoff_seconds: 0}}'
    policy = write_policy(tmp_path, dead, registry2.url, unique_repo, tags=[TAG], src_options=options)
    result = run_cli("sync", "-p", policy)
    assert result.exit_code == 3, result.output
    assert "digest mismatch" in result.output


def test_a_target_is_read_from_itself_never_from_its_mirrors(tmp_path, registry, proxy, unique_repo, image):
    """`mirrors:` speed up reading a source; what a target holds is the target's own word. A target
    whose primary is down while its mirror has the image was planned `skip` (read from the mirror)
    and so never written."""
    proxy.add(kind="status", method="HEAD", path="/", status=503, times=1000)
    proxy.add(kind="status", method="GET", path="/", status=503, times=1000)
    options = f', mirrors: ["{registry.url}"], retries: {{attempts: 0, backoff_seconds: 0}}'
    policy = write_policy(tmp_path, registry.url, proxy.url, unique_repo, tags=[TAG], dst_options=options)
    result = run_cli("plan", "-p", policy, "-o", tmp_path / "plan.json")
    plan = json.loads((tmp_path / "plan.json").read_text())
    assert result.exit_code == 1 and plan["items"] == [], result.output
    assert [e["reason"] for e in plan["errors"]] == [f"dst/{unique_repo}:{TAG}: registry error (HTTP 503)"]
