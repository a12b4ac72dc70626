"""Issue 20's done-when: installing from the mirror chooses what installing from upstream chooses,
for channels with a hot-fixed, a revoked and an md5-only record (tests/data/conda-real: conda-index's
hot-fix channel, anaconda.org's conda-test). py-rattler solves and installs the same specs once from
upstream (served on loopback) and once from the mirror regsync wrote (served by a static server); a
second rule mirrors every revoke_test, so the mirror lists the revoked record and its client must
refuse it as upstream's does.

Real where it can be: revoke_test-1.0-0.tar.bz2 is conda-index's own package, byte for byte, its
record revoked the way conda-index's hot-fix code revokes one. The other files are built (their
real ones need zlib's closure or Python), each record keeping the real one's keys: hotfix_depends_test's
record hot-fixed after the build (its `depends` pinned below what the package's own index.json says),
flask's with md5 and size only and its depends left out (Python's closure)."""

from __future__ import annotations

import asyncio
import hashlib
import json
import shutil
from pathlib import Path

from tests.fixtures.conda import Pkg, build_package, serve
from tests.fixtures.policies import audit_records, run_cli

DATA = Path(__file__).parent / "data" / "conda-real"
SPECS = ("hotfix_depends_test", "revoke_test", "flask")


def _built(root: Path, pkg: Pkg, shape: dict) -> tuple[str, dict]:
    """A built package and its record in the shape of `shape` (a real record: its keys, in order)."""
    data = build_package(root, pkg).read_bytes()
    values = {"name": pkg.name, "version": pkg.version, "build": pkg.build, "depends": list(pkg.depends),
              "build_number": int(pkg.build.rsplit("_", 1)[-1]), "subdir": pkg.subdir, "size": len(data),
              "md5": hashlib.md5(data).hexdigest(), "sha256": hashlib.sha256(data).hexdigest()}
    return pkg.filename, {key: values.get(key, value) for key, value in shape.items()}


def upstream_channels(tmp_path: Path) -> tuple[Path, Path, dict]:
    hotfix = tmp_path / "hotfix"
    shutil.copytree(DATA / "index-hotfix", hotfix)
    repodata = json.loads((hotfix / "osx-64/repodata.json").read_text())
    packages = repodata["packages"]
    revoked = packages["revoke_test-1.0-0.tar.bz2"]
    revoked["revoked"] = True                                 # conda_index/index/__init__.py's revoke
    revoked["depends"].append("package_has_been_revoked")
    shape = dict(revoked)
    for pkg in (Pkg("zlib", "1.2.11", "0", subdir="osx-64", ext=".tar.bz2"),
                Pkg("zlib", "1.2.13", "0", subdir="osx-64", ext=".tar.bz2"),
                Pkg("revoke_test", "0.9", "0", depends=("zlib",), subdir="osx-64", ext=".tar.bz2")):
        filename, record = _built(hotfix, pkg, {key: value for key, value in shape.items() if key != "revoked"})
        record["depends"] = list(pkg.depends)
        packages[filename] = record
    filename, record = _built(hotfix, Pkg("hotfix_depends_test", "1.0", "dummy_0", depends=("zlib",),
                                          subdir="osx-64", ext=".tar.bz2"),
                              packages["hotfix_depends_test-1.0-dummy_0.tar.bz2"])
    record["depends"] = ["zlib <1.2.12"]                      # the hot-fix: the package itself says "zlib"
    packages[filename] = record
    (hotfix / "osx-64/repodata.json").write_text(json.dumps(repodata, indent=2))
    (hotfix / "noarch").mkdir()
    (hotfix / "noarch/repodata.json").write_text('{"info": {"subdir": "noarch"}, "packages": {}}')

    ctest = tmp_path / "ctest"
    shutil.copytree(DATA / "conda-test", ctest)
    repodata = json.loads((ctest / "noarch/repodata.json").read_text())
    real = repodata["packages"]["flask-0.11.1-py_0.tar.bz2"]
    filename, flask = _built(ctest, Pkg("flask", "0.11.1", "py_0", subdir="noarch", ext=".tar.bz2"), real)
    flask["noarch"] = "generic"   # the built one links without Python
    assert "sha256" not in flask and flask["md5"] != real["md5"]
    repodata["packages"][filename] = flask
    (ctest / "noarch/repodata.json").write_text(json.dumps(repodata, indent=2))
    return hotfix, ctest, {"hotfix_depends_test": record, "revoked": revoked, "flask": flask}


