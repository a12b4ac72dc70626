"""Chunked uploads resume from a checkpoint after an interrupted run, against real registries,
and the digest still covers every byte (a corrupted checkpoint is caught, nothing committed)."""

from __future__ import annotations

import base64
import hashlib
import json
import os
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from regsync.errors import VerificationError
from regsync.kinds.image.client import RegistryClient
from regsync.kinds.image.copy import BlobCopier, Interrupted
from regsync.kinds.image.manifest import Descriptor
from regsync.content.sha256 import ResumableSha256

MIB = 1 << 20
SIZE = 6 * MIB + 12345  # six full chunks and a short one


def test_resumable_sha256_state_round_trips():
    data = os.urandom(3 * MIB + 7)
    first = ResumableSha256()
    first.update(data[:MIB + 3])
    resumed = ResumableSha256(first.state())
    resumed.update(data[MIB + 3:])
    assert resumed.hexdigest() == hashlib.sha256(data).hexdigest()
    assert first.hexdigest() == hashlib.sha256(data[:MIB + 3]).hexdigest()  # finalising leaves the state alive
    with pytest.raises(ValueError):
        ResumableSha256(b"short")


@pytest.fixture
def state(tmp_path, monkeypatch):
    monkeypatch.setenv("REGSYNC_STATE_DIR", str(tmp_path / "state"))
    return tmp_path / "state" / "uploads"


@pytest.fixture
def big_blob(registry, unique_repo) -> Descriptor:
    data = os.urandom(SIZE)
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    location = requests.post(f"{registry.url}/v2/{unique_repo}/blobs/uploads/").headers["Location"]
    requests.put(f"{location}&digest={digest}", data=data).raise_for_status()
    return Descriptor("application/octet-stream", digest, SIZE)


def _clients(registry, registry2):
    src = RegistryClient("src", registry.url)
    dst = RegistryClient("dst", registry2.url, monolithic_max=MIB, chunk_size=MIB)
    return src, dst


def _interrupted_copy(src, dst, repo, blob, after_bytes):
    """A run stopped (as SIGTERM stops it) once `after_bytes` have moved: it ends at a chunk boundary."""
    with ThreadPoolExecutor(2) as pool:
        copier = BlobCopier(pool)
        copier._on_bytes = lambda n: copier.moved >= after_bytes and copier.stop()
        with pytest.raises(Interrupted):
            copier.copy(src, repo, dst, repo, blob).result(timeout=60)
    return copier.moved


def _copy(src, dst, repo, blob):
    with ThreadPoolExecutor(2) as pool:
        copier = BlobCopier(pool)
        assert copier.copy(src, repo, dst, repo, blob).result(timeout=60) == "copied"
    return copier.moved


def _target_bytes(registry2, repo, digest):
    return requests.get(f"{registry2.url}/v2/{repo}/blobs/{digest}").content


def test_rerun_moves_only_the_rest(registry, registry2, unique_repo, big_blob, state):
    src, dst = _clients(registry, registry2)
    first = _interrupted_copy(src, dst, unique_repo, big_blob, after_bytes=3 * MIB)
    saved = json.loads(next(state.glob("*.json")).read_text())
    assert saved["offset"] == first == 3 * MIB and saved["digest"] == big_blob.digest
    assert not dst.blob_exists(unique_repo, big_blob.digest)

    src, dst = _clients(registry, registry2)  # a new run: nothing remembered in memory
    mark = registry.mark()
    again = _copy(src, dst, unique_repo, big_blob)
    assert again == SIZE - 3 * MIB
    assert any(method == "GET" and big_blob.digest in uri for method, uri in registry.requests_since(mark))
    assert hashlib.sha256(_target_bytes(registry2, unique_repo, big_blob.digest)).hexdigest() == big_blob.digest[7:]
    assert not list(state.glob("*.json"))  # done: the checkpoint is gone


