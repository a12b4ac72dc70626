"""A source channel's `<subdir>/repodata.json`, read by regsync itself and handed to rattler as a
local copy.

Why regsync reads it, not rattler: every body regsync reads is bounded (a 96 KiB `.zst` can inflate
to gigabytes; rattler's own fetch has no cap), and clients must see upstream's records exactly as
published (key for key: `revoked`, `namespace`, `app_*`, nulls...), which rattler's typed record
does not keep. So the compressed body and its inflation are both capped here, the records as
published are kept from the same bytes, and rattler reads the same bytes from a local file (its
solver, match specs and attestation checks unchanged). The copy keeps ETag / Last-Modified for a
conditional request next run.

A channel that offers only CEP-16 shards for a subdir is refused unless it says `shards: allow`
(channel.py); then regsync reads the shards a solve needs, bounded, into the same local copy
(shards.py).
"""

from __future__ import annotations

import hashlib
import json
import mmap
import os
import re
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import requests

from regsync.content.files import read_private_json, write_atomically, write_private_json
from regsync.content.reader import CHUNK, read_bounded
from regsync.errors import RegistryError

try:
    from compression import zstd  # Python 3.14
except ImportError:
    from backports import zstd

MAX_COMPRESSED = 256 << 20   # a source's repodata.json.zst as sent (conda-forge's linux-64: ~40 MiB)
MAX_REPODATA = 1 << 30       # a source's repodata.json, inflated or as sent (conda-forge's linux-64: ~300 MiB)
MAX_RECORD = 4 << 20         # one record's JSON (a few KiB in practice)
SHARDS = "repodata_shards.msgpack.zst"
_STATE = "regsync-state.json"
_PUBLISHED = "published.json"
# A record's key in `packages`/`packages.conda`: a package file name (names.py's grammar) then `: {`.
# Only a key is followed by a colon; a match that is not a record is dropped when it is read (see
# Listing.record). An index of offsets keeps memory to a few dozen bytes per record, where a parsed
# conda-forge subdir would take gigabytes of Python objects. One pattern per extension, each starting
# with a literal (re then skips ahead at memchr speed; an alternation is 6x slower, measured).
_KEY_ENDS = (re.compile(rb'\.conda"\s*:\s*\{'), re.compile(rb'\.tar\.bz2"\s*:\s*\{'))
_NAME = re.compile(rb"[A-Za-z0-9_.][A-Za-z0-9_.!+-]{0,254}")
_LISTS = ("depends", "constrains")
_NULL_LIST = re.compile(rb'"(?:depends|constrains)"\s*:\s*null')
_SPACE = re.compile(r"\s*")
_EMPTY_OBJECT = re.compile(r"\{\s*\}")


class Listing:
    """One subdir's repodata as the channel published it: the bytes on disk, records read on demand."""

    def __init__(self, subdir: str, path: Path):
        self.subdir, self.path = subdir, path
        with open(path, "rb") as handle:
            self._data = mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) if path.stat().st_size else b""
        self._offsets: dict[str, list[int]] = {}
        self._removed: list[str] | None = None
        data = self._data
        for pattern in _KEY_ENDS:
            for match in pattern.finditer(data):
                quote = data.find(b'"', match.start())
                start = data.rfind(b'"', max(0, match.start() - 256), match.start())
                # `"packages.conda": {` matches too: a section's key, never a file's
                if start != -1 and _NAME.fullmatch(data, start + 1, quote) and data[start + 1:quote] != b"packages.conda":
                    self._offsets.setdefault(data[start + 1:quote].decode(), []).append(match.end() - 1)

    def __contains__(self, filename: str) -> bool:
        return filename in self._offsets

    def positions(self) -> dict[str, int]:
        """File name → where upstream's repodata lists it (a byte offset: only the order means
        anything). A target lists new records in this order (targets.py)."""
        return {filename: found[0] for filename, found in self._offsets.items()}

    def removed(self) -> list[str]:
        """The top-level `removed` list (file names the channel withdrew), from the text before the
        first record and after the last one: where conda-index (sorted keys) and rattler (after
        `packages.conda`) write it; the records between are not parsed for it. Read once."""
        if self._removed is None:
            self._removed = self._read_removed()
        return list(self._removed)

    def _read_removed(self) -> list[str]:
        offsets = sorted(found for listed in self._offsets.values() for found in listed)
        data = self._data
        head = bytes(data[:min(offsets[0] if offsets else len(data), MAX_RECORD)]).decode("utf-8", "replace")
        entries = _top_level(head, 0, "{", stop_at_records=bool(offsets))[0]
        if offsets:
            tail = bytes(data[offsets[-1]:]).decode("utf-8", "replace")
            try:
                end = json.JSONDecoder().raw_decode(tail)[1]   # the last record: then its section closes
            except ValueError:
                end = None
            # read only when it parses to the document's end: a key inside a record that looks like
            # a file's (a nested `"x.conda": {`) never makes the rest of that record read as top level
            found, whole = _top_level(tail, end, "}", stop_at_records=False) if end is not None else ([], False)
            entries += found if whole else []
        return [entry for entry in entries if isinstance(entry, str)]

    def record(self, filename: str, name: str, digests: dict[str, str]) -> dict[str, Any] | None:
        """The record of `filename` key for key as published: the object at its key whose name and
        digests are the ones rattler read for that file."""
        for offset in self._offsets.get(filename, ()):
            record = self._object_at(offset)
            if isinstance(record, dict) and record.get("name") == name and all(
                    record.get(key) == value for key, value in digests.items()):
                return record
        return None

    def _object_at(self, offset: int) -> object:
        decoder = json.JSONDecoder()
        for window in (64 << 10, MAX_RECORD):
            try:
                return decoder.raw_decode(bytes(self._data[offset:offset + window]).decode("utf-8", "replace"))[0]
            except ValueError:
                continue
        return None


