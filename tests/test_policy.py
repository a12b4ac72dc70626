"""Policy loading: every error names file:line; secrets never default to empty."""

import subprocess
import sys
import textwrap

import pytest
from click.testing import CliRunner

from regsync.cli import cli
from regsync.errors import PolicyError
from tests.fixtures.policies import load_policy

BASE = """\
version: 1
registries:
  src: {url: "http://127.0.0.1:5000"}
  dst:
    url: https://registry.example
    auth: {username: sync, password: "${DST_PASSWORD}"}
    tls: {ca_file: certs/ca.pem}
images:
  - from: src/pytorch/cuda
    to: dst/ai/cuda
    tags:
      include: ["2.9-cuda11.8-ubuntu20.04", "glob:2.9-*"]
"""


def write(tmp_path, text, name="policy.yaml"):
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def error_of(path, environ=None):
    with pytest.raises(PolicyError) as caught:
        load_policy(path, {} if environ is None else environ)
    return str(caught.value)


def test_valid_policy_resolves_relative_paths_and_env(tmp_path):
    loaded = load_policy(write(tmp_path, BASE), {"DST_PASSWORD": "s3cret"})
    registry = loaded.policy.registries["dst"]
    assert registry.tls.ca_file == tmp_path / "certs/ca.pem"
    assert registry.auth.password.get_secret_value() == "s3cret"
    assert "s3cret" not in repr(loaded.policy)
    assert len(loaded.sha256) == 64


def test_unknown_key_names_its_line(tmp_path):
    path = write(tmp_path, BASE + "      tagz: [x]\n")
    assert error_of(path, {"DST_PASSWORD": "x"}) == f"{path}:13: unknown key 'tagz'"


def test_missing_env_var_is_an_error_not_an_empty_password(tmp_path):
    path = write(tmp_path, BASE)
    assert error_of(path) == f"{path}:6: environment variable 'DST_PASSWORD' is not set"


def test_unknown_registry_reference(tmp_path):
    path = write(tmp_path, BASE.replace("to: dst/ai/cuda", "to: harbor/ai/cuda"))
    assert error_of(path, {"DST_PASSWORD": "x"}).startswith(f"{path}:10: unknown registry 'harbor'")


@pytest.mark.parametrize("snippet, line, fragment", [
    ('include: ["re:([bad"]', 12, "invalid regular expression"),
    # cosign's Go regexp (RE2) has no lookaround and no back-references: refused as cosign refuses them
    ('include: ["re:^(?!rc).*$"]', 12, "RE2 syntax"),
    ('include: ["re:^(a)\\\\1$"]', 12, "RE2 syntax"),
    ('include: ["semver:>=banana"]', 12, "not a version range"),
    ("include: []", 12, "an empty include selects nothing"),
])
def test_bad_tag_patterns(tmp_path, snippet, line, fragment):
    path = write(tmp_path, BASE.replace('include: ["2.9-cuda11.8-ubuntu20.04", "glob:2.9-*"]', snippet))
    message = error_of(path, {"DST_PASSWORD": "x"})
    assert message.startswith(f"{path}:{line}:") and fragment in message


def test_invalid_yaml_and_duplicate_keys(tmp_path):
    assert error_of(write(tmp_path, "version: 1\nimages: [\n")).startswith(f"{tmp_path / 'policy.yaml'}:")
    dup = write(tmp_path, "version: 1\nversion: 1\n", "dup.yaml")
    assert error_of(dup) == f"{dup}:2: duplicate key 'version'"


def write_ca(path):
    """A real self-signed CA certificate (PEM), as a tls.ca_file must be."""
    from datetime import datetime, timedelta, timezone

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "policy test CA")])
    now = datetime.now(timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(1).not_valid_before(now).not_valid_after(now + timedelta(days=1)).sign(key, hashes.SHA256()))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))


def test_policy_check_cli(tmp_path):
    path = write(tmp_path, BASE)
    write_ca(tmp_path / "certs/ca.pem")
    runner = CliRunner()
    ok = runner.invoke(cli, ["policy", "check", "-p", str(path)], env={"DST_PASSWORD": "hunter2"})
    assert ok.exit_code == 0, ok.output
    assert "src/pytorch/cuda -> dst/ai/cuda" in ok.output and "hunter2" not in ok.output
    bad = runner.invoke(cli, ["policy", "check", "-p", str(path)], env={"DST_PASSWORD": None})
    assert bad.exit_code == 2
    assert "DST_PASSWORD" in bad.output and "Traceback" not in bad.output
    missing = runner.invoke(cli, ["policy", "check", "-p", str(tmp_path / "nope.yaml")])
    assert missing.exit_code == 2 and "cannot read policy" in missing.output


