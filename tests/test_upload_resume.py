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
from regsync.oci.client import RegistryClient
from regsync.oci.copy import BlobCopier, Interrupted
from regsync.oci.manifest import Descriptor
from regsync.transfer import ResumableSha256

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
