"""The state dir (checkpoints, partial downloads, upload sessions) is private and trusted for
nothing: it is created 0700 (a looser one of ours is tightened), a symlink planted where a state
file goes is never written through, and a forged checkpoint (offset, hash state and kept bytes)
can cost a re-fetch but never let wrong bytes reach the target. Real registries and pypiserver."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import stat
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from regsync.kinds.image.copy import BlobCopier
from tests.fixtures.pypi import SimpleIndex
from tests.fixtures.policies import run_cli
from tests.test_pypi_resume import big_wheel, write_policy
from tests.test_upload_resume import MIB, _clients, _interrupted_copy, _target_bytes, big_blob  # noqa: F401
from regsync.content.sha256 import ResumableSha256

VICTIM = b"a file of this user that no regsync run may touch\n"


@pytest.fixture
def index():
    served = SimpleIndex()
    yield served
    served.stop()


@pytest.fixture
def state(tmp_path, monkeypatch):
    monkeypatch.setenv("REGSYNC_STATE_DIR", str(tmp_path / "state"))
    return tmp_path / "state"


def mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def victim(tmp_path, name="victim"):
    path = tmp_path / name
    path.write_bytes(VICTIM)
    return path


def wheel_sync(tmp_path, index, pypiserver, monkeypatch, size=3 * MIB):
    wheel = big_wheel(tmp_path / "wheels", "bigcuda", size)
    index.add(wheel)
    monkeypatch.setenv("PYPI_PASSWORD", pypiserver.password)
    return wheel, write_policy(tmp_path, index, pypiserver)


def uploaded(pypiserver, wheel) -> bytes:
    return (pypiserver.root / "packages" / wheel.name).read_bytes()


def test_a_symlink_at_a_partial_download_is_never_written_through(tmp_path, index, pypiserver, state, monkeypatch):
    wheel, policy = wheel_sync(tmp_path, index, pypiserver, monkeypatch)
    sha = hashlib.sha256(wheel.read_bytes()).hexdigest()
    downloads = state / "downloads"
    downloads.mkdir(parents=True, mode=0o700)
    targets = {suffix: victim(tmp_path, f"victim{suffix}") for suffix in (".part", ".json", ".tmp")}
    for suffix, target in targets.items():
        (downloads / f"{sha}{suffix}").symlink_to(target)

    result = run_cli("sync", "-p", policy)

    for target in targets.values():
        assert target.read_bytes() == VICTIM  # not truncated, not written
    assert result.exit_code == 0, result.output
    assert "symlink" in result.output and "not followed" in result.output
    assert uploaded(pypiserver, wheel) == wheel.read_bytes()  # the copy went on, without resume


def test_state_dirs_are_private_after_a_run_and_a_loose_one_is_tightened(tmp_path, index, pypiserver, state,
                                                                          monkeypatch):
    wheel, policy = wheel_sync(tmp_path, index, pypiserver, monkeypatch)
    (state / "downloads").mkdir(parents=True)
    os.chmod(state, 0o755)
    os.chmod(state / "downloads", 0o777)
    assert run_cli("sync", "-p", policy).exit_code == 0
    assert mode(state) == 0o700 and mode(state / "downloads") == 0o700


def test_a_forged_download_checkpoint_never_lets_wrong_bytes_through(tmp_path, index, pypiserver, state,
                                                                      monkeypatch):
    wheel, policy = wheel_sync(tmp_path, index, pypiserver, monkeypatch)
    data = wheel.read_bytes()
    sha, offset = hashlib.sha256(data).hexdigest(), 2 * MIB
    forged = bytearray(data[:offset])
    forged[1000:1100] = b"X" * 100  # wrong kept bytes ...
    hasher = ResumableSha256()
    hasher.update(bytes(forged))  # ... with the hash state that matches them, so only the final digest can tell
    (state / "downloads").mkdir(parents=True, mode=0o700)
    (state / "downloads" / f"{sha}.part").write_bytes(bytes(forged))
    (state / "downloads" / f"{sha}.json").write_text(json.dumps({
        "digest": f"sha256:{sha}", "size": len(data), "offset": offset,
        "sha256_state": base64.b64encode(hasher.state()).decode()}))

    result = run_cli("sync", "-p", policy)

    assert result.exit_code == 0, result.output
    assert [r for p, r in index.requests if p == f"/files/{wheel.name}"] == [f"bytes={offset}-", ""]  # then refetched
    assert uploaded(pypiserver, wheel) == data


def _checkpoint_path(state, registry2, repo, digest):
    key = hashlib.sha256(f"{registry2.host}/{repo}@{digest}".encode()).hexdigest()[:40]
    return state / "uploads" / f"{key}.json"


def test_a_symlink_at_an_upload_checkpoint_is_never_written_through(tmp_path, registry, registry2, unique_repo,
                                                                     big_blob, state):
    record = _checkpoint_path(state, registry2, unique_repo, big_blob.digest)
    record.parent.mkdir(parents=True, mode=0o700)
    targets = {suffix: victim(tmp_path, f"victim{suffix}") for suffix in (".json", ".tmp")}
    for suffix, target in targets.items():
        record.with_suffix(suffix).symlink_to(target)

    src, dst = _clients(registry, registry2)
    _interrupted_copy(src, dst, unique_repo, big_blob, after_bytes=2 * MIB)  # writes checkpoints as it goes

    for target in targets.values():
        assert target.read_bytes() == VICTIM
    assert not record.is_symlink() and json.loads(record.read_text())["offset"] >= 2 * MIB  # a file of ours now
    assert mode(state) == 0o700 and mode(state / "uploads") == 0o700


def test_a_forged_upload_checkpoint_never_commits_wrong_bytes(registry, registry2, unique_repo, big_blob, state):
    data = _target_bytes(registry, unique_repo, big_blob.digest)
    offset = 2 * MIB
    # a session on the target holding wrong bytes, and a checkpoint whose hash state is that of the
    # right ones: our side cannot tell, the registry's digest check on commit must
    location = requests.post(f"{registry2.url}/v2/{unique_repo}/blobs/uploads/").headers["Location"]
    location = requests.compat.urljoin(registry2.url, location)
    wrong = b"Y" * offset
    response = requests.patch(location, data=wrong, headers={"Content-Type": "application/octet-stream",
                                                             "Content-Range": f"0-{offset - 1}"})
    assert response.status_code == 202
    hasher = ResumableSha256()
    hasher.update(data[:offset])
    record = _checkpoint_path(state, registry2, unique_repo, big_blob.digest)
    record.parent.mkdir(parents=True, mode=0o700)
    record.write_text(json.dumps({"target": f"{registry2.host}/{unique_repo}", "digest": big_blob.digest,
                                  "location": requests.compat.urljoin(registry2.url, response.headers["Location"]),
                                  "offset": offset, "sha256_state": base64.b64encode(hasher.state()).decode()}))

    src, dst = _clients(registry, registry2)
    with ThreadPoolExecutor(2) as pool:
        # the registry refuses the commit; the forged checkpoint is dropped and the blob goes up afresh
        assert BlobCopier(pool).copy(src, unique_repo, dst, unique_repo, big_blob).result(timeout=60) == "copied"
    assert hashlib.sha256(_target_bytes(registry2, unique_repo, big_blob.digest)).hexdigest() == big_blob.digest[7:]
    assert not record.exists()


def test_a_shared_directory_is_not_used_for_state_and_the_copy_goes_on(tmp_path, index, pypiserver, monkeypatch):
    wheel, policy = wheel_sync(tmp_path, index, pypiserver, monkeypatch)
    shared = tmp_path / "shared"
    shared.mkdir()
    os.chmod(shared, 0o1777)  # as /tmp is: anyone may plant files there
    monkeypatch.setenv("REGSYNC_STATE_DIR", str(shared))
    result = run_cli("sync", "-p", policy)
    assert result.exit_code == 0, result.output
    assert "cannot keep partial downloads" in result.output and "sticky" in result.output
    assert mode(shared) == 0o1777 and not any(shared.iterdir())  # neither changed nor used
    assert uploaded(pypiserver, wheel) == wheel.read_bytes()
