"""Language ecosystems and Wolfi at the vulnerability gate (docs/vulnerabilities.md): Go modules, npm,
crates.io, Maven, NuGet, RubyGems and Packagist packages named by an SBOM's purls, Wolfi and
Chainguard apk packages, each matched against OSV's records with its own version order.

The records are real (tests/data/osv/README.md); the SBOM is Trivy's own CycloneDX test BOM
(tests/data/sbom/README.md) with a vulnerable package added in the shape of the entries beside it,
attested as `cosign attest --key` lays it out, on images in docker-registry."""

import copy
import json
from pathlib import Path

import pytest
from packageurl import PackageURL

from regsync.vulns.database import OsvDatabase
from regsync.vulns.match import NotCovered, find
from regsync.vulns.purls import package_of
from tests.fixtures.attest import CYCLONEDX, attest
from tests.fixtures.cosign import make_key, manifest_digest, write_public_key
from tests.fixtures.oci_layout import seed
from tests.fixtures.osv import build_osv_db
from tests.fixtures.policies import run_cli
from tests.test_verify_signatures import audit, by_tag, write_policy
from tests.test_vulnerabilities_images import debian_image
from tests.test_vulnerabilities_sbom import ALPINE, SBOM_RULE, plan_rows

DATA = Path(__file__).resolve().parent / "data"
LANGUAGES = ("PyPI", "Debian", "Alpine", "Go", "npm", "Maven", "crates.io", "RubyGems", "NuGet", "Wolfi")


@pytest.fixture(autouse=True)
def state_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("REGSYNC_STATE_DIR", str(tmp_path / "state"))


@pytest.fixture(scope="module")
def osv_db(tmp_path_factory):
    return build_osv_db(tmp_path_factory.mktemp("osv"), LANGUAGES)


def test_purls_of_each_language_name_the_package_as_osv_does():
    cases = {
        "pkg:golang/golang.org/x/net@v0.17.0": ("Go", "golang.org/x/net", "0.17.0"),     # OSV's Go versions: no v
        "pkg:golang/github.com/package-url/packageurl-go@v0.1.1-0.20220203205134-d70459300c8a":
            ("Go", "github.com/package-url/packageurl-go", "0.1.1-0.20220203205134-d70459300c8a"),   # pseudo-version
        "pkg:golang/github.com/Azure/go-autorest@v14.2.0%2Bincompatible":
            ("Go", "github.com/Azure/go-autorest", "14.2.0+incompatible"),
        "pkg:golang/stdlib@go1.22.1": ("Go", "stdlib", "1.22.1"),                              # syft's stdlib
        "pkg:golang/google.golang.org/genproto@v0.0.0-1#googleapis/api":                        # a package in it
            ("Go", "google.golang.org/genproto", "0.0.0-1"),
        "pkg:npm/%40babel/traverse@7.22.0": ("npm", "@babel/traverse", "7.22.0"),
        "pkg:npm/@example/bootstrap@5.0.2": ("npm", "@example/bootstrap", "5.0.2"),            # Trivy's spelling
        "pkg:npm/lodash@4.17.20": ("npm", "lodash", "4.17.20"),
        "pkg:maven/commons-io/commons-io@2.13.0": ("Maven", "commons-io:commons-io", "2.13.0"),
        "pkg:gradle/org.codehaus.mojo/child-project@1.0": ("Maven", "org.codehaus.mojo:child-project", "1.0"),
        "pkg:composer/pear/pear_exception@v1.0.0": ("Packagist", "pear/pear_exception", "v1.0.0"),
        "pkg:nuget/Newtonsoft.Json@12.0.3": ("NuGet", "Newtonsoft.Json", "12.0.3"),
        "pkg:cargo/regex@1.5.4": ("crates.io", "regex", "1.5.4"),
        "pkg:gem/rack@3.0.9": ("RubyGems", "rack", "3.0.9"),
        "pkg:apk/wolfi/libcrypto3@3.0.7-r1?arch=x86_64&upstream=openssl&distro=wolfi-20230201":
            ("Wolfi", "openssl", "3.0.7-r1"),
        "pkg:apk/chainguard/ko@0.13.0-r2": ("Chainguard", "ko", "0.13.0-r2"),
    }
    for purl, expected in cases.items():
        assert package_of(PackageURL.from_string(purl)) == expected, purl
    assert "names no Maven group" in package_of(PackageURL.from_string("pkg:maven/commons-io@2.13.0"))
    assert "no version in its purl" in package_of(PackageURL.from_string("pkg:npm/lodash"))
    assert "regsync compares no rpm versions" in package_of(PackageURL.from_string("pkg:rpm/redhat/bash@5.1-1"))


