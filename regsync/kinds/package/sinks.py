"""Where packages go: an index that takes the legacy upload API (pypiserver, devpi, Nexus
pypi-hosted, all as twine talks to them), or a static PEP 503 + PEP 691 tree on disk."""

from __future__ import annotations

import hashlib
import html
import json
import threading
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import requests
from packaging.utils import canonicalize_name, parse_wheel_filename
from pypi_simple import DistributionPackage
from requests_toolbelt.multipart.encoder import MultipartEncoder

from regsync.content.python_names import parse_file_name
from regsync.errors import RegistryError, VerificationError
from regsync.net.http import connection_failure
from regsync.kinds.package.index import PackageIndex
from regsync.kinds.package.wheel import wheel_metadata
from regsync.kinds.package.ref import sha256_of
from regsync.content.reader import CHUNK
from regsync.content.files import place_published, write_atomically


class UploadTarget:
    """Reads what the target has through its simple index; writes through `upload_url`."""

    def __init__(self, name: str, index: PackageIndex, upload_url: str):
        self.name, self.index, self.upload_url = name, index, upload_url
        self._read_back: dict[str, str | None] = {}
        self._lock = threading.Lock()

    def staging_dir(self) -> None:
        return None   # the system's temporary directory: the file only passes through

    def existing(self, project: str) -> Mapping[str, str | None]:
        return _Listed(self, self.index.files(project, same_origin=True))

    def sha256_read_back(self, package: DistributionPackage) -> str | None:
        """The sha256 of a file the target lists without one (Nexus pages give only `#md5=`): read
        back and hashed as it streams, once per run, and only for a file the plan asks about."""
        with self._lock:
            if package.filename in self._read_back:
                return self._read_back[package.filename]
        listed = {algo: value.lower() for algo, value in (package.digests or {}).items() if algo in hashlib.algorithms_guaranteed}
        sha256, others = hashlib.sha256(), {algo: hashlib.new(algo) for algo in listed}
        try:
            with self.index.open(package) as response:
                for chunk in response.iter_content(CHUNK):
                    sha256.update(chunk)
                    for digest in others.values():
                        digest.update(chunk)
        except requests.RequestException:  # the connection broke mid-file
            raise RegistryError(f"{self.name}/{package.filename}", None, "cannot read it back") from None
        # bytes that do not match the target's own listing are not a file we can vouch for
        agreed = all(others[algo].hexdigest() == value for algo, value in listed.items())
        found = f"sha256:{sha256.hexdigest()}" if agreed else None
        with self._lock:
            self._read_back[package.filename] = found
        return found

    def put(self, path: Path, filename: str, digest: str) -> bool:
        """Uploads the file; True when the target already held exactly it (nothing was replaced)."""
        fields = dict(_metadata_fields(path, filename), **{":action": "file_upload", "protocol_version": "1",
                                                           "sha256_digest": digest.split(":", 1)[1]})
        with path.open("rb") as handle:
            # Streamed multipart: a 2 GB wheel never sits in memory (requests would build the body whole).
            body = MultipartEncoder(fields=[*fields.items(), ("content", (filename, handle, "application/octet-stream"))])
            try:
                response = self.index.session.post(self.upload_url, data=body, timeout=(15, 3600),
                                                   headers={"Content-Type": body.content_type})
            except requests.exceptions.ConnectionError as exc:
                raise RegistryError(f"{self.name}/{filename}", None, connection_failure(exc, self.upload_url)) from None
            except requests.RequestException:
                raise RegistryError(f"{self.name}/{filename}", None, f"cannot reach {self.upload_url}") from None
        if response.status_code == 409:
            return self._conflict(filename, digest)
        if response.status_code in (401, 403):
            raise RegistryError(f"{self.name}/{filename}", response.status_code, "upload refused (check credentials)")
        if response.status_code >= 300:
            raise RegistryError(f"{self.name}/{filename}", response.status_code, "upload failed")
        return False

    def _conflict(self, filename: str, digest: str) -> bool:
        """pypiserver and devpi answer 409 for a file they already hold, whatever its bytes: only the
        target's listing, read again now, tells the identical file (True: unchanged, not uploaded
        again) from another one of that name (refused, never overwritten)."""
        project = _project_of(filename)
        self.index.forget(project)
        with self._lock:
            self._read_back.pop(filename, None)
        present = self.existing(project).get(filename, "absent")
        if present == digest:
            return True
        if present == "absent":
            raise VerificationError(f"{self.name}/{filename}: the target refused the upload (HTTP 409) and does not "
                                    "list the file")
        raise VerificationError(f"{self.name}/{filename}: the target already has a different file of that name "
                                f"({present or 'an unknown hash'}); never overwritten")


