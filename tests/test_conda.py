"""Conda channels end to end, with real formats and a real client: `.conda` packages built by
conda-package-handling, indexed by rattler, one record hot-fixed after indexing, served over HTTP on
loopback; mirrored with regsync; then installed from the mirror with py-rattler's solver and
installer, and compared with installing from upstream."""

from __future__ import annotations

import asyncio
import json
import shutil
import time

import pytest
from backports import zstd

from tests.fixtures.conda import Pkg, make_channel, patch_record, serve, write_repodata
from tests.fixtures.policies import audit_records, run_cli

CUDA = {"__cuda": "11.8", "__glibc": "2.31"}


@pytest.fixture(scope="module")
def upstream(tmp_path_factory):
    """forge (first priority) and main. main has a newer `shared` that strict priority must not take,
    and `extra`, which only the hot-fixed record of app names (app's own info/index.json does not)."""
    root = tmp_path_factory.mktemp("conda-upstream")
    forge = make_channel(root / "forge", [
        Pkg("app", "2.0", "0", depends=("libfoo 1.0.*", "helper", "shared")),
        Pkg("libfoo", "1.0", "cuda118_1", depends=("__cuda >=11.8",)),
        Pkg("libfoo", "1.0", "cuda120_2", depends=("__cuda >=12.0",)),
        Pkg("libfoo", "1.0", "cpu_0"),
        Pkg("helper", "0.5", "0", subdir="noarch"),
        Pkg("shared", "1.0", "0"),
        Pkg("unrelated", "9.9", "0"),
    ])
    patch_record(forge, "linux-64", "app-2.0-0.conda", depends=["libfoo 1.0.*", "helper", "shared", "extra"])
    main = make_channel(root / "main", [Pkg("shared", "2.0", "0"), Pkg("extra", "1.0", "0")])
    servers = [serve(forge), serve(main)]
    yield {"forge": servers[0], "main": servers[1]}
    for server in servers:
        server.stop()


def policy(tmp_path, upstream, specs=("app",), dependencies=True, virtual=CUDA, target=None, extra_channels=""):
    target = target or f"{{kind: directory, path: {tmp_path / 'mirror'}}}"
    path = tmp_path / "policy.yaml"
    path.write_text(f"""\
version: 1
channels:
  forge: {{url: "{upstream['forge'].url}"}}
  main: {{url: "{upstream['main'].url}"}}
  internal: {target}
{extra_channels}conda:
  - from: [forge, main]
    to: internal
    platforms: [linux-64]
    specs: {json.dumps(list(specs))}
    dependencies: {str(dependencies).lower()}
    virtual_packages: {json.dumps(virtual)}
audit: {{path: audit.jsonl}}
""")
    return path


def solve_and_install(urls: list[str], prefix, specs=("app",), virtual=CUDA):
    """A real conda client: rattler's solver and installer (what pixi runs), against channels `urls`
    in priority order; returns name → (version, build, sha256) of what it installed."""
    import rattler

    from regsync.kinds.conda.channel import virtual_packages

    async def run():
        records = await rattler.solve([rattler.Channel(url + "/") for url in urls], list(specs), platforms=["linux-64", "noarch"],
                                      virtual_packages=virtual_packages("linux-64", virtual),
                                      gateway=rattler.Gateway(cache_dir=str(prefix) + "-repodata"))
        await rattler.install(records, target_prefix=str(prefix), cache_dir=f"{prefix}-pkgs",
                              platform=rattler.Subdir("linux-64"), show_progress=False)
        return records

    records = asyncio.run(run())
    return {r.name.normalized: (str(r.version), str(r.build), _hex(r.sha256)) for r in records}


def _hex(value) -> str:
    return value.hex() if isinstance(value, bytes) else str(value)


def installed_files(prefix) -> dict[str, str]:
    return {str(p.relative_to(prefix)): p.read_text() for p in (prefix / "share" / "regsync-test").iterdir()}


