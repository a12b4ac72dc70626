"""Target channels: a static channel directory, or files written by HTTP PUT (Nexus raw-hosted,
Artifactory generic). Either way the target's `<subdir>/repodata.json` (and `.zst`) lists exactly
the files mirrored there, each with upstream's record exactly as the channel published it (the
dict the source side hands over, written key for key: nothing re-serialised through a model, no
key added or dropped): a package's own info/index.json is never read (it lacks the channel's
hot-fix patches, and clients would resolve differently).

Order is what keeps a reader safe: a file is in place before any repodata lists it, and each
repodata is replaced whole (rename in a directory; one PUT over HTTP). Records merge into what the
target already lists, so files mirrored by earlier runs, and files upstream has removed since,
stay listed; new ones take their place in upstream's order (listing.py says why it matters).

One rewrite per run: a transfer places its file and hands its record over (`publish`); when every
transfer of the run is over, `RunListings.finish` writes each subdir's listing once, in one
streamed pass over the old one (listing.py), whatever the number of files and workers.
"""

from __future__ import annotations

import os
import tempfile
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any, BinaryIO
from urllib.parse import urljoin

import requests
from loguru import logger

from regsync.content.files import create_new, place_published
from regsync.content.reader import CHUNK, SizedBody
from regsync.errors import RegistryError
from regsync.kinds.conda.listing import (Listed, NotOurs, Part, Rank, empty_parts, merged, parts_of_document,
                                         parts_of_lines)
from regsync.kinds.conda.names import package_name
from regsync.kinds.conda.source import CondaSource
from regsync.net.http import OriginBoundBasicAuth, make_session, origin, retry_policy
from regsync.pipeline.plan import PlanItem
from regsync.kinds.conda.policy import CondaChannel

try:
    from compression import zstd  # Python 3.14
except ImportError:
    from backports import zstd

MAX_REPODATA = 1 << 30   # a target's repodata read back (JSON); a whole conda-forge subdir is < 1 GiB
MAX_REDIRECTS = 5
_WRITE_BLOCK = 1 << 20


