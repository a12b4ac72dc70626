"""Every digest is verified with its own algorithm, never against the server's own announcement.

What distribution 2.8 does (probed, and relied on below): it stores blobs uploaded under a sha512
digest (and serves them by it), but it stores manifests by sha256 only (a PUT by a sha512 digest
answers DIGEST_INVALID; an index naming a sha512 child answers MANIFEST_BLOB_UNKNOWN). So sha512
*blobs* go through two real registries end to end, and a source whose manifests are addressed by
sha512 is a hostile front (tests/fixtures/faultproxy.py) over a real registry, serving bytes with
a Docker-Content-Digest header that agrees with whatever it sends.
"""

import hashlib
import json

import pytest
import requests

from regsync.errors import VerificationError
from regsync.content.reader import VerifyingReader
from tests.fixtures.cosign import OCI_CONFIG, OCI_INDEX, OCI_LAYER, OCI_MANIFEST, push_blob, push_image, push_manifest
from tests.fixtures.faultproxy import FaultProxy
from tests.test_verify_signatures import audit, by_tag, run, write_policy


def sha(algorithm: str, data: bytes) -> str:
    return f"{algorithm}:{hashlib.new(algorithm, data).hexdigest()}"


def raw_manifest(registry, repo: str, digest: str) -> bytes:
    response = requests.get(f"{registry.url}/v2/{repo}/manifests/{digest}", headers={"Accept": OCI_MANIFEST},
                            timeout=10)
    response.raise_for_status()
    return response.content


@pytest.fixture
def front(registry):
    proxy = FaultProxy(registry.url)
    yield proxy
    proxy.stop()


def serve(front, repo: str, reference: str, body: bytes, media_type: str, announced: str) -> None:
    front.add(kind="serve", path=f"/v2/{repo}/manifests/{reference}$", method="GET,HEAD", times=100, status=200,
              body=body, headers={"Content-Type": media_type, "Docker-Content-Digest": announced})


def serve_index(front, repo: str, tag: str, child: str, size: int) -> None:
    """An index by tag (and by its sha256) whose one child is addressed by `child`."""
    index = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [
        {"mediaType": OCI_MANIFEST, "digest": child, "size": size,
         "platform": {"os": "linux", "architecture": "amd64"}}]}).encode()
    for reference in (tag, sha("sha256", index)):
        serve(front, repo, reference, index, OCI_INDEX, sha("sha256", index))


def test_manifests_addressed_by_sha512_or_md5_are_checked_with_their_own_algorithm(
        tmp_path, registry, registry2, front, unique_repo):
    good_digest, _ = push_image(registry, unique_repo, "good", salt="sha512-good")
    evil_digest, _ = push_image(registry, unique_repo, "evil", salt="sha512-evil")
    good, evil = raw_manifest(registry, unique_repo, good_digest), raw_manifest(registry, unique_repo, evil_digest)
    good512 = sha("sha512", good)
    other512 = sha("sha512", good + b" ")  # no content has it: the right-child case is served under it
    md5 = sha("md5", good)

    # index-right: a sha512 child whose bytes match. index-wrong: other bytes, with a header that
    # agrees with them. index-md5: an algorithm nobody can verify. head-sha512: a tag whose HEAD
    # announces a sha512 digest, then other bytes by that digest.
    serve_index(front, unique_repo, "index-right", other512, len(good) + 1)
    serve(front, unique_repo, other512, good + b" ", OCI_MANIFEST, sha("sha256", good + b" "))
    serve_index(front, unique_repo, "index-wrong", good512, len(good))
    serve(front, unique_repo, good512, evil, OCI_MANIFEST, sha("sha256", evil))
    serve_index(front, unique_repo, "index-md5", md5, len(good))
    serve(front, unique_repo, md5, good, OCI_MANIFEST, sha("sha256", good))
    head512 = sha("sha512", good + b"\n")
    serve(front, unique_repo, "head-sha512", good + b"\n", OCI_MANIFEST, head512)
    serve(front, unique_repo, head512, evil, OCI_MANIFEST, sha("sha256", evil))
    push_image(registry2, unique_repo, "head-sha512", salt="already-there")  # the target has the tag: HEAD first

    tags = ["head-sha512", "index-md5", "index-right", "index-wrong"]
    policy = write_policy(tmp_path, front, registry2, unique_repo, unique_repo, {"include": tags})
    planned = json.loads(run("plan", "-p", policy, "--json").output)
    actions = {item["source"].rsplit(":", 1)[1]: (item["action"], item["reason"]) for item in planned["items"]}
    assert actions["index-right"] == ("copy", ""), actions
    assert actions["index-wrong"][0] == "refuse"
    assert actions["index-wrong"][1].endswith(f"manifest digest mismatch: content is {sha('sha512', evil)}, "
                                              f"expected {good512}")
    assert actions["head-sha512"][0] == "refuse"
    assert actions["head-sha512"][1].endswith(f"content is {sha('sha512', evil)}, expected {head512}")
    assert actions["index-md5"][0] == "refuse"
    assert actions["index-md5"][1].endswith(f"unsupported digest algorithm 'md5' in '{md5}'")

    result = run("sync", "-p", policy)
    refused = {tag: r["reason"] for tag, r in by_tag(audit(tmp_path, "refused")).items()}
    assert sorted(refused) == ["head-sha512", "index-md5", "index-wrong"]
    # distribution cannot store a manifest addressed by sha512: the verified child fails to push, clearly.
    failed = by_tag(audit(tmp_path, "failed"))
    assert result.exit_code == 1, result.output
    assert "does not accept a manifest addressed by sha512" in failed["index-right"]["reason"], failed
    for tag in ("index-wrong", "index-md5"):
        assert requests.head(f"{registry2.url}/v2/{unique_repo}/manifests/{tag}", timeout=10).status_code == 404
    alone = write_policy(tmp_path, front, registry2, unique_repo, unique_repo, {"include": ["index-md5"]})
    assert run("sync", "-p", alone).exit_code == 3  # a refusal, not a failure

    target_head = requests.head(f"{registry2.url}/v2/{unique_repo}/manifests/head-sha512",
                                headers={"Accept": OCI_MANIFEST}, timeout=10)
    assert target_head.headers["Docker-Content-Digest"] != evil_digest


