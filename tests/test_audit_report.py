"""Reports and queries from the trail alone, after a real sync; the HTML checked in headless Chromium."""

import json
import shutil
import subprocess
import zlib
from datetime import datetime, timedelta, timezone

import pytest

from tests.fixtures.oci_layout import seed, write_image
from tests.fixtures.policies import run_cli, write_policy

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
WRONG_PIN = "sha256:" + "1" * 64


@pytest.fixture
def mixed_trail(tmp_path, registry, registry2, unique_repo, oci_dir):
    """One pushed, one refused (pin moved), one failed (missing tag), then a run that skips."""
    for n, tag in enumerate(["good", "pinned"]):
        write_image(oci_dir, tag, seed=zlib.crc32(f"{unique_repo}{n}".encode()))
        seed(registry, unique_repo, tag, oci_dir)
    tags = {"include": ["good", "pinned", "gone"], "pin": {"pinned": WRONG_PIN}}
    policy = write_policy(tmp_path, registry.url, registry2.url, unique_repo, tags=tags)
    assert run_cli("sync", "-p", policy).exit_code == 1
    assert run_cli("sync", "-p", policy).exit_code == 1
    return tmp_path / "audit.jsonl"


def test_report_json_has_every_artifact_refusals_first(tmp_path, mixed_trail, unique_repo):
    out = tmp_path / "report.json"
    result = run_cli("audit", "report", mixed_trail, "--json", out)
    assert result.exit_code == 0, result.output
    report = json.loads(out.read_text())
    decisions = [a["decision"] for a in report["artifacts"]]
    assert decisions == ["refused", "refused", "failed", "failed", "pushed", "skipped"]
    refused = report["artifacts"][0]
    assert refused["source"].endswith(f"{unique_repo}:pinned") and WRONG_PIN in refused["reason"]
    pushed = report["artifacts"][4]
    assert pushed["digest"].startswith("sha256:") and pushed["size"] > 0 and pushed["method"] == "sha256"
    assert len(report["runs"]) == 2 and all(r["exit_code"] == 1 for r in report["runs"])
    assert report["totals"] == {"refused": 2, "failed": 2, "pushed": 1, "skipped": 1}
    assert report["integrity"] == {"intact": True, "broken_line": None, "reason": None, "records": 11, "runs": 2,
                                   "signatures_checked": False, "signed_runs": 0}


def test_report_of_a_damaged_trail_says_where_and_exits_1(tmp_path, mixed_trail):
    lines = mixed_trail.read_bytes().splitlines(keepends=True)
    damaged = tmp_path / "damaged.jsonl"
    damaged.write_bytes(b"".join(lines[:3] + lines[4:]))
    html_path = tmp_path / "damaged.html"
    result = run_cli("audit", "report", damaged, "--html", html_path)
    assert result.exit_code == 1 and "damaged.jsonl:4: seq jumps from 3 to 5" in result.output
    assert "Chain BROKEN at line 4: seq jumps from 3 to 5" in html_path.read_text()


