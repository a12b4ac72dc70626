"""Target channels: a static channel directory, or files written by HTTP PUT (Nexus raw-hosted,
Artifactory generic). Either way the target's `<subdir>/repodata.json` (and `.zst`) lists exactly
the files mirrored there, with upstream's records as published: a package's own info/index.json is
never read (it lacks the channel's hot-fix patches, and clients would resolve differently).

Order is what keeps a reader safe: a file is in place before any repodata lists it, and each
repodata is replaced whole (rename in a directory; one PUT over HTTP). Records merge into what the
target already lists, so files mirrored by earlier runs, and files upstream has removed since,
stay listed.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path

import requests

from regsync.errors import RegistryError
from regsync.net.http import OriginBoundBasicAuth, make_session, origin, retry_policy
from regsync.content.files import place_published, write_atomically
from regsync.content.reader import CHUNK, SizedBody, read_bounded

try:
    from compression import zstd  # Python 3.14
except ImportError:
    from backports import zstd

MAX_REPODATA = 1 << 30   # a target's repodata read back (JSON); a whole conda-forge subdir is < 1 GiB
_KEYS = {".conda": "packages.conda", ".tar.bz2": "packages"}


def empty_repodata(subdir: str) -> dict:
    return {"info": {"subdir": subdir}, "packages": {}, "packages.conda": {}, "removed": [], "repodata_version": 1}


def listed(repodata: dict) -> dict[str, dict]:
    return {**repodata.get("packages", {}), **repodata.get("packages.conda", {})}


def merged(repodata: dict, records: dict[str, dict]) -> dict:
    for filename, record in records.items():
        key = _KEYS[".conda" if filename.endswith(".conda") else ".tar.bz2"]
        repodata.setdefault(key, {})[filename] = {k: v for k, v in record.items() if k != "fn"}
    return repodata


def encoded(repodata: dict) -> tuple[bytes, bytes]:
    raw = json.dumps(repodata, indent=1, sort_keys=True).encode()
    return raw, zstd.compress(raw)


class _Channel:
    name: str

    def __init__(self):
        self._lock = threading.Lock()   # one read-merge-write of a repodata at a time
        self._pending: dict[str, dict[str, dict]] = {}
        self._pending_lock = threading.Lock()
        self._before: dict[str, dict[str, dict]] = {}

    def existing(self, subdir: str) -> dict[str, dict]:
        """File name → record of what the target lists for `subdir`."""
        return listed(self._read(subdir) or empty_repodata(subdir))

    def listed_before(self, subdir: str) -> dict[str, dict]:
        """What the target listed when this run first looked (read once per run and subdir): apply
        checks a saved plan against it without reading a large repodata once per file."""
        with self._pending_lock:
            if subdir not in self._before:
                self._before[subdir] = self.existing(subdir)
            return self._before[subdir]

    def publish(self, subdir: str, records: dict[str, dict]) -> None:
        """List `records` (their files already in place) in the subdir's repodata, merged with what it
        lists; and make sure noarch/repodata.json exists, which every client asks for. Returns once a
        written repodata lists them.

        Group commit: workers finishing together share one rewrite (a big target's repodata is
        rewritten once per batch, not once per file). Whoever takes the lock writes everything
        pending; a worker whose records were taken waited on that lock, so they are written."""
        with self._pending_lock:
            self._pending.setdefault(subdir, {}).update(records)
        with self._lock:
            with self._pending_lock:
                batch = self._pending.pop(subdir, None)
            if not batch:
                return
            try:
                repodata = self._read(subdir) or empty_repodata(subdir)
                self._write(subdir, *encoded(merged(repodata, batch)))
            except BaseException:
                with self._pending_lock:  # the next waiter tries again; none returns as if listed
                    self._pending[subdir] = {**batch, **self._pending.get(subdir, {})}
                raise
            if subdir != "noarch" and self._read("noarch") is None:
                self._write("noarch", *encoded(empty_repodata("noarch")))


class DirectoryChannel(_Channel):
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

    def _read(self, subdir: str) -> dict | None:
        try:
            return json.loads((self.root / subdir / "repodata.json").read_bytes())
        except FileNotFoundError:
            return None
        except ValueError:
            raise RegistryError(f"{self.name}/{subdir}/repodata.json", None, "not JSON: fix or remove it") from None

    def _write(self, subdir: str, raw: bytes, zst: bytes) -> None:
        # .zst first: a client that prefers it must never find it older than the .json it replaces
        write_atomically(self.root / subdir / "repodata.json.zst", zst)
        write_atomically(self.root / subdir / "repodata.json", raw)


class HttpChannel(_Channel):
    """Files by HTTP PUT under a base URL: Nexus raw-hosted, Artifactory generic, WebDAV."""

    def __init__(self, name: str, cfg):
        super().__init__()
        self.name, self.url = name, cfg.url.rstrip("/")
        self.session = make_session(cfg.tls.ca_file if cfg.tls else None,
                                    retry=retry_policy(cfg.retries.attempts, cfg.retries.backoff_seconds))
        if cfg.auth and cfg.auth.username:  # the channel's own origin only, never after a redirect elsewhere
            self.session.auth = OriginBoundBasicAuth(cfg.auth.username, cfg.auth.password.get_secret_value(),
                                                     {origin(self.url)})
        self.staging = None

    def put(self, path: Path, subdir: str, filename: str) -> None:
        size = path.stat().st_size
        with open(path, "rb") as handle:
            body = SizedBody(iter(lambda: handle.read(CHUNK), b""), size)
            self._put(f"{subdir}/{filename}", body, "application/octet-stream")

    def _put(self, relative: str, body, content_type: str) -> None:
        url = f"{self.url}/{relative}"
        try:
            response = self.session.put(url, data=body, headers={"Content-Type": content_type}, timeout=(15, 600))
        except requests.RequestException as exc:
            raise RegistryError(f"{self.name}/{relative}", None, f"upload failed: {type(exc).__name__}") from None
        response.close()
        if response.status_code not in (200, 201, 204):
            raise RegistryError(f"{self.name}/{relative}", response.status_code, "upload refused")

    def _read(self, subdir: str) -> dict | None:
        where = f"{self.name}/{subdir}/repodata.json"
        try:
            response = self.session.get(f"{self.url}/{subdir}/repodata.json", stream=True, timeout=(15, 300))
        except requests.RequestException:
            raise RegistryError(where, None, f"cannot reach {self.url}") from None
        if response.status_code == 404:
            response.close()
            return None
        if response.status_code != 200:
            response.close()
            raise RegistryError(where, response.status_code, "cannot read the target's repodata")
        body = read_bounded(response, MAX_REPODATA)
        if body is None:
            raise RegistryError(where, None, f"larger than {MAX_REPODATA} bytes")
        try:
            return json.loads(body)
        except ValueError:
            raise RegistryError(where, None, "not JSON") from None

    def _write(self, subdir: str, raw: bytes, zst: bytes) -> None:
        self._put(f"{subdir}/repodata.json.zst", zst, "application/zstd")
        self._put(f"{subdir}/repodata.json", raw, "application/json")


def target_channel(name: str, cfg) -> _Channel:
    return DirectoryChannel(name, cfg.path) if cfg.kind == "directory" else HttpChannel(name, cfg)
