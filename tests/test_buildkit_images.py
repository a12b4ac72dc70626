"""Images as the mirrors actually serve them (issue 21, item 1): BuildKit indexes with attestation
manifests, OCI artifacts pushed by ORAS, and an index of indexes, against real docker-registry
servers, checked with skopeo.

The BuildKit index is written by tests/fixtures/buildkit.py, following moby/buildkit's
exporter/containerimage/writer.go (commitAttestationsManifest, Commit) and attestations.go.
"""

import json

from tests.fixtures.buildkit import REFERENCE_DIGEST, SLSA_V02, SPDX, write_buildkit_image
from tests.fixtures.cosign import push_blob, push_manifest
from tests.fixtures.oci_layout import OCI_INDEX, digest_of, inspect_raw, seed, write_image
from tests.fixtures.policies import audit_records, run_cli, write_policy

TAG = "1.0"
SOURCE_LABEL = {"org.opencontainers.image.source": "https://github.com/example/app"}
GATES = ("    gates: {require_labels: {org.opencontainers.image.source: \"*\"}, max_size: 1MiB,\n"
         "            platforms_required: [linux/amd64, linux/arm64]}\n")


def _policy(tmp_path, registry, registry2, repo, extra="", tag=TAG):
    return write_policy(tmp_path, registry.url, registry2.url, repo, repo, [tag], rule_extra=extra)


def _buildkit(registry, repo, oci_dir):
    built = write_buildkit_image(oci_dir, TAG, labels=SOURCE_LABEL)
    seed(registry, repo, TAG, oci_dir)
    assert digest_of(inspect_raw(registry, f"{repo}:{TAG}")) == built.index_digest  # pushed byte for byte
    return built


def test_gates_judge_the_images_of_a_buildkit_index_and_its_attestations_travel_unchanged(
        tmp_path, registry, registry2, unique_repo, oci_dir):
    built = _buildkit(registry, unique_repo, oci_dir)
    policy = _policy(tmp_path, registry, registry2, unique_repo, GATES)
    planned = run_cli("plan", "-p", policy, "--json")
    assert planned.exit_code == 0, planned.output
    [item] = json.loads(planned.output)["items"]
    assert item["action"] == "copy", item["reason"]   # main: "unknown/unknown has no label ..."
    gates = item["verification"]["gates"]
    assert gates["platforms"] == ["linux/amd64", "linux/arm64"]
    assert set(gates["max_size"]) == {"linux/amd64", "linux/arm64"}

    synced = run_cli("sync", "-p", policy)
    assert synced.exit_code == 0, synced.output
    assert digest_of(inspect_raw(registry2, f"{unique_repo}:{TAG}")) == built.index_digest
    for digest in [*built.images.values(), *built.attestations.values()]:
        assert digest_of(inspect_raw(registry2, f"{unique_repo}@{digest}")) == digest
    verified, pushed = audit_records(tmp_path / "audit.jsonl")
    carried = pushed["verification"]["buildkit_attestations"]
    assert carried["signed"] is False and "unsigned" in carried["note"]
    assert carried["predicate_types"] == {"linux/amd64": [SLSA_V02, SPDX], "linux/arm64": [SLSA_V02, SPDX]}
    assert verified["verification"]["buildkit_attestations"] == carried
    assert "attestations" not in pushed["verification"]   # never counted as a verified attestation


def test_platform_filter_keeps_the_attestation_manifests_of_the_kept_images(
        tmp_path, registry, registry2, unique_repo, oci_dir):
    built = _buildkit(registry, unique_repo, oci_dir)
    policy = _policy(tmp_path, registry, registry2, unique_repo, "    platforms: [linux/amd64]\n" + GATES.replace(
        "linux/amd64, linux/arm64", "linux/amd64"))
    planned = run_cli("plan", "-p", policy, "--json")
    assert planned.exit_code == 0, planned.output
    [item] = json.loads(planned.output)["items"]
    assert item["action"] == "copy" and item["source_digest"] == built.index_digest
    assert "keeps the 1 attestation manifest (SBOM, provenance)" in item["reason"]
    assert item["verification"]["buildkit_attestations"]["predicate_types"] == {"linux/amd64": [SLSA_V02, SPDX]}

    synced = run_cli("sync", "-p", policy)
    assert synced.exit_code == 0, synced.output
    index = json.loads(inspect_raw(registry2, f"{unique_repo}:{TAG}"))
    assert digest_of(inspect_raw(registry2, f"{unique_repo}:{TAG}")) == item["digest"]
    kept = [(entry["digest"], entry.get("annotations", {}).get(REFERENCE_DIGEST)) for entry in index["manifests"]]
    amd64 = built.images["linux/amd64"]
    assert kept == [(amd64, None), (built.attestations["linux/amd64"], amd64)]
    # the kept attestation manifest is the source's, byte for byte
    attestation = built.attestations["linux/amd64"]
    assert digest_of(inspect_raw(registry2, f"{unique_repo}@{attestation}")) == attestation


