"""A source channel's `<subdir>/repodata.json`, read by regsync itself and handed to rattler as a
local copy.

Why regsync reads it, not rattler: every body regsync reads is bounded (a 96 KiB `.zst` can inflate
to gigabytes; rattler's own fetch has no cap), and clients must see upstream's records exactly as
published (key for key: `revoked`, `namespace`, `app_*`, nulls...), which rattler's typed record
does not keep. So the compressed body and its inflation are both capped here, the records as
published are kept from the same bytes, and rattler reads the same bytes from a local file (its
solver, match specs and attestation checks unchanged). The copy keeps ETag / Last-Modified for a
conditional request next run.

A channel that offers only CEP-16 shards for a subdir is left to rattler (which reads only the
shards a solve needs); see docs/conda.md, "Not done yet".
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urljoin

import requests

from regsync.content.files import read_private_json, write_atomically, write_private_json
from regsync.content.reader import read_bounded
from regsync.errors import RegistryError

try:
    from compression import zstd  # Python 3.14
except ImportError:
    from backports import zstd

MAX_COMPRESSED = 256 << 20   # a source's repodata.json.zst as sent (conda-forge's linux-64: ~40 MiB)
MAX_REPODATA = 1 << 30       # a source's repodata.json, inflated or as sent (conda-forge's linux-64: ~300 MiB)
SHARDS = "repodata_shards.msgpack.zst"
_STATE = "regsync-state.json"
_LISTS = ("depends", "constrains")


@dataclass
class Listing:
    """One subdir's repodata as the channel published it."""

    subdir: str
    files_url: str                       # where its files are: CEP-15 info.base_url, else the subdir's own URL
    records: dict[str, dict]             # file name -> the record, key for key as published
    removed: list = field(default_factory=list)


def local_root(cache: Path, channel_url: str) -> Path:
    """The directory rattler reads as a file:// channel for `channel_url` (one per channel URL)."""
    return cache / "local" / hashlib.sha256(channel_url.encode()).hexdigest()[:24]


def fetch_listing(session: requests.Session, name: str, channel_url: str, subdir: str, root: Path) -> Listing | None:
    """The subdir's repodata, its local copy written under `root/<subdir>/repodata.json`; None when the
    channel offers only shards there. A subdir the channel does not have is an empty listing."""
    folder = root / subdir
    folder.mkdir(parents=True, exist_ok=True)
    local, state_path = folder / "repodata.json", folder / _STATE
    try:
        state = read_private_json(state_path) if local.exists() else {}
    except (OSError, ValueError):
        state = {}
    subdir_url = f"{channel_url}/{subdir}/"
    where = f"{name}/{subdir}/repodata.json"
    for variant in ("repodata.json.zst", "repodata.json"):
        headers = {}
        if isinstance(state, dict) and state.get("variant") == variant:
            headers = {k: v for k, v in (("If-None-Match", state.get("etag")),
                                         ("If-Modified-Since", state.get("last_modified"))) if isinstance(v, str)}
        response = _get(session, subdir_url + variant, headers, where)
        if response.status_code == 304 and headers:
            response.close()
            # the local copy's base_url is already the absolute files URL (see _write_local)
            return _listing(subdir, _loaded(local.read_bytes(), where), subdir_url)
        if response.status_code == 200:
            repodata = _loaded(_body(response, variant.endswith(".zst"), where), where)
            listing = _listing(subdir, repodata, subdir_url)
            _write_local(local, repodata, listing.files_url)
            write_private_json(state_path, {"variant": variant, "etag": response.headers.get("ETag"),
                                            "last_modified": response.headers.get("Last-Modified")})
            return listing
        response.close()
        if response.status_code not in (403, 404):
            raise RegistryError(where, response.status_code, "cannot read the channel's repodata")
    shards = _get(session, subdir_url + SHARDS, {}, where)
    shards.close()
    if shards.status_code == 200:
        return None
    state_path.unlink(missing_ok=True)
    empty = {"info": {"subdir": subdir}, "packages": {}, "packages.conda": {}}
    _write_local(local, empty, subdir_url.rstrip("/"))
    return _listing(subdir, empty, subdir_url)


