"""An https registry never moves regsync to plain http, and its credentials never cross in clear.

A real TLS registry (htpasswd auth, test CA) sits behind an https front (tests/fixtures/faultproxy)
that edits what the registry says (an upload Location, a tag-list Link, a bearer realm) or
redirects to `http://<the front's own host and port>/…`. That port answers plain http too and
records every request: in each case the run fails with a clear error (or, for a saved upload
session, starts afresh) and the plain listener sees nothing at all.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from regsync.errors import RegistryError
from regsync.kinds.image.auth import Credentials
from regsync.kinds.image.client import RegistryClient
from regsync.kinds.image.copy import BlobCopier
from regsync.kinds.image.manifest import Descriptor
from regsync.content.checkpoint import UploadCheckpoint
from regsync.content.reader import VerifyingReader
from tests.fixtures.faultproxy import FaultProxy

MIB = 1 << 20
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@pytest.fixture
def front_of(registry_tls):
    """An https front (the TLS registry's own certificate) for any upstream registry."""
    fronts = []

    def make(upstream=registry_tls):
        fronts.append(FaultProxy(upstream.url, tls=(registry_tls.root / "server.pem", registry_tls.root / "server.key"),
                                 ca_file=registry_tls.ca_file))
        return fronts[-1]
    yield make
    for front in fronts:
        front.stop()


def _client(front, registry_tls, **options) -> RegistryClient:
    return RegistryClient("dst", front.url, Credentials(registry_tls.username, registry_tls.password),
                          ca_file=registry_tls.ca_file, retries=0, **options)


def _refused(registry_tls, front, excinfo, what: str) -> None:
    assert front.plain == []  # not one request over plain http, so no credentials either
    message = str(excinfo.value)
    assert f"{what} points to http://{front.host}" in message and "refusing to leave https" in message
    assert registry_tls.password not in message


def test_an_upload_location_on_plain_http_is_refused(registry_tls, front_of, unique_repo):
    front = front_of()
    front.add(kind="edit", method="POST", path=r"/blobs/uploads/$", header="Location", old="https://",
              new="http://", times=5)
    client = _client(front, registry_tls)
    client.ping()  # the registry's 401 teaches Basic: from here on credentials go with every request
    data = b"a small blob"
    reader = VerifyingReader(io.BytesIO(data).read, _digest(data), len(data), "test")
    with pytest.raises(RegistryError) as excinfo:
        client.upload_blob(unique_repo, Descriptor("application/octet-stream", _digest(data), len(data)), reader)
    _refused(registry_tls, front, excinfo, "upload Location")


def test_a_tag_list_next_page_on_plain_http_is_refused(registry_tls, front_of, unique_repo):
    session = requests.Session()
    session.trust_env = False  # else REQUESTS_CA_BUNDLE replaces `verify`
    session.auth, session.verify = (registry_tls.username, registry_tls.password), str(registry_tls.ca_file)
    config = b"{}"
    location = session.post(f"{registry_tls.url}/v2/{unique_repo}/blobs/uploads/").headers["Location"]
    session.put(f"{location}&digest={_digest(config)}", data=config).raise_for_status()
    manifest = json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "layers": [], "config": {
        "mediaType": "application/vnd.oci.image.config.v1+json", "digest": _digest(config), "size": len(config)}})
    for tag in ("a", "b"):
        session.put(f"{registry_tls.url}/v2/{unique_repo}/manifests/{tag}", data=manifest,
                    headers={"Content-Type": OCI_MANIFEST}).raise_for_status()
    front = front_of()
    client = _client(front, registry_tls, tag_page_size=1)
    client.ping()
    # distribution 2.8 answers every tag in one page: the front adds the next-page link
    front.add(kind="edit", path=r"/tags/list", header="Link",
              new=f'<http://{front.host}/v2/{unique_repo}/tags/list?last=b&n=1>; rel="next"')
    with pytest.raises(RegistryError) as excinfo:
        client.list_tags(unique_repo)
    _refused(registry_tls, front, excinfo, "next page")


