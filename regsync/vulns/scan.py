"""`regsync scan`'s library half: one artifact on disk against the database, judged by a gate."""

from __future__ import annotations

from pathlib import Path

from regsync.errors import UsageError
from regsync.policy.vulns import VulnGate
from regsync.vulns.database import OsvDatabase
from regsync.vulns.files import python_package
from regsync.vulns.gate import VulnerabilityRefusal, check_packages
from regsync.vulns.match import NotCovered


def scan_path(path: Path, db: OsvDatabase, gate: VulnGate) -> dict:
    """The evidence (every match, the database); VulnerabilityRefusal when the gate refuses."""
    if path.is_file() and path.name.endswith((".whl", ".tar.gz", ".zip", ".conda", ".tar.bz2")):
        try:
            found = python_package(path.name)
        except NotCovered as exc:
            raise VulnerabilityRefusal(f"{exc}: not covered is not clean",
                                       {"db": {"sha256": db.sha256}, "not_covered": [str(exc)]}) from None
        return check_packages(db, gate, [found], path.name)
    raise UsageError(f"{path}: not a wheel or sdist (a file name like name-1.0-py3-none-any.whl or name-1.0.tar.gz)")
