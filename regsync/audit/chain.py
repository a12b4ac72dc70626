"""Check an audit trail: the hash chain, the sequence, run framing and run-finished signatures.

Reports the first line where the trail stops being what regsync wrote, and why. Without a key,
a rewrite of the whole chain from some line on is undetectable by construction (anyone can
recompute sha256); with signed run-finished records and `--key`, it is not.
"""

from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

from regsync.audit.log import GENESIS, signed_bytes
from regsync.content.files import open_input

MAX_LINE_BYTES = 4 * 1024 * 1024


# The fields a report, an index and an inventory read, and the types regsync writes them with.
_RECORD_FIELDS = (("seq", int), ("ts", str), ("run_id", str), ("event", str))
_OPTIONAL_FIELDS = (("artifact", dict), ("verification", dict), ("policy_rule", str), ("reason", str))
_ARTIFACT_FIELDS = (("kind", str), ("source", str), ("target", str), ("digest", str), ("size", int))


def read_record(raw: bytes | str) -> dict | None:
    """One line of a trail as an audit record, or None when it is not one (not JSON, JSON nested past
    the parser's depth, a list or a number, a record whose fields have other types than regsync
    writes). A report, an index or an inventory shows what the file holds and skips the rest:
    naming the damaged line is `audit verify`'s job, and the report carries its verdict."""
    try:
        record = json.loads(raw)
    except (ValueError, RecursionError):
        return None
    if not isinstance(record, dict):
        return None
    artifact = record.get("artifact")
    checks: list[tuple[object, type, bool]] = [(record.get(key), kind, True) for key, kind in _RECORD_FIELDS]
    checks += [(record.get(key), kind, False) for key, kind in _OPTIONAL_FIELDS]
    checks += [(artifact.get(key), kind, False) for key, kind in _ARTIFACT_FIELDS] if isinstance(artifact, dict) else []
    for value, kind, required in checks:
        if (value is None and required) or (value is not None and (not isinstance(value, kind)
                                                                    or isinstance(value, bool))):
            return None
    return record


@dataclass
class ChainReport:
    lines: int = 0
    runs: int = 0
    signed_runs: int = 0
    last_ts: str = ""
    last_seq: int = 0
    head: str = ""      # sha256 of the last line: the anchor an operator keeps outside the file
    run_id: str = ""    # the run of the last record read (the one a failure is in)
    anchor_line: int | None = None  # where the sha256 asked for by `anchor` was found
    broken_line: int | None = None
    reason: str = ""
    open_run: str = ""  # a run with no run-finished at the end: truncated, or still running
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.broken_line is None

    def fail(self, line: int, reason: str) -> "ChainReport":
        self.broken_line, self.reason = line, reason
        return self


def verify_chain(path: Path, public_key=None, anchor: str | None = None) -> ChainReport:
    """`public_key`: a regsync.trust.keys.PublicKey; when given, every run-finished must carry its signature.
    `anchor`: a line's sha256 to look for (see anchor_problem)."""
    report = ChainReport()
    prev_hash, prev_seq = GENESIS, 0
    open_run: tuple[str, int] | None = None  # (run_id, line of its run-started)
    with open_input(path) as handle:
        lines = _with_next(handle)
        for number, (raw, following) in enumerate(lines, start=1):
            report.lines, report.run_id = number, ""
            if len(raw) > MAX_LINE_BYTES:
                return report.fail(number, "line too long to be an audit record")
            if not raw.endswith(b"\n"):
                return report.fail(number, "truncated line (no newline): the file was cut mid-write or edited")
            try:
                entry = json.loads(raw)
                seq, prev, event, run_id = int(entry["seq"]), entry["prev"], entry["event"], entry["run_id"]
            except (ValueError, KeyError, TypeError, OverflowError, RecursionError):
                return report.fail(number, "not an audit record (invalid JSON or missing seq/prev/event/run_id)")
            report.run_id = run_id
            if seq != prev_seq + 1:
                return report.fail(number, _out_of_sequence(path, number, seq, prev_seq, following))
            if prev != prev_hash:
                what = "the previous line was edited" if number > 1 else "the first line does not start a chain"
                return report.fail(number - 1 if number > 1 else 1,
                                   f"{what} (its sha256 no longer matches line {number}'s prev)")
            if event == "run-started":
                if open_run:
                    noticed = ("; this run-started found it unfinished, so it ended before this run began "
                               "(a crash or kill?)" if entry.get("previous_run_unfinished") == open_run[0] else "")
                    return report.fail(number, f"run {open_run[0]} (started line {open_run[1]}) has no "
                                               f"run-finished before this run-started: truncated run{noticed}")
                open_run = (run_id, number)
                report.runs += 1
            elif open_run is None or run_id != open_run[0]:
                return report.fail(number, f"record of run {run_id} outside a run-started/run-finished frame")
            if event == "run-finished":
                problem = _check_signature(entry, public_key, report)
                if problem:
                    return report.fail(number, problem)
                open_run = None
            prev_hash, prev_seq, report.last_ts = hashlib.sha256(raw).hexdigest(), seq, entry.get("ts", "")
            if prev_hash == anchor:
                report.anchor_line = number
    report.head, report.last_seq = prev_hash, prev_seq
    if report.lines == 0:
        return report.fail(1, "empty: no records at all (regsync never leaves a trail empty)")
    if open_run:
        report.open_run = open_run[0]
        return report.fail(open_run[1], f"run {open_run[0]} has no run-finished: truncated run "
                                        "(or still running)")
    if public_key is None and report.signed_runs:
        report.notes.append(f"{report.signed_runs} signed run(s) not checked: pass --key to check them")
    return report