class _Listed(Mapping[str, "str | None"]):
    """filename → sha256 as the target lists it; a file listed without a sha256 is read back on lookup."""

    def __init__(self, target: UploadTarget, packages: list[DistributionPackage]):
        self._target, self._packages = target, {p.filename: p for p in packages}

    def __getitem__(self, filename: str) -> str | None:
        package = self._packages[filename]
        return sha256_of(package) or (self._target.sha256_read_back(package) if package.url else None)

    def __iter__(self) -> Iterator[str]:
        return iter(self._packages)

    def __len__(self) -> int:
        return len(self._packages)


class DirectoryTarget:
    """A static tree any web server can serve: <root>/<project>/<file> and <root>/simple/…"""

    def __init__(self, name: str, root: Path):
        self.name, self.root = name, root
        self._lock = threading.Lock()  # parallel puts rewrite the same index pages

    def staging_dir(self) -> str:
        """Downloads land in the tree itself: the same filesystem, so the final move is atomic."""
        self.root.mkdir(parents=True, exist_ok=True)
        return str(self.root)

    def existing(self, project: str) -> dict[str, str | None]:
        folder = self.root / canonicalize_name(project)
        index = self._read_json(project)
        return {f["filename"]: "sha256:" + f["hashes"]["sha256"] for f in index.get("files", [])
                if (folder / f["filename"]).exists()}

    def put(self, path: Path, filename: str, digest: str) -> None:
        project = _project_of(filename)
        folder = self.root / project
        folder.mkdir(parents=True, exist_ok=True)
        place_published(path, folder / filename)  # same filesystem as the staging dir: atomic; 0644
        with self._lock:
            page = self._read_json(project)
            files = [f for f in page.get("files", []) if f["filename"] != filename]
            files.append({"filename": filename, "url": f"../../{project}/{filename}",
                          "hashes": {"sha256": digest.split(":", 1)[1]}})
            self._write_pages(project, sorted(files, key=lambda f: f["filename"]))

    def _read_json(self, project: str) -> dict[str, Any]:
        path = self.root / "simple" / canonicalize_name(project) / "index.json"
        return json.loads(path.read_text()) if path.exists() else {}

    def _write_pages(self, project: str, files: list[dict[str, Any]]) -> None:
        folder = self.root / "simple" / project
        folder.mkdir(parents=True, exist_ok=True)
        body = {"meta": {"api-version": "1.1"}, "name": project, "files": files}
        links = "\n".join(f'<a href="{html.escape(f["url"])}#sha256={f["hashes"]["sha256"]}">{html.escape(f["filename"])}</a><br>'
                          for f in files)
        write_atomically(folder / "index.json", json.dumps(body, indent=1))
        write_atomically(folder / "index.html", f"<!DOCTYPE html>\n<html><body>\n<h1>{html.escape(project)}</h1>\n{links}\n</body></html>\n")
        projects = sorted(p.name for p in (self.root / "simple").iterdir() if p.is_dir())
        write_atomically(self.root / "simple" / "index.html", "<!DOCTYPE html>\n<html><body>\n" + "\n".join(
            f'<a href="{p}/">{p}</a><br>' for p in projects) + "\n</body></html>\n")


def _project_of(filename: str) -> str:
    return parse_file_name(filename)[0]


def _metadata_fields(path: Path, filename: str) -> dict[str, str]:
    """The form fields twine sends, read from the file itself (Nexus needs name and version)."""
    if filename.endswith(".whl"):
        name, version, _, wheel_tags = parse_wheel_filename(filename)
        pyversion = sorted({t.interpreter for t in wheel_tags})[0]
        fields = {"filetype": "bdist_wheel", "pyversion": pyversion}
        metadata = wheel_metadata(path, filename).decode("utf-8", "replace")
    else:
        name, version = parse_file_name(filename)
        fields = {"filetype": "sdist", "pyversion": "source"}
        metadata = ""
    headers = dict(line.split(": ", 1) for line in metadata.split("\n\n", 1)[0].splitlines() if ": " in line)
    fields.update(name=str(name), version=str(version), metadata_version=headers.get("Metadata-Version", "2.1"))
    for key, field_name in (("Requires-Python", "requires_python"), ("Summary", "summary")):
        if key in headers:
            fields[field_name] = headers[key]
    fields["md5_digest"] = _md5(path)  # Nexus checks it when present; it is cheap next to the upload
    return fields


def _md5(path: Path) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
