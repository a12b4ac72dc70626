"""Source channels: repodata fetched and the closure solved by py-rattler, files opened for download.

Repodata is rattler's business end to end (its Gateway): `repodata.json`, `.zst`, `.bz2` and
CEP-16 shards, whichever the channel offers; a local cache with conditional requests (ETag,
Last-Modified), so an unchanged channel is not downloaded again; and only the records a solve
needs are loaded, so memory does not grow with a conda-forge-size subdir. The solve is the one
pixi runs: resolvo, strict channel priority, the rule's virtual packages.
"""

from __future__ import annotations

import asyncio
import json
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path

import requests
from loguru import logger

from regsync.kinds.conda.names import split_filename
from regsync.errors import RegistryError
from regsync.net.http import make_session, require_https, retry_policy
from regsync.content.files import private_subdir, state_dir

# Fields rattler adds to a record it read (where it came from); the channel's own record has none.
_LOCATION_FIELDS = ("fn", "url", "channel")
_DEFAULT_VIRTUAL = {"linux": {"__unix": "0", "__linux": "0"}, "osx": {"__unix": "0", "__osx": "0"},
                    "win": {"__win": "0"}}


@dataclass
class CondaFile:
    """One package file as the repodata lists it: what the shared download path (pypi/fetch.py) needs."""

    filename: str
    url: str
    size: int | None
    digests: dict


class SourceChannel:
    def __init__(self, name: str, cfg, gateway):
        self.name, self.url = name, cfg.url.rstrip("/")
        self.gateway = gateway
        self.session = make_session(cfg.tls.ca_file if cfg.tls else None,
                                    retry=retry_policy(cfg.retries.attempts, cfg.retries.backoff_seconds))

    def rattler_channel(self):
        from rattler import Channel

        return Channel(self.url + "/")

    def file(self, subdir: str, record: dict) -> CondaFile:
        """The download of `record`, at the channel's own URL (never the record's `url`, which the
        server wrote)."""
        filename = record["fn"]
        split_filename(filename)
        return CondaFile(filename, f"{self.url}/{subdir}/{filename}", record.get("size"),
                         {"sha256": record.get("sha256")})

    def open(self, package: CondaFile, start: int = 0) -> requests.Response:
        where = f"{self.name}/{package.filename}"
        headers = {"Range": f"bytes={start}-"} if start else {}
        require_https(self.url, package.url, where, "its file link")
        try:
            response = self.session.get(package.url, stream=True, timeout=(15, 300), headers=headers)
        except requests.RequestException:
            raise RegistryError(where, None, f"cannot reach {self.url}") from None
        if response.status_code not in ((200, 206) if start else (200,)):
            response.close()
            raise RegistryError(where, response.status_code, "download failed")
        return response


class Channels:
    """The policy's conda channels for one run (Endpoints.client keys `channel:<name>`, where an
    air-gap bundle's stand-ins are found too), sharing one rattler Gateway (and its cache)."""

    def __init__(self, endpoints):
        self._endpoints, self._policy = endpoints, endpoints.policy
        self._lock = threading.Lock()
        self._gateway = None
        self._scratch = None

    def source(self, name: str) -> SourceChannel:
        with self._lock:
            gateway = self._gateway_locked()
        return self._endpoints.client(f"channel:{name}",
                                      lambda: SourceChannel(name, self._policy.channels[name], gateway))

    def target(self, name: str):
        """The target channel `name` (one object per run: one lock around each repodata rewrite)."""
        from regsync.kinds.conda.targets import target_channel

        return self._endpoints.client(f"channel:{name}", lambda: target_channel(name, self._policy.channels[name]))

    def _gateway_locked(self):
        from rattler import Gateway

        if self._gateway is None:
            self._gateway = Gateway(cache_dir=self._cache_dir(), show_progress=False)
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
              dependencies: bool) -> list[tuple[SourceChannel, dict]]:
        """(channel, record as published) for the closure of `specs` on `subdir` (noarch included);
        without dependencies, every record matching a spec, from the first channel that has the name."""
        import rattler

        channels = [self.source(name) for name in sources]
        platforms = [subdir, "noarch"] if subdir != "noarch" else ["noarch"]
        if dependencies:
            records = asyncio.run(rattler.solve(
                [c.rattler_channel() for c in channels], specs, gateway=self._gateway, platforms=platforms,
                virtual_packages=virtual_packages(subdir, virtual), channel_priority=rattler.ChannelPriority.Strict,
                channel_relations="disabled"))
        else:
            per_channel = asyncio.run(self._gateway.query(
                [c.rattler_channel() for c in channels], platforms, specs, recursive=False, channel_relations="disabled"))
            records, taken = [], {}
            wanted = [rattler.MatchSpec(spec) for spec in specs]
            for channel, found in zip(channels, per_channel):
                for record in found:
                    if taken.setdefault(record.name.normalized, channel) is channel and \
                            any(spec.matches(record) for spec in wanted):  # strict priority, then the specs
                        records.append(record)
        by_url = {c.url: c for c in channels}
        return [(by_url[str(record.channel).rstrip("/")], published(record)) for record in records]

    def record(self, channel: SourceChannel, subdir: str, filename: str):
        """(rattler record, record as published) for `filename` as the channel lists it now, or None."""
        name = split_filename(filename)[0]
        found = asyncio.run(self._gateway.query([channel.rattler_channel()], [subdir], [name], recursive=False,
                                                channel_relations="disabled"))
        for record in found[0]:
            if record.file_name == filename and record.subdir == subdir:
                return record, published(record)
        return None


def published(record) -> dict:
    """A RepoDataRecord as the channel's repodata carries it (hot-fix patches included), plus `fn`."""
    body = json.loads(record.to_json())
    filename = body["fn"]
    for key in _LOCATION_FIELDS:
        body.pop(key, None)
    body["fn"] = filename
    return body


def virtual_packages(subdir: str, given: dict[str, str]) -> list:
    """The hosts a closure is for: the rule's virtual packages over the platform's own (__unix, __linux)."""
    from rattler import BuildString, GenericVirtualPackage, PackageName, Version

    merged = {**_DEFAULT_VIRTUAL.get(subdir.split("-")[0], {}), **given}
    return [GenericVirtualPackage(PackageName(name), Version(version), BuildString("0"))
            for name, version in merged.items()]


def channels_of(endpoints) -> Channels:
    """One Channels per run's Endpoints (so plan and apply in one run share repodata)."""
    return endpoints.client("conda:channels", lambda: Channels(endpoints))