def test_a_redirect_to_plain_http_is_refused(registry_tls, front_of, unique_repo):
    """requests drops the Authorization header on https → http, but regsync's auth hook rides along
    on the redirected request and would answer the plain listener's 401 with the password."""
    front = front_of()
    client = _client(front, registry_tls)
    client.ping()
    digest = "sha256:" + "ab" * 32
    front.add(kind="serve", path=f"/blobs/{digest}", status=307, headers={"Location": f"http://{front.host}/elsewhere"})
    with pytest.raises(RegistryError) as excinfo:
        client.open_blob(unique_repo, digest)
    _refused(registry_tls, front, excinfo, "redirect")


def test_a_bearer_realm_on_plain_http_is_refused_for_an_https_registry(registry_tls, registry_token, front_of):
    front = front_of(registry_token)
    realm_origin = registry_token.token_server.url.rsplit("/", 1)[0]
    front.add(kind="edit", path=r"^/v2/$", header="WWW-Authenticate", old=realm_origin,
              new=f"http://{front.host}", times=5)
    client = RegistryClient("src", front.url, Credentials(registry_token.username, registry_token.password),
                            ca_file=registry_tls.ca_file, retries=0)
    with pytest.raises(RegistryError) as excinfo:
        client.ping()
    _refused(registry_token, front, excinfo, "bearer token realm")


def test_a_saved_upload_session_on_plain_http_is_never_contacted(registry, registry_tls, front_of, unique_repo,
                                                                  tmp_path, monkeypatch):
    """A checkpoint whose session URL is http:// for an https target (saved before the registry moved
    to https, or edited) means a fresh upload over https, not a request in clear text."""
    monkeypatch.setenv("REGSYNC_STATE_DIR", str(tmp_path / "state"))
    data = os.urandom(3 * MIB + 5)
    digest = _digest(data)
    location = requests.post(f"{registry.url}/v2/{unique_repo}/blobs/uploads/").headers["Location"]
    requests.put(f"{location}&digest={digest}", data=data).raise_for_status()
    blob = Descriptor("application/octet-stream", digest, len(data))
    front = front_of()
    dst = _client(front, registry_tls, monolithic_max=MIB, chunk_size=MIB)
    UploadCheckpoint(tmp_path / "state", f"{dst.host}/{unique_repo}", digest).save(
        f"http://{front.host}/v2/{unique_repo}/blobs/uploads/saved?_state=x", MIB)
    with ThreadPoolExecutor(2) as pool:
        copier = BlobCopier(pool)
        assert copier.copy(RegistryClient("src", registry.url), unique_repo, dst, unique_repo, blob).result(timeout=60) == "copied"
    assert copier.moved == len(data)  # started afresh
    assert front.plain == []
    assert RegistryClient("check", registry_tls.url, Credentials(registry_tls.username, registry_tls.password),
                          ca_file=registry_tls.ca_file).blob_exists(unique_repo, digest)


def test_default_ports_are_the_same_origin():
    from regsync.net.http import origin

    assert origin("https://Registry.example") == origin("https://registry.example:443/v2/") == "https://registry.example:443"
    assert origin("http://registry.example") != origin("https://registry.example")
    assert origin("https://registry.example:8443") != origin("https://registry.example")
    assert origin("https://user:secret@registry.example/") == "https://registry.example:443"
    assert origin("https://registry.example:port/") == ""


def test_index_credentials_stay_on_the_index_origin(registry_tls, front_of):
    """A package index's Basic credentials go to its own scheme, host and port: a file linked on the
    same host over plain http (as a page may link it) gets none."""
    from regsync.kinds.package.index import PackageIndex

    front = front_of()
    index = PackageIndex("pypi", f"{front.url}/simple/", Credentials("sync", "t0p-secret"), ca_file=registry_tls.ca_file)
    index.session.get(f"http://{front.host}/packages/x-1.0.tar.gz", timeout=10)
    assert [auth for _, _, auth in front.plain] == [None]
