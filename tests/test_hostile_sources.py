"""Hostile sources: refused with a clear reason, memory bounded, credentials never forwarded.

A real registry can't be made to lie, so these corner cases use a small scripted server on
loopback (the brief allows a fake for corner cases); the fuzz test drives the parser directly.
"""

import base64
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from urllib3.util.retry import Retry

from regsync.errors import RegistryError, VerificationError
from regsync.kinds.image.auth import Credentials
from regsync.kinds.image.client import RegistryClient
from regsync.kinds.image.manifest import MAX_MANIFEST_BYTES, OCI_INDEX, Manifest
from regsync.kinds.package.index import PackageIndex
from regsync.kinds.package.sinks import UploadTarget
from regsync.kinds.image.tree import manifest_tree
from regsync.content.digest import digest_of
from tests.fixtures.scripted import scripted  # noqa: F401  (the fixture)


def test_credentials_never_follow_a_redirect_to_another_host(scripted):
    good = "Basic " + base64.b64encode(b"sync:t0p-secret").decode()
    elsewhere = scripted(host="127.0.0.2")
    elsewhere.routes["/blob"] = (401, {"WWW-Authenticate": 'Basic realm="give me your password"'}, b"")
    registry = scripted(require_basic=good)
    registry.routes["/v2/"] = (200, {}, b"{}")
    digest = "sha256:" + "a" * 64
    registry.routes[f"/v2/r/blobs/{digest}"] = (307, {"Location": f"{elsewhere.url}/blob"}, b"")
    client = RegistryClient("src", registry.url, Credentials("sync", "t0p-secret"), retries=0)
    client.ping()
    with pytest.raises(RegistryError):
        client.open_blob("r", digest)
    assert elsewhere.seen and all(auth is None for _, auth in elsewhere.seen)


def _page(*filenames):
    return b"".join(b'<a href="/files/%s#sha256=%s">%s</a>' % (f.encode(), b"a" * 64, f.encode()) for f in filenames)


@pytest.mark.parametrize("elsewhere_host", ["127.0.0.1", "127.0.0.2"])  # another port; another host
def test_a_target_page_redirecting_to_another_origin_means_absent_and_nothing_goes_there(scripted, elsewhere_host):
    good = "Basic " + base64.b64encode(b"sync:t0p-secret").decode()
    elsewhere = scripted(host=elsewhere_host)
    elsewhere.routes["/simple/tool/"] = (200, {"Content-Type": "text/html"}, _page("tool-1.0-py3-none-any.whl"))
    target = scripted(require_basic=good)
    target.routes["/simple/tool/"] = (303, {"Location": f"{elsewhere.url}/simple/tool/"}, b"")
    index = PackageIndex("internal", f"{target.url}/simple/", Credentials("sync", "t0p-secret"), retry=Retry(0))

    assert dict(UploadTarget("internal", index, f"{target.url}/").existing("tool")) == {}
    assert elsewhere.seen == []


def test_a_target_page_redirecting_on_its_own_origin_is_followed(scripted):
    good = "Basic " + base64.b64encode(b"sync:t0p-secret").decode()
    target = scripted(require_basic=good)
    target.routes["/simple/tool/"] = (301, {"Location": "/repository/pypi/simple/tool/"}, b"")
    target.routes["/repository/pypi/simple/tool/"] = (200, {"Content-Type": "text/html"},
                                                      _page("tool-1.0-py3-none-any.whl"))
    index = PackageIndex("internal", f"{target.url}/simple/", Credentials("sync", "t0p-secret"), retry=Retry(0))

    assert dict(UploadTarget("internal", index, f"{target.url}/").existing("tool")) == {
        "tool-1.0-py3-none-any.whl": "sha256:" + "a" * 64}


def test_a_target_page_redirecting_to_a_garbled_location_means_absent(scripted):
    target = scripted()
    target.routes["/simple/tool/"] = (302, {"Location": "http://127.0.0.1:no-port/simple/tool/"}, b"")
    index = PackageIndex("internal", f"{target.url}/simple/", retry=Retry(0))
    assert dict(UploadTarget("internal", index, f"{target.url}/").existing("tool")) == {}


def test_a_target_page_redirecting_in_a_loop_is_a_clear_error(scripted):
    target = scripted()
    target.routes["/simple/tool/"] = (302, {"Location": "/simple/tool/"}, b"")
    index = PackageIndex("internal", f"{target.url}/simple/", retry=Retry(0))
    with pytest.raises(RegistryError, match="more than 5 redirects"):
        UploadTarget("internal", index, f"{target.url}/").existing("tool")