# (ecosystem, name as the SBOM spells it, version, ids, fixed)
CASES = [
    ("Go", "golang.org/x/net", "0.17.0", ["GHSA-4v7x-pqxf-cx7m", "GO-2024-2687"], "0.23.0"),   # one vulnerability
    ("Go", "golang.org/x/net", "0.23.0", [], None),
    ("Go", "golang.org/x/net", "0.0.0-20210220033148-5ea612d1eb83", ["GHSA-4v7x-pqxf-cx7m", "GO-2024-2687"], "0.23.0"),
    ("Go", "stdlib", "1.22.1", ["GO-2024-2687"], "1.22.2"),   # introduced 1.22.0-0 (the GHSA names net/http)
    ("Go", "stdlib", "1.21.9", [], None),
    ("npm", "@babel/traverse", "7.22.0", ["GHSA-67hx-6x53-jw92"], "7.23.2"),
    ("npm", "@babel/traverse", "8.0.0-alpha.3", ["GHSA-67hx-6x53-jw92"], "8.0.0-alpha.4"),   # SemVer pre-release
    ("npm", "@babel/traverse", "7.23.2", [], None),
    ("npm", "babel-traverse", "6.26.0", ["GHSA-67hx-6x53-jw92"], None),
    ("Maven", "commons-io:commons-io", "2.13.0", ["GHSA-78wr-2p64-hpwj"], "2.14.0"),
    ("Maven", "commons-io:commons-io", "1.4", [], None),            # before introduced 2.0
    ("Maven", "commons-io:commons-io", "2.14.0", [], None),
    ("crates.io", "regex", "1.5.4", ["GHSA-m5pq-gvj9-9vr8"], "1.5.5"),
    ("crates.io", "regex", "1.10.0", [], None),                     # 1.10 > 1.5.5, as strings it sorts before
    ("RubyGems", "rack", "3.0.9", ["GHSA-22f2-v57c-j9cx"], "3.0.9.1"),
    ("RubyGems", "rack", "2.2.8", ["GHSA-22f2-v57c-j9cx"], "2.2.8.1"),
    ("RubyGems", "rack", "3.0.9.1", [], None),
    ("NuGet", "Newtonsoft.Json", "12.0.3", ["GHSA-5crp-9r3c-p9vr"], "13.0.1"),
    ("NuGet", "newtonsoft.json", "9.0.1", ["GHSA-5crp-9r3c-p9vr"], "13.0.1"),   # NuGet ids have no case
    ("NuGet", "Newtonsoft.Json", "13.0.1", [], None),
    ("Wolfi", "openssl", "3.0.7-r1", ["CGA-6mjr-v678-c6gm"], "3.0.8-r0"),
    ("Wolfi", "openssl", "3.0.8-r0", [], None),
    ("Wolfi", "libcrypto3", "3.0.7-r1", ["CGA-6mjr-v678-c6gm"], "3.0.8-r0"),     # Wolfi names subpackages too
]


@pytest.mark.parametrize("ecosystem,name,version,ids,fixed", CASES)
def test_each_ecosystem_is_matched_with_its_own_version_order(osv_db, ecosystem, name, version, ids, fixed):
    matches = find(OsvDatabase(osv_db), ecosystem, name, version)
    assert [m.ids for m in matches] == ([ids] if ids else [])
    assert [m.fixed for m in matches] == ([fixed] if ids else [])


def test_a_missing_ecosystem_folder_is_not_covered_and_a_package_no_record_names_is_clean(tmp_path, osv_db):
    partial = OsvDatabase(build_osv_db(tmp_path / "osv", ("PyPI", "npm")))
    with pytest.raises(NotCovered, match=r"the database has no Go/ folder: add OSV's Go/all.zip"):
        find(partial, "Go", "golang.org/x/net", "0.23.0")
    with pytest.raises(NotCovered, match=r"no Packagist/ folder"):
        find(OsvDatabase(osv_db), "Packagist", "pear/log", "1.13.1")
    assert find(partial, "npm", "@example/bootstrap", "5.0.2") == []   # the folder is there: clean
    # a version the ecosystem cannot order: clean where no record names the package, else not covered
    assert find(OsvDatabase(osv_db), "Go", "example.com/app", "(devel)") == []
    with pytest.raises(NotCovered, match=r"'\(devel\)' is not a version"):
        find(OsvDatabase(osv_db), "Go", "golang.org/x/net", "(devel)")


