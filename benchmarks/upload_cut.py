"""python -m benchmarks.upload_cut — what docker-registry does with an upload session whose PATCH
was cut mid-body (what a SIGKILL of the uploader does), the fact P7's target leg depends on.

One acknowledged 1 MiB PATCH, then a PATCH announcing 4 MiB that sends 2 MiB and closes the socket;
then `GET <the acknowledged Location>`, which a resuming client would ask for the session's Range.
distribution 2.8 keeps the cut bytes in the session, finds its size different from the offset in
the acknowledged (HMAC-signed) `_state`, and answers 404 BLOB_UPLOAD_INVALID: the session is gone."""

from __future__ import annotations

import os
import socket
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urljoin, urlsplit

import requests

from tests.fixtures.registries import start_registry

MiB = 1 << 20


def main() -> int:
    registry = start_registry(Path(tempfile.mkdtemp(prefix="regsync-upload-cut-")))
    try:
        session = requests.Session()
        location = urljoin(registry.url, session.post(f"{registry.url}/v2/probe/cut/blobs/uploads/").headers["Location"])
        acked = session.patch(location, data=os.urandom(MiB), headers={
            "Content-Type": "application/octet-stream", "Content-Range": f"0-{MiB - 1}"})
        print(f"PATCH 0-{MiB - 1}: {acked.status_code}, Range {acked.headers.get('Range')}")
        acked_location = urljoin(registry.url, acked.headers["Location"])
        url = urlsplit(acked_location)
        with socket.create_connection((url.hostname, url.port)) as sock:
            sock.sendall(f"PATCH {url.path}?{url.query} HTTP/1.1\r\nHost: {url.netloc}\r\n"
                         f"Content-Type: application/octet-stream\r\nContent-Range: {MiB}-{5 * MiB - 1}\r\n"
                         f"Content-Length: {4 * MiB}\r\n\r\n".encode() + os.urandom(2 * MiB))
            time.sleep(0.5)
        time.sleep(0.5)
        held = [p.stat().st_size for p in registry.storage.glob("repositories/probe/cut/_uploads/*/data")]
        print(f"PATCH cut after 2 of 4 MiB; the session holds {held} bytes on disk")
        status = session.get(acked_location)
        print(f"GET <acknowledged Location>: {status.status_code} {status.text.strip()[:120]}")
        return 0
    finally:
        registry.stop()


if __name__ == "__main__":
    sys.exit(main())