# Property: whatever YAML a user writes, loading gives a policy or one PolicyError with a line.
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

import yaml  # noqa: E402

KEYS = ["version", "registries", "images", "packages", "indexes", "trust", "audit", "url", "auth", "tls",
        "from", "to", "tags", "include", "exclude", "latest", "pin", "platforms", "verify", "gates", "mirrors",
        "username", "password", "kind", "path", "max_size", "src", "dst", "tagz", "x"]
scalars = st.one_of(st.none(), st.booleans(), st.integers(-5, 5), st.sampled_from(
    ["1", "http://127.0.0.1:1", "src/a/b", "dst/c", "glob:*", "re:(", "semver:>=1", "12GiB", "${NOPE}", "$$"]))
documents = st.recursive(scalars, lambda inner: st.lists(inner, max_size=3) |
                         st.dictionaries(st.sampled_from(KEYS), inner, max_size=5), max_leaves=25)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.sampled_from(KEYS), documents, max_size=6))
def test_any_document_loads_or_fails_with_a_line(tmp_path_factory, document):
    path = tmp_path_factory.mktemp("fuzz") / "policy.yaml"
    path.write_text(yaml.safe_dump(document))
    try:
        load_policy(path, {})
    except PolicyError as exc:
        assert str(exc).startswith(f"{path}:")


@pytest.mark.parametrize("where", ["registries", "indexes"])
def test_credentials_in_a_url_are_refused_without_echoing_them(tmp_path, where):
    """A URL is printed in plans, logs and audit records: a password in it would leak there."""
    key = "registries: {r: {url: 'https://sync:${TOKEN}@registry.example'}}" if where == "registries" else \
        "indexes: {r: {url: 'https://pypi.example/simple/', upload_url: 'https://sync:${TOKEN}@pypi.example/'}}"
    path = write(tmp_path, f"version: 1\n{key}\n")
    message = error_of(path, {"TOKEN": "hunter2-secret"})
    assert "policy.yaml:2" in message and "use auth:" in message, message
    assert "hunter2-secret" not in message


@pytest.mark.parametrize("content, fragment", [
    (None, "cannot read"),
    (b"not a certificate\n", "holds no PEM certificate"),
])
def test_policy_check_opens_the_ca_file(tmp_path, content, fragment):
    """A CA file that plan would fail on (`internal error: OSError …` before) fails policy check with file:line."""
    path = write(tmp_path, BASE)
    if content is not None:
        (tmp_path / "certs").mkdir()
        (tmp_path / "certs/ca.pem").write_bytes(content)
    for verb in (["policy", "check"], ["plan"]):
        result = CliRunner().invoke(cli, [*verb, "-p", str(path)], env={"DST_PASSWORD": "x"})
        assert result.exit_code == 2, result.output
        assert f"{path}:7: " in result.output and fragment in result.output
        assert "internal error" not in result.output and "Traceback" not in result.output


def test_policy_check_parses_trust_keys(tmp_path):
    write_ca(tmp_path / "certs/ca.pem")
    (tmp_path / "release.pub").write_text("-----BEGIN PUBLIC KEY-----\nnot base64\n-----END PUBLIC KEY-----\n")
    path = write(tmp_path, BASE.replace("images:", "trust:\n  release: {cosign_key: release.pub}\nimages:")
                 + "    verify: {signature: required, trust: [release]}\n")
    result = CliRunner().invoke(cli, ["policy", "check", "-p", str(path)], env={"DST_PASSWORD": "x"})
    assert result.exit_code == 2
    assert f"{path}:9: " in result.output and "not a PEM public key" in result.output


