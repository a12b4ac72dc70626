"""Auth and TLS against real registries: basic (htpasswd), bearer tokens, a test CA; secrets never leak."""

import json

from click.testing import CliRunner

from regsync.cli import cli
from regsync.kinds.image.auth import Credentials
from regsync.kinds.image.client import RegistryClient
from tests.fixtures.oci_layout import digest_of, inspect_raw, seed, write_image

TAG = "2.9-cuda11.8-ubuntu20.04"


def policy_with(tmp_path, source, target, repo, auth_block, tls_block="", password_env="SRC_PASSWORD"):
    path = tmp_path / "policy.yaml"
    path.write_text(f"""\
version: 1
registries:
  src:
    url: "{source.url}"
{auth_block}{tls_block}  dst: {{url: "{target.url}"}}
images:
  - from: src/{repo}
    to: dst/{repo}
    tags: {{include: ["{TAG}"]}}
audit: {{path: audit.jsonl}}
""")
    return path


def auth_block(username):
    return f'    auth: {{username: "{username}", password: "${{SRC_PASSWORD}}"}}\n'


def invoke(policy, password, *extra):
    result = CliRunner().invoke(cli, ["--no-progress", "-vv", "--log-format", "json", *extra, "sync", "-p", str(policy)],
                                env={"SRC_PASSWORD": password})
    assert "Traceback" not in result.output
    return result


def assert_no_secret(tmp_path, result, secret):
    assert secret not in result.output
    audit = tmp_path / "audit.jsonl"
    assert not audit.exists() or secret not in audit.read_text()


def test_basic_auth_good_and_bad_credentials(tmp_path, registry_basic, registry2, unique_repo, oci_dir):
    info = write_image(oci_dir, TAG)
    seed(registry_basic, unique_repo, TAG, oci_dir)
    policy = policy_with(tmp_path, registry_basic, registry2, unique_repo, auth_block(registry_basic.username))
    good = invoke(policy, registry_basic.password)
    assert good.exit_code == 0, good.output
    assert digest_of(inspect_raw(registry2, f"{unique_repo}:{TAG}")) == info.index_digest
    assert_no_secret(tmp_path, good, registry_basic.password)

    bad = invoke(policy, "wrong-password-Zq9")
    assert bad.exit_code == 1 and "authentication failed" in bad.output
    assert_no_secret(tmp_path, bad, "wrong-password-Zq9")


def test_bearer_token_auth_is_cached_per_scope(tmp_path, registry_token, registry2, unique_repo, oci_dir):
    info = write_image(oci_dir, TAG)
    seed(registry_token, unique_repo, TAG, oci_dir)
    issued_before = registry_token.token_server.issued
    policy = policy_with(tmp_path, registry_token, registry2, unique_repo, auth_block(registry_token.username))
    result = invoke(policy, registry_token.password)
    assert result.exit_code == 0, result.output
    assert digest_of(inspect_raw(registry2, f"{unique_repo}:{TAG}")) == info.index_digest
    # One token for the ping and one per scope (pull of this repository), not one per request.
    assert registry_token.token_server.issued - issued_before <= 3
    assert_no_secret(tmp_path, result, registry_token.password)

    bad = invoke(policy, "nope-not-it")
    assert bad.exit_code == 1 and "rejected the credentials" in bad.output


def test_token_refreshed_after_401_when_cached_token_is_rejected(registry_token, unique_repo, oci_dir):
    write_image(oci_dir, TAG)
    seed(registry_token, unique_repo, TAG, oci_dir)
    client = RegistryClient("src", registry_token.url, Credentials(registry_token.username, registry_token.password))
    assert client.head_manifest(unique_repo, TAG) is not None
    auth = client.session.auth
    # Poison the cache: the registry answers 401 and the client must fetch a fresh token and retry.
    auth._tokens = {scope: ("garbage", expiry) for scope, (_, expiry) in auth._tokens.items()}
    assert client.head_manifest(unique_repo, TAG) is not None


def test_tls_with_ca_file_and_without(tmp_path, registry_tls, registry2, unique_repo, oci_dir):
    info = write_image(oci_dir, TAG)
    seed(registry_tls, unique_repo, TAG, oci_dir)
    tls = f"    tls: {{ca_file: {registry_tls.ca_file}}}\n"
    policy = policy_with(tmp_path, registry_tls, registry2, unique_repo, auth_block(registry_tls.username), tls)
    good = invoke(policy, registry_tls.password)
    assert good.exit_code == 0, good.output
    assert digest_of(inspect_raw(registry2, f"{unique_repo}:{TAG}")) == info.index_digest

    policy = policy_with(tmp_path, registry_tls, registry2, unique_repo, auth_block(registry_tls.username))
    bad = invoke(policy, registry_tls.password)
    assert bad.exit_code == 1 and "TLS verification failed" in bad.output


def test_docker_config_credentials(tmp_path, registry_basic, registry2, unique_repo, oci_dir, monkeypatch):
    import base64

    info = write_image(oci_dir, TAG)
    seed(registry_basic, unique_repo, TAG, oci_dir)
    token = base64.b64encode(f"{registry_basic.username}:{registry_basic.password}".encode()).decode()
    (tmp_path / "docker").mkdir()
    (tmp_path / "docker" / "config.json").write_text(json.dumps({"auths": {registry_basic.host: {"auth": token}}}))
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "docker"))
    policy = policy_with(tmp_path, registry_basic, registry2, unique_repo, "    auth: {docker_config: true}\n")
    result = invoke(policy, "unused")
    assert result.exit_code == 0, result.output
    assert digest_of(inspect_raw(registry2, f"{unique_repo}:{TAG}")) == info.index_digest


def test_docker_credential_helper(tmp_path, registry_basic, registry2, unique_repo, oci_dir, monkeypatch):
    """credHelpers: docker runs `docker-credential-<name> get` with the host on stdin."""
    info = write_image(oci_dir, TAG)
    seed(registry_basic, unique_repo, TAG, oci_dir)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    helper = bin_dir / "docker-credential-corpvault"
    secret = json.dumps({"ServerURL": registry_basic.host, "Username": registry_basic.username,
                         "Secret": registry_basic.password})
    helper.write_text(f"#!/bin/sh\n[ \"$1\" = get ] || exit 1\nread host\n"
                      f"[ \"$host\" = \"{registry_basic.host}\" ] || {{ echo 'credentials not found'; exit 1; }}\n"
                      f"echo '{secret}'\n")
    helper.chmod(0o755)
    (tmp_path / "docker").mkdir()
    (tmp_path / "docker" / "config.json").write_text(json.dumps({"credHelpers": {registry_basic.host: "corpvault"}}))
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "docker"))
    monkeypatch.setenv("PATH", f"{bin_dir}:{__import__('os').environ['PATH']}")
    policy = policy_with(tmp_path, registry_basic, registry2, unique_repo, "    auth: {docker_config: true}\n")
    result = invoke(policy, "unused")
    assert result.exit_code == 0, result.output
    assert digest_of(inspect_raw(registry2, f"{unique_repo}:{TAG}")) == info.index_digest
    assert_no_secret(tmp_path, result, registry_basic.password)
