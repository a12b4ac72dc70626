"""The identity of a package file: its project, version and sha256 as an index lists them."""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit

from packaging.utils import canonicalize_name
from pypi_simple import DistributionPackage
from regsync.kinds.package.source import Downloadable

from regsync.content.python_names import parse_file_name


def public_url(url: str) -> str:
    """A URL fit for plans, logs and the audit trail: any user:password@ dropped."""
    parts = urlsplit(url)
    return urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2]))


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
