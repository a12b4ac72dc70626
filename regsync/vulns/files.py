"""What a package file is, for the database: its ecosystem, name and version, from its file name
(PEP 427 wheels, PEP 625 sdists, read by `packaging`)."""

from __future__ import annotations

from packaging.utils import InvalidSdistFilename, InvalidWheelFilename, parse_sdist_filename, parse_wheel_filename

from typing import TYPE_CHECKING

from regsync.vulns.match import NotCovered

if TYPE_CHECKING:
    from regsync.endpoints import Endpoints
    from regsync.vulns.database import OsvDatabase


def python_package(filename: str) -> tuple[str, str, str]:
    """("PyPI", normalised name, version) of a wheel or sdist; NotCovered for anything else."""
    try:
        if filename.endswith(".whl"):
            name, version, _, _ = parse_wheel_filename(filename)
        else:
            name, version = parse_sdist_filename(filename)
    except (InvalidWheelFilename, InvalidSdistFilename):
        if filename.endswith((".conda", ".tar.bz2")):
            raise NotCovered(f"{filename}: conda packages are not in OSV's data; not checked") from None
        raise NotCovered(f"{filename}: not a wheel or sdist name, so its version is unknown") from None
    return "PyPI", str(name), str(version)


def database_for(endpoints: Endpoints) -> OsvDatabase:
    """The run's database, opened once (an import's bundle hands its own in under the same key)."""
    from regsync.vulns.database import OsvDatabase

    config = endpoints.policy.vulnerabilities
    assert config is not None, "a gate runs only with the policy's vulnerabilities: section (policy check)"
    return endpoints.client(DB_KEY, lambda: OsvDatabase(config.db, config.max_age))


DB_KEY = "vulns:db"


def gate_python_file(endpoints, gate, filename: str) -> dict:
    """The gate on one wheel or sdist: its evidence, or VulnerabilityRefusal."""
    from regsync.vulns.gate import VulnerabilityRefusal, check_packages

    db = database_for(endpoints)
    try:
        found = python_package(filename)
    except NotCovered as exc:
        raise VulnerabilityRefusal(f"gate vulnerabilities: {exc}: not covered is not clean",
                                   {"db": {"sha256": db.sha256}, "not_covered": [str(exc)]}) from None
    return check_packages(db, gate, [found], filename)
