"""What only a bundle can say, said on import (issues 21 and 22): whether it is news or a replay of an
older one (its export stream and sequence), what its export refused, and, unsigned, which of its
items verify without it. Real registries and a real conda channel on loopback; the sources are gone
before every import."""

import json
import time

import pytest
import requests

from tests.fixtures.conda import Pkg, make_channel, patch_record, serve
from tests.fixtures.cosign import make_key, sign, write_public_key
from tests.fixtures.oci_layout import digest_of, inspect_raw, seed, write_image
from tests.fixtures.policies import audit_records, run_cli, write_policy


@pytest.fixture(autouse=True)
def own_state_dir(tmp_path, monkeypatch):
    """The far side's record of imported bundles lives in the state dir: one per test."""
    monkeypatch.setenv("REGSYNC_STATE_DIR", str(tmp_path / "state"))


def records(tmp_path, event):
    return [r for r in audit_records(tmp_path / "audit.jsonl") if r["event"] == event]


def test_an_older_bundle_is_refused_after_a_newer_one_unless_the_operator_allows_it(tmp_path, registry, registry2,
                                                                                   unique_repo, oci_dir):
    """Issue 22, item 2: bundle A (stable = v1), the fix upstream (stable = v2), bundle B; import B,
    then A again: refused, exit 2, nothing touched; with --allow-rollback applied, audited, and each
    tag that moves back to an older image is named."""
    v1 = write_image(oci_dir, "stable", layer_size=5_000, seed=81).index_digest
    seed(registry, unique_repo, "stable", oci_dir)
    policy = write_policy(tmp_path, registry.url, registry2.url, unique_repo, tags=["stable"])
    assert run_cli("export", "-p", policy, "-o", tmp_path / "a").exit_code == 0
    v2 = write_image(oci_dir, "stable", layer_size=5_000, seed=82).index_digest
    seed(registry, unique_repo, "stable", oci_dir)
    assert run_cli("export", "-p", policy, "-o", tmp_path / "b").exit_code == 0
    a, b = (json.loads((tmp_path / name / "bundle.json").read_text())["stream"] for name in ("a", "b"))
    assert a["id"] == b["id"] and b["sequence"] > a["sequence"]

    assert run_cli("import", tmp_path / "b", "-p", policy).exit_code == 0
    assert digest_of(inspect_raw(registry2, f"{unique_repo}:stable")) == v2
    assert run_cli("import", tmp_path / "b", "-p", policy).exit_code == 0  # the last one again: a re-run

    replay = run_cli("import", tmp_path / "a", "-p", policy)
    assert replay.exit_code == 2, replay.output
    assert "older than the last one imported" in replay.output and "--allow-rollback" in replay.output
    assert digest_of(inspect_raw(registry2, f"{unique_repo}:stable")) == v2  # nothing touched
    [refused] = records(tmp_path, "refused")
    assert f"sequence {a['sequence']} of export stream" in refused["reason"] and "roll the target back" in refused["reason"]

    allowed = run_cli("import", tmp_path / "a", "-p", policy, "--allow-rollback")
    assert allowed.exit_code == 0, allowed.output
    assert digest_of(inspect_raw(registry2, f"{unique_repo}:stable")) == v1
    assert f"dst/{unique_repo}:stable moves back to {v1}" in allowed.output  # by the bundles' own records
    audited = [r for r in records(tmp_path, "verified") if (r["artifact"] or {}).get("bundle")]
    assert audited and "--allow-rollback" in audited[-1]["reason"]
    # A is now the last imported: B (newer) goes in again without ceremony
    assert run_cli("import", tmp_path / "b", "-p", policy).exit_code == 0
    assert digest_of(inspect_raw(registry2, f"{unique_repo}:stable")) == v2


def test_without_a_state_dir_import_stops_rather_than_forget(tmp_path, registry, registry2, unique_repo, oci_dir,
                                                             monkeypatch):
    write_image(oci_dir, "1.0", layer_size=5_000, seed=88)
    seed(registry, unique_repo, "1.0", oci_dir)
    policy = write_policy(tmp_path, registry.url, registry2.url, unique_repo, tags=["1.0"])
    assert run_cli("export", "-p", policy, "-o", tmp_path / "a").exit_code == 0
    monkeypatch.setenv("REGSYNC_STATE_DIR", "")
    result = run_cli("import", tmp_path / "a", "-p", policy)
    assert result.exit_code == 2 and "REGSYNC_STATE_DIR" in result.output, result.output
    assert requests.get(f"{registry2.url}/v2/{unique_repo}/tags/list", timeout=10).status_code == 404