def anchor_problem(report: ChainReport, anchor: str, anchor_seq: int | None = None) -> str | None:
    """Whole runs cut from the end leave a shorter trail that is still valid, and still signed: only
    a record's sha256 kept outside the file (a run's summary JSON or metrics) shows the cut. The
    trail must still contain that record; runs appended after it are normal."""
    if report.anchor_line is not None:
        return None
    if anchor_seq is not None and report.last_seq < anchor_seq:
        return (f"the trail ends at seq {report.last_seq}, before the anchor (seq {anchor_seq}): truncated, "
                f"{anchor_seq - report.last_seq} record(s) cut from the end")
    if anchor_seq is not None:
        return (f"record seq {anchor_seq} is not the anchored one (sha256 {anchor}): "
                f"the trail was rewritten at or before it")
    return (f"{anchor} is not the hash of any record: the trail was truncated before it or rewritten "
            f"(it ends at seq {report.last_seq}, sha256 {report.head})")


def _with_next(handle):
    """Each line with the one after it (None at the end): enough lookahead to tell a swap from a gap."""
    current = next(handle, None)
    while current is not None:
        following = next(handle, None)
        yield current, following
        current = following


def _out_of_sequence(path: Path, number: int, seq: int, prev_seq: int, following: bytes | None) -> str:
    """Tell a move from a deletion: is the seq that belongs here further down the file?"""
    wanted = prev_seq + 1
    if _seq_of(following) == wanted:
        return f"seq {seq} after {prev_seq}: lines were reordered (seq {wanted} is on line {number + 1})"
    with path.open("rb") as handle:
        for later, raw in enumerate(handle, start=1):
            if later > number and _seq_of(raw) == wanted:
                return f"seq {seq} after {prev_seq}: lines were reordered (seq {wanted} is on line {later})"
    if seq <= prev_seq:
        return f"seq {seq} after {prev_seq}: a line was duplicated or moved here"
    return f"seq jumps from {prev_seq} to {seq}: {seq - prev_seq - 1} line(s) deleted"


def _seq_of(raw: bytes | None) -> int | None:
    try:
        return int(json.loads(raw)["seq"]) if raw else None
    except (ValueError, KeyError, TypeError, OverflowError, RecursionError):
        return None


def _check_signature(entry: dict, public_key, report: ChainReport) -> str | None:
    signature = entry.get("signature")
    if signature is None:
        return "run-finished is not signed, but a key was given: forged or unsigned tail" if public_key else None
    report.signed_runs += 1
    if public_key is None:
        return None
    try:
        value = base64.b64decode(signature["value"], validate=True)
    except (KeyError, TypeError, ValueError):
        return "run-finished signature is malformed"
    if signature.get("key_id") != public_key.fingerprint:
        return f"run-finished signed by {signature.get('key_id')}, not by the given key {public_key.fingerprint}"
    try:
        valid = public_key.verify(value, signed_bytes(entry))
    except ValueError:
        valid = False
    return None if valid else "run-finished signature does not verify: the record or the trail before it was forged"