def test_oversized_manifest_without_content_length_is_refused_with_bounded_memory(scripted):
    server = scripted()

    def endless():
        chunk = b" " * 65536
        for _ in range(2 * MAX_MANIFEST_BYTES // len(chunk)):
            yield chunk
    server.routes["/v2/r/manifests/t"] = (200, {"Content-Type": OCI_INDEX}, endless)
    with pytest.raises(VerificationError, match="larger than"):
        RegistryClient("src", server.url, retries=0).get_manifest("r", "t")


def test_declared_oversized_manifest_is_refused_before_reading(scripted):
    server = scripted()
    server.routes["/v2/r/manifests/t"] = (200, {"Content-Length": str(50 * MAX_MANIFEST_BYTES)}, b"{}")
    with pytest.raises(VerificationError, match="exceeds"):
        RegistryClient("src", server.url, retries=0).get_manifest("r", "t")


def test_garbage_content_length_is_a_refusal_not_a_crash(scripted):
    server = scripted()
    server.routes["/v2/r/manifests/t"] = (200, {"Content-Length": "12, 12"}, b"{}")
    with pytest.raises(VerificationError, match="invalid Content-Length"):
        RegistryClient("src", server.url, retries=0).get_manifest("r", "t")


def test_unexpected_media_type_is_refused(scripted):
    server = scripted()
    body = json.dumps({"schemaVersion": 1, "fsLayers": []}).encode()
    server.routes["/v2/r/manifests/t"] = (200, {"Content-Type": "application/vnd.docker.distribution.manifest.v1+prettyjws"}, body)
    with pytest.raises(VerificationError, match="unsupported manifest media type"):
        RegistryClient("src", server.url, retries=0).get_manifest("r", "t")


def test_nested_indexes_beyond_the_depth_limit_are_refused(scripted):
    server = scripted()
    leaf = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": []}).encode()
    raw = leaf
    for _ in range(8):
        digest = digest_of(raw)
        server.routes[f"/v2/r/manifests/{digest}"] = (200, {"Content-Type": OCI_INDEX}, raw)
        raw = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX,
                          "manifests": [{"mediaType": OCI_INDEX, "digest": digest, "size": len(raw)}]}).encode()
    root = Manifest.parse(raw, OCI_INDEX, "root")
    with pytest.raises(VerificationError, match="nested deeper"):
        manifest_tree(RegistryClient("src", server.url, retries=0), "r", root)


json_values = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
                           lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
                           max_leaves=30)
manifest_like = st.fixed_dictionaries({}, optional={
    "mediaType": st.sampled_from([OCI_INDEX, "application/vnd.oci.image.manifest.v1+json", "x", 3]),
    "manifests": json_values, "layers": json_values, "config": json_values, "schemaVersion": json_values})


@settings(max_examples=300, deadline=None)
@given(st.one_of(manifest_like, json_values), st.sampled_from([None, OCI_INDEX, "text/plain"]))
def test_fuzzed_manifests_never_escape_as_anything_but_a_refusal(doc, content_type):
    raw = json.dumps(doc).encode()
    try:
        manifest = Manifest.parse(raw, content_type, "fuzz")
        manifest.children()
        manifest.blobs()
    except VerificationError:
        pass


@settings(max_examples=100, deadline=None)
@given(st.binary(max_size=200))
def test_fuzzed_bytes_never_escape_as_anything_but_a_refusal(raw):
    try:
        Manifest.parse(raw, None, "fuzz").children()
    except VerificationError:
        pass


def test_a_source_page_redirecting_to_another_index_is_not_read(scripted):
    """pypiserver as a *source*, with its default fallback: a project it lacks redirects to pypi.org.
    Followed, that index's listing (and hashes) would be recorded as this source's word."""
    elsewhere = scripted(host="127.0.0.2")
    elsewhere.routes["/simple/tool/"] = (200, {"Content-Type": "text/html"}, _page("tool-1.0-py3-none-any.whl"))
    source = scripted()
    source.routes["/simple/tool/"] = (303, {"Location": f"{elsewhere.url}/simple/tool/"}, b"")
    source.routes["/simple/own/"] = (301, {"Location": f"{source.url}/simple/own-moved/"}, b"")
    source.routes["/simple/own-moved/"] = (200, {"Content-Type": "text/html"}, _page("own-1.0-py3-none-any.whl"))
    index = PackageIndex("tuna-pypi", f"{source.url}/simple/", retry=Retry(0))

    assert index.files("tool") == []
    assert elsewhere.seen == []
    assert [p.filename for p in index.files("own")] == ["own-1.0-py3-none-any.whl"]  # its own origin: followed
