"""Messages that name the real cause (issue 13): a missing repository, an unreachable registry being
retried, a plain-HTTP server behind an https URL, a name that does not resolve, `regsync verify`'s
own flags, a private key where the public one is needed."""

import json

from tests.fixtures.oci_layout import seed, write_image
from tests.fixtures.policies import audit_records, run_cli, write_policy
from tests.fixtures.registries import free_port

FAST_RETRIES = ', retries: {attempts: 2, backoff_seconds: 0.1}'


def test_a_missing_repository_is_named_as_such(tmp_path, registry, registry2, unique_repo):
    listed = write_policy(tmp_path, registry.url, registry2.url, f"{unique_repo}/nope", tags=["glob:1.*"], name="a.yaml")
    result = run_cli("plan", "-p", listed, "--json")
    assert result.exit_code == 1
    [error] = json.loads(result.stdout)["errors"]
    assert "repository not found on the source" in error["reason"]
    exact = write_policy(tmp_path, registry.url, registry2.url, f"{unique_repo}/nope", tags=["1.0"], name="b.yaml")
    result = run_cli("plan", "-p", exact, "--json")
    [error] = json.loads(result.stdout)["errors"]
    assert "repository not found on the source" in error["reason"], error
    assert "tag not found" not in error["reason"]


def test_a_missing_tag_in_an_existing_repository_is_still_a_missing_tag(tmp_path, registry, registry2, unique_repo,
                                                                        oci_dir):
    write_image(oci_dir, "1.0", layer_size=1_000, seed=5)
    seed(registry, unique_repo, "1.0", oci_dir)
    policy = write_policy(tmp_path, registry.url, registry2.url, unique_repo, tags=["9.9"])
    [error] = json.loads(run_cli("plan", "-p", policy, "--json").stdout)["errors"]
    assert error["reason"] == "tag not found on the source"


def test_an_unreachable_registry_says_what_is_retried(tmp_path, registry2, unique_repo):
    dead = f"http://127.0.0.1:{free_port()}"
    policy = write_policy(tmp_path, dead, registry2.url, unique_repo, tags=["glob:1.*"], src_options=FAST_RETRIES)
    result = run_cli("plan", "-p", policy)
    assert result.exit_code == 1
    retried = [line for line in result.stderr.splitlines() if "retry" in line]
    assert retried and f"{dead.replace('http://', 'http://')}" in retried[-1] and "WARNING" in retried[-1], result.stderr
    assert "connection refused" in retried[-1]


def test_https_to_a_plain_http_server_says_it_does_not_speak_tls(tmp_path, registry, registry2, unique_repo):
    policy = write_policy(tmp_path, registry.url.replace("http://", "https://"), registry2.url, unique_repo,
                          tags=["glob:1.*"], src_options=FAST_RETRIES)
    result = run_cli("plan", "-p", policy, "--json")
    [error] = json.loads(result.stdout)["errors"]
    assert "does not speak TLS" in error["reason"] and "tls.ca_file" not in error["reason"], error


def test_a_name_that_does_not_resolve_says_dns(tmp_path, registry2, unique_repo):
    # Longer than DNS allows: the resolver refuses it locally, so no query leaves the machine.
    host = ".".join(["a" * 63] * 4) + ".test"
    policy = write_policy(tmp_path, f"http://{host}:5000", registry2.url, unique_repo, tags=["glob:1.*"],
                          src_options=FAST_RETRIES)
    result = run_cli("plan", "-p", policy, "--json")
    [error] = json.loads(result.stdout)["errors"]
    assert "name resolution failed" in error["reason"] and "DNS" in error["reason"], error


def _key_pair(tmp_path):
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    key = ec.generate_private_key(ec.SECP256R1())
    private = tmp_path / "signing.pem"
    private.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                          serialization.NoEncryption()))
    public = tmp_path / "signing.pub"
    public.write_bytes(key.public_key().public_bytes(serialization.Encoding.PEM,
                                                     serialization.PublicFormat.SubjectPublicKeyInfo))
    return private, public


def test_verify_names_its_own_flags_in_hints(tmp_path, registry_tls, unique_repo):
    _, public = _key_pair(tmp_path)
    untrusted = run_cli("verify", f"{registry_tls.host}/{unique_repo}:1.0", "--key", public)
    assert untrusted.exit_code == 1
    assert "--registry-cacert" in untrusted.stderr and "tls.ca_file" not in untrusted.stderr, untrusted.stderr
    keyless = run_cli("verify", f"{registry_tls.host}/{unique_repo}:1.0", "--certificate-identity", "a@b.c",
                      "--certificate-oidc-issuer", "https://issuer.example")
    assert keyless.exit_code == 2
    assert "--trusted-root" in keyless.stderr and "trusted_root:" not in keyless.stderr, keyless.stderr


