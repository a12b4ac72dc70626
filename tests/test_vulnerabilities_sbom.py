"""Images judged at plan time (docs/vulnerabilities.md): from a verified SBOM attestation's package
list, and from earlier scans of the image's layers kept in the state dir.

The SBOMs are the documents real tools write (tests/data/sbom/README.md: BuildKit's SPDX statement
as its scanner attaches it, Trivy's CycloneDX BOM), with one package added in the shape of the
entries beside it; they are attested here exactly as `cosign attest --key` lays them out
(tests/fixtures/attest.py), on images built as layers on docker-registry."""

import copy
import json
from pathlib import Path

import pytest

from tests.fixtures.attest import CYCLONEDX, SPDX, attest
from tests.fixtures.cosign import make_key, manifest_digest, write_public_key
from tests.fixtures.oci_layout import seed
from tests.fixtures.osv import build_osv_db
from tests.fixtures.policies import run_cli
from tests.test_verify_signatures import audit, by_tag, write_policy
from tests.test_vulnerabilities_images import BASE, PYTHON, debian_image, gated

SBOMS = Path(__file__).resolve().parent / "data" / "sbom"
ALPINE = {"etc/os-release": b'NAME="Alpine Linux"\nID=alpine\nVERSION_ID=3.16.2\n',
          "lib/apk/db/installed": b"C:Q1abc=\nP:busybox\nV:1.35.0-r17\nA:x86_64\no:busybox\n\n"}


@pytest.fixture(autouse=True)
def state_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("REGSYNC_STATE_DIR", str(tmp_path / "state"))


@pytest.fixture(scope="module")
def osv_db(tmp_path_factory):
    return build_osv_db(tmp_path_factory.mktemp("osv"), ("PyPI", "Debian", "Alpine"))


def buildkit_spdx(extra: dict | None = None) -> dict:
    """BuildKit's SPDX predicate; `extra` a package added after its busybox, in the same shape."""
    predicate = json.loads((SBOMS / "buildkit-spdx-statement.json").read_text())["predicate"]
    if extra:
        package = copy.deepcopy(predicate["packages"][0])
        package.update(SPDXID=f"SPDXRef-{extra['name']}", name=extra["name"], versionInfo=extra["version"],
                       hasFiles=[], sourceInfo="acquired package info from APK DB: lib/apk/db/installed")
        package["externalRefs"] = [
            {"referenceCategory": "SECURITY", "referenceType": "cpe23Type",
             "referenceLocator": f"cpe:2.3:a:{extra['name']}:{extra['name']}:{extra['version']}:*:*:*:*:*:*:*"},
            {"referenceCategory": "PACKAGE_MANAGER", "referenceType": "purl", "referenceLocator": extra["purl"]}]
        predicate["packages"].append(package)
    return predicate


# mariadb 10.4.24-r0 in Alpine 3.12: CVE-2022-27449, fixed in 10.4.25-r0 (tests/data/osv)
MARIADB = {"name": "mariadb", "version": "10.4.24-r0",
           "purl": "pkg:alpine/mariadb@10.4.24-r0?arch=x86_64&upstream=mariadb&distro=alpine-3.12.12"}
SBOM_RULE = f"""\
    verify:
      require_attestations:
        - {{type: "{SPDX}", trust: [release], mode: MODE}}
        - {{type: "{CYCLONEDX}", trust: [release], mode: optional}}
"""


def policy_with_sbom(tmp_path, registry, registry2, repo, tags, osv_db, mode="required"):
    rule = SBOM_RULE.replace("MODE", mode)
    rule += f"    gates: {{vulnerabilities: {{max_severity: high}}}}\nvulnerabilities: {{db: {osv_db}, max_age: 1000w}}\n"
    return write_policy(tmp_path, registry, registry2, repo, repo, {"include": tags}, rule)


def plan_rows(policy) -> dict:
    result = run_cli("plan", "-p", policy, "--json")
    assert result.exit_code in (0, 3), result.output
    return {item["source"].rsplit(":", 1)[1]: item for item in json.loads(result.output)["items"]}


