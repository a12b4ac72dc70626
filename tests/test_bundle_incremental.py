"""Air gap, second trip: incremental bundles (--since-bundle), volumes for removable media
(--volume-size), and resuming an interrupted export, against real registries."""

import json
import random
import subprocess
import zlib
from pathlib import Path

import pytest

from tests.fixtures.oci_layout import digest_of, inspect_raw, seed, write_image
from tests.fixtures.policies import run_cli, write_policy
from tests.fixtures.registries import start_registry

BASE = random.Random(1).randbytes(150_000)  # incompressible: a real 150 kB shared layer


def blob_names(directory: Path) -> set[str]:
    return {p.name for p in (directory / "blobs" / "sha256").iterdir() if not p.name.startswith(".")}


def sums_ok(directory: Path) -> bool:
    return subprocess.run(["sha256sum", "-c", "--quiet", "SHA256SUMS"], cwd=directory, capture_output=True).returncode == 0


def add_image(source, repo, layout, tag):
    info = write_image(layout, tag, shared_base=BASE, layer_size=120_000, seed=zlib.crc32(f"{repo}{tag}".encode()))
    seed(source, repo, tag, layout)
    return info


@pytest.fixture
def two_trips(tmp_path, unique_repo):
    source = start_registry(tmp_path / "source")
    layout = tmp_path / "layout"
    first = add_image(source, unique_repo, layout, "1.0")
    target = start_registry(tmp_path / "target")
    policy = write_policy(tmp_path, source.url, target.url, unique_repo, tags=["glob:*"])
    old = tmp_path / "bundle-1"
    assert run_cli("export", "-p", policy, "-o", old).exit_code == 0
    second = add_image(source, unique_repo, layout, "2.0")
    new = tmp_path / "bundle-2"
    result = run_cli("export", "-p", policy, "-o", new, "--since-bundle", old)
    assert result.exit_code == 0, result.output
    source.stop()
    yield {"old": old, "new": new, "policy": policy, "target": target, "repo": unique_repo,
           "first": first, "second": second, "tmp": tmp_path}
    target.stop()


def test_incremental_bundle_carries_only_what_the_old_one_lacks(two_trips):
    old, new, first, second = two_trips["old"], two_trips["new"], two_trips["first"], two_trips["second"]
    shared = {d.split(":")[1] for d in first.layer_digests["linux/amd64"][:1]}
    own_old = {d.split(":")[1] for p in first.layer_digests for d in first.layer_digests[p][1:]}
    own_new = {d.split(":")[1] for p in second.layer_digests for d in second.layer_digests[p][1:]}
    assert shared <= blob_names(old) and own_old <= blob_names(old)
    assert not (shared | own_old) & blob_names(new)  # no layer travels twice
    assert own_new <= blob_names(new)
    meta = json.loads((new / "bundle.json").read_text())
    assert meta["since"]["layers_left_out"] == len(shared | own_old)
    assert meta["since"]["bundle_sha256"]
    assert sums_ok(new)

    # far side: the old bundle went in first, the new one completes it
    assert run_cli("import", old, "-p", two_trips["policy"]).exit_code == 0
    result = run_cli("import", new, "-p", two_trips["policy"])
    assert result.exit_code == 0 and "1 pushed, 1 unchanged" in result.output, result.output
    for tag, info in (("1.0", first), ("2.0", second)):
        assert digest_of(inspect_raw(two_trips["target"], f"{two_trips['repo']}:{tag}")) == info.index_digest


def test_incremental_bundle_needs_its_base_on_a_fresh_target(two_trips):
    target = two_trips["target"]  # nothing imported yet: the new bundle alone lacks the shared layers
    alone = run_cli("import", two_trips["new"], "-p", two_trips["policy"])
    assert alone.exit_code == 1, alone.output
    assert "not in the bundle" in alone.output and "incremental" in alone.output
    for tag in ("1.0", "2.0"):  # both need layers only the old bundle carries: nothing half-tagged
        with pytest.raises(RuntimeError, match="manifest unknown"):
            inspect_raw(target, f"{two_trips['repo']}:{tag}")

    both = run_cli("import", two_trips["new"], two_trips["old"], "-p", two_trips["policy"])
    assert both.exit_code == 0, both.output
    for tag, info in (("1.0", two_trips["first"]), ("2.0", two_trips["second"])):
        assert digest_of(inspect_raw(target, f"{two_trips['repo']}:{tag}")) == info.index_digest


def test_volumes_fit_the_medium_check_alone_and_import_together(tmp_path, registry, registry2, unique_repo, oci_dir):
    infos = {tag: add_image(registry, unique_repo, oci_dir, tag) for tag in ("a", "b", "c")}
    policy = write_policy(tmp_path, registry.url, registry2.url, unique_repo, tags=["glob:*"])
    bundle, size = tmp_path / "bundle", 400_000
    result = run_cli("export", "-p", policy, "-o", bundle, "--volume-size", size)
    assert result.exit_code == 0, result.output
    volumes = [bundle, *sorted(tmp_path.glob("bundle.vol*"))]
    assert len(volumes) >= 3
    for volume in volumes:
        assert sum(p.stat().st_size for p in volume.rglob("*") if p.is_file()) <= size
        assert sums_ok(volume), volume
    assert json.loads((bundle / "bundle.json").read_text())["volumes"] == len(volumes)

    # a re-run gathers the volumes back and fetches nothing again
    again = run_cli("export", "-p", policy, "-o", bundle, "--volume-size", size)
    assert again.exit_code == 0 and " 0 B moved" in again.output, again.output
    assert [bundle, *sorted(tmp_path.glob("bundle.vol*"))] == volumes

    short = run_cli("import", bundle, "-p", policy)
    assert short.exit_code == 2 and f"split into {len(volumes)} volumes" in short.output
    result = run_cli("import", *volumes, "-p", policy)
    assert result.exit_code == 0, result.output
    for tag, info in infos.items():
        assert digest_of(inspect_raw(registry2, f"{unique_repo}:{tag}")) == info.index_digest


def test_interrupted_export_resumes_fetching_only_what_is_missing(tmp_path, registry, registry2, unique_repo, oci_dir):
    infos = [add_image(registry, unique_repo, oci_dir, tag) for tag in ("x", "y")]
    policy = write_policy(tmp_path, registry.url, registry2.url, unique_repo, tags=["glob:*"])
    bundle = tmp_path / "bundle"
    assert run_cli("export", "-p", policy, "-o", bundle).exit_code == 0
    lost = [d for d in infos[1].layer_digests["linux/arm64"][1:]]  # as if the run died before these
    for digest in lost:
        (bundle / "blobs" / "sha256" / digest.split(":")[1]).unlink()
    (bundle / "bundle.json").unlink()
    (bundle / "SHA256SUMS").unlink()

    mark = registry.mark()
    result = run_cli("export", "-p", policy, "-o", bundle)

    assert result.exit_code == 0, result.output
    blob_gets = [uri for method, uri in registry.requests_since(mark) if method == "GET" and "/blobs/" in uri]
    assert sorted(uri.rsplit("/", 1)[1] for uri in blob_gets) == sorted(lost)
    assert sums_ok(bundle)
