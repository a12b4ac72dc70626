"""Source channels: repodata fetched and the closure solved by py-rattler, files opened for download.

regsync reads each subdir's repodata itself, bounded (repodata.py; a shards-only subdir: the shards
a solve needs, shards.py), and rattler reads that local copy: only the records a solve needs are
loaded, so memory does not grow with a conda-forge-size subdir. The solve is the one pixi runs:
resolvo, strict channel priority, the rule's virtual packages.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import tempfile
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import requests
from loguru import logger

from regsync.kinds.conda.names import split_filename
from regsync.kinds.conda.source import MAX_SIDECAR, CondaFile, CondaSource
from regsync.kinds.conda.repodata import Listing, fetch_listing, local_root
from regsync.kinds.conda.shards import ShardedSubdir
from regsync.errors import RegistryError
from regsync.net.http import make_session, require_https, retry_policy
from regsync.content.files import private_subdir, state_dir
from regsync.content.reader import read_bounded
from regsync.errors import VerificationError
from regsync.kinds.conda.policy import CondaChannel, CondaSection

if TYPE_CHECKING:
    from rattler import Channel, Gateway, GenericVirtualPackage, RepoDataRecord, SparseRepoData
    from rattler.platform import SubdirLiteral

    from regsync.endpoints import Endpoints
    from regsync.kinds.conda.targets import TargetChannel

# Fields rattler adds to a record it read (where it came from); the channel's own record has none.
_LOCATION_FIELDS = ("fn", "url", "channel")
_DEFAULT_VIRTUAL = {"linux": {"__unix": "0", "__linux": "0"}, "osx": {"__unix": "0", "__osx": "0"},
                    "win": {"__win": "0"}}


class SourceChannel:
    """A CondaSource (kinds/conda/source.py): a channel read over HTTP."""

    def __init__(self, name: str, cfg: CondaChannel, gateway: "Gateway", cache: Path):
        assert cfg.url is not None, "policy check: a source channel has a url"
        self.name, self.url = name, cfg.url.rstrip("/")
        self.gateway = gateway
        self.session = make_session(cfg.tls.ca_file if cfg.tls else None,
                                    retry=retry_policy(cfg.retries.attempts, cfg.retries.backoff_seconds))
        self._root = local_root(cache, self.url)
        self.shards_allowed = cfg.shards == "allow"
        self._listings: dict[str, Listing | None] = {}
        self._sparse: dict[str, SparseRepoData] = {}
        self._sharded: dict[str, ShardedSubdir] = {}
        self._stale: set[str] = set()   # sharded subdirs with shards read since their copy was written
        self._lock = threading.Lock()

    def listing(self, subdir: str) -> Listing:
        """The subdir's repodata as published (read once per run, bounded). A subdir with CEP-16
        shards only is refused unless the channel says `shards: allow`; then its listing holds the
        records of the shards read so far (read_shards)."""
        with self._lock:
            if subdir not in self._listings:
                listing = fetch_listing(self.session, self.name, self.url, subdir, self._root)
                if listing is None and self.shards_allowed:
                    self._sharded[subdir] = ShardedSubdir(self.session, self.name, self.url, subdir)
                    listing = Listing(subdir, self._sharded[subdir].write(self._root / subdir))
                self._listings[subdir] = listing
            found = self._listings[subdir]
        if found is None:
            raise RegistryError(f"{self.name}/{subdir}", None, "the channel offers only CEP-16 shards here "
                                "(no repodata.json), which regsync reads only when told to; refused "
                                f"(`shards: allow` on channel {self.name} lets regsync read them, bounded)")
        return found

    def sharded(self, subdirs: Sequence[str]) -> list[str]:
        for subdir in subdirs:
            self.listing(subdir)
        return [subdir for subdir in subdirs if subdir in self._sharded]

    def read_shards(self, subdirs: Sequence[str], name: str) -> list[str]:
        """For each subdir served as shards only, the shard of `name` read (once per run, bounded,
        its sha256 checked); the names its records depend on."""
        depends: list[str] = []
        for subdir in subdirs:
            self.listing(subdir)
            with self._lock:
                sharded = self._sharded.get(subdir)
                found = sharded.depends_of(name) if sharded is not None else None
                if found is not None:
                    depends += found
                    self._stale.add(subdir)
        return depends

    def rattler_channel(self, subdirs: Sequence[str] = ()) -> "Channel":
        """The channel rattler reads: regsync's bounded local copy of each subdir, the shards read
        since it was last written written into it."""
        from rattler import Channel

        for subdir in subdirs:
            self.listing(subdir)
        channel = Channel(self._root.as_uri() + "/")
        with self._lock:
            for subdir in sorted(self._stale & set(subdirs)):
                self._listings[subdir] = Listing(subdir, self._sharded[subdir].write(self._root / subdir))
                self._sparse.pop(subdir, None)
                self.gateway.clear_repodata_cache(channel, [_subdir(subdir)])
                self._stale.discard(subdir)
        return channel

    def upstream(self, record: "RepoDataRecord") -> "RepoDataRecord":
        """`record` with its URL where the channel serves the file: rattler read the local copy, so a
        URL under it is the channel's own (CEP-15 base_url, absolute, already names elsewhere)."""
        url, local = str(record.url), self._root.as_uri() + "/"
        if url.startswith(local):
            record.url = f"{self.url}/{url[len(local):]}"
        return record

    def listed_in(self, record: "RepoDataRecord") -> str:
        """The subdir whose repodata listed `record` (mamba's conda-forge snapshot lists noarch records
        in linux-64's): its file is fetched from there, wherever the record's `subdir` says."""
        url = str(record.url)
        if url.startswith(self.url + "/") and url.count("/") == self.url.count("/") + 2:
            return url.rsplit("/", 2)[-2]
        listing = [subdir for subdir, found in list(self._listings.items())
                   if found is not None and record.file_name in found]
        return record.subdir if record.subdir in listing or not listing else listing[0]

    def published(self, subdir: str, record: "RepoDataRecord") -> dict[str, Any]:
        """The record key for key as the channel's repodata (or shard) has it."""
        listing = self._listings.get(subdir)
        raw = listing.record(record.file_name, record.name.source, _rattler_digests(record)) if listing else None
        return raw if raw is not None else rattler_json(record)

    def records_named(self, subdir: str, name: str) -> "list[RepoDataRecord]":
        """rattler's records of `name` in the subdir's repodata, both package formats of a build (the
        solver's reading offers only the .conda); a sharded subdir's shard of `name` read first."""
        from rattler import PackageFormatSelection

        self.read_shards([subdir], name)
        channel = self.rattler_channel([subdir])
        with self._lock:  # one index of the subdir per run (opening it scans the whole file)
            if subdir not in self._sparse:
                self._sparse[subdir] = sparse_repodata(channel, subdir, self._root / subdir / "repodata.json")
            found = self._sparse[subdir].load_records(name, PackageFormatSelection.BOTH)
        return [self.upstream(record) for record in found]

    def files_elsewhere(self, subdir: str, url: str) -> str | None:
        """Where the subdir's files are when the channel says elsewhere (CEP-15 base_url), else None."""
        folder = url.rsplit("/", 1)[0]
        return None if folder == f"{self.url}/{subdir}" else folder

    def file(self, subdir: str, record: "RepoDataRecord", published: dict[str, Any]) -> CondaFile:
        """The download of `record`: where the channel's repodata says its files are (CEP-15 base_url,
        else `<channel>/<subdir>/`), never the record's own `url` field, which the server wrote."""
        filename = record.file_name
        split_filename(filename)
        return CondaFile(filename, str(record.url), published.get("size"), _digests(published),
                         f"{self.name}/{subdir}/{filename}")

    def open(self, package: CondaFile, start: int = 0) -> requests.Response:
        where = package.where
        headers = {"Range": f"bytes={start}-"} if start else {}
        require_https(self.url, package.url, where, "its file link")
        try:
            response = self.session.get(package.url, stream=True, timeout=(15, 300), headers=headers)
        except requests.RequestException:
            raise RegistryError(where, None, f"cannot reach {package.url.rsplit('/', 1)[0]}") from None
        if response.status_code not in ((200, 206) if start else (200,)):
            response.close()
            raise RegistryError(where, response.status_code, "download failed")
        return response

    def sidecar(self, package: CondaFile, sha256: str) -> bytes:
        where = f"{package.where}.sigs.{sha256[:12]}"
        require_https(self.url, package.url, where, "its file link")
        try:
            response = self.session.get(f"{package.url}.sigs.{sha256}", stream=True, timeout=(15, 60))
        except requests.RequestException:
            raise RegistryError(where, None, f"cannot reach {package.url.rsplit('/', 1)[0]}") from None
        if response.status_code != 200:
            response.close()
            raise RegistryError(where, response.status_code, "attestation sidecar not readable")
        raw = read_bounded(response, MAX_SIDECAR)
        if raw is None or hashlib.sha256(raw).hexdigest() != sha256:
            raise VerificationError(f"{package.where}: its attestation sidecar does not match sha256 {sha256}")
        return raw