def test_the_mirror_installs_what_upstream_installs(tmp_path, upstream):
    path = policy(tmp_path, upstream)
    planned = run_cli("plan", "-p", path, "--json", "-o", tmp_path / "plan.json")
    assert planned.exit_code == 0, planned.output
    items = json.loads((tmp_path / "plan.json").read_text())["items"]
    files = {item["source"]: item for item in items}
    assert set(files) == {"forge/linux-64/app-2.0-0.conda", "forge/linux-64/libfoo-1.0-cuda118_1.conda",
                          "forge/noarch/helper-0.5-0.conda", "forge/linux-64/shared-1.0-0.conda",
                          "main/linux-64/extra-1.0-0.conda"}
    app = files["forge/linux-64/app-2.0-0.conda"]
    assert app["kind"] == "conda" and app["action"] == "copy" and app["target"] == "internal/linux-64/app-2.0-0.conda"
    upstream_app = json.loads((upstream["forge"].root / "linux-64/repodata.json").read_text())[
        "packages.conda"]["app-2.0-0.conda"]
    assert app["digest"] == f"sha256:{upstream_app['sha256']}" and app["bytes"] == upstream_app["size"]

    synced = run_cli("sync", "-p", path, "--plan", tmp_path / "plan.json")
    assert synced.exit_code == 0, synced.output
    mirror = tmp_path / "mirror"
    repodata = json.loads((mirror / "linux-64/repodata.json").read_text())
    assert set(repodata["packages.conda"]) == {"app-2.0-0.conda", "libfoo-1.0-cuda118_1.conda",
                                               "shared-1.0-0.conda", "extra-1.0-0.conda"}
    assert repodata["packages.conda"]["app-2.0-0.conda"] ["depends"] == upstream_app["depends"]  # the hot-fix
    assert "extra" in upstream_app["depends"]
    assert zstd.decompress((mirror / "linux-64/repodata.json.zst").read_bytes()) == \
        (mirror / "linux-64/repodata.json").read_bytes()
    assert set(json.loads((mirror / "noarch/repodata.json").read_text())["packages.conda"]) == {"helper-0.5-0.conda"}
    assert sorted(p.name for p in (mirror / "linux-64").glob("*.conda")) == sorted(repodata["packages.conda"])
    pushed = [r for r in audit_records(tmp_path / "audit.jsonl") if r["event"] == "pushed"]
    assert len(pushed) == 5 and all(r["artifact"]["kind"] == "conda" for r in pushed)
    started = [r for r in audit_records(tmp_path / "audit.jsonl", frame=True) if r["event"] == "run-started"]
    assert started[-1]["targets"] == ["internal"]
    assert all(r["verification"]["method"] == "sha256" for r in pushed)

    served = serve(mirror)
    try:
        from_mirror = solve_and_install([served.url], tmp_path / "env-mirror")
    finally:
        served.stop()
    from_upstream = solve_and_install([upstream["forge"].url, upstream["main"].url], tmp_path / "env-upstream")
    assert from_mirror == from_upstream
    assert from_mirror["libfoo"][1] == "cuda118_1" and from_mirror["shared"][0] == "1.0"
    assert "extra" in from_mirror  # only the patched record names it
    assert installed_files(tmp_path / "env-mirror") == installed_files(tmp_path / "env-upstream")


def test_a_resync_is_a_no_op(tmp_path, upstream):
    path = policy(tmp_path, upstream)
    assert run_cli("sync", "-p", path).exit_code == 0
    before = {p: p.stat().st_mtime_ns for p in (tmp_path / "mirror").rglob("*")}
    again = run_cli("plan", "-p", path, "--json")
    assert again.exit_code == 0, again.output
    assert {item["action"] for item in json.loads(again.stdout)["items"]} == {"skip"}
    synced = run_cli("sync", "-p", path)
    assert synced.exit_code == 0
    assert {p: p.stat().st_mtime_ns for p in (tmp_path / "mirror").rglob("*")} == before


def test_one_rule_serves_several_hosts(tmp_path, upstream):
    """One closure per virtual-package set: a CUDA 11.8 host gets the cuda118 build, a 12.4 host the cuda120 one."""
    path = policy(tmp_path, upstream, virtual=[{"__cuda": "11.8"}, {"__cuda": "12.4"}])
    planned = run_cli("plan", "-p", path, "--json")
    assert planned.exit_code == 0, planned.output
    libfoo = {i["source"].rsplit("/", 1)[1] for i in json.loads(planned.stdout)["items"] if "libfoo" in i["source"]}
    assert libfoo == {"libfoo-1.0-cuda118_1.conda", "libfoo-1.0-cuda120_2.conda"}
    assert run_cli("sync", "-p", path).exit_code == 0
    served = serve(tmp_path / "mirror")
    try:
        assert solve_and_install([served.url], tmp_path / "env", virtual={"__cuda": "12.4"})["libfoo"][1] == "cuda120_2"
    finally:
        served.stop()


def test_without_dependencies_only_matching_records(tmp_path, upstream):
    path = policy(tmp_path, upstream, specs=["libfoo", "shared"], dependencies=False)
    planned = run_cli("plan", "-p", path, "--json")
    assert planned.exit_code == 0, planned.output
    assert {i["source"] for i in json.loads(planned.stdout)["items"]} == {
        "forge/linux-64/libfoo-1.0-cuda118_1.conda", "forge/linux-64/libfoo-1.0-cuda120_2.conda",
        "forge/linux-64/libfoo-1.0-cpu_0.conda", "forge/linux-64/shared-1.0-0.conda"}  # not main's newer shared


