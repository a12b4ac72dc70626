"""The target side of conda mirroring: what the target's repodata says and how it gets written.

Records are written exactly as the source hands them over (upstream's JSON, key for key), in
upstream's order (rattler's choice between a `.tar.bz2` and a `.conda` of one build depends on it),
once per run and subdir, streamed; a saved plan applied again changes nothing; and an HTTP target
never lets a redirect take a read or a write to another origin (issues 20, 21, 22)."""

from __future__ import annotations

import asyncio
import json
import shutil
from pathlib import Path

import pytest

from tests.fixtures.conda import Pkg, make_channel, serve, write_repodata
from tests.fixtures.policies import audit_records, run_cli

DATA = Path(__file__).parent / "data" / "conda-targets"


def channel_policy(tmp_path, upstream_url, target, specs, dependencies=False) -> Path:
    path = tmp_path / "policy.yaml"
    path.write_text(f"""\
version: 1
channels:
  up: {{url: "{upstream_url}"}}
  internal: {target}
conda:
  - {{from: up, to: internal, platforms: [linux-64], specs: {json.dumps(specs)}, dependencies: {str(dependencies).lower()}}}
audit: {{path: audit.jsonl}}
""")
    return path


def query(url: str, names: list[str], cache: Path) -> list:
    """What a client offers from the channel at `url` (rattler's Gateway, as pixi reads a channel)."""
    import rattler

    found = asyncio.run(rattler.Gateway(cache_dir=str(cache)).query(
        [rattler.Channel(url + "/")], ["linux-64", "noarch"], names, recursive=False))
    return [record for per_subdir in found for record in per_subdir]


def as_published(record) -> dict:
    body = json.loads(record.to_json())
    return {k: v for k, v in body.items() if k not in ("url", "channel", "fn")}


@pytest.mark.parametrize("name", ["r-linux-64-cut.json", "main-linux-64-cut.json"])
def test_records_are_written_key_for_key_as_published(tmp_path, name):
    """Real records of the defaults `r` and `main` channels (tests/data/conda-targets/README.md):
    null licenses, a record without `subdir`, `namespace`, `app_*`/`icon`/`summary`/`type`,
    `revoked: true`, `requires_features`. The target lists each one exactly as given, in its key
    order, and a client reads the same records from the mirror as from upstream."""
    from regsync.kinds.conda.targets import DirectoryChannel

    upstream_root = tmp_path / "up"
    (upstream_root / "linux-64").mkdir(parents=True)
    (upstream_root / "noarch").mkdir()
    (upstream_root / "linux-64/repodata.json").write_bytes((DATA / name).read_bytes())
    (upstream_root / "noarch/repodata.json").write_text('{"info": {"subdir": "noarch"}, "packages": {}}')
    published = json.loads((DATA / name).read_text())["packages"]

    target = DirectoryChannel("internal", tmp_path / "mirror")
    for filename, record in published.items():
        target.publish("linux-64", {filename: record})
    assert target.flush() == []
    listed = json.loads((tmp_path / "mirror/linux-64/repodata.json").read_text())["packages"]
    assert list(listed) == list(published)
    for filename, record in published.items():
        assert list(listed[filename].items()) == list(record.items()), filename  # keys, values, order

    upstream, mirror = serve(upstream_root), serve(tmp_path / "mirror")
    try:
        names = sorted({record["name"] for record in published.values()})
        from_upstream = {r.file_name: as_published(r) for r in query(upstream.url, names, tmp_path / "c1")}
        from_mirror = {r.file_name: as_published(r) for r in query(mirror.url, names, tmp_path / "c2")}
    finally:
        upstream.stop()
        mirror.stop()
    assert from_mirror == from_upstream and set(from_mirror) == set(published)


