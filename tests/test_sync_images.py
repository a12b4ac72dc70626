"""The image engine end to end against real docker-registry servers, checked with skopeo."""

import json

import pytest
from regsync.kinds.image.client import RegistryClient
from tests.fixtures.policies import audit_records, run_cli, write_policy
from tests.fixtures.oci_layout import digest_of, inspect_raw, seed, write_image

TAG = "2.9-cuda11.8-ubuntu20.04"


def policy_file(tmp_path, source, target, src_repo, dst_repo, tags, extra="", name="policy.yaml", dst_auth=""):
    return write_policy(tmp_path, source.url, target.url, src_repo, dst_repo, tags, dst_options=dst_auth,
                        rule_extra=extra, name=name)


run = run_cli


def audit_events(tmp_path):
    return audit_records(tmp_path / "audit.jsonl")


@pytest.fixture
def seeded(registry, unique_repo, oci_dir):
    """A two-arch pytorch/cuda-like image with a shared base layer on the source registry."""
    info = write_image(oci_dir, TAG, shared_base=b"base" * 1000, env=["CUDA_VERSION=11.8.0"])
    seed(registry, unique_repo, TAG, oci_dir)
    return info


def test_plan_is_read_only_then_sync_copies_exactly_and_resync_writes_nothing(
        tmp_path, registry, registry2, unique_repo, seeded):
    policy = policy_file(tmp_path, registry, registry2, unique_repo, unique_repo, {"include": [TAG]})
    mark = registry2.mark()
    planned = run("plan", "-p", policy, "--json", "--detailed-exitcode")
    assert planned.exit_code == 4, planned.output
    plan = json.loads(planned.output)
    [item] = plan["items"]
    assert (item["action"], item["digest"]) == ("copy", seeded.index_digest)
    assert item["blobs_missing"] > 0 and item["bytes"] > 0
    assert registry2.writes_since(mark) == []

    synced = run("sync", "-p", policy)
    assert synced.exit_code == 0, synced.output
    raw = inspect_raw(registry2, f"{unique_repo}:{TAG}")
    assert digest_of(raw) == seeded.index_digest
    for platform_digest in seeded.manifest_digests.values():
        assert digest_of(inspect_raw(registry2, f"{unique_repo}@{platform_digest}")) == platform_digest
    events = [e["event"] for e in audit_events(tmp_path)]
    assert events == ["verified", "pushed"]

    mark = registry2.mark()
    again = run("sync", "-p", policy)
    assert again.exit_code == 0, again.output
    assert registry2.writes_since(mark) == []
    assert audit_events(tmp_path)[-1]["event"] == "skipped"
    nothing = run("plan", "-p", policy, "--detailed-exitcode")
    assert nothing.exit_code == 0


def test_a_cold_plan_lists_the_target_once_instead_of_asking_tag_by_tag(tmp_path, registry, registry2, unique_repo,
                                                                       seeded):
    policy = policy_file(tmp_path, registry, registry2, unique_repo, unique_repo, {"include": [TAG]})
    source_mark, target_mark = registry.mark(), registry2.mark()
    assert run("plan", "-p", policy, "--detailed-exitcode").exit_code == 4
    target = registry2.requests_since(target_mark)
    assert [m for m, uri in target if "/tags/list" in uri] == ["GET"]
    assert not [uri for m, uri in target if "/manifests/" in uri]  # no HEAD per tag on an empty target
    source = registry.requests_since(source_mark)
    # the root manifest is fetched once by tag (no HEAD first), its children once by digest
    assert [m for m, uri in source if uri.split("?")[0].endswith(f"/manifests/{TAG}")] == ["GET"]
    assert not [uri for m, uri in source if m == "HEAD" and "/manifests/" in uri]


def test_children_before_parents_and_tag_last(tmp_path, registry, registry2, unique_repo, seeded):
    policy = policy_file(tmp_path, registry, registry2, unique_repo, unique_repo, {"include": [TAG]})
    mark = registry2.mark()
    assert run("sync", "-p", policy).exit_code == 0
    writes = [uri for method, uri in registry2.writes_since(mark) if method == "PUT"]
    manifest_puts = [uri for uri in writes if "/manifests/" in uri]
    blob_puts = [i for i, uri in enumerate(writes) if "/blobs/uploads/" in uri]
    assert manifest_puts[-1].endswith(f"/manifests/{TAG}")
    assert all(uri.split("/manifests/")[1].startswith("sha256:") for uri in manifest_puts[:-1])
    assert max(blob_puts) < writes.index(manifest_puts[0])


