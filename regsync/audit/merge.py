"""Join the trails of shards (or hosts) into one trail that `audit verify` accepts.

Each input is verified first: a broken trail is never laundered into a clean-looking one. Runs
stay whole (shards run at the same time, so interleaving records by time would split frames),
ordered by their start, and are re-chained; every record keeps where it came from. Signatures of
the inputs cannot survive re-chaining (they cover the old `prev`), so they are kept as `origin`
evidence and the merged run-finished records can be signed anew, but only after every input's
run signatures verified under the given public key: a signature on the merged trail vouches for
what went in, so nothing unchecked may be signed.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from regsync.audit.chain import verify_chain
from regsync.audit.log import GENESIS, encode, signature_of, signed_bytes
from regsync.errors import RegsyncError, UsageError


def merge_trails(inputs: list[Path], output: Path, public_key=None, sign_key=None) -> int:
    if sign_key is not None and public_key is None:
        raise UsageError("--sign-key needs --key (the public key the inputs' runs were signed with): "
                         "the merged trail is only signed after every input verified under it")
    if output.exists() and output.stat().st_size:  # before reading gigabytes of input
        raise UsageError(f"{output} exists and is not empty; merge into a new file")
    runs: list[tuple[str, list[tuple[dict, str, int]]]] = []
    merged_from: dict[str, Path] = {}   # run_id → the input it came from: a run is merged once
    for path in inputs:
        report = verify_chain(path, public_key)
        if not report.ok:
            run = f"run {report.run_id}: " if report.run_id else ""
            # exit 1, as `audit verify` exits for the same trail
            raise RegsyncError(f"{path}:{report.broken_line}: {run}{report.reason}; not merging a broken trail")
        current: list = []
        with path.open("rb") as handle:
            for raw in handle:
                entry = json.loads(raw)
                current.append((entry, path.name, entry["seq"]))
                if entry["event"] == "run-finished":
                    if entry["run_id"] in merged_from:
                        raise UsageError(f"run {entry['run_id']} is in {merged_from[entry['run_id']]} and again in "
                                         f"{path} (the same trail given twice?): each run is merged once")
                    merged_from[entry["run_id"]] = path
                    runs.append((current[0][0]["ts"], current))
                    current = []
    runs.sort(key=lambda run: run[0])
    prev, seq = GENESIS, 0
    tmp = output.with_name(output.name + ".tmp")
    with tmp.open("wb") as out:
        for _, records in runs:
            for entry, source, old_seq in records:
                seq += 1
                origin = {"trail": source, "seq": old_seq}
                if "signature" in entry:
                    origin["signature"] = entry.pop("signature")
                entry.update(seq=seq, prev=prev, origin=origin)
                if sign_key is not None and entry["event"] == "run-finished":
                    entry["signature"] = signature_of(sign_key, signed_bytes(entry))
                line = encode(entry)
                out.write(line)
                prev = hashlib.sha256(line).hexdigest()
    tmp.replace(output)
    return seq