def test_upstream_order_is_kept_so_clients_see_the_same_formats(tmp_path):
    """Upstream lists x's builds newest first in both `packages` and `packages.conda`; rattler then
    offers the .tar.bz2 and the .conda of each build. A target listing sorted by file name made
    rattler offer only the .conda files (issue 20 item 8); written in upstream's order, the mirror
    offers what upstream offers, also when a later run adds an older build (it goes where upstream
    has it) and whatever order the workers hand the records over in."""
    from regsync.kinds.conda.repodata import Listing
    from regsync.kinds.conda.targets import DirectoryChannel

    def record(build: str) -> dict:
        return {"build": build, "build_number": int(build), "depends": [], "license": "MIT", "name": "x",
                "sha256": build * 64, "size": 10 + int(build), "subdir": "linux-64", "timestamp": 1700000000000,
                "version": "1.0"}

    root = tmp_path / "up"
    write_root = {"info": {"subdir": "linux-64"},  # newest first, as an upload-ordered channel lists them
                  "packages": {f"x-1.0-{b}.tar.bz2": record(b) for b in "210"},
                  "packages.conda": {f"x-1.0-{b}.conda": record(b) for b in "210"}, "removed": [],
                  "repodata_version": 1}
    for subdir in ("linux-64", "noarch"):
        (root / subdir).mkdir(parents=True)
    (root / "linux-64/repodata.json").write_text(json.dumps(write_root, indent=1))  # in this order, not sorted
    write_repodata(root, "noarch", {"info": {"subdir": "noarch"}, "packages": {}, "packages.conda": {}})

    class Source:  # what the target asks of a source channel: its name and the subdir's listing as published
        name = "up"

        @staticmethod
        def listing(subdir):
            return Listing(subdir, root / subdir / "repodata.json")

    first_run = DirectoryChannel("internal", tmp_path / "mirror")
    for filename in ("x-1.0-1.conda", "x-1.0-2.tar.bz2", "x-1.0-1.tar.bz2", "x-1.0-2.conda"):  # as workers finish
        first_run.publish("linux-64", {filename: (write_root["packages.conda"] | write_root["packages"])[filename]},
                          Source())
    assert first_run.flush() == []
    second_run = DirectoryChannel("internal", tmp_path / "mirror")
    for filename in ("x-1.0-0.conda", "x-1.0-0.tar.bz2"):
        second_run.publish("linux-64", {filename: (write_root["packages.conda"] | write_root["packages"])[filename]},
                           Source())
    assert second_run.flush() == []

    listed = json.loads((tmp_path / "mirror/linux-64/repodata.json").read_text())
    for key in ("packages", "packages.conda"):
        assert list(listed[key]) == list(write_root[key]), key
    upstream, mirror = serve(root), serve(tmp_path / "mirror")
    try:
        upstream_offers = sorted(r.file_name for r in query(upstream.url, ["x"], tmp_path / "c-up"))
        mirror_offers = sorted(r.file_name for r in query(mirror.url, ["x"], tmp_path / "c-mirror"))
    finally:
        upstream.stop()
        mirror.stop()
    assert len(upstream_offers) == 6 and mirror_offers == upstream_offers


def test_a_mirror_offers_both_formats_where_upstream_does(tmp_path):
    """End to end: real .conda and .tar.bz2 files of x's three builds, upstream listing them newest
    first; two runs (two builds, then the third) with `dependencies: false`: rattler offers the same
    six files from the mirror as from upstream."""
    import conda_package_handling.api as cph
    import rattler.index

    from tests.fixtures.conda import build_package

    root = make_channel(tmp_path / "up", [])
    for build in "210":
        made = build_package(root, Pkg("x", "1.0", build))
        cph.transmute(str(made), ".tar.bz2", out_folder=str(made.parent))
    asyncio.run(rattler.index.index_fs(root, write_zst=False, force=True))
    repodata = json.loads((root / "linux-64/repodata.json").read_text())
    for key in ("packages", "packages.conda"):
        repodata[key] = dict(sorted(repodata[key].items(), reverse=True))
    (root / "linux-64/repodata.json").write_text(json.dumps(repodata, indent=1))  # in this order, not sorted
    served = serve(root)
    target = f"{{kind: directory, path: {tmp_path / 'mirror'}}}"
    try:
        upstream_offers = sorted(r.file_name for r in query(served.url, ["x"], tmp_path / "c-up"))
        assert len(upstream_offers) == 6
        for specs in (["x=1.0=2", "x=1.0=1"], ["x"]):
            synced = run_cli("sync", "-p", channel_policy(tmp_path, served.url, target, specs))
            assert synced.exit_code == 0, synced.output
    finally:
        served.stop()
    listed = json.loads((tmp_path / "mirror/linux-64/repodata.json").read_text())
    for key in ("packages", "packages.conda"):
        assert list(listed[key]) == list(repodata[key]), key
    mirror = serve(tmp_path / "mirror")
    try:
        assert sorted(r.file_name for r in query(mirror.url, ["x"], tmp_path / "c-mirror")) == upstream_offers
    finally:
        mirror.stop()


