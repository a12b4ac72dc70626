"""The vulnerability gate on images: Debian-like layers built here (os-release, a real dpkg status
file, a Python dist-info), pushed with skopeo to docker-registry, synced by regsync; the OSV records
are the real ones in tests/data/osv (DSA-3029-1: nginx in Debian 7, fixed in 1.2.1-2.2+wheezy3)."""

import gzip
import io
import json
import os
import tarfile

import pytest

from tests.fixtures.cosign import manifest_digest
from tests.fixtures.oci_layout import OCI_CONFIG, OCI_LAYER, OCI_MANIFEST, _put_blob, _tag_layout, digest_of, seed
from tests.fixtures.osv import build_osv_db
from tests.fixtures.policies import run_cli
from tests.test_verify_signatures import audit, by_tag, write_policy

OS_RELEASE = b'PRETTY_NAME="Debian GNU/Linux 7 (wheezy)"\nNAME="Debian GNU/Linux"\nVERSION_ID="7"\n' \
             b'VERSION="7 (wheezy)"\nID=debian\n'


def dpkg_status(nginx: str) -> bytes:
    """var/lib/dpkg/status as dpkg writes it: a binary package built from the nginx source, a
    package without a Source: field, and one removed but with its config files left (not installed)."""
    return f"""\
Package: base-files
Essential: yes
Status: install ok installed
Priority: required
Section: admin
Installed-Size: 292
Maintainer: Santiago Vila <sanvila@debian.org>
Architecture: amd64
Version: 7.1wheezy8
Description: Debian base system miscellaneous files

Package: nginx-full
Status: install ok installed
Priority: optional
Section: httpd
Installed-Size: 1122
Maintainer: Kartik Mistry <kartik@debian.org>
Architecture: amd64
Source: nginx
Version: {nginx}
Provides: httpd, nginx
Depends: nginx-common (= {nginx}), libc6 (>= 2.14)
Description: nginx web/proxy server (standard version)

Package: nginx-light
Status: deinstall ok config-files
Priority: extra
Section: httpd
Architecture: amd64
Source: nginx
Version: 1.2.1-2.2
Description: nginx web/proxy server (basic version)
""".encode()


