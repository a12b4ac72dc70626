"""PEP 740 provenance end to end: attestations signed by a private Sigstore (tests/fixtures/
sigstore_root.py, tests/fixtures/pep740.py), served by a loopback index's Integrity API, verified
offline against the policy's trusted_root.json, files synced into a real pypiserver.

The source is a mirror without provenance (as TUNA's is); `provenance_from` names a second index
that plays pypi.org and serves only the Integrity API.
"""

import hashlib
import json

import pytest

from regsync.errors import PolicyError
from tests.fixtures.policies import load_policy
from tests.fixtures.pep740 import github_attestation, provenance
from tests.fixtures.policies import audit_records, run_cli
from tests.fixtures.pypi import SimpleIndex, build_wheel
from tests.fixtures.sigstore_root import PrivateSigstore

REPOSITORY, WORKFLOW = "acme/widget", "release.yml"


@pytest.fixture(scope="module")
def wheels(tmp_path_factory):
    folder = tmp_path_factory.mktemp("wheels")
    return {"widget": build_wheel(folder, "widget", "1.0"), "gadget": build_wheel(folder, "gadget", "2.0")}


@pytest.fixture
def mirror(wheels):
    served = SimpleIndex.serving(wheels.values())
    yield served
    served.stop()


@pytest.fixture
def canonical():
    served = SimpleIndex()  # no files: only /integrity/…/provenance answers
    yield served
    served.stop()


@pytest.fixture
def sigstore(tmp_path):
    instance = PrivateSigstore()
    instance.write_trusted_root(tmp_path / "trusted_root.json")
    return instance