def test_a_saved_plan_applied_twice_is_a_no_op(tmp_path):
    """`sync --plan plan.json` again (a cron retry, a second operator): nothing fetched, nothing
    written, every item audited `skipped`, exit 0 (issue 21 item 2)."""
    channel = make_channel(tmp_path / "up", [Pkg("tool", "1.0", "0", depends=("lib",)), Pkg("lib", "1.0", "0"),
                                             Pkg("helper", "1.0", "0", subdir="noarch")])
    served = serve(channel)
    try:
        path = channel_policy(tmp_path, served.url, f"{{kind: directory, path: {tmp_path / 'mirror'}}}",
                              ["tool", "helper"], dependencies=True)
        assert run_cli("plan", "-p", path, "-o", tmp_path / "plan.json").exit_code == 0
        first = run_cli("sync", "-p", path, "--plan", tmp_path / "plan.json")
        assert first.exit_code == 0, first.output
        mirror = tmp_path / "mirror"
        before = {p: p.stat().st_mtime_ns for p in mirror.rglob("*")}
        asked = len(served.paths)
        second = run_cli("sync", "-p", path, "--plan", tmp_path / "plan.json")
        assert second.exit_code == 0, second.output
        fetched = [p for p in served.paths[asked:] if p.endswith(".conda")]
    finally:
        served.stop()
    assert fetched == []
    assert {p: p.stat().st_mtime_ns for p in mirror.rglob("*")} == before  # not even a listing rewritten
    records = audit_records(tmp_path / "audit.jsonl")
    runs = [r for r in audit_records(tmp_path / "audit.jsonl", frame=True) if r["event"] == "run-started"]
    assert len(runs) == 2
    second_run = [r for r in records if r["run_id"] == runs[1]["run_id"]]
    assert sorted(r["event"] for r in second_run) == ["skipped"] * 3, second_run
    assert all("already in the target channel" in r["reason"] for r in second_run)
    assert "3 unchanged" in second.output, second.output


def test_one_listing_rewrite_per_run_over_a_big_listing_in_another_layout(tmp_path):
    """A target listing written by another tool (conda-index's indented, sorted layout) with 3000
    records: one run adding files rewrites each subdir's listing once, whatever the number of files
    and workers, keeps every record it had as it was, and leaves it in regsync's line layout, which
    the next run streams (issue 20 item 9; the time and memory figures are benchmark P12)."""
    from tests.fixtures.nginx import dav_front

    channel = make_channel(tmp_path / "up", [Pkg(f"lib{n}", "1.0", "0") for n in range(6)] +
                           [Pkg("tool", "1.0", "0", depends=tuple(f"lib{n}" for n in range(6))),
                            Pkg("helper", "1.0", "0", subdir="noarch")])
    raw = dav_front(tmp_path / "nginx")
    served = serve(channel)
    try:
        old = {f"old{n}-1.0-0.conda": {"build": "0", "build_number": 0, "depends": [], "name": f"old{n}",
                                       "sha256": f"{n:064x}", "size": n, "subdir": "linux-64", "version": "1.0",
                                       "license": None} for n in range(3000)}
        (raw.files / "linux-64").mkdir(parents=True)
        (raw.files / "linux-64/repodata.json").write_text(json.dumps(
            {"info": {"subdir": "linux-64"}, "packages": {}, "packages.conda": old, "removed": ["gone-1.0-0.conda"],
             "repodata_version": 1}, indent=2, sort_keys=True))
        target = (f'{{kind: http, url: "{raw.url}/repository/conda-raw", '
                  f'auth: {{username: {raw.username}, password: "${{RAW_PASSWORD}}"}}}}')
        path = channel_policy(tmp_path, served.url, target, ["tool", "helper"], dependencies=True)
        env = {"RAW_PASSWORD": raw.password}
        synced = run_cli("sync", "-p", path, "--jobs", "8", env=env)
        assert synced.exit_code == 0, synced.output
        puts = [r["uri"].split("/repository/conda-raw/", 1)[1] for r in raw.requests() if r["method"] == "PUT"]
        assert sorted(p for p in puts if "repodata" in p) == ["linux-64/repodata.json", "linux-64/repodata.json.zst",
                                                              "noarch/repodata.json", "noarch/repodata.json.zst"]
        assert max(i for i, p in enumerate(puts) if p.endswith(".conda")) < puts.index("linux-64/repodata.json")
        text = (raw.files / "linux-64/repodata.json").read_text()
        listing = json.loads(text)
        assert text.startswith('{\n"info": ') and text.count("\n") > 3000  # one record per line from now on
        assert {k: v for k, v in listing["packages.conda"].items() if k.startswith("old")} == old
        assert set(listing["packages.conda"]) - set(old) == {"tool-1.0-0.conda", *(f"lib{n}-1.0-0.conda" for n in range(6))}
        assert listing["removed"] == ["gone-1.0-0.conda"]

        mark = len(raw.requests())
        again = run_cli("sync", "-p", path, env=env)
        assert again.exit_code == 0 and not [r for r in raw.requests()[mark:] if r["method"] == "PUT"]
    finally:
        served.stop()
        raw.stop()