@pytest.mark.parametrize("python, platform, fragment", [
    ('"3.1l"', "manylinux_2_28_x86_64", "python '3.1l' is not a Python version"),
    ("3.10", "manylinux_2_28_x86_64", "is a number in YAML"),   # unquoted: YAML reads the number 3.1
    ('"3.11"', "manylinux_2_28_x86-64", "did you mean 'manylinux_2_28_x86_64'?"),
    ('"3.11"', "linux-64", "not a wheel platform tag"),
])
def test_environments_are_validated_at_load(tmp_path, python, platform, fragment):
    path = write(tmp_path, f"""\
        version: 1
        indexes:
          a: {{url: "https://pypi.example/simple/"}}
          b: {{kind: directory, path: tree}}
        packages:
          - from: a
            to: b
            requirements: [numpy]
            environments: [{{python: {python}, platform: {platform}}}]
        """)
    message = error_of(path)
    assert message.startswith(f"{path}:9: ") and fragment in message


def test_an_empty_password_from_the_environment_is_refused_at_load(tmp_path):
    path = write(tmp_path, BASE)
    message = error_of(path, {"DST_PASSWORD": ""})
    assert message.startswith(f"{path}:6: ") and "the password is empty" in message


def test_latest_alone_means_the_newest_n_of_every_tag(tmp_path):
    path = write(tmp_path, BASE.replace('include: ["2.9-cuda11.8-ubuntu20.04", "glob:2.9-*"]', "latest: 2"))
    tags = load_policy(path, {"DST_PASSWORD": "x"}).policy.images[0].tags
    assert (tags.include, tags.latest) == (["glob:*"], 2)
    missing = write(tmp_path, BASE.replace('include: ["2.9-cuda11.8-ubuntu20.04", "glob:2.9-*"]', "exclude: [x]"))
    assert "tags needs include" in error_of(missing, {"DST_PASSWORD": "x"})


def test_a_mistyped_pattern_prefix_is_named(tmp_path):
    """`semvr:>=3.11` was taken as an exact tag and selected nothing, silently."""
    path = write(tmp_path, BASE.replace('include: ["2.9-cuda11.8-ubuntu20.04", "glob:2.9-*"]',
                                        'include: ["semvr:>=3.11"]'))
    message = error_of(path, {"DST_PASSWORD": "x"})
    assert message.startswith(f"{path}:12: ") and "unknown pattern prefix 'semvr:'" in message
    assert "did you mean semver:?" in message


# Unanchored regexes keep cosign's re.search meaning, but policy check and plan say what they match.
LINTED = """\
version: 1
registries:
  src: {url: "http://127.0.0.1:5000"}
  dst: {url: "http://127.0.0.1:5001"}
trust:
  ci:
    keyless:
      issuer: https://token.actions.githubusercontent.com
      identity_regex: "%s"
images:
  - from: src/pytorch/cuda
    to: dst/ai/cuda
    tags:
      include: ["%s"]
      exclude: ["%s"]
"""


def test_policy_check_warns_about_unanchored_regexes_with_file_and_line(tmp_path):
    path = write(tmp_path, LINTED % (r"https://github\\.com/pytorch/", r"re:2\\.9", r"re:rc"))
    result = CliRunner().invoke(cli, ["policy", "check", "-p", str(path)])
    assert result.exit_code == 0, result.output
    assert (f"{path}:14: re:2\\.9 is unanchored: it also matches 12.9-rc; write ^…$ to match the whole tag"
            in result.output), result.output
    assert f"{path}:15: re:rc is unanchored" in result.output
    assert f"{path}:9: identity_regex https://github\\.com/pytorch/ is unanchored" in result.output
    assert "Traceback" not in result.output


@pytest.mark.parametrize("regex", [r"^2\\.9$", r"\\A2\\.9\\z", r"^(2\\.9|2\\.10)$"])
def test_anchored_regexes_draw_no_warning(tmp_path, regex):
    path = write(tmp_path, LINTED % (r"^https://github\\.com/pytorch/.*$", "re:" + regex, "re:" + regex))
    result = CliRunner().invoke(cli, ["policy", "check", "-p", str(path)])
    assert result.exit_code == 0 and "WARNING" not in result.output, result.output


@pytest.mark.parametrize("regex, says", [(r"^2\\.9", "has no $"), (r"2\\.9$", "has no ^"),
                                         (r"^2\\.9|2\\.10$", "top-level |")])
