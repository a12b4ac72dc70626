"""conda: and channels: in the policy: specs parsed as conda reads them, subdirs known, names
cross-checked, every error at file:line."""

import textwrap

import pytest

from regsync.errors import PolicyError
from tests.fixtures.policies import load_policy

POLICY = """\
version: 1
channels:
  tuna-forge: {url: https://mirrors.tuna.tsinghua.edu.cn/anaconda/cloud/conda-forge}
  tuna-main: {url: https://mirrors.tuna.tsinghua.edu.cn/anaconda/pkgs/main}
  internal-conda: {kind: directory, path: conda/internal}
  nexus-raw:
    kind: http
    url: https://nexus.example/repository/conda-raw
    auth: {username: sync, password: "${NEXUS_PASSWORD}"}
conda:
  - from: [tuna-forge, tuna-main]
    to: internal-conda
    platforms: [linux-64]
    specs: ["pytorch=2.9", "cuda-version=11.8", "numpy>=1.26,<2"]
    dependencies: true
    virtual_packages: {__cuda: "11.8", __glibc: "2.31"}
"""


def load(tmp_path, text, environ=None):
    path = tmp_path / "policy.yaml"
    path.write_text(textwrap.dedent(text))
    return load_policy(path, {"NEXUS_PASSWORD": "pw"} if environ is None else environ)


def error_of(tmp_path, text):
    with pytest.raises(PolicyError) as caught:
        load(tmp_path, text)
    return str(caught.value)


def test_the_issue_policy_loads(tmp_path):
    policy = load(tmp_path, POLICY).policy
    rule = policy.conda[0]
    assert rule.sources == ["tuna-forge", "tuna-main"]
    assert rule.virtual_packages == [{"__cuda": "11.8", "__glibc": "2.31"}]
    assert policy.channels["internal-conda"].path == tmp_path / "conda/internal"
    assert policy.channels["nexus-raw"].auth.password.get_secret_value() == "pw"


def test_a_single_source_and_several_virtual_package_sets(tmp_path):
    text = POLICY.replace("from: [tuna-forge, tuna-main]", "from: tuna-forge").replace(
        'virtual_packages: {__cuda: "11.8", __glibc: "2.31"}', 'virtual_packages: [{__cuda: "11.8"}, {__cuda: "12.4"}]')
    rule = load(tmp_path, text).policy.conda[0]
    assert rule.sources == ["tuna-forge"] and len(rule.virtual_packages) == 2


@pytest.mark.parametrize("old, new, line, words", [
    ('"numpy>=1.26,<2"', '"numpy >=1.26 <2"', 14, ["numpy >=1.26 <2", "not a match spec"]),
    ('"pytorch=2.9"', '"conda-forge::pytorch"', 14, ["names no channel"]),
    ("[linux-64]", "[linux-46]", 13, ["linux-46", "did you mean 'linux-64'"]),
    ("[tuna-forge, tuna-main]", "[tuna-forge, tuna-mian]", 11, ["unknown channel 'tuna-mian'"]),
    ("to: internal-conda", "to: tuna-main", 12, ["read-only"]),
    ("to: internal-conda", "to: nowhere", 12, ["unknown channel 'nowhere'"]),
    ('__cuda: "11.8"', "__cuda: 11.8", 16, ["quote the version"]),
    ('__cuda: "11.8"', 'cuda: "11.8"', 16, ["not a virtual package"]),
    ("dependencies: true", "depends: true", 15, ["unknown key 'depends'"]),
    ("{kind: directory, path: conda/internal}", "{kind: directory}", 5, ["kind: directory and a path"]),
])
def test_errors_name_the_line(tmp_path, old, new, line, words):
    assert old in POLICY
    message = error_of(tmp_path, POLICY.replace(old, new))
    assert f"policy.yaml:{line}" in message, message
    for word in words:
        assert word in message, message


def test_a_source_channel_takes_no_tls_or_auth_it_could_not_honour(tmp_path):
    tls = POLICY.replace("cloud/conda-forge}", "cloud/conda-forge, tls: {ca_file: ca.pem}}")
    assert "system trust store" in error_of(tmp_path, tls)
    auth = POLICY.replace("cloud/conda-forge}", "cloud/conda-forge, auth: {username: a, password: b}}")
    assert "auth: is for kind: http targets" in error_of(tmp_path, auth)


def test_a_source_channel_takes_no_credentials_in_its_url(tmp_path):
    message = error_of(tmp_path, POLICY.replace("https://mirrors.tuna", "https://u:secret@mirrors.tuna"))
    assert "credentials do not belong in a URL" in message and "secret" not in message


