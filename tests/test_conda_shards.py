"""Channels that serve a subdir as CEP-16 shards only (`shards: allow`): regsync reads the shard
index and the shards a rule needs itself, bounded and checked against the index's sha256, and
rattler solves from regsync's local copy. The shards are rattler's own indexer's output
(`rattler.index.index_fs(write_shards=True)`), or written here in CEP-16's format from real
records (tests/data/conda-real), served over HTTP on loopback."""

from __future__ import annotations

import functools
import hashlib
import json
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import msgpack
import pytest
from backports import zstd

from tests.fixtures.conda import Pkg, make_channel, serve
from tests.fixtures.policies import run_cli
from tests.test_conda import solve_and_install
from tests.test_conda_real import DATA, planned, provide, real_channel

INDEX = "repodata_shards.msgpack.zst"


def shards_only(root: Path, subdirs=("linux-64", "noarch")) -> Path:
    for subdir in subdirs:
        assert (root / subdir / INDEX).exists()
        (root / subdir / "repodata.json").unlink()
        (root / subdir / "repodata.json.zst").unlink(missing_ok=True)
    return root


def read_index(root: Path, subdir: str) -> dict:
    return msgpack.unpackb(zstd.decompress((root / subdir / INDEX).read_bytes()))


def write_index(root: Path, subdir: str, index: dict) -> None:
    (root / subdir / INDEX).write_bytes(zstd.compress(msgpack.packb(index)))


def shard_path(root: Path, subdir: str, name: str) -> Path:
    return root / subdir / "shards" / f"{read_index(root, subdir)['shards'][name].hex()}.msgpack.zst"


def shard_repodata(root: Path, subdir: str, removed: dict[str, list[str]], base_url: str = "") -> None:
    """CEP-16 shards of a repodata.json, the way conda-index writes them (conda_index/index/shards.py:
    one shard per package name, `sha256`/`md5` as bytes, the index naming each shard's sha256);
    `removed`: a package's withdrawn files, in its shard. The repodata.json is then removed."""
    repodata = json.loads((root / subdir / "repodata.json").read_text())
    shards: dict[str, dict] = {}
    for key in ("packages", "packages.conda"):
        for filename, record in repodata.get(key, {}).items():
            packed = {k: bytes.fromhex(v) if k in ("sha256", "md5") else v for k, v in record.items()}
            shard = shards.setdefault(record["name"], {"packages": {}, "packages.conda": {},
                                                       "removed": removed.get(record["name"], [])})
            shard[key][filename] = packed
    (root / subdir / "shards").mkdir()
    digests = {}
    for name, shard in shards.items():
        raw = zstd.compress(msgpack.packb(shard))
        digests[name] = hashlib.sha256(raw).digest()
        (root / subdir / "shards" / f"{digests[name].hex()}.msgpack.zst").write_bytes(raw)
    write_index(root, subdir, {"info": {"subdir": subdir, "base_url": base_url, "shards_base_url": "./shards/"},
                               "shards": digests})
    (root / subdir / "repodata.json").unlink()


def policy(tmp_path: Path, url: str, specs=("app",), dependencies=True) -> Path:
    path = tmp_path / "policy.yaml"
    path.write_text(f"""\
version: 1
channels:
  sharded: {{url: "{url}", shards: allow}}
  internal: {{kind: directory, path: {tmp_path / 'mirror'}}}
conda:
  - {{from: sharded, to: internal, platforms: [linux-64], specs: {json.dumps(list(specs))}, dependencies: {str(dependencies).lower()}}}
audit: {{path: {tmp_path / 'audit.jsonl'}}}
""")
    return path


@pytest.fixture
def sharded(tmp_path, monkeypatch):
    """app (linux-64) depends on lib (linux-64) and helper (noarch); `unrelated` is not needed."""
    monkeypatch.setenv("REGSYNC_STATE_DIR", str(tmp_path / "state"))
    return shards_only(make_channel(tmp_path / "sharded", [
        Pkg("app", "2.0", "0", depends=("lib >=1", "helper")), Pkg("lib", "1.0", "0"),
        Pkg("helper", "0.5", "0", subdir="noarch"), Pkg("unrelated", "9.9", "0")], shards=True))


