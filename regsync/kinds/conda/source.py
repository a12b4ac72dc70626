"""What the conda kind reads packages from: a channel over HTTP (SourceChannel) or an air-gap
bundle's stand-in (BundleChannel). Each declares that it is one; where packages go is a
TargetChannel (kinds/conda/targets.py: a directory, or files by HTTP PUT)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from regsync.kinds.package.source import FileStream

if TYPE_CHECKING:
    from rattler import Channel, RepoDataRecord


MAX_SIDECAR = 4 << 20   # rattler's own bound on an attestation sidecar


@dataclass
class CondaFile:
    """One package file as the repodata lists it: what the shared download path (package/fetch.py) needs."""

    filename: str
    url: str
    size: int | None
    digests: dict[str, str]
    where: str = ""   # channel/subdir/file, for messages


class UpstreamListing(Protocol):
    """What a target keeps of a source subdir's listing: upstream's order and its `removed` entries
    (repodata.Listing as read from the channel; a bundle's carried entries)."""

    def positions(self) -> dict[str, int]: ...

    def removed(self) -> list[str]: ...


class CondaSource(Protocol):
    name: str   # the policy's name of the channel
    url: str    # where rattler reads it (a bundle's: a local directory)

    def listing(self, subdir: str) -> UpstreamListing | None:
        """The subdir's repodata as published, in upstream's order; None when there is none to keep
        (a subdir served as CEP-16 shards only)."""

    def rattler_channel(self, subdirs: Sequence[str] = ()) -> "Channel":
        """The channel as rattler reads it, each of `subdirs` read (bounded) first."""

    def upstream(self, record: "RepoDataRecord") -> "RepoDataRecord":
        """`record` with its URL where the channel serves the file."""

    def listed_in(self, record: "RepoDataRecord") -> str:
        """The subdir whose repodata listed `record`."""

    def published(self, subdir: str, record: "RepoDataRecord") -> dict[str, Any]:
        """The record key for key as the channel publishes it."""

    def records_named(self, subdir: str, name: str) -> "list[RepoDataRecord]":
        """Every record of package `name` in the subdir, both package formats of a build."""

    def sharded(self, subdirs: Sequence[str]) -> list[str]:
        """Those of `subdirs` the channel serves as CEP-16 shards only (read with `shards: allow`)."""

    def read_shards(self, subdirs: Sequence[str], name: str) -> list[str]:
        """For a subdir served as CEP-16 shards only: the shard of `name` read (once, bounded) into
        the local copy rattler reads; the names its records depend on. [] for any other subdir."""

    def files_elsewhere(self, subdir: str, url: str) -> str | None:
        """Where the subdir's files are when the channel says elsewhere (CEP-15 base_url), else None."""

    def file(self, subdir: str, record: "RepoDataRecord", published: dict[str, Any]) -> CondaFile:
        """The download of `record`."""

    def open(self, package: CondaFile, start: int = 0) -> FileStream:
        """The file from byte `start`."""

    def sidecar(self, package: CondaFile, sha256: str) -> bytes:
        """The file's attestation sidecar (`<file>.sigs.<sha256>`), checked against `sha256`."""
