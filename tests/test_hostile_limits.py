"""Work and memory stay bounded whatever a source sends: repeated index children, floods, bombs.

A scripted server on loopback (tests/fixtures/scripted.py) plays the hostile registry or index;
peak memory is measured with tracemalloc around the one call under test.
"""

from __future__ import annotations

import functools
import hashlib
import json
import time
import tracemalloc
import zlib
from contextlib import contextmanager

import pytest

from regsync.errors import NotFound, RegistryError, VerificationError
from regsync.kinds.image.client import RegistryClient
from regsync.kinds.image.manifest import OCI_INDEX, Manifest
from regsync.kinds.package.index import PackageIndex
from regsync.kinds.image.tree import manifest_tree
from regsync.content.digest import digest_of
from tests.fixtures.scripted import scripted  # noqa: F401  (the fixture)

MIB = 1 << 20


@contextmanager
def peak_memory():
    """Yields a dict whose "peak" is the most Python memory held at once inside the block."""
    result = {}
    tracemalloc.start()
    try:
        yield result
    finally:
        result["peak"] = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()


def flood(total: int, head: bytes = b""):
    """A body generator: `head`, then spaces, `total` bytes in all, in 1 MiB chunks."""
    def chunks():
        yield head
        chunk = b" " * MIB
        for _ in range((total - len(head)) // MIB):
            yield chunk
    return chunks


@functools.lru_cache(maxsize=1)
def gzip_bomb(size: int = 128 * MIB) -> bytes:
    """`size` bytes of spaces, gzip-compressed (about a thousandth of the size)."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, 31)
    block = b" " * MIB
    return b"".join([compressor.compress(block) for _ in range(size // MIB)] + [compressor.flush()])


def _index(children: list[dict]) -> bytes:
    return json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": children}).encode()


def test_an_index_repeating_its_children_is_walked_once_per_digest(scripted):
    """20 copies of one child at each of 4 levels: 168,421 entries walked one by one, 5 when deduplicated."""
    server = scripted()
    raw = _index([])
    for _ in range(4):
        digest = digest_of(raw)
        server.routes[f"/v2/r/manifests/{digest}"] = (200, {"Content-Type": OCI_INDEX}, raw)
        raw = _index([{"mediaType": OCI_INDEX, "digest": digest, "size": len(raw)}] * 20)
    root = Manifest.parse(raw, OCI_INDEX, "root")
    started = time.monotonic()
    tree = manifest_tree(RegistryClient("src", server.url, retries=0), "r", root)
    assert time.monotonic() - started < 2
    assert len(tree) == 5 and len({m.digest for m in tree}) == 5 and tree[-1].digest == root.digest
    assert len(server.seen) == 4  # one GET per distinct child


def test_an_image_of_too_many_distinct_manifests_is_refused(scripted, monkeypatch):
    monkeypatch.setattr("regsync.kinds.image.tree.MAX_TREE_MANIFESTS", 10, raising=False)
    server = scripted()
    children = []
    for n in range(12):
        raw = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [],
                          "annotations": {"n": str(n)}}).encode()
        server.routes[f"/v2/r/manifests/{digest_of(raw)}"] = (200, {"Content-Type": OCI_INDEX}, raw)
        children.append({"mediaType": OCI_INDEX, "digest": digest_of(raw), "size": len(raw)})
    root = Manifest.parse(_index(children), OCI_INDEX, "root")
    with pytest.raises(VerificationError, match="more than 10 manifests"):
        manifest_tree(RegistryClient("src", server.url, retries=0), "r", root)
    assert len(server.seen) <= 10


def test_a_huge_tag_list_page_is_refused_with_bounded_memory(scripted):
    server = scripted()
    server.routes["/v2/r/tags/list?n=1000"] = (200, {"Content-Type": "application/json"},
                                               flood(50 * MIB, b'{"tags": ["a"') )
    with peak_memory() as memory, pytest.raises(RegistryError, match="larger than"):
        RegistryClient("src", server.url, retries=0).list_tags("r")
    assert memory["peak"] < 40 * MIB, memory


def test_a_gzip_bomb_tag_list_is_refused_with_bounded_memory(scripted):
    server = scripted()
    server.routes["/v2/r/tags/list?n=1000"] = (200, {"Content-Type": "application/json",
                                                     "Content-Encoding": "gzip"}, gzip_bomb())
    with peak_memory() as memory, pytest.raises(RegistryError, match="larger than"):
        RegistryClient("src", server.url, retries=0).list_tags("r")
    assert memory["peak"] < 48 * MIB, memory


def test_a_huge_error_body_is_not_read(scripted):
    server = scripted()
    server.routes["/v2/r/manifests/t"] = (404, {"Content-Type": "application/json"},
                                          flood(50 * MIB, b'{"errors": [{"code": "MANIFEST_UNKNOWN"'))
    with peak_memory() as memory, pytest.raises(NotFound):
        RegistryClient("src", server.url, retries=0).get_manifest("r", "t")
    assert memory["peak"] < 8 * MIB, memory


def test_a_huge_token_response_is_refused_with_bounded_memory(scripted):
    server = scripted()
    server.routes["/v2/"] = (401, {"WWW-Authenticate": f'Bearer realm="{server.url}/token"'}, b"")
    server.routes["/token"] = (200, {"Content-Type": "application/json"}, flood(50 * MIB, b'{"token": "'))
    with peak_memory() as memory, pytest.raises(RegistryError, match="larger than"):
        RegistryClient("src", server.url, retries=0).ping()
    assert memory["peak"] < 8 * MIB, memory


def test_a_huge_simple_index_page_is_refused_with_bounded_memory(scripted, monkeypatch):
    monkeypatch.setattr("regsync.kinds.package.index.MAX_PAGE_BYTES", MIB, raising=False)
    server = scripted()
    server.routes["/simple/proj/"] = (200, {"Content-Type": "text/html"}, flood(8 * MIB, b"<html><body>"))
    with peak_memory() as memory, pytest.raises(RegistryError, match="larger than"):
        PackageIndex("pypi", f"{server.url}/simple/").files("proj")
    assert memory["peak"] < 6 * MIB, memory


def test_pep658_metadata_over_the_limit_is_refused_not_cut(scripted, monkeypatch):
    """Even with the right hash: a metadata file larger than the limit is never read whole."""
    monkeypatch.setattr("regsync.kinds.package.index.MAX_METADATA_BYTES", MIB)
    server = scripted()
    body = b"Metadata-Version: 2.1\nName: proj\nVersion: 1.0\n\n" + b" " * (8 * MIB)
    sha256 = hashlib.sha256(body).hexdigest()
    page = {"meta": {"api-version": "1.1"}, "name": "proj", "files": [
        {"filename": "proj-1.0-py3-none-any.whl", "url": f"{server.url}/files/proj-1.0-py3-none-any.whl",
         "hashes": {"sha256": "0" * 64}, "core-metadata": {"sha256": sha256}}]}
    server.routes["/simple/proj/"] = (200, {"Content-Type": "application/vnd.pypi.simple.v1+json"},
                                      json.dumps(page).encode())
    server.routes["/files/proj-1.0-py3-none-any.whl.metadata"] = (200, {}, body)
    index = PackageIndex("pypi", f"{server.url}/simple/")
    [package] = index.files("proj")
    with peak_memory() as memory, pytest.raises(VerificationError, match="larger than"):
        index.metadata(package)
    assert memory["peak"] < 6 * MIB, memory


def test_a_compressed_manifest_is_refused_never_decompressed(scripted):
    """Manifests are asked for with Accept-Encoding: identity; a server that compresses anyway (here
    a gzip bomb) is refused before any byte is inflated."""
    server = scripted()
    server.routes["/v2/r/manifests/t"] = (200, {"Content-Type": OCI_INDEX, "Content-Encoding": "gzip"}, gzip_bomb())
    with peak_memory() as memory, pytest.raises(VerificationError, match="Content-Encoding 'gzip'"):
        RegistryClient("src", server.url, retries=0).get_manifest("r", "t")
    assert memory["peak"] < 4 * MIB, memory
    assert [h.get("Accept-Encoding") for _, h in server.headers] == ["identity"]