def test_a_platform_missing_from_a_buildkit_index_names_only_its_images(
        tmp_path, registry, registry2, unique_repo, oci_dir):
    _buildkit(registry, unique_repo, oci_dir)
    policy = _policy(tmp_path, registry, registry2, unique_repo, "    platforms: [linux/s390x]\n")
    planned = run_cli("plan", "-p", policy, "--json")
    [item] = json.loads(planned.output)["items"]
    assert item["action"] == "refuse"
    assert item["reason"].endswith("(index has: linux/amd64, linux/arm64)"), item["reason"]


# ORAS (oras-project/oras-go pack.go): `oras push` packs an image manifest with artifactType and the
# empty config (PackManifestTypeImageV1_1_RC4), or with --image-spec v1.0 the config media type
# application/vnd.unknown.config.v1+json (packManifestV1_0, MediaTypeUnknownConfig); json.Marshal'ed.
EMPTY_JSON = "application/vnd.oci.empty.v1+json"


def _oras_push(registry, repo: str, tag: str, v1_0: bool) -> str:
    layer = push_blob(registry.url, repo, b"model weights, not an image\n")
    layer.update(mediaType="application/vnd.oci.image.layer.v1.tar",
                 annotations={"org.opencontainers.image.title": "weights.bin"})
    created = {"org.opencontainers.image.created": "2025-06-01T12:00:00Z"}
    if v1_0:
        config = {"mediaType": "application/vnd.unknown.config.v1+json", **push_blob(registry.url, repo, b"{}")}
        doc = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json", "config": config,
               "layers": [{k: layer[k] for k in ("mediaType", "digest", "size", "annotations")}],
               "annotations": created}
    else:
        config = {"mediaType": EMPTY_JSON, **push_blob(registry.url, repo, b"{}"), "data": "e30="}
        doc = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
               "artifactType": "application/vnd.example.model.v1",
               "config": {k: config[k] for k in ("mediaType", "digest", "size", "data")},
               "layers": [{k: layer[k] for k in ("mediaType", "digest", "size", "annotations")}],
               "annotations": created}
    return push_manifest(registry.url, repo, tag, doc)


def test_oras_artifacts_copy_with_their_digest(tmp_path, registry, registry2, unique_repo):
    pushed = {tag: _oras_push(registry, unique_repo, tag, v1_0=tag == "v1.0") for tag in ("v1.1", "v1.0")}
    policy = write_policy(tmp_path, registry.url, registry2.url, unique_repo, unique_repo, list(pushed))
    synced = run_cli("sync", "-p", policy)
    assert synced.exit_code == 0, synced.output
    for tag, digest in pushed.items():
        assert digest_of(inspect_raw(registry2, f"{unique_repo}:{tag}")) == digest
    assert run_cli("plan", "-p", policy, "--detailed-exitcode").exit_code == 0


