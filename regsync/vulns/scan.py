"""`regsync scan`'s library half: one artifact on disk against the database, judged by a gate."""

from __future__ import annotations

from pathlib import Path

from regsync.errors import UsageError
from regsync.policy.vulns import VulnGate
from regsync.vulns.database import OsvDatabase
from regsync.vulns.files import python_package
from regsync.vulns.gate import VulnerabilityRefusal, check_packages
from regsync.vulns.layers import ImageContents, is_layer
from regsync.vulns.match import NotCovered
from regsync.vulns.tarstream import TarError


def scan_path(path: Path, db: OsvDatabase, gate: VulnGate) -> dict:
    """The evidence (every match, the database); VulnerabilityRefusal when the gate refuses.

    A wheel or sdist by its file name; a layer tarball (gzip, zstd or plain) or an unpacked root file
    system by the package databases in it, as the image gate reads them."""
    if path.is_dir():
        contents = ImageContents()
        contents.add_tree(path)
        return _contents(contents, db, gate, path.name)
    if not path.is_file():   # a FIFO would block the read below forever; a device never ends
        raise UsageError(f"{path}: not a regular file (scan a wheel, sdist, layer tarball or folder)")
    try:
        return check_packages(db, gate, [python_package(path.name)], path.name)
    except NotCovered as exc:
        if path.name.endswith((".conda", ".tar.bz2")) or not is_layer(path):
            if not path.name.endswith((".conda", ".tar.bz2", ".whl")):
                raise UsageError(f"{path}: not a wheel, sdist, layer tarball or folder") from None
            raise VulnerabilityRefusal(f"{exc}: not covered is not clean",
                                       {"db": {"sha256": db.sha256}, "not_covered": [str(exc)]}) from None
    contents = ImageContents()
    with path.open("rb") as handle:
        try:
            contents.add_layer(handle)
        except (TarError, OSError, EOFError) as exc:   # cut short, or bytes the decompressor does not take
            raise UsageError(f"{path}: not a complete layer tarball ({exc})") from None
    return _contents(contents, db, gate, path.name)


def _contents(contents: ImageContents, db: OsvDatabase, gate: VulnGate, what: str) -> dict:
    found, not_covered = contents.packages()
    return check_packages(db, gate, found, what, not_covered, listed=True)
