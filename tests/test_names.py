"""Names are checked against the distribution spec's grammar wherever they enter: a source's tag list,
a bundle's index.json, a saved plan and the policy. A tag like `2.9.1?x` must never become a URL
(its `?` would turn the rest into a query and land on `2.9.1`), nor a dot-segment tag another path.

The real registry refuses to store such tags, so a FaultProxy in front of it lies about the list.
"""

import hashlib
import json
import zlib

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from regsync.errors import PolicyError, VerificationError
from regsync.kinds.image.client import RegistryClient
from regsync.policy.names import is_digest, is_repository, is_tag
from tests.fixtures.policies import load_policy
from tests.fixtures.faultproxy import FaultProxy
from tests.fixtures.oci_layout import digest_of, inspect_raw, seed, write_image
from tests.fixtures.policies import audit_records, run_cli, write_policy

HOSTILE_TAGS = ["2.9.1?x", "x/../../other/repo/manifests/prod", "../../../victim/manifests/prod", "2.9%2F1",
                "2" * 129, "2.9.1#frag", "-2.9", ".2.9", "2.9 1", "2.9.1\n", "x[/]"]


@pytest.fixture
def proxy(registry):
    front = FaultProxy(registry.url)
    yield front
    front.stop()


def image(tmp_path, registry, repo, tag, n):
    info = write_image(tmp_path / f"layout-{n}", tag, platforms=(("linux", "amd64"),),
                       seed=zlib.crc32(f"{repo}{n}".encode()))
    seed(registry, repo, tag, tmp_path / f"layout-{n}")
    return info


def plan_items(tmp_path, policy) -> list[dict]:
    out = tmp_path / "plan.json"
    result = run_cli("plan", "-p", policy, "-o", out)
    assert result.exit_code == 0, result.output
    return json.loads(out.read_text())["items"]


# -- the grammar itself ------------------------------------------------------------------------------

@pytest.mark.parametrize("tag", ["latest", "2.9.1", "2.9-cuda11.8-ubuntu20.04", "_x", "A" * 128,
                                 "sha256-" + "a" * 64 + ".sig"])
def test_valid_tags(tag):
    assert is_tag(tag)


@pytest.mark.parametrize("tag", HOSTILE_TAGS + ["", "2.9.1/", "é", None, 7])
def test_invalid_tags(tag):
    assert not is_tag(tag)


@pytest.mark.parametrize("repo, ok", [("pytorch/cuda", True), ("a/b-c/d__e/f.g", True), ("a--b", True),
                                      ("Pytorch", False), ("a//b", False), ("../victim", False), ("a/", False),
                                      ("a/./b", False), ("a%2Fb", False), ("a_-b", False), ("a" * 256, False),
                                      ("", False)])
def test_repository_grammar(repo, ok):
    assert is_repository(repo) is ok


@pytest.mark.parametrize("digest, ok", [("sha256:" + "a" * 64, True), ("sha512:" + "b" * 128, True),
                                        ("multihash+base58:QmRZxt2b1FVZPNqd8hsiykDL3TdBDeTSPX9Kv46HmX4Gx8", True),
                                        ("sha256:../../x", False), ("sha256:a/b", False), ("sha256", False),
                                        ("SHA256:aa", False), ("sha256:a?b", False)])
def test_digest_grammar(digest, ok):
    assert is_digest(digest) is ok


# -- a source that lists hostile tags ----------------------------------------------------------------

def test_query_tag_beside_a_pinned_tag_cannot_overwrite_it(tmp_path, registry, registry2, proxy, unique_repo):
    pinned = image(tmp_path, registry, unique_repo, "2.9.1", 1)
    evil = image(tmp_path, registry, unique_repo, "other", 2)
    seed(registry2, unique_repo, "2.9.1", tmp_path / "layout-1")
    proxy.extra_tags[unique_repo] = ["2.9.1?x"]
    proxy.aliases[f"/v2/{unique_repo}/manifests/2.9.1?x"] = f"/v2/{unique_repo}/manifests/other"
    policy = write_policy(tmp_path, proxy.url, registry2.url, unique_repo,
                          tags={"include": ["glob:2.9*"], "pin": {"2.9.1": pinned.index_digest}})

    items = {item["source"].rpartition(":")[2]: item for item in plan_items(tmp_path, policy)}
    assert items["2.9.1"]["action"] == "skip"
    refused = items["2.9.1?x"]
    assert refused["action"] == "refuse" and refused["rule"] == "images[0]"
    assert "invalid tag name" in refused["reason"] and "2.9.1?x" in refused["reason"]

    result = run_cli("sync", "-p", policy)
    assert result.exit_code == 3, result.output
    assert digest_of(inspect_raw(registry2, f"{unique_repo}:2.9.1")) == pinned.index_digest != evil.index_digest
    [record] = [r for r in audit_records(tmp_path / "audit.jsonl") if r["event"] == "refused"]
    assert record["artifact"]["source"].endswith(":2.9.1?x") and "invalid tag name" in record["reason"]
    assert not [path for _, path, _ in proxy.log if "2.9.1?x" in path or "/manifests/other" in path]