class TargetChannel(ABC):
    """A conda target: files placed, then each subdir's listing rewritten once at the end of the run
    (RunListings). A directory (DirectoryChannel) or files by HTTP PUT (HttpChannel) say how."""

    name: str

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pending: dict[str, dict[str, tuple[str | None, dict[str, Any]]]] = {}   # subdir → file → (source, record)
        self._orders: dict[str, dict[str, int]] = {}     # "source/subdir" → file → its place upstream
        self._removed: dict[str, list[str]] = {}         # "source/subdir" → upstream's `removed` list
        self._listed: dict[str, Listed] = {}

    def existing(self, subdir: str) -> Mapping[str, dict[str, Any]]:
        """File name → record of what the target lists for `subdir`, read once per run (this run
        writes no listing before its end), each record kept as its text until looked up."""
        with self._lock:
            if subdir not in self._listed:
                self._listed[subdir] = self._read_listed(subdir)
            return self._listed[subdir]

    # what the target listed when this run first looked: apply checks a saved plan against it
    listed_before = existing

    def publish(self, subdir: str, records: dict[str, dict[str, Any]], source: CondaSource | None = None) -> None:
        """List `records` (their files already in place) at the end of the run (RunListings), each
        exactly as given; `source`: the channel they come from, whose repodata's order they keep."""
        key = self._remember_order(source, subdir)
        with self._lock:
            pending = self._pending.setdefault(subdir, {})
            for filename, record in records.items():
                pending[filename] = (key, record)

    def flush(self) -> list[tuple[str, str, Exception]]:
        """Write every listing this run has records for, once each (and noarch/repodata.json, which
        every client asks for, when it is missing); (subdir, file, error) of records not listed."""
        with self._lock:
            pending, self._pending = self._pending, {}
        failures: list[tuple[str, str, Exception]] = []
        for subdir, records in pending.items():
            try:
                self._rewrite(subdir, records)
            except (RegistryError, OSError, ValueError) as exc:
                failures += [(subdir, filename, exc) for filename in records]
        if pending and "noarch" not in pending:
            try:
                if not self._exists("noarch"):
                    self._write("noarch", empty_parts("noarch"), {}, lambda name: None)
            except (RegistryError, OSError) as exc:  # the records are listed; clients that ask fail
                logger.warning("{}: cannot write an empty noarch/repodata.json: {}", self.name, exc)
        return failures

    def _remember_order(self, source: CondaSource | None, subdir: str) -> str | None:
        if source is None:
            return None
        key = f"{source.name}/{subdir}"
        with self._lock:
            known = key in self._orders
        if not known:
            listing = source.listing(subdir)
            order = listing.positions() if listing is not None else {}
            removed = listing.removed() if listing is not None else []
            with self._lock:
                self._orders.setdefault(key, order)
                self._removed.setdefault(key, removed)
        return key

    def _rewrite(self, subdir: str, records: dict[str, tuple[str | None, dict[str, Any]]]) -> None:
        orders = [self._orders[key] for key in dict.fromkeys(k for k, _ in records.values() if k is not None)]

        def rank(name: str) -> Rank:
            for number, order in enumerate(orders):
                if name in order:
                    return number, order[name]
            return None

        batch = {name: (rank(name), record) for name, (_, record) in records.items()}
        sources = dict.fromkeys(k for k, _ in records.values() if k is not None)
        withdrawn = self._withdrawn(subdir, [self._removed[key] for key in sources], records)
        try:
            with self._parts(subdir) as parts:
                self._write(subdir, parts, batch, rank, withdrawn)
        except NotOurs:  # another tool's layout: read whole this once, written in regsync's from now on
            with self._parts(subdir, whole=True) as parts:
                self._write(subdir, parts, batch, rank, withdrawn)

    def _withdrawn(self, subdir: str, removed: list[list[str]], records: Mapping[str, object]) -> list[str]:
        """Upstream's `removed` entries this listing carries: those of the packages this target mirrors
        in `subdir` (a name this run lists, or one the target lists already), so a file the target
        lists that its channel withdrew is withdrawn here too; never a file upstream did not remove."""
        if not any(removed):
            return []
        listed = self.existing(subdir)
        names = {package_name(name) for name in list(records) + list(listed)}
        return [entry for entries in removed for entry in entries
                if entry in listed or package_name(entry) in names - {None}]   # not a file name: not carried

    def _read_listed(self, subdir: str) -> Listed:
        try:
            with self._parts(subdir) as parts:
                return Listed(parts)
        except NotOurs:
            with self._parts(subdir, whole=True) as parts:
                return Listed(parts)

    @contextmanager
    def _parts(self, subdir: str, whole: bool = False) -> Iterator[Iterator[Part]]:
        """The subdir's listing as parts (listing.py): streamed line by line from regsync's layout,
        or (`whole`) read as one JSON document within MAX_REPODATA; a new channel's when absent."""
        where = f"{self.name}/{subdir}/repodata.json"
        with self._local_copy(subdir) as path:
            if path is None:
                yield iter(empty_parts(subdir))
            elif whole:
                with open(path, "rb") as handle:
                    data = handle.read(MAX_REPODATA + 1)
                if len(data) > MAX_REPODATA:
                    raise RegistryError(where, None, f"larger than {MAX_REPODATA} bytes")
                try:
                    parts = parts_of_document(data)
                except ValueError as exc:
                    raise RegistryError(where, None, f"{exc}: fix or remove it") from None
                yield parts
            else:
                with open(path, encoding="utf-8", errors="strict", newline="\n") as handle:
                    try:
                        yield parts_of_lines(handle)
                    except UnicodeDecodeError:
                        raise NotOurs("not UTF-8") from None

    def _write(self, subdir: str, parts: Iterable[Part], batch: Mapping[str, tuple[Rank, dict[str, Any]]],
               rank: Callable[[str], Rank], withdrawn: Iterable[str] = ()) -> None:
        """The merged listing, streamed into repodata.json and its .zst side by side, then published."""
        with self._scratch(subdir) as (raw_path, zst_path):
            with os.fdopen(create_new(raw_path, 0o666), "wb") as raw, \
                    os.fdopen(create_new(zst_path, 0o666), "wb") as packed, zstd.ZstdFile(packed, "wb") as zst:
                block: list[bytes] = []
                size = 0
                for text in merged(parts, batch, rank, withdrawn):
                    data = text.encode()
                    block.append(data)
                    size += len(data)
                    if size >= _WRITE_BLOCK:
                        _write_both(raw, zst, block)
                        block, size = [], 0
                _write_both(raw, zst, block)
            self._commit(subdir, raw_path, zst_path)


    @property
    @abstractmethod
    def staging(self) -> Path | None:
        """Where downloads land before `put` (None: the system's temporary directory)."""

    @abstractmethod
    def put(self, path: Path, subdir: str, filename: str) -> None:
        """Place the verified file (listed at the end of the run, by `flush`)."""

    @abstractmethod
    def _exists(self, subdir: str) -> bool: ...

    @abstractmethod
    def _local_copy(self, subdir: str) -> AbstractContextManager[Path | None]:
        """The subdir's repodata.json as a local file for the time of the `with`; None: there is none."""

    @abstractmethod
    def _scratch(self, subdir: str) -> AbstractContextManager[tuple[Path, Path]]:
        """Two scratch paths (the listing and its .zst) for the time of the `with`."""

    @abstractmethod
    def _commit(self, subdir: str, raw: Path, zst: Path) -> None:
        """Publish the written listing (the .zst first)."""