def solve_and_install(urls: list[str], prefix: Path) -> dict[str, tuple[str, str, str, str]]:
    """rattler's solver and installer for osx-64 (what pixi runs): name → (version, build, md5, file)."""
    import rattler

    from regsync.kinds.conda.channel import virtual_packages

    async def run():
        records = await rattler.solve([rattler.Channel(url + "/") for url in urls], list(SPECS),
                                      platforms=["osx-64", "noarch"], virtual_packages=virtual_packages("osx-64", {}),
                                      gateway=rattler.Gateway(cache_dir=str(prefix) + "-repodata"))
        await rattler.install(records, target_prefix=str(prefix), cache_dir=f"{prefix}-pkgs",
                              platform=rattler.Subdir("osx-64"), show_progress=False)
        return records

    return {r.name.normalized: (str(r.version), str(r.build), _hex(r.md5), r.file_name) for r in asyncio.run(run())}


def _hex(value) -> str:
    return value.hex() if isinstance(value, bytes) else str(value)


def installed(prefix: Path) -> dict[str, bytes]:
    return {str(p.relative_to(prefix)): p.read_bytes() for p in sorted(prefix.rglob("*"))
            if p.is_file() and "conda-meta" not in p.parts}


def test_the_mirror_installs_what_upstream_installs_hot_fixed_revoked_and_md5_only(tmp_path):
    hotfix_root, ctest_root, records = upstream_channels(tmp_path)
    hotfix, ctest = serve(hotfix_root), serve(ctest_root)
    try:
        path = tmp_path / "policy.yaml"
        path.write_text(f"""\
version: 1
channels:
  hotfix: {{url: "{hotfix.url}"}}
  ctest: {{url: "{ctest.url}"}}
  internal: {{kind: directory, path: {tmp_path / 'mirror'}}}
conda:
  - from: [hotfix, ctest]
    to: internal
    platforms: [osx-64]
    specs: {json.dumps(list(SPECS))}
    dependencies: true
    weak_digests: allow
  - from: [hotfix]
    to: internal
    platforms: [osx-64]
    specs: [revoke_test]
    dependencies: false
audit: {{path: {tmp_path / 'audit.jsonl'}}}
""")
        synced = run_cli("sync", "-p", path)
        assert synced.exit_code == 0, synced.output
        from_upstream = solve_and_install([hotfix.url, ctest.url], tmp_path / "env-upstream")
    finally:
        hotfix.stop(), ctest.stop()
    mirror = tmp_path / "mirror"
    listed = json.loads((mirror / "osx-64/repodata.json").read_text())["packages"]
    assert listed["hotfix_depends_test-1.0-dummy_0.tar.bz2"] == records["hotfix_depends_test"]
    # the second rule mirrors every revoke_test: the revoked one is listed on the mirror as upstream lists it
    assert listed["revoke_test-1.0-0.tar.bz2"] == records["revoked"] and records["revoked"]["revoked"] is True
    assert (mirror / "osx-64/revoke_test-1.0-0.tar.bz2").read_bytes() == \
        (DATA / "index-hotfix/osx-64/revoke_test-1.0-0.tar.bz2").read_bytes()
    assert json.loads((mirror / "noarch/repodata.json").read_text())["packages"] == {
        "flask-0.11.1-py_0.tar.bz2": records["flask"]}
    methods = {r["artifact"]["source"].rsplit("/", 1)[1]: r["verification"]["method"]
               for r in audit_records(tmp_path / "audit.jsonl") if r["event"] == "pushed"}
    assert methods["flask-0.11.1-py_0.tar.bz2"] == "md5" and set(methods.values()) == {"md5", "sha256"}, methods

    served = serve(mirror)
    try:
        from_mirror = solve_and_install([served.url], tmp_path / "env-mirror")
    finally:
        served.stop()
    assert from_mirror == from_upstream
    assert from_mirror["zlib"][0] == "1.2.11"            # the hot-fixed depends, not the package's own
    assert from_mirror["revoke_test"][:2] == ("0.9", "0")  # the revoked build is not chosen
    assert from_mirror["flask"][2] == records["flask"]["md5"]
    assert installed(tmp_path / "env-mirror") == installed(tmp_path / "env-upstream")
    assert "share/regsync-test/flask.txt" in installed(tmp_path / "env-mirror")