def serve_logging_agents(root: Path) -> tuple[ThreadingHTTPServer, list[tuple[str, str]]]:
    """The directory over HTTP on loopback; each GET's (path, User-Agent) kept."""
    seen: list[tuple[str, str]] = []

    class Handler(SimpleHTTPRequestHandler):
        def do_GET(self):
            seen.append((self.path, self.headers.get("User-Agent", "")))
            super().do_GET()

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Handler, directory=str(root)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, seen


def test_a_shards_only_channel_syncs_what_the_rule_needs_and_installs(tmp_path, sharded):
    """regsync itself (its User-Agent) reads the index and the three shards the closure needs, never
    `unrelated`'s; the mirror installs with rattler's installer."""
    server, seen = serve_logging_agents(sharded)
    try:
        synced = run_cli("sync", "-p", policy(tmp_path, f"http://127.0.0.1:{server.server_address[1]}"))
    finally:
        server.shutdown()
        server.server_close()
    assert synced.exit_code == 0, synced.output
    shards = [path for path, _ in seen if "/shards/" in path]
    assert {agent.split("/")[0] for path, agent in seen if "shards" in path} == {"regsync"}
    assert sorted(shards) == sorted(["/linux-64/shards/" + shard_path(sharded, "linux-64", n).name for n in ("app", "lib")]
                                    + ["/noarch/shards/" + shard_path(sharded, "noarch", "helper").name])
    mirror = serve(tmp_path / "mirror")
    try:
        installed = solve_and_install([mirror.url], tmp_path / "env", virtual={})
    finally:
        mirror.stop()
    assert {name: version for name, (version, _, _) in installed.items()} == {"app": "2.0", "lib": "1.0", "helper": "0.5"}


def test_two_rules_on_one_shards_only_channel_each_read_what_they_need(tmp_path, sharded):
    """The first rule reads lib's shard only; the second needs app's and helper's too: the local copy
    grows and the second solve sees it (rattler's in-memory copy of the subdir is dropped)."""
    server = serve(sharded)
    path = tmp_path / "policy.yaml"
    path.write_text(f"""\
version: 1
channels:
  sharded: {{url: "{server.url}", shards: allow}}
  internal: {{kind: directory, path: {tmp_path / 'mirror'}}}
conda:
  - {{from: sharded, to: internal, platforms: [linux-64], specs: [lib], dependencies: true}}
  - {{from: sharded, to: internal, platforms: [linux-64], specs: [app], dependencies: true}}
audit: {{path: {tmp_path / 'audit.jsonl'}}}
""")
    try:
        planned = run_cli("plan", "-p", path, "--json")
    finally:
        server.stop()
    assert planned.exit_code == 0, planned.output
    assert {item["source"] for item in json.loads(planned.stdout)["items"]} == {
        "sharded/linux-64/lib-1.0-0.conda", "sharded/linux-64/app-2.0-0.conda", "sharded/noarch/helper-0.5-0.conda"}
    assert len([p for p in server.paths if "/shards/" in p]) == 3   # each shard read once


def test_a_dependency_named_in_another_subdirs_repodata_json_has_its_shard_read(tmp_path, monkeypatch):
    """linux-64 as shards only, noarch as repodata.json: app (shards) needs helper (noarch's
    repodata.json), which needs lib, found only in linux-64's shards."""
    monkeypatch.setenv("REGSYNC_STATE_DIR", str(tmp_path / "state"))
    root = shards_only(make_channel(tmp_path / "mixed", [
        Pkg("app", "2.0", "0", depends=("helper",)), Pkg("helper", "0.5", "0", subdir="noarch", depends=("lib",)),
        Pkg("lib", "1.0", "0")], shards=True), subdirs=("linux-64",))
    server = serve(root)
    try:
        items = planned(policy(tmp_path, server.url))
    finally:
        server.stop()
    assert {item["source"] for item in items} == {
        "sharded/linux-64/app-2.0-0.conda", "sharded/noarch/helper-0.5-0.conda", "sharded/linux-64/lib-1.0-0.conda"}
    assert not [p for p in server.paths if "/noarch/shards/" in p]