def _get(session, url: str, headers: dict, where: str) -> requests.Response:
    try:
        # no redirect to another origin is followed by this session (regsync.net.http)
        return session.get(url, headers=headers, stream=True, timeout=(15, 300))
    except requests.RequestException:
        raise RegistryError(where, None, f"cannot reach {url.rsplit('/', 2)[0]}") from None


def _body(response: requests.Response, compressed: bool, where: str) -> bytes:
    """The body, bounded as sent and as inflated: a zstd bomb stops at MAX_REPODATA bytes of output."""
    limit = MAX_COMPRESSED if compressed else MAX_REPODATA
    try:
        body = read_bounded(response, limit)
    except requests.RequestException:
        raise RegistryError(where, None, "the connection broke while reading it") from None
    finally:
        response.close()
    if body is None:
        raise RegistryError(where, None, f"{'compressed ' if compressed else ''}larger than {limit} bytes; refused")
    return inflate(body, MAX_REPODATA, where) if compressed else body


def inflate(data: bytes, limit: int, where: str) -> bytes:
    """zstd frames one after another, their output capped at `limit` bytes (never inflated further)."""
    out = bytearray()
    try:
        while data:
            decompressor = zstd.ZstdDecompressor()
            chunk = decompressor.decompress(data, max_length=limit + 1 - len(out))
            while True:
                out += chunk
                if len(out) > limit:
                    raise RegistryError(where, None, f"inflates to more than {limit} bytes; refused")
                if decompressor.eof or decompressor.needs_input:
                    break
                chunk = decompressor.decompress(b"", max_length=limit + 1 - len(out))
            if not decompressor.eof:
                raise RegistryError(where, None, "a truncated zstd stream")
            data = decompressor.unused_data
    except zstd.ZstdError as exc:
        raise RegistryError(where, None, f"not zstd: {str(exc)[:200]}") from None
    return bytes(out)


def _loaded(raw: bytes, where: str) -> dict:
    try:
        repodata = json.loads(raw)
    except ValueError:
        raise RegistryError(where, None, "not JSON") from None
    if not isinstance(repodata, dict):
        raise RegistryError(where, None, "not a repodata object")
    return repodata


def _listing(subdir: str, repodata: dict, subdir_url: str) -> Listing:
    info = repodata.get("info") if isinstance(repodata.get("info"), dict) else {}
    base_url = info.get("base_url") if isinstance(info.get("base_url"), str) else ""
    records: dict[str, dict] = {}
    for key in ("packages", "packages.conda"):
        found = repodata.get(key) or {}
        if isinstance(found, dict):
            records.update((filename, record) for filename, record in found.items() if isinstance(record, dict))
    # CEP-15: base_url is where this subdir's files are, absolute or relative to the repodata's URL
    files_url = urljoin(subdir_url, base_url) if base_url else subdir_url
    removed = repodata.get("removed")
    return Listing(subdir, files_url.rstrip("/"), records, removed if isinstance(removed, list) else [])


def _write_local(local: Path, repodata: dict, files_url: str) -> None:
    """The listing rattler reads. Its records' URLs must name the upstream file (an attestation
    sidecar is read beside it), so the copy's base_url is the absolute files URL (CEP-15). Only the
    `info` of the copy differs; the records are the same objects."""
    info = repodata.get("info") if isinstance(repodata.get("info"), dict) else {}
    copy = {**repodata, "info": {**info, "base_url": files_url + "/"}, "repodata_version": 2}
    for key in ("packages", "packages.conda"):
        if isinstance(copy.get(key), dict):
            copy[key] = {filename: _readable(record) for filename, record in copy[key].items()}
    write_atomically(local, json.dumps(copy).encode())


def _readable(record):
    """A list field published as null (conda reads it as empty; rattler refuses the whole subdir):
    empty in the copy rattler reads. The record carried to the target stays as published."""
    if isinstance(record, dict) and any(record.get(key, ()) is None for key in _LISTS):
        return {**record, **{key: [] for key in _LISTS if key in record and record[key] is None}}
    return record