def test_packagist_versions_order_as_php_version_compare():
    from regsync.vulns.packagist import PackagistVersion as V

    cases = [line.split() for line in (DATA / "packagist" / "packagist_test_cases.txt").read_text().splitlines()
             if line.strip() and not line.startswith("//")]
    assert len(cases) == 85
    for a, op, b in cases:
        got = "<" if V(a) < V(b) else ">" if V(b) < V(a) else "="
        assert got == op and (op != "=" or V(a) == V(b)), f"{a} {op} {b}: {got}"


def test_a_wolfi_root_file_system_is_matched_against_wolfi_records(tmp_path, osv_db):
    root = tmp_path / "rootfs"
    (root / "etc").mkdir(parents=True)
    (root / "lib/apk/db").mkdir(parents=True)
    (root / "etc/os-release").write_bytes(b'ID=wolfi\nNAME="Wolfi"\nPRETTY_NAME="Wolfi"\nVERSION_ID="20230201"\n'
                                          b'HOME_URL="https://wolfi.dev"\n')
    (root / "lib/apk/db/installed").write_bytes(
        b"C:Q1abc=\nP:libcrypto3\nV:3.0.7-r1\nA:x86_64\no:openssl\n\nC:Q1def=\nP:wolfi-baselayout\nV:20230201-r0\n"
        b"A:x86_64\no:wolfi-baselayout\n\n")
    result = run_cli("scan", "--db", osv_db, "--json", root)
    assert result.exit_code == 3, result.output
    evidence = json.loads(result.output[:result.output.rindex("}") + 1])
    assert [(m["id"], m["package"], m["ecosystem"], m["fixed"]) for m in evidence["matches"]] == [
        ("CGA-6mjr-v678-c6gm", "openssl", "Wolfi", "3.0.8-r0")]
    assert "not_covered" not in evidence   # wolfi-baselayout: no record names it, in a folder the database has
    # an apk database under an OS OSV does not name is not read as Alpine without a release
    (root / "etc/os-release").write_bytes(b'ID=postmarketos\nVERSION_ID="v23.06"\n')
    result = run_cli("scan", "--db", osv_db, root)
    assert result.exit_code == 3 and "apk openssl 3.0.7-r1 (the OS release is not one OSV names)" in result.output


# -- an image whose verified SBOM lists language packages ------------------------------------------

def trivy_bom(*added: tuple[str, str, str]) -> dict:
    """Trivy's CycloneDX test BOM; each of `added` (purl, name, version) a library beside its Go module."""
    bom = json.loads((DATA / "sbom" / "trivy-cyclonedx-languages.json").read_text())
    go = next(c for c in bom["components"] if c.get("purl", "").startswith("pkg:golang/"))
    for purl, name, version in added:
        component = copy.deepcopy(go)
        component.update({"bom-ref": purl, "purl": purl, "name": name, "version": version})
        bom["components"].append(component)
    return bom


def sbom_policy(tmp_path, registry, registry2, repo, tags, db, gate="{}"):
    rule = SBOM_RULE.replace("MODE", "optional")
    rule += f"    gates: {{vulnerabilities: {gate}}}\nvulnerabilities: {{db: {db}, max_age: 1000w}}\n"
    return write_policy(tmp_path, registry, registry2, repo, repo, {"include": tags}, rule)


def attested_images(tmp_path, registry, repo, boms: dict[str, dict]) -> None:
    key = make_key("ecdsa")
    write_public_key(key, tmp_path / "cosign.pub")
    layout = tmp_path / "layout"
    for tag, bom in boms.items():
        digest = debian_image(layout, tag, ALPINE, {"etc/motd": tag.encode()})
        seed(registry, repo, tag, layout)
        attest(registry, repo, digest, key, CYCLONEDX, bom)


NET = "pkg:golang/golang.org/x/net@v{}", "golang.org/x/net", "v{}"
BABEL = "pkg:npm/%40babel/traverse@{}", "@babel/traverse", "{}"


def _at(package: tuple[str, str, str], version: str) -> tuple[str, str, str]:
    return package[0].format(version), package[1], package[2].format(version)


