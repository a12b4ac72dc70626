"""P8 and P9: conda channels.

P8: `regsync plan` of a closure from a synthetic conda-forge-size linux-64 repodata (150k records
by default) against py-rattler's own solve of the same specs on the same channel (a Gateway and
`rattler.solve`, what pixi runs), both from a cold repodata cache, through nginx on loopback.
Goal: ≤ 1.5× its time, peak RSS ≤ 500 MB.

P9: cold mirror of a 40-package closure into a directory channel against `conda-mirror` (PyPI
`conda-mirror`, in its own venv: `--conda-mirror PATH`) with the same packages whitelisted,
from the same local channel. Goal: ≤ 0.5×.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import sys
import textwrap
from pathlib import Path

from tests.fixtures.nginx import static_front

NAMES, VERSIONS, BUILDS = 5000, 10, 3   # 150 000 records


def synthetic_channel(root: Path, names: int = NAMES, versions: int = VERSIONS, builds: int = BUILDS,
                      seed: int = 8) -> int:
    """linux-64/repodata.json with names × versions × builds records (no package files: planning reads
    repodata only), streamed to disk record by record; every package depends on two of lower index,
    so a closure from the top reaches deep. Returns the record count."""
    rng = random.Random(seed)
    (root / "noarch").mkdir(parents=True, exist_ok=True)
    (root / "noarch" / "repodata.json").write_text(json.dumps({"info": {"subdir": "noarch"}, "packages": {},
                                                                  "packages.conda": {}}))
    (root / "linux-64").mkdir(exist_ok=True)
    count = 0
    with open(root / "linux-64" / "repodata.json", "w") as out:
        out.write('{"info": {"subdir": "linux-64"}, "packages": {}, "packages.conda": {')
        for n in range(names):
            deps = sorted({rng.randrange(n) for _ in range(2)}) if n else []
            for v in range(versions):
                for b in range(builds):
                    name, version, build = f"pkg{n}", f"1.{v}.0", f"h{b:07x}_{b}"
                    record = {"name": name, "version": version, "build": build, "build_number": b,
                              "depends": [f"pkg{d} >=1.{rng.randrange(versions // 2)}" for d in deps],
                              "subdir": "linux-64", "license": "MIT", "timestamp": 1700000000000 + count,
                              "sha256": hashlib.sha256(f"{name}{version}{build}".encode()).hexdigest(),
                              "md5": hashlib.md5(f"{name}{version}{build}".encode()).hexdigest(),
                              "size": 1000 + count % 5000}
                    out.write(("," if count else "") + json.dumps(f"{name}-{version}-{build}.conda") + ":" +
                              json.dumps(record))
                    count += 1
        out.write('}, "repodata_version": 1}')
    return count


def _rattler_solve_script(url: str, specs: list[str], cache: Path) -> str:
    return textwrap.dedent(f"""
        import asyncio, rattler
        records = asyncio.run(rattler.solve([rattler.Channel({url + '/'!r})], {specs!r},
            gateway=rattler.Gateway(cache_dir={str(cache)!r}), platforms=["linux-64", "noarch"],
            virtual_packages=[rattler.GenericVirtualPackage(rattler.PackageName(n), rattler.Version("0"),
                                                            rattler.BuildString("0")) for n in ("__unix", "__linux")],
            channel_priority=rattler.ChannelPriority.Strict, channel_relations="disabled"))
        print(len(records))
    """)


def p8_plan(work: Path, measure, names: int = NAMES) -> dict:
    channel = work / "p8-channel"
    records = synthetic_channel(channel, names)
    web = static_front(work / "p8-nginx", channel)
    specs = [f"pkg{names - 1}", f"pkg{names - 2}"]
    try:
        policy = work / "p8-policy.yaml"
        policy.write_text(f"""version: 1
channels:
  up: {{url: "{web.url}"}}
  internal: {{kind: directory, path: {work / 'p8-mirror'}}}
conda:
  - {{from: up, to: internal, platforms: [linux-64], specs: {json.dumps(specs)}, dependencies: true}}
""")
        env_state = work / "p8-state"
        os.environ["REGSYNC_STATE_DIR"] = str(env_state)  # a cold repodata cache, as for the peer
        try:
            ours = measure([sys.executable, "-m", "regsync", "-q", "--no-progress", "plan", "--json", "-p",
                            str(policy)], cwd=work)
        finally:
            del os.environ["REGSYNC_STATE_DIR"]
        script = work / "p8-rattler.py"
        script.write_text(_rattler_solve_script(web.url, specs, work / "p8-rattler-cache"))
        peer = measure([sys.executable, str(script)], cwd=work)
    finally:
        web.stop()
        shutil.rmtree(channel, ignore_errors=True)
    return {"id": "P8", "work": f"plan of a closure from {records} records (linux-64 repodata "
                                f"{(records and 'synthetic')})", "regsync": ours,
            "peers": {"rattler solve": peer}}


def p9_mirror(work: Path, measure, conda_mirror: str | None, count: int = 40) -> dict:
    from tests.fixtures.conda import Pkg, make_channel

    rng = random.Random(9)
    packages = [Pkg(f"lib{n}", "1.0", "0", depends=tuple(f"lib{d}" for d in (2 * n + 1, 2 * n + 2) if d < count),
                    payload=rng.randbytes(20_000 + rng.randrange(2_000_000))) for n in range(count)]
    packages += [Pkg(f"other{n}", "1.0", "0") for n in range(10)]  # not whitelisted, not in the closure
    channel = make_channel(work / "p9-channel", packages)
    web = static_front(work / "p9-nginx", channel)
    try:
        policy = work / "p9-policy.yaml"
        policy.write_text(f"""version: 1