def test_half_anchored_regexes_are_named_for_the_missing_side(tmp_path, regex, says):
    path = write(tmp_path, LINTED % (r"^https://x$", "re:" + regex, "re:^x$"))
    result = CliRunner().invoke(cli, ["policy", "check", "-p", str(path)])
    assert result.exit_code == 0, result.output
    assert f"{path}:14: re:{regex.replace(chr(92) * 2, chr(92))} " in result.output and says in result.output, result.output


def test_regex_semantics_stay_cosigns_search(tmp_path):
    """The warning is advice: matching stays re.search, as cosign's --certificate-identity-regexp."""
    from regsync.kinds.image.tags import select_tags
    assert select_tags(["2.9", "12.9-rc", "3.0"], [r"re:2\.9"]) == ["2.9", "12.9-rc"]


def test_plan_warns_once_on_stderr(tmp_path, registry, registry2):
    from tests.fixtures.policies import write_policy
    path = write_policy(tmp_path, registry.url, registry2.url, "lint/none", tags=[r"re:2\.9"])
    result = CliRunner().invoke(cli, ["--no-progress", "plan", "-p", str(path)])
    assert "Traceback" not in result.output
    assert result.stderr.count(r"re:2\.9 is unanchored") == 1, result.stderr
    assert "unanchored" not in result.stdout


def test_a_password_basic_auth_cannot_carry_is_refused_at_load_without_echoing_it(tmp_path):
    """A `€` in a password crashed inside requests' Basic-auth encoding (latin-1) at the first request."""
    path = write(tmp_path, BASE)
    message = error_of(path, {"DST_PASSWORD": "pa\u20acss-canary"})
    assert message.startswith(f"{path}:6: ") and "HTTP Basic authentication cannot carry" in message
    assert "canary" not in message


IMAGE_PLATFORMS = """\
version: 1
registries:
  src: {url: "http://127.0.0.1:5000"}
  dst: {url: "http://127.0.0.1:5001"}
images:
  - from: src/pytorch/cuda
    to: dst/ai/cuda
    tags: {include: ["2.9"]}
    platforms: [linux/amd64, linux/arm64/v8, linux/arm/v7, linux/arm/v5, linux/ppc64le, windows/amd64]
    gates: {platforms_required: [linux/amd64, linux/riscv64/rva22u64]}
"""


@pytest.mark.parametrize("old, new, line, words", [
    ("linux/amd64, linux/arm64/v8", "linux/amd46, linux/arm64/v8", 9,
     ["'linux/amd46'", "no known architecture 'amd46'", "did you mean linux/amd64?"]),
    ("linux/arm/v7,", "linux/arm/v9,", 9, ["no known arm variant 'v9'", "did you mean linux/arm/v7?"]),
    ("windows/amd64", "windwos/amd64", 9, ["no known os 'windwos'", "did you mean windows/amd64?"]),
    ("linux/ppc64le", "linux/s390x/z15", 9, ["the spec lists none for s390x"]),
    ("linux/ppc64le", "amd64", 9, ["is not os/arch[/variant]"]),
    ("[linux/amd64, linux/riscv64", "[linux/arm46, linux/riscv64", 10, ["did you mean linux/arm64?"]),
])
def test_an_image_platform_typo_is_a_policy_error_with_a_suggestion(tmp_path, old, new, line, words):
    """Issue 21, item 6: the OCI image-index spec's os/arch/variant values, checked at load."""
    assert load_policy(write(tmp_path, IMAGE_PLATFORMS), {}).policy.images[0].platforms[0] == "linux/amd64"
    path = write(tmp_path, IMAGE_PLATFORMS.replace(old, new), name="typo.yaml")
    message = error_of(path)
    assert message.startswith(f"{path}:{line}: "), message
    for word in words:
        assert word in message, message


def test_policy_check_refuses_a_platform_typo_with_exit_2(tmp_path):
    path = write(tmp_path, IMAGE_PLATFORMS.replace("[linux/amd64,", "[linux/amd46,", 1))
    checked = CliRunner().invoke(cli, ["policy", "check", "-p", str(path)])
    assert checked.exit_code == 2, checked.output
    assert f"{path}:9:" in checked.output and "did you mean linux/amd64?" in checked.output
    assert "Traceback" not in checked.output


