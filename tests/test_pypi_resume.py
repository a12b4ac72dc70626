"""A package download survives its process: SIGKILL a throttled `regsync sync` halfway through a
large wheel, rerun, and only the rest moves; whatever is wrong with the kept bytes or the server's
Range support means starting over, never a wrong file or a false refusal."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest

from regsync.kinds.package.index import PackageIndex
from regsync.content.sha256 import ResumableSha256
from tests.fixtures.pypi import SimpleIndex, build_wheel
from tests.test_pypi import pip_download

MIB = 1 << 20
REGSYNC = [sys.executable, "-m", "regsync", "--no-progress", "-q"]


def big_wheel(folder: Path, name: str, size: int) -> Path:
    """A real wheel made large by an incompressible stored member (a CUDA wheel in miniature)."""
    path = build_wheel(folder, name, "1.0", "cp310-cp310-manylinux_2_17_x86_64")
    with zipfile.ZipFile(path, "a", zipfile.ZIP_STORED) as wheel:
        wheel.writestr(zipfile.ZipInfo(f"{name}/_kernels.bin", (2020, 1, 1, 0, 0, 0)), os.urandom(size))
    return path


@pytest.fixture
def index():
    served = SimpleIndex()
    yield served
    served.stop()


def write_policy(tmp_path, index, target) -> Path:
    path = tmp_path / "policy.yaml"
    path.write_text(f"""\
version: 1
indexes:
  source: {{url: "{index.url}"}}
  internal: {{url: "{target.simple}", upload_url: "{target.url}", kind: pypiserver,
              auth: {{username: {target.username}, password: "${{PYPI_PASSWORD}}"}}}}
packages:
  - from: source
    to: internal
    requirements: ["bigcuda"]
    environments: [{{python: "3.10", platform: manylinux_2_28_x86_64}}]
