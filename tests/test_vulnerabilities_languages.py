"""Language packages an image holds, read from its layers (docs/vulnerabilities.md, "What is
matched"): npm's node_modules, Composer's installed.json, RubyGems' gemspecs; and SPDX 3 SBOM
attestations. Images are built here as real layer tars and pushed to docker-registry; the OSV
records are the real ones in tests/data/osv (GHSA-67hx-6x53-jw92: @babel/traverse, fixed in 7.23.2;
GHSA-22f2-v57c-j9cx: rack, fixed in 2.2.8.1; GHSA-f2wf-25xc-69c9: guzzlehttp/guzzle, fixed in 7.4.4;
GHSA-m5pq-gvj9-9vr8: regex, fixed in 1.5.5)."""

import copy
import hashlib
import io
import json
from pathlib import Path

import pytest

from tests.fixtures.attest import attest
from tests.fixtures.cosign import make_key, manifest_digest, write_public_key
from tests.fixtures.oci_layout import seed
from tests.fixtures.osv import build_osv_db
from tests.fixtures.policies import run_cli
from tests.test_verify_signatures import audit, by_tag, write_policy
from tests.test_vulnerabilities_images import BASE, UPGRADE, debian_image, gated, layer

SPDX3 = "https://spdx.dev/Document/v3"
SBOMS = Path(__file__).resolve().parent / "data" / "sbom"


def package_json(name: str, version: str) -> bytes:
    """An installed package's package.json as npm leaves it: more fields than the name and version."""
    return json.dumps({"name": name, "version": version, "description": "The Babel Traverse module",
                       "main": "./lib/index.js", "license": "MIT",
                       "dependencies": {"@babel/types": f"^{version}", "debug": "^4.1.0"}}, indent=2).encode()


TRAVERSE = "usr/src/app/node_modules/@babel/traverse/package.json"
NESTED = "usr/src/app/node_modules/@babel/core/node_modules/@babel/traverse/package.json"
PROJECT = "usr/src/app/package.json"   # the project itself: not an installed package


@pytest.fixture(scope="module")
def osv_db(tmp_path_factory):
    return build_osv_db(tmp_path_factory.mktemp("osv"), ("PyPI", "Debian", "npm", "RubyGems", "Packagist", "crates.io"))


def contents_of(files: dict[str, bytes]):
    from regsync.vulns.layers import ImageContents

    contents = ImageContents()
    contents.add_layer(io.BytesIO(layer(files)))
    return contents


def test_an_npm_package_in_node_modules_refuses_the_image_at_apply_and_a_fixed_one_passes(
        tmp_path, registry, registry2, unique_repo, osv_db):
    layout = tmp_path / "layout"
    debian_image(layout, "vulnerable", BASE, UPGRADE, {TRAVERSE: package_json("@babel/traverse", "7.23.0")})
    debian_image(layout, "nested", BASE, UPGRADE, {NESTED: package_json("@babel/traverse", "7.22.20"),
                                                   TRAVERSE.replace("traverse", "core"): package_json("@babel/core", "7.23.0")})
    fixed = debian_image(layout, "fixed", BASE, UPGRADE, {TRAVERSE: package_json("@babel/traverse", "7.23.2"),
                                                          PROJECT: package_json("@babel/traverse", "7.0.0")})
    for tag in ("vulnerable", "nested", "fixed"):
        seed(registry, unique_repo, tag, layout)
    policy = gated(tmp_path, registry, registry2, unique_repo, ["vulnerable", "nested", "fixed"], osv_db)
    result = run_cli("sync", "-p", policy)
    assert result.exit_code == 3, result.output
    refused = by_tag(audit(tmp_path, "refused"))
    assert set(refused) == {"vulnerable", "nested"}
    assert "@babel/traverse 7.23.0: GHSA-67hx-6x53-jw92 (critical 9.3; fixed in 7.23.2)" in refused["vulnerable"]["reason"]
    assert "@babel/traverse 7.22.20: GHSA-67hx-6x53-jw92" in refused["nested"]["reason"]   # nested node_modules
    assert manifest_digest(registry2, unique_repo, "vulnerable") is None
    assert manifest_digest(registry2, unique_repo, "fixed") == fixed
    found = by_tag(audit(tmp_path, "pushed"))["fixed"]["verification"]["vulnerabilities"]
    assert found["matches"] == [] and not found.get("not_covered")
    # the project's own package.json (7.0.0, outside node_modules) is not taken as an installed package
    assert [p for p in found["packages"] if p["ecosystem"] == "npm"] == [
        {"ecosystem": "npm", "name": "@babel/traverse", "version": "7.23.2"}]