def test_a_saved_plan_cannot_widen_the_policy(tmp_path, upstream):
    path = policy(tmp_path, upstream, specs=["libfoo"], dependencies=False)
    assert run_cli("plan", "-p", path, "-o", tmp_path / "plan.json").exit_code == 0
    plan = json.loads((tmp_path / "plan.json").read_text())
    unrelated = json.loads((upstream["forge"].root / "linux-64/repodata.json").read_text())[
        "packages.conda"]["unrelated-9.9-0.conda"]
    plan["items"] = [dict(plan["items"][0], source="forge/linux-64/unrelated-9.9-0.conda",
                          target="internal/linux-64/unrelated-9.9-0.conda", digest=f"sha256:{unrelated['sha256']}")]
    (tmp_path / "edited.json").write_text(json.dumps(plan))
    refused = run_cli("sync", "-p", path, "--plan", tmp_path / "edited.json")
    assert refused.exit_code == 3, refused.output
    assert "matches none of the specs" in refused.output
    assert not (tmp_path / "mirror/linux-64/unrelated-9.9-0.conda").exists()

    plan["items"] = [dict(plan["items"][0], target="internal/linux-64/../../../etc/x.conda")]
    (tmp_path / "traversal.json").write_text(json.dumps(plan))
    usage = run_cli("sync", "-p", path, "--plan", tmp_path / "traversal.json")
    assert usage.exit_code == 2 and "not channel/subdir/file" in usage.output, usage.output


def test_a_tampered_package_is_refused_and_never_listed(tmp_path):
    channel = make_channel(tmp_path / "evil", [Pkg("good", "1.0", "0"), Pkg("bad", "1.0", "0", depends=("good",))])
    package = channel / "linux-64" / "bad-1.0-0.conda"
    data = bytearray(package.read_bytes())
    data[-10] ^= 0xFF  # same size, other bytes: the repodata's sha256 no longer holds
    package.write_bytes(bytes(data))
    served = serve(channel)
    try:
        path = tmp_path / "policy.yaml"
        path.write_text(f"""\
version: 1
channels:
  evil: {{url: "{served.url}"}}
  internal: {{kind: directory, path: {tmp_path / 'mirror'}}}
conda:
  - {{from: evil, to: internal, platforms: [linux-64], specs: [bad], dependencies: true}}
audit: {{path: audit.jsonl}}
""")
        result = run_cli("sync", "-p", path)
    finally:
        served.stop()
    assert result.exit_code == 3, result.output
    mirror = tmp_path / "mirror"
    assert not (mirror / "linux-64/bad-1.0-0.conda").exists()
    assert list(json.loads((mirror / "linux-64/repodata.json").read_text())["packages.conda"]) == ["good-1.0-0.conda"]
    assert not list(mirror.rglob(".regsync-*"))
    refused = [r for r in audit_records(tmp_path / "audit.jsonl") if r["event"] == "refused"]
    assert [r["artifact"]["source"] for r in refused] == ["evil/linux-64/bad-1.0-0.conda"]
    assert "digest mismatch" in refused[0]["reason"]


def test_zst_only_and_sharded_upstreams(tmp_path, monkeypatch):
    """Whatever repodata the channel publishes (rattler reads .zst and CEP-16 shards), the mirror
    lists the same records."""
    monkeypatch.setenv("REGSYNC_STATE_DIR", str(tmp_path / "state"))   # rattler's shard cache: this test's
    zst_only = make_channel(tmp_path / "zst", [Pkg("good", "1.0", "0")])
    (zst_only / "linux-64" / "repodata.json").unlink()
    sharded = make_channel(tmp_path / "sharded", [Pkg("other", "2.0", "0")], shards=True)
    assert (sharded / "linux-64" / "repodata_shards.msgpack.zst").exists()
    (sharded / "linux-64" / "repodata.json").unlink()
    (sharded / "linux-64" / "repodata.json.zst").unlink()
    servers = [serve(zst_only), serve(sharded)]
    try:
        path = tmp_path / "policy.yaml"
        path.write_text(f"""\
version: 1
channels:
  zst: {{url: "{servers[0].url}"}}
  sharded: {{url: "{servers[1].url}", shards: allow}}
  internal: {{kind: directory, path: {tmp_path / 'mirror'}}}
conda:
  - {{from: [zst, sharded], to: internal, platforms: [linux-64], specs: [good, other], dependencies: true}}
audit: {{path: audit.jsonl}}
""")
        result = run_cli("sync", "-p", path)
    finally:
        for server in servers:
            server.stop()
    assert result.exit_code == 0, result.output
    listed = json.loads((tmp_path / "mirror/linux-64/repodata.json").read_text())["packages.conda"]
    assert set(listed) == {"good-1.0-0.conda", "other-2.0-0.conda"}
    assert "/linux-64/repodata_shards.msgpack.zst" in servers[1].paths