@pytest.mark.parametrize("where, line", [("from: tree", 7), ("verify: {provenance_from: tree}", 10)])
def test_a_directory_index_read_as_a_source_is_a_policy_error_with_its_line(tmp_path, where, line):
    """A kind: directory index is a target tree: naming it where packages are read from failed an
    assert at plan time; policy check and plan say so with file:line (exit 2)."""
    rule = ["from: tree", "to: dst", "requirements: [numpy]"]
    if where != "from: tree":
        rule = ["from: a", "to: dst", "requirements: [numpy]", where]
    path = write(tmp_path, "version: 1\nindexes:\n  a: {url: \"https://pypi.example/simple/\"}\n"
                           "  tree: {kind: directory, path: tree}\n  dst: {kind: directory, path: out}\npackages:\n"
                 + "".join(f"  {'-' if n == 0 else ' '} {text}\n" for n, text in enumerate(rule)))
    message = error_of(path)
    assert message.startswith(f"{path}:{line}: ") and "index 'tree' is a kind: directory target" in message, message
    for verb in (["policy", "check"], ["plan"]):
        result = CliRunner().invoke(cli, [*verb, "-p", str(path)])
        assert result.exit_code == 2, result.output
        assert f"{path}:{line}: " in result.output and "Traceback" not in result.output


@pytest.mark.parametrize("section, entry, flavour", [
    ("registries", '{url: "https://r.example", kind: nexus}', "nexus"),
    ("indexes", '{url: "https://i.example/simple/", kind: devpi}', "devpi"),
    ("channels", '{path: channel, kind: directory}', "directory"),
])
def test_a_server_s_kind_key_is_its_flavour_and_only_kind_names_it(tmp_path, section, entry, flavour):
    """`kind:` of a registry, an index or a channel is the server's flavour (a kind is a kind of
    artifact in the code); the code's name for it is no key of the YAML."""
    path = write(tmp_path, f"version: 1\n{section}:\n  it: {entry}\n")
    assert getattr(load_policy(path, {}).policy, section)["it"].flavour == flavour
    path.write_text(path.read_text().replace("kind:", "flavour:"))
    assert error_of(path) == f"{path}:3: unknown key 'flavour'"


# Hostile or clumsy files a user may hand to -p: one line with file:line, exit 2, never a traceback or a hang.
GOOD = BASE.replace("${DST_PASSWORD}", "x").replace("    tls: {ca_file: certs/ca.pem}\n", "")


@pytest.mark.parametrize("name, text, expected", [
    ("control character", GOOD.replace("pytorch/cuda", "pytorch/\x01cuda", 1),
     "policy.yaml:8: invalid YAML: character U+0001 is not allowed"),
    ("NUL byte", GOOD.replace("ai/cuda", "ai/\x00cuda"), "policy.yaml:9: invalid YAML: character U+0000"),
    ("python tag", GOOD + "x: !!python/name:os.system\n", "policy.yaml:12: invalid YAML: could not determine a "
                                                          "constructor for the tag"),
    ("unknown local tag", GOOD.replace('"glob:2.9-*"', "!custom 2.9"), "policy.yaml:11: invalid YAML: could not "
                                                                      "determine a constructor for the tag '!custom'"),
    ("deep nesting", "version: 1\nx: " + "[" * 5000 + "]" * 5000 + "\n", "invalid YAML: nested more than 64 levels"),
    ("deep mappings", "version: 1\nx: " + "{a: " * 3000 + "1" + "}" * 3000 + "\n", "nested more than 64 levels"),
    ("billion laughs", "version: 1\nx0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n" + "".join(
        f"x{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]\n" for i in range(1, 12)), "expands to more than 200000 values"),
    ("a 5000-digit number", GOOD + "x: " + "9" * 5000 + "\n", "policy.yaml:12: invalid value: Exceeds the limit"),
    ("an impossible date", GOOD + "x: 2026-13-45\n", "policy.yaml:12: invalid value: month must be in 1..12"),
])
def test_a_hostile_policy_file_is_one_clear_error(tmp_path, name, text, expected):
    path = tmp_path / "policy.yaml"
    path.write_bytes(text.encode())
    result = CliRunner().invoke(cli, ["policy", "check", "-p", str(path)])
    assert result.exit_code == 2, (name, result.output)
    assert expected in result.output and "internal error" not in result.output, (name, result.output)
    assert len(result.output.strip().splitlines()) == 1, result.output


