"""A subdir a channel serves as CEP-16 shards only (`shards: allow`), read by regsync with its own
bounds and written as a local repodata.json of just the package names read, which rattler then
reads as it reads any subdir's local copy (repodata.py).

CEP-16: `<subdir>/repodata_shards.msgpack.zst` is a zstd-compressed msgpack map `info` (`base_url`,
`shards_base_url`, both relative to the subdir's URL), `shards` (package name -> the sha256 of its
shard, 32 bytes); a shard is `<shards_base_url>/<sha256 hex>.msgpack.zst`, a msgpack map of
`packages`, `packages.conda` (file name -> record, `sha256`/`md5` as bytes) and `removed`.

Bounds: each body as sent and as inflated; msgpack's own limits on every container and string
(`msgpack.unpackb`), so a small body cannot make millions of objects; records per shard; shards
per subdir and run. A shard's bytes must hash to the sha256 the index names; its URL must be on the
channel's origin (never elsewhere, whatever the index says).
"""

from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path
from typing import Any
from urllib.parse import urljoin

import msgpack
import requests

from regsync.content.files import write_atomically
from regsync.content.reader import read_bounded
from regsync.errors import RegistryError, VerificationError
from regsync.kinds.conda.repodata import SHARDS, get_streamed, inflate, readable_copy
from regsync.net.http import origin

MAX_INDEX_COMPRESSED = 64 << 20   # the shard index as sent (conda-forge's linux-64: a few MiB)
MAX_INDEX = 256 << 20             # ... and inflated
MAX_INDEX_NAMES = 1_000_000       # package names in one index (conda-forge's linux-64: ~30,000)
MAX_SHARD_COMPRESSED = 16 << 20   # one shard as sent
MAX_SHARD = 128 << 20             # ... and inflated
MAX_SHARD_RECORDS = 100_000       # records in one shard (conda-forge's largest: a few thousand)
MAX_SHARDS = 5_000                # shards read from one subdir in one run
_MAX_STRING = 1 << 20             # one string or bytes value inside a shard or the index
_DIGESTS = ("sha256", "md5")


class ShardedSubdir:
    """One shards-only subdir: its index read once, each shard the walk needs read once."""

    def __init__(self, session: requests.Session, name: str, channel_url: str, subdir: str):
        self.session, self.subdir, self.where = session, subdir, f"{name}/{subdir}"
        self.subdir_url = f"{channel_url}/{subdir}/"
        index_where = f"{self.where}/{SHARDS}"
        raw = _fetch(session, self.subdir_url + SHARDS, MAX_INDEX_COMPRESSED, MAX_INDEX, index_where)
        index = _unpack(raw, MAX_INDEX_NAMES, index_where)
        info, shards = index.get("info"), index.get("shards")
        if not isinstance(info, dict) or not isinstance(shards, dict):
            raise RegistryError(index_where, None, "not a CEP-16 shard index")
        self.shards: dict[str, bytes] = {key: value for key, value in shards.items()
                                         if isinstance(key, str) and isinstance(value, bytes) and len(value) == 32}
        base = info.get("shards_base_url") or "./"
        if not isinstance(base, str):
            raise RegistryError(self.where, None, "the shard index's shards_base_url is not a string")
        self.shards_url = urljoin(self.subdir_url, base if base.endswith("/") else base + "/")
        if origin(self.shards_url) != origin(self.subdir_url):
            raise RegistryError(self.where, None, f"the shard index puts its shards on {origin(self.shards_url) or 'a URL without a host'}, "
                                f"not on the channel's origin {origin(self.subdir_url)}; refused")
        self.info = {"subdir": subdir, **({"base_url": info["base_url"]} if isinstance(info.get("base_url"), str)
                                          and info["base_url"] else {})}
        self.version = index.get("repodata_version") if isinstance(index.get("repodata_version"), int) else None
        self.records: dict[str, dict[str, dict[str, Any]]] = {"packages": {}, "packages.conda": {}}
        self.removed: list[str] = [entry for entry in index.get("removed") or () if isinstance(entry, str)]
        self.read: set[str] = set()

    def depends_of(self, name: str) -> list[str] | None:
        """The package names the records of `name` depend on, its shard read now (once); None when
        the index has no shard for `name` or it was read already."""
        if name in self.read or name not in self.shards:
            return None
        if len(self.read) >= MAX_SHARDS:
            raise RegistryError(self.where, None, f"a solve needs more than {MAX_SHARDS} shards; refused")
        self.read.add(name)
        digest = self.shards[name].hex()
        where = f"{self.where}/{name} (shard {digest})"
        raw = _fetch(self.session, f"{self.shards_url}{digest}.msgpack.zst", MAX_SHARD_COMPRESSED, MAX_SHARD, where,
                     digest)
        shard = _unpack(raw, MAX_SHARD_RECORDS, where)
        found: list[str] = []
        for key in ("packages", "packages.conda"):
            section = shard.get(key) or {}
            if not isinstance(section, dict):
                raise RegistryError(where, None, f"its {key} is not a map")
            for filename, record in section.items():
                if not isinstance(filename, str) or not isinstance(record, dict) or record.get("name") != name:
                    raise RegistryError(where, None, f"a record that is not one of {name}'s")
                self.records[key][filename] = _hex(record, where)
                depends = record.get("depends")
                found += [spec.split()[0] for spec in depends if isinstance(spec, str) and spec.split()] \
                    if isinstance(depends, list) else []
        self.removed += [entry for entry in shard.get("removed") or () if isinstance(entry, str)]
        return found

    def write(self, folder: Path) -> Path:
        """The records read so far as the subdir's published.json (hashes as hex, every other field
        as the shard has it) and the copy rattler reads (repodata.py); the published file's path."""
        body: dict[str, Any] = {"info": self.info, **self.records, "removed": sorted(set(self.removed))}
        if self.version is not None:
            body["repodata_version"] = self.version
        folder.mkdir(parents=True, exist_ok=True)
        write_atomically(folder / "published.json", json.dumps(body, indent=1))
        readable_copy(folder, self.where)
        return folder / "published.json"