def test_every_hostile_listed_tag_is_refused_in_the_plan_and_never_requested(tmp_path, registry, registry2, proxy,
                                                                             unique_repo):
    image(tmp_path, registry, unique_repo, "1.0", 1)
    proxy.extra_tags[unique_repo] = HOSTILE_TAGS
    policy = write_policy(tmp_path, proxy.url, registry2.url, unique_repo, tags=["glob:*"])

    items = plan_items(tmp_path, policy)
    assert [i["action"] for i in items if i["source"].endswith(":1.0")] == ["copy"]
    refused = [i for i in items if i["action"] == "refuse"]
    assert len(refused) == len(HOSTILE_TAGS)
    for item in refused:
        assert "invalid tag name" in item["reason"] and item["rule"] == "images[0]" and item["digest"] == ""
    assert any("'2.9.1\\n'" in i["reason"] for i in refused)  # shown escaped, never raw
    assert len(items) == len(HOSTILE_TAGS) + 1
    table = run_cli("plan", "-p", policy)  # a refused name is shown as listed, never read as rich markup
    assert table.exit_code == 0 and "x[/]" in table.output and "2.9.1?x" in table.output, table.output
    for _, path, _ in proxy.log:
        assert path == "/v2/" or path.startswith(f"/v2/{unique_repo}/"), path
        manifest = path.partition(f"/v2/{unique_repo}/manifests/")[2]
        assert manifest in ("", "1.0") or manifest.startswith("sha256:"), path


def test_a_tag_list_of_non_strings_fails_the_rule_without_a_crash(tmp_path, registry, registry2, proxy, unique_repo):
    image(tmp_path, registry, unique_repo, "1.0", 1)
    proxy.extra_tags[unique_repo] = [7, {"tag": "1.0"}]
    policy = write_policy(tmp_path, proxy.url, registry2.url, unique_repo, tags=["glob:*"])
    result = run_cli("plan", "-p", policy, "--json")
    assert result.exit_code == 1, result.output
    assert "tag list" in json.loads(result.stdout)["errors"][0]["reason"]


def test_client_never_builds_a_url_from_an_invalid_name(registry, proxy, unique_repo):
    client = RegistryClient("src", proxy.url)
    for call in (lambda: client.head_manifest(unique_repo, "2.9.1?x"),
                 lambda: client.get_manifest(unique_repo, "../../../victim/manifests/prod"),
                 lambda: client.blob_exists(unique_repo, "sha256:../../../victim/blobs/x"),
                 lambda: client.open_blob("../victim", "sha256:" + "a" * 64),
                 lambda: client.list_tags("t/../../victim")):
        with pytest.raises(VerificationError, match="invalid"):
            call()
    assert proxy.log == []


# -- saved plans and bundles: invalid names refuse the whole file (exit 2) ---------------------------

@pytest.mark.parametrize("field, value", [("source", "src/{repo}:2.9.1?x"), ("target", "dst/{repo}:2.9.1?x"),
                                          ("target", "dst/../victim:1.0"), ("target", "dst/{repo}:../../v"),
                                          ("digest", "sha256:../../x"), ("source_digest", "sha256:a/../b")])