def test_records_from_shards_reach_the_target_as_published(tmp_path, monkeypatch):
    """mamba's conda-forge records (libffi in both formats), sharded as CEP-16 says: the target lists
    them key for key as published, digests as hex, and the `removed` entry of libffi's shard."""
    monkeypatch.setenv("REGSYNC_STATE_DIR", str(tmp_path / "state"))
    root = real_channel(tmp_path, "conda-forge-numpy")
    both = {ext: provide(root, "linux-64", f"libffi-3.4.2-h7f98852_5{ext}") for ext in (".tar.bz2", ".conda")}
    (root / "noarch").mkdir()
    (root / "noarch" / "repodata.json").write_text('{"info": {"subdir": "noarch"}, "packages": {}}')
    shard_repodata(root, "linux-64", {"libffi": ["libffi-3.4.1-h7f98852_4.tar.bz2"], "pip": ["pip-23.3-pyhd8ed1ab_0.conda"]})
    server = serve(root)
    try:
        synced = run_cli("sync", "-p", policy(tmp_path, server.url, ["libffi"], dependencies=False))
    finally:
        server.stop()
    assert synced.exit_code == 0, synced.output
    mirrored = json.loads((tmp_path / "mirror/linux-64/repodata.json").read_text())
    assert mirrored["packages"]["libffi-3.4.2-h7f98852_5.tar.bz2"] == both[".tar.bz2"]
    assert mirrored["packages.conda"]["libffi-3.4.2-h7f98852_5.conda"] == both[".conda"]
    assert "pip-24.0-pyhd8ed1ab_0.conda" not in mirrored["packages.conda"]
    assert mirrored["removed"] == ["libffi-3.4.1-h7f98852_4.tar.bz2"]   # pip's shard is never read


def test_a_shard_whose_bytes_do_not_match_the_index_is_refused(tmp_path, sharded):
    lib = shard_path(sharded, "linux-64", "lib")
    lib.write_bytes(zstd.compress(zstd.decompress(lib.read_bytes()), level=19))   # same records, other bytes
    assert hashlib.sha256(lib.read_bytes()).hexdigest() != lib.name.split(".")[0]
    server = serve(sharded)
    try:
        synced = run_cli("sync", "-p", policy(tmp_path, server.url))
    finally:
        server.stop()
    assert synced.exit_code != 0, synced.output
    assert (f"sharded/linux-64/lib (shard {lib.name.split('.')[0]}): its bytes do not match the sha256 the shard "
            "index names; refused") in synced.output
    assert not (tmp_path / "mirror/linux-64/app-2.0-0.conda").exists()


@pytest.mark.parametrize("bound, value, message", [
    ("MAX_INDEX_COMPRESSED", 64, "sharded/linux-64/repodata_shards.msgpack.zst: larger than 64 bytes as sent"),
    ("MAX_INDEX", 64, "sharded/linux-64/repodata_shards.msgpack.zst: inflates to more than 64 bytes"),
    ("MAX_INDEX_NAMES", 1, "sharded/linux-64/repodata_shards.msgpack.zst: not a msgpack map within bounds"),
    ("MAX_SHARD_COMPRESSED", 64, "sharded/linux-64/app (shard {app}): larger than 64 bytes as sent"),
    ("MAX_SHARD", 64, "sharded/linux-64/app (shard {app}): inflates to more than 64 bytes"),
    ("MAX_SHARDS", 1, "sharded/linux-64: a solve needs more than 1 shards"),
])
def test_a_shard_index_or_shard_over_the_bounds_is_refused(tmp_path, sharded, monkeypatch, bound, value, message):
    monkeypatch.setattr(f"regsync.kinds.conda.shards.{bound}", value, raising=False)
    server = serve(sharded)
    try:
        synced = run_cli("plan", "-p", policy(tmp_path, server.url))
    finally:
        server.stop()
    assert synced.exit_code != 0, synced.output
    assert message.format(app=shard_path(sharded, "linux-64", "app").name.split(".")[0]) in synced.output


