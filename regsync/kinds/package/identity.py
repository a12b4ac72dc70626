"""A package file is what its name says: a wheel's `.dist-info` (wheel.py), an sdist's `PKG-INFO`
(sdist.py), checked after the verified download and before the file is pushed or exported."""

from __future__ import annotations

import email.message
from pathlib import Path

from regsync.kinds.package.sdist import check_sdist
from regsync.kinds.package.wheel import check_wheel


def check_file(path: Path, filename: str, where: str, used: email.message.Message | None) -> None:
    """Raises VerificationError unless the local file at `path` is the project and version its file
    name says (for a wheel also what `used`, the metadata the plan resolved with, says)."""
    if filename.endswith(".whl"):
        check_wheel(path, filename, where, used)
    else:
        check_sdist(path, filename, where)
