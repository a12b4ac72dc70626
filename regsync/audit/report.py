"""A report built from the audit trail alone: per run and per artifact, refusals first.

The HTML is one self-contained file (no CDN: it must open on an air-gapped laptop). Every value
comes from registries and policies, i.e. from outside, so all of it is HTML-escaped; the small
inline script only sorts and filters rows that are already on the page.
"""

from __future__ import annotations

import html
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from regsync.audit.chain import read_record, verify_chain
from regsync.audit.evidence import Evidence
from regsync.content.files import open_input
from regsync.times import parse_time

if TYPE_CHECKING:
    from regsync.trust.keys import PublicKey

FINAL = ("refused", "failed", "pushed", "skipped")   # decisions, in the order a reviewer reads them
ORDER = {event: i for i, event in enumerate(FINAL)}


def read_records(trail: Path, since: datetime | None = None) -> Iterator[dict[str, Any]]:
    with open_input(trail) as handle:
        for raw in handle:
            record = read_record(raw)
            if record is None:
                continue  # `audit verify` is where damage is reported; a report shows what it can
            if since and not _at_or_after(record["ts"], since):
                continue
            yield record


def _at_or_after(ts: str, since: datetime) -> bool:
    try:
        return parse_time(ts) >= since
    except ValueError:   # not a time: not a record regsync wrote, so not one of the period's
        return False


def integrity_of(trail: Path, public_key: PublicKey | None = None) -> dict[str, Any]:
    """The chain check, so a reviewer handed only the report sees whether the trail was intact."""
    check = verify_chain(trail, public_key)
    return {"intact": check.ok, "broken_line": check.broken_line, "reason": check.reason or None,
            "records": check.lines, "runs": check.runs, "signatures_checked": public_key is not None and check.ok,
            "signed_runs": check.signed_runs}


def build_report(trail: Path, since: datetime | None = None, public_key: PublicKey | None = None) -> dict[str, Any]:
    integrity = integrity_of(trail, public_key)
    runs: dict[str, dict[str, Any]] = {}
    artifacts: dict[tuple[str, str], dict[str, Any]] = {}
    for record in read_records(trail, since):
        run = runs.setdefault(record["run_id"], {"run_id": record["run_id"]})
        event = record["event"]
        if event == "run-started":
            run.update(started=record["ts"], host=record.get("host"), user=record.get("user"),
                       tool=record.get("tool"), policy_sha256=record.get("policy_sha256"),
                       targets=record.get("targets"))
        elif event == "run-finished":
            run.update(finished=record["ts"], exit_code=record.get("exit_code"), counts=record.get("counts"),
                       bytes=record.get("bytes"), duration_seconds=record.get("duration_seconds"),
                       interrupted=record.get("interrupted"), signed="signature" in record)
        elif event == "verified" and "plan" in (record.get("artifact") or {}):
            run.update(_approvals(record))
        elif event in FINAL or event == "verified":
            _fold(artifacts, record)
    rows = sorted((a for a in artifacts.values() if a["decision"]),
                  key=lambda a: (ORDER[a["decision"]], a["ts"]))
    totals = {event: sum(1 for a in rows if a["decision"] == event) for event in FINAL}
    return {"trail": str(trail), "since": since.isoformat() if since else None, "integrity": integrity,
            "runs": list(runs.values()),
            "artifacts": rows, "totals": totals,
            "bytes": sum(a["size"] or 0 for a in rows if a["decision"] == "pushed")}


def _approvals(record: dict[str, Any]) -> dict[str, Any]:
    """The approved plan a run applied (docs/approvals.md), and who approved it."""
    verification = record.get("verification") or {}
    approvers = [f"{a.get('trust', '?')} ({str(a.get('key_fingerprint', ''))[:19]}…)"
                 for a in verification.get("approvers") or [] if isinstance(a, dict)]
    return {"plan": (record.get("artifact") or {}).get("plan"), "plan_digest": record["artifact"].get("digest"),
            "approvers": approvers}


def _fold(artifacts: dict[tuple[str, str], dict[str, Any]], record: dict[str, Any]) -> None:
    """One row per artifact and run: the final decision, with the evidence gathered on the way."""
    artifact = record.get("artifact") or {}
    key = (record["run_id"], artifact.get("target") or artifact.get("source") or record.get("reason") or "")
    row = artifacts.setdefault(key, {"run_id": record["run_id"], "decision": None, "kind": artifact.get("kind"),
                                     "source": artifact.get("source"), "target": artifact.get("target"),
                                     "digest": artifact.get("digest"), "source_digest": artifact.get("source_digest"),
                                     "size": artifact.get("size"), "platforms": artifact.get("platforms"),
                                     "rule": record.get("policy_rule"), "verification": None, "reason": None})
    row["ts"] = record["ts"]
    if record.get("verification"):
        row["verification"] = record["verification"]
    if record["event"] in FINAL:
        row["decision"], row["reason"] = record["event"], record.get("reason")
    row.update(_evidence(row["verification"]))