@pytest.mark.parametrize("dependencies", [True, False])
def test_a_shards_only_subdir_is_refused_unless_the_channel_allows_it(tmp_path, monkeypatch, dependencies):
    """A subdir that offers only CEP-16 shards (written by rattler's own indexer, served by nginx as
    any static channel is) is refused, naming the subdir and the setting, before a single shard is
    fetched; `shards: allow` lets regsync read the shards the rule needs."""
    from tests.fixtures.nginx import static_front

    # rattler's own cache of this URL, for this test only: nginx sends no Cache-Control, and a shard
    # index another test cached for a reused port would be taken as fresh
    monkeypatch.setenv("REGSYNC_STATE_DIR", str(tmp_path / "state"))

    sharded = make_channel(tmp_path / "sharded", [Pkg("lib", "1.0", "0"), Pkg("app", "2.0", "0", depends=("lib",))],
                           shards=True)
    (sharded / "linux-64" / "repodata.json").unlink()
    (sharded / "linux-64" / "repodata.json.zst").unlink()
    assert list((sharded / "linux-64" / "shards").glob("*.msgpack.zst"))   # the shape CEP-16 gives
    front = static_front(tmp_path / "nginx", sharded)
    path = tmp_path / "policy.yaml"

    def plan(setting: str):
        path.write_text(f"""\
version: 1
channels:
  sharded: {{url: "{front.url}"{setting}}}
  internal: {{kind: directory, path: {tmp_path / 'mirror'}}}
conda:
  - {{from: sharded, to: internal, platforms: [linux-64], specs: [app], dependencies: {str(dependencies).lower()}}}
audit: {{path: audit.jsonl}}
""")
        return run_cli("plan", "-p", path, "--json")

    try:
        refused = plan("")
        requested = [uri for uri, _ in front.ranges()]
        allowed = plan(", shards: allow")
    finally:
        front.stop()
    assert refused.exit_code == 1, refused.output
    assert ("sharded/linux-64: the channel offers only CEP-16 shards here (no repodata.json), which regsync reads "
            "only when told to; refused (`shards: allow` on channel sharded lets regsync read them") in refused.output
    assert "/linux-64/repodata_shards.msgpack.zst" in requested
    assert not [uri for uri in requested if "/shards/" in uri]   # no shard read
    assert allowed.exit_code == 0, allowed.output
    planned = {item["source"] for item in json.loads(allowed.stdout)["items"]}
    expected = {"sharded/linux-64/app-2.0-0.conda"} | ({"sharded/linux-64/lib-1.0-0.conda"} if dependencies else set())
    assert planned == expected


def test_shards_allow_is_for_source_channels(tmp_path):
    path = tmp_path / "policy.yaml"
    path.write_text(f"""\
version: 1
channels:
  up: {{url: "https://conda.example/up"}}
  internal: {{kind: directory, path: {tmp_path / 'mirror'}, shards: allow}}
conda:
  - {{from: up, to: internal, platforms: [linux-64], specs: [app]}}
""")
    result = run_cli("policy", "check", "-p", path)
    assert result.exit_code == 2 and "shards: is for source channels" in result.output, result.output


def test_an_http_put_target(tmp_path, upstream):
    """Files and then repodata written by PUT with Basic auth (nginx dav_methods PUT stands in for a
    Nexus raw-hosted repository); installing from it gives what upstream gives."""
    from tests.fixtures.nginx import dav_front

    raw = dav_front(tmp_path / "nginx")
    try:
        target = (f'{{kind: http, url: "{raw.url}/repository/conda-raw", '
                  f'auth: {{username: {raw.username}, password: "${{RAW_PASSWORD}}"}}}}')
        path = policy(tmp_path, upstream, target=target)
        env = {"RAW_PASSWORD": raw.password}
        synced = run_cli("sync", "-p", path, env=env)
        assert synced.exit_code == 0, synced.output
        puts = [r["uri"] for r in raw.requests() if r["method"] == "PUT" and r["status"] in (201, 204)]
        packages = [i for i, uri in enumerate(puts) if uri.endswith(".conda")]
        listed = [i for i, uri in enumerate(puts) if uri.endswith("/linux-64/repodata.json")]
        assert len(packages) == 5 and listed and min(listed) > packages[0]  # a file first, then a listing
        repodata = json.loads((raw.files / "linux-64/repodata.json").read_text())
        assert set(repodata["packages.conda"]) == {p.name for p in (raw.files / "linux-64").glob("*.conda")}
        assert (raw.files / "noarch/repodata.json").exists()
        assert "raw-Pa55" not in synced.output and "raw-Pa55" not in (tmp_path / "audit.jsonl").read_text()
        again = run_cli("plan", "-p", path, "--json", env=env)
        assert {i["action"] for i in json.loads(again.stdout)["items"]} == {"skip"}
        wrong = run_cli("sync", "-p", path, env={"RAW_PASSWORD": "wrong"})
        assert wrong.exit_code == 1 and "401" in wrong.output, wrong.output
    finally:
        raw.stop()
    # the files nginx stored, served as a static channel, install like upstream
    served = serve(raw.files)
    try:
        assert solve_and_install([served.url], tmp_path / "env") == \
            solve_and_install([upstream["forge"].url, upstream["main"].url], tmp_path / "env-up")
    finally:
        served.stop()


