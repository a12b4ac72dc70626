"""What a wheel says about itself: its one `.dist-info` directory and `METADATA`, read bounded.

A wheel whose name lies (`app-1.0-py3-none-any.whl` whose own METADATA says `evil 6.6.6,
Requires-Dist: backdoor`) would be mirrored as `app` with a closure computed without `backdoor`,
and pip would then refuse it on the client (issue 22). So the bytes that pass through are checked
against the file name and against the (PEP 658) metadata the resolution used, as pip checks them
(pip/_internal/utils/wheel.py `wheel_dist_info_dir`: exactly one .dist-info directory, named for
the project).

Bounded: only the zip's central directory (its size read from the end record first, so a wheel
of millions of tiny entries is refused before zipfile lists them) and the METADATA member, at most
MAX_METADATA_BYTES inflated, are read; never the whole wheel.
"""

from __future__ import annotations

import email.message
import email.parser
import os
import zipfile
from collections.abc import Mapping
from typing import IO

from packaging.requirements import InvalidRequirement, Requirement
from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

from regsync.errors import VerificationError
from regsync.content.python_names import parse_file_name

MAX_METADATA_BYTES = 16 * 1024 * 1024
# The largest real wheels (torch, tensorflow: ~20,000 members) have central directories of a few
# MiB; zipfile holds one ZipInfo per entry in memory, so the directory is bounded before it is read.
MAX_CENTRAL_DIRECTORY_BYTES = 64 << 20
MAX_MEMBERS = 500_000


def wheel_metadata(wheel_file: str | os.PathLike[str] | IO[bytes], where: str, filename: str | None = None) -> bytes:
    """The raw METADATA of a wheel (a path or a seekable file object) from its one `.dist-info`
    directory. With `filename`, that directory and METADATA must name the project and version the
    file name does. A file that is not a readable wheel, or says otherwise, is refused."""
    try:
        if isinstance(wheel_file, (str, os.PathLike)):
            with open(wheel_file, "rb") as handle:
                raw = _read_metadata(handle, where, filename)
        else:
            raw = _read_metadata(wheel_file, where, filename)
    except (zipfile.BadZipFile, KeyError, OSError, ValueError, EOFError, NotImplementedError, RuntimeError):
        raise VerificationError(f"{where}: not a wheel (no readable .dist-info/METADATA)") from None
    if len(raw) > MAX_METADATA_BYTES:
        raise VerificationError(f"{where}: its METADATA is larger than {MAX_METADATA_BYTES} bytes")
    if filename is not None:
        check_names(parse_metadata(raw), filename, where, "its METADATA")
    return raw


def _read_metadata(handle: IO[bytes], where: str, filename: str | None) -> bytes:
    with zipfile.ZipFile(bounded_zip(handle, where, "wheel")) as wheel:
        info_dir = _dist_info_dir(wheel.namelist(), where)
        if filename is not None:
            _check_dir_name(info_dir, filename, where)
        with wheel.open(f"{info_dir}/METADATA") as member:
            return member.read(MAX_METADATA_BYTES + 1)


def check_wheel(path: str | os.PathLike[str], filename: str, where: str, used: email.message.Message | None) -> None:
    """The verified local wheel at `path` is what its file name and the metadata the plan resolved
    with (`used`, the PEP 658 file, when there was one) say: raises VerificationError otherwise."""
    own = parse_metadata(wheel_metadata(path, where, filename))
    if used is None:
        return
    for field, theirs, ours in (("Name", canonicalize_name(used.get("Name", "")), canonicalize_name(own.get("Name", ""))),
                                ("Version", _version(used.get("Version")), _version(own.get("Version"))),
                                ("Requires-Dist", _requirements(used), _requirements(own)),
                                ("Requires-Python", _python(used), _python(own))):
        if theirs != ours:
            raise VerificationError(f"{where}: the wheel's METADATA says {field} {_show(ours)}, the index's "
                                    f".metadata (what the plan resolved with) says {_show(theirs)}")


def parse_metadata(raw: bytes) -> email.message.Message:
    return email.parser.BytesParser().parsebytes(raw, headersonly=True)


def bounded_zip(handle: IO[bytes], where: str, what: str) -> IO[bytes]:
    """The open file, once its central directory is known to be within the bounds."""
    # zipfile's own end-record reader (it handles zip64 and a trailing comment); private, but zipfile
    # offers no public way to learn the directory's size before it reads all of it.
    # (typeshed does not declare these private names: hence the ignores)
    end = zipfile._EndRecData(handle)  # type: ignore[attr-defined]  # noqa: SLF001
    if end is None:
        raise zipfile.BadZipFile(where)
    entries = end[zipfile._ECD_ENTRIES_TOTAL]  # type: ignore[attr-defined]  # noqa: SLF001
    size = end[zipfile._ECD_SIZE]  # type: ignore[attr-defined]  # noqa: SLF001
    if entries > MAX_MEMBERS or size > MAX_CENTRAL_DIRECTORY_BYTES:
        raise VerificationError(f"{where}: its zip directory ({entries} entries, {size} bytes) is larger than any "
                                f"{what}'s (at most {MAX_MEMBERS} entries, {MAX_CENTRAL_DIRECTORY_BYTES} bytes)")
    handle.seek(0)
    return handle


def _dist_info_dir(names: list[str], where: str) -> str:
    found = {name.split("/", 1)[0] for name in names if "/" in name and name.split("/", 1)[0].endswith(".dist-info")}
    if len(found) != 1:
        raise VerificationError(f"{where}: a wheel has exactly one .dist-info directory, this one has "
                                f"{len(found)}{': ' + ', '.join(sorted(found)[:5]) if found else ''}")
    return found.pop()


def _check_dir_name(info_dir: str, filename: str, where: str) -> None:
    name, _, version = info_dir.removesuffix(".dist-info").rpartition("-")
    check_names({"Name": name, "Version": version}, filename, where, f"its directory {info_dir}")


def check_names(said: Mapping[str, str] | email.message.Message, filename: str, where: str, what: str) -> None:
    project, version = parse_file_name(filename)
    name, stated = canonicalize_name(said.get("Name") or ""), _version(said.get("Version"))
    if name != project or stated != version:
        raise VerificationError(f"{where}: {what} says {said.get('Name')} {said.get('Version')}, "
                                f"its file name {project} {version}")


def _version(text: object) -> Version | None:
    try:
        return Version(str(text or "").strip())
    except InvalidVersion:
        return None


def _python(metadata: email.message.Message) -> str:
    """Requires-Python, normalised when it parses (`>= 3.8` and `>=3.8` are one requirement)."""
    text = (metadata.get("Requires-Python") or "").strip()
    try:
        return str(SpecifierSet(text))
    except InvalidSpecifier:
        return " ".join(text.split())


def _requirements(metadata: email.message.Message) -> list[str]:
    """Requires-Dist as a sorted list, each normalised when it parses (spacing and quoting aside)."""
    out = []
    for text in metadata.get_all("Requires-Dist") or []:
        try:
            out.append(str(Requirement(text)))
        except InvalidRequirement:
            out.append(" ".join(text.split()))
    return sorted(out)


def _show(value: object) -> str:
    if isinstance(value, list):
        return "[" + ", ".join(value) + "]" if value else "nothing"
    return str(value) if value else "nothing"