def test_an_index_of_indexes_copies_unchanged_and_its_images_are_judged(
        tmp_path, registry, registry2, unique_repo, oci_dir):
    inner = write_image(oci_dir, "inner", labels=SOURCE_LABEL)
    built = write_buildkit_image(oci_dir, "bk", labels=SOURCE_LABEL, platforms=(("linux", "s390x"),), seed=3)
    seed(registry, unique_repo, "inner", oci_dir)
    seed(registry, unique_repo, "bk", oci_dir)
    children = [{"mediaType": OCI_INDEX, "digest": digest,
                 "size": len(inspect_raw(registry, f"{unique_repo}@{digest}"))}
                for digest in (inner.index_digest, built.index_digest)]
    # skopeo refuses an index of indexes ("Unexpectedly received a manifest list"): pushed as is
    outer = push_manifest(registry.url, unique_repo, TAG, {"schemaVersion": 2, "mediaType": OCI_INDEX,
                                                           "manifests": children}, OCI_INDEX)
    assert digest_of(inspect_raw(registry, f"{unique_repo}:{TAG}")) == outer

    policy = _policy(tmp_path, registry, registry2, unique_repo,
                     GATES.replace("linux/amd64, linux/arm64", "linux/amd64, linux/arm64, linux/s390x"))
    planned = run_cli("plan", "-p", policy, "--json")
    [item] = json.loads(planned.output)["items"]
    assert item["action"] == "copy", item["reason"]
    assert item["verification"]["gates"]["platforms"] == ["linux/amd64", "linux/arm64", "linux/s390x"]
    assert run_cli("sync", "-p", policy).exit_code == 0
    assert digest_of(inspect_raw(registry2, f"{unique_repo}:{TAG}")) == outer
    for digest in [inner.index_digest, built.index_digest, *inner.manifest_digests.values(),
                   *built.attestations.values()]:
        assert digest_of(inspect_raw(registry2, f"{unique_repo}@{digest}")) == digest


def test_an_image_annotated_as_an_attestation_is_still_judged_by_the_gates(
        tmp_path, registry, registry2, unique_repo, oci_dir):
    """docker pull picks by platform alone: an annotation must not hide a runnable image."""
    plain = write_image(oci_dir, "plain", platforms=(("linux", "amd64"),))   # no labels
    seed(registry, unique_repo, "plain", oci_dir)
    image = plain.manifest_digests["linux/amd64"]
    size = len(inspect_raw(registry, f"{unique_repo}@{image}"))
    push_manifest(registry.url, unique_repo, TAG, {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [
        {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": image, "size": size,
         "annotations": {REFERENCE_DIGEST: image, "vnd.docker.reference.type": "attestation-manifest"},
         "platform": {"architecture": "amd64", "os": "linux"}}]}, OCI_INDEX)
    policy = _policy(tmp_path, registry, registry2, unique_repo, GATES.replace(", linux/arm64", ""))
    [item] = json.loads(run_cli("plan", "-p", policy, "--json").output)["items"]
    assert item["action"] == "refuse"
    assert item["reason"] == "gate require_labels: linux/amd64 has no label org.opencontainers.image.source"


def test_buildkit_attestations_are_no_substitute_for_require_attestations(
        tmp_path, registry, registry2, unique_repo, oci_dir):
    """Their SPDX and provenance layers carry the right predicate types, unsigned: refused all the same."""
    from tests.fixtures.cosign import make_key, write_public_key
    from tests.test_verify_signatures import write_policy as write_trust_policy

    _buildkit(registry, unique_repo, oci_dir)
    write_public_key(make_key("ecdsa"), tmp_path / "cosign.pub")
    policy = write_trust_policy(tmp_path, registry, registry2, unique_repo, unique_repo, {"include": [TAG]},
                                f"    verify:\n      require_attestations: [{{type: \"{SPDX}\", trust: [release]}}]\n")
    mark = registry2.mark()
    synced = run_cli("sync", "-p", policy)
    assert synced.exit_code == 3, synced.output
    [refused] = audit_records(tmp_path / "audit.jsonl")
    assert refused["event"] == "refused" and SPDX in refused["reason"], refused
    assert registry2.writes_since(mark) == []


def test_platforms_on_an_index_of_indexes_says_it_filters_a_top_level_index_only(
        tmp_path, registry, registry2, unique_repo, oci_dir):
    inner = write_image(oci_dir, "inner")
    seed(registry, unique_repo, "inner", oci_dir)
    size = len(inspect_raw(registry, f"{unique_repo}@{inner.index_digest}"))
    push_manifest(registry.url, unique_repo, TAG, {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [
        {"mediaType": OCI_INDEX, "digest": inner.index_digest, "size": size}]}, OCI_INDEX)
    policy = _policy(tmp_path, registry, registry2, unique_repo, "    platforms: [linux/amd64]\n")
    [item] = json.loads(run_cli("plan", "-p", policy, "--json").output)["items"]
    assert (item["action"], item["reason"]) == ("refuse", "no manifest for platforms linux/amd64 (index has: a "
                                                "nested index) (platforms: filters a top-level index only)")