def test_an_http_target_never_reads_a_listing_from_another_origin(tmp_path):
    """The target's `GET …/repodata.json` answers 302 to another origin serving a listing that claims
    every planned file (issue 22 item 3): the foreign listing is not the target's. The run stops with
    an error naming where it pointed; nothing is PUT, nothing skipped as already there."""
    from tests.fixtures.nginx import dav_front

    channel = make_channel(tmp_path / "up", [Pkg("tool", "1.0", "0")])
    served = serve(channel)
    foreign_root = tmp_path / "foreign"
    (foreign_root / "linux-64").mkdir(parents=True)
    shutil.copy(channel / "linux-64/repodata.json", foreign_root / "linux-64/repodata.json")
    foreign = serve(foreign_root)
    raw = dav_front(tmp_path / "nginx", extra=f"""
    location = /repository/conda-raw/linux-64/repodata.json {{ return 302 {foreign.url}/linux-64/repodata.json; }}""")
    try:
        target = (f'{{kind: http, url: "{raw.url}/repository/conda-raw", '
                  f'auth: {{username: {raw.username}, password: "${{RAW_PASSWORD}}"}}}}')
        path = channel_policy(tmp_path, served.url, target, ["tool"])
        result = run_cli("-v", "sync", "-p", path, env={"RAW_PASSWORD": raw.password})
        puts = [r for r in raw.requests() if r["method"] == "PUT"]
    finally:
        served.stop()
        foreign.stop()
        raw.stop()
    assert result.exit_code == 1, result.output
    assert f"redirects to another origin ({foreign.url}" in result.output
    assert puts == []
    assert not [r for r in audit_records(tmp_path / "audit.jsonl") if r["event"] in ("skipped", "pushed")]


def test_an_http_target_never_follows_a_put_redirect(tmp_path):
    """PUTs of package files answered 307 to another origin that would take them: not followed, the
    files fail, nothing is audited `pushed` and the target's listing does not name them."""
    from tests.fixtures.nginx import dav_front

    channel = make_channel(tmp_path / "up", [Pkg("tool", "1.0", "0"), Pkg("lib", "1.0", "0")])
    served = serve(channel)
    foreign = dav_front(tmp_path / "foreign", auth=False)
    raw = dav_front(tmp_path / "nginx", extra=f"""
    location ~ \\.conda$ {{ return 307 {foreign.url}$request_uri; }}""")
    try:
        target = (f'{{kind: http, url: "{raw.url}/repository/conda-raw", '
                  f'auth: {{username: {raw.username}, password: "${{RAW_PASSWORD}}"}}}}')
        path = channel_policy(tmp_path, served.url, target, ["tool", "lib"])
        result = run_cli("-v", "sync", "-p", path, env={"RAW_PASSWORD": raw.password})
        foreign_puts = [r for r in foreign.requests() if r["method"] == "PUT"]
    finally:
        served.stop()
        foreign.stop()
        raw.stop()
    assert result.exit_code == 1, result.output
    assert "upload redirected to" in result.output and "not followed" in result.output
    assert foreign_puts == []
    records = audit_records(tmp_path / "audit.jsonl")
    assert not [r for r in records if r["event"] == "pushed"]
    assert sorted(r["artifact"]["source"] for r in records if r["event"] == "failed") == [
        "up/linux-64/lib-1.0-0.conda", "up/linux-64/tool-1.0-0.conda"]
    listing = raw.files / "linux-64/repodata.json"
    assert not listing.exists() or not json.loads(listing.read_text()).get("packages.conda")