def signer_of(verification: dict[str, Any] | None) -> str:
    """Who signed it, as the report's "Signed by" column says it (the plan table shows it too)."""
    return "; ".join(Evidence.from_json(verification).signers())


def _evidence(verification: dict[str, Any] | None) -> dict[str, str]:
    """How the artifact was verified and by whom, in words a reviewer scans: the same columns from
    the same fields of Evidence, whatever the kind (regsync/audit/evidence.py)."""
    evidence = Evidence.from_json(verification)
    built, sbom = evidence.attested()
    return {"method": ", ".join(evidence.methods()), "signer": "; ".join(evidence.signers()),
            "gates": _gates_text(evidence.gates), "built_by": "; ".join(built), "sbom": "; ".join(sbom)}


def _gates_text(gates: object) -> str:
    """{"cuda": {"linux/amd64": "11.8"}} reads as "cuda linux/amd64: 11.8"."""
    if not isinstance(gates, dict):
        return str(gates or "")
    parts = []
    for name, value in gates.items():
        if isinstance(value, dict):
            parts += [f"{name} {where}: {result}" for where, result in value.items()]
        else:
            parts.append(f"{name}: {value}")
    return "; ".join(parts)


COLUMNS = [("decision", "Decision"), ("source", "Source"), ("target", "Target"), ("digest", "Digest"),
           ("size", "Bytes moved"), ("platforms", "Platforms"), ("method", "Verified by"), ("signer", "Signer"),
           ("built_by", "Built by"), ("sbom", "SBOM"), ("gates", "Gates"), ("reason", "Reason"), ("run_id", "Run"), ("ts", "Time")]


ALWAYS_SHOWN = {"decision", "source", "target", "digest", "size", "reason", "run_id", "ts"}


def render_html(report: dict[str, Any]) -> str:
    e = html.escape
    # a column no row fills (no platform filter, no SBOM attestations) only takes width: left out
    columns = [(name, title) for name, title in COLUMNS
               if name in ALWAYS_SHOWN or any(_cell(a, name) for a in report["artifacts"])]
    head = "".join(f'<th data-col="{i}" tabindex="0">{e(title)}</th>' for i, (_, title) in enumerate(columns))
    # a digest is shown cut to its column (the whole of it stays in the cell: filter, copy, hover)
    body = "\n".join(
        f'<tr class="{e(a["decision"])}">' + "".join(
            f'<td class="{name}"' + (f' title="{e(_cell(a, name))}"' if name == "digest" else "")
            + f'>{e(_cell(a, name))}</td>' for name, _ in columns) + "</tr>"
        for a in report["artifacts"])
    run_columns = ("run_id", "ts", "ts", "host", "user", "digest", "exit", "counts", "size", "signed", "approvers")
    runs = "\n".join(
        "<tr>" + "".join(f'<td class="{css}">{e(str(v))}</td>' for css, v in zip(run_columns, (
            r["run_id"], _time(r.get("started", "")), _time(r.get("finished", "")) or "— (no run-finished)",
            r.get("host", ""), r.get("user", ""), (r.get("policy_sha256") or "")[:12], r.get("exit_code", ""),
            _counts(r.get("counts")), r.get("bytes", ""), "yes" if r.get("signed") else "no",
            "; ".join(r.get("approvers") or [])))) + "</tr>"
        for r in report["runs"])
    totals = " · ".join(f'<span class="{e(k)}">{v} {e(k)}</span>' for k, v in report["totals"].items())
    return _PAGE.format(title=e(f"regsync audit report: {Path(report['trail']).name}"), trail=e(report["trail"]),
                        integrity=_integrity_html(report["integrity"]), totals=totals, head=head, body=body, runs=runs, count=len(report["artifacts"]))


def _integrity_html(check: dict[str, Any]) -> str:
    e = html.escape
    if not check["intact"]:
        return (f'<p class="integrity broken">Chain BROKEN at line {check["broken_line"]}: {e(check["reason"])}. '
                "Rows below show what the file says, not what happened.</p>")
    signed = (f'{check["signed_runs"]} signed run(s) verified with the given key' if check["signatures_checked"]
              else "signatures not checked (regsync audit report --key PUB, or audit verify --key)")
    return (f'<p class="integrity intact">Chain intact: {check["records"]} records, {check["runs"]} run(s); '
            f"{e(signed)}.</p>")


def _counts(counts: dict[str, int] | None) -> str:
    """A run's counts as words ("2 pushed · 1 refused"), not JSON."""
    return " · ".join(f"{n} {event}" for event, n in (counts or {}).items()) or "—"


def _time(value: object) -> str:
    return str(value)[:19].replace("T", " ") + "Z" if value else ""


def _cell(row: dict[str, Any], name: str) -> str:
    value = row.get(name)
    if value is None:
        return ""
    if isinstance(value, list):
        return ", ".join(map(str, value))
    if name == "ts":  # whole seconds read faster; the JSON report keeps the exact stamp
        return _time(value)
    return str(value)