def test_list_queries_through_the_sqlite_index(tmp_path, mixed_trail, unique_repo):
    refused = run_cli("audit", "list", mixed_trail, "--event", "refused", "--json")
    rows = [json.loads(line) for line in refused.output.splitlines()]
    assert len(rows) == 2 and {r["event"] for r in rows} == {"refused"}
    first_run = rows[0]["run_id"]
    in_run = run_cli("audit", "list", mixed_trail, "--run", first_run, "--json").output.splitlines()
    assert json.loads(in_run[0])["event"] == "run-started" and json.loads(in_run[-1])["event"] == "run-finished"
    by_artifact = run_cli("audit", "list", mixed_trail, "--artifact", "*:good", "--json").output.splitlines()
    assert {json.loads(line)["event"] for line in by_artifact} == {"verified", "pushed", "skipped"}
    assert run_cli("audit", "list", mixed_trail, "--since", "2999-01-01", "--json").output == ""
    first = json.loads(in_run[0])
    same_day = run_cli("audit", "list", mixed_trail, "--until", first["ts"][:10], "--json").output.splitlines()
    assert json.loads(same_day[0])["seq"] == 1  # a bare --until date takes in the whole day
    # an offset names a moment, not text: the first record's time written in +14:00 still selects it
    from_kiribati = datetime.fromisoformat(first["ts"]).astimezone(timezone(timedelta(hours=14))).isoformat()
    since = run_cli("audit", "list", mixed_trail, "--since", from_kiribati, "--json").output.splitlines()
    assert json.loads(since[0])["seq"] == 1 and len(since) == len(mixed_trail.read_bytes().splitlines())
    # The JSONL is the source of truth: append to it and the index follows.
    assert run_cli("sync", "-p", mixed_trail.with_name("policy.yaml")).exit_code == 1
    assert len(run_cli("audit", "list", mixed_trail, "--event", "refused", "--json").output.splitlines()) == 3
    bad = run_cli("audit", "list", mixed_trail, "--since", "last tuesday")
    assert bad.exit_code == 2 and "not a date" in bad.output


@pytest.mark.skipif(CHROMIUM is None, reason="needs Debian's chromium (.ci/run installs it)")
def test_html_report_renders_in_headless_chromium(tmp_path, mixed_trail, unique_repo):
    html_path = tmp_path / "report.html"
    assert run_cli("audit", "report", mixed_trail, "--html", html_path).exit_code == 0
    text = html_path.read_text()
    for fetch in ("<script src", "<link", "@import", "url("):  # self-contained: nothing to fetch offline
        assert fetch not in text
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             f"--user-data-dir={tmp_path / 'chromium'}"]
    dom = subprocess.run([CHROMIUM, *flags, "--dump-dom", html_path.as_uri()], capture_output=True, text=True,
                         timeout=120).stdout
    assert "<title>regsync audit report: audit.jsonl</title>" in dom
    rows = dom.split('<tbody>', 1)[1].split('</tbody>', 1)[0]
    assert rows.count("<tr") == 6
    assert rows.index('class="refused"') < rows.index('class="pushed"') < rows.index('class="skipped"')
    assert WRONG_PIN in rows
    assert "Chain intact: 11 records, 2 run(s)" in dom
    shot = tmp_path / "report.png"
    subprocess.run([CHROMIUM, *flags, "--window-size=1400,900", f"--screenshot={shot}", html_path.as_uri()],
                   capture_output=True, timeout=120)
    assert shot.exists() and shot.stat().st_size > 10_000
    shutil.copy(shot, tmp_path.parent / "last-audit-report.png")  # kept for a human to look at


def test_report_names_the_signer_gates_and_the_unsigned_refusal(tmp_path, registry, registry2, unique_repo, oci_dir):
    from tests.fixtures.cosign import make_key, sign, write_public_key

    key = make_key("ecdsa")
    fingerprint = write_public_key(key, tmp_path / "cosign.pub")
    images = {tag: write_image(oci_dir, tag, seed=zlib.crc32(f"{unique_repo}{tag}".encode()))
              for tag in ("signed", "unsigned")}
    for tag in images:
        seed(registry, unique_repo, tag, oci_dir)
    sign(registry, unique_repo, images["signed"].index_digest, key)
    policy = write_policy(tmp_path, registry.url, registry2.url, unique_repo, tags=["signed", "unsigned"],
                          rule_extra="    verify: {signature: required, trust: [release]}\n"
                                     "    gates: {max_size: 1MiB}\n")
    policy.write_text(policy.read_text().replace("images:", "trust:\n  release: {cosign_key: cosign.pub}\nimages:"))
    assert run_cli("sync", "-p", policy).exit_code == 3
    out = tmp_path / "report.json"
    assert run_cli("audit", "report", tmp_path / "audit.jsonl", "--json", out).exit_code == 0
    refused, pushed = json.loads(out.read_text())["artifacts"]
    assert refused["decision"] == "refused" and refused["source"].endswith(":unsigned")
    assert refused["reason"].startswith("unsigned")
    assert pushed["decision"] == "pushed" and pushed["digest"] == images["signed"].index_digest
    assert pushed["signer"] == f"release ({fingerprint[:19]}…)" and "cosign" in pushed["method"]
    assert "max_size linux/amd64:" in pushed["gates"] and "max_size linux/arm64:" in pushed["gates"]
    assert pushed["platforms"] is None  # the whole index travelled: no platform filter


