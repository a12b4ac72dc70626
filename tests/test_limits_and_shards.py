"""Run limits (--bandwidth, --max-requests-per-second, --max-duration) and --shard against real registries."""

import subprocess
import sys
import time
import zlib

from tests.fixtures.faultproxy import FaultProxy
from tests.fixtures.policies import audit_records, run_cli, write_policy
from tests.fixtures.oci_layout import digest_of, inspect_raw, seed, write_image


def policy(tmp_path, source_url, target, repo, include):
    return write_policy(tmp_path, source_url, target.url, repo, tags=include)


def timed(*args):
    started = time.monotonic()
    result = run_cli(*args)
    return result, time.monotonic() - started


def test_bandwidth_limit_slows_the_stream(tmp_path, registry, registry2, unique_repo, oci_dir):
    info = write_image(oci_dir, "big", platforms=(("linux", "amd64"),), layer_size=6 * 1024 * 1024,
                       seed=zlib.crc32(unique_repo.encode()))
    seed(registry, unique_repo, "big", oci_dir)
    result, elapsed = timed("sync", "-p", policy(tmp_path, registry.url, registry2, unique_repo, ["big"]),
                            "--bandwidth", "1MiB")
    assert result.exit_code == 0, result.output
    # ~6 MiB at 1 MiB/s after a one-second burst: at least ~5 s; 3.5 s leaves room for a loaded machine.
    assert elapsed >= 3.5
    assert digest_of(inspect_raw(registry2, f"{unique_repo}:big")) == info.index_digest


def test_request_rate_limit(tmp_path, registry, registry2, unique_repo, oci_dir):
    write_image(oci_dir, "x", seed=zlib.crc32(unique_repo.encode()))
    seed(registry, unique_repo, "x", oci_dir)
    mark = registry.mark()
    result, elapsed = timed("sync", "-p", policy(tmp_path, registry.url, registry2, unique_repo, ["x"]),
                            "--max-requests-per-second", "5")
    assert result.exit_code == 0, result.output
    made = len(registry.requests_since(mark))
    assert made >= 6 and elapsed >= (made - 5) / 5 * 0.8


def test_max_duration_stops_new_work_and_exits_1(tmp_path, registry, registry2, unique_repo, oci_dir):
    write_image(oci_dir, "x", seed=zlib.crc32(unique_repo.encode()))
    seed(registry, unique_repo, "x", oci_dir)
    proxy = FaultProxy(registry.url)
    proxy.add(kind="stall", path="/blobs/sha256:", seconds=3.0)
    try:
        path = policy(tmp_path, proxy.url, registry2, unique_repo, ["x"])
        started = time.monotonic()
        result = subprocess.run([sys.executable, "-m", "regsync", "--no-progress", "sync", "-p", str(path),
                                 "--max-duration", "1"], cwd=tmp_path, capture_output=True, text=True, timeout=60)
        elapsed = time.monotonic() - started
    finally:
        proxy.stop()
    assert result.returncode == 1, result.stderr
    assert "interrupted" in result.stderr and elapsed < 20


def test_shards_partition_the_work(tmp_path, registry, registry2, unique_repo, oci_dir):
    tags = [f"1.{i}" for i in range(8)]
    write_image(oci_dir, "x", platforms=(("linux", "amd64"),), seed=zlib.crc32(unique_repo.encode()))
    for tag in tags:
        seed(registry, unique_repo, tag, oci_dir, layout_tag="x")
    path = policy(tmp_path, registry.url, registry2, unique_repo, ["glob:1.*"])
    shares = []
    for index in range(3):
        audit = tmp_path / f"audit-{index}.jsonl"
        result, _ = timed("sync", "-p", path, "--shard", f"{index}/3", "--audit-file", audit)
        assert result.exit_code == 0, result.output
        records = audit_records(audit)
        shares.append({r["artifact"]["target"] for r in records if r["event"] == "pushed"})
    assert set().union(*shares) == {f"dst/{unique_repo}:{tag}" for tag in tags}
    assert sum(len(s) for s in shares) == len(tags)  # disjoint
    result, _ = timed("plan", "-p", path, "--detailed-exitcode")
    assert result.exit_code == 0

    # The shards' trails join into one trail that verifies, every record kept with its origin.
    trails = [tmp_path / f"audit-{index}.jsonl" for index in range(3)]
    merged = tmp_path / "merged.jsonl"
    joined, _ = timed("audit", "merge", *trails, "-o", merged)
    assert joined.exit_code == 0, joined.output
    records = audit_records(merged, frame=True)
    assert len(records) == sum(len(t.read_text().splitlines()) for t in trails)
    assert {r["origin"]["trail"] for r in records} == {t.name for t in trails}
    verified, _ = timed("audit", "verify", merged)
    assert verified.exit_code == 0 and "3 run(s)" in verified.output
    broken = tmp_path / "broken.jsonl"
    broken.write_text("".join(trails[0].read_text().splitlines(keepends=True)[1:]))
    refused, _ = timed("audit", "merge", trails[1], broken, "-o", tmp_path / "m2.jsonl")
    assert refused.exit_code == 1 and "not merging a broken trail" in refused.output  # as `audit verify` exits

    bad, _ = timed("sync", "-p", path, "--shard", "3/3")
    assert bad.exit_code == 2 and "0 <= I < N" in bad.output