def test_client_config_for_conda_and_pixi(tmp_path, upstream):
    """The .condarc names only the internal channel; pixi's mirrors, read by rattler's own config and
    client (what pixi runs), send a solve that names the upstream channels to the mirror."""
    import rattler
    import yaml

    (tmp_path / "mirror").mkdir()
    served = serve(tmp_path / "mirror")
    try:
        path = policy(tmp_path, upstream, target=f"{{kind: directory, path: {tmp_path / 'mirror'}, url: \"{served.url}\"}}")
        assert run_cli("sync", "-p", path).exit_code == 0
        condarc = run_cli("client-config", "-p", path, "--for", "conda")
        assert condarc.exit_code == 0, condarc.output
        parsed = yaml.safe_load(condarc.stdout)
        assert parsed["channels"] == [served.url] and parsed["channel_priority"] == "strict"
        pixi = run_cli("client-config", "-p", path, "--for", "pixi")
        assert pixi.exit_code == 0, pixi.output
        config = rattler.Config.from_toml(pixi.stdout)
        assert config.mirrors == {upstream["forge"].url + "/": [served.url + "/"],
                                  upstream["main"].url + "/": [served.url + "/"]}
        before = len(upstream["forge"].paths)

        async def solve_through_mirrors():
            client = rattler.Client.from_config(config)
            return await rattler.solve([rattler.Channel(upstream["forge"].url + "/"), rattler.Channel(upstream["main"].url + "/")],
                                       ["app"], platforms=["linux-64", "noarch"],
                                       gateway=rattler.Gateway(cache_dir=str(tmp_path / "pixi-cache"), client=client),
                                       virtual_packages=virtual_packages("linux-64", CUDA))

        from regsync.kinds.conda.channel import virtual_packages

        records = asyncio.run(solve_through_mirrors())
        assert {r.name.normalized for r in records} == {"app", "libfoo", "helper", "shared", "extra"}
        assert len(upstream["forge"].paths) == before  # upstream was not asked
        assert any("repodata" in p for p in served.paths)
    finally:
        served.stop()
    nothing = run_cli("client-config", "-p", tmp_path / "none.yaml", "--for", "conda")
    assert nothing.exit_code == 2 and nothing.stdout == ""


def test_a_later_upstream_patch_reaches_the_mirror(tmp_path):
    """Hot-fixes keep coming after a file is mirrored: the next run lists the patched record, the file
    itself is not fetched again; files upstream removed stay listed."""
    channel = make_channel(tmp_path / "up", [Pkg("lib", "1.0", "0"), Pkg("tool", "1.0", "0", depends=("lib",))])
    served = serve(channel)
    try:
        path = tmp_path / "policy.yaml"
        path.write_text(f"""\
version: 1
channels:
  up: {{url: "{served.url}"}}
  internal: {{kind: directory, path: {tmp_path / 'mirror'}}}
conda:
  - {{from: up, to: internal, platforms: [linux-64], specs: [tool], dependencies: true}}
audit: {{path: audit.jsonl}}
""")
        assert run_cli("sync", "-p", path).exit_code == 0
        package = tmp_path / "mirror/linux-64/tool-1.0-0.conda"
        placed = package.stat().st_mtime_ns
        time.sleep(1.1)  # the fixture server's Last-Modified counts whole seconds (If-Modified-Since)
        patched = patch_record(channel, "linux-64", "tool-1.0-0.conda", depends=["lib >=1.0"])
        planned = json.loads(run_cli("plan", "-p", path, "--json").stdout)["items"]
        assert {i["source"].rsplit("/", 1)[1]: i["action"] for i in planned} == {
            "tool-1.0-0.conda": "update", "lib-1.0-0.conda": "skip"}
        fetched = len(served.paths)
        assert run_cli("sync", "-p", path).exit_code == 0
        assert not any(p.endswith(".conda") for p in served.paths[fetched:])
        listed = json.loads((tmp_path / "mirror/linux-64/repodata.json").read_text())["packages.conda"]
        assert listed["tool-1.0-0.conda"]["depends"] == patched["depends"] == ["lib >=1.0"]
        assert package.stat().st_mtime_ns == placed

        time.sleep(1.1)
        repodata = json.loads((channel / "linux-64/repodata.json").read_text())
        del repodata["packages.conda"]["lib-1.0-0.conda"]  # upstream drops a file (and the dependency on it)
        repodata["packages.conda"]["tool-1.0-0.conda"]["depends"] = []
        write_repodata(channel, "linux-64", repodata)
        (channel / "linux-64/lib-1.0-0.conda").unlink()
        assert run_cli("sync", "-p", path).exit_code == 0
        listed = json.loads((tmp_path / "mirror/linux-64/repodata.json").read_text())["packages.conda"]
        assert "lib-1.0-0.conda" in listed and (tmp_path / "mirror/linux-64/lib-1.0-0.conda").exists()
    finally:
        served.stop()


