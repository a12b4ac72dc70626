"""What a Python package file is by its name: the project and version of a wheel (PEP 427) or an
sdist (PEP 625, and the older `name-version.tar.gz`/`.zip`), read by `packaging`. Below the kinds,
so that the package kind and the vulnerability gate read a file name the same way."""

from __future__ import annotations

from packaging.utils import (InvalidSdistFilename, InvalidWheelFilename, NormalizedName, canonicalize_name,
                             parse_sdist_filename, parse_wheel_filename)
from packaging.version import Version


def parse_file_name(filename: str) -> tuple[NormalizedName, Version]:
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