def test_a_vanished_session_means_a_fresh_upload(registry, registry2, unique_repo, big_blob, state):
    src, dst = _clients(registry, registry2)
    _interrupted_copy(src, dst, unique_repo, big_blob, after_bytes=2 * MIB)
    saved = json.loads(next(state.glob("*.json")).read_text())
    requests.delete(saved["location"])  # the registry purged it
    src, dst = _clients(registry, registry2)
    assert _copy(src, dst, unique_repo, big_blob) == SIZE
    assert dst.blob_exists(unique_repo, big_blob.digest)


def test_a_corrupted_checkpoint_is_caught_by_the_digest(registry, registry2, unique_repo, big_blob, state):
    src, dst = _clients(registry, registry2)
    _interrupted_copy(src, dst, unique_repo, big_blob, after_bytes=2 * MIB)
    path = next(state.glob("*.json"))
    saved = json.loads(path.read_text())
    other = ResumableSha256()
    other.update(os.urandom(saved["offset"]))  # the state of other bytes than the registry holds
    saved["sha256_state"] = base64.b64encode(other.state()).decode()
    path.write_text(json.dumps(saved))

    src, dst = _clients(registry, registry2)
    with ThreadPoolExecutor(2) as pool, pytest.raises(VerificationError, match="digest mismatch"):
        BlobCopier(pool).copy(src, unique_repo, dst, unique_repo, big_blob).result(timeout=60)
    assert requests.head(f"{registry2.url}/v2/{unique_repo}/blobs/{big_blob.digest}").status_code == 404
    assert not path.exists()


# -- SIGKILL: distribution cancels the upload session, the source bytes kept on disk are reused ----

def _killed_then_rerun(tmp_path, registry, registry2, repo, oci_dir, damage=False, upload="monolithic_max: 64MiB"):
    import signal
    import subprocess
    import sys
    import time

    from tests.fixtures.oci_layout import seed, write_image
    from tests.fixtures.policies import write_policy

    write_image(oci_dir, "big", platforms=(("linux", "amd64"),), single=True, layer_size=24 * MIB, seed=7)
    seed(registry, repo, "big", oci_dir)
    policy = write_policy(tmp_path, registry.url, registry2.url, repo, tags=["big"],
                          dst_options=f", upload: {{{upload}, spool_min: 4MiB}}")
    env = {**os.environ, "REGSYNC_STATE_DIR": str(tmp_path / "state")}
    command = [sys.executable, "-m", "regsync", "--no-progress", "sync", "-p", str(policy)]
    spool = tmp_path / "state" / "downloads"
    process = subprocess.Popen([*command, "--bandwidth", "6MiB"], cwd=tmp_path, env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    while process.poll() is None and time.monotonic() < deadline:
        checkpoints = [json.loads(p.read_text()) for p in spool.glob("*.json")] if spool.exists() else []
        if any(c["offset"] >= 12 * MIB for c in checkpoints):
            break
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=10)
    [part] = spool.glob("*.part")
    if damage:
        with part.open("r+b") as handle:
            handle.seek(MIB)
            byte = handle.read(1)
            handle.seek(MIB)
            handle.write(bytes([byte[0] ^ 0xFF]))
    rerun = subprocess.run([*command[:3], "--log-format", "json", *command[3:]], cwd=tmp_path, env=env,
                           capture_output=True, text=True, timeout=120)
    assert rerun.returncode == 0, rerun.stderr
    [summary] = [json.loads(line) for line in rerun.stderr.splitlines()
                 if '"event": "summary"' in line]
    pulled = subprocess.run(["skopeo", "copy", "-q", "--src-tls-verify=false", f"docker://{registry2.host}/{repo}:big",
                             f"oci:{tmp_path / 'pulled'}:big"], capture_output=True, text=True, timeout=120)
    assert pulled.returncode == 0, pulled.stderr  # complete, and skopeo checked every digest
    assert not list(spool.iterdir())  # nothing kept once the blob is on the target
    return summary["bytes"], summary["reused_bytes"]


def test_after_sigkill_the_source_sends_only_the_rest(tmp_path, registry, registry2, unique_repo, oci_dir):
    """One PUT per blob (as for Nexus): the upload cannot resume, the kept source bytes are sent again."""
    fetched, resent = _killed_then_rerun(tmp_path, registry, registry2, unique_repo, oci_dir)
    assert resent >= 12 * MIB and fetched <= 24 * MIB - 12 * MIB + 64 * 1024, (fetched, resent)