def test_only_installed_packages_are_read_and_only_their_names_are_kept():
    files = {TRAVERSE: package_json("@babel/traverse", "7.23.0"), NESTED: package_json("@babel/traverse", "7.22.20"),
             "usr/lib/node_modules/npm/node_modules/semver/package.json": package_json("semver", "7.5.1"),
             PROJECT: package_json("app", "1.0.0"),
             "usr/src/app/node_modules/semver/lib/package.json": package_json("not-a-package", "1.0.0"),
             "usr/src/app/node_modules/@babel/package.json": package_json("not-a-package", "2.0.0"),
             "usr/src/app/node_modules/.pnpm/package.json": package_json("not-a-package", "3.0.0"),
             "usr/src/app/node_modules/broken/package.json": b'{"name": "broken", "vers',
             "usr/src/app/node_modules/unnamed/package.json": b'{"private": true}'}
    contents = contents_of(files)
    assert contents.files[TRAVERSE] == b'{"name": "@babel/traverse", "version": "7.23.0"}'   # cut as read
    found, not_covered = contents.packages()
    assert sorted(found) == [("npm", "@babel/traverse", "7.22.20"), ("npm", "@babel/traverse", "7.23.0"),
                             ("npm", "semver", "7.5.1")]
    assert sorted(not_covered) == [
        "npm package usr/src/app/node_modules/broken/package.json: not JSON (Unterminated string starting at: "
        "line 1 column 20 (char 19))",
        "npm package usr/src/app/node_modules/unnamed/package.json: its package.json names no name and version"]


def test_composer_installed_json_in_both_forms_is_read_as_packagist():
    """Composer 2 writes `{"packages": [...], "dev": …}`; Composer 1 a list of the same entries."""
    entry = {"name": "guzzlehttp/guzzle", "version": "7.4.4", "version_normalized": "7.4.4.0", "type": "library",
             "source": {"type": "git", "url": "https://github.com/guzzle/guzzle.git", "reference": "e3ff079"}}
    symfony = {"name": "symfony/http-kernel", "version": "v5.4.20", "version_normalized": "5.4.20.0"}
    two = json.dumps({"packages": [entry, symfony], "dev": True, "dev-package-names": []}).encode()
    one = json.dumps([entry]).encode()
    assert sorted(contents_of({"var/www/html/vendor/composer/installed.json": two}).packages()[0]) == [
        ("Packagist", "guzzlehttp/guzzle", "7.4.4"), ("Packagist", "symfony/http-kernel", "v5.4.20")]
    assert contents_of({"app/vendor/composer/installed.json": one}).packages()[0] == [
        ("Packagist", "guzzlehttp/guzzle", "7.4.4")]
    found, not_covered = contents_of({"app/vendor/composer/installed.json": b'{"dev": true}'}).packages()
    assert found == [] and not_covered == [
        "Composer app/vendor/composer/installed.json: neither Composer 1's list nor Composer 2's packages"]


def test_a_gemspec_file_name_names_the_gem():
    from regsync.vulns.records import gem_of

    assert gem_of("rack-2.2.8") == ("rack", "2.2.8")
    assert gem_of("nokogiri-1.15.4-x86_64-linux") == ("nokogiri", "1.15.4")
    assert gem_of("nokogiri-1.16.0-universal-darwin-22") == ("nokogiri", "1.16.0")
    assert gem_of("google-protobuf-3.25.1-x86_64-linux-musl") == ("google-protobuf", "3.25.1")
    assert gem_of("jruby-openssl-0.14.2-java") == ("jruby-openssl", "0.14.2")
    assert gem_of("ruby-2captcha-1.0.0") == ("ruby-2captcha", "1.0.0")
    assert gem_of("aws-sdk-s3-1.142.0") == ("aws-sdk-s3", "1.142.0")
    assert gem_of("rails-7.1.0.rc1") == ("rails", "7.1.0.rc1")
    assert gem_of("rack") is None
    found = contents_of({"usr/local/bundle/specifications/rack-2.2.8.gemspec": b"Gem::Specification.new do |s|\n",
                         "var/lib/gems/3.1.0/specifications/nokogiri-1.15.4-x86_64-linux.gemspec": b"",
                         "usr/lib/ruby/gems/3.1.0/specifications/default/json-2.6.1.gemspec": b"",
                         "usr/src/app/mygem.gemspec": b"a project's own gemspec, not installed"}).packages()[0]
    assert sorted(found) == [("RubyGems", "json", "2.6.1"), ("RubyGems", "nokogiri", "1.15.4"),
                             ("RubyGems", "rack", "2.2.8")]


