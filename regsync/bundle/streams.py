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
MAX_STREAMS = 10_000   # streams remembered (one per policy version): the least recently used go first
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
            _put_last(state, policy_sha256, sequence, MAX_STREAMS)
    except UsageError:
        pass  # no usable state dir: the clock alone orders this machine's bundles
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


def claim(meta: dict, bundle_sha256: str, allow_rollback: bool = False) -> str | None:
    """Import, before anything is touched: record this bundle as the last one imported of its
    stream, checked and recorded under one lock (two imports at once cannot both pass). Refuses
    (RollbackRefused) a replay: an older bundle, or another with the same sequence; the last bundle
    itself may be imported again (a re-run finishes its work). With `allow_rollback` a replay is
    recorded all the same and the reason returned, for the audit trail."""
    identity = identity_of(meta)
    if identity is None:
        why = ("the bundle carries no export stream and sequence (exported by an older regsync, or altered): "
               "it cannot be told apart from a replayed old bundle; export it again")
        if not allow_rollback:
            raise RollbackRefused(f"{why}; nothing was touched (--allow-rollback imports it all the same, audited)")
        return why
    sid, sequence = identity
    with _state("imported.json") as state:
        why = _replay(state.get("streams", {}).get(sid), meta, sid, sequence, bundle_sha256)
        if why and not allow_rollback:
            raise RollbackRefused(f"{why}; nothing was touched (--allow-rollback imports it all the same, audited)")
        _put_last(state.setdefault("streams", {}), sid, {
            "sequence": sequence, "bundle_sha256": bundle_sha256, "created": meta.get("created"),
            "imported": datetime.now(timezone.utc).isoformat(timespec="seconds")}, MAX_STREAMS)
    return why


def _replay(last, meta: dict, sid: str, sequence: int, bundle_sha256: str) -> str | None:
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


def remember_placed(meta: dict, pushed: dict[str, dict], keep: int = 200_000) -> None:
    """What an import placed (target reference → {digest, verified_at}); the `keep` placed last are kept."""
    sid, sequence = identity_of(meta) or (None, None)
    with _state("imported.json") as state:
        known = state.setdefault("placed", {})
        for target, what in pushed.items():
            _put_last(known, target, {**what, "stream": sid, "sequence": sequence}, keep)


def _put_last(entries: dict, key: str, value, keep: int) -> None:
    """`entries[key] = value` as its newest entry (a dict keeps insertion order, and so does JSON);
    beyond `keep` entries the oldest are forgotten, so the state file stays bounded."""
    entries.pop(key, None)
    entries[key] = value
    for old in list(entries)[:max(0, len(entries) - keep)]:
        del entries[old]


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
    """Read, change and replace a state file atomically, one run at a time (an flock beside it).
    Without a usable state dir an import stops (exit 2) rather than go on without its record."""
    try:
        folder = private_subdir(_where().parent, FOLDER)
        fd = os.open(folder / ".lock", os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
    except OSError as exc:
        raise UsageError(f"cannot keep the record of imported bundles in the state dir ({exc.strerror or exc}): "
                         f"without it an older bundle could be replayed; set REGSYNC_STATE_DIR to a writable "
                         f"directory of this user") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        state = _read(name)
        yield state
        write_private_json(folder / name, state)
    finally:
        os.close(fd)