channels:
  up: {{url: "{web.url}"}}
  internal: {{kind: directory, path: {work / 'p9-mirror'}}}
conda:
  - {{from: up, to: internal, platforms: [linux-64], specs: [lib0], dependencies: true}}
audit: {{path: {work / 'p9-audit.jsonl'}}}
""")
        os.environ["REGSYNC_STATE_DIR"] = str(work / "p9-state")
        try:
            ours = measure([sys.executable, "-m", "regsync", "-q", "--no-progress", "sync", "-p", str(policy)], cwd=work)
        finally:
            del os.environ["REGSYNC_STATE_DIR"]
        mirrored = sorted(p.name for p in (work / "p9-mirror/linux-64").glob("*.conda"))
        assert len(mirrored) == count, mirrored
        peers = {}
        if conda_mirror:
            config = work / "p9-conda-mirror.yaml"
            # conda-mirror applies the whitelist over the blacklist: everything out, then the closure in
            config.write_text("blacklist:\n  - name: '*'\nwhitelist:\n" +
                              "".join(f"  - name: lib{n}\n" for n in range(count)))
            peers["conda-mirror"] = measure([conda_mirror, "--upstream-channel", web.url, "--target-directory",
                                             str(work / "p9-conda-mirror"), "--platform", "linux-64",
                                             "--config", str(config), "--num-threads", "8"], cwd=work)
            theirs = sorted(p.name for p in (work / "p9-conda-mirror/linux-64").glob("*.conda"))
            peers["conda-mirror"]["files"] = len(theirs)
            if theirs != mirrored:
                print(f"P9: conda-mirror mirrored {len(theirs)} files, regsync {len(mirrored)}", file=sys.stderr)
    finally:
        web.stop()
    return {"id": "P9", "work": f"cold mirror of a {count}-package closure", "regsync": ours, "peers": peers}


def p12_big_listing(work: Path, measure, names: int = 10_700, python: str = sys.executable,
                    label: str = "regsync") -> dict:
    """P12 (issue 20 item 9): `regsync sync` adding 8 small packages to a directory target whose
    linux-64/repodata.json already lists names × 30 records (10 700 names: ~134 MB as conda-index
    writes it, indented and sorted). Measured twice on a fresh copy of the target each time: the
    listing as another tool wrote it (read whole once, then rewritten in regsync's layout) and as
    regsync keeps it (one record per line, streamed). `python`: the interpreter to run regsync with
    (another checkout's, to measure the code before a change)."""
    from regsync.kinds.conda.listing import merged, parts_of_document
    from tests.fixtures.conda import Pkg, make_channel

    generated = work / "p12-generated"
    records = synthetic_channel(generated, names)
    listing = json.loads((generated / "linux-64" / "repodata.json").read_bytes())
    foreign = work / "p12-foreign.json"
    foreign.write_text(json.dumps(listing, indent=2, sort_keys=True))
    own = work / "p12-own.json"
    with open(own, "w") as out:
        for chunk in merged(parts_of_document(foreign.read_bytes()), {}, lambda name: None):
            out.write(chunk)
    del listing
    shutil.rmtree(generated)
    channel = make_channel(work / "p12-channel", [Pkg(f"small{n}", "1.0", "0") for n in range(8)])
    web = static_front(work / "p12-nginx", channel)
    results = {}
    try:
        for layout, source in (("another tool's layout", foreign), ("regsync's layout", own)):
            target = work / "p12-mirror"
            shutil.rmtree(target, ignore_errors=True)
            (target / "linux-64").mkdir(parents=True)
            shutil.copyfile(source, target / "linux-64" / "repodata.json")
            policy = work / "p12-policy.yaml"
            policy.write_text(f"""version: 1
channels:
  up: {{url: "{web.url}"}}
  internal: {{kind: directory, path: {target}}}
conda:
  - {{from: up, to: internal, platforms: [linux-64], specs: {json.dumps([f"small{n}" for n in range(8)])}}}
""")
            os.environ["REGSYNC_STATE_DIR"] = str(work / "p12-state")
            try:
                result = measure([python, "-m", "regsync", "-q", "--no-progress", "sync", "-p", str(policy)], cwd=work)
            finally:
                del os.environ["REGSYNC_STATE_DIR"]
            listed = json.loads((target / "linux-64" / "repodata.json").read_bytes())
            assert len(listed["packages.conda"]) == records + 8, len(listed["packages.conda"])
            result["listing_mb"] = round(source.stat().st_size / 1e6, 1)
            results[layout] = result
    finally:
        web.stop()
    return {"id": "P12", "work": f"add 8 small packages to a target listing {records} records ({label})",
            "regsync": results, "peers": {}}