def test_more_package_files_than_the_cap_are_reported_not_covered(monkeypatch):
    from regsync.vulns import records

    monkeypatch.setattr(records, "MAX_LANGUAGE", 3)
    files = {f"app/node_modules/p{n}/package.json": package_json(f"p{n}", "1.0.0") for n in range(5)}
    contents = contents_of(files)
    found, not_covered = contents.packages()
    assert len(found) == 3 and len(contents.files) == 3   # the rest were neither kept nor named
    assert not_covered == ["more than 3 npm and RubyGems package files in one layer: "
                           "app/node_modules/p3/package.json and those after it not checked"]


@pytest.mark.parametrize("read_as", ["layer", "root folder"])
def test_past_the_cap_only_language_files_are_skipped_never_the_os_packages_after_them(tmp_path, monkeypatch, read_as):
    """The cap skips npm and RubyGems files only: a dpkg status that comes after them (in the tar, or
    in a root folder's sorted walk: usr/ before var/) is still read."""
    from regsync.vulns import records
    from regsync.vulns.layers import ImageContents

    monkeypatch.setattr(records, "MAX_LANGUAGE", 3)
    files = {**{f"usr/lib/node_modules/p{n}/package.json": package_json(f"p{n}", "1.0.0") for n in range(5)}, **BASE}
    if read_as == "layer":
        contents = contents_of(files)
    else:
        for name, data in files.items():
            (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
            (tmp_path / name).write_bytes(data)
        contents = ImageContents()
        contents.add_tree(tmp_path)
    found, not_covered = contents.packages()
    assert sorted(name for ecosystem, name, _ in found if ecosystem == "npm") == ["p0", "p1", "p2"]
    assert [name for ecosystem, name, _ in found if ecosystem.startswith("Debian")], found
    assert not_covered == ["more than 3 npm and RubyGems package files in one layer: "
                           "usr/lib/node_modules/p3/package.json and those after it not checked"]


def test_scan_reads_node_modules_gems_and_composer_in_a_root_folder(tmp_path, osv_db):
    root = tmp_path / "rootfs"
    for name, data in {**BASE, **UPGRADE, TRAVERSE: package_json("@babel/traverse", "7.23.0"),
                       "usr/local/bundle/specifications/rack-2.2.8.gemspec": b"",
                       "var/www/vendor/composer/installed.json":
                           b'{"packages": [{"name": "guzzlehttp/guzzle", "version": "7.4.3"}], "dev": false}',
                       PROJECT: package_json("app", "1.0.0")}.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)
    result = run_cli("scan", "--db", osv_db, "--json", root)
    assert result.exit_code == 3, result.output
    evidence = json.loads(result.output[:result.output.rindex("}") + 1])
    assert sorted((m["package"], m["version"], m["id"], m["fixed"]) for m in evidence["matches"]) == [
        ("@babel/traverse", "7.23.0", "GHSA-67hx-6x53-jw92", "7.23.2"),
        ("guzzlehttp/guzzle", "7.4.3", "GHSA-f2wf-25xc-69c9", "7.4.4"), ("rack", "2.2.8", "GHSA-22f2-v57c-j9cx", "2.2.8.1")]
    assert not evidence.get("not_covered")
    assert not any(p["name"] == "app" for p in evidence["packages"])


# The layer cache's format as main wrote it before language packages were read (version 1).
OLD_WANTED = (r"(etc|usr/lib)/os-release|var/lib/dpkg/status|var/lib/dpkg/status\.d/[^/]+|lib/apk/db/installed"
              r"|.*/[^/]+\.dist-info/METADATA|(.*/)?conda-meta/[^/]+\.json")