def test_upstream_removed_entries_reach_the_target_for_its_packages_only(tmp_path):
    """The 2018 r channel's `removed` list (tests/data/conda-real/r-removed) names one r-nloptr build.
    A target in another tool's layout (no `removed` key) that lists that build and r 3.1.2: the
    build is delisted and named in `removed`, r stays; a target that mirrors no r-nloptr carries no
    entry; a file upstream lists again leaves the target's `removed`."""
    from regsync.kinds.conda.repodata import Listing
    from regsync.kinds.conda.targets import DirectoryChannel

    real = Path(__file__).parent / "data" / "conda-real"
    upstream = real / "r-removed/linux-64/repodata.json"
    withdrawn, new = "r-nloptr-1.0.4-r3.2.2_1.tar.bz2", "r-nloptr-1.0.4-r3.2.2_1a.tar.bz2"
    r_packages = json.loads((real / "defaults-2018/r/linux-64/repodata.json").read_text())["packages"]
    nloptr = json.loads(upstream.read_text())["packages"]

    class Source:   # what the target asks of a source channel: its name and a subdir's listing as published
        name = "r"

        def __init__(self, path: Path):
            self.path = path

        def listing(self, subdir):
            return Listing(subdir, self.path)

    mirror = tmp_path / "mirror"
    (mirror / "linux-64").mkdir(parents=True)
    before = {"info": {"subdir": "linux-64"}, "packages": {
        "r-3.1.2-0.tar.bz2": r_packages["r-3.1.2-0.tar.bz2"], withdrawn: {**nloptr[new], "build": "r3.2.2_1"}},
        "repodata_version": 1}
    (mirror / "linux-64/repodata.json").write_text(json.dumps(before, indent=2, sort_keys=True))
    (mirror / "linux-64" / withdrawn).write_bytes(b"mirrored before")
    target = DirectoryChannel("internal", mirror)
    target.publish("linux-64", {new: nloptr[new]}, Source(upstream))
    assert target.flush() == []
    listed = json.loads((mirror / "linux-64/repodata.json").read_text())
    assert list(listed["packages"]) == ["r-3.1.2-0.tar.bz2", new] and listed["removed"] == [withdrawn]
    assert (mirror / "linux-64" / withdrawn).read_bytes() == b"mirrored before"

    again = DirectoryChannel("internal", mirror)   # upstream lists it again: it leaves `removed`
    again.publish("linux-64", {withdrawn: before["packages"][withdrawn]})
    assert again.flush() == []
    listed = json.loads((mirror / "linux-64/repodata.json").read_text())
    assert set(listed["packages"]) == {"r-3.1.2-0.tar.bz2", new, withdrawn} and listed["removed"] == []

    other = DirectoryChannel("other", tmp_path / "other")   # mirrors r-base only: no r-nloptr entry
    r_channel = Source(real / "defaults-2018/r/linux-64/repodata.json")
    other.publish("linux-64", {"r-base-3.5.0-h1c2f66e_1.tar.bz2": r_packages["r-base-3.5.0-h1c2f66e_1.tar.bz2"]},
                  r_channel)
    assert other.flush() == []
    assert json.loads((tmp_path / "other/linux-64/repodata.json").read_text())["removed"] == []
    assert r_channel.listing("linux-64").removed() == [withdrawn]


def test_a_record_cannot_add_to_upstreams_removed_list(tmp_path):
    """`removed` is read outside the records only: a record whose nested object has a key like a
    file's (`"y.conda": {`) and a `removed` member of its own adds nothing; the real list is kept
    whatever the layout."""
    from regsync.kinds.conda.repodata import Listing

    forged = {"info": {"subdir": "linux-64"}, "packages": {"b-1-0.tar.bz2": {
        "name": "b", "x": {"y.conda": {}}, "removed": ["victim-1-0.conda"]}}, "packages.conda": {},
        "removed": ["c-1-0.conda"], "repodata_version": 1}
    plain = {**forged, "packages": {"b-1-0.tar.bz2": {"name": "b"}}}
    for indent in (None, 2):
        (tmp_path / "forged.json").write_text(json.dumps(forged, indent=indent))
        (tmp_path / "plain.json").write_text(json.dumps(plain, indent=indent))
        assert "victim-1-0.conda" not in Listing("linux-64", tmp_path / "forged.json").removed()
        assert Listing("linux-64", tmp_path / "plain.json").removed() == ["c-1-0.conda"]
