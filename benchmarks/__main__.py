"""python -m benchmarks [--quick] [--only P1,P2] [--scale 200] — regsync against its peers on the same local
registries, in one run: prints a table of times, ratios and peak RSS, writes JSON (and a PNG of
the plan-scaling run when matplotlib is installed) under benchmarks/results/."""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import psutil

from benchmarks.data import (
    big_image_layout,
    one_layer_image_layout,
    push_many_tags,
    tag_manifest_many,
)
from tests.fixtures.registries import start_registry

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
SKOPEO_CACHE = Path.home() / ".local/share/containers/cache/blob-info-cache-v1.sqlite"


def measure(command: list[str], cwd: Path | None = None) -> dict:
    """Wall time, CPU and peak RSS of one command (GNU time: %M is the largest RSS of the
    process or any of its children, which for a pipeline of curls is the largest curl)."""
    started = time.monotonic()
    result = subprocess.run(["/usr/bin/time", "-f", "maxrss_kb=%M cpu=%U+%S", *command], cwd=cwd,
                            capture_output=True, text=True, check=False)
    seconds = time.monotonic() - started
    found = re.search(r"maxrss_kb=(\d+) cpu=([\d.]+)\+([\d.]+)", result.stderr)
    if result.returncode not in (0,):
        raise RuntimeError(f"{command[0]} failed ({result.returncode}): {result.stderr[-800:]}")
    if not found:
        return {"seconds": round(seconds, 3), "rss_mb": None, "cpu_s": None}
    return {"seconds": round(seconds, 3), "rss_mb": round(int(found.group(1)) / 1024, 1),
            "cpu_s": round(float(found.group(2)) + float(found.group(3)), 2)}


def with_server_cpu(registry, run) -> dict:
    """`run()`'s measurement plus the CPU seconds `registry` spent meanwhile (on 2 cores the
    receiving registry competes with the client for CPU: it bounds a cold copy)."""
    process = psutil.Process(registry.process.pid)
    before = sum(process.cpu_times()[:2])
    result = run()
    result["target_cpu_s"] = round(sum(process.cpu_times()[:2]) - before, 2)
    return result


def regsync(work: Path, policy: str, *args: str) -> dict:
    path = work / f"policy-{time.monotonic_ns()}.yaml"
    path.write_text(policy)
    audit = ["--audit-file", str(work / "audit.jsonl")] if args[0] == "sync" else []
    return measure([sys.executable, "-m", "regsync", "-q", "--no-progress", *args, "-p", str(path), *audit], cwd=work)


def two_registries(src_url: str, dst_url: str, src_repo: str, dst_repo: str, include: list[str]) -> str:
    return f"""version: 1
registries:
  src: {{url: "{src_url}"}}
  dst: {{url: "{dst_url}"}}
images:
  - from: src/{src_repo}
    to: dst/{dst_repo}
    tags: {{include: {json.dumps(include)}}}
"""


def fresh(work: Path, name: str):
    SKOPEO_CACHE.unlink(missing_ok=True)  # else skopeo mounts blobs it saw elsewhere: not a cold copy
    return start_registry(work / f"{name}-{time.monotonic_ns()}")


def p1_cold_copy(work: Path, size: int) -> dict:
    source = start_registry(work / "p1-src")
    layout = work / "p1-layout"
    big_image_layout(layout, "big", size)
    subprocess.run(["skopeo", "copy", "-q", "--all", "--preserve-digests", "--dest-tls-verify=false",
                    f"oci:{layout}:big", f"docker://{source.host}/bench/cuda:2.9"], check=True)
    shutil.rmtree(layout)
    target = fresh(work, "p1-dst-rs")
    ours = with_server_cpu(target, lambda: regsync(
        work, two_registries(source.url, target.url, "bench/cuda", "bench/cuda", ["2.9"]), "sync"))
    target.stop()
    target = fresh(work, "p1-dst-sk")
    peer = with_server_cpu(target, lambda: measure([
        "skopeo", "copy", "-q", "--all", "--preserve-digests", "--src-tls-verify=false", "--dest-tls-verify=false",
        f"docker://{source.host}/bench/cuda:2.9", f"docker://{target.host}/bench/cuda:2.9"]))
    target.stop()
    target = fresh(work, "p1-dst-curl")
    floor = with_server_cpu(target, lambda: measure(
        ["bash", str(ROOT / "benchmarks" / "curl_floor.sh"), source.url, target.url, "bench/cuda", "2.9"]))
    target.stop()
    source.stop()
    return {"id": "P1", "work": f"cold copy, {size / 1e9:.2f} GB two-arch image", "regsync": ours,
            "peers": {"skopeo copy --all": peer, "curl GET→PUT floor": floor}}