def sha256(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def attest(index, sigstore, path, repository=REPOSITORY, digest=None, environment=None):
    """Serve a provenance for `path` from `index`, signed by `repository`'s release workflow."""
    attestation = github_attestation(sigstore, repository, WORKFLOW, path.name, digest or sha256(path))
    index.provenance[path.name] = provenance([attestation], repository, WORKFLOW, environment)


def write_policy(tmp_path, mirror, canonical, target, requirements=("widget",), mode="required", publisher=None,
                 identity_regex="^https://github\\\\.com/.+$"):
    publisher = publisher or f"{{kind: github, repository: {REPOSITORY}, workflow: {WORKFLOW}}}"
    path = tmp_path / "policy.yaml"
    path.write_text(f"""\
version: 1
indexes:
  mirror: {{url: "{mirror.url}"}}
  pypi: {{url: "{canonical.url}"}}
  internal: {{url: "{target.simple}", upload_url: "{target.url}", kind: pypiserver,
             auth: {{username: {target.username}, password: "${{PYPI_PASSWORD}}"}}}}
trust:
  pypi-publishers:
    keyless: {{issuer: "https://token.actions.githubusercontent.com", identity_regex: "{identity_regex}"}}
    trusted_root: trusted_root.json
packages:
  - from: mirror
    to: internal
    requirements: {json.dumps(list(requirements))}
    environments: [{{python: "3.11", platform: manylinux_2_28_x86_64}}]
    verify:
      attestations: {mode}
      publisher: {publisher}
      provenance_from: pypi
      trust: pypi-publishers
audit: {{path: audit.jsonl}}
""")
    return path


def regsync(*args):
    return run_cli(*args, env={"PYPI_PASSWORD": "pkg-Pa55"})


def on_target(pypiserver) -> set[str]:
    return {p.name for p in (pypiserver.root / "packages").iterdir()}


def records(tmp_path, event):
    return [r for r in audit_records(tmp_path / "audit.jsonl") if r["event"] == event]


def test_verified_attestation_from_the_canonical_index_lets_the_mirrored_file_through(
        tmp_path, mirror, canonical, pypiserver, sigstore, wheels):
    attest(canonical, sigstore, wheels["widget"])
    path = write_policy(tmp_path, mirror, canonical, pypiserver)

    planned = regsync("plan", "-p", path, "--json")
    assert planned.exit_code == 0, planned.output
    item = json.loads(planned.output)["items"][0]
    assert item["action"] == "copy" and item["verification"]["provenance"]["verified"] is True

    synced = regsync("sync", "-p", path)
    assert synced.exit_code == 0, synced.output
    assert on_target(pypiserver) == {wheels["widget"].name}
    evidence = records(tmp_path, "pushed")[0]["verification"]["provenance"]
    assert evidence["method"] == "pep740" and evidence["verified"] is True
    assert evidence["publisher"] == {"kind": "github", "repository": REPOSITORY, "workflow": WORKFLOW}
    assert evidence["identity"] == f"https://github.com/{REPOSITORY}/.github/workflows/{WORKFLOW}@refs/tags/v1.0"
    assert evidence["trust"] == "pypi-publishers" and evidence["provenance_from"] == "pypi"
    assert evidence["provenance_url"].endswith(f"/integrity/widget/1.0/{wheels['widget'].name}/provenance")
    # provenance asked of the canonical index only; the bytes came from the mirror
    assert not [p for p, _ in mirror.requests if p.startswith("/integrity/")]
    assert [p for p, _ in canonical.requests if p.startswith("/integrity/")]
    assert not [p for p, _ in canonical.requests if p.startswith("/files/")]

    report = tmp_path / "report.json"
    assert regsync("audit", "report", tmp_path / "audit.jsonl", "--json", report).exit_code == 0
    row = next(a for a in json.loads(report.read_text())["artifacts"] if a["decision"] == "pushed")
    assert row["method"] == "sha256, pep740" and row["signer"] == f"github publisher {REPOSITORY} ({WORKFLOW})"


def test_required_and_no_provenance_is_refused_and_not_uploaded(tmp_path, mirror, canonical, pypiserver, sigstore,
                                                               wheels):
    path = write_policy(tmp_path, mirror, canonical, pypiserver)
    planned = regsync("plan", "-p", path, "--json")
    item = json.loads(planned.output)["items"][0]
    assert item["action"] == "refuse" and "no provenance" in item["reason"]

    synced = regsync("sync", "-p", path)
    assert synced.exit_code == 3, synced.output
    assert on_target(pypiserver) == set()
    refused = records(tmp_path, "refused")
    assert len(refused) == 1 and "pep740: no provenance for widget-1.0-py3-none-any.whl" in refused[0]["reason"]
    assert not [p for p, _ in mirror.requests if p.startswith("/files/widget")]  # refused before any download


def test_attestation_of_another_digest_is_refused(tmp_path, mirror, canonical, pypiserver, sigstore, wheels):
    # a genuine attestation by the right publisher, for the same file name with other bytes
    attest(canonical, sigstore, wheels["widget"], digest=sha256(wheels["gadget"]))
    path = write_policy(tmp_path, mirror, canonical, pypiserver)
    synced = regsync("sync", "-p", path)
    assert synced.exit_code == 3, synced.output
    assert on_target(pypiserver) == set()
    reason = records(tmp_path, "refused")[0]["reason"]
    assert "subject mismatch" in reason and sha256(wheels["gadget"]) in reason


@pytest.mark.parametrize("signer, publisher, identity_regex, expected", [
    ("evil/widget", None, "^https://github.com/", "publisher mismatch: the signing certificate is not from github "
                                                  "publisher acme/widget (release.yml)"),
    (REPOSITORY, f"{{kind: github, repository: {REPOSITORY}, workflow: nightly.yml}}", "^https://github.com/",
     f"(nightly.yml): its Build Config URI is https://github.com/{REPOSITORY}/.github/workflows/release.yml@"),
    (REPOSITORY, f"{{kind: gitlab, repository: {REPOSITORY}, workflow: .gitlab-ci.yml}}", "^https://github.com/",
     "publisher mismatch: the signing certificate is not from gitlab publisher"),
    (REPOSITORY, "{kind: google, email: release@acme.iam.gserviceaccount.com}", "^https://github.com/",
     "publisher mismatch: the signing certificate is not from google publisher"),
    # the publisher matches, but the trust entry's own identity constraint still holds
    (REPOSITORY, None, "^https://github.com/other/", "identity mismatch"),
])
def test_attestation_by_another_publisher_is_refused(tmp_path, mirror, canonical, pypiserver, sigstore, wheels,
                                                     signer, publisher, identity_regex, expected):
    attest(canonical, sigstore, wheels["widget"], repository=signer)
    path = write_policy(tmp_path, mirror, canonical, pypiserver, publisher=publisher, identity_regex=identity_regex)
    synced = regsync("sync", "-p", path)
    assert synced.exit_code == 3, synced.output
    assert on_target(pypiserver) == set()
    assert expected in records(tmp_path, "refused")[0]["reason"]


def test_attestation_from_another_sigstore_is_refused(tmp_path, mirror, canonical, pypiserver, sigstore, wheels):
    attest(canonical, PrivateSigstore(), wheels["widget"])  # right publisher, but a root the policy does not trust
    path = write_policy(tmp_path, mirror, canonical, pypiserver)
    synced = regsync("sync", "-p", path)
    assert synced.exit_code == 3, synced.output
    assert on_target(pypiserver) == set()
    assert "no attestation of widget-1.0-py3-none-any.whl verifies" in records(tmp_path, "refused")[0]["reason"]


def test_a_provenance_that_is_not_pep740_is_refused(tmp_path, mirror, canonical, pypiserver, sigstore, wheels):
    canonical.provenance[wheels["widget"].name] = json.dumps({"version": 1, "attestation_bundles": [
        {"publisher": {"kind": "GitHub", "repository": REPOSITORY}, "attestations": []}]}).encode()
    path = write_policy(tmp_path, mirror, canonical, pypiserver)
    synced = regsync("sync", "-p", path)
    assert synced.exit_code == 3, synced.output
    assert "is not a PEP 740 provenance object" in records(tmp_path, "refused")[0]["reason"]
    assert on_target(pypiserver) == set()


def test_environment_is_checked_against_the_index_record(tmp_path, mirror, canonical, pypiserver, sigstore, wheels):
    attest(canonical, sigstore, wheels["widget"], environment="staging")
    publisher = f"{{kind: github, repository: {REPOSITORY}, workflow: {WORKFLOW}, environment: pypi}}"
    path = write_policy(tmp_path, mirror, canonical, pypiserver, publisher=publisher)
    synced = regsync("sync", "-p", path)
    assert synced.exit_code == 3, synced.output
    assert "environment" in records(tmp_path, "refused")[0]["reason"]
    assert on_target(pypiserver) == set()


def test_optional_and_no_provenance_is_uploaded_and_audited_unverified(tmp_path, mirror, canonical, pypiserver,
                                                                      sigstore, wheels):
    path = write_policy(tmp_path, mirror, canonical, pypiserver, mode="optional")
    synced = regsync("sync", "-p", path)
    assert synced.exit_code == 0, synced.output
    assert on_target(pypiserver) == {wheels["widget"].name}
    evidence = records(tmp_path, "pushed")[0]["verification"]["provenance"]
    assert evidence["verified"] is False and "no provenance" in evidence["reason"]
    report = tmp_path / "report.json"
    assert regsync("audit", "report", tmp_path / "audit.jsonl", "--json", report).exit_code == 0
    row = next(a for a in json.loads(report.read_text())["artifacts"] if a["decision"] == "pushed")
    assert row["method"] == "sha256" and row["signer"].startswith("provenance unverified: pep740: no provenance")


def test_optional_alone_copies_and_says_nothing_was_verified(tmp_path, mirror, canonical, pypiserver, sigstore,
                                                             wheels):
    """docs/pypi.md's `attestations: optional` with no publisher: valid, honest about it."""
    attest(canonical, sigstore, wheels["widget"])  # present, but the policy gives nothing to check it with
    path = write_policy(tmp_path, mirror, canonical, pypiserver, mode="optional")
    text = path.read_text()
    path.write_text(text[:text.index("      publisher:")] + "audit: {path: audit.jsonl}\n")
    checked = regsync("policy", "check", "-p", path)
    assert checked.exit_code == 0 and "NOT verified" in checked.output, checked.output
    synced = regsync("sync", "-p", path)
    assert synced.exit_code == 0, synced.output
    assert on_target(pypiserver) == {wheels["widget"].name}
    evidence = records(tmp_path, "pushed")[0]["verification"]["provenance"]
    assert evidence["verified"] is False and "no publisher" in evidence["reason"]


def test_a_saved_plan_is_checked_again_at_apply(tmp_path, mirror, canonical, pypiserver, sigstore, wheels):
    attest(canonical, sigstore, wheels["widget"])
    path = write_policy(tmp_path, mirror, canonical, pypiserver)
    assert regsync("plan", "-p", path, "-o", tmp_path / "plan.json").exit_code == 0
    canonical.provenance.clear()  # withdrawn between review and apply
    synced = regsync("sync", "-p", path, "--plan", tmp_path / "plan.json")
    assert synced.exit_code == 3, synced.output
    assert on_target(pypiserver) == set()


@pytest.mark.parametrize("verify, message", [
    ("{attestations: required, publisher: {kind: github, repository: a/b, workflow: x.yml, branch: main}, trust: t}",
     "unknown key 'branch'"),
    ("{attestations: required, publisher: {kind: github, repository: a/b}, trust: t}", "needs workflow"),
    ("{attestations: required, publisher: {kind: google, email: x@y.z, repository: a/b}, trust: t}", "has no repository"),
    ("{attestations: required, publisher: {kind: github, repository: a/b, workflow: x.yml}}", "needs both a publisher and a trust"),
    ("{attestations: optional, trust: t}", "needs both a publisher and a trust"),
    ("{attestations: optional, publisher: {kind: github, repository: a/b, workflow: x.yml}, trust: nope}",
     "unknown trust entry 'nope'"),
    ("{attestations: required, publisher: {kind: github, repository: a/b, workflow: x.yml}, trust: t, "
     "provenance_from: nowhere}", "unknown index 'nowhere'"),
    ("{attestations: required, publisher: {kind: github, repository: a/b, workflow: x.yml}, trust: k}",
     "must be keyless with a trusted_root"),
])
def test_policy_errors_name_the_line(tmp_path, verify, message):
    path = tmp_path / "policy.yaml"
    path.write_text(f"""\
version: 1
indexes:
  src: {{url: "https://pypi.example/simple/"}}
  dst: {{kind: directory, path: tree}}
trust:
  t: {{keyless: {{issuer: "https://token.actions.githubusercontent.com", identity_regex: "."}}, trusted_root: r.json}}
  k: {{cosign_key: k.pub}}
packages:
  - from: src
    to: dst
    requirements: [widget]
    verify: {verify}
""")
    with pytest.raises(PolicyError) as raised:
        load_policy(path)
    assert message in str(raised.value) and raised.value.line == 12, str(raised.value)


def test_provenance_travels_in_the_bundle_and_is_verified_offline_on_import(tmp_path, mirror, canonical, pypiserver,
                                                                           sigstore, wheels):
    attest(canonical, sigstore, wheels["widget"])
    path = write_policy(tmp_path, mirror, canonical, pypiserver, requirements=("widget", "gadget"), mode="optional")
    exported = regsync("export", "-p", path, "-o", tmp_path / "bundle")
    assert exported.exit_code == 0, exported.output
    mirror.stop()
    canonical.stop()  # from here on, only the bundle and the trusted root

    imported = regsync("import", tmp_path / "bundle", "-p", path)
    assert imported.exit_code == 0, imported.output
    assert on_target(pypiserver) == {wheels["widget"].name, wheels["gadget"].name}
    pushed = {r["artifact"]["source"].split("/", 1)[1]: r["verification"]["provenance"]
              for r in records(tmp_path, "pushed")}
    widget, gadget = pushed[wheels["widget"].name], pushed[wheels["gadget"].name]
    assert widget["verified"] is True and widget["publisher"]["repository"] == REPOSITORY
    assert widget["provenance_url"] == f"bundle:mirror/{wheels['widget'].name}/provenance"
    assert gadget["verified"] is False and "in the bundle (export found none)" in gadget["reason"]


SLSA_V1 = "https://slsa.dev/provenance/v1"


def test_slsa_provenance_from_the_integrity_api_under_require_attestations(tmp_path, mirror, canonical, pypiserver,
                                                                           sigstore, wheels):
    """PEP 740 answers may carry SLSA provenance beside the publish attestation: the same
    `require_attestations` shape as images evaluates it (type, trust, match on the predicate)."""
    from tests.fixtures.attest import provenance as slsa_predicate

    builder = f"https://github.com/{REPOSITORY}/.github/workflows/{WORKFLOW}@refs/tags/v1.0"
    for name, built_by in (("widget", builder), ("gadget", "https://evil.example/ci")):
        wheel = wheels[name]
        publish = github_attestation(sigstore, REPOSITORY, WORKFLOW, wheel.name, sha256(wheel))
        slsa = github_attestation(sigstore, REPOSITORY, WORKFLOW, wheel.name, sha256(wheel), predicate_type=SLSA_V1,
                                  predicate=slsa_predicate(builder=built_by, repository=f"https://github.com/{REPOSITORY}"))
        canonical.provenance[wheel.name] = provenance([publish, slsa], REPOSITORY, WORKFLOW)
    path = write_policy(tmp_path, mirror, canonical, pypiserver, requirements=("widget", "gadget"))
    text = path.read_text().replace("      trust: pypi-publishers\n", f"""\
      trust: pypi-publishers
      require_attestations:
        - type: {SLSA_V1}
          trust: [pypi-publishers]
          match: {{runDetails.builder.id: "glob:https://github.com/{REPOSITORY}/*"}}
""")
    path.write_text(text)
    synced = regsync("sync", "-p", path)
    assert synced.exit_code == 3, synced.output
    assert on_target(pypiserver) == {wheels["widget"].name}
    [refused] = records(tmp_path, "refused")
    assert refused["reason"].startswith(f"attestation mismatch: require_attestations[0] ({SLSA_V1}): "
                                        f"runDetails.builder.id is 'https://evil.example/ci'")
    [pushed] = records(tmp_path, "pushed")
    [slsa] = pushed["verification"]["provenance"]["attestations"]
    assert (slsa["status"], slsa["builder_id"], slsa["source_repository"]) == (
        "verified", builder, f"https://github.com/{REPOSITORY}")
    assert slsa["signer"]["identity"] == builder and slsa["signer"]["trust"] == "pypi-publishers"


def test_package_require_attestations_needs_a_keyless_trust_entry(tmp_path, mirror, canonical, pypiserver):
    path = write_policy(tmp_path, mirror, canonical, pypiserver)
    path.write_text(path.read_text().replace("      trust: pypi-publishers\n", f"""\
      trust: pypi-publishers
      require_attestations: [{{type: "{SLSA_V1}", trust: [nobody]}}]
"""))
    result = regsync("policy", "check", "-p", path)
    assert result.exit_code == 2 and "unknown trust entry 'nobody'" in result.output and "policy.yaml:" in result.output