def test_a_signed_bundles_sequence_cannot_be_edited(tmp_path, registry, registry2, unique_repo, oci_dir):
    from cryptography.hazmat.primitives import serialization

    write_image(oci_dir, "1.0", layer_size=5_000, seed=83)
    seed(registry, unique_repo, "1.0", oci_dir)
    key = make_key("ecdsa")
    (tmp_path / "bundle.key").write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    write_public_key(key, tmp_path / "bundle.pub")
    policy = write_policy(tmp_path, registry.url, registry2.url, unique_repo, tags=["1.0"])
    policy.write_text(policy.read_text().replace("images:", "trust:\n  signer: {cosign_key: bundle.pub}\n"
                                                 "bundle: {signature: required, trust: [signer]}\nimages:"))
    assert run_cli("export", "-p", policy, "-o", tmp_path / "a", "--sign-key", tmp_path / "bundle.key").exit_code == 0
    meta = json.loads((tmp_path / "a/bundle.json").read_text())
    meta["stream"]["sequence"] += 10**9  # "newer" than anything: the carrier's wish
    (tmp_path / "a/bundle.json").write_text(json.dumps(meta, indent=1))
    result = run_cli("import", tmp_path / "a", "-p", policy)
    assert result.exit_code == 3 and "not signed by a key of bundle.trust" in result.output, result.output


def test_a_replayed_bundle_cannot_undo_a_conda_hot_fix(tmp_path):
    channel = make_channel(tmp_path / "up", [Pkg("lib", "1.0", "0"), Pkg("tool", "1.0", "0", depends=("lib",))])
    served = serve(channel)
    policy = tmp_path / "policy.yaml"
    policy.write_text(f"""\
version: 1
channels:
  up: {{url: "{served.url}"}}
  internal: {{kind: directory, path: {tmp_path / 'mirror'}}}
conda:
  - {{from: up, to: internal, platforms: [linux-64], specs: [tool], dependencies: true}}
audit: {{path: audit.jsonl}}
""")
    try:
        assert run_cli("export", "-p", policy, "-o", tmp_path / "a").exit_code == 0
        time.sleep(1.1)  # the fixture server's Last-Modified counts whole seconds (If-Modified-Since)
        patch_record(channel, "linux-64", "tool-1.0-0.conda", depends=["lib >=1.0"])  # the hot-fix
        assert run_cli("export", "-p", policy, "-o", tmp_path / "b").exit_code == 0
    finally:
        served.stop()
    listed = lambda: json.loads((tmp_path / "mirror/linux-64/repodata.json").read_text())["packages.conda"]  # noqa: E731
    assert run_cli("import", tmp_path / "b", "-p", policy).exit_code == 0
    assert listed()["tool-1.0-0.conda"]["depends"] == ["lib >=1.0"]
    replay = run_cli("import", tmp_path / "a", "-p", policy)
    assert replay.exit_code == 2, replay.output
    assert listed()["tool-1.0-0.conda"]["depends"] == ["lib >=1.0"]


@pytest.mark.parametrize("include", [["1.0", "2.0"], ["glob:*"]])
def test_what_the_export_refused_is_carried_over_and_the_rest_imported(tmp_path, registry, registry2, unique_repo,
                                                                      oci_dir, include):
    """Issue 21, item 3: the export refused 2.0 (its pin does not hold); import records that refusal
    with the export's reason (exit 3) and imports 1.0, on every re-import; never "tag not found"."""
    one = write_image(oci_dir, "1.0", layer_size=5_000, seed=84).index_digest
    seed(registry, unique_repo, "1.0", oci_dir)
    write_image(oci_dir, "2.0", layer_size=5_000, seed=85)
    seed(registry, unique_repo, "2.0", oci_dir)
    policy = write_policy(tmp_path, registry.url, registry2.url, unique_repo,
                          tags={"include": include, "pin": {"2.0": "sha256:" + "0" * 64}})
    exported = run_cli("export", "-p", policy, "-o", tmp_path / "vb")
    assert exported.exit_code == 3, exported.output
    for attempt in range(2):
        imported = run_cli("import", tmp_path / "vb", "-p", policy)
        assert imported.exit_code == 3, imported.output
        assert "not found" not in imported.output
        assert digest_of(inspect_raw(registry2, f"{unique_repo}:1.0")) == one
        refused = [r for r in records(tmp_path, "refused") if r["artifact"]["source"] == f"src/{unique_repo}:2.0"]
        assert len(refused) == 2 + attempt  # the export's own, then one per import
        assert refused[-1]["reason"].startswith("refused at export, not in the bundle: pinned to sha256:000")
    tags = requests.get(f"{registry2.url}/v2/{unique_repo}/tags/list", timeout=10).json()["tags"]
    assert tags == ["1.0"]