def p2_p3_many_tags(work: Path, count: int) -> list[dict]:
    source = start_registry(work / "p2-src")
    push_many_tags(source.url, "bench/many", count)
    target = fresh(work, "p2-dst-rs")
    policy = two_registries(source.url, target.url, "bench/many", "bench/many", ["glob:*"])
    cold = with_server_cpu(target, lambda: regsync(work, policy, "sync"))
    noop = with_server_cpu(target, lambda: regsync(work, policy, "sync"))
    target.stop()
    target = fresh(work, "p2-dst-sk")
    # --preserve-digests: without it skopeo re-serialises manifests, so its "no-op" re-sync re-pushes
    # every manifest and the target digests differ from the source's (issue 16: not a fair peer)
    skopeo = ["skopeo", "sync", "--all", "--preserve-digests", "--src", "docker", "--dest", "docker", "--src-tls-verify=false",
              "--dest-tls-verify=false", f"{source.host}/bench/many", f"{target.host}/bench"]
    peer_cold = with_server_cpu(target, lambda: measure(skopeo))
    peer_noop = with_server_cpu(target, lambda: measure(skopeo))
    target.stop()
    source.stop()
    return [{"id": "P2", "work": f"{count} small tags sharing a base, cold", "regsync": cold,
             "peers": {"skopeo sync --all": peer_cold}},
            {"id": "P3", "work": f"no-op re-sync of {count} tags", "regsync": noop,
             "peers": {"skopeo sync --all": peer_noop}}]


def p4_flat_memory(work: Path, sizes: list[int]) -> dict:
    runs = {}
    for size in sizes:
        source = start_registry(work / f"p4-src-{size}")
        layout = work / "p4-layout"
        big_image_layout(layout, "one", size, layers_per_arch=1)
        subprocess.run(["skopeo", "copy", "-q", "--all", "--preserve-digests", "--dest-tls-verify=false",
                        f"oci:{layout}:one", f"docker://{source.host}/bench/big:1"], check=True)
        shutil.rmtree(layout)
        target = fresh(work, "p4-dst")
        label = f"{size / 1e9:.1f} GB" if size >= 1e9 else f"{size / 1e6:.0f} MB"
        runs[f"{label} image"] = regsync(
            work, two_registries(source.url, target.url, "bench/big", "bench/big", ["1"]), "sync")
        target.stop()
        source.stop()
    return {"id": "P4", "work": "peak RSS by image size", "regsync": runs, "peers": {}}


def p6_plan_scaling(work: Path, counts: list[int]) -> dict:
    source = start_registry(work / "p6-src")
    target = start_registry(work / "p6-dst")
    push_many_tags(source.url, "bench/plan", 1)
    done, points = 0, []
    for count in counts:
        tag_manifest_many(source.url, "bench/plan", "1.0.0", count)  # v0 … v{count-1}
        done = count
        result = regsync(work, two_registries(source.url, target.url, "bench/plan", "bench/plan", ["glob:v*"]),
                         "plan", "--json")
        points.append({"tags": done, **result, "ms_per_tag": round(result["seconds"] * 1000 / done, 2)})
    source.stop()
    target.stop()
    return {"id": "P6", "work": "plan, by tag count", "regsync": points, "peers": {}}


