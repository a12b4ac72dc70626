"""Every conda source answers what `CondaSource` declares (kinds/conda/source.py): a bundle's stand-in
serves the attestation sidecar export carried, checked against the sha256 the record names."""

import hashlib
import tempfile

import pytest

from regsync.content.layout import LayoutBlobs
from regsync.errors import NotFound, VerificationError
from regsync.kinds.conda.bundle import BundleChannel
from regsync.kinds.conda.source import CondaSource


def _store(root, data: bytes) -> str:
    digest = hashlib.sha256(data).hexdigest()
    (root / "blobs" / "sha256").mkdir(parents=True, exist_ok=True)
    (root / "blobs" / "sha256" / digest).write_bytes(data)
    return digest


def test_a_bundle_channel_serves_the_sidecar_export_carried(tmp_path):
    sidecar = b'{"mediaType": "application/vnd.dev.sigstore.bundle.v0.3+json"}'
    sidecar_sha = _store(tmp_path, sidecar)
    package_sha = _store(tmp_path, b"not really a package")
    record = {"name": "app", "version": "1.0", "build": "0", "build_number": 0, "depends": [], "subdir": "noarch",
              "sha256": package_sha, "size": 20,
              "attestations_sha256": sidecar_sha}
    entries = [{"channel": "up", "subdir": "noarch", "filename": "app-1.0-0.conda", "sha256": f"sha256:{package_sha}",
                "size": 20, "record": record}]
    scratch = tempfile.TemporaryDirectory(prefix="scratch-", dir=tmp_path)
    source: CondaSource = BundleChannel("up", entries, LayoutBlobs(tmp_path, "conda"), scratch)
    carried = source.listing("noarch")   # no upstream order to keep, and only the `removed` entries export carried
    assert carried is not None and carried.positions() == {} and carried.removed() == []
    [found] = source.records_named("noarch", "app")
    package = source.file("noarch", found, source.published("noarch", found))
    assert package.digests == {"sha256": package_sha}
    assert source.sidecar(package, sidecar_sha) == sidecar
    with pytest.raises(NotFound):
        source.sidecar(package, "0" * 64)
    (tmp_path / "blobs" / "sha256" / sidecar_sha).write_bytes(sidecar + b" ")
    with pytest.raises(VerificationError, match="does not match"):
        source.sidecar(package, sidecar_sha)