def layer(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, content in files.items():
            info = tarfile.TarInfo(name)
            info.size, info.mtime = len(content), 0
            tar.addfile(info, io.BytesIO(content))
    return gzip.compress(buffer.getvalue(), mtime=0)


def debian_image(layout, tag: str, *layers: dict[str, bytes]) -> str:
    (layout / "blobs" / "sha256").mkdir(parents=True, exist_ok=True)
    (layout / "oci-layout").write_text(json.dumps({"imageLayoutVersion": "1.0.0"}))
    blobs = [layer(files) for files in layers]
    config = {"architecture": "amd64", "os": "linux", "config": {},
              "rootfs": {"type": "layers", "diff_ids": [digest_of(gzip.decompress(b)) for b in blobs]}}
    manifest = {"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                "config": dict(mediaType=OCI_CONFIG, **_put_blob(layout, json.dumps(config).encode())),
                "layers": [dict(mediaType=OCI_LAYER, **_put_blob(layout, b)) for b in blobs]}
    root = dict(mediaType=OCI_MANIFEST, **_put_blob(layout, json.dumps(manifest).encode()))
    _tag_layout(layout, tag, root)
    return root["digest"]


BASE = {"etc/os-release": OS_RELEASE, "var/lib/dpkg/status": dpkg_status("1.2.1-2.2+wheezy2")}
PYTHON = {"usr/lib/python3/dist-packages/mkdocs-1.2.3.dist-info/METADATA":
          b"Metadata-Version: 2.1\nName: mkdocs\nVersion: 1.2.3\nSummary: Project documentation\n\nLong text\n"}
UPGRADE = {"var/lib/dpkg/status": dpkg_status("1.2.1-2.2+wheezy3")}   # a later layer's apt-get upgrade


@pytest.fixture(autouse=True)
def state_dir(tmp_path, monkeypatch):
    """Each test its own state dir: the cache of earlier layer scans starts empty."""
    monkeypatch.setenv("REGSYNC_STATE_DIR", str(tmp_path / "state"))
    return tmp_path / "state"


@pytest.fixture(scope="module")
def osv_db(tmp_path_factory):
    return build_osv_db(tmp_path_factory.mktemp("osv"))


def gated(tmp_path, registry, registry2, repo, tags, osv_db, gate="{max_severity: high}"):
    rule = f"    gates: {{vulnerabilities: {gate}}}\nvulnerabilities: {{db: {osv_db}, max_age: 1000w}}\n"
    return write_policy(tmp_path, registry, registry2, repo, repo, {"include": tags}, rule)


def test_a_vulnerable_dpkg_package_refuses_the_image_before_any_manifest_is_pushed(
        tmp_path, registry, registry2, unique_repo, osv_db):
    layout = tmp_path / "layout"
    debian_image(layout, "vulnerable", BASE, PYTHON)
    fixed = debian_image(layout, "upgraded", BASE, PYTHON, UPGRADE)
    for tag in ("vulnerable", "upgraded"):
        seed(registry, unique_repo, tag, layout)
    policy = gated(tmp_path, registry, registry2, unique_repo, ["vulnerable", "upgraded"], osv_db)
    result = run_cli("-v", "sync", "-p", policy)
    assert result.exit_code == 3, result.output
    refused = by_tag(audit(tmp_path, "refused"))
    assert set(refused) == {"vulnerable"}
    assert ("nginx 1.2.1-2.2+wheezy2: DSA-3029-1 (unscored, counted as critical; fixed in 1.2.1-2.2+wheezy3)"
            in refused["vulnerable"]["reason"])
    assert manifest_digest(registry2, unique_repo, "vulnerable") is None      # never tagged
    pushed = by_tag(audit(tmp_path, "pushed"))
    assert manifest_digest(registry2, unique_repo, "upgraded") == fixed
    found = pushed["upgraded"]["verification"]["vulnerabilities"]
    assert found["matches"] == []
    assert {(p["ecosystem"], p["name"], p["version"]) for p in found["packages"]} == {
        ("Debian:7", "base-files", "7.1wheezy8"), ("Debian:7", "nginx", "1.2.1-2.2+wheezy3"),
        ("PyPI", "mkdocs", "1.2.3")}     # nginx-light: config files only, not installed
    assert "DSA-3029-1" in result.output   # -v lists the match
    assert found["layers_read_again"] == 0   # every layer was read from the copy's own stream

    from cyclonedx.schema import SchemaVersion
    from cyclonedx.validation.json import JsonStrictValidator

    inventory = run_cli("audit", "inventory", tmp_path / "audit.jsonl")
    assert inventory.exit_code == 0 and JsonStrictValidator(SchemaVersion.V1_6).validate_str(inventory.output) is None
    [image] = json.loads(inventory.output)["components"]    # the refused image was not imported
    assert image["type"] == "container" and image["version"] == fixed
    assert image["purl"] == (f"pkg:oci/{unique_repo.rsplit('/', 1)[1]}@{fixed}"
                             f"?repository_url=dst/{unique_repo}&tag=upgraded")
    assert sorted(c["purl"] for c in image["components"]) == [
        "pkg:deb/debian/base-files@7.1wheezy8", "pkg:deb/debian/nginx@1.2.1-2.2%2Bwheezy3", "pkg:pypi/mkdocs@1.2.3"]

    from tests.test_vulnerabilities import spdx_checked

    spdx = run_cli("audit", "inventory", tmp_path / "audit.jsonl", "--format", "spdx")
    assert spdx.exit_code == 0, spdx.output
    doc = spdx_checked(spdx.output)
    ids = {p["SPDXID"]: p for p in doc["packages"]}
    [inventory] = [r["relatedSpdxElement"] for r in doc["relationships"] if r["relationshipType"] == "DESCRIBES"]
    [root] = [ids[r["relatedSpdxElement"]] for r in doc["relationships"] if r["spdxElementId"] == inventory]
    assert root["primaryPackagePurpose"] == "CONTAINER" and root["checksums"][0]["checksumValue"] == fixed[7:]
    assert [r["referenceLocator"] for r in root["externalRefs"]] == [image["purl"]]
    contained = [ids[r["relatedSpdxElement"]] for r in doc["relationships"]
                 if r["relationshipType"] == "CONTAINS" and r["spdxElementId"] == root["SPDXID"]]
    assert sorted(r["referenceLocator"] for p in contained for r in p["externalRefs"]) == sorted(
        c["purl"] for c in image["components"])   # the nested packages, as in the CycloneDX BOM

    from tests.test_inventory_spdx3 import contained as contained3, inventory_root, spdx3_checked

    spdx3 = run_cli("audit", "inventory", tmp_path / "audit.jsonl", "--format", "spdx3")
    assert spdx3.exit_code == 0, spdx3.output
    doc3 = spdx3_checked(spdx3.output)
    [image3] = contained3(doc3, inventory_root(doc3))
    assert image3["software_primaryPurpose"] == "container" and image3["software_packageUrl"] == image["purl"]
    assert image3["verifiedUsing"][0]["hashValue"] == fixed[7:]
    assert sorted(p["software_packageUrl"] for p in contained3(doc3, image3)) == sorted(
        c["purl"] for c in image["components"])

    seed(registry, unique_repo, "again", layout, "upgraded")   # same blobs, already on the target
    again = gated(tmp_path, registry, registry2, unique_repo, ["again"], osv_db)
    assert run_cli("sync", "-p", again).exit_code == 0
    found_again = by_tag(audit(tmp_path, "pushed"))["again"]["verification"]["vulnerabilities"]
    # already on the target, so the copy streamed none of them: each taken from the earlier scan
    assert (found_again["layers_read_again"], found_again["layers_from_cache"]) == (0, 3)
    assert found_again["packages"] == found["packages"]


def test_a_python_distribution_in_an_image_is_matched_as_pypi(tmp_path, registry, registry2, unique_repo, osv_db):
    layout = tmp_path / "layout"
    old_mkdocs = {"usr/local/lib/python3.11/site-packages/mkdocs-1.2.2.dist-info/METADATA":
                  b"Metadata-Version: 2.1\nName: mkdocs\nVersion: 1.2.2\n\n"}
    debian_image(layout, "py", BASE, UPGRADE, old_mkdocs)
    seed(registry, unique_repo, "py", layout)
    policy = gated(tmp_path, registry, registry2, unique_repo, ["py"], osv_db, "{max_severity: medium}")
    assert run_cli("sync", "-p", policy).exit_code == 3
    reason = by_tag(audit(tmp_path, "refused"))["py"]["reason"]
    assert "mkdocs 1.2.2: PYSEC-2021-878 (high 7.5; fixed in 1.2.3)" in reason


def test_an_image_the_database_cannot_answer_for_is_refused_not_reported_clean(
        tmp_path, registry, registry2, unique_repo, osv_db):
    layout = tmp_path / "layout"
    alpine = {"etc/os-release": b'NAME="Alpine Linux"\nID=alpine\nVERSION_ID=3.18.4\n',
              "lib/apk/db/installed": b"C:Q1abc=\nP:musl\nV:1.2.4-r2\nA:x86_64\n\nC:Q1def=\nP:busybox\nV:1.36.1-r5\n\n"}
    debian_image(layout, "alpine", alpine)
    debian_image(layout, "empty", {"hello.txt": b"static binary only\n"})
    for tag in ("alpine", "empty"):
        seed(registry, unique_repo, tag, layout)
    policy = gated(tmp_path, registry, registry2, unique_repo, ["alpine", "empty"], osv_db)
    assert run_cli("sync", "-p", policy).exit_code == 3
    refused = by_tag(audit(tmp_path, "refused"))
    assert "musl 1.2.4-r2 (the database has no Alpine/ folder: add OSV's Alpine/all.zip" in refused["alpine"]["reason"]
    assert "no package database found in the image" in refused["empty"]["reason"]
    recorded = gated(tmp_path, registry, registry2, unique_repo, ["alpine"], osv_db, "{not_covered: record}")
    assert run_cli("sync", "-p", recorded).exit_code == 0
    pushed = by_tag(audit(tmp_path, "pushed"))["alpine"]["verification"]["vulnerabilities"]
    assert any("busybox 1.36.1-r5" in note for note in pushed["not_covered"])


def test_scan_reads_a_layer_file_as_the_gate_does(tmp_path, osv_db):
    path = tmp_path / "layer.tar.gz"
    path.write_bytes(layer(BASE))
    result = run_cli("scan", "--db", osv_db, path)
    assert result.exit_code == 3, result.output
    assert "DSA-3029-1" in result.output and "1.2.1-2.2+wheezy3" in result.output


def test_scan_reads_an_image_in_a_registry_read_only(tmp_path, registry, unique_repo, osv_db):
    layout = tmp_path / "layout"
    debian_image(layout, "vulnerable", BASE, PYTHON)
    seed(registry, unique_repo, "vulnerable", layout)
    result = run_cli("scan", "--db", osv_db, "--allow-http-registry", "--json", f"{registry.host}/{unique_repo}:vulnerable")
    assert result.exit_code == 3, result.output
    evidence = json.loads(result.output[:result.output.rindex("}") + 1])
    assert [(m["id"], m["package"], m["fixed"]) for m in evidence["matches"]] == [("DSA-3029-1", "nginx", "1.2.1-2.2+wheezy3")]
    assert evidence["layers_read_again"] == 2   # both layers read from the registry, each verified
    missing = run_cli("scan", "--db", osv_db, "--allow-http-registry", f"{registry.host}/{unique_repo}:absent")
    assert missing.exit_code == 2 and "no such image" in missing.output


def test_whiteouts_and_opaque_directories_of_later_layers_remove_what_earlier_layers_held():
    from regsync.vulns.layers import ImageContents

    contents = ImageContents()
    for files in (BASE, PYTHON, {"var/lib/dpkg/.wh.status": b"",
                                 "usr/lib/python3/dist-packages/.wh..wh..opq": b"",
                                 "usr/lib/python3/dist-packages/other.txt": b"x"}):
        contents.add_layer(io.BytesIO(layer(files)), "gzip")
    found, not_covered = contents.packages()
    assert found == [] and not_covered == ["no package database found in the image (no dpkg, apk, Python, conda, "
                                           "npm, Composer or RubyGems records)"]
    contents = ImageContents()
    for files in (BASE, PYTHON):
        contents.add_layer(io.BytesIO(layer(files)), "gzip")
    assert ("PyPI", "mkdocs", "1.2.3") in contents.packages()[0]


def test_an_apk_subpackage_is_matched_by_its_origin(tmp_path, registry, registry2, unique_repo):
    """OSV's Alpine records name aports origins: mariadb-client (origin mariadb) at a vulnerable
    version is refused through its origin; matched by its own name it passed as clean."""
    db = build_osv_db(tmp_path / "osv", ecosystems=("PyPI", "Debian", "Alpine"))
    layout = tmp_path / "layout"
    release = b'NAME="Alpine Linux"\nID=alpine\nVERSION_ID=3.12.12\n'
    apk = b"C:Q1abc=\nP:musl\nV:1.1.24-r10\no:musl\n\nC:Q1def=\nP:mariadb-client\nV:10.4.3-r0\nA:x86_64\no:mariadb\n\n"
    debian_image(layout, "sub", {"etc/os-release": release, "lib/apk/db/installed": apk})
    seed(registry, unique_repo, "sub", layout)
    assert run_cli("sync", "-p", gated(tmp_path, registry, registry2, unique_repo, ["sub"], db)).exit_code == 3
    refused = by_tag(audit(tmp_path, "refused"))
    assert "mariadb 10.4.3-r0: CVE-2022-27449" in refused["sub"]["reason"], refused


def test_an_apk_package_is_matched_with_apk_version_order(tmp_path, registry, registry2, unique_repo):
    db = build_osv_db(tmp_path / "osv", ecosystems=("PyPI", "Debian", "Alpine"))
    layout = tmp_path / "layout"
    release = b'NAME="Alpine Linux"\nID=alpine\nVERSION_ID=3.12.12\n'
    apk = "C:Q1abc=\nP:musl\nV:1.1.24-r10\n\nC:Q1def=\nP:mariadb\nV:{}\nA:x86_64\n\n"
    debian_image(layout, "old", {"etc/os-release": release, "lib/apk/db/installed": apk.format("10.4.3-r0").encode()})
    debian_image(layout, "new", {"etc/os-release": release, "lib/apk/db/installed": apk.format("10.4.25-r0").encode()})
    for tag in ("old", "new"):
        seed(registry, unique_repo, tag, layout)
    assert run_cli("sync", "-p", gated(tmp_path, registry, registry2, unique_repo, ["old", "new"], db)).exit_code == 3
    refused = by_tag(audit(tmp_path, "refused"))
    assert set(refused) == {"old"}   # 10.4.3 < 10.4.25 in apk's order; as strings "10.4.3" sorts after
    assert "mariadb 10.4.3-r0: CVE-2022-27449 (unscored, counted as critical; fixed in 10.4.25-r0)" in refused["old"]["reason"]
    pushed = by_tag(audit(tmp_path, "pushed"))["new"]["verification"]["vulnerabilities"]
    assert pushed["matches"] == [] and ("Alpine:v3.12", "musl", "1.1.24-r10") in {
        (p["ecosystem"], p["name"], p["version"]) for p in pushed["packages"]}


def test_scan_reads_an_uncompressed_layer_and_refuses_what_is_no_layer_file(tmp_path, osv_db):
    """A plain tar is a layer as a gzip one is (the first block was read short, so it was "not a layer");
    a tar cut short, a FIFO, a device and a mistyped name are each one line, exit 2, never a hang."""
    plain = tmp_path / "layer.tar"
    plain.write_bytes(gzip.decompress(layer(BASE)))
    result = run_cli("scan", "--db", osv_db, plain)
    assert result.exit_code == 3, result.output
    assert "DSA-3029-1" in result.output and "1.2.1-2.2+wheezy3" in result.output
    cut = tmp_path / "cut.tar"
    cut.write_bytes(plain.read_bytes()[:700])   # the first member's header, then part of its data
    fifo = tmp_path / "fifo.tar"
    os.mkfifo(fifo)   # nobody writes: reading would wait forever
    for path, expected in ((cut, "cut.tar: not a complete layer tarball"), (fifo, "fifo.tar: not a regular file"),
                           ("/dev/zero", "/dev/zero: not a regular file"),
                           (tmp_path / "nope.whl", "nope.whl: no such file")):
        result = run_cli("scan", "--db", osv_db, path)
        assert result.exit_code == 2 and expected in result.output, result.output