GOALS = {("P1", "skopeo copy --all"): "<= 0.7×", ("P1", "curl GET→PUT floor"): "<= 1.3×",
         ("P2", "skopeo sync --all"): "<= 0.25×", ("P5", "pip download"): "<= 0.5×", ("P3", "skopeo sync --all"): "<= 0.15×",
         ("P4", ""): "<= 100 MB, flat", ("P5", ""): "flat", ("P6", ""): "linear", ("P7", ""): "<= 55% again",
         ("P8", "rattler solve"): "<= 1.5×, RSS <= 500 MB", ("P9", "conda-mirror"): "<= 0.5×",
         ("P10", ""): "<= 0.15 s", ("P11", "regsync without the gate"): "<= 1.3×",
         ("P12", ""): "one pass; RSS well below 10x the listing"}


def _cpu(result: dict) -> str:
    server = f" ({result['target_cpu_s']})" if "target_cpu_s" in result else ""
    return f"{result.get('cpu_s')}{server}"


P5_PLATFORM, P5_PYTHON = "manylinux_2_17_x86_64", "3.11"


def _p5_policy(url: str, dest: Path, root: str) -> str:
    # kind: directory — pip download writes files into a directory, so regsync writing the same
    # files (plus its static index pages) into a directory is the like-for-like comparison
    return f"""version: 1
indexes:
  src: {{url: "{url}"}}
  dst: {{kind: directory, path: "{dest}"}}
packages:
  - from: src
    to: dst
    requirements: ["{root}"]
    dependencies: true
    environments: [{{python: "{P5_PYTHON}", platform: {P5_PLATFORM}}}]
"""


def _pip_download(url: str, dest: Path, root: str) -> dict:
    """pip for the same environment as the policy's, config isolated, no cache: a cold fetch."""
    return measure(["env", "PIP_CONFIG_FILE=/dev/null", sys.executable, "-m", "pip", "download", "-q",
                    "--no-cache-dir", "--disable-pip-version-check", "--only-binary=:all:",
                    f"--platform={P5_PLATFORM}", f"--python-version={P5_PYTHON}", "--implementation=cp",
                    "--abi=cp311", "-d", str(dest), "--index-url", url, root])


def p5_wheels(work: Path, count: int, scale: float, latencies: list[int]) -> list[dict]:
    """A closure of `count` wheels (a tree with shared leaves, 20 kB to 6 MB × scale, random bytes)
    from nginx, regsync into a directory vs pip download into a directory; once per latency."""
    from benchmarks.wheels import TreeServer, closure, write_tree

    built = closure(work / "p5-wheels", count, scale)
    write_tree(work / "p5-tree", built)
    shutil.rmtree(work / "p5-wheels")
    wanted = sorted(b.path.name for b in built if b.picked)
    total = sum((work / "p5-tree" / "files" / name).stat().st_size for name in wanted)
    rows = []
    for latency in latencies:
        server = TreeServer(work / f"p5-nginx-{latency}", work / "p5-tree", latency)
        url = f"{server.url}/simple/"
        mine, theirs = work / f"p5-regsync-{latency}", work / f"p5-pip-{latency}"
        try:
            ours = regsync(work, _p5_policy(url, mine, built[0].project), "sync")
            peer = _pip_download(url, theirs, built[0].project)
        finally:
            server.stop()
        for tool, folder in (("pip", theirs), ("regsync", mine)):
            got = sorted(p.name for p in folder.rglob("*.whl"))
            if got != wanted:
                raise RuntimeError(f"{tool} fetched {len(got)} wheels, not the {len(wanted)} expected: "
                                   f"{sorted(set(got) ^ set(wanted))[:5]}")
        shutil.rmtree(mine)
        shutil.rmtree(theirs)
        where = "same machine" if not latency else f"index {latency} ms away"
        rows.append({"id": "P5", "work": f"cold closure of {count} wheels, {total / 1e6:.0f} MB, {where}",
                     "regsync": ours, "peers": {"pip download": peer}})
    return rows