def test_saved_plan_applies_exactly_after_source_moved(tmp_path, registry, registry2, unique_repo, seeded, oci_dir):
    policy = policy_file(tmp_path, registry, registry2, unique_repo, unique_repo, {"include": [TAG]})
    plan_path = tmp_path / "plan.json"
    assert run("plan", "-p", policy, "-o", plan_path).exit_code == 0
    moved = write_image(tmp_path / "moved", TAG, seed=99)
    seed(registry, unique_repo, TAG, tmp_path / "moved")
    assert digest_of(inspect_raw(registry, f"{unique_repo}:{TAG}")) == moved.index_digest

    applied = run("sync", "-p", policy, "--plan", plan_path)
    assert applied.exit_code == 0, applied.output
    assert digest_of(inspect_raw(registry2, f"{unique_repo}:{TAG}")) == seeded.index_digest

    other = policy_file(tmp_path, registry, registry2, unique_repo, unique_repo + "-x", {"include": [TAG]},
                        name="other.yaml")
    refused = run("sync", "-p", other, "--plan", plan_path)
    assert refused.exit_code == 2 and "another policy" in refused.output


def test_a_saved_plan_applied_twice_is_a_no_op_the_second_time(tmp_path, registry, registry2, unique_repo, seeded):
    """Issue 21, item 2: a cron retry or a second operator applies the same plan.json again."""
    extra = "    platforms: [linux/amd64]\n"  # the filtered index too: its digest is made by regsync
    policy = policy_file(tmp_path, registry, registry2, unique_repo, unique_repo, {"include": [TAG]}, extra)
    plan_path = tmp_path / "plan.json"
    assert run("plan", "-p", policy, "-o", plan_path).exit_code == 0
    first = run("sync", "-p", policy, "--plan", plan_path)
    assert first.exit_code == 0, first.output
    verified, pushed = audit_events(tmp_path)
    assert (verified["event"], pushed["event"]) == ("verified", "pushed") and pushed["artifact"]["size"] > 0

    source_mark, target_mark = registry.mark(), registry2.mark()
    again = run("sync", "-p", policy, "--plan", plan_path)
    assert again.exit_code == 0, again.output
    assert registry.requests_since(source_mark) == []     # nothing fetched, not even a manifest
    assert registry2.writes_since(target_mark) == []
    [unchanged] = audit_events(tmp_path)[2:]
    assert unchanged["event"] == "skipped", unchanged
    assert unchanged["artifact"]["digest"] == pushed["artifact"]["digest"]
    assert "already on the target" in unchanged["reason"]
    assert "0 pushed, 1 unchanged" in again.output, again.output


def test_stale_plan_is_refused_when_target_moved(tmp_path, registry, registry2, unique_repo, seeded):
    policy = policy_file(tmp_path, registry, registry2, unique_repo, unique_repo, {"include": [TAG]})
    plan_path = tmp_path / "plan.json"
    assert run("plan", "-p", policy, "-o", plan_path).exit_code == 0
    other = write_image(tmp_path / "other", TAG, seed=7)
    seed(registry2, unique_repo, TAG, tmp_path / "other")
    stale = run("sync", "-p", policy, "--plan", plan_path)
    assert stale.exit_code == 2 and "stale" in stale.output
    assert digest_of(inspect_raw(registry2, f"{unique_repo}:{TAG}")) == other.index_digest


def test_update_shows_old_digest_and_platform_filter_records_both(tmp_path, registry, registry2, unique_repo,
                                                                    seeded):
    extra = "    platforms: [linux/amd64]\n"
    policy = policy_file(tmp_path, registry, registry2, unique_repo, unique_repo, {"include": [TAG]}, extra)
    assert run("sync", "-p", policy).exit_code == 0
    index = json.loads(inspect_raw(registry2, f"{unique_repo}:{TAG}"))
    assert [m["platform"]["architecture"] for m in index["manifests"]] == ["amd64"]
    pushed = [e for e in audit_events(tmp_path) if e["event"] == "pushed"][0]
    assert pushed["artifact"]["source_digest"] == seeded.index_digest
    assert pushed["artifact"]["digest"] == digest_of(inspect_raw(registry2, f"{unique_repo}:{TAG}"))

    full = policy_file(tmp_path, registry, registry2, unique_repo, unique_repo, {"include": [TAG]}, name="full.yaml")
    plan = json.loads(run("plan", "-p", full, "--json").output)
    [item] = plan["items"]
    assert item["action"] == "update" and item["target_before"] == pushed["artifact"]["digest"]


