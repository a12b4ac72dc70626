"""regsync client-config: what it prints parses for each client, carries CA files instead of
insecure flags, and — for registries.conf — a real client (skopeo, the containers/image library
podman uses) asking for the upstream name is served the internal copy."""

import base64
import configparser
import json
import subprocess
import tomllib

from tests.fixtures.oci_layout import digest_of, seed, write_image
from tests.fixtures.policies import run_cli


def policy_file(tmp_path, internal_url, ca_file, copy_repo):
    path = tmp_path / "policy.yaml"
    path.write_text(f"""\
version: 1
registries:
  hub: {{url: "https://registry-1.docker.io"}}
  quay: {{url: "https://quay.io"}}
  internal: {{url: "{internal_url}", tls: {{ca_file: "{ca_file}"}}, auth: {{username: u, password: "p4ss-word"}}}}
  nexus: {{url: "https://nexus.corp.example/repository/docker-hosted", kind: nexus}}
indexes:
  tuna: {{url: "https://pypi.tuna.tsinghua.edu.cn/simple/"}}
  internal-pypi: {{url: "https://nexus.corp.example/repository/pypi-internal/simple/", tls: {{ca_file: "{ca_file}"}}}}
images:
  - {{from: hub/pytorch/pytorch, to: "internal/{copy_repo}", tags: {{include: ["2.9"]}}}}
  - {{from: quay/prometheus/node-exporter, to: internal/mirror/prometheus/node-exporter, tags: {{include: [v1]}}}}
  - {{from: quay/coreos/etcd, to: nexus/coreos/etcd, tags: {{include: [v3]}}}}
packages:
  - {{from: tuna, to: internal-pypi, requirements: [numpy]}}
""")
    return path


def config_for(policy, client, *extra):
    """(the file on stdout, the notes on stderr) of one successful invocation."""
    result = run_cli("client-config", "-p", policy, "--for", client, *extra)
    assert result.exit_code == 0, result.output
    assert "p4ss-word" not in result.output
    for flag in ("insecure-registries", "insecure =", "skip_verify", "trusted-host", "tls-verify"):
        assert flag not in result.output
    return result.stdout, result.stderr


def test_podman_registries_conf_redirects_a_real_client(tmp_path, registry_tls, unique_repo, oci_dir):
    info = write_image(oci_dir, "2.9", layer_size=10_000, seed=11)
    seed(registry_tls, unique_repo, "2.9", oci_dir)
    policy = policy_file(tmp_path, registry_tls.url, registry_tls.ca_file, unique_repo)

    conf, notes = config_for(policy, "podman")
    parsed = tomllib.loads(conf)
    assert {"prefix": "docker.io/pytorch/pytorch", "location": f"{registry_tls.host}/{unique_repo}"} in parsed["registry"]
    assert f"/etc/containers/certs.d/{registry_tls.host}/ca.crt" in notes
    assert "coreos/etcd" in notes and "connector port" in notes  # Nexus's API path is not a client location
    (tmp_path / "registries.conf").write_text(conf)

    # as after `podman login` to the internal registry: the credentials are for where the copy lives
    token = base64.b64encode(f"{registry_tls.username}:{registry_tls.password}".encode()).decode()
    (tmp_path / "auth.json").write_text(json.dumps({"auths": {registry_tls.host: {"auth": token}}}))
    out = subprocess.run(["skopeo", "inspect", "--raw", "--registries-conf", str(tmp_path / "registries.conf"),
                          f"--cert-dir={registry_tls.cert_dir}", "--authfile", str(tmp_path / "auth.json"),
                          "docker://docker.io/pytorch/pytorch:2.9"], capture_output=True, timeout=60)
    assert out.returncode == 0, out.stderr.decode()
    assert digest_of(out.stdout) == info.index_digest