def test_a_verified_spdx_sbom_refuses_the_image_at_plan_time_and_before_any_blob_moves(
        tmp_path, registry, registry2, unique_repo, osv_db):
    key = make_key("ecdsa")
    write_public_key(key, tmp_path / "cosign.pub")
    layout = tmp_path / "layout"
    digests = {tag: debian_image(layout, tag, ALPINE, {"etc/motd": tag.encode()}) for tag in ("listed", "clean")}
    for tag, digest in digests.items():
        seed(registry, unique_repo, tag, layout)
    attest(registry, unique_repo, digests["listed"], key, SPDX, buildkit_spdx(MARIADB))
    attest(registry, unique_repo, digests["clean"], key, SPDX, buildkit_spdx())
    policy = policy_with_sbom(tmp_path, registry, registry2, unique_repo, ["listed", "clean"], osv_db)

    rows = plan_rows(policy)
    assert rows["listed"]["action"] == "refuse"
    assert ("mariadb 10.4.24-r0: CVE-2022-27449 (unscored, counted as critical; fixed in 10.4.25-r0)"
            in rows["listed"]["reason"])
    listed = rows["listed"]["verification"]["vulnerabilities"]
    assert listed["package_list"] == f"verified SBOM attestation ({SPDX})"
    assert {(p["ecosystem"], p["name"], p["version"]) for p in listed["packages"]} == {
        ("Alpine:v3.16", "busybox", "1.35.0-r17"), ("Alpine:v3.12", "mariadb", "10.4.24-r0")}
    assert rows["clean"]["action"] == "copy" and "scanned at apply" not in rows["clean"]["reason"]
    assert rows["clean"]["verification"]["vulnerabilities"]["matches"] == []

    result = run_cli("sync", "-p", policy)
    assert result.exit_code == 3, result.output
    refused = by_tag(audit(tmp_path, "refused"))
    assert set(refused) == {"listed"} and "CVE-2022-27449" in refused["listed"]["reason"]
    assert "verified" not in {r["event"] for r in audit(tmp_path) if r["artifact"]["source"].endswith(":listed")}
    assert manifest_digest(registry2, unique_repo, "listed") is None
    pushed = by_tag(audit(tmp_path, "pushed"))["clean"]["verification"]["vulnerabilities"]
    assert pushed["before_copy"]["package_list"].startswith("verified SBOM attestation")   # judged twice at apply:
    assert [p["name"] for p in pushed["packages"]] == ["busybox"]                          # SBOM, then the layers


def test_an_sbom_that_is_not_verified_is_no_package_list_and_the_plan_says_so(
        tmp_path, registry, registry2, unique_repo, osv_db):
    write_public_key(make_key("ecdsa"), tmp_path / "cosign.pub")
    layout = tmp_path / "layout"
    digest = debian_image(layout, "forged", ALPINE)
    seed(registry, unique_repo, "forged", layout)
    attest(registry, unique_repo, digest, make_key("ecdsa"), SPDX, buildkit_spdx(MARIADB))   # another key
    policy = policy_with_sbom(tmp_path, registry, registry2, unique_repo, ["forged"], osv_db, mode="optional")
    row = plan_rows(policy)["forged"]
    assert row["action"] == "copy"
    assert "vulnerabilities: the layers are scanned at apply (no verified SBOM attestation" in row["reason"]
    assert row["verification"]["vulnerabilities"] == {"package_list": "the layers, read at apply"}
    assert run_cli("sync", "-p", policy).exit_code == 0   # the layers hold busybox only


def test_a_verified_cyclonedx_sbom_as_trivy_writes_it_is_a_package_list(
        tmp_path, registry, registry2, unique_repo, osv_db):
    key = make_key("ecdsa")
    write_public_key(key, tmp_path / "cosign.pub")
    bom = json.loads((SBOMS / "trivy-cyclonedx.json").read_text())
    mariadb = copy.deepcopy(bom["components"][0])
    purl = "pkg:apk/alpine/mariadb@10.4.24-r0?distro=3.12.12"
    mariadb.update({"bom-ref": purl, "purl": purl, "name": "mariadb", "version": "10.4.24-r0"})
    bom["components"].insert(1, mariadb)
    layout = tmp_path / "layout"
    digest = debian_image(layout, "trivy", ALPINE)
    seed(registry, unique_repo, "trivy", layout)
    attest(registry, unique_repo, digest, key, CYCLONEDX, bom)
    policy = policy_with_sbom(tmp_path, registry, registry2, unique_repo, ["trivy"], osv_db, mode="optional")
    row = plan_rows(policy)["trivy"]
    assert row["action"] == "refuse" and "mariadb 10.4.24-r0: CVE-2022-27449" in row["reason"]
    assert row["verification"]["vulnerabilities"]["package_list"] == f"verified SBOM attestation ({CYCLONEDX})"


def test_earlier_scans_of_every_layer_judge_an_image_at_plan_time(tmp_path, registry, registry2, unique_repo,
                                                                   osv_db, state_dir):
    layout = tmp_path / "layout"
    debian_image(layout, "first", BASE, PYTHON)
    seed(registry, unique_repo, "first", layout)
    policy = gated(tmp_path, registry, registry2, unique_repo, ["first"], osv_db)
    row = plan_rows(policy)["first"]
    assert row["action"] == "copy" and "scanned at apply" in row["reason"]   # nothing known yet
    assert run_cli("sync", "-p", policy).exit_code == 3   # refused at apply, its layers read on the way

    seed(registry, unique_repo, "second", layout, "first")   # the same layers under another tag
    row = plan_rows(gated(tmp_path, registry, registry2, unique_repo, ["second"], osv_db))["second"]
    assert row["action"] == "refuse"
    assert "nginx 1.2.1-2.2+wheezy2: DSA-3029-1" in row["reason"] and "fixed in 1.2.1-2.2+wheezy3" in row["reason"]
    assert row["verification"]["vulnerabilities"]["package_list"] == \
        "earlier scans of its 2 layer(s) (the state dir's cache)"
    exported = run_cli("export", "-p", gated(tmp_path, registry, registry2, unique_repo, ["second"], osv_db),
                       "-o", tmp_path / "bundle")
    assert exported.exit_code == 3 and "DSA-3029-1" in exported.output   # not carried across the gap either
    assert unique_repo not in (tmp_path / "bundle" / "index.json").read_text()   # the layout names no image