audit: {{path: audit.jsonl}}
""")
    return path


def test_sigkill_halfway_then_rerun_moves_only_the_rest(tmp_path, index, pypiserver):
    wheel = big_wheel(tmp_path / "wheels", "bigcuda", 32 * MIB)
    size, sha = wheel.stat().st_size, hashlib.sha256(wheel.read_bytes()).hexdigest()
    index.add(wheel)
    policy = write_policy(tmp_path, index, pypiserver)
    state = tmp_path / "state"
    env = dict(os.environ, REGSYNC_STATE_DIR=str(state), PYPI_PASSWORD=pypiserver.password)
    part, checkpoint = state / "downloads" / f"{sha}.part", state / "downloads" / f"{sha}.json"

    first = subprocess.Popen([*REGSYNC, "sync", "-p", str(policy), "--bandwidth", "4MiB"], cwd=tmp_path, env=env,
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and first.poll() is None:
        if part.exists() and part.stat().st_size >= size // 2:
            break
        time.sleep(0.02)
    assert first.poll() is None, f"the run ended before it could be killed: {first.stderr.read().decode()[-2000:]}"
    first.send_signal(signal.SIGKILL)
    first.wait(timeout=10)
    first.stderr.close()
    time.sleep(0.5)  # the server notices the closed socket; its byte count settles

    saved = json.loads(checkpoint.read_text())
    offset = saved["offset"]
    assert size // 4 <= offset < size and saved["size"] == size  # fsynced up to at most a second before the kill
    assert part.stat().st_size >= offset
    assert not any((pypiserver.root / "packages").iterdir())

    sent_before, mark = index.bytes_sent.get(wheel.name, 0), len(index.requests)
    again = subprocess.run([*REGSYNC, "sync", "-p", str(policy)], cwd=tmp_path, env=env, capture_output=True,
                           text=True, timeout=120)
    assert again.returncode == 0, again.stderr
    assert [r for p, r in index.requests[mark:] if p == f"/files/{wheel.name}"] == [f"bytes={offset}-"]
    assert index.bytes_sent[wheel.name] - sent_before == size - offset  # only the rest moved
    assert not part.exists() and not checkpoint.exists()

    got = pip_download(pypiserver.simple, tmp_path / "dl", "3.10", "manylinux_2_28_x86_64", "bigcuda")
    assert got.returncode == 0, got.stdout + got.stderr
    assert hashlib.sha256((tmp_path / "dl" / wheel.name).read_bytes()).hexdigest() == sha


def test_sigterm_stops_a_large_download_at_once_and_the_rerun_resumes(tmp_path, index, pypiserver):
    wheel = big_wheel(tmp_path / "wheels", "bigcuda", 32 * MIB)
    size, sha = wheel.stat().st_size, hashlib.sha256(wheel.read_bytes()).hexdigest()
    index.add(wheel)
    policy = write_policy(tmp_path, index, pypiserver)
    env = dict(os.environ, REGSYNC_STATE_DIR=str(tmp_path / "state"), PYPI_PASSWORD=pypiserver.password)
    checkpoint = tmp_path / "state" / "downloads" / f"{sha}.json"

    first = subprocess.Popen([*REGSYNC, "sync", "-p", str(policy), "--bandwidth", "2MiB"], cwd=tmp_path, env=env,
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and first.poll() is None and not checkpoint.exists():
        time.sleep(0.02)
    first.send_signal(signal.SIGTERM)
    signalled = time.monotonic()
    _, err = first.communicate(timeout=60)
    # at 2 MiB/s the rest would take ~14 s more; stopping takes one chunk
    assert first.returncode == 1 and time.monotonic() - signalled < 5, err
    assert "interrupted" in err and "Traceback" not in err
    offset = json.loads(checkpoint.read_text())["offset"]
    assert 0 < offset < size and not any((pypiserver.root / "packages").iterdir())

    mark = len(index.requests)
    again = subprocess.run([*REGSYNC, "sync", "-p", str(policy)], cwd=tmp_path, env=env, capture_output=True,
                           text=True, timeout=120)
    assert again.returncode == 0, again.stderr
    assert [r for p, r in index.requests[mark:] if p == f"/files/{wheel.name}"] == [f"bytes={offset}-"]
    assert hashlib.sha256((pypiserver.root / "packages" / wheel.name).read_bytes()).hexdigest() == sha


# The cases below seed the state dir as a killed run leaves it and download in-process.

SIZE = 3 * MIB + 4321


@pytest.fixture
def served(tmp_path, index, monkeypatch):
    monkeypatch.setenv("REGSYNC_STATE_DIR", str(tmp_path / "state"))
    path = tmp_path / "files" / "blob-1.0-py3-none-any.whl"
    path.parent.mkdir()
    path.write_bytes(os.urandom(SIZE))  # bytes are bytes here: no page metadata read from it
    index.add(path, metadata=False)
    return path


def kept(tmp_path, served: Path, offset: int, state: bytes | None | str = "good", tail: bytes = b"") -> Path:
    """The partial and checkpoint a run killed at `offset` leaves (plus `tail`: bytes written, never fsynced)."""
    data = served.read_bytes()
    sha = hashlib.sha256(data).hexdigest()
    folder = tmp_path / "state" / "downloads"
    folder.mkdir(parents=True)
    (folder / f"{sha}.part").write_bytes(data[:offset] + tail)
    if state == "good":
        hasher = ResumableSha256()
        hasher.update(data[:offset])
        state = hasher.state()
    doc = {"digest": f"sha256:{sha}", "size": len(data), "offset": offset,
           "sha256_state": base64.b64encode(state).decode() if state else None}
    (folder / f"{sha}.json").write_text(json.dumps(doc))
    return folder


def download(index, tmp_path, served):
    client = PackageIndex("source", index.url)
    package = next(p for p in client.files("blob") if p.filename == served.name)
    out = tmp_path / "out.whl"
    digest = client.download(package, out)
    assert out.read_bytes() == served.read_bytes()
    assert digest == f"sha256:{hashlib.sha256(out.read_bytes()).hexdigest()}"
    return [r for p, r in index.requests if p == f"/files/{served.name}"]


@pytest.mark.parametrize("state", ["good", None], ids=["hash-state-kept", "re-hashed"])
def test_resume_from_the_checkpoint_not_from_unsynced_bytes(tmp_path, index, served, state):
    folder = kept(tmp_path, served, MIB + 17, state, tail=b"\0" * 5000)  # the tail never counts
    assert download(index, tmp_path, served) == [f"bytes={MIB + 17}-"]
    assert index.bytes_sent[served.name] == SIZE - MIB - 17
    assert not list(folder.iterdir())


def test_a_server_that_ignores_range_means_starting_over(tmp_path, index, served):
    kept(tmp_path, served, 2 * MIB)
    index.ignore_range = True
    # the whole body that came back was not taken for the rest of the file: a second, plain GET
    assert download(index, tmp_path, served) == [f"bytes={2 * MIB}-", ""]


def test_a_saved_state_of_other_bytes_means_starting_over(tmp_path, index, served):
    other = ResumableSha256()
    other.update(os.urandom(MIB))  # a checkpoint whose state belongs to other bytes
    kept(tmp_path, served, MIB, other.state())
    assert download(index, tmp_path, served) == [""]


@pytest.mark.parametrize("state", ["good", None], ids=["caught-by-the-saved-state", "caught-by-the-digest"])
def test_kept_bytes_damaged_after_their_checkpoint_never_reach_the_target(tmp_path, index, served, state):
    folder = kept(tmp_path, served, 2 * MIB, state)
    part = next(folder.glob("*.part"))
    damaged = bytearray(part.read_bytes())
    damaged[12345] ^= 0xFF  # the disk (or someone with access to the state dir) changed one byte
    part.write_bytes(bytes(damaged))
    # with a saved state the kept bytes are checked before asking for the rest; without one the
    # whole file's digest catches it, and the file is fetched again rather than refused
    assert download(index, tmp_path, served) == ([""] if state else [f"bytes={2 * MIB}-", ""])


@pytest.mark.parametrize("index_size", [True, False], ids=["index-gives-size", "server-gives-size"])
def test_a_checkpoint_for_another_length_is_not_used(tmp_path, index, served, index_size):
    folder = kept(tmp_path, served, MIB)
    record = next(folder.glob("*.json"))
    record.write_text(record.read_text().replace(f'"size": {SIZE}', f'"size": {SIZE + 1}'))
    client = PackageIndex("source", index.url)
    package = next(p for p in client.files("blob") if p.filename == served.name)
    if index_size:
        package.size = SIZE  # as a PEP 691 index states it: known before asking for any byte
    client.download(package, tmp_path / "out.whl")
    assert (tmp_path / "out.whl").read_bytes() == served.read_bytes()
    ranges = [r for p, r in index.requests if p == f"/files/{served.name}"]
    assert ranges == ([""] if index_size else [f"bytes={MIB}-", ""])


def test_partials_untouched_for_two_weeks_are_removed(tmp_path, index, served, monkeypatch):
    import regsync.content.partial as partial

    monkeypatch.setattr(partial, "_pruned", set())
    folder = tmp_path / "state" / "downloads"
    folder.mkdir(parents=True)
    old, recent = folder / f"{'a' * 64}.part", folder / f"{'b' * 64}.part"
    for part in (old, recent):
        part.write_bytes(b"x" * 100)
        part.with_suffix(".json").write_text("{}")
    two_weeks_ago = time.time() - partial.STALE_SECONDS - 60
    os.utime(old, (two_weeks_ago, two_weeks_ago))
    download(index, tmp_path, served)
    assert sorted(p.name for p in folder.iterdir()) == sorted([recent.name, recent.with_suffix(".json").name])