def test_containerd_hosts_toml_per_upstream(tmp_path):
    policy = policy_file(tmp_path, "https://harbor.corp.example", "/etc/ssl/corp-ca.pem", "dockerhub/pytorch/pytorch")
    text, notes = config_for(policy, "containerd")

    hub = tomllib.loads(text)  # the one host that can be redirected as a whole: no --upstream needed
    assert "for /etc/containerd/certs.d/docker.io/hosts.toml" in notes
    assert hub["server"] == "https://registry-1.docker.io"
    assert hub["host"] == {"https://harbor.corp.example/v2/dockerhub": {
        "capabilities": ["pull", "resolve"], "ca": "/etc/containerd/certs.d/harbor.corp.example/ca.crt",
        "override_path": True}}
    # quay.io goes to two different places (a Harbor prefix and Nexus): no single redirect exists
    assert "quay.io/coreos/etcd" in notes and "pull these directly" in notes
    refused = run_cli("client-config", "-p", policy, "--for", "containerd", "--upstream", "quay.io")
    assert refused.exit_code == 2 and refused.stdout == "" and "choose one of docker.io" in refused.stderr


def test_containerd_with_several_upstreams_prints_one_file_per_invocation(tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text("""\
version: 1
registries:
  hub: {url: "https://registry-1.docker.io"}
  quay: {url: "https://quay.io"}
  harbor: {url: "https://harbor.corp.example"}
images:
  - {from: hub/library/python, to: harbor/hub/library/python, tags: {include: ["3.12"]}}
  - {from: quay/coreos/etcd, to: harbor/quay/coreos/etcd, tags: {include: [v3]}}
""")
    ambiguous = run_cli("client-config", "-p", path, "--for", "containerd")
    assert ambiguous.exit_code == 2 and ambiguous.stdout == ""
    assert "--upstream (docker.io, quay.io)" in ambiguous.stderr
    for upstream, prefix in (("docker.io", "hub"), ("quay.io", "quay")):
        text, _ = config_for(path, "containerd", "--upstream", upstream)
        assert list(tomllib.loads(text)["host"]) == [f"https://harbor.corp.example/v2/{prefix}"]


def test_containerd_reaches_nexus_path_routing(tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text("""\
version: 1
registries:
  hub: {url: "https://registry-1.docker.io"}
  nexus: {url: "https://nexus.corp.example/repository/docker-hosted", kind: nexus}
images:
  - {from: hub/library/python, to: nexus/library/python, tags: {include: ["3.12"]}}
""")
    host = tomllib.loads(config_for(path, "containerd")[0])["host"]
    assert list(host) == ["https://nexus.corp.example/repository/docker-hosted/v2"]
    assert host["https://nexus.corp.example/repository/docker-hosted/v2"]["override_path"] is True


def test_docker_daemon_json_only_mirrors_what_docker_can_use(tmp_path):
    same_names = policy_file(tmp_path, "https://harbor.corp.example", "/etc/ssl/corp-ca.pem", "pytorch/pytorch")
    text, notes = config_for(same_names, "docker")
    assert json.loads(text) == {"registry-mirrors": ["https://harbor.corp.example"]}  # the whole stdout is daemon.json
    assert "install -D -m 0644 /etc/ssl/corp-ca.pem /etc/docker/certs.d/harbor.corp.example/ca.crt" in notes

    renamed = policy_file(tmp_path, "https://harbor.corp.example", "/etc/ssl/corp-ca.pem", "ai-base/pytorch")
    result = run_cli("client-config", "-p", renamed, "--for", "docker")
    assert result.exit_code == 2 and result.stdout == ""  # nothing for daemon.json: never an empty {} over it
    assert "docker.io/pytorch/pytorch  ->  harbor.corp.example/ai-base/pytorch" in result.stderr


def test_pip_and_uv(tmp_path):
    policy = policy_file(tmp_path, "https://harbor.corp.example", "/etc/ssl/corp-ca.pem", "x/y")
    pip = configparser.ConfigParser()
    pip.read_string(config_for(policy, "pip")[0])
    assert pip["global"]["index-url"] == "https://nexus.corp.example/repository/pypi-internal/simple/"
    assert pip["global"]["cert"] == "/etc/ssl/corp-ca.pem"
    uv = tomllib.loads(config_for(policy, "uv")[0])
    assert uv["index"] == [{"name": "internal-pypi", "url": "https://nexus.corp.example/repository/pypi-internal/simple/",
                            "default": True}]


def test_unknown_client_is_a_usage_error(tmp_path):
    policy = policy_file(tmp_path, "https://harbor.corp.example", "/etc/ssl/corp-ca.pem", "x/y")
    result = run_cli("client-config", "-p", policy, "--for", "rkt")
    assert result.exit_code == 2


def test_pip_config_prints_pip_conf_only(tmp_path):
    """`regsync pip-config > /etc/pip.conf` (its own --help example) must leave a valid pip.conf."""
    policy = policy_file(tmp_path, "https://harbor.corp.example", "/etc/ssl/corp-ca.pem", "x/y")
    result = run_cli("pip-config", "-p", policy)
    assert result.exit_code == 0, result.output
    pip = configparser.ConfigParser()
    pip.read_string(result.stdout)
    assert pip.sections() == ["global"] and "[[index]]" not in result.stdout


def test_nothing_to_configure_is_exit_2_with_an_empty_stdout(tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text("""\
version: 1
registries:
  hub: {url: "https://registry-1.docker.io"}
  harbor: {url: "https://harbor.corp.example"}
images:
  - {from: hub/library/python, to: harbor/library/python, tags: {include: ["3.12"]}}
""")
    for args in (("pip-config",), ("client-config", "--for", "pip"), ("client-config", "--for", "uv")):
        result = run_cli(*args, "-p", path)
        assert result.exit_code == 2, result.output
        assert result.stdout == "" and "no packages: rules" in result.stderr


def test_a_directory_index_with_a_url_is_configured_by_that_url(tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text(f"""\
version: 1
indexes:
  tuna: {{url: "https://pypi.tuna.tsinghua.edu.cn/simple/"}}
  wheelhouse: {{kind: directory, path: {tmp_path}/tree, url: "https://wheels.corp.example/simple/"}}
packages:
  - {{from: tuna, to: wheelhouse, requirements: [numpy]}}
""")
    pip = configparser.ConfigParser()
    pip.read_string(config_for(path, "pip")[0])
    assert pip["global"]["index-url"] == "https://wheels.corp.example/simple/"


def test_error_notes_are_one_readable_line_without_literal_backslash_n(tmp_path):
    renamed = policy_file(tmp_path, "https://harbor.corp.example", "/etc/ssl/corp-ca.pem", "ai-base/pytorch")
    docker = run_cli("client-config", "-p", renamed, "--for", "docker")
    assert docker.exit_code == 2 and "\\n" not in docker.stderr, docker.stderr
    assert ("registry root. Pull the internal copies by their internal names: "
            "docker.io/pytorch/pytorch  ->  harbor.corp.example/ai-base/pytorch") in docker.stderr
    containerd = run_cli("client-config", "-p", renamed, "--for", "containerd", "--upstream", "quay.io")
    assert "\\n" not in containerd.stderr, containerd.stderr


def test_pip_config_for_pypiserver_says_reads_need_no_credentials_and_pip_proves_it(tmp_path, pypiserver):
    import os
    import sys

    from tests.fixtures.pypi import SimpleIndex, build_wheel

    index = SimpleIndex.serving([build_wheel(tmp_path / "wheels", "app", "1.0")])
    try:
        policy = tmp_path / "policy.yaml"
        policy.write_text(f"""\
version: 1
indexes:
  mirror: {{url: "{index.url}"}}
  internal: {{url: "{pypiserver.simple}", upload_url: "{pypiserver.url}", kind: pypiserver,
             auth: {{username: {pypiserver.username}, password: "{pypiserver.password}"}}}}
packages:
  - {{from: mirror, to: internal, requirements: [app], environments: [{{python: "3.12", platform: manylinux_2_28_x86_64}}]}}
audit: {{path: audit.jsonl}}
""")
        assert run_cli("sync", "-p", policy).exit_code == 0
    finally:
        index.stop()
    conf, notes = config_for(policy, "pip")
    assert "pypiserver's default (-a update) serves reads anonymously, so clients need none" in notes, notes
    assert "needs credentials to read" not in notes
    (tmp_path / "pip.conf").write_text(conf)
    # pip with exactly that file and no credentials anywhere (no netrc, no keyring) installs from it
    env = {**os.environ, "PIP_CONFIG_FILE": str(tmp_path / "pip.conf"), "HOME": str(tmp_path), "NETRC": "/dev/null",
           "PIP_KEYRING_PROVIDER": "disabled", "PIP_NO_INPUT": "1"}
    pip = subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--disable-pip-version-check",
                          "-d", str(tmp_path / "got"), "app==1.0"], env=env, capture_output=True, text=True, timeout=120)
    assert pip.returncode == 0, pip.stderr
    assert [p.name for p in (tmp_path / "got").iterdir()] == ["app-1.0-py3-none-any.whl"]
