"""Conda against real channels' repodata (tests/data/conda-real: the defaults `main` and `r`
channels as published in 2018, anaconda.org's conda-test, conda's CEP-15 base_url channel, mamba's
conda-forge snapshot), served over HTTP on loopback. Where a test downloads a file, a real package
of that name, version and build is built and its digests put into the served copy of the record."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from pathlib import Path

from backports import zstd

from regsync.kinds.conda.names import split_filename
from tests.fixtures.conda import Pkg, build_package, make_channel, serve
from tests.fixtures.policies import audit_records, run_cli

DATA = Path(__file__).parent / "data" / "conda-real"


def real_channel(tmp_path: Path, name: str) -> Path:
    root = tmp_path / name.replace("/", "-")
    shutil.copytree(DATA / name, root)
    return root


def provide(root: Path, subdir: str, filename: str, built_as: str | None = None) -> dict:
    """A real package for `filename`, placed in `subdir`; the served record's md5 (and sha256, when
    it has one) and size become the built file's. Returns the served record."""
    import hashlib

    name, version, build = split_filename(filename)
    ext = ".conda" if filename.endswith(".conda") else ".tar.bz2"
    path = build_package(root, Pkg(name, version, build, subdir=built_as or subdir, ext=ext))
    if built_as and built_as != subdir:
        (root / subdir).mkdir(exist_ok=True)
        path = path.rename(root / subdir / filename)
    data = path.read_bytes()
    repodata_path = root / subdir / "repodata.json"
    repodata = json.loads(repodata_path.read_text())
    record = repodata["packages.conda" if ext == ".conda" else "packages"][filename]
    if "sha256" in record:
        record["sha256"] = hashlib.sha256(data).hexdigest()
    record["md5"], record["size"] = hashlib.md5(data).hexdigest(), len(data)
    repodata_path.write_text(json.dumps(repodata, indent=2))
    return record


def policy(tmp_path, sources: dict, specs, dependencies=False, platforms=("linux-64",), extra="") -> Path:
    path = tmp_path / "policy.yaml"
    channels = "".join(f'  {name}: {{url: "{url}"}}\n' for name, url in sources.items())
    path.write_text(f"""\
version: 1
channels:
{channels}  internal: {{kind: directory, path: {tmp_path / 'mirror'}}}
conda:
  - from: {json.dumps(list(sources))}
    to: internal
    platforms: {json.dumps(list(platforms))}
    specs: {json.dumps(list(specs))}
    dependencies: {str(dependencies).lower()}
{extra}audit: {{path: {tmp_path / 'audit.jsonl'}}}
""")
    return path