MEASURE = """<script>
window.addEventListener("load", function () {
  function lines(cell) {  // how many lines the cell's text takes
    var range = document.createRange(); range.selectNodeContents(cell);
    var tops = {}; Array.prototype.forEach.call(range.getClientRects(), function (r) { tops[Math.round(r.top)] = 1; });
    return Object.keys(tops).length;
  }
  var scroller = document.querySelector("#artifacts").parentElement, box = scroller.getBoundingClientRect();
  var time = document.querySelector("#artifacts th:last-child").getBoundingClientRect();
  var out = {viewport: window.innerWidth, page_overflow: document.documentElement.scrollWidth > window.innerWidth,
             scroller_overflow: getComputedStyle(scroller).overflowX,
             table_fits: scroller.scrollWidth <= scroller.clientWidth + 1,
             time_visible: time.right <= box.right + 1 && time.width > 40,
             run_id_lines: Array.prototype.map.call(document.querySelectorAll("td.run_id"), lines),
             counts: Array.prototype.map.call(document.querySelectorAll("#runs td.counts"), function (c) { return c.textContent; })};
  var pre = document.createElement("pre"); pre.id = "layout"; pre.textContent = JSON.stringify(out);
  document.body.appendChild(pre);
});
</script></body>"""


@pytest.mark.skipif(not CHROMIUM, reason="chromium is not installed (.ci/run installs it)")
@pytest.mark.parametrize("width", [1280, 1920])
def test_html_report_layout_in_chromium_at_common_widths(tmp_path, mixed_trail, width):
    html_path = tmp_path / "report.html"
    assert run_cli("audit", "report", mixed_trail, "--html", html_path).exit_code == 0
    measured = tmp_path / "measured.html"
    measured.write_text(html_path.read_text().replace("</body>", MEASURE, 1))
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             f"--user-data-dir={tmp_path / 'chromium'}", f"--window-size={width},1000"]
    dom = subprocess.run([CHROMIUM, *flags, "--dump-dom", measured.as_uri()], capture_output=True, text=True,
                         timeout=120).stdout
    layout = json.loads(dom.split('<pre id="layout">', 1)[1].split("</pre>", 1)[0])
    assert layout["viewport"] == width, layout  # the window size took: the figures below are for it
    assert not layout["page_overflow"], layout  # nothing runs off the page's right edge
    assert layout["run_id_lines"] and set(layout["run_id_lines"]) == {1}, layout  # a run id is one line
    assert all("{" not in counts and ("pushed" in counts or "skipped" in counts) for counts in layout["counts"]), layout
    # every column on screen, the time column included; a wider report scrolls in its box, never cut off
    assert layout["table_fits"] and layout["time_visible"] and layout["scroller_overflow"] == "auto", layout
    shot = tmp_path / f"report-{width}.png"
    subprocess.run([CHROMIUM, *flags, f"--screenshot={shot}", html_path.as_uri()], capture_output=True, timeout=120)
    assert shot.exists() and shot.stat().st_size > 10_000
    shutil.copy(shot, tmp_path.parent / f"last-audit-report-{width}.png")  # kept for a human to look at


