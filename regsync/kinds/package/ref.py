"""The identity of a package file: its project, version and sha256 as an index lists them."""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit

from packaging.utils import (InvalidSdistFilename, InvalidWheelFilename, canonicalize_name, parse_sdist_filename,
                             parse_wheel_filename)
from packaging.version import Version
from pypi_simple import DistributionPackage
from regsync.kinds.package.source import Downloadable


def public_url(url: str) -> str:
    """A URL fit for plans, logs and the audit trail: any user:password@ dropped."""
    parts = urlsplit(url)
    return urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2]))


def parse_file_name(filename: str) -> tuple[str, Version]:
    """(normalised project, version) of a wheel or sdist file name; ValueError for anything else.
    An sdist's project may hold dashes (`python-dateutil-2.8.2.tar.gz`): never cut at the first one."""
    try:
        if filename.endswith(".whl"):
            name, version, _, _ = parse_wheel_filename(filename)
        else:
            name, version = parse_sdist_filename(filename)
    except (InvalidWheelFilename, InvalidSdistFilename):
        raise ValueError(f"{filename} is not a wheel or sdist file name") from None
    return canonicalize_name(name), version


def project_of(package: DistributionPackage) -> str:
    """The project a listed file belongs to: the page's own name when it gave one, else its file name's."""
    if package.project:
        return canonicalize_name(package.project)
    try:
        return parse_file_name(package.filename)[0]
    except ValueError:
        return canonicalize_name(package.filename.split("-", 1)[0])


def sha256_of(package: Downloadable) -> str | None:
    value = (package.digests or {}).get("sha256")
    return f"sha256:{value}" if value else None