def planned(path) -> list[dict]:
    result = run_cli("plan", "-p", path, "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)["items"]


def test_without_dependencies_every_channel_and_noarch_and_a_spec_matching_nothing_is_named(tmp_path):
    """Issue 20 item 1: `from: [main, r]`, r-base only in r, affine only in main's noarch."""
    r_root = real_channel(tmp_path, "defaults-2018/r")
    (r_root / "noarch").mkdir()   # as the r channel has it (empty here)
    (r_root / "noarch/repodata.json").write_text('{"info": {"subdir": "noarch"}, "packages": {}}')
    main, r = serve(real_channel(tmp_path, "defaults-2018/main")), serve(r_root)
    try:
        path = policy(tmp_path, {"main": main.url, "r": r.url}, ["r-base=3.5.0", "affine", "nosuchpackage>=1"])
        result = run_cli("plan", "-p", path, "--json")
        assert result.exit_code == 0, result.output
        assert {i["source"] for i in json.loads(result.stdout)["items"]} == {
            "r/linux-64/r-base-3.5.0-h1c2f66e_1.tar.bz2", "main/noarch/affine-2.1.0-pyh128a3a6_1.tar.bz2"}
        assert "the spec 'nosuchpackage>=1' matches no record" in result.output
    finally:
        main.stop(), r.stop()


def test_both_formats_come_along_and_a_file_is_fetched_from_the_subdir_that_listed_it(tmp_path):
    """Issue 20 items 5 and 8: mamba's conda-forge snapshot lists noarch's pip in linux-64's repodata,
    and libffi 3.4.2 h7f98852_5 as .tar.bz2 and .conda."""
    root = real_channel(tmp_path, "conda-forge-numpy")
    served = provide(root, "linux-64", "pip-24.0-pyhd8ed1ab_0.conda", built_as="noarch")
    both = [provide(root, "linux-64", f"libffi-3.4.2-h7f98852_5{ext}") for ext in (".tar.bz2", ".conda")]
    forge = serve(root)
    try:
        sources = {i["source"] for i in planned(policy(tmp_path, {"forge": forge.url}, ["libffi", "pip"]))}
        assert sources == {"forge/linux-64/libffi-3.4.2-h7f98852_5.tar.bz2", "forge/linux-64/libffi-3.4.2-h7f98852_5.conda",
                           "forge/linux-64/pip-24.0-pyhd8ed1ab_0.conda"}
        synced = run_cli("sync", "-p", policy(tmp_path, {"forge": forge.url}, ["pip", "libffi"]))
        assert synced.exit_code == 0, synced.output
        assert "/linux-64/pip-24.0-pyhd8ed1ab_0.conda" in forge.paths
        assert not any("/noarch/pip" in p for p in forge.paths)   # nor the record's own url (anaconda.org)
        mirrored = json.loads((tmp_path / "mirror/linux-64/repodata.json").read_text())
        assert (tmp_path / "mirror/linux-64/pip-24.0-pyhd8ed1ab_0.conda").exists()
        assert mirrored["packages.conda"]["pip-24.0-pyhd8ed1ab_0.conda"]["sha256"] == served["sha256"]
        assert mirrored["packages"]["libffi-3.4.2-h7f98852_5.tar.bz2"]["sha256"] == both[0]["sha256"]
        assert mirrored["packages.conda"]["libffi-3.4.2-h7f98852_5.conda"]["sha256"] == both[1]["sha256"]
    finally:
        forge.stop()


def test_records_reach_the_target_as_published(tmp_path):
    """Issue 20 item 3: r 3.1.2 has `namespace` and no `subdir`; affine has null `arch` and `platform`."""
    main_root, r_root = real_channel(tmp_path, "defaults-2018/main"), real_channel(tmp_path, "defaults-2018/r")
    affine = provide(main_root, "noarch", "affine-2.1.0-pyh128a3a6_1.tar.bz2")
    r_record = provide(r_root, "linux-64", "r-3.1.2-0.tar.bz2")
    main, r = serve(main_root), serve(r_root)
    try:
        synced = run_cli("sync", "-p", policy(tmp_path, {"main": main.url, "r": r.url}, ["r=3.1.2", "affine"]))
        assert synced.exit_code == 0, synced.output
        listed_r = json.loads((tmp_path / "mirror/linux-64/repodata.json").read_text())["packages"]
        listed_noarch = json.loads((tmp_path / "mirror/noarch/repodata.json").read_text())["packages"]
        assert listed_r["r-3.1.2-0.tar.bz2"] == r_record and "subdir" not in listed_r["r-3.1.2-0.tar.bz2"]
        assert listed_noarch["affine-2.1.0-pyh128a3a6_1.tar.bz2"] == affine
        assert affine["arch"] is None and affine["platform"] is None and r_record["namespace"] == "global"
        # r's `removed` names an r-nloptr build only: no package this rule mirrors, so not carried
        assert json.loads((tmp_path / "mirror/linux-64/repodata.json").read_text())["removed"] == []
    finally:
        main.stop(), r.stop()


def test_files_come_from_the_channels_base_url(tmp_path):
    """Issue 20 item 4: CEP-15 `info.base_url` (conda's base_url_channel) points at another server."""
    files = tmp_path / "files"
    channel = real_channel(tmp_path, "base-url")
    filename = "ca-certificates-2024.3.11-h06a4308_0.conda"
    (files / "pkgs/main/linux-64").mkdir(parents=True)
    shutil.copy(DATA / "base-url/linux-64/repodata.json", files / "pkgs/main/linux-64/repodata.json")
    record = provide(files / "pkgs/main", "linux-64", filename)
    file_server = serve(files)
    repodata = json.loads((channel / "linux-64/repodata.json").read_text())
    assert repodata["info"]["base_url"] == "https://repo.anaconda.com/pkgs/main/linux-64"
    repodata["info"]["base_url"] = f"{file_server.url}/pkgs/main/linux-64"
    repodata["packages.conda"][filename] = record
    (channel / "linux-64/repodata.json").write_text(json.dumps(repodata, indent=2))
    index = serve(channel)
    try:
        path = policy(tmp_path, {"main": index.url}, ["ca-certificates"])
        [item] = planned(path)
        assert item["source"] == f"main/linux-64/{filename}"
        assert item["reason"] == f"from {file_server.url}/pkgs/main/linux-64/ (the channel's base_url)"
        synced = run_cli("sync", "-p", path)
        assert synced.exit_code == 0, synced.output
        assert f"/pkgs/main/linux-64/{filename}" in file_server.paths
        assert not any(filename in p for p in index.paths)
        assert (tmp_path / "mirror/linux-64" / filename).read_bytes() == (files / "pkgs/main/linux-64" / filename).read_bytes()
    finally:
        index.stop(), file_server.stop()


def test_name_version_build_specs_are_read_as_conda_reads_them(tmp_path):
    """Issue 20 item 6: what `conda list --export` writes."""
    r = serve(real_channel(tmp_path, "defaults-2018/r"))
    try:
        path = policy(tmp_path, {"r": r.url}, ["r-base=3.5.0=h1c2f66e_1"])
        checked = run_cli("-v", "policy", "check", "-p", path)
        assert checked.exit_code == 0, checked.output
        assert "'r-base=3.5.0=h1c2f66e_1' (name=version=build, as conda list --export writes it) read as " \
               "'r-base ==3.5.0 h1c2f66e_1'" in checked.output
        assert [i["source"] for i in planned(path)] == ["r/linux-64/r-base-3.5.0-h1c2f66e_1.tar.bz2"]
        wrong = run_cli("policy", "check", "-p", policy(tmp_path, {"r": r.url}, ["r-base=3.5.0=h1c2f66e_1=x"]))
        assert wrong.exit_code == 2 and "is not a match spec" in wrong.output
    finally:
        r.stop()


def test_md5_only_records_are_refused_unless_the_rule_allows_them(tmp_path):
    """Issue 20 items 7 and 10: anaconda.org's conda-test channel publishes md5 and size only."""
    root = real_channel(tmp_path, "conda-test")
    filename = "flask-0.11.1-py_0.tar.bz2"
    served = provide(root, "noarch", filename)
    (root / "noarch" / filename).rename(tmp_path / filename)
    ctest = serve(root)
    try:
        refusing = policy(tmp_path, {"ctest": ctest.url}, ["flask"], platforms=["noarch"])
        [item] = planned(refusing)
        assert item["action"] == "refuse" and "gives no sha256" in item["reason"] and "weak_digests" in item["reason"]
        allowing = policy(tmp_path, {"ctest": ctest.url}, ["flask"], platforms=["noarch"],
                          extra="    weak_digests: allow\n")
        [item] = planned(allowing)
        assert item["action"] == "copy" and item["digest"] == f"md5:{served['md5']}"
        missing = run_cli("sync", "-p", allowing)   # the file is not there (yet): the error names the subdir
        assert missing.exit_code != 0 and f"ctest/noarch/{filename}" in missing.output, missing.output
        assert "download failed" in missing.output
        (tmp_path / filename).rename(root / "noarch" / filename)
        synced = run_cli("sync", "-p", allowing)
        assert synced.exit_code == 0, synced.output
        [verified] = [r for r in audit_records(tmp_path / "audit.jsonl") if r["event"] == "verified"]
        assert verified["verification"]["method"] == "md5" and "weak_digest" in verified["verification"]
        listed = json.loads((tmp_path / "mirror/noarch/repodata.json").read_text())["packages"][filename]
        assert listed == served and "sha256" not in listed
    finally:
        ctest.stop()


def test_a_tampered_md5_only_package_is_refused(tmp_path):
    root = real_channel(tmp_path, "conda-test")
    filename = "flask-0.11.1-py_0.tar.bz2"
    provide(root, "noarch", filename)
    data = bytearray((root / "noarch" / filename).read_bytes())
    data[-10] ^= 0xFF
    (root / "noarch" / filename).write_bytes(bytes(data))
    ctest = serve(root)
    try:
        result = run_cli("sync", "-p", policy(tmp_path, {"ctest": ctest.url}, ["flask"], platforms=["noarch"],
                                              extra="    weak_digests: allow\n"))
        assert result.exit_code == 3 and "digest mismatch" in result.output, result.output
        assert not (tmp_path / "mirror/noarch" / filename).exists()
    finally:
        ctest.stop()


def test_an_edited_plan_cannot_add_a_file_outside_the_closure(tmp_path):
    """Issue 22 item 1: the policy mirrors app (which needs lib); `backdoor` is in the channel too."""
    root = make_channel(tmp_path / "chan", [Pkg("app", "1.0", "0", depends=("lib",)), Pkg("lib", "1.0", "0"),
                                            Pkg("backdoor", "6.6", "0")])
    chan = serve(root)
    try:
        path = policy(tmp_path, {"chan": chan.url}, ["app"], dependencies=True)
        assert run_cli("plan", "-p", path, "-o", tmp_path / "plan.json").exit_code == 0
        plan = json.loads((tmp_path / "plan.json").read_text())
        assert sorted(i["source"] for i in plan["items"]) == ["chan/linux-64/app-1.0-0.conda", "chan/linux-64/lib-1.0-0.conda"]
        backdoor = json.loads((root / "linux-64/repodata.json").read_text())["packages.conda"]["backdoor-6.6-0.conda"]
        plan["items"].append(dict(plan["items"][0], source="chan/linux-64/backdoor-6.6-0.conda",
                                  target="internal/linux-64/backdoor-6.6-0.conda", digest=f"sha256:{backdoor['sha256']}"))
        (tmp_path / "edited.json").write_text(json.dumps(plan))
        result = run_cli("sync", "-p", path, "--plan", tmp_path / "edited.json")
        assert result.exit_code == 3, result.output
        assert not (tmp_path / "mirror/linux-64/backdoor-6.6-0.conda").exists()
        listed = json.loads((tmp_path / "mirror/linux-64/repodata.json").read_text())["packages.conda"]
        assert sorted(listed) == ["app-1.0-0.conda", "lib-1.0-0.conda"]
        [refused] = [r for r in audit_records(tmp_path / "audit.jsonl") if r["event"] == "refused"]
        assert "backdoor-6.6-0.conda is in no closure the policy solves for ['app']" in refused["reason"]
    finally:
        chan.stop()


def test_a_zstd_bomb_in_source_repodata_is_not_inflated_past_the_limit(tmp_path, monkeypatch):
    """Issue 22 item 4: a small repodata.json.zst that inflates far past the bound (valid JSON: rattler
    would read it whole)."""
    import regsync.kinds.conda.repodata as repodata

    monkeypatch.setattr(repodata, "MAX_REPODATA", 1 << 20)
    root = tmp_path / "bomb"
    for subdir in ("linux-64", "noarch"):
        (root / subdir).mkdir(parents=True)
        body = b'{"info": {"subdir": "%s"}, "packages": {}, "pad": "' % subdir.encode() + b" " * (64 << 20) + b'"}'
        (root / subdir / "repodata.json.zst").write_bytes(zstd.compress(body))
    assert (root / "linux-64/repodata.json.zst").stat().st_size < 64 << 10
    bomb = serve(root)
    try:
        result = run_cli("plan", "-p", policy(tmp_path, {"bomb": bomb.url}, ["anything"]))
        assert result.exit_code == 1, result.output
        assert "bomb/linux-64/repodata.json: inflates to more than 1048576 bytes; refused" in result.output
    finally:
        bomb.stop()


def test_a_failed_download_names_the_subdir(tmp_path):
    """Issue 20 item 10."""
    root = make_channel(tmp_path / "chan", [Pkg("zlib", "1.2.11", "0", subdir="win-64")])
    (root / "win-64/zlib-1.2.11-0.conda").unlink()
    chan = serve(root)
    try:
        result = run_cli("sync", "-p", policy(tmp_path, {"chan": chan.url}, ["zlib"], platforms=["win-64"]))
        assert result.exit_code == 1, result.output
        assert "chan/win-64/zlib-1.2.11-0.conda: download failed" in result.output
    finally:
        chan.stop()


def test_a_revoked_record_reaches_the_target_as_published(tmp_path):
    """Issue 20 item 3: conda-index's hot-fix channel, its revoke applied as conda-index applies it."""
    root = real_channel(tmp_path, "index-hotfix")
    repodata = json.loads((root / "osx-64/repodata.json").read_text())
    record = repodata["packages"]["revoke_test-1.0-0.tar.bz2"]
    record["revoked"] = True
    record["depends"].append("package_has_been_revoked")
    (root / "osx-64/repodata.json").write_text(json.dumps(repodata, indent=2))
    (root / "noarch").mkdir()
    (root / "noarch/repodata.json").write_text('{"info": {"subdir": "noarch"}, "packages": {}}')
    hotfix = serve(root)
    try:
        synced = run_cli("sync", "-p", policy(tmp_path, {"hotfix": hotfix.url}, ["revoke_test"], platforms=["osx-64"]))
        assert synced.exit_code == 0, synced.output
        listed = json.loads((tmp_path / "mirror/osx-64/repodata.json").read_text())["packages"]
        assert listed["revoke_test-1.0-0.tar.bz2"] == record and record["revoked"] is True
        assert (tmp_path / "mirror/osx-64/revoke_test-1.0-0.tar.bz2").read_bytes() == \
            (DATA / "index-hotfix/osx-64/revoke_test-1.0-0.tar.bz2").read_bytes()
    finally:
        hotfix.stop()


def test_files_upstream_withdrew_are_withdrawn_on_the_target(tmp_path):
    """Issue 20 item 3 (`removed`): the 2018 r channel withdrew r-nloptr-1.0.4-r3.2.2_1 (its
    repodata's `removed` list) and lists r3.2.2_1a instead. A target that mirrored the withdrawn
    build before (the first run serves it listed: the real r3.2.2_1a record under the withdrawn
    build's name, the 2018 record itself being gone) lists it no more after the next run, names it
    in its own `removed`, keeps the file, and keeps listing what upstream did not remove."""
    root = real_channel(tmp_path, "r-removed")
    withdrawn, kept, new = ("r-nloptr-1.0.4-r3.2.2_1.tar.bz2", "r-nloptr-1.0.4-r3.2.1_1.tar.bz2",
                            "r-nloptr-1.0.4-r3.2.2_1a.tar.bz2")
    real = json.loads((root / "linux-64/repodata.json").read_text())
    assert real["removed"] == [withdrawn] and withdrawn not in real["packages"]
    before = json.loads(json.dumps(real))
    before["packages"] = {kept: real["packages"][kept], withdrawn: {**real["packages"][new], "build": "r3.2.2_1"}}
    before["removed"] = []
    (root / "linux-64/repodata.json").write_text(json.dumps(before, indent=2))
    (root / "noarch").mkdir()
    (root / "noarch/repodata.json").write_text('{"info": {"subdir": "noarch"}, "packages": {}}')
    provide(root, "linux-64", kept)
    provide(root, "linux-64", withdrawn)
    r = serve(root)
    try:
        path = policy(tmp_path, {"r": r.url}, ["r-nloptr"])
        first = run_cli("sync", "-p", path)
        assert first.exit_code == 0, first.output
        listed = json.loads((tmp_path / "mirror/linux-64/repodata.json").read_text())
        assert set(listed["packages"]) == {kept, withdrawn} and listed["removed"] == []

        published = {**real, "packages": {kept: json.loads((root / "linux-64/repodata.json").read_text())[
            "packages"][kept], new: real["packages"][new]}}
        (root / "linux-64/repodata.json").write_text(json.dumps(published, indent=2))   # upstream withdraws it
        provide(root, "linux-64", new)
        later = time.time() + 5   # a later rewrite (Last-Modified is to the second)
        os.utime(root / "linux-64/repodata.json", (later, later))
        second = run_cli("sync", "-p", path)
        assert second.exit_code == 0, second.output
        listed = json.loads((tmp_path / "mirror/linux-64/repodata.json").read_text())
        assert list(listed["packages"]) == [kept, new] and listed["removed"] == [withdrawn]
        assert (tmp_path / "mirror/linux-64" / withdrawn).exists()   # delisted, as upstream did; not deleted
        assert json.loads(zstd.decompress((tmp_path / "mirror/linux-64/repodata.json.zst").read_bytes())) == listed
    finally:
        r.stop()


def test_a_bundle_carries_upstreams_removed_entries_for_its_packages_only(tmp_path, monkeypatch):
    """docs/conda.md "Not done yet" (a bundle carried records, not `removed`): the same withdrawal
    as above, across an air gap. Upstream (the 2018 r channel's r-nloptr, its real `removed` entry,
    plus one entry of a package the bundle does not carry) withdraws a build the target got from an
    earlier bundle: the next bundle carries the r-nloptr entry with each r-nloptr file, not the
    other one, and its import delists the build on the target (the file stays), as a sync does."""
    monkeypatch.setenv("REGSYNC_STATE_DIR", str(tmp_path / "state"))   # import remembers its bundles there
    root = real_channel(tmp_path, "r-removed")
    withdrawn, kept, new = ("r-nloptr-1.0.4-r3.2.2_1.tar.bz2", "r-nloptr-1.0.4-r3.2.1_1.tar.bz2",
                            "r-nloptr-1.0.4-r3.2.2_1a.tar.bz2")
    real = json.loads((root / "linux-64/repodata.json").read_text())
    before = {**real, "packages": {kept: real["packages"][kept],
                                   withdrawn: {**real["packages"][new], "build": "r3.2.2_1"}}, "removed": []}
    (root / "linux-64/repodata.json").write_text(json.dumps(before, indent=2))
    (root / "noarch").mkdir()
    (root / "noarch/repodata.json").write_text('{"info": {"subdir": "noarch"}, "packages": {}}')
    provide(root, "linux-64", kept)
    provide(root, "linux-64", withdrawn)
    other = "r-base-3.4.1-0.tar.bz2"   # withdrawn upstream too, but no file of r-base travels
    r = serve(root)
    try:
        path = policy(tmp_path, {"r": r.url}, ["r-nloptr"])
        assert run_cli("export", "-p", path, "-o", tmp_path / "a").exit_code == 0
        published = {**real, "packages": {kept: json.loads((root / "linux-64/repodata.json").read_text())[
            "packages"][kept], new: real["packages"][new]}, "removed": [withdrawn, other]}
        (root / "linux-64/repodata.json").write_text(json.dumps(published, indent=2))   # upstream withdraws it
        provide(root, "linux-64", new)
        later = time.time() + 5   # a later rewrite (Last-Modified is to the second)
        os.utime(root / "linux-64/repodata.json", (later, later))
        assert run_cli("export", "-p", path, "-o", tmp_path / "b").exit_code == 0
    finally:
        r.stop()
    carried = json.loads((tmp_path / "b/bundle.json").read_text())["conda"]
    assert {e["filename"]: e.get("removed") for e in carried} == {kept: [withdrawn], new: [withdrawn]}

    first = run_cli("import", tmp_path / "a", "-p", path)
    assert first.exit_code == 0, first.output
    listed = json.loads((tmp_path / "mirror/linux-64/repodata.json").read_text())
    assert set(listed["packages"]) == {kept, withdrawn} and listed["removed"] == []
    second = run_cli("import", tmp_path / "b", "-p", path)
    assert second.exit_code == 0, second.output
    listed = json.loads((tmp_path / "mirror/linux-64/repodata.json").read_text())
    assert list(listed["packages"]) == [kept, new] and listed["removed"] == [withdrawn]
    assert (tmp_path / "mirror/linux-64" / withdrawn).exists()   # delisted, as upstream did; not deleted
    assert json.loads(zstd.decompress((tmp_path / "mirror/linux-64/repodata.json.zst").read_bytes())) == listed


def test_a_bundle_cannot_withdraw_another_packages_file(tmp_path, monkeypatch):
    """bundle.json is untrusted input: an entry whose `removed` names a file of another package is
    malformed (ignored, said), never a withdrawal of that file on the target."""
    monkeypatch.setenv("REGSYNC_STATE_DIR", str(tmp_path / "state"))
    root = real_channel(tmp_path, "r-removed")
    kept = "r-nloptr-1.0.4-r3.2.1_1.tar.bz2"
    (root / "noarch").mkdir()
    (root / "noarch/repodata.json").write_text('{"info": {"subdir": "noarch"}, "packages": {}}')
    provide(root, "linux-64", kept)
    provide(root, "linux-64", "r-nloptr-1.0.4-r3.2.2_1a.tar.bz2")
    r = serve(root)
    try:
        path = policy(tmp_path, {"r": r.url}, ["r-nloptr"])
        assert run_cli("export", "-p", path, "-o", tmp_path / "b").exit_code == 0
    finally:
        r.stop()
    meta = json.loads((tmp_path / "b/bundle.json").read_text())
    for entry in meta["conda"]:
        entry["removed"] = entry["removed"] + ["r-base-3.4.1-0.tar.bz2"]   # a carrier's addition
    (tmp_path / "b/bundle.json").write_text(json.dumps(meta))
    sums = tmp_path / "b/SHA256SUMS"   # unsigned: the carrier rewrites the sums as well
    digest = hashlib.sha256((tmp_path / "b/bundle.json").read_bytes()).hexdigest()
    sums.write_text("".join(f"{digest}  bundle.json\n" if line.endswith("  bundle.json") else line + "\n"
                            for line in sums.read_text().splitlines()))
    imported = run_cli("import", tmp_path / "b", "-p", path)
    assert "malformed conda entr" in imported.output
    assert not (tmp_path / "mirror/linux-64/repodata.json").exists() or json.loads(
        (tmp_path / "mirror/linux-64/repodata.json").read_text()).get("removed") in ([], None)
