"""A signed air-gap bundle: `export --sign-key` signs SHA256SUMS (which lists bundle.json,
index.json and every blob) and bundle.json as `cosign sign-blob` does; a policy with
`bundle: {signature: required}` makes import refuse a bundle that is unsigned, signed by another
key or altered after signing, before it reads anything in it as authority. Real registries; the
signature is checked independently with the openssl CLI."""

import base64
import hashlib
import json
import subprocess
import zlib

import pytest
import requests
from cryptography.hazmat.primitives import serialization

from tests.fixtures.cosign import make_key, sign_bytes, write_public_key
from tests.fixtures.oci_layout import digest_of, inspect_raw, seed, write_image
from tests.fixtures.policies import audit_records, run_cli, write_policy
from tests.fixtures.registries import start_registry

TAGS = ["1.0", "2.0"]


def write_private_key(key, path):
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))
    return path


def bundle_policy(tmp_path, source, target, repo, signature="required"):
    policy = write_policy(tmp_path, source.url, target.url, repo, tags=["glob:*"])
    policy.write_text(policy.read_text().replace(
        "images:", f"trust:\n  bundle-signer: {{cosign_key: bundle.pub}}\n"
                   f"bundle: {{signature: {signature}, trust: [bundle-signer]}}\nimages:"))
    return policy


@pytest.fixture
def signed(tmp_path, unique_repo):
    source = start_registry(tmp_path / "source")
    layout = tmp_path / "layout"
    digests = {}
    for n, tag in enumerate(TAGS):
        info = write_image(layout, tag, shared_base=b"base" * 20_000, layer_size=100_000,
                           seed=zlib.crc32(f"{unique_repo}{n}".encode()))
        seed(source, unique_repo, tag, layout)
        digests[tag] = info.index_digest
    key = make_key("ecdsa")
    write_private_key(key, tmp_path / "bundle.key")
    write_public_key(key, tmp_path / "bundle.pub")
    target = start_registry(tmp_path / "target")
    policy = bundle_policy(tmp_path, source, target, unique_repo)
    bundle = tmp_path / "bundle"
    result = run_cli("export", "-p", policy, "-o", bundle, "--sign-key", tmp_path / "bundle.key")
    assert result.exit_code == 0, result.output
    yield {"bundle": bundle, "policy": policy, "target": target, "source": source, "repo": unique_repo,
           "digests": digests, "tmp": tmp_path}
    source.stop()
    target.stop()


def tags_on(registry, repo):
    response = requests.get(f"{registry.url}/v2/{repo}/tags/list", timeout=10)
    return (response.json().get("tags") or []) if response.status_code == 200 else []


def openssl_verifies(tmp_path, public_key, signature_file, signed_file) -> bool:
    der = tmp_path / "signature.der"
    der.write_bytes(base64.b64decode(signature_file.read_bytes()))
    check = subprocess.run(["openssl", "dgst", "-sha256", "-verify", str(public_key), "-signature", str(der),
                            str(signed_file)], capture_output=True, text=True, timeout=30)
    return check.returncode == 0 and "Verified OK" in check.stdout


def refused_reasons(tmp_path) -> str:
    return " ".join(r["reason"] or "" for r in audit_records(tmp_path / "audit.jsonl") if r["event"] == "refused")


def assert_refused(signed, result, why):
    assert result.exit_code == 3, result.output
    assert why in result.output
    assert why in refused_reasons(signed["tmp"])  # an audited refusal, not just a message
    assert tags_on(signed["target"], signed["repo"]) == []  # nothing pushed


def test_openssl_verifies_the_signature_and_the_intact_bundle_imports(signed):
    bundle, tmp = signed["bundle"], signed["tmp"]
    sums = (bundle / "SHA256SUMS").read_text()
    for name in ("bundle.json", "index.json", "oci-layout"):  # one signature vouches for everything
        assert f"  {name}\n" in sums
    assert openssl_verifies(tmp, tmp / "bundle.pub", bundle / "SHA256SUMS.sig", bundle / "SHA256SUMS")
    assert openssl_verifies(tmp, tmp / "bundle.pub", bundle / "bundle.json.sig", bundle / "bundle.json")
    signed["source"].stop()
    result = run_cli("import", bundle, "-p", signed["policy"])
    assert result.exit_code == 0, result.output
    for tag, digest in signed["digests"].items():
        assert digest_of(inspect_raw(signed["target"], f"{signed['repo']}:{tag}")) == digest
    [check] = [r for r in audit_records(tmp / "audit.jsonl") if (r.get("artifact") or {}).get("bundle")]
    assert check["event"] == "verified" and check["verification"]["trust"] == "bundle-signer"


def test_an_unsigned_bundle_is_refused_when_the_policy_requires_a_signature(signed):
    for name in ("SHA256SUMS.sig", "bundle.json.sig"):
        (signed["bundle"] / name).unlink()
    result = run_cli("import", signed["bundle"], "-p", signed["policy"])
    assert_refused(signed, result, "SHA256SUMS.sig")


def test_export_without_a_key_is_a_usage_error_when_the_policy_requires_one(signed):
    result = run_cli("export", "-p", signed["policy"], "-o", signed["tmp"] / "unsigned")
    assert result.exit_code == 2 and "--sign-key" in result.output, result.output