def test_a_killed_run_resumes_a_large_package(tmp_path):
    """The shared download path (the one wheels take): SIGKILL halfway through a large .conda, rerun,
    and only the rest is asked for (Range), from a static web server."""
    import hashlib
    import os
    import signal
    import subprocess
    import sys

    from tests.fixtures.nginx import static_front

    size = 24 << 20
    channel = make_channel(tmp_path / "up", [Pkg("bigcuda", "1.0", "0", payload=os.urandom(size))])
    package = channel / "linux-64/bigcuda-1.0-0.conda"
    sha = hashlib.sha256(package.read_bytes()).hexdigest()
    web = static_front(tmp_path / "nginx", channel)
    try:
        path = tmp_path / "policy.yaml"
        path.write_text(f"""\
version: 1
channels:
  up: {{url: "{web.url}"}}
  internal: {{kind: directory, path: {tmp_path / 'mirror'}}}
conda:
  - {{from: up, to: internal, platforms: [linux-64], specs: [bigcuda]}}
audit: {{path: audit.jsonl}}
""")
        state = tmp_path / "state"
        env = dict(os.environ, REGSYNC_STATE_DIR=str(state))
        part = state / "downloads" / f"{sha}.part"
        command = [sys.executable, "-m", "regsync", "--no-progress", "-q", "sync", "-p", str(path)]
        first = subprocess.Popen([*command, "--bandwidth", "4MiB"], cwd=tmp_path, env=env,
                                 stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and first.poll() is None:
            if part.exists() and part.stat().st_size >= package.stat().st_size // 2:
                break
            time.sleep(0.02)
        assert first.poll() is None, first.stderr.read().decode()[-2000:]
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=10)
        first.stderr.close()
        offset = json.loads((state / "downloads" / f"{sha}.json").read_text())["offset"]
        assert 0 < offset and not (tmp_path / "mirror/linux-64/bigcuda-1.0-0.conda").exists()

        again = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
        assert again.returncode == 0, again.stderr
        asked = [r for uri, r in web.ranges() if uri == "/linux-64/bigcuda-1.0-0.conda"]
        assert asked[-1] == f"bytes={offset}-"
        assert hashlib.sha256((tmp_path / "mirror/linux-64/bigcuda-1.0-0.conda").read_bytes()).hexdigest() == sha
        assert not part.exists()
    finally:
        web.stop()


def test_an_air_gap_round_trip(tmp_path):
    """Export on the connected side (files verified into the bundle, records as published), upstream
    gone, import on the far side: the closure is solved again from the bundle, every file verified
    again, and the mirror installs what upstream installed."""
    channel = make_channel(tmp_path / "up", [
        Pkg("app", "2.0", "0", depends=("lib",)), Pkg("lib", "1.0", "cuda118_1", depends=("__cuda >=11.8",)),
        Pkg("lib", "1.0", "cpu_0"), Pkg("helper", "0.5", "0", subdir="noarch"), Pkg("unrelated", "1.0", "0")])
    patch_record(channel, "linux-64", "app-2.0-0.conda", depends=["lib", "helper"])
    served = serve(channel)
    path = tmp_path / "policy.yaml"
    path.write_text(f"""\
version: 1
channels:
  up: {{url: "{served.url}"}}
  internal: {{kind: directory, path: {tmp_path / 'mirror'}}}
conda:
  - {{from: up, to: internal, platforms: [linux-64], specs: [app], dependencies: true, virtual_packages: {{__cuda: "11.8"}}}}
audit: {{path: audit.jsonl}}
""")
    try:
        expected = solve_and_install([served.url], tmp_path / "env-up", virtual={"__cuda": "11.8"})
        exported = run_cli("export", "-p", path, "-o", tmp_path / "bundle")
        assert exported.exit_code == 0, exported.output
    finally:
        served.stop()
    bundle = json.loads((tmp_path / "bundle/bundle.json").read_text())
    assert {e["filename"] for e in bundle["conda"]} == {"app-2.0-0.conda", "lib-1.0-cuda118_1.conda",
                                                       "helper-0.5-0.conda"}
    imported = run_cli("import", tmp_path / "bundle", "-p", path)
    assert imported.exit_code == 0, imported.output
    listed = json.loads((tmp_path / "mirror/linux-64/repodata.json").read_text())["packages.conda"]
    assert listed["app-2.0-0.conda"]["depends"] == ["lib", "helper"]  # the hot-fix crossed the gap
    mirror = serve(tmp_path / "mirror")
    try:
        assert solve_and_install([mirror.url], tmp_path / "env", virtual={"__cuda": "11.8"}) == expected
    finally:
        mirror.stop()
    assert run_cli("import", tmp_path / "bundle", "-p", path).exit_code == 0  # again: nothing to do

    blob = tmp_path / "bundle/blobs/sha256" / bundle["conda"][0]["sha256"].split(":", 1)[1]
    data = bytearray(blob.read_bytes())
    data[-5] ^= 1
    blob.write_bytes(bytes(data))
    shutil.rmtree(tmp_path / "mirror")  # a fresh far side
    damaged = run_cli("import", tmp_path / "bundle", "-p", path)
    assert damaged.exit_code == 3, damaged.output
    assert not (tmp_path / "mirror" / bundle["conda"][0]["subdir"] / bundle["conda"][0]["filename"]).exists()