def test_a_private_key_where_the_public_key_is_needed_is_named(tmp_path, registry2, unique_repo):
    private, _ = _key_pair(tmp_path)
    trail = tmp_path / "audit.jsonl"
    trail.write_text("")
    audit = run_cli("audit", "verify", trail, "--key", private)
    assert audit.exit_code == 2
    assert "private key" in audit.stderr and "public key" in audit.stderr, audit.stderr
    assert "trust entry" not in audit.stderr
    verify = run_cli("verify", f"{registry2.host}/{unique_repo}:1.0", "--allow-http-registry", "--key", private)
    assert verify.exit_code == 2 and "private key" in verify.stderr and "--key" in verify.stderr, verify.stderr


def test_a_reapplied_plan_that_moved_nothing_records_zero_bytes(tmp_path, registry, registry2, unique_repo, oci_dir):
    write_image(oci_dir, "1.0", layer_size=30_000, seed=7)
    seed(registry, unique_repo, "1.0", oci_dir)
    policy = write_policy(tmp_path, registry.url, registry2.url, unique_repo, tags=["1.0"])
    plan = tmp_path / "plan.json"
    assert run_cli("plan", "-p", policy, "-o", plan).exit_code == 0
    first = run_cli("sync", "-p", policy, "--plan", plan)
    assert first.exit_code == 0, first.output
    again = run_cli("sync", "-p", policy, "--plan", plan)
    assert again.exit_code == 0, again.output
    assert "0 B moved" in again.stderr
    records = audit_records(tmp_path / "audit.jsonl")
    pushed = [r["artifact"]["size"] for r in records if r["event"] == "pushed"]
    assert len(pushed) == 1 and pushed[0] > 30_000, pushed   # the second apply is unchanged, not pushed (issue 21)
    assert [(r["event"], r["artifact"]["size"]) for r in records][-1] == ("skipped", 0)
    assert run_cli("audit", "report", tmp_path / "audit.jsonl", "--json", tmp_path / "r.json").exit_code == 0
    report = json.loads((tmp_path / "r.json").read_text())
    assert [run["bytes"] for run in report["runs"]][-1] == 0, report["runs"]


def test_an_index_on_plain_http_named_with_https_says_it_does_not_speak_tls(tmp_path):
    from tests.fixtures.pypi import SimpleIndex

    index = SimpleIndex()
    try:
        policy = tmp_path / "policy.yaml"
        policy.write_text(f"""\
version: 1
indexes:
  mirror: {{url: "{index.url.replace('http://', 'https://')}", retries: {{attempts: 1, backoff_seconds: 0.1}}}}
  internal: {{kind: directory, path: {tmp_path / 'tree'}}}
packages:
  - {{from: mirror, to: internal, requirements: ["app==1.0"], environments: [{{python: "3.12", platform: win_amd64}}]}}
audit: {{path: audit.jsonl}}
""")
        result = run_cli("plan", "-p", policy, "--json")
        [error] = json.loads(result.stdout)["errors"]
        assert "does not speak TLS" in error["reason"] and "tls.ca_file" not in error["reason"], error
    finally:
        index.stop()


def test_a_target_that_refuses_connections_is_down_for_the_whole_run(tmp_path, registry, unique_repo, oci_dir):
    tags = ["1.0", "2.0", "3.0", "4.0"]
    for n, tag in enumerate(tags):
        write_image(oci_dir, tag, layer_size=1_000, seed=60 + n)
        seed(registry, unique_repo, tag, oci_dir)
    dead = f"http://127.0.0.1:{free_port()}"
    policy = write_policy(tmp_path, registry.url, dead, unique_repo, tags=tags, dst_options=FAST_RETRIES)
    result = run_cli("--log-format", "json", "-v", "sync", "-p", policy, "--jobs", "1")
    assert result.exit_code == 1, result.output
    lines = [json.loads(line) for line in result.stderr.splitlines()]
    retries = [line for line in lines if line["event"] == "retry"]
    down = [line for line in lines if line["event"] == "down"]
    failed = [line for line in lines if line["event"] == "failed"]
    # the first item pays the retries; the target is then down: said once, never asked again
    assert len(retries) == 2, [line["message"] for line in retries]
    assert len(down) == 1 and down[0]["message"].startswith(f"{dead} refuses connections: treated as down"), down
    assert len(failed) == len(tags) and all("connection refused" in line["reason"] for line in failed), failed
    assert [r["event"] for r in audit_records(tmp_path / "audit.jsonl")] == ["failed"] * len(tags)