def test_client_config_maps_tuna_to_the_channels_clients_name(tmp_path):
    from tests.fixtures.policies import run_cli

    text = POLICY.replace("{kind: directory, path: conda/internal}",
                          "{kind: directory, path: conda/internal, url: https://conda.corp/internal}")
    path = tmp_path / "policy.yaml"
    path.write_text(text)
    env = {"NEXUS_PASSWORD": "pw"}
    pixi = run_cli("client-config", "-p", path, "--for", "pixi", env=env)
    assert pixi.exit_code == 0, pixi.output
    assert '"https://conda.anaconda.org/conda-forge/" = ["https://conda.corp/internal/"]' in pixi.stdout
    assert '"https://repo.anaconda.com/pkgs/main/" = ["https://conda.corp/internal/"]' in pixi.stdout
    assert '"https://mirrors.tuna.tsinghua.edu.cn/anaconda/cloud/conda-forge/" = ' in pixi.stdout
    check = run_cli("policy", "check", "-p", path, env=env)
    assert check.exit_code == 0, check.output
    assert "conda   tuna-forge, tuna-main -> internal-conda  [pytorch=2.9, cuda-version=11.8, numpy>=1.26,<2]" \
           "; linux-64 + noarch; closure for __cuda=11.8 __glibc=2.31" in check.output


def test_condarc_maps_a_channel_name_when_the_mirror_is_served_under_it(tmp_path):
    import yaml

    from tests.fixtures.policies import run_cli

    env = {"NEXUS_PASSWORD": "pw"}
    path = tmp_path / "policy.yaml"
    path.write_text(POLICY.replace("{kind: directory, path: conda/internal}",
                                   "{kind: directory, path: conda/conda-forge, url: https://conda.corp/conda-forge}"))
    rc = yaml.safe_load(run_cli("client-config", "-p", path, "--for", "conda", env=env).stdout)
    assert rc["channels"] == ["https://conda.corp/conda-forge"] and rc["channel_priority"] == "strict"
    assert rc["custom_channels"] == {"conda-forge": "https://conda.corp"}
    path.write_text(POLICY.replace("{kind: directory, path: conda/internal}",
                                   "{kind: directory, path: conda/internal, url: https://conda.corp/internal}"))
    plain = run_cli("client-config", "-p", path, "--for", "conda", env=env)
    assert "custom_channels" not in yaml.safe_load(plain.stdout) and "still means upstream" in plain.output


def test_attestations_need_a_keyless_trust_entry_with_a_trusted_root(tmp_path):
    message = error_of(tmp_path, POLICY + "    verify: {attestations: required}\n")
    assert "policy.yaml:17" in message and "needs trust" in message
    (tmp_path / "cosign.pub").write_text("x")
    keyed = POLICY.replace("conda:\n", "trust:\n  k: {cosign_key: cosign.pub}\nconda:\n") + \
        "    verify: {attestations: optional, trust: [k]}\n"
    assert "must be keyless with a trusted_root" in error_of(tmp_path, keyed)


def _policy_check(tmp_path, text):
    from click.testing import CliRunner

    from regsync.cli import cli
    path = tmp_path / "policy.yaml"
    path.write_text(textwrap.dedent(text))
    return path, CliRunner().invoke(cli, ["policy", "check", "-p", str(path)], env={"NEXUS_PASSWORD": "pw"})


def test_a_trust_entry_used_only_by_a_conda_rule_has_its_trusted_root_checked(tmp_path):
    """Issue 23's drift bug: the same entry on a package rule failed with file:line; on a conda rule it passed."""
    (tmp_path / "root.json").write_text("not json {")
    keyless = POLICY.replace("conda:\n", "trust:\n  forge:\n    keyless: {issuer: https://token.actions."
                             "githubusercontent.com, identity_regex: '^https://github\\.com/conda-forge/.*$'}\n"
                             "    trusted_root: root.json\nconda:\n") + \
        "    verify: {attestations: required, trust: [forge]}\n"
    path, result = _policy_check(tmp_path, keyless)
    assert result.exit_code == 2, result.output
    assert f"{path}:13: " in result.output and "is not JSON" in result.output, result.output
    assert "Traceback" not in result.output


def test_a_conda_http_target_s_missing_ca_file_is_a_policy_error(tmp_path):
    """Issue 23's drift bug: a missing tls.ca_file on a conda HTTP target passed policy check."""
    text = POLICY.replace("auth: {username: sync", "tls: {ca_file: missing-ca.pem}\n    auth: {username: sync")
    path, result = _policy_check(tmp_path, text)
    assert result.exit_code == 2, result.output
    assert f"{path}:9: " in result.output and "cannot read" in result.output, result.output