def test_unsolvable_specs_and_unreachable_channels_are_plan_errors(tmp_path, upstream):
    unsolvable = run_cli("plan", "-p", policy(tmp_path, upstream, specs=["app", "libfoo>=9"]))
    assert unsolvable.exit_code == 1 and "cannot solve" in unsolvable.output and "libfoo >=9" in unsolvable.output
    closed = dict(upstream, main=upstream["main"].__class__("http://127.0.0.1:9", upstream["main"].root, None))
    unreachable = run_cli("plan", "-p", policy(tmp_path, closed))
    assert unreachable.exit_code == 1 and "main/linux-64/repodata.json: cannot reach" in unreachable.output, unreachable.output


def test_hostile_names_in_repodata_are_refused_at_plan_time(tmp_path):
    channel = make_channel(tmp_path / "up", [Pkg("good", "1.0", "0"), Pkg("evil", "1.0", "0")])
    repodata = json.loads((channel / "linux-64/repodata.json").read_text())
    record = repodata["packages.conda"].pop("evil-1.0-0.conda")
    repodata["packages.conda"]["evil-1.0-0;rm.conda"] = record
    write_repodata(channel, "linux-64", repodata)
    served = serve(channel)
    try:
        path = tmp_path / "policy.yaml"
        path.write_text(f"""\
version: 1
channels:
  up: {{url: "{served.url}"}}
  internal: {{kind: directory, path: {tmp_path / 'mirror'}}}
conda:
  - {{from: up, to: internal, platforms: [linux-64], specs: [good, evil]}}
audit: {{path: audit.jsonl}}
""")
        planned = json.loads(run_cli("plan", "-p", path, "--json").stdout)["items"]
        result = run_cli("sync", "-p", path)
    finally:
        served.stop()
    evil = [i for i in planned if "evil" in i["source"]]
    assert [i["action"] for i in evil] == ["refuse"] and evil[0]["bytes"] == 0  # the reviewer sees it
    assert "the channel's repodata lists" in evil[0]["reason"]
    assert result.exit_code == 3, result.output
    assert sorted(p.name for p in (tmp_path / "mirror/linux-64").glob("*.conda")) == ["good-1.0-0.conda"]
    refused = [r for r in audit_records(tmp_path / "audit.jsonl") if r["event"] == "refused"]
    assert len(refused) == 1 and "not a conda package file name" in refused[0]["reason"]


FEEDSTOCK = "https://github.com/conda-forge/{}-feedstock/.github/workflows/build.yml@refs/heads/main"


@pytest.mark.parametrize("mode", ["required", "optional"])
def test_attestations_verified_offline_against_the_trust_entry(tmp_path, mode):
    """Sigstore attestations (CEP 27) as conda-forge publishes them, from a private Sigstore: the
    trusted signer's is verified offline with rattler's verifier; another signer's, one for other
    bytes, and (required) none at all are refused before any byte moves."""
    from tests.fixtures.conda import GITHUB_ISSUER, attest
    from tests.fixtures.sigstore_root import PrivateSigstore

    sigstore = PrivateSigstore()
    channel = make_channel(tmp_path / "up", [Pkg(n, "1.0", "0") for n in ("signed", "stranger", "swapped", "bare")])
    served = serve(channel)
    try:
        attest(channel, "linux-64", "signed-1.0-0.conda", sigstore, FEEDSTOCK.format("signed"), served.url)
        attest(channel, "linux-64", "stranger-1.0-0.conda", sigstore, "https://github.com/evil/x/.github/workflows/"
               "a.yml@refs/heads/main", served.url)
        attest(channel, "linux-64", "swapped-1.0-0.conda", sigstore, FEEDSTOCK.format("swapped"), served.url,
               sha256="ab" * 32)
        path = tmp_path / "policy.yaml"
        path.write_text(f"""\
version: 1
trust:
  conda-forge-ci:
    keyless: {{issuer: "{GITHUB_ISSUER}", identity_regex: "https://github.com/conda-forge/[a-z0-9-]+-feedstock/.*"}}
    trusted_root: {sigstore.write_trusted_root(tmp_path / 'trusted_root.json')}
channels:
  up: {{url: "{served.url}"}}
  internal: {{kind: directory, path: {tmp_path / 'mirror'}}}
conda:
  - from: up
    to: internal
    platforms: [linux-64]
    specs: [signed, stranger, swapped, bare]
    verify: {{attestations: {mode}, trust: [conda-forge-ci]}}
audit: {{path: audit.jsonl}}
""")
        result = run_cli("sync", "-p", path)
    finally:
        served.stop()
    assert result.exit_code == 3, result.output
    placed = sorted(p.name for p in (tmp_path / "mirror/linux-64").glob("*.conda"))
    assert placed == (["signed-1.0-0.conda"] if mode == "required" else ["bare-1.0-0.conda", "signed-1.0-0.conda"])
    records = audit_records(tmp_path / "audit.jsonl")
    refused = {r["artifact"]["source"].rsplit("/", 1)[1]: r["reason"] for r in records if r["event"] == "refused"}
    assert "signed by https://github.com/evil/x" in refused["stranger-1.0-0.conda"]
    assert "swapped-1.0-0.conda" in refused and ("bare-1.0-0.conda" in refused) == (mode == "required")
    pushed = {r["artifact"]["source"].rsplit("/", 1)[1]: r["verification"] for r in records if r["event"] == "pushed"}
    evidence = pushed["signed-1.0-0.conda"]["attestation"]
    assert evidence["identity"] == FEEDSTOCK.format("signed") and evidence["trust"] == "conda-forge-ci"
    assert isinstance(evidence["rekor_log_index"], int)
    report = run_cli("audit", "report", tmp_path / "audit.jsonl", "--json", tmp_path / "report.json")
    assert report.exit_code == 0, report.output
    rows = json.loads((tmp_path / "report.json").read_text())
    rows = rows.get("artifacts", rows) if isinstance(rows, dict) else rows
    signed = next(r for r in rows if r.get("source", "").endswith("signed-1.0-0.conda"))
    assert signed["signer"] == f"{FEEDSTOCK.format('signed')} via {GITHUB_ISSUER}"
    assert not any(p.endswith(("stranger-1.0-0.conda", "swapped-1.0-0.conda")) for p in served.paths)