def _top_level(text: str, pos: int, opening: str, stop_at_records: bool) -> tuple[list[object], bool]:
    """The `removed` entries among the top-level members in `text` from `pos`, which must start with
    `opening` (the document's `{`, or the `}` that closes the section holding the last record), and
    whether the document's end was reached with nothing after it. Stops at a section that holds
    records (`stop_at_records`) or at anything not JSON."""
    decoder, found = json.JSONDecoder(), list[object]()
    pos = _skip(text, pos)
    if not text.startswith(opening, pos):
        return found, False
    pos, first = pos + 1, opening == "{"
    try:
        while True:
            pos = _skip(text, pos)
            if text.startswith("}", pos):
                return found, _skip(text, pos + 1) == len(text)
            if not first:
                if not text.startswith(",", pos):
                    return found, False
                pos = _skip(text, pos + 1)
            first = False
            key, pos = decoder.raw_decode(text, pos)
            pos = _skip(text, pos)
            if not text.startswith(":", pos):
                return found, False
            pos = _skip(text, pos + 1)
            if stop_at_records and key in ("packages", "packages.conda") and not _EMPTY_OBJECT.match(text, pos):
                return found, False
            value, pos = decoder.raw_decode(text, pos)
            if key == "removed" and isinstance(value, list):
                found += value
    except ValueError:
        return found, False


def _skip(text: str, pos: int) -> int:
    """`pos` past any white space."""
    found = _SPACE.match(text, pos)
    assert found is not None, "\\s* matches anywhere"
    return found.end()


def local_root(cache: Path, channel_url: str) -> Path:
    """The directory rattler reads as a file:// channel for `channel_url` (one per channel URL)."""
    return cache / "local" / hashlib.sha256(channel_url.encode()).hexdigest()[:24]


def fetch_listing(session: requests.Session, name: str, channel_url: str, subdir: str, root: Path) -> Listing | None:
    """The subdir's repodata, the copy rattler reads written as `root/<subdir>/repodata.json`; None when
    the channel offers only shards there. A subdir the channel does not have is an empty listing."""
    folder = root / subdir
    folder.mkdir(parents=True, exist_ok=True)
    local, published, state_path = folder / "repodata.json", folder / _PUBLISHED, folder / _STATE
    try:
        state = read_private_json(state_path) if published.exists() and local.exists() else {}
    except (OSError, ValueError):
        state = {}
    subdir_url = f"{channel_url}/{subdir}/"
    where = f"{name}/{subdir}/repodata.json"
    for variant in ("repodata.json.zst", "repodata.json"):
        headers = {}
        if isinstance(state, dict) and state.get("variant") == variant:
            headers = {k: v for k, v in (("If-None-Match", state.get("etag")),
                                         ("If-Modified-Since", state.get("last_modified"))) if isinstance(v, str)}
        response = get_streamed(session, subdir_url + variant, headers, where)
        if response.status_code == 304 and headers:
            response.close()
            return Listing(subdir, published)
        if response.status_code == 200:
            _save(response, variant.endswith(".zst"), folder, where)
            readable_copy(folder, where)
            write_private_json(state_path, {"variant": variant, "etag": response.headers.get("ETag"),
                                            "last_modified": response.headers.get("Last-Modified")})
            return Listing(subdir, published)
        response.close()
        if response.status_code not in (403, 404):
            raise RegistryError(where, response.status_code, "cannot read the channel's repodata")
    shards = get_streamed(session, subdir_url + SHARDS, {}, where)
    shards.close()
    if shards.status_code == 200:
        return None
    state_path.unlink(missing_ok=True)
    write_atomically(published, json.dumps({"info": {"subdir": subdir}, "packages": {}, "packages.conda": {}}))
    readable_copy(folder, where)
    return Listing(subdir, published)