def _subdir(subdir: str) -> "SubdirLiteral":
    return cast("SubdirLiteral", subdir)   # a subdir the policy checked (policy/conda_specs.py)


def _rattler_digests(record: "RepoDataRecord") -> dict[str, str]:
    return {key: value.hex() if isinstance(value, bytes) else str(value)
            for key, value in (("sha256", record.sha256), ("md5", record.md5)) if value is not None}


def _digests(published: dict[str, Any]) -> dict[str, str]:
    return {key: published[key] for key in ("sha256", "md5") if isinstance(published.get(key), str)}


class Channels:
    """The policy's conda channels for one run (Endpoints.client keys `channel:<name>`, where an
    air-gap bundle's stand-ins are found too), sharing one rattler Gateway (and its cache)."""

    def __init__(self, endpoints: "Endpoints"):
        self._endpoints, self._policy = endpoints, endpoints.policy
        self._lock = threading.Lock()
        self._gateway: Gateway | None = None
        self._scratch: tempfile.TemporaryDirectory[str] | None = None
        self._cache: Path | None = None
        self._closures: dict[ClosureKey, frozenset[tuple[str, str, str]]] = {}

    def source(self, name: str) -> CondaSource:
        with self._lock:
            gateway = self._gateway_locked()
            cache = self._cache
        assert cache is not None, "set with the gateway"

        def make() -> CondaSource:
            return SourceChannel(name, CondaSection.of(self._policy).channels[name], gateway, cache)

        return self._endpoints.client(f"channel:{name}", make)

    def target(self, name: str) -> "TargetChannel":
        """The target channel `name` (one object per run: one lock around each repodata rewrite)."""
        from regsync.kinds.conda.targets import target_channel

        return self._endpoints.client(f"channel:{name}", lambda: target_channel(name, CondaSection.of(self._policy).channels[name]))

    def _gateway_locked(self) -> "Gateway":
        from rattler import Gateway

        if self._gateway is None:
            self._cache = self._cache_dir()
            self._gateway = Gateway(cache_dir=self._cache, show_progress=False)
        return self._gateway

    def _cache_dir(self) -> Path:
        """The state dir keeps repodata between runs (conditional requests next time); without one,
        a directory for this run only."""
        directory = state_dir()
        if directory is not None:
            try:
                return private_subdir(directory, "conda-cache")
            except OSError as exc:
                logger.warning("cannot keep conda repodata in {}: {}; fetched afresh each run", directory, exc)
        self._scratch = tempfile.TemporaryDirectory(prefix="regsync-conda-")
        return Path(self._scratch.name)

    def solve(self, sources: list[str], specs: list[str], subdir: str, virtual: dict[str, str],
              dependencies: bool) -> list[Found]:
        """The closure of `specs` on `subdir` (noarch included), each record as published; without
        dependencies, every record matching a spec (both formats of a build, every subdir), from the
        first channel that has the name; a warning for a spec that matches none."""
        import rattler

        channels = [self.source(name) for name in sources]
        platforms = [subdir, "noarch"] if subdir != "noarch" else ["noarch"]
        if dependencies:
            read_shards(channels, platforms, [rattler.MatchSpec(spec).name.normalized for spec in specs])
            by_url: dict[str, CondaSource] = {}
            for channel in channels:
                by_url[str(channel.rattler_channel(platforms).base_url).rstrip("/")] = channel
            records = asyncio.run(rattler.solve(
                [c.rattler_channel(platforms) for c in channels], specs, gateway=self._gateway,
                platforms=[_subdir(p) for p in platforms],
                virtual_packages=virtual_packages(subdir, virtual), channel_priority=rattler.ChannelPriority.Strict,
                channel_relations="disabled"))
            found = []
            for record in records:
                channel = by_url[str(record.channel).rstrip("/")]
                channel.upstream(record)
                listed_in = channel.listed_in(record)
                found.append(Found(channel, listed_in, record.file_name, channel.published(listed_in, record),
                                   str(record.url)))
            self._closures[_closure_key(sources, specs, subdir, virtual)] = frozenset(
                (f.channel.name, f.subdir, f.filename) for f in found)
            return found
        wanted = {spec: rattler.MatchSpec(spec) for spec in specs}
        matched: set[str] = set()
        found, taken = list[Found](), dict[str, CondaSource]()
        for channel in channels:
            channel.rattler_channel(platforms)   # each subdir's repodata read (bounded) before rattler looks
            for platform in platforms:  # one look per channel and subdir: nothing to pair up afterwards
                names = dict.fromkeys(spec.name.normalized for spec in wanted.values())
                listed = [record for name in names for record in channel.records_named(platform, name)]
                for record in listed:
                    # strict channel priority: a name the first channel has is taken from it alone
                    if taken.setdefault(record.name.normalized, channel) is not channel:
                        continue
                    hits = [text for text, spec in wanted.items() if spec.matches(record)]
                    if hits:
                        matched.update(hits)
                        found.append(Found(channel, platform, record.file_name, channel.published(platform, record),
                                           str(record.url)))
        for spec in specs:
            if spec not in matched:
                logger.warning("{} {}: the spec '{}' matches no record", "/".join(sources), "+".join(platforms), spec)
        return found

    def closure(self, sources: list[str], specs: list[str], subdir: str,
                virtual: dict[str, str]) -> frozenset[tuple[str, str, str]]:
        """(channel, subdir, file name) of every file in the closure, solved once per run."""
        key = _closure_key(sources, specs, subdir, virtual)
        if key not in self._closures:
            self.solve(sources, specs, subdir, virtual, True)
        return self._closures[key]

    def record(self, channel: CondaSource, subdir: str,
               filename: str) -> "tuple[RepoDataRecord, dict[str, Any]] | None":
        """(rattler record, record as published) for `filename` as the subdir's repodata lists it now,
        or None."""
        name = split_filename(filename)[0]
        channel.rattler_channel([subdir, "noarch"] if subdir != "noarch" else ["noarch"])
        for record in channel.records_named(subdir, name):
            if record.file_name == filename:
                return record, channel.published(subdir, record)
        return None