def _fetch(session: requests.Session, url: str, compressed: int, inflated: int, where: str,
           sha256: str | None = None) -> bytes:
    response = get_streamed(session, url, {}, where)
    try:
        if response.status_code != 200:
            raise RegistryError(where, response.status_code, "cannot read it")
        body = read_bounded(response, compressed)
    except requests.RequestException:
        raise RegistryError(where, None, "the connection broke while reading it") from None
    finally:
        response.close()
    if body is None:
        raise RegistryError(where, None, f"larger than {compressed} bytes as sent; refused")
    if sha256 is not None and hashlib.sha256(body).hexdigest() != sha256:
        raise VerificationError(f"{where}: its bytes do not match the sha256 the shard index names; refused")
    out = io.BytesIO()
    inflate(body, inflated, where, out.write)
    return out.getvalue()


def _unpack(raw: bytes, entries: int, where: str) -> dict[Any, Any]:
    try:
        found = msgpack.unpackb(raw, raw=False, max_str_len=_MAX_STRING, max_bin_len=_MAX_STRING,
                                max_array_len=entries, max_map_len=entries, max_ext_len=0)
    except (ValueError, msgpack.UnpackException) as exc:
        raise RegistryError(where, None, f"not a msgpack map within bounds ({str(exc)[:120]}); refused") from None
    if not isinstance(found, dict):
        raise RegistryError(where, None, "not a msgpack map")
    return found


def _hex(record: dict[Any, Any], where: str) -> dict[str, Any]:
    """The record with its digests as hex (CEP-16 sends bytes); any other bytes value refused (JSON
    has none)."""
    out: dict[str, Any] = {}
    for key, value in record.items():
        if not isinstance(key, str):
            raise RegistryError(where, None, "a record key that is not a string")
        if isinstance(value, bytes):
            if key not in _DIGESTS:
                raise RegistryError(where, None, f"a record's {key} is bytes; refused")
            value = value.hex()
        out[key] = value
    try:
        json.dumps(out)
    except (TypeError, ValueError):
        raise RegistryError(where, None, "a record with a value JSON cannot hold; refused") from None
    return out
