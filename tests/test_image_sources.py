"""Every image source answers the reads `ImageSource` declares (kinds/image/source.py), a bundle's
layout as a registry does: a blob from a byte offset comes back as a server that honours Range
sends it, so the resumed download path (content/reader.continues_at) reads it unchanged."""

import hashlib

from regsync.content.reader import continues_at
from regsync.kinds.image.layout import LayoutSource
from tests.fixtures.oci_layout import write_image


def test_a_layout_serves_a_blob_from_an_offset_as_a_registry_does(tmp_path):
    info = write_image(tmp_path / "layout", "1.0", platforms=(("linux", "amd64"),), layer_size=100_000)
    layer = info.layer_digests["linux/amd64"][-1]
    whole = (tmp_path / "layout" / "blobs" / "sha256" / layer.split(":", 1)[1]).read_bytes()
    source = LayoutSource(tmp_path / "layout", index=b'{"manifests": []}')
    with source.open_blob("repo", layer) as response:
        assert response.raw.read(len(whole) + 1) == whole
        assert response.headers == {"Content-Length": str(len(whole))}
    start = 12_345
    with source.open_blob_from("repo", layer, start) as response:
        assert continues_at(response, start)
        assert response.headers["Content-Length"] == str(len(whole) - start)
        rest = response.raw.read(len(whole))
    assert "sha256:" + hashlib.sha256(whole[:start] + rest).hexdigest() == layer
