"""A bundle's place in its export stream, so an older bundle is never taken for news (docs/airgap.md,
"Replays and rollbacks").

Export stamps bundle.json with `stream: {id, sequence}`: the id is the policy's sha256 (import takes
a bundle only with the policy that made it, so one policy is one stream), the sequence a number that
only grows: the export's start in milliseconds since the epoch, or one more than the last sequence
this machine gave the stream if its clock went back. Both are inside bundle.json, so a bundle
signature covers them. The import side keeps, per stream, the last bundle imported, and per target
reference what it placed there and when the bundle's export had verified it.
"""

from __future__ import annotations

import errno
import fcntl
import os
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path

from regsync.content.files import private_subdir, read_private_json, state_dir, write_private_json
from regsync.errors import EXIT_USAGE, UsageError, VerificationError

STREAM_ID = re.compile(r"[0-9a-f]{64}")
MAX_SEQUENCE = 1 << 62
MAX_STATE_BYTES = 64 * 1024 * 1024
FOLDER = "bundles"


class RollbackRefused(VerificationError):
    """A bundle older than (or another than) the last one imported of its stream: refused whole,
    before anything is touched, as a usage error (exit 2) the audit records as a refusal."""

    exit_code = EXIT_USAGE


def stamp(policy_sha256: str) -> dict:
    """Export: the next identity of the policy's stream."""
    sequence = time.time_ns() // 1_000_000
    try:
        with _state("exported.json") as state:
            last = state.get(policy_sha256)
            if isinstance(last, int) and last >= sequence:
                sequence = last + 1
            state[policy_sha256] = sequence
    except OSError:
        pass  # no state dir: the clock alone orders this machine's bundles
    return {"id": policy_sha256, "sequence": sequence}


def identity_of(meta: dict) -> tuple[str, int] | None:
    """(stream id, sequence) of an opened bundle.json, or None when it carries none (a bundle of a
    regsync before streams, or one whose identity is malformed)."""
    stream = meta.get("stream")
    if not isinstance(stream, dict):
        return None
    sid, sequence = stream.get("id"), stream.get("sequence")
    if not (isinstance(sid, str) and STREAM_ID.fullmatch(sid) and isinstance(sequence, int)
            and not isinstance(sequence, bool) and 0 <= sequence < MAX_SEQUENCE):
        return None
    return sid, sequence


def why_refused(meta: dict, bundle_sha256: str) -> str | None:
    """Import, before anything is touched: why this bundle would be a replay, or None. The last
    bundle imported may be imported again (a re-run finishes its work); anything older may not."""
    identity = identity_of(meta)
    if identity is None:
        return ("the bundle carries no export stream and sequence (exported by an older regsync, or "
                "altered): it cannot be told apart from a replayed old bundle; export it again")
    sid, sequence = identity
    last = _read("imported.json").get("streams", {}).get(sid)
    if not isinstance(last, dict) or not isinstance(last.get("sequence"), int):
        return None
    if sequence > last["sequence"] or (sequence == last["sequence"] and bundle_sha256 == last.get("bundle_sha256")):
        return None
    what = "older than" if sequence < last["sequence"] else "another bundle with the same sequence as"
    return (f"the bundle (sequence {sequence} of export stream {sid[:12]}, created {meta.get('created')}) is {what} "
            f"the last one imported (sequence {last['sequence']}, created {last.get('created')}, imported "
            f"{last.get('imported')}): importing it would roll the target back")


def placed(targets: set[str]) -> dict[str, dict]:
    """What earlier imports placed at these target references: {digest, verified_at, stream, sequence}."""
    known = _read("imported.json").get("placed", {})
    return {target: known[target] for target in targets if isinstance(known.get(target), dict)}


def remember(meta: dict, bundle_sha256: str, pushed: dict[str, dict] | None = None, keep: int = 200_000) -> None:
    """Import: this bundle is the last of its stream (before it touches the target: a run cut short
    and re-run is the same bundle again, never an older one slipping in), and `pushed` (target
    reference → {digest, verified_at}) is what it placed; the `keep` placed last are remembered."""
    identity = identity_of(meta)
    if identity is None:
        return
    sid, sequence = identity
    try:
        with _state("imported.json") as state:
            state.setdefault("streams", {})[sid] = {
                "sequence": sequence, "bundle_sha256": bundle_sha256, "created": meta.get("created"),
                "imported": datetime.now(timezone.utc).isoformat(timespec="seconds")}
            known = state.setdefault("placed", {})
            for target, what in (pushed or {}).items():
                known.pop(target, None)  # re-inserted last: the dict keeps the order of placing
                known[target] = {**what, "stream": sid, "sequence": sequence}
            for target in list(known)[:max(0, len(known) - keep)]:
                del known[target]
    except OSError as exc:
        raise UsageError(f"cannot record the imported bundle in {_where()}: {exc.strerror or exc}: without it an "
                         f"older bundle could be replayed (set REGSYNC_STATE_DIR to a writable directory)") from None


def _where() -> Path:
    directory = state_dir()
    if directory is None:
        raise OSError(errno.EINVAL, "REGSYNC_STATE_DIR is empty (no state dir)")
    return directory / FOLDER


def _read(name: str) -> dict:
    try:
        path = _where() / name
        data = read_private_json(path, MAX_STATE_BYTES)
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise UsageError(f"cannot read the record of imported bundles ({FOLDER}/{name} in the state dir): {exc}; "
                         f"without it an older bundle could be replayed") from None
    return data if isinstance(data, dict) else {}


@contextmanager
def _state(name: str) -> Iterator[dict]:
    """Read, change and replace a state file atomically, one run at a time (an flock beside it)."""
    folder = private_subdir(_where().parent, FOLDER)
    fd = os.open(folder / ".lock", os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        state = _read(name)
        yield state
        write_private_json(folder / name, state)
    finally:
        os.close(fd)