def test_a_cache_entry_that_names_another_layer_or_is_damaged_is_a_miss(tmp_path, monkeypatch):
    from regsync.vulns.layer_cache import cached_layer, keep_layer
    from regsync.vulns.layers import LayerFiles

    monkeypatch.setenv("REGSYNC_STATE_DIR", str(tmp_path / "state"))
    files = LayerFiles()
    files.ops += [("file", "etc/os-release", b"ID=debian\n"), ("whiteout", "var/lib/dpkg/status", None)]
    a, b = "sha256:" + "a" * 64, "sha256:" + "b" * 64
    keep_layer(a, files)
    assert cached_layer(a).ops == files.ops
    folder = tmp_path / "state" / "vuln-layers"
    (folder / ("b" * 64 + ".json")).write_bytes((folder / ("a" * 64 + ".json")).read_bytes())   # moved
    assert cached_layer(b) is None
    (folder / ("a" * 64 + ".json")).write_bytes(b'{"format": ')   # cut short
    assert cached_layer(a) is None
    assert cached_layer("sha256:../../etc/passwd") is None and cached_layer("sha512:" + "a" * 128) is None
    assert (folder.stat().st_mode & 0o777) == 0o700


def test_purls_name_the_packages_osv_names():
    from packageurl import PackageURL

    from regsync.vulns.sbom import package_of

    cases = {
        "pkg:deb/debian/adduser@3.134?arch=all&distro=debian-12": ("Debian:12", "adduser", "3.134"),   # syft
        "pkg:deb/debian/libc6@2.36-9+deb12u4?arch=amd64&upstream=glibc&distro=debian-12":
            ("Debian:12", "glibc", "2.36-9+deb12u4"),                                                   # source package
        "pkg:deb/debian/libssl3@3.0.11-1~deb12u2?distro=debian-12&upstream=openssl%403.0.11-1~deb12u1":
            ("Debian:12", "openssl", "3.0.11-1~deb12u1"),                                               # source version
        "pkg:deb/ubuntu/libc6@2.39-0ubuntu8.9?arch=amd64&distro=ubuntu-24.04&upstream=glibc":
            ("Ubuntu:24.04:LTS", "glibc", "2.39-0ubuntu8.9"),
        "pkg:apk/alpine/zlib@1.2.11-r3?distro=3.15.0": ("Alpine:v3.15", "zlib", "1.2.11-r3"),           # Trivy
        "pkg:alpine/busybox@1.35.0-r17?arch=aarch64&upstream=busybox&distro=alpine-3.16.2":
            ("Alpine:v3.16", "busybox", "1.35.0-r17"),                                                  # BuildKit's syft
        "pkg:pypi/mkdocs@1.2.2": ("PyPI", "mkdocs", "1.2.2"),
        "pkg:oci/alpine@sha256%3Aab?arch=amd64": None,                                                  # the image itself
    }
    for purl, expected in cases.items():
        assert package_of(PackageURL.from_string(purl)) == expected, purl
    assert "regsync compares no rpm versions" in package_of(PackageURL.from_string("pkg:rpm/fedora/bash@5.2-1"))
    assert "names no distribution release" in package_of(PackageURL.from_string("pkg:deb/debian/bash@5.2"))


def test_a_buildkit_index_is_scanned_by_its_images_layers_and_its_unsigned_sbom_is_no_package_list(
        tmp_path, registry, registry2, unique_repo, osv_db):
    from tests.fixtures.buildkit import write_buildkit_image

    write_buildkit_image(tmp_path / "layout", "bk")   # two platforms, each with an attestation manifest (SPDX)
    seed(registry, unique_repo, "bk", tmp_path / "layout")
    policy = gated(tmp_path, registry, registry2, unique_repo, ["bk"], osv_db, "{not_covered: record}")
    row = plan_rows(policy)["bk"]
    assert row["verification"]["vulnerabilities"] == {"package_list": "the layers, read at apply"}
    result = run_cli("sync", "-p", policy)
    assert result.exit_code == 0, result.output   # the in-toto layers are not read as file systems
    pushed = by_tag(audit(tmp_path, "pushed"))["bk"]["verification"]["vulnerabilities"]
    assert pushed["not_covered"] == ["no package database found in the image (no dpkg, apk, Python, conda, npm, Composer or RubyGems records)"]