def test_attestations_cross_the_air_gap(tmp_path):
    """Export verifies and carries the sidecar; import verifies it again offline from the bundle alone."""
    from tests.fixtures.conda import GITHUB_ISSUER, attest
    from tests.fixtures.sigstore_root import PrivateSigstore

    sigstore = PrivateSigstore()
    channel = make_channel(tmp_path / "up", [Pkg("signed", "1.0", "0")])
    served = serve(channel)
    sidecar = attest(channel, "linux-64", "signed-1.0-0.conda", sigstore, FEEDSTOCK.format("signed"), served.url)
    path = tmp_path / "policy.yaml"
    path.write_text(f"""\
version: 1
trust:
  conda-forge-ci:
    keyless: {{issuer: "{GITHUB_ISSUER}", identity: "{FEEDSTOCK.format('signed')}"}}
    trusted_root: {sigstore.write_trusted_root(tmp_path / 'trusted_root.json')}
channels:
  up: {{url: "{served.url}"}}
  internal: {{kind: directory, path: {tmp_path / 'mirror'}}}
conda:
  - {{from: up, to: internal, platforms: [linux-64], specs: [signed],
      verify: {{attestations: required, trust: [conda-forge-ci]}}}}
audit: {{path: audit.jsonl}}
""")
    try:
        exported = run_cli("export", "-p", path, "-o", tmp_path / "bundle")
    finally:
        served.stop()
    assert exported.exit_code == 0, exported.output
    assert (tmp_path / "bundle/blobs/sha256" / sidecar).exists()
    imported = run_cli("import", tmp_path / "bundle", "-p", path)
    assert imported.exit_code == 0, imported.output
    pushed = [r for r in audit_records(tmp_path / "audit.jsonl") if r["event"] == "pushed"]
    assert pushed[-1]["verification"]["attestation"]["identity"] == FEEDSTOCK.format("signed")

    shutil.rmtree(tmp_path / "mirror")
    (tmp_path / "bundle/blobs/sha256" / sidecar).unlink()  # the attestation left out (an unsigned bundle,
    sums = tmp_path / "bundle/SHA256SUMS"                    # its SHA256SUMS edited to match)
    sums.write_text("".join(line for line in sums.read_text().splitlines(True) if sidecar not in line))
    refused = run_cli("import", tmp_path / "bundle", "-p", path)
    assert refused.exit_code == 3, refused.output
    assert not (tmp_path / "mirror/linux-64/signed-1.0-0.conda").exists()


def test_a_saved_plan_never_overwrites_what_the_target_listed_since(tmp_path, upstream):
    path = policy(tmp_path, upstream, specs=["shared"], dependencies=False)
    assert run_cli("plan", "-p", path, "-o", tmp_path / "plan.json").exit_code == 0
    mirror = tmp_path / "mirror"
    (mirror / "linux-64").mkdir(parents=True)
    other = {"name": "shared", "version": "1.0", "build": "0", "build_number": 0, "depends": [],
             "subdir": "linux-64", "sha256": "cd" * 32, "size": 3}
    (mirror / "linux-64/shared-1.0-0.conda").write_bytes(b"abc")  # someone else's, since the plan
    write_repodata(mirror, "linux-64", {"info": {"subdir": "linux-64"}, "packages": {},
                                        "packages.conda": {"shared-1.0-0.conda": other}})
    result = run_cli("sync", "-p", path, "--plan", tmp_path / "plan.json")
    assert result.exit_code == 3 and "never overwritten" in result.output, result.output
    assert (mirror / "linux-64/shared-1.0-0.conda").read_bytes() == b"abc"
    assert json.loads((mirror / "linux-64/repodata.json").read_text())["packages.conda"]["shared-1.0-0.conda"] == other