def test_a_bundle_signed_by_another_key_is_refused(signed):
    sums = signed["bundle"] / "SHA256SUMS"
    other = make_key("ecdsa")
    (signed["bundle"] / "SHA256SUMS.sig").write_bytes(base64.b64encode(sign_bytes(other, sums.read_bytes())))
    result = run_cli("import", signed["bundle"], "-p", signed["policy"])
    assert_refused(signed, result, "not signed by a key of bundle.trust")


def test_a_tag_pointed_at_another_digest_after_signing_is_refused(signed):
    bundle = signed["bundle"]
    index = json.loads((bundle / "index.json").read_text())
    refs = {m["annotations"]["org.opencontainers.image.ref.name"]: m for m in index["manifests"]}
    one, two = (refs[f"src/{signed['repo']}:{tag}"] for tag in TAGS)
    one["digest"], two["digest"] = two["digest"], one["digest"]  # 1.0 now names 2.0's image
    (bundle / "index.json").write_text(json.dumps(index))
    lines = [f"{hashlib.sha256((bundle / 'index.json').read_bytes()).hexdigest()}  index.json"
             if line.endswith("  index.json") else line for line in (bundle / "SHA256SUMS").read_text().splitlines()]
    (bundle / "SHA256SUMS").write_text("\n".join(lines) + "\n")  # consistent sums, old signature
    result = run_cli("import", bundle, "-p", signed["policy"])
    assert_refused(signed, result, "not signed by a key of bundle.trust")


def test_optional_refuses_a_wrongly_signed_bundle_and_from_an_unsigned_one_what_only_it_vouches_for(signed):
    tmp = signed["tmp"]
    policy = bundle_policy(tmp, signed["source"], signed["target"], signed["repo"], signature="optional")
    bundle = tmp / "optional"
    assert run_cli("export", "-p", policy, "-o", bundle).exit_code == 0
    assert not (bundle / "SHA256SUMS.sig").exists()
    sums = (bundle / "SHA256SUMS").read_bytes()
    (bundle / "SHA256SUMS.sig").write_bytes(base64.b64encode(sign_bytes(make_key("ecdsa"), sums)))
    wrong = run_cli("import", bundle, "-p", policy)
    assert wrong.exit_code == 3 and "not signed by a key of bundle.trust" in wrong.output, wrong.output
    assert tags_on(signed["target"], signed["repo"]) == []
    (bundle / "SHA256SUMS.sig").unlink()
    # unsigned, the bundle is the carrier's word: these images' rule requires no signature of their own
    # (tests/test_bundle_replay.py has one that does, and goes in)
    unsigned = run_cli("import", bundle, "-p", policy)
    assert unsigned.exit_code == 3 and "the bundle is unsigned" in unsigned.output, unsigned.output
    assert tags_on(signed["target"], signed["repo"]) == []


def test_a_tampered_blob_in_a_reused_export_directory_is_fetched_again(signed):
    bundle, source, tmp = signed["bundle"], signed["source"], signed["tmp"]
    victim = max((p for p in (bundle / "blobs" / "sha256").iterdir()), key=lambda p: p.stat().st_size)
    data = bytearray(victim.read_bytes())
    data[500] ^= 0xFF
    victim.write_bytes(bytes(data))
    index = json.loads((bundle / "index.json").read_text())  # and a ref nobody exported this time
    index["manifests"].append(dict(index["manifests"][0], annotations={
        "org.opencontainers.image.ref.name": f"src/{signed['repo']}:planted"}))
    (bundle / "index.json").write_text(json.dumps(index))

    mark = source.mark()
    again = run_cli("export", "-p", signed["policy"], "-o", bundle, "--sign-key", tmp / "bundle.key")
    assert again.exit_code == 0, again.output
    gets = [uri for method, uri in source.requests_since(mark) if method == "GET" and "/blobs/" in uri]
    assert [uri.rsplit(":", 1)[1] for uri in gets] == [victim.name]  # fetched again, nothing else
    assert hashlib.sha256(victim.read_bytes()).hexdigest() == victim.name
    assert subprocess.run(["sha256sum", "-c", "--quiet", "SHA256SUMS"], cwd=bundle).returncode == 0
    assert "planted" not in (bundle / "index.json").read_text()
    assert openssl_verifies(tmp, tmp / "bundle.pub", bundle / "SHA256SUMS.sig", bundle / "SHA256SUMS")


@pytest.mark.parametrize("section, message", [
    ("{signature: required, trust: [bundle-signer], key: x}", "unknown key 'key'"),
    ("{signature: required}", "needs at least one trust entry"),
    ("{signature: sometimes, trust: [bundle-signer]}", "bundle.signature"),
    ("{signature: required, trust: [nobody]}", "unknown trust entry 'nobody'"),
    ("{signature: required, trust: [keyless]}", "must be a cosign_key"),
])
def test_the_bundle_section_is_validated(tmp_path, section, message):
    policy = tmp_path / "policy.yaml"
    policy.write_text(f"""\
version: 1
trust:
  bundle-signer: {{cosign_key: bundle.pub}}
  keyless: {{keyless: {{issuer: "https://token.actions.githubusercontent.com", identity: "a@b"}}}}
bundle: {section}
""")
    result = run_cli("policy", "check", "-p", policy)
    assert result.exit_code == 2 and message in result.output, result.output
    assert "policy.yaml:5" in result.output  # file:line of the bundle section
