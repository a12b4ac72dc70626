"""What an operator types and reads around the verbs (issue 24): global options where people put
them, help that names every kind, and a line saying what `plan -o` and `export -o` wrote where."""

import json

import pytest

from tests.fixtures.oci_layout import seed, write_image
from tests.fixtures.policies import run_cli, write_policy


def _policy(tmp_path, registry, registry2, unique_repo, oci_dir, tags=("1.0",)):
    for n, tag in enumerate(tags):
        write_image(oci_dir, tag, layer_size=3_000, seed=40 + n)
        seed(registry, unique_repo, tag, oci_dir)
    return write_policy(tmp_path, registry.url, registry2.url, unique_repo, tags=list(tags))


def test_global_options_after_the_verb_are_accepted(tmp_path, registry, registry2, unique_repo, oci_dir):
    policy = _policy(tmp_path, registry, registry2, unique_repo, oci_dir)
    quiet = run_cli("sync", "-q", "-p", policy)
    assert quiet.exit_code == 0 and quiet.output == "", quiet.output  # -q after the verb: a silent success
    logged = run_cli("sync", "-p", policy, "--log-format", "json", "-v")
    assert logged.exit_code == 0, logged.output
    lines = [json.loads(line) for line in logged.stderr.splitlines()]
    assert [line["event"] for line in lines if line["event"] == "summary"] == ["summary"]
    nested = run_cli("audit", "list", tmp_path / "audit.jsonl", "--log-format=json", "--json", "-qq")
    assert nested.exit_code == 0 and len(nested.stdout.splitlines()) == 7, nested.output  # two framed runs
    # a verb option's value is never taken for a global option
    value = run_cli("audit", "list", tmp_path / "audit.jsonl", "--artifact", "-q")
    assert value.exit_code == 0, value.output  # hoisted, `--artifact` would have no value: exit 2
    unknown = run_cli("sync", "-p", policy, "--no-such-flag")
    assert unknown.exit_code == 2 and "No such option" in unknown.output


def test_help_names_every_kind_of_artifact():
    result = run_cli("--help")
    assert result.exit_code == 0
    text = " ".join(result.output.split())
    assert "container images" in text and "Python packages" in text and "conda packages" in text, text
    assert "may also follow the verb" in text


