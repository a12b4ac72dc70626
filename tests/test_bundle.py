"""Air gap: export with the source up, import with the source stopped, into a fresh registry;
corrupted and hostile bundles refused with nothing tagged."""

import hashlib
import json
import os
import shutil
import subprocess
import time
import zlib

import pytest
import requests

from tests.fixtures.oci_layout import digest_of, inspect_raw, seed, write_image
from tests.fixtures.policies import audit_records, run_cli, write_policy
from tests.fixtures.registries import start_registry

TAGS = ["2.9-cuda11.8-ubuntu20.04", "2.9-cuda12.1-ubuntu22.04"]


@pytest.fixture
def exported(tmp_path, unique_repo):
    """A bundle of two images sharing a base, exported from a source that is then stopped."""
    source = start_registry(tmp_path / "source")
    layout = tmp_path / "layout"
    digests, own_layers = {}, {}
    for n, tag in enumerate(TAGS):
        info = write_image(layout, tag, shared_base=b"cuda-base" * 20_000, layer_size=200_000,
                           seed=zlib.crc32(f"{unique_repo}{n}".encode()))
        seed(source, unique_repo, tag, layout)
        digests[tag] = info.index_digest
        own_layers[tag] = info.layer_digests["linux/amd64"][-1]  # a layer only this image has
    target = start_registry(tmp_path / "target")
    policy = write_policy(tmp_path, source.url, target.url, unique_repo, tags=["glob:2.9-*"])
    bundle = tmp_path / "bundle"
    result = run_cli("export", "-p", policy, "-o", bundle)
    assert result.exit_code == 0, result.output
    source.stop()  # from here on the source is unreachable: import must live on the bundle alone
    yield {"bundle": bundle, "policy": policy, "target": target, "digests": digests, "repo": unique_repo,
           "victim": bundle / "blobs" / "sha256" / own_layers[TAGS[0]].split(":")[1]}
    target.stop()


def tags_on(registry, repo):
    response = requests.get(f"{registry.url}/v2/{repo}/tags/list", timeout=10)
    return (response.json().get("tags") or []) if response.status_code == 200 else []


def test_round_trip_with_the_source_unreachable(exported):
    bundle, target, repo = exported["bundle"], exported["target"], exported["repo"]
    check = subprocess.run(["sha256sum", "-c", "--quiet", "SHA256SUMS"], cwd=bundle, capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    manifest = json.loads((bundle / "bundle.json").read_text())
    assert len(manifest["artifacts"]) == 2 and manifest["policy_sha256"]
    base_blobs = [p for p in (bundle / "blobs" / "sha256").iterdir()]
    assert len(base_blobs) == len({p.name for p in base_blobs})  # stored once

    result = run_cli("import", bundle, "-p", exported["policy"])
    assert result.exit_code == 0, result.output
    for tag, digest in exported["digests"].items():
        assert digest_of(inspect_raw(target, f"{repo}:{tag}")) == digest
    again = run_cli("import", bundle, "-p", exported["policy"])
    assert again.exit_code == 0 and "0 pushed, 2 unchanged" in again.output


def test_export_resumes_without_downloading_again(exported, tmp_path):
    # The source is gone: a re-export must fail cleanly, not corrupt the finished bundle.
    before = {name: (exported["bundle"] / name).read_text() for name in ("SHA256SUMS", "index.json", "bundle.json")}
    again = run_cli("export", "-p", exported["policy"], "-o", exported["bundle"])
    assert again.exit_code == 1 and "cannot connect" in again.output
    check = subprocess.run(["sha256sum", "-c", "--quiet", "SHA256SUMS"], cwd=exported["bundle"], capture_output=True)
    assert check.returncode == 0
    assert before == {name: (exported["bundle"] / name).read_text() for name in before}  # still the finished bundle


def test_flipped_byte_in_a_blob_is_refused_and_nothing_tagged(exported):
    bundle, victim = exported["bundle"], exported["victim"]
    data = bytearray(victim.read_bytes())
    data[1000] ^= 0xFF
    victim.write_bytes(bytes(data))
    result = run_cli("import", bundle, "-p", exported["policy"])
    assert result.exit_code == 3, result.output
    assert "digest mismatch" in result.output
    assert tags_on(exported["target"], exported["repo"]) == [TAGS[1]]  # the intact image still arrives


def test_flipped_byte_in_bundle_json_is_refused(exported):
    path = exported["bundle"] / "bundle.json"
    path.write_text(path.read_text().replace('"format"', '"formaT"', 1))
    result = run_cli("import", exported["bundle"], "-p", exported["policy"])
    assert result.exit_code == 3 and "does not match SHA256SUMS" in result.output


def rewrite_sums(bundle):
    lines = (bundle / "SHA256SUMS").read_text().splitlines()
    fixed = [f"{hashlib.sha256((bundle / 'index.json').read_bytes()).hexdigest()}  index.json"
             if line.endswith("  index.json") else line for line in lines]
    (bundle / "SHA256SUMS").write_text("\n".join(fixed) + "\n")


def test_traversal_digest_is_refused_even_with_matching_sums(exported, tmp_path):
    bundle = exported["bundle"]
    (tmp_path / "secret").write_text("outside the bundle")
    index = json.loads((bundle / "index.json").read_text())
    index["manifests"][0]["digest"] = "sha256:../../../secret"
    (bundle / "index.json").write_text(json.dumps(index))
    rewrite_sums(bundle)  # what a careful attacker does; the digest check must still hold
    result = run_cli("import", bundle, "-p", exported["policy"])
    assert result.exit_code in (1, 3), result.output
    reasons = " ".join(r["reason"] or "" for r in audit_records(tmp_path / "audit.jsonl") if r["event"] in ("refused", "failed"))
    assert "malformed digest 'sha256:../../../secret'" in reasons, reasons  # refused as it is parsed
    assert "outside the bundle" not in result.output + reasons


def test_symlinked_blob_is_never_followed(exported, tmp_path):
    bundle, victim = exported["bundle"], exported["victim"]
    shutil.copy(victim, tmp_path / "elsewhere")
    victim.unlink()
    victim.symlink_to(tmp_path / "elsewhere")  # same bytes, but outside the bundle
    result = run_cli("import", bundle, "-p", exported["policy"])
    assert result.exit_code == 3, result.output
    assert "not a regular file" in result.output
    assert tags_on(exported["target"], exported["repo"]) == [TAGS[1]]


@pytest.mark.parametrize("planted", ["SHA256SUMS", "blob"])
def test_a_fifo_planted_in_a_bundle_is_refused_not_waited_on(exported, planted):
    """open() of a FIFO waits for a writer: a carrier's FIFO in place of SHA256SUMS or a blob must be
    refused as not a regular file, at once, with nothing tagged."""
    path = exported["bundle"] / "SHA256SUMS" if planted == "SHA256SUMS" else exported["victim"]
    path.unlink()
    os.mkfifo(path)
    started = time.monotonic()
    result = run_cli("import", exported["bundle"], "-p", exported["policy"])
    assert result.exit_code == 3 and "not a regular file" in result.output, result.output
    assert time.monotonic() - started < 60
    assert tags_on(exported["target"], exported["repo"]) == ([] if planted == "SHA256SUMS" else [TAGS[1]])