def _auth_env(tmp_path, **files):
    """No credentials but the ones the test writes: every place skopeo and docker look is under tmp_path."""
    env = {"REGISTRY_AUTH_FILE": None, "XDG_RUNTIME_DIR": None, "XDG_CONFIG_HOME": str(tmp_path / "config"),
           "DOCKER_CONFIG": str(tmp_path / "docker")}
    for name, (path, host, user, password) in files.items():
        import base64

        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"auths": {host: {"auth": base64.b64encode(f"{user}:{password}".encode()).decode()}}}))
        env[name] = str(path if name == "REGISTRY_AUTH_FILE" else path.parent.parent)
    return env


def test_credentials_from_skopeo_login_files_and_a_message_when_there_are_none(tmp_path, registry_basic, registry2,
                                                                              unique_repo, oci_dir):
    write_image(oci_dir, "1.0", layer_size=1_000, seed=70)
    seed(registry_basic, unique_repo, "1.0", oci_dir)
    policy = write_policy(tmp_path, registry_basic.url, registry2.url, unique_repo, tags=["1.0"],
                          src_options=", auth: {docker_config: true}")
    login = (registry_basic.host, registry_basic.username, registry_basic.password)
    # what `skopeo login --authfile F` / REGISTRY_AUTH_FILE=F writes, and what plain `skopeo login` writes
    for env in (_auth_env(tmp_path, REGISTRY_AUTH_FILE=(tmp_path / "auth.json", *login)),
                _auth_env(tmp_path, XDG_RUNTIME_DIR=(tmp_path / "run" / "containers" / "auth.json", *login))):
        result = run_cli("plan", "-p", policy, "--json", env=env)
        assert result.exit_code == 0, result.output
        assert [item["action"] for item in json.loads(result.stdout)["items"]] == ["copy"]
    none = run_cli("plan", "-p", policy, "--json", env=_auth_env(tmp_path))
    assert none.exit_code == 1
    [error] = json.loads(none.stdout)["errors"]
    assert f"no credentials were found for {registry_basic.host}" in error["reason"], error
    assert str(tmp_path / "docker" / "config.json") in error["reason"] and "check the credentials" not in error["reason"]
    _, public = _key_pair(tmp_path)
    verify = run_cli("verify", f"{registry_basic.host}/{unique_repo}:1.0", "--allow-http-registry", "--key", public,
                     env=_auth_env(tmp_path))
    assert verify.exit_code == 1 and f"no credentials were found for {registry_basic.host}" in verify.stderr, verify.output
    logged_in = run_cli("verify", f"{registry_basic.host}/{unique_repo}:1.0", "--allow-http-registry", "--key", public,
                        env=_auth_env(tmp_path, REGISTRY_AUTH_FILE=(tmp_path / "auth.json", *login)))
    assert "no credentials" not in logged_in.stderr and "no cosign signature" in logged_in.stderr, logged_in.output


def test_http_at_a_tls_registry_says_it_speaks_tls_and_verify_names_allow_http(tmp_path, registry_tls, registry2,
                                                                              unique_repo):
    policy = write_policy(tmp_path, f"http://{registry_tls.host}", registry2.url, unique_repo, tags=["glob:1.*"],
                          src_options=FAST_RETRIES)
    result = run_cli("plan", "-p", policy, "--json")
    [error] = json.loads(result.stdout)["errors"]
    assert f"{registry_tls.host} speaks TLS" in error["reason"] and "https://" in error["reason"], error
    assert "registry error" not in error["reason"]
    _, public = _key_pair(tmp_path)
    plain = run_cli("verify", f"{registry2.host}/{unique_repo}:1.0", "--key", public)
    assert plain.exit_code == 1 and "--allow-http-registry" in plain.stderr, plain.output


def test_an_index_url_without_simple_says_the_project_page_answered_404_there(tmp_path):
    from tests.fixtures.pypi import SimpleIndex, build_wheel

    index = SimpleIndex.serving([build_wheel(tmp_path / "wheels", "app", "1.0")])
    try:
        bare = index.url.removesuffix("simple/")
        policy = tmp_path / "policy.yaml"
        policy.write_text(f"""\
version: 1
indexes:
  mirror: {{url: "{bare}", retries: {{attempts: 1, backoff_seconds: 0.1}}}}
  internal: {{kind: directory, path: {tmp_path / 'tree'}}}
packages:
  - {{from: mirror, to: internal, requirements: ["app==1.0"], environments: [{{python: "3.12", platform: win_amd64}}]}}
audit: {{path: audit.jsonl}}
""")
        result = run_cli("plan", "-p", policy, "--json")
        assert result.exit_code == 1
        said = [line for line in result.stderr.splitlines() if "answered 404" in line]
        assert said == [f"WARNING mirror: the project page of app answered 404 at {bare}app/ (is {bare} the "
                        "index's simple API? it usually ends in /simple/)"], result.stderr
    finally:
        index.stop()
