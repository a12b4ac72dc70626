"""Conda channels end to end, with real formats and a real client: `.conda` packages built by
conda-package-handling, indexed by rattler, one record hot-fixed after indexing, served over HTTP on
loopback; mirrored with regsync; then installed from the mirror with py-rattler's solver and
installer, and compared with installing from upstream."""

from __future__ import annotations

import asyncio
import json
import shutil

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
        Pkg("libfoo", "1.0", "cuda120_1", depends=("__cuda >=12.0",)),
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

    from regsync.conda.channel import virtual_packages

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