def p5_memory(work: Path, sizes: list[int]) -> dict:
    """Peak RSS syncing one wheel of each size: flat means the file is never held in memory."""
    from benchmarks.wheels import PLATFORM_TAG, Built, TreeServer, build_wheel, write_tree

    runs = {}
    for size in sizes:
        folder = work / f"p5m-{size}"
        wheel = build_wheel(folder / "wheels", "bench-big", "1.0.0", PLATFORM_TAG, [], size)
        write_tree(folder / "tree", [Built(wheel, "bench-big", True)])
        wheel.unlink()
        server = TreeServer(folder / "nginx", folder / "tree")
        try:
            label = f"{size / 1e9:.1f} GB" if size >= 1e9 else f"{size / 1e6:.0f} MB"
            runs[f"{label} wheel"] = regsync(work, _p5_policy(f"{server.url}/simple/", folder / "dest", "bench-big"),
                                             "sync")
        finally:
            server.stop()
            shutil.rmtree(folder, ignore_errors=True)
    return {"id": "P5", "work": "peak RSS by wheel size", "regsync": runs, "peers": {}}


def p7_resume(work: Path, size: int, signals: list[str]) -> dict:
    """Stop a copy once half the blob is on the target, rerun, and count what moves again."""
    source = start_registry(work / "p7-src")
    layout = work / "p7-layout"
    one_layer_image_layout(layout, "1", size)
    subprocess.run(["skopeo", "copy", "-q", "--preserve-digests", "--dest-tls-verify=false",
                    f"oci:{layout}:1", f"docker://{source.host}/bench/resume:1"], check=True)
    shutil.rmtree(layout)
    runs = {}
    for name in signals:
        target = fresh(work, "p7-dst")
        policy = work / f"p7-{name}.yaml"
        policy.write_text(two_registries(source.url, target.url, "bench/resume", "bench/resume", ["1"]))
        env = {**os.environ, "REGSYNC_STATE_DIR": str(work / f"p7-state-{name}")}
        # JSON logs: the closing summary line carries the byte counts (-q would silence it)
        command = [sys.executable, "-m", "regsync", "--log-format", "json", "--no-progress", "sync", "-p", str(policy),
                   "--audit-file", str(work / "p7-audit.jsonl")]
        process = subprocess.Popen(command, cwd=work, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        uploads = target.storage / "repositories" / "bench" / "resume" / "_uploads"
        deadline = time.monotonic() + 300
        while process.poll() is None and time.monotonic() < deadline:
            held = sum(f.stat().st_size for f in uploads.glob("*/data")) if uploads.exists() else 0
            if held >= size // 2:
                process.send_signal(getattr(signal, name))
                break
            time.sleep(0.02)
        process.communicate(timeout=300)
        started = time.monotonic()
        rerun = subprocess.run(command, cwd=work, env=env, capture_output=True, text=True, timeout=600,
                               check=False)
        seconds = time.monotonic() - started
        summary = _summary_of(rerun.stderr)
        if rerun.returncode != 0 or summary is None:
            raise RuntimeError(f"P7 rerun failed ({rerun.returncode}): {rerun.stderr[-800:]}")
        fetched = summary["bytes"]
        resent = summary["reused_bytes"]  # kept on disk by the killed run: sent to the target, not fetched
        runs[name] = {"rerun_seconds": round(seconds, 2), "rerun_bytes": fetched,
                      "fraction_again": round(fetched / size, 3), "resent_from_disk": resent,
                      "target_received_again": round((fetched + resent) / size, 3)}
        target.stop()
    source.stop()
    return {"id": "P7", "work": f"stopped at 50% of a {size / 1e9:.1f} GB blob, rerun", "regsync": runs, "peers": {}}


def p10_start_up(work: Path, runs: int = 20) -> dict:
    """`regsync --version` and `--help`: the median of `runs` starts of a fresh interpreter (what a
    shell completion or a wrapper script pays), and the `python -c pass` floor under the same load."""
    def median(command: list[str]) -> float:
        times = []
        for _ in range(runs):
            started = time.monotonic()
            subprocess.run(command, cwd=work, capture_output=True, check=True)
            times.append(time.monotonic() - started)
        return round(sorted(times)[len(times) // 2], 3)

    return {"id": "P10", "work": f"start-up, median of {runs}", "peers": {},
            "regsync": {"--version": median([sys.executable, "-m", "regsync", "--version"]),
                        "--help": median([sys.executable, "-m", "regsync", "--help"]),
                        "python -c pass": median([sys.executable, "-c", "pass"])}}


def _summary_of(stderr: str) -> dict | None:
    """The closing summary line's fields from `--log-format json` output."""
    for line in reversed(stderr.splitlines()):
        try:
            extra = json.loads(line)["record"]["extra"]
        except (ValueError, KeyError, TypeError):
            continue
        if extra.get("event") == "summary":
            return extra
    return None


def render(rows: list[dict]) -> str:
    lines = ["| id | work | regsync | peer | ratio | goal | regsync peak RSS | CPU s regsync / peer (target registry) |",
             "|---|---|---|---|---|---|---|---|"]
    for row in rows:
        ours = row["regsync"]
        if isinstance(ours, dict) and "seconds" in ours:
            for name, peer in row["peers"].items():
                ratio = ours["seconds"] / peer["seconds"] if peer["seconds"] else float("nan")
                lines.append(f"| {row['id']} | {row['work']} | {ours['seconds']:.2f} s | {name}: {peer['seconds']:.2f} s "
                             f"| {ratio:.2f}× | {GOALS.get((row['id'], name), '')} | {ours['rss_mb']} MB "
                             f"| {_cpu(ours)} / {_cpu(peer)} |")
        elif row["id"] == "P10":
            cells = ", ".join(f"{k}: {v:.3f} s" for k, v in ours.items())
            lines.append(f"| {row['id']} | {row['work']} | {cells} | | | {GOALS['P10', '']} | | |")
        elif row["id"] == "P7":
            cells = ", ".join(f"{k}: {v['fraction_again']:.0%} of the bytes fetched again"
                              + (f", {v['resent_from_disk'] / 1e9:.2f} GB re-sent from disk"
                                 if v.get("resent_from_disk") else "")
                              + f", the target received {v['target_received_again']:.0%} again"
                              + f" ({v['rerun_seconds']:.1f} s)" for k, v in ours.items())
            lines.append(f"| {row['id']} | {row['work']} | {cells} | | | {GOALS['P7', '']} | | |")
        elif isinstance(ours, dict):
            cells = ", ".join(f"{k}: {v['rss_mb']} MB in {v['seconds']:.1f} s" for k, v in ours.items())
            lines.append(f"| {row['id']} | {row['work']} | {cells} | | | {GOALS.get((row['id'], ''), '')} | | |")
        else:
            cells = ", ".join(f"{p['tags']} tags: {p['seconds']:.2f} s ({p['ms_per_tag']} ms/tag)" for p in ours)
            lines.append(f"| {row['id']} | {row['work']} | {cells} | | | {GOALS.get((row['id'], ''), '')} | | |")
    return "\n".join(lines)


def plot(rows: list[dict], path: Path) -> None:
    """The scaling runs: plan time by tag count (P6) and peak RSS by image size (P4)."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib missing (pip install -e '.[bench]'): no plot", file=sys.stderr)
        return
    scaling = next((r for r in rows if r["id"] == "P6"), None)
    memory = next((r for r in rows if r["id"] == "P4"), None)
    if not scaling and not memory:
        return
    figure, axes = plt.subplots(1, 2, figsize=(11, 4))
    if scaling:
        xs = [p["tags"] for p in scaling["regsync"]]
        axes[0].plot(xs, [p["seconds"] for p in scaling["regsync"]], marker="o")
        axes[0].set(xlabel="tags", ylabel="seconds", title="P6: regsync plan time by tag count")
        axes[0].grid(True, alpha=0.3)
    if memory:
        labels = list(memory["regsync"])
        axes[1].bar(labels, [memory["regsync"][k]["rss_mb"] for k in labels])
        axes[1].axhline(100, color="red", linestyle="--", label="goal: 100 MB")
        axes[1].set(ylabel="peak RSS, MB", title="P4: regsync peak RSS by layer size")
        axes[1].legend()
    figure.savefig(path, dpi=100, bbox_inches="tight")
    print(f"plot: {path}")


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small sizes: a smoke run of a few minutes")
    parser.add_argument("--only", default="P1,P2,P4,P5,P6,P7,P10",
                        help="comma-separated ids (P2 includes P3; conda: P8,P9,P12; start-up: P10; image vulnerability gate: P11)")
    parser.add_argument("--scale", type=int, help="tags for P2/P3 (default 1000, 50 with --quick)")
    parser.add_argument("--p1-bytes", type=float, help="P1 image size in bytes (default 1.05e9, 1e8 with --quick)")
    parser.add_argument("--p12-python", help="P12 again with this interpreter's regsync (e.g. a venv of main's)")
    parser.add_argument("--conda-mirror", help="P9: the conda-mirror executable (PyPI conda-mirror, own venv)")
    parser.add_argument("--p5-latency-ms", type=int, default=30,
                        help="P5 runs twice: index on this machine, and this many ms away per request (default 30)")
    args = parser.parse_args()
    only = set(args.only.upper().split(","))
    size = int(args.p1_bytes or (100_000_000 if args.quick else 1_050_000_000))
    tags = args.scale or (50 if args.quick else 1000)
    work = Path(tempfile.mkdtemp(prefix="regsync-bench-"))
    rows: list[dict] = []
    try:
        if "P1" in only:
            rows.append(p1_cold_copy(work, size))
        if "P2" in only or "P3" in only:
            rows += p2_p3_many_tags(work, tags)
        if "P4" in only:
            rows.append(p4_flat_memory(work, [40_000_000, 400_000_000] if args.quick else [400_000_000, 4_000_000_000]))
        if "P5" in only:
            rows += p5_wheels(work, 40, 0.2 if args.quick else 1.0, [0, args.p5_latency_ms])
            rows.append(p5_memory(work, [20_000_000, 200_000_000] if args.quick else [200_000_000, 2_000_000_000]))
        if "P6" in only:
            rows.append(p6_plan_scaling(work, [100, 300] if args.quick else [1000, 3000, 10000]))
        if "P10" in only:
            rows.append(p10_start_up(work))
        if "P7" in only:
            rows.append(p7_resume(work, 400_000_000 if args.quick else 2_000_000_000, ["SIGTERM", "SIGKILL"]))
        if "P8" in only:
            from benchmarks.conda import p8_plan
            rows.append(p8_plan(work, measure, 500 if args.quick else 5000))
        if "P11" in only:
            from benchmarks.vulns import p11_image_scan
            rows.append(p11_image_scan(work, size, regsync, fresh, with_server_cpu, start_registry, two_registries))
        if "P9" in only:
            from benchmarks.conda import p9_mirror
            rows.append(p9_mirror(work, measure, args.conda_mirror))
        if "P12" in only:
            from benchmarks.conda import p12_big_listing
            rows.append(p12_big_listing(work, measure, 1000 if args.quick else 10_700))
            if args.p12_python:  # the same row with another checkout's regsync (the code before a change)
                rows.append(p12_big_listing(work, measure, 1000 if args.quick else 10_700, args.p12_python,
                                            f"with {args.p12_python}"))
    finally:  # a row that fails still leaves the rows measured before it
        shutil.rmtree(work, ignore_errors=True)
        table = render(rows)
        print(table)
        RESULTS.mkdir(parents=True, exist_ok=True)
        stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
        (RESULTS / f"{stamp}.json").write_text(json.dumps({
            "date": stamp, "machine": {"cpus": os.cpu_count(), "platform": platform.platform()}, "rows": rows},
            indent=2))
        plot(rows, RESULTS / f"{stamp}-plan-scaling.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