@dataclass
class Found:
    """A file a rule plans: the channel and subdir whose repodata listed it, its record as published."""

    channel: CondaSource
    subdir: str
    filename: str
    record: dict[str, Any]
    url: str      # where the file is (rattler's reading of the channel's repodata, never the record's `url`)


def read_shards(channels: list[CondaSource], platforms: list[str], names: list[str]) -> None:
    """The shards a solve of `names` needs, when a channel serves a subdir as shards only: the names'
    own, then those their records depend on (a depends entry's first word; records in shards, and
    those of the other subdirs' repodata.json), each shard read once; bounded by shards.MAX_SHARDS
    per subdir."""
    sharded = [channel.sharded(platforms) for channel in channels]
    if not any(sharded):
        return
    todo, seen = list(names), set[str]()
    while todo:
        name = todo.pop()
        if name in seen or name.startswith("__"):   # a virtual package is never in a channel
            continue
        seen.add(name)
        for channel, shards_only in zip(channels, sharded):
            found = channel.read_shards(platforms, name)
            found += [depend.split()[0] for subdir in platforms if subdir not in shards_only
                      for record in channel.records_named(subdir, name) for depend in record.depends if depend.split()]
            todo += [depend for depend in found if depend not in seen]


def sparse_repodata(rattler_channel: "Channel", subdir: str, path: Path) -> "SparseRepoData":
    from rattler import SparseRepoData

    return SparseRepoData(rattler_channel, subdir, path)