def test_a_layer_cache_entry_of_the_old_format_is_a_miss(tmp_path, monkeypatch):
    """An entry written before node_modules were read says nothing of them: read as complete, the
    plan would judge an image holding a vulnerable npm package clean from it."""
    from regsync.vulns.layer_cache import cached_layer, keep_layer
    from regsync.vulns.layers import MAX_FILE, MAX_METADATA, LayerFiles

    monkeypatch.setenv("REGSYNC_STATE_DIR", str(tmp_path / "state"))
    digest = "sha256:" + "c" * 64
    files = LayerFiles()
    files.ops.append(("file", "etc/os-release", b"ID=debian\n"))
    keep_layer(digest, files)
    assert cached_layer(digest).ops == files.ops
    entry = tmp_path / "state" / "vuln-layers" / ("c" * 64 + ".json")
    old = hashlib.sha256(f"1 {OLD_WANTED} {MAX_FILE} {MAX_METADATA}".encode()).hexdigest()[:16]
    entry.write_text(json.dumps({"format": old, "digest": digest, "ops": [["file", "etc/os-release", "SUQ9ZGViaWFuCg=="]]}))
    assert cached_layer(digest) is None


def spdx3_sbom() -> dict:
    """The SPDX 3.0.1 example (tests/data/sbom/README.md) with one crate added after its tokio, in the
    same shape: regex 1.5.4 (GHSA-m5pq-gvj9-9vr8, fixed in 1.5.5)."""
    document = json.loads((SBOMS / "spdx3-k8s-bom.spdx3.json").read_text())
    [tokio] = [e for e in document["@graph"] if e.get("name") == "tokio"]
    regex = copy.deepcopy(tokio)
    regex.update(spdxId=tokio["spdxId"].replace("gnrtd13", "gnrtd99"), name="regex", software_packageVersion="1.5.4",
                 software_packageUrl="pkg:cargo/regex@1.5.4")
    document["@graph"].append(regex)
    return document


def test_a_verified_spdx3_sbom_is_judged_at_plan_time(tmp_path, registry, registry2, unique_repo, osv_db):
    from regsync.vulns.sbom import sbom_packages

    found, not_covered = sbom_packages(SPDX3, json.loads((SBOMS / "spdx3-k8s-bom.spdx3.json").read_text()))
    assert sorted(found) == [("crates.io", "hyper", "0.14"), ("crates.io", "pretty_env_logger", "0.4.0"),
                             ("crates.io", "tokio", "1.19.2")]
    assert not_covered == ["deb debian/libselinux1-dev 3.1-3 (its purl names no distribution release OSV has: none)"]

    key = make_key("ecdsa")
    write_public_key(key, tmp_path / "cosign.pub")
    layout = tmp_path / "layout"
    digest = debian_image(layout, "rust", BASE, UPGRADE)
    seed(registry, unique_repo, "rust", layout)
    attest(registry, unique_repo, digest, key, SPDX3, spdx3_sbom())
    rule = (f'    verify:\n      require_attestations:\n        - {{type: "{SPDX3}", trust: [release]}}\n'
            f"    gates: {{vulnerabilities: {{max_severity: medium, not_covered: record}}}}\n"
            f"vulnerabilities: {{db: {osv_db}, max_age: 1000w}}\n")
    policy = write_policy(tmp_path, registry, registry2, unique_repo, unique_repo, {"include": ["rust"]}, rule)
    result = run_cli("plan", "-p", policy, "--json")
    assert result.exit_code in (0, 3), result.output   # a plan with refuse rows is a plan
    [row] = json.loads(result.output)["items"]
    assert row["action"] == "refuse"
    assert "regex 1.5.4: GHSA-m5pq-gvj9-9vr8 (high 7.5; fixed in 1.5.5)" in row["reason"]
    assert row["verification"]["vulnerabilities"]["package_list"] == f"verified SBOM attestation ({SPDX3})"


def test_more_packages_in_an_image_than_the_cap_are_reported_not_covered(monkeypatch):
    from regsync.vulns import records
    from regsync.vulns.layers import ImageContents

    monkeypatch.setattr(records, "MAX_LANGUAGE", 3)
    contents = ImageContents()
    for n in range(2):   # two layers, each within the cap
        contents.add_layer(io.BytesIO(layer({f"app{n}/node_modules/p{k}/package.json": package_json(f"p{n}{k}", "1.0.0")
                                             for k in range(2)})))
    found, not_covered = contents.packages()
    assert len(found) == 3 and not_covered == ["1 more npm, Composer and RubyGems packages than the 3 read (not checked)"]
