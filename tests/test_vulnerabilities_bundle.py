"""The vulnerability database across an air gap: export carries the database the gates used in the
bundle (as blobs SHA256SUMS covers); import gates with exactly it, with no database of its own."""

import json
import subprocess

import pytest

from regsync.vulns.database import OsvDatabase
from tests.fixtures.cosign import manifest_digest
from tests.fixtures.oci_layout import seed
from tests.fixtures.osv import build_osv_db
from tests.fixtures.policies import audit_records, run_cli
from tests.fixtures.pypi import SimpleIndex, build_wheel
from tests.fixtures.registries import start_registry
from tests.test_vulnerabilities_images import BASE, PYTHON, UPGRADE, debian_image


@pytest.fixture
def exported(tmp_path, unique_repo, monkeypatch):
    monkeypatch.setenv("REGSYNC_STATE_DIR", str(tmp_path / "state"))   # no earlier scan of these layers
    db = build_osv_db(tmp_path / "connected" / "osv")
    wheels = [build_wheel(tmp_path / "wheels", "jwcrypto", "1.5.0")]
    index = SimpleIndex.serving(wheels)
    source, target = start_registry(tmp_path / "source"), start_registry(tmp_path / "target")
    debian_image(tmp_path / "layout", "vulnerable", BASE, PYTHON)
    fixed = debian_image(tmp_path / "layout", "upgraded", BASE, PYTHON, UPGRADE)
    for tag in ("vulnerable", "upgraded"):
        seed(source, unique_repo, tag, tmp_path / "layout")
    policy = tmp_path / "policy.yaml"
    policy.write_text(f"""\
version: 1
registries:
  src: {{url: "{source.url}"}}
  dst: {{url: "{target.url}"}}
indexes:
  mirror: {{url: "{index.url}"}}
  internal: {{kind: directory, path: {tmp_path / 'tree'}}}
vulnerabilities: {{db: connected/osv, max_age: 1000w}}
images:
  - from: src/{unique_repo}
    to: dst/{unique_repo}
    tags: {{include: [vulnerable, upgraded]}}
    gates: {{vulnerabilities: {{max_severity: high}}}}
packages:
  - from: mirror
    to: internal
    requirements: [jwcrypto==1.5.0]
    gates: {{vulnerabilities: {{max_severity: medium}}}}
audit: {{path: audit.jsonl}}
""")
    bundle = tmp_path / "bundle"
    result = run_cli("export", "-p", policy, "-o", bundle)
    assert result.exit_code == 0, result.output            # images are gated where they are pushed: on import
    sha256 = OsvDatabase(db).sha256
    (tmp_path / "connected").rename(tmp_path / "gone")      # the far side has no database of its own
    source.stop()
    index.stop()
    yield {"bundle": bundle, "policy": policy, "target": target, "repo": unique_repo, "fixed": fixed,
           "tmp": tmp_path, "sha256": sha256}
    target.stop()


def test_import_gates_with_the_database_the_export_carried(exported):
    bundle, tmp = exported["bundle"], exported["tmp"]
    meta = json.loads((bundle / "bundle.json").read_text())
    carried = meta["vulnerabilities"]
    assert carried["sha256"] == exported["sha256"]
    assert sorted(f["path"] for f in carried["files"]) == ["Debian/all.zip", "PyPI/all.zip"]
    assert {e["ecosystem"]: e["records"] for e in carried["ecosystems"]} == {"Debian": 1, "PyPI": 6}
    assert subprocess.run(["sha256sum", "-c", "--quiet", "SHA256SUMS"], cwd=bundle).returncode == 0
    listed = (bundle / "SHA256SUMS").read_text()
    assert all(f["digest"].split(":")[1] in listed for f in carried["files"])   # covered by its signature too
    assert [p["filename"] for p in meta["packages"]] == ["jwcrypto-1.5.0-py3-none-any.whl"]

    result = run_cli("import", bundle, "-p", exported["policy"])

    assert result.exit_code == 3, result.output
    records = [r for r in audit_records(tmp / "audit.jsonl") if r["run_id"] == audit_records(tmp / "audit.jsonl")[-1]["run_id"]]
    refused = [r for r in records if r["event"] == "refused"]
    assert [r["artifact"]["source"].rsplit(":", 1)[1] for r in refused] == ["vulnerable"]
    assert "DSA-3029-1" in refused[0]["reason"] and "fixed in 1.2.1-2.2+wheezy3" in refused[0]["reason"]
    assert manifest_digest(exported["target"], exported["repo"], "vulnerable") is None
    assert manifest_digest(exported["target"], exported["repo"], "upgraded") == exported["fixed"]
    assert [p.name for p in (tmp / "tree").rglob("*.whl")] == ["jwcrypto-1.5.0-py3-none-any.whl"]
    used = [r["verification"]["vulnerabilities"]["db"] for r in records
            if r["event"] == "pushed" and "vulnerabilities" in (r.get("verification") or {})]
    assert len(used) == 2 and all(db[0]["sha256"] == exported["sha256"] for db in used)


def test_a_database_altered_in_the_bundle_is_refused_before_anything_is_pushed(exported):
    bundle = exported["bundle"]
    carried = json.loads((bundle / "bundle.json").read_text())["vulnerabilities"]
    pypi = next(f for f in carried["files"] if f["path"] == "PyPI/all.zip")
    path = bundle / "blobs" / "sha256" / pypi["digest"].split(":")[1]
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))
    result = run_cli("import", bundle, "-p", exported["policy"])
    assert result.exit_code == 3, result.output
    assert "PyPI/all.zip is sha256:" in result.output and "the bundle says" in result.output
    assert manifest_digest(exported["target"], exported["repo"], "upgraded") is None
    assert not list((exported["tmp"] / "tree").rglob("*.whl"))


def test_an_export_with_a_stale_database_is_a_policy_error_before_anything_is_written(tmp_path):
    db = build_osv_db(tmp_path / "osv")
    index = SimpleIndex.serving([build_wheel(tmp_path / "wheels", "jwcrypto", "1.5.0")])
    policy = tmp_path / "policy.yaml"
    policy.write_text(f"""\
version: 1
indexes:
  mirror: {{url: "{index.url}"}}
  internal: {{kind: directory, path: {tmp_path / 'tree'}}}
vulnerabilities: {{db: {db}, max_age: 52w}}
packages:
  - {{from: mirror, to: internal, requirements: [jwcrypto==1.5.0]}}
audit: {{path: audit.jsonl}}
""")
    try:
        result = run_cli("export", "-p", policy, "-o", tmp_path / "bundle")
    finally:
        index.stop()
    assert result.exit_code == 2, result.output
    assert "the Debian database is" in result.output and "older than max_age 364 days" in result.output
    assert not (tmp_path / "bundle" / "bundle.json").exists() and not index.bytes_sent