def records_in_file(rattler_channel: "Channel", subdir: str, name: str, path: Path) -> "list[RepoDataRecord]":
    """rattler's records of `name` in a local repodata.json, every package format."""
    from rattler import PackageFormatSelection

    with sparse_repodata(rattler_channel, subdir, path) as sparse:
        return sparse.load_records(name, PackageFormatSelection.BOTH)


ClosureKey = tuple[tuple[str, ...], tuple[str, ...], str, tuple[tuple[str, str], ...]]


def _closure_key(sources: list[str], specs: list[str], subdir: str, virtual: dict[str, str]) -> ClosureKey:
    return tuple(sources), tuple(specs), subdir, tuple(sorted(virtual.items()))


def rattler_json(record: "RepoDataRecord") -> dict[str, Any]:
    """rattler's reading of a record (for a subdir only rattler read: CEP-16 shards), without the
    fields rattler adds to say where it found it."""
    body: dict[str, Any] = json.loads(record.to_json())
    for key in _LOCATION_FIELDS:
        body.pop(key, None)
    return body


def virtual_packages(subdir: str, given: dict[str, str]) -> "list[GenericVirtualPackage]":
    """The hosts a closure is for: the rule's virtual packages over the platform's own (__unix, __linux)."""
    from rattler import BuildString, GenericVirtualPackage, PackageName, Version

    merged = {**_DEFAULT_VIRTUAL.get(subdir.split("-")[0], {}), **given}
    return [GenericVirtualPackage(PackageName(name), Version(version), BuildString("0"))
            for name, version in merged.items()]


def channels_of(endpoints: "Endpoints") -> Channels:
    """One Channels per run's Endpoints (so plan and apply in one run share repodata)."""
    return endpoints.client("conda:channels", lambda: Channels(endpoints))
