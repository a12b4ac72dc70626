"""The package kind's clients, made through Endpoints: one pooled client per index of the policy.

An index read as a source is a PackageSource under `index:<name>` (with `mirrors:` a MirroredIndex
in front of it; a bundle's BundleIndex on import, handed in as a stand-in); where packages go is a
PackageTarget under `target:<name>` (export's NoTarget stands in for it)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from regsync.kinds.image.credentials import endpoint_credentials
from regsync.kinds.package.index import PackageIndex
from regsync.kinds.package.mirrors import MirroredIndex
from regsync.kinds.package.sinks import DirectoryTarget, UploadTarget
from regsync.kinds.package.source import PackageSource, PackageTarget
from regsync.net.http import retry_policy
from regsync.kinds.package.policy import PackageRule, PackageSection

if TYPE_CHECKING:
    from regsync.endpoints import Endpoints


def source_index(endpoints: "Endpoints", name: str) -> PackageSource:
    """Index `name` to read from (its simple pages), with its mirrors behind it."""
    def make() -> PackageSource:
        mirrors = [_index(endpoints, name, url, primary=False) for url in PackageSection.of(endpoints.policy).indexes[name].mirrors]
        primary = _primary(endpoints, name)
        return MirroredIndex([primary, *mirrors]) if mirrors else primary

    return endpoints.client(source_key(name), make)


def provenance_index(rule: PackageRule, endpoints: "Endpoints") -> PackageSource:
    """Where the provenance is read: the index `provenance_from` names, else the source; on import
    the bundle standing in for the source, which carries what export fetched (no network there)."""
    source = source_index(endpoints, rule.source)
    if source.offline:
        return source
    return source_index(endpoints, rule.verify.provenance_from) if rule.verify.provenance_from else source


def source_key(name: str) -> str:
    """The key a stand-in for source index `name` is handed to Endpoints under."""
    return f"index:{name}"


def package_target(endpoints: "Endpoints", name: str) -> PackageTarget:
    """Where packages for index `name` go: an upload API, or a directory tree. What a target holds
    is read from the target itself, never from a mirror of it."""
    def make() -> PackageTarget:
        cfg = PackageSection.of(endpoints.policy).indexes[name]
        if cfg.flavour == "directory":
            assert cfg.path is not None, "Index checks that kind: directory has a path"
            return DirectoryTarget(name, cfg.path)
        assert cfg.url is not None, "Index checks that every other kind has a url"
        return UploadTarget(name, _primary(endpoints, name), cfg.upload_url or cfg.url)

    return endpoints.client(target_key(name), make)


def target_key(name: str) -> str:
    """The key a stand-in for target index `name` is handed to Endpoints under."""
    return f"target:{name}"


def _primary(endpoints: "Endpoints", name: str) -> PackageIndex:
    url = PackageSection.of(endpoints.policy).indexes[name].url
    # policy check refuses a kind: directory index (no url) named as a source (policy/__init__.py)
    assert url is not None, f"index '{name}' has no url"
    return endpoints.client(f"index-primary:{name}", lambda: _index(endpoints, name, url, primary=True))


def _index(endpoints: "Endpoints", name: str, url: str, primary: bool) -> PackageIndex:
    cfg = PackageSection.of(endpoints.policy).indexes[name]
    return PackageIndex(name, url, endpoint_credentials(cfg.auth, url, primary), cfg.tls.ca_file if cfg.tls else None,
                        endpoints.pool_size, retry_policy(cfg.retries.attempts, cfg.retries.backoff_seconds),
                        cfg.upload_url if primary else None)