def test_tag_filters_select_from_a_real_listing(tmp_path, registry, registry2, unique_repo, oci_dir):
    tags = ["2.9.0", "v2.9.1", "2.10.0", "3.0.0", "2.9-cuda11.8-ubuntu20.04", "2.9-cuda12.1-rc1"]
    write_image(oci_dir, "x", platforms=(("linux", "amd64"),))
    for tag in tags:
        seed(registry, unique_repo, tag, oci_dir, layout_tag="x")
    selection = {"include": ["semver:>=2.9,<3", "glob:2.9-cuda*"], "exclude": ["glob:*-rc*"], "latest": 2}
    policy = policy_file(tmp_path, registry, registry2, unique_repo, unique_repo, selection)
    plan = json.loads(run("plan", "-p", policy, "--json").stdout)
    # latest: 2 orders by version among the version-like tags; the cuda tag beside them no longer
    # switches the rule to creation-time order
    assert sorted(i["source"].rsplit(":", 1)[1] for i in plan["items"]) == ["2.10.0", "v2.9.1"]
    selection.pop("latest")
    policy = policy_file(tmp_path, registry, registry2, unique_repo, unique_repo, selection, name="p2.yaml")
    plan = json.loads(run("plan", "-p", policy, "--json").output)
    assert sorted(i["source"].rsplit(":", 1)[1] for i in plan["items"]) == sorted(
        ["2.9.0", "v2.9.1", "2.10.0", "2.9-cuda11.8-ubuntu20.04"])


def test_a_rule_that_selects_nothing_says_so(tmp_path, registry, registry2, unique_repo, oci_dir):
    write_image(oci_dir, "x", platforms=(("linux", "amd64"),))
    for tag in ("3.10.14", "3.11.9", "3.12.4"):
        seed(registry, unique_repo, tag, oci_dir, layout_tag="x")
    policy = policy_file(tmp_path, registry, registry2, unique_repo, unique_repo, {"include": ["glob:4.*"]})
    result = run("plan", "-p", policy)
    assert result.exit_code == 0, result.output
    assert f"src/{unique_repo}: 0 of 3 tags matched [glob:4.*]" in result.stderr


class PaginatingFront:
    """distribution 2.8 ignores `n` on tag lists (pagination arrived in 3.0; Harbor and Docker Hub do
    paginate), so this loopback front pages the real registry's list with RFC 5988 Link headers."""

    def __init__(self, registry, page):
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
        from urllib.parse import parse_qs, urlsplit

        import requests

        front = self
        self.requests = []

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                url = urlsplit(self.path)
                front.requests.append(self.path)
                if url.path == "/v2/":
                    return self._send(200, b"{}")
                repo = url.path[len("/v2/"):-len("/tags/list")]
                tags = sorted(requests.get(f"{registry.url}/v2/{repo}/tags/list", timeout=5).json()["tags"])
                last = parse_qs(url.query).get("last", [""])[0]
                rest = [t for t in tags if t > last]
                chunk = rest[:page]
                headers = {}
                if len(rest) > page:
                    headers["Link"] = f'</v2/{repo}/tags/list?n={page}&last={chunk[-1]}>; rel="next"'
                self._send(200, json.dumps({"name": repo, "tags": chunk}).encode(), headers)

            def _send(self, status, body, headers=None):
                self.send_response(status)
                for key, value in (headers or {}).items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


def test_tag_pagination_beyond_one_page(registry, unique_repo, oci_dir):
    write_image(oci_dir, "x", platforms=(("linux", "amd64"),))
    names = [f"1.{i}" for i in range(7)]
    for tag in names:
        seed(registry, unique_repo, tag, oci_dir, layout_tag="x")
    front = PaginatingFront(registry, page=2)
    try:
        client = RegistryClient("src", front.url, tag_page_size=2)
        assert sorted(client.list_tags(unique_repo)) == sorted(names)
        assert len([r for r in front.requests if "/tags/list" in r]) == 4
    finally:
        front.server.shutdown()


def test_missing_tag_and_unreachable_registry_are_one_clear_line(tmp_path, registry, registry2, unique_repo, seeded):
    policy = policy_file(tmp_path, registry, registry2, unique_repo, unique_repo, {"include": ["no-such-tag"]})
    result = run("sync", "-p", policy)
    assert result.exit_code == 1 and "no-such-tag" in result.output and "not found" in result.output
    dead = policy.read_text().replace(registry.url, "http://127.0.0.1:9")
    policy.write_text(dead)
    result = run("plan", "-p", policy)
    assert result.exit_code == 1 and "cannot connect" in result.output