def test_a_verified_sbom_listing_a_vulnerable_go_module_or_npm_package_refuses_the_image(
        tmp_path, registry, registry2, unique_repo, osv_db):
    attested_images(tmp_path, registry, unique_repo, {
        "vulnerable": trivy_bom(_at(NET, "0.17.0"), _at(BABEL, "7.22.0")),
        "fixed": trivy_bom(_at(NET, "0.23.0"), _at(BABEL, "7.23.2"))})
    policy = sbom_policy(tmp_path, registry, registry2, unique_repo, ["vulnerable", "fixed"], osv_db,
                         "{not_covered: record}")
    rows = plan_rows(policy)

    assert rows["vulnerable"]["action"] == "refuse"
    reason = rows["vulnerable"]["reason"]
    assert "@babel/traverse 7.22.0: GHSA-67hx-6x53-jw92 (critical 9.3; fixed in 7.23.2)" in reason, reason
    assert "golang.org/x/net 0.17.0: GHSA-4v7x-pqxf-cx7m, GO-2024-2687 (medium 5.3; fixed in 0.23.0)" in reason
    assert rows["fixed"]["action"] == "copy", rows["fixed"]["reason"]
    fixed = rows["fixed"]["verification"]["vulnerabilities"]
    assert fixed["matches"] == []
    listed = {(p["ecosystem"], p["name"], p["version"]) for p in fixed["packages"]}
    assert {("Go", "golang.org/x/net", "0.23.0"), ("npm", "@babel/traverse", "7.23.2"),
            ("npm", "@example/bootstrap", "5.0.2"), ("Maven", "org.codehaus.mojo:child-project", "1.0"),
            ("Maven", "com.example:example", "0.0.1"), ("Alpine:v3.16", "musl", "1.2.3-r0"),
            ("Go", "github.com/package-url/packageurl-go", "0.1.1-0.20220203205134-d70459300c8a")} <= listed
    # the database has no Packagist folder: the composer packages are not covered, and say what to add
    assert fixed["not_covered"] == [
        f"pear/{name} (the database has no Packagist/ folder: add OSV's Packagist/all.zip (docs/vulnerabilities.md))"
        for name in ("log 1.13.1", "pear_exception v1.0.0")]

    assert run_cli("sync", "-p", policy).exit_code == 3
    assert set(by_tag(audit(tmp_path, "refused"))) == {"vulnerable"}
    assert manifest_digest(registry2, unique_repo, "vulnerable") is None
    assert manifest_digest(registry2, unique_repo, "fixed") is not None


def test_an_ecosystem_folder_the_database_lacks_refuses_by_default_naming_the_folder(
        tmp_path, registry, registry2, unique_repo):
    db = build_osv_db(tmp_path / "osv", ("PyPI", "Alpine", "npm", "Maven"))   # no Go/, no Packagist/
    attested_images(tmp_path, registry, unique_repo, {"go": trivy_bom(_at(NET, "0.23.0"))})
    row = plan_rows(sbom_policy(tmp_path, registry, registry2, unique_repo, ["go"], db))["go"]
    assert row["action"] == "refuse"
    assert "not checked: " in row["reason"] and "not covered is not clean" in row["reason"]
    assert "golang.org/x/net 0.23.0 (the database has no Go/ folder: add OSV's Go/all.zip" in row["reason"], row
    assert "@example/bootstrap" not in row["reason"]   # npm/ is there: checked, and clean


def test_the_docs_download_command_fetches_every_ecosystem_regsync_compares():
    import re

    from regsync.vulns.versions import COVERED

    command = re.search(r"```sh\nfor e in ([^;]+); do", (Path(__file__).resolve().parent.parent / "docs" /
                                                      "vulnerabilities.md").read_text())
    assert command is not None and set(command.group(1).split()) == set(COVERED)
    assert {p.name for p in (DATA / "osv").iterdir() if p.is_dir()} <= set(COVERED)


def test_the_inventory_names_an_images_language_packages_by_their_own_purls():
    from regsync.audit.inventory import Imported, inside

    row = {"verification": {"vulnerabilities": {"packages": [
        {"ecosystem": "Go", "name": "golang.org/x/net", "version": "0.23.0"},
        {"ecosystem": "npm", "name": "@babel/traverse", "version": "7.23.2"},
        {"ecosystem": "Maven", "name": "commons-io:commons-io", "version": "2.14.0"},
        {"ecosystem": "Wolfi", "name": "openssl", "version": "3.0.8-r0"}]}}}
    image = Imported(row, "image:harbor/app:1", "app", "1", PackageURL(type="oci", name="app"), None)
    assert [str(p.purl) for p in inside(image)] == [
        "pkg:golang/golang.org/x/net@v0.23.0", "pkg:npm/%40babel/traverse@7.23.2",
        "pkg:maven/commons-io/commons-io@2.14.0", "pkg:apk/wolfi/openssl@3.0.8-r0"]