_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
body {{ font: 13px/1.4 system-ui, sans-serif; margin: 1.5rem; color: #1b1f24; }}
h1 {{ font-size: 1.3rem; margin: 0 0 .3rem; }} h2 {{ font-size: 1.05rem; margin: 1.5rem 0 .4rem; }}
.meta {{ color: #57606a; }} .integrity {{ padding: .35rem .6rem; border-radius: 4px; }}
.integrity.intact {{ background: #dafbe1; }} .integrity.broken {{ background: #ffebe9; color: #b3261e; font-weight: 600; }} .totals span {{ font-weight: 600; }}
.scroll {{ overflow-x: auto; }}  /* a narrow window scrolls the table, never cuts a column off */
table {{ border-collapse: collapse; width: 100%; }}
th, td {{ border-bottom: 1px solid #d0d7de; padding: .3rem .45rem; text-align: left; vertical-align: top;
          overflow-wrap: break-word; }}
td.digest, td.run_id {{ font: 12px/1.35 ui-monospace, monospace; }}
td.digest {{ max-width: 15ch; overflow: hidden; text-overflow: ellipsis; }}
td.ts, td.decision, td.run_id, td.digest, td.size, td.exit, td.signed {{ white-space: nowrap; }}
td.size {{ text-align: right; }}
td.source, td.target {{ min-width: 16ch; max-width: 30ch; overflow-wrap: anywhere; }}
td.reason {{ min-width: 20ch; max-width: 36ch; overflow-wrap: anywhere; }} td.signer, td.gates, td.method {{ max-width: 30ch; }}
th {{ background: #f6f8fa; cursor: pointer; }}
tr.refused td:first-child, span.refused {{ color: #b3261e; }} tr.failed td:first-child, span.failed {{ color: #9a6700; }}
tr.pushed td:first-child, span.pushed {{ color: #1a7f37; }} tr.skipped {{ color: #57606a; }}
tr.refused {{ background: #fff1f0; }}
.controls {{ margin: .6rem 0; display: flex; gap: .6rem; }} input, select {{ font: inherit; padding: .2rem .4rem; }}
@media print {{ .controls {{ display: none; }} .scroll {{ overflow: visible; }} body {{ margin: 0; font-size: 10px; }}
               tr {{ break-inside: avoid; }} .integrity, tr.refused {{ print-color-adjust: exact; }} }}
</style></head><body>
<h1>{title}</h1>
<p class="meta">Built from <code>{trail}</code> alone. Refusals first. Check integrity with <code>regsync audit verify</code>.</p>
{integrity}
<p class="totals">{totals}</p>
<h2>Artifacts (<span id="shown">{count}</span> of {count})</h2>
<div class="controls"><input id="filter" type="search" placeholder="filter: text in any column" aria-label="filter">
<select id="decision" aria-label="decision"><option value="">every decision</option><option>refused</option>
<option>failed</option><option>pushed</option><option>skipped</option></select></div>
<div class="scroll"><table id="artifacts"><thead><tr>{head}</tr></thead><tbody>
{body}
</tbody></table></div>
<h2>Runs</h2>
<div class="scroll"><table id="runs"><thead><tr><th>Run</th><th>Started</th><th>Finished</th><th>Host</th><th>User</th><th>Policy</th>
<th>Exit</th><th>Counts</th><th>Bytes</th><th>Signed</th><th>Approved by</th></tr></thead><tbody>
{runs}
</tbody></table></div>
<script>
(function () {{
  var table = document.getElementById("artifacts"), body = table.tBodies[0];
  var filter = document.getElementById("filter"), decision = document.getElementById("decision");
  function apply() {{
    var text = filter.value.toLowerCase(), shown = 0;
    Array.prototype.forEach.call(body.rows, function (row) {{
      var ok = (!decision.value || row.className === decision.value) &&
               (!text || row.textContent.toLowerCase().indexOf(text) >= 0);
      row.style.display = ok ? "" : "none"; if (ok) shown++;
    }});
    document.getElementById("shown").textContent = shown;
  }}
  filter.addEventListener("input", apply); decision.addEventListener("change", apply);
  Array.prototype.forEach.call(table.tHead.rows[0].cells, function (th) {{
    function sort() {{
      var col = +th.dataset.col, dir = th.dataset.dir === "asc" ? -1 : 1;
      th.dataset.dir = dir === 1 ? "asc" : "desc";
      var rows = Array.prototype.slice.call(body.rows);
      rows.sort(function (a, b) {{
        var x = a.cells[col].textContent, y = b.cells[col].textContent, nx = parseFloat(x), ny = parseFloat(y);
        return dir * (!isNaN(nx) && !isNaN(ny) ? nx - ny : x.localeCompare(y));
      }});
      rows.forEach(function (r) {{ body.appendChild(r); }});
    }}
    th.addEventListener("click", sort);
    th.addEventListener("keydown", function (ev) {{ if (ev.key === "Enter") sort(); }});
  }});
}})();
</script>
</body></html>
"""