def test_an_unsigned_bundle_brings_in_only_what_verifies_without_it(tmp_path, registry, registry2, unique_repo,
                                                                    oci_dir):
    """Issue 22, item 5: under `bundle: {signature: optional}` an unsigned bundle is the carrier's
    word. The image whose rule requires its own cosign signature goes in (verified against the
    policy's key); the unsigned image and a conda file whose rules require nothing of their own are
    refused, saying why, even when the carrier swapped nothing."""
    signed_digest = write_image(oci_dir, "1.0", layer_size=5_000, seed=86).index_digest
    seed(registry, f"{unique_repo}-signed", "1.0", oci_dir)
    key = make_key("ecdsa")
    write_public_key(key, tmp_path / "cosign.pub")
    sign(registry, f"{unique_repo}-signed", signed_digest, key)
    write_image(oci_dir, "1.0", layer_size=5_000, seed=87)
    seed(registry, unique_repo, "1.0", oci_dir)
    write_public_key(make_key("ecdsa"), tmp_path / "bundle.pub")
    channel = serve(make_channel(tmp_path / "up", [Pkg("lib", "1.0", "0")]))
    policy = tmp_path / "policy.yaml"
    policy.write_text(f"""\
version: 1
registries:
  src: {{url: "{registry.url}"}}
  dst: {{url: "{registry2.url}"}}
channels:
  up: {{url: "{channel.url}"}}
  internal: {{kind: directory, path: {tmp_path / 'mirror'}}}
trust:
  release: {{cosign_key: cosign.pub}}
  signer: {{cosign_key: bundle.pub}}
bundle: {{signature: optional, trust: [signer]}}
images:
  - {{from: src/{unique_repo}-signed, to: dst/{unique_repo}-signed, tags: {{include: ["1.0"]}},
      verify: {{signature: required, trust: [release]}}}}
  - {{from: src/{unique_repo}, to: dst/{unique_repo}, tags: {{include: ["1.0"]}}}}
conda:
  - {{from: up, to: internal, platforms: [linux-64], specs: [lib]}}
audit: {{path: audit.jsonl}}
""")
    try:
        exported = run_cli("export", "-p", policy, "-o", tmp_path / "vb")
    finally:
        channel.stop()
    assert exported.exit_code == 0, exported.output
    imported = run_cli("import", tmp_path / "vb", "-p", policy)
    assert imported.exit_code == 3, imported.output
    assert digest_of(inspect_raw(registry2, f"{unique_repo}-signed:1.0")) == signed_digest
    assert requests.get(f"{registry2.url}/v2/{unique_repo}/tags/list", timeout=10).status_code == 404
    assert not (tmp_path / "mirror/linux-64/lib-1.0-0.conda").exists()
    reasons = {r["artifact"]["target"]: r["reason"] for r in records(tmp_path, "refused")}
    assert set(reasons) == {f"dst/{unique_repo}:1.0", "internal/linux-64/lib-1.0-0.conda"}
    assert all("the bundle is unsigned" in reason and "nothing but the bundle vouches for it" in reason
               for reason in reasons.values())


def test_an_unsigned_bundle_brings_in_no_package_only_its_sha256_vouches_for(tmp_path):
    """Issue 22, item 5, for packages: a wheel whose rule requires no PEP 740 attestation has only
    the bundle's sha256 behind it; from an unsigned bundle it is refused, never uploaded."""
    from tests.fixtures.pypi import SimpleIndex, build_wheel, start_pypiserver

    (tmp_path / "wheels").mkdir()
    index = SimpleIndex()
    index.add(build_wheel(tmp_path / "wheels", "app", "1.0"))
    pypi = start_pypiserver(tmp_path / "pypiserver")
    write_public_key(make_key("ecdsa"), tmp_path / "bundle.pub")
    policy = tmp_path / "policy.yaml"
    policy.write_text(f"""\
version: 1
indexes:
  mirror: {{url: "{index.url}"}}
  internal: {{url: "{pypi.simple}", upload_url: "{pypi.url}", kind: pypiserver,
             auth: {{username: {pypi.username}, password: "{pypi.password}"}}}}
trust:
  signer: {{cosign_key: bundle.pub}}
bundle: {{signature: optional, trust: [signer]}}
packages:
  - {{from: mirror, to: internal, requirements: [app], environments: [{{python: "3.10", platform: manylinux_2_28_x86_64}}]}}
audit: {{path: audit.jsonl}}
""")
    try:
        exported = run_cli("export", "-p", policy, "-o", tmp_path / "vb")
        index.stop()
        assert exported.exit_code == 0, exported.output
        imported = run_cli("import", tmp_path / "vb", "-p", policy)
        assert imported.exit_code == 3, imported.output
        [refused] = records(tmp_path, "refused")
        assert refused["artifact"]["target"] == "internal/app-1.0-py3-none-any.whl"
        assert "the bundle is unsigned" in refused["reason"] and "packages[0]" in refused["reason"]
        assert not any((pypi.root / "packages").iterdir())
    finally:
        index.stop()
        pypi.stop()