def test_a_plan_edited_to_hold_an_invalid_name_is_refused(tmp_path, registry, registry2, unique_repo, field, value):
    image(tmp_path, registry, unique_repo, "1.0", 1)
    policy = write_policy(tmp_path, registry.url, registry2.url, unique_repo, tags=["1.0"])
    out = tmp_path / "plan.json"
    assert run_cli("plan", "-p", policy, "-o", out).exit_code == 0
    plan = json.loads(out.read_text())
    plan["items"][0][field] = value.format(repo=unique_repo)
    out.write_text(json.dumps(plan))
    mark = registry2.log_path.stat().st_size

    result = run_cli("sync", "-p", policy, "--plan", out)
    assert result.exit_code == 2, result.output
    assert "invalid" in result.output and value.format(repo=unique_repo).rpartition(":")[2][:6] in result.output
    assert registry2.writes_since(mark) == []


def test_a_bundle_whose_index_names_an_invalid_tag_is_refused(tmp_path, registry, registry2, unique_repo):
    image(tmp_path, registry, unique_repo, "2.9.1", 1)
    policy = write_policy(tmp_path, registry.url, registry2.url, unique_repo, tags=["glob:2.9*"])
    bundle = tmp_path / "bundle"
    assert run_cli("export", "-p", policy, "-o", bundle).exit_code == 0
    for bad in (f"src/{unique_repo}:2.9.1?x", f"src/../{unique_repo}:2.9.1", f"src/{unique_repo}"):
        index = json.loads((bundle / "index.json").read_text())
        entry = dict(index["manifests"][0], annotations={"org.opencontainers.image.ref.name": bad})
        raw = json.dumps(dict(index, manifests=index["manifests"][:1] + [entry])).encode()
        (bundle / "index.json.edited").write_bytes(raw)
        sums = (bundle / "SHA256SUMS").read_text().splitlines()
        sums = [f"{hashlib.sha256(raw).hexdigest()}  index.json" if line.endswith("  index.json") else line
                for line in sums]
        # the attacker recomputes SHA256SUMS: an unsigned bundle vouches only for itself
        (bundle / "index.json.edited").replace(bundle / "index.json")
        (bundle / "SHA256SUMS").write_text("\n".join(sums) + "\n")

        result = run_cli("import", bundle, "-p", policy)
        assert result.exit_code == 2, result.output
        assert "index.json" in result.output and bad in result.output and "invalid" in result.output


# -- the policy: a bad literal is a policy error with its line ---------------------------------------

POLICY = """\
version: 1
registries:
  src: {url: "http://127.0.0.1:5000"}
  dst: {url: "http://127.0.0.1:5001"}
images:
  - from: src/pytorch/cuda
    to: dst/ai/cuda
    tags:
      include: ["glob:2.9-*", "2.9.1"]
      exclude: ["glob:*-rc*"]
      pin: {"2.9.1": "sha256:%s"}
""" % ("0" * 64)


@pytest.mark.parametrize("old, new, line", [
    ('"2.9.1"]', '"2.9.1?x"]', 9), ('"glob:*-rc*"', '"2.9/../x"', 10),
    ('{"2.9.1":', '{"2.9.1?x":', 11), ("from: src/pytorch/cuda", "from: src/PyTorch/cuda", 6),
    ("to: dst/ai/cuda", "to: dst/ai/../cuda", 7)])
def test_an_invalid_name_in_the_policy_is_a_policy_error_with_its_line(tmp_path, old, new, line):
    path = tmp_path / "policy.yaml"
    path.write_text(POLICY.replace(old, new))
    with pytest.raises(PolicyError) as caught:
        load_policy(path, {})
    assert str(caught.value).startswith(f"{path}:{line}: ") and "invalid" in str(caught.value)
    result = run_cli("policy", "check", "-p", path)
    assert result.exit_code == 2 and f"{path}:{line}:" in result.output


def test_the_valid_policy_still_loads(tmp_path):
    path = tmp_path / "policy.yaml"
    path.write_text(POLICY)
    assert load_policy(path, {}).policy.images[0].tags.include == ["glob:2.9-*", "2.9.1"]


@pytest.mark.parametrize("ref", ["127.0.0.1:1/t/../victim:1.0", "127.0.0.1:1/t/x:2.9\u00e9", "127.0.0.1:1/T/x:1"])
def test_verify_refuses_an_invalid_name_before_any_request(tmp_path, ref):
    key = tmp_path / "cosign.pub"
    public = ec.generate_private_key(ec.SECP256R1()).public_key()
    key.write_bytes(public.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    result = run_cli("verify", ref, "--key", key)
    assert result.exit_code == 2 and "invalid" in result.output, result.output