def test_a_policy_that_is_too_large_a_fifo_or_dev_zero_is_refused_without_reading_it_all(tmp_path):
    import os
    import time

    huge = tmp_path / "huge.yaml"
    with huge.open("wb") as handle:
        handle.write(GOOD.encode() + b"# " + b"x" * (17 << 20) + b"\n")
    fifo = tmp_path / "fifo.yaml"
    os.mkfifo(fifo)   # nobody writes to it: reading must not wait for a writer
    for path, expected in ((huge, "larger than 16 MiB: not a policy file"), ("/dev/zero", "larger than 16 MiB"),
                           (fifo, "fifo.yaml: the policy is empty")):
        started = time.monotonic()
        result = CliRunner().invoke(cli, ["policy", "check", "-p", str(path)])
        assert result.exit_code == 2 and expected in result.output, result.output
        assert time.monotonic() - started < 10


@pytest.mark.parametrize("size", ["-5", "'99999999999999999999999999999999999999999999999999GiB'"])
def test_a_size_below_zero_or_beyond_4_eib_is_a_policy_error(tmp_path, size):
    path = tmp_path / "policy.yaml"
    path.write_text(GOOD + f"    gates: {{max_size: {size}}}\n")
    assert "images.0.gates.max_size: " in error_of(path) and "is not a size from 0 to 4 EiB" in error_of(path)


@pytest.mark.parametrize("url, expected", [
    ("http://127.0.0.1:99999", "port out of range 0-65535"), ("http://h:abc", "port could not be cast"),
    ("http://127.0.0.1:0", "is not a valid URL"), ("http://exa mple.com", "is not a valid URL")])
def test_a_registry_url_with_an_impossible_port_or_a_space_is_a_policy_error(tmp_path, url, expected):
    """Said at load with file:line, not found out at plan time as "sent an unusable response: a
    redirect to an invalid URL" (what requests makes of such a URL)."""
    path = tmp_path / "policy.yaml"
    path.write_text(GOOD.replace("http://127.0.0.1:5000", url))
    message = error_of(path)
    assert "policy.yaml:3: registries.src.url: " in message and expected in message, message


@pytest.mark.parametrize("content, expected", [(b"[" * 100_000 + b"]" * 100_000, "is not JSON (a trusted_root.json is)"),
                                               (b"[]", "is not a JSON object (a trusted_root.json is one")])
def test_a_trusted_root_that_is_no_json_object_is_a_policy_error(tmp_path, content, expected):
    (tmp_path / "trusted_root.json").write_bytes(content)
    path = tmp_path / "policy.yaml"
    path.write_text(GOOD + "    verify: {signature: required, trust: [ci]}\ntrust:\n  ci:\n"
                    "    keyless: {issuer: https://token.actions.githubusercontent.com, identity: a}\n"
                    "    trusted_root: trusted_root.json\n")
    result = CliRunner().invoke(cli, ["policy", "check", "-p", str(path)])
    assert result.exit_code == 2 and expected in " ".join(result.output.split()), result.output
    assert "internal error" not in result.output


def test_an_identity_regex_cosign_would_refuse_is_a_policy_error_at_its_line(tmp_path):
    """Before, an identity_regex was first compiled when a signature was checked (Python's re, which
    also takes a lookahead Go's regexp refuses)."""
    path = write(tmp_path, LINTED % (r"^https://github\\.com/(?=pytorch)", r"re:^2\\.9$", r"re:^rc$"))
    message = error_of(path)
    assert message.startswith(f"{path}:") and "RE2 syntax" in message, message
    assert int(message.split(":")[1]) in (6, 7, 8, 9), message


def test_a_regex_that_backtracks_exponentially_is_matched_in_linear_time():
    """`^(a+)+$` against a 128-character tag a hostile registry lists: Python's re backtracks for
    longer than any run may last; RE2 (as cosign's Go regexp) answers at once. Run apart, so that a
    regression is a timeout here, not a hung suite."""
    code = ("from regsync.policy.patterns import compile_pattern\n"
            "tag = 'a' * 127 + '-'\n"
            "assert not compile_pattern('re:^(a+)+$')(tag)\n"
            "from regsync.policy.regex import compile_regex\n"
            "assert compile_regex('^(x+x+)+y$').search('x' * 5000) is None\n"
            "print('answered')")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30)
    assert result.returncode == 0 and result.stdout.strip() == "answered", result.stderr