def test_after_sigkill_a_chunked_upload_fetches_only_the_rest(tmp_path, registry, registry2, unique_repo, oci_dir):
    """Chunked: the session resumes when the kill fell between chunks, else distribution cancels it
    (a PATCH cut mid-body) and the kept source bytes are used; either way only the rest is fetched."""
    fetched, resent = _killed_then_rerun(tmp_path, registry, registry2, unique_repo, oci_dir,
                                         upload="monolithic_max: 1MiB, chunk_size: 2MiB")
    assert fetched <= 24 * MIB - 12 * MIB + 2 * MIB + 64 * 1024, (fetched, resent)


def test_damaged_kept_bytes_mean_fetching_again_never_a_bad_blob(tmp_path, registry, registry2, unique_repo, oci_dir):
    fetched, resent = _killed_then_rerun(tmp_path, registry, registry2, unique_repo, oci_dir, damage=True)
    assert resent == 0 and fetched >= 24 * MIB, (fetched, resent)


def test_an_unwritable_state_dir_costs_resumability_never_the_copy(tmp_path, registry, registry2, unique_repo,
                                                                    oci_dir, monkeypatch):
    """A locked-down container (read-only home): big blobs still copy; regsync says why it cannot resume."""
    from tests.fixtures.oci_layout import digest_of, inspect_raw, seed, write_image
    from tests.fixtures.policies import run_cli, write_policy

    info = write_image(oci_dir, "big", platforms=(("linux", "amd64"),), single=True, layer_size=6 * MIB, seed=11)
    seed(registry, unique_repo, "big", oci_dir)
    policy = write_policy(tmp_path, registry.url, registry2.url, unique_repo, tags=["big"],
                          dst_options=", upload: {monolithic_max: 1MiB, chunk_size: 2MiB, spool_min: 4MiB}")
    not_a_directory = tmp_path / "state-is-a-file"
    not_a_directory.write_text("")
    monkeypatch.setenv("REGSYNC_STATE_DIR", str(not_a_directory))
    result = run_cli("sync", "-p", str(policy))
    assert result.exit_code == 0, result.output
    assert "cannot keep" in result.output  # says why a killed run would start over
    assert digest_of(inspect_raw(registry2, f"{unique_repo}:big")) == info.index_digest


def test_a_stop_lands_at_a_chunk_boundary_even_when_the_run_counter_raises(registry, registry2, unique_repo,
                                                                          big_blob, state):
    """SIGTERM as a real run delivers it: once stopping, the run's byte counter raises Interrupted
    (pipeline/kind.Run.on_bytes, so downloads stop within a chunk). A checkpointed upload must not
    stop there, mid-PATCH: distribution keeps the cut bytes and then drops the whole session
    (benchmarks/upload_cut.py); it stops at its next chunk boundary (issue 16, P7)."""
    from regsync.pipeline.kind import Run

    src = RegistryClient("src", registry.url)
    dst = RegistryClient("dst", registry2.url, monolithic_max=MIB, chunk_size=2 * MIB)  # two reads per PATCH
    with ThreadPoolExecutor(2) as pool:
        run = Run(None, pool)
        copier = run.state("oci.blobs", lambda: BlobCopier(pool, run.on_bytes))

        def counted(n):
            if copier.moved >= 4 * MIB and not run.stopping.is_set():  # the second read of the second PATCH
                run.stop()
            run.on_bytes(n)

        copier._on_bytes = counted
        with pytest.raises(Interrupted):
            copier.copy(src, unique_repo, dst, unique_repo, big_blob).result(timeout=60)
    saved = json.loads(next(state.glob("*.json")).read_text())
    assert saved["offset"] % (2 * MIB) == 0 and saved["offset"] >= 2 * MIB

    src, dst = _clients(registry, registry2)  # a new run: the session is still there
    again = _copy(src, dst, unique_repo, big_blob)
    assert again == SIZE - saved["offset"]
    assert hashlib.sha256(_target_bytes(registry2, unique_repo, big_blob.digest)).hexdigest() == big_blob.digest[7:]