def test_plan_output_says_what_was_written_where(tmp_path, registry, registry2, unique_repo, oci_dir):
    policy = _policy(tmp_path, registry, registry2, unique_repo, oci_dir, tags=("1.0", "2.0"))
    saved = tmp_path / "reviewed" / "plan.json"
    saved.parent.mkdir()
    result = run_cli("plan", "-p", policy, "-o", saved, "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["items"]  # stdout stays the JSON alone
    assert (f"plan written to {saved}: 2 item(s), 2 to apply, 0 error(s); "
            f"apply exactly this with: regsync sync -p {policy} --plan {saved}") in result.stderr, result.stderr
    assert json.loads(saved.read_text())["items"]
    quiet = run_cli("-q", "plan", "-p", policy, "-o", saved)
    assert "plan written" not in quiet.stderr  # -q: only what needs a human


def test_export_output_says_what_was_written_where_and_whether_it_is_signed(tmp_path, registry, registry2,
                                                                            unique_repo, oci_dir):
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    policy = _policy(tmp_path, registry, registry2, unique_repo, oci_dir)
    bundle = tmp_path / "bundle"
    unsigned = run_cli("export", "-p", policy, "-o", bundle)
    assert unsigned.exit_code == 0, unsigned.output
    [line] = [line for line in unsigned.stderr.splitlines() if line.startswith("bundle written")]
    files = [p for p in bundle.rglob("*") if p.is_file()]
    assert line.startswith(f"bundle written to {bundle}: {len(files)} file(s), ") and "not signed" in line, line
    assert f"cd {bundle} && sha256sum -c SHA256SUMS" in line
    key = tmp_path / "bundle.key"
    key.write_bytes(ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    signed = run_cli("export", "-p", policy, "-o", bundle, "--sign-key", key)
    assert signed.exit_code == 0, signed.output
    assert f"signed with {key} (bundle.json.sig, SHA256SUMS.sig)" in signed.stderr, signed.stderr


def _public_key(path):
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    path.write_bytes(ec.generate_private_key(ec.SECP256R1()).public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))


def test_policy_check_shows_excludes_and_what_each_rule_requires_of_signatures(tmp_path, registry, registry2):
    _public_key(tmp_path / "release.pub")
    policy = write_policy(tmp_path, registry.url, registry2.url, "team/app",
                          tags={"include": ["glob:1.*"], "exclude": ["glob:*-rc*"]},
                          rule_extra='''    verify:
      signature: required
      trust: [release]
      require_attestations: [{type: "https://slsa.dev/provenance/v1", trust: [release]}]
  - {from: src/team/tool, to: dst/team/tool, tags: {include: ["2.0"]}}
''')
    policy.write_text(policy.read_text().replace("images:", "trust:\n  release: {cosign_key: release.pub}\nimages:"))
    result = run_cli("policy", "check", "-p", policy)
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    at = lines.index("  image   src/team/app -> dst/team/app  [glob:1.*]; exclude [glob:*-rc*]")
    assert lines[at + 1].split() == ["signature", "required,", "by", "one", "of:", "release;", "attestation",
                                     "https://slsa.dev/provenance/v1", "required,", "trust", "release"], lines
    at = lines.index("  image   src/team/tool -> dst/team/tool  [2.0]")
    assert lines[at + 1].strip() == "signature off (not checked); no attestation required"


def test_a_policy_with_several_errors_reports_all_of_them_in_one_pass(tmp_path, registry, registry2):
    policy = write_policy(tmp_path, registry.url, registry2.url, "team/app", tags={"include": ["1.0"], "exlude": []},
                          src_options=", tsl: {}", rule_extra="    verify: {signature: requird}\n")
    result = run_cli("policy", "check", "-p", policy)
    assert result.exit_code == 2
    [line] = result.stderr.splitlines()  # still one line
    assert line.startswith(f"error: {policy}: 3 errors: line 3: unknown key 'tsl'; line 8: unknown key 'exlude'; "
                           "line 9: "), line
    assert "signature" in line.split("line 9: ")[1]
    one = write_policy(tmp_path, registry.url, registry2.url, "team/app", src_options=", tsl: {}", name="one.yaml")
    single = run_cli("policy", "check", "-p", one)
    assert single.stderr.strip() == f"error: {one}:3: unknown key 'tsl'"  # one error reads as before


def test_plan_compact_shows_changes_one_line_each_with_the_signer(tmp_path, registry, registry2, unique_repo, oci_dir,
                                                                  monkeypatch):
    import zlib

    from rich.console import Console

    from regsync import console
    from tests.fixtures.cosign import make_key, sign, write_public_key

    key = make_key("ecdsa")
    fingerprint = write_public_key(key, tmp_path / "cosign.pub")
    images = {tag: write_image(oci_dir, tag, seed=zlib.crc32(f"{unique_repo}{tag}".encode()))
              for tag in ("signed", "unsigned", "signed-2")}
    for tag in images:
        seed(registry, unique_repo, tag, oci_dir)
    for tag in ("signed", "signed-2"):
        sign(registry, unique_repo, images[tag].index_digest, key)
    short = f"c/{zlib.crc32(unique_repo.encode()):08x}"  # a target as short as real ones, so the signer fits
    policy = write_policy(tmp_path, registry.url, registry2.url, unique_repo, short, tags=["signed", "unsigned"],
                          rule_extra="    verify: {signature: required, trust: [release]}\n")
    policy.write_text(policy.read_text().replace("images:", "trust:\n  release: {cosign_key: cosign.pub}\nimages:"))
    assert run_cli("sync", "-p", policy).exit_code == 3
    policy.write_text(policy.read_text().replace('["signed", "unsigned"]', '["signed", "unsigned", "signed-2"]'))
    monkeypatch.setattr(console, "stdout", Console(soft_wrap=True, width=100))  # a 100-column terminal
    result = run_cli("plan", "-p", policy, "--compact")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    rows = [line for line in lines if line.startswith(("copy ", "refuse ", "update ", "error "))]
    assert len(rows) == 2 and all(len(line) <= 100 for line in rows), result.stdout  # one line per change
    [copy] = [row for row in rows if "copy" in row]
    assert f"dst/{short}:signed-2" in copy and f"signed by release ({fingerprint[:19]}…)" in copy, copy
    [refuse] = [row for row in rows if "refuse" in row]
    assert f"dst/{short}:unsigned" in refuse and "  unsigned" in refuse, refuse
    verbose = run_cli("-v", "plan", "-p", policy, "--compact")  # -v: the whole reason
    [whole] = [line for line in verbose.stdout.splitlines() if line.startswith("refuse ")]
    assert len(whole) > len(refuse) or not refuse.endswith("…"), (whole, refuse)
    assert not any(":signed " in line and "skip" in line for line in lines)  # the unchanged row is left out
    assert "(not shown: 1 unchanged; full reasons: --json or -v)" in " ".join(result.stdout.split())
    full = run_cli("plan", "-p", policy)  # the full table has the signer too, and the skip row
    assert "skip" in full.stdout and "┃ signer" in full.stdout and "│ release" in full.stdout, full.stdout


@pytest.mark.parametrize("option, value", [("--bandwidth", "9" * 400), ("--bandwidth", "-5"), ("--max-duration", "1e300"),
                                           ("--max-duration", "nan"), ("--wait-lock", "nan"), ("--wait-lock", "inf"),
                                           ("--max-requests-per-second", "nan")])
def test_a_number_option_out_of_bounds_is_a_usage_error_naming_it(tmp_path, option, value):
    """Never a traceback (a 400-digit size overflowed a float; a 1e300 s deadline overflowed the timer
    thread), never a run that starts with a NaN deadline and stops at once."""
    policy = tmp_path / "policy.yaml"
    policy.write_text('version: 1\nregistries:\n  src: {url: "http://127.0.0.1:1"}\n  dst: {url: "http://127.0.0.1:1"}\n'
                      'images:\n  - {from: src/a/b, to: dst/a/b, tags: {include: ["1"]}}\n')
    result = run_cli("sync", "-p", policy, "--audit-file", tmp_path / "audit.jsonl", option, value)
    assert result.exit_code == 2, result.output
    assert f"Invalid value for '{option}'" in result.output and "Traceback" not in result.output, result.output
    assert not (tmp_path / "audit.jsonl").exists()
