"""Downloading one distribution: streamed, sha256-verified, resumed with Range after a drop.

The hash state lives in the one VerifyingReader for the whole file: after a broken connection we
ask for the rest (`Range: bytes=N-`) and keep hashing where we were, so a resumed file is
verified exactly like one that came down in one piece.
"""

from __future__ import annotations

from pathlib import Path

from pypi_simple import DistributionPackage

from regsync.errors import VerificationError
from regsync.transfer import SourceReadError, VerifyingReader

RESUME_ATTEMPTS = 5


def fetch_verified(index, package: DistributionPackage, path: Path, on_bytes=None) -> str:
    from regsync.pypi.index import sha256_of

    where = f"{index.name}/{package.filename}"
    digest = sha256_of(package)
    if digest is None:
        raise VerificationError(f"{where}: the index gives no sha256 for it")
    response = index.open(package)
    declared = response.headers.get("Content-Length")
    size = int(declared) if declared and declared.isdigit() else package.size
    if package.size is not None and size is not None and size != package.size:
        response.close()
        raise VerificationError(f"{where}: server announces {size} bytes, the index says {package.size}")
    state = {"response": response}

    def read(n: int) -> bytes:
        return state["response"].raw.read(n)

    reader = VerifyingReader(read, digest, size, where, on_bytes)
    with path.open("wb") as out:
        for attempt in range(RESUME_ATTEMPTS + 1):
            try:
                for chunk in reader.chunks():
                    out.write(chunk)
                break
            except SourceReadError:
                state["response"].close()
                if attempt == RESUME_ATTEMPTS or size is None:
                    raise
                state["response"] = index.open(package, start=reader.count)
        state["response"].close()
    return digest