def get_streamed(session: requests.Session, url: str, headers: dict[str, str], where: str) -> requests.Response:
    try:
        # no redirect to another origin is followed by this session (regsync.net.http)
        return session.get(url, headers=headers, stream=True, timeout=(15, 300))
    except requests.RequestException:
        raise RegistryError(where, None, f"cannot reach {url.rsplit('/', 2)[0]}") from None


def _save(response: requests.Response, compressed: bool, folder: Path, where: str) -> None:
    """The body into `published.json`, bounded as sent and as inflated (a zstd bomb stops at
    MAX_REPODATA bytes of output), streamed to disk: memory holds at most the compressed body."""
    tmp = folder / f".{_PUBLISHED}.{os.getpid()}.tmp"
    try:
        with open(tmp, "wb") as out:
            if compressed:
                body = read_bounded(response, MAX_COMPRESSED)
                if body is None:
                    raise RegistryError(where, None, f"compressed larger than {MAX_COMPRESSED} bytes; refused")
                inflate(body, MAX_REPODATA, where, out.write)
            else:
                _copy_bounded(response, MAX_REPODATA, where, out.write)
    except requests.RequestException:
        raise RegistryError(where, None, "the connection broke while reading it") from None
    finally:
        response.close()
    tmp.replace(folder / _PUBLISHED)


def _copy_bounded(response: requests.Response, limit: int, where: str, write: Callable[[bytes], object]) -> None:
    count = 0
    for chunk in iter(lambda: response.raw.read(CHUNK, decode_content=True), b""):
        count += len(chunk)
        if count > limit:
            raise RegistryError(where, None, f"larger than {limit} bytes; refused")
        write(chunk)


def inflate(data: bytes, limit: int, where: str, write: Callable[[bytes], object]) -> None:
    """zstd frames one after another, written out a chunk at a time, their output capped at `limit`
    bytes (never inflated further)."""
    count = 0
    try:
        while data:
            decompressor = zstd.ZstdDecompressor()
            chunk = decompressor.decompress(data, max_length=CHUNK)
            while True:
                count += len(chunk)
                if count > limit:
                    raise RegistryError(where, None, f"inflates to more than {limit} bytes; refused")
                write(chunk)
                if decompressor.eof or decompressor.needs_input:
                    break
                chunk = decompressor.decompress(b"", max_length=CHUNK)
            if not decompressor.eof:
                raise RegistryError(where, None, "a truncated zstd stream")
            data = decompressor.unused_data
    except zstd.ZstdError as exc:
        raise RegistryError(where, None, f"not zstd: {str(exc)[:200]}") from None


def readable_copy(folder: Path, where: str) -> None:
    """The copy rattler reads: upstream's bytes (a hard link), unless a list field is published as
    null (conda reads it as empty; rattler refuses the whole subdir), which the copy gives as empty.
    The records carried to the target are read from `published.json`, as published."""
    published, local = folder / _PUBLISHED, folder / "repodata.json"
    tmp = folder / f".repodata.json.{os.getpid()}.tmp"
    tmp.unlink(missing_ok=True)
    nulls = False
    if published.stat().st_size:
        with open(published, "rb") as handle, mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as data:
            nulls = _NULL_LIST.search(data) is not None
    if not nulls:
        try:
            os.link(published, tmp)
        except OSError:  # a filesystem without hard links
            shutil.copyfile(published, tmp)
    else:
        repodata = _loaded(published.read_bytes(), where)
        for key in ("packages", "packages.conda"):
            if isinstance(repodata.get(key), dict):
                repodata[key] = {filename: _readable(record) for filename, record in repodata[key].items()}
        tmp.write_bytes(json.dumps(repodata).encode())
    tmp.replace(local)


def _loaded(raw: bytes, where: str) -> dict[str, Any]:
    try:
        repodata = json.loads(raw)
    except ValueError:
        raise RegistryError(where, None, "not JSON") from None
    if not isinstance(repodata, dict):
        raise RegistryError(where, None, "not a repodata object")
    return repodata


def _readable(record: object) -> object:
    if isinstance(record, dict) and any(record.get(key, ()) is None for key in _LISTS):
        return {**record, **{key: [] for key in _LISTS if key in record and record[key] is None}}
    return record