def _small_trail(path):
    """A real trail of one run that pushed an image, written by regsync's own AuditLog."""
    from regsync.audit.log import AuditLog

    log = AuditLog(path, "run-1")
    log.start_run(policy_sha256="0" * 64, policy_path="policy.yaml", targets=["dst"], command="sync")
    log.event("pushed", artifact={"kind": "image", "source": "src/a:1", "target": "dst/a:1",
                                  "digest": "sha256:" + "b" * 64, "size": 10})
    log.finish_run(exit_code=0, bytes_moved=10)
    log.close()
    return path


NOT_RECORDS = {
    "a JSON list": b"[1, 2, 3]", "a number": b"42", "null": b"null", "an object of other keys": b'{"hello": "world"}',
    "nested past the parser": b"[" * 100_000 + b"]" * 100_000,
    "fields of other types": json.dumps({"ts": 5, "run_id": [1], "seq": "x", "prev": None, "event": {}}).encode(),
    "an artifact that is a string": json.dumps({"ts": "2026-01-01T00:00:00Z", "run_id": "r", "seq": 9, "prev": "x",
                                                "event": "pushed", "artifact": "x"}).encode(),
    "a size that is a word": json.dumps({"ts": "2026-01-01T00:00:00Z", "run_id": "r", "seq": 9, "prev": "x",
                                         "event": "pushed", "artifact": {"kind": "image", "target": "dst/b:1",
                                                                         "digest": 5, "size": "x"}}).encode(),
}


@pytest.mark.parametrize("name", sorted(NOT_RECORDS))
def test_a_line_that_is_not_an_audit_record_is_skipped_by_reports_and_named_by_verify(tmp_path, name):
    trail = _small_trail(tmp_path / "audit.jsonl")
    with trail.open("ab") as handle:
        handle.write(NOT_RECORDS[name] + b"\n")
    verified = run_cli("audit", "verify", trail)
    assert verified.exit_code == 1 and "audit.jsonl:4:" in verified.output, (name, verified.output)
    report = run_cli("audit", "report", trail, "--json", tmp_path / "r.json", "--html", tmp_path / "r.html")
    assert report.exit_code == 1 and "audit.jsonl:4:" in report.output, (name, report.output)   # shown, not clean
    assert [row["target"] for row in json.loads((tmp_path / "r.json").read_text())["artifacts"]] == ["dst/a:1"]
    for verb in (["audit", "inventory", trail], ["audit", "inventory", trail, "--format", "spdx"],
                 ["audit", "list", trail], ["audit", "list", trail, "--json"]):
        result = run_cli(*verb)
        assert result.exit_code == 0 and "internal error" not in result.output, (name, verb, result.output)
        assert "dst/a" in result.output, (name, verb, result.output)


def test_an_edited_digest_that_is_no_sha256_stays_out_of_the_spdx_checksums(tmp_path):
    trail = _small_trail(tmp_path / "audit.jsonl")
    trail.write_bytes(trail.read_bytes().replace(b"sha256:" + b"b" * 64, b"sha256:bb"))
    result = run_cli("audit", "inventory", trail, "--format", "spdx")
    assert result.exit_code == 0 and "internal error" not in result.output, result.output
    assert "dst/a" in result.output and '"checksumValue": "bb"' not in result.output


def test_a_fifo_trail_and_an_output_that_cannot_be_written_are_usage_errors(tmp_path):
    import os

    trail = _small_trail(tmp_path / "audit.jsonl")
    fifo = tmp_path / "fifo.jsonl"
    os.mkfifo(fifo)   # never opened: it would wait for a writer
    for verb in ("verify", "list", "inventory"):
        result = run_cli("audit", verb, fifo)
        assert result.exit_code == 2 and "is not a regular file" in result.output, result.output
    (tmp_path / "afile").write_text("x")
    for args, expected in ((["report", trail, "--html", tmp_path], "--html"),
                           (["report", trail, "--json", tmp_path / "afile" / "r.json"], "afile is a file, not a folder"),
                           (["inventory", trail, "-o", tmp_path], "-o")):
        result = run_cli("audit", *args)
        assert result.exit_code == 2 and expected in " ".join(result.output.split()), result.output