def push_sha512_image(registry, repo: str, tag: str, layer: bytes) -> tuple[str, str]:
    """An image whose layer is uploaded and referenced by its sha512 (distribution stores it)."""
    start = requests.post(f"{registry.url}/v2/{repo}/blobs/uploads/", timeout=10)
    location = requests.compat.urljoin(start.url, start.headers["Location"])
    layer512 = sha("sha512", layer)
    requests.put(f"{location}&digest={layer512}", data=layer, timeout=10).raise_for_status()
    config = push_blob(registry.url, repo, json.dumps({"os": "linux", "architecture": "amd64", "salt": tag}).encode())
    doc = {"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": {"mediaType": OCI_CONFIG, **config},
           "layers": [{"mediaType": OCI_LAYER, "digest": layer512, "size": len(layer)}]}
    return push_manifest(registry.url, repo, tag, doc), layer512


def test_blobs_addressed_by_sha512_are_hashed_with_sha512(tmp_path, registry, registry2, unique_repo):
    good, good_layer = push_sha512_image(registry, unique_repo, "good", b"a sha512 layer " + unique_repo.encode())
    _, bad_layer = push_sha512_image(registry, unique_repo, "tampered", b"another sha512 layer " + unique_repo.encode())
    stored = registry.blob_path(sha("sha256", b"another sha512 layer " + unique_repo.encode()))
    stored.write_bytes(stored.read_bytes().replace(b"another", b"ANOTHER"))  # same length, other bytes

    policy = write_policy(tmp_path, registry, registry2, unique_repo, unique_repo, {"include": ["good", "tampered"]})
    result = run("sync", "-p", policy)
    assert result.exit_code == 3, result.output
    [refused] = audit(tmp_path, "refused")
    assert refused["artifact"]["source"].endswith(":tampered")
    assert "digest mismatch: content is sha512:" in refused["reason"] and bad_layer in refused["reason"]
    assert requests.head(f"{registry2.url}/v2/{unique_repo}/manifests/good", headers={"Accept": OCI_MANIFEST},
                         timeout=10).headers["Docker-Content-Digest"] == good
    copied = requests.get(f"{registry2.url}/v2/{unique_repo}/blobs/{good_layer}", timeout=10)
    assert sha("sha512", copied.content) == good_layer


@pytest.mark.parametrize("digest, reason", [
    ("md5:" + "0" * 32, "unsupported digest algorithm 'md5'"),
    ("sha512:" + "0" * 64, "malformed digest"),           # a sha256-length hex under sha512
    ("sha256:" + "A" * 64, "malformed digest"),
])
def test_a_stream_under_an_unknown_or_malformed_digest_is_refused_before_reading(digest, reason):
    reads = []
    with pytest.raises(VerificationError, match=reason):
        VerifyingReader(lambda n: reads.append(n) or b"", digest, 0, "blob")
    assert reads == []


def test_a_bundle_refuses_sha512_content_by_name(tmp_path, registry, registry2, unique_repo):
    """A bundle's blob store and SHA256SUMS are sha256-addressed: export refuses, and says why."""
    _, layer = push_sha512_image(registry, unique_repo, "v1", b"a sha512 layer for a bundle " + unique_repo.encode())
    policy = write_policy(tmp_path, registry, registry2, unique_repo, unique_repo, {"include": ["v1"]})
    result = run("export", "-p", policy, "-o", tmp_path / "bundle")
    assert result.exit_code == 3, result.output
    [refused] = audit(tmp_path, "refused")
    assert refused["reason"] == f"'{layer[:80]}' is not a sha256 digest (a bundle holds sha256-addressed content only)"