def blob_upload_puts(registry, mark, digest):
    return [uri for method, uri in registry.writes_since(mark) if method == "PUT" and f"digest={digest}" in uri]


def test_large_blobs_go_up_in_patch_chunks(tmp_path, registry, registry2, unique_repo, oci_dir):
    info = write_image(oci_dir, TAG, platforms=(("linux", "amd64"),), layer_size=3 * 1024 * 1024)
    seed(registry, unique_repo, TAG, oci_dir)
    policy = policy_file(tmp_path, registry, registry2, unique_repo, unique_repo, {"include": [TAG]},
                         dst_auth=", upload: {monolithic_max: 1MiB, chunk_size: 1MiB}")
    mark = registry2.mark()
    assert run("sync", "-p", policy).exit_code == 0
    patches = [uri for method, uri in registry2.writes_since(mark) if method == "PATCH"]
    assert len(patches) >= 3  # the ~3 MiB layer in 1 MiB chunks
    assert digest_of(inspect_raw(registry2, f"{unique_repo}:{TAG}")) == info.index_digest


def test_shared_blobs_copied_once_and_mounted_across_repositories(tmp_path, registry, registry2, unique_repo,
                                                                    oci_dir):
    base = b"shared-cuda-base" * 4096
    first = write_image(oci_dir, "a", shared_base=base, seed=1)
    write_image(oci_dir, "b", shared_base=base, seed=2)
    seed(registry, unique_repo, "a", oci_dir)
    seed(registry, unique_repo, "b", oci_dir)
    base_digest = first.layer_digests["linux/amd64"][0]
    extra = f"""\
  - from: src/{unique_repo}
    to: dst/{unique_repo}-mirror
    tags: {{include: [a]}}
"""
    policy = policy_file(tmp_path, registry, registry2, unique_repo, unique_repo, {"include": ["a", "b"]}, extra)
    mark = registry2.mark()
    assert run("sync", "-p", policy, "--jobs", "4").exit_code == 0
    # Four tags x two platforms reference the base layer; its bytes travel once, the other repo mounts it.
    assert len(blob_upload_puts(registry2, mark, base_digest)) == 1
    mounts = [uri for method, uri in registry2.writes_since(mark) if method == "POST" and "mount=" in uri]
    assert any(f"mount={base_digest}" in uri for uri in mounts)


def test_a_new_target_repository_is_not_asked_blob_by_blob(tmp_path, registry, registry2, unique_repo, oci_dir):
    """Issue 16 (P2): the run's one tag listing found no such repository on the target, so no
    small blob can be there: no HEAD per blob at plan or apply time, 4 requests fewer per tag."""
    infos = [write_image(oci_dir, tag, shared_base=b"base" * 1000, seed=n) for n, tag in enumerate(["a", "b"])]
    for tag in ("a", "b"):
        seed(registry, unique_repo, tag, oci_dir)
    policy = policy_file(tmp_path, registry, registry2, unique_repo, unique_repo, {"include": ["a", "b"]})
    mark = registry2.mark()
    assert run("sync", "-p", policy).exit_code == 0
    target = registry2.requests_since(mark)
    assert not [uri for method, uri in target if method == "HEAD" and "/blobs/" in uri]
    for tag, info in zip(("a", "b"), infos):  # and every byte is there, verified by the registry's digest check
        assert digest_of(inspect_raw(registry2, f"{unique_repo}:{tag}")) == info.index_digest
    base = infos[0].layer_digests["linux/amd64"][0]
    assert len(blob_upload_puts(registry2, mark, base)) == 1  # shared within the run: sent once


def test_an_existing_target_repository_is_still_asked_so_its_blobs_are_not_sent_again(
        tmp_path, registry, registry2, unique_repo, oci_dir):
    first = write_image(oci_dir, "a", shared_base=b"base" * 1000, seed=1)
    write_image(oci_dir, "b", shared_base=b"base" * 1000, seed=2)
    seed(registry, unique_repo, "a", oci_dir)
    seed(registry, unique_repo, "b", oci_dir)
    assert run("sync", "-p", policy_file(tmp_path, registry, registry2, unique_repo, unique_repo,
                                         {"include": ["a"]})).exit_code == 0
    mark = registry2.mark()
    assert run("sync", "-p", policy_file(tmp_path, registry, registry2, unique_repo, unique_repo,
                                         {"include": ["a", "b"]}, name="both.yaml")).exit_code == 0
    base = first.layer_digests["linux/amd64"][0]
    assert blob_upload_puts(registry2, mark, base) == []
    assert [uri for method, uri in registry2.requests_since(mark) if method == "HEAD" and base in uri]