def _write_both(raw: BinaryIO, zst: BinaryIO, block: list[bytes]) -> None:
    data = b"".join(block)
    raw.write(data)
    zst.write(data)


class DirectoryChannel(TargetChannel):
    """A channel directory any web server can serve as is."""

    def __init__(self, name: str, root: Path):
        super().__init__()
        self.name, self.root = name, Path(root)

    @property
    def staging(self) -> Path:
        """Downloads land under the channel root: the final move into a subdir is a rename."""
        self.root.mkdir(parents=True, exist_ok=True)
        return self.root

    def put(self, path: Path, subdir: str, filename: str) -> None:
        folder = self.root / subdir
        folder.mkdir(parents=True, exist_ok=True)
        place_published(path, folder / filename)  # 0644, never the state dir's 0600

    def _exists(self, subdir: str) -> bool:
        return (self.root / subdir / "repodata.json").exists()

    @contextmanager
    def _local_copy(self, subdir: str) -> Iterator[Path | None]:
        path = self.root / subdir / "repodata.json"
        yield path if path.exists() else None

    @contextmanager
    def _scratch(self, subdir: str) -> Iterator[tuple[Path, Path]]:
        folder = self.root / subdir
        folder.mkdir(parents=True, exist_ok=True)
        stem = f"{os.getpid()}.{threading.get_ident()}.tmp"
        paths = folder / f".repodata.json.{stem}", folder / f".repodata.json.zst.{stem}"
        try:
            yield paths
        finally:
            for path in paths:
                path.unlink(missing_ok=True)

    def _commit(self, subdir: str, raw: Path, zst: Path) -> None:
        # .zst first: a client that prefers it must never find it older than the .json it replaces
        os.replace(zst, self.root / subdir / "repodata.json.zst")
        os.replace(raw, self.root / subdir / "repodata.json")