def test_a_zstd_bomb_shard_stops_at_the_bound(tmp_path, sharded, monkeypatch):
    """A shard of 40 MiB of zeros compresses to a few KiB: inflation stops at the bound."""
    monkeypatch.setattr("regsync.kinds.conda.shards.MAX_SHARD", 1 << 20, raising=False)
    bomb = zstd.compress(msgpack.packb({"packages": {}, "packages.conda": {}, "pad": bytes(40 << 20)}))
    assert len(bomb) < 64 << 10
    index = read_index(sharded, "linux-64")
    index["shards"]["app"] = hashlib.sha256(bomb).digest()
    (sharded / "linux-64" / "shards" / f"{index['shards']['app'].hex()}.msgpack.zst").write_bytes(bomb)
    write_index(sharded, "linux-64", index)
    server = serve(sharded)
    try:
        synced = run_cli("plan", "-p", policy(tmp_path, server.url))
    finally:
        server.stop()
    assert synced.exit_code != 0, synced.output
    assert f"sharded/linux-64/app (shard {index['shards']['app'].hex()}): inflates to more than {1 << 20} bytes" in synced.output


def test_shards_on_another_origin_are_refused(tmp_path, sharded):
    elsewhere = serve(sharded)   # the same shards, on another port: another origin
    index = read_index(sharded, "linux-64")
    index["info"]["shards_base_url"] = f"{elsewhere.url}/linux-64/shards/"
    write_index(sharded, "linux-64", index)
    server = serve(sharded)
    try:
        synced = run_cli("plan", "-p", policy(tmp_path, server.url))
    finally:
        server.stop()
        elsewhere.stop()
    assert synced.exit_code != 0, synced.output
    assert (f"sharded/linux-64: the shard index puts its shards on {elsewhere.url}"
            in synced.output), synced.output
    assert "not on the channel's origin" in synced.output
    assert elsewhere.paths == []


def test_files_come_from_the_shard_indexs_base_url(tmp_path, monkeypatch):
    """conda's CEP-15 base_url channel, sharded: the index's `base_url` (on another server) is where
    the files are, as for a repodata.json's; the shards themselves are the channel's."""
    monkeypatch.setenv("REGSYNC_STATE_DIR", str(tmp_path / "state"))
    files = tmp_path / "files"
    channel = real_channel(tmp_path, "base-url")
    filename = "ca-certificates-2024.3.11-h06a4308_0.conda"
    (files / "pkgs/main/linux-64").mkdir(parents=True)
    (files / "pkgs/main/linux-64/repodata.json").write_bytes((DATA / "base-url/linux-64/repodata.json").read_bytes())
    record = provide(files / "pkgs/main", "linux-64", filename)
    file_server = serve(files)
    repodata = json.loads((channel / "linux-64/repodata.json").read_text())
    repodata["packages.conda"][filename] = record
    (channel / "linux-64/repodata.json").write_text(json.dumps(repodata))
    shard_repodata(channel, "linux-64", {}, base_url=f"{file_server.url}/pkgs/main/linux-64")
    index = serve(channel)
    try:
        path = policy(tmp_path, index.url, ["ca-certificates"], dependencies=False)
        [item] = planned(path)
        assert item["reason"] == f"from {file_server.url}/pkgs/main/linux-64/ (the channel's base_url)"
        synced = run_cli("sync", "-p", path)
        assert synced.exit_code == 0, synced.output
        assert f"/pkgs/main/linux-64/{filename}" in file_server.paths
        assert not any(filename in p for p in index.paths)
    finally:
        index.stop(), file_server.stop()
