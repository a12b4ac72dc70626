"""A source whose bytes do not match their digests is refused, and nothing is tagged on the target."""

import subprocess
import zlib

import pytest
from tests.fixtures.policies import audit_records, run_cli, write_policy
from tests.fixtures.oci_layout import seed, write_image

TAG = "2.9-cuda11.8-ubuntu20.04"


def flip_byte(path, offset):
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x01
    path.write_bytes(bytes(data))


def sync(tmp_path, registry, registry2, repo):
    result = run_cli("sync", "-p", write_policy(tmp_path, registry.url, registry2.url, repo, tags=[TAG]))
    return result, audit_records(tmp_path / "audit.jsonl")


def tag_exists(registry, repo):
    probe = subprocess.run(["skopeo", "inspect", "--raw", *registry.skopeo_tls_args(),
                            f"docker://{registry.host}/{repo}:{TAG}"], capture_output=True, timeout=60)
    return probe.returncode == 0


@pytest.mark.parametrize("victim", ["layer", "config"])
def test_corrupted_blob_is_refused_and_nothing_tagged(tmp_path, registry, registry2, unique_repo, oci_dir, victim):
    # Content unique to this test: the session registries are shared, and a blob another test already
    # pushed would make "never uploaded" unprovable.
    info = write_image(oci_dir, TAG, layer_size=3 * 1024 * 1024, seed=zlib.crc32(unique_repo.encode()))
    seed(registry, unique_repo, TAG, oci_dir)
    digest = info.layer_digests["linux/arm64"][-1] if victim == "layer" else info.config_digests["linux/arm64"]
    flip_byte(registry.blob_path(digest), 100)

    mark = registry2.mark()
    result, records = sync(tmp_path, registry, registry2, unique_repo)
    assert result.exit_code == 3, result.output
    [refused] = [r for r in records if r["event"] == "refused"]
    assert "digest mismatch" in refused["reason"] and digest in refused["reason"]
    assert not any(r["event"] == "pushed" for r in records)
    assert not any("/manifests/" in uri for _, uri in registry2.writes_since(mark))
    assert not tag_exists(registry2, unique_repo)
    # The corrupt blob never completed an upload: the registry holds no blob under that digest.
    assert not registry2.blob_path(digest).exists()


def test_manifest_whose_bytes_do_not_match_is_refused(tmp_path, registry, registry2, unique_repo, oci_dir):
    info = write_image(oci_dir, TAG, seed=zlib.crc32(unique_repo.encode()))
    seed(registry, unique_repo, TAG, oci_dir)
    path = registry.blob_path(info.index_digest)
    # Length-preserving and still a valid index, so the registry serves it without noticing.
    path.write_bytes(path.read_bytes().replace(b'"arm64"', b'"arm65"'))

    mark = registry2.mark()
    result, records = sync(tmp_path, registry, registry2, unique_repo)
    assert result.exit_code == 3, result.output
    assert "manifest digest mismatch" in result.output
    assert [r["event"] for r in records] == ["refused"]
    assert registry2.writes_since(mark) == []
    assert not tag_exists(registry2, unique_repo)