class HttpChannel(TargetChannel):
    """Files by HTTP PUT under a base URL: Nexus raw-hosted, Artifactory generic, WebDAV.

    Nothing leaves the channel's origin: a read redirected to another origin is not read (an error
    naming where it pointed, never that listing taken for the target's), a PUT answered with a
    redirect is not followed (an error: the file is not there). Redirects on the channel's own
    origin are followed for reads, as for package indexes (kinds/package/index.py)."""

    def __init__(self, name: str, cfg: CondaChannel):
        super().__init__()
        assert cfg.url is not None, "policy check: a kind: http channel has a url"
        self.name, self.url = name, cfg.url.rstrip("/")
        self.session = make_session(cfg.tls.ca_file if cfg.tls else None,
                                    retry=retry_policy(cfg.retries.attempts, cfg.retries.backoff_seconds))
        if cfg.auth and cfg.auth.username:  # the channel's own origin only, never after a redirect elsewhere
            password = cfg.auth.password.get_secret_value() if cfg.auth.password else ""
            self.session.auth = OriginBoundBasicAuth(cfg.auth.username, password, {origin(self.url)})

    @property
    def staging(self) -> None:
        return None   # the system's temporary directory: the file only passes through

    def put(self, path: Path, subdir: str, filename: str) -> None:
        self._put_file(f"{subdir}/{filename}", path, "application/octet-stream")

    def _put_file(self, relative: str, path: Path, content_type: str) -> None:
        size = path.stat().st_size
        with open(path, "rb") as handle:
            self._put(relative, SizedBody(iter(lambda: handle.read(CHUNK), b""), size), content_type)

    def _put(self, relative: str, body: SizedBody, content_type: str) -> None:
        url = f"{self.url}/{relative}"
        try:
            response = self.session.put(url, data=body, headers={"Content-Type": content_type}, timeout=(15, 600),
                                        allow_redirects=False)
        except requests.RequestException:
            raise RegistryError(f"{self.name}/{relative}", None, "upload failed: cannot reach the channel") from None
        response.close()
        if response.is_redirect:
            elsewhere = origin(urljoin(url, response.headers["Location"])) or "a URL without a host"
            logger.info("{}: PUT {} answered {} to {}: not followed", self.name, relative, response.status_code,
                        elsewhere)
            raise RegistryError(f"{self.name}/{relative}", response.status_code,
                                f"upload redirected to {elsewhere}: not followed, the file is not on the target")
        if response.status_code not in (200, 201, 204):
            raise RegistryError(f"{self.name}/{relative}", response.status_code, "upload refused")

    def _get(self, subdir: str) -> requests.Response | None:
        """The listing's response (None: the target has none), redirects followed on this origin only."""
        where = f"{self.name}/{subdir}/repodata.json"
        url = f"{self.url}/{subdir}/repodata.json"
        for _ in range(MAX_REDIRECTS + 1):
            try:
                response = self.session.get(url, stream=True, timeout=(15, 300), allow_redirects=False)
            except requests.RequestException:
                raise RegistryError(where, None, f"cannot reach {origin(self.url)}") from None
            if not response.is_redirect:
                break
            location = urljoin(url, response.headers["Location"])
            response.close()
            if origin(location) != origin(self.url):
                elsewhere = origin(location) or "a URL without a host"
                logger.info("{}: {} answered {} to {}: not read as the target's listing", self.name, where,
                            response.status_code, elsewhere)
                raise RegistryError(where, response.status_code, f"redirects to another origin ({elsewhere}): "
                                    f"not read as the target's listing, nothing written over it")
            url = location
        else:
            raise RegistryError(where, None, f"more than {MAX_REDIRECTS} redirects")
        if response.status_code == 404:
            response.close()
            return None
        if response.status_code != 200:
            response.close()
            raise RegistryError(where, response.status_code, "cannot read the target's repodata")
        return response

    def _exists(self, subdir: str) -> bool:
        response = self._get(subdir)
        if response is not None:
            response.close()
        return response is not None

    @contextmanager
    def _local_copy(self, subdir: str) -> Iterator[Path | None]:
        """The listing downloaded (streamed, at most MAX_REPODATA bytes) into a private scratch file."""
        response = self._get(subdir)
        if response is None:
            yield None
            return
        with tempfile.TemporaryDirectory(prefix="regsync-repodata-") as work:
            path = Path(work) / "repodata.json"
            size = 0
            try:
                with open(path, "wb") as out:
                    for chunk in response.iter_content(CHUNK):
                        size += len(chunk)
                        if size > MAX_REPODATA:
                            raise RegistryError(f"{self.name}/{subdir}/repodata.json", None,
                                                f"larger than {MAX_REPODATA} bytes")
                        out.write(chunk)
            except requests.RequestException:
                raise RegistryError(f"{self.name}/{subdir}/repodata.json", None, "the download broke off") from None
            finally:
                response.close()
            yield path

    @contextmanager
    def _scratch(self, subdir: str) -> Iterator[tuple[Path, Path]]:
        with tempfile.TemporaryDirectory(prefix="regsync-repodata-") as work:
            yield Path(work) / "repodata.json", Path(work) / "repodata.json.zst"

    def _commit(self, subdir: str, raw: Path, zst: Path) -> None:
        self._put_file(f"{subdir}/repodata.json.zst", zst, "application/zstd")
        self._put_file(f"{subdir}/repodata.json", raw, "application/json")


def target_channel(name: str, cfg: CondaChannel) -> TargetChannel:
    if cfg.flavour == "directory":
        assert cfg.path is not None, "policy check: a kind: directory channel has a path"
        return DirectoryChannel(name, cfg.path)
    return HttpChannel(name, cfg)


class RunListings:
    """A run's conda targets (Run.state): the items whose records wait to be listed, and, once every
    transfer is over (Run.finish), each target's listings written once."""

    reused = 0

    def __init__(self, target_of: Callable[[str], TargetChannel]):
        self._target_of = target_of           # target channel name → its (per-run) channel object
        self._items: dict[str, PlanItem] = {}   # target ref → item
        self._lock = threading.Lock()

    def expect(self, item: PlanItem) -> None:
        with self._lock:
            self._items[item.target] = item

    def stop(self) -> None:
        """Nothing to stop: files already placed are still listed at the end."""

    def finish(self) -> list[tuple[PlanItem, Exception]]:
        with self._lock:
            items, self._items = self._items, {}
        failures: list[tuple[PlanItem, Exception]] = []
        for name in dict.fromkeys(ref.split("/", 1)[0] for ref in items):
            for subdir, filename, error in self._target_of(name).flush():
                item = items.get(f"{name}/{subdir}/{filename}")
                if item is not None:
                    failures.append((item, RegistryError(item.target, None, f"placed but not listed: {error}")))
        return failures
