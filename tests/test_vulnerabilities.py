"""The offline vulnerability gate for wheels and sdists (docs/vulnerabilities.md): real OSV records
(tests/data/osv/README.md), real wheels on a loopback index, a directory target pip could read."""

import json
import zipfile

import pytest

from regsync.vulns.database import OsvDatabase
from regsync.vulns.match import find
from tests.fixtures.osv import DATA, build_osv_db
from tests.fixtures.policies import audit_records, run_cli
from tests.fixtures.pypi import SimpleIndex, build_sdist, build_wheel

# (name as the file spells it, version, expected ids, severity, fixed)
CASES = [
    ("requests", "2.30.0", ["PYSEC-2023-74"], "unscored", "2.31.0"),      # ECOSYSTEM introduced/fixed
    ("Requests", "2.3.0", ["PYSEC-2023-74"], "unscored", "2.31.0"),       # normalised name, lower bound
    ("requests", "2.31.0", [], None, None),                                # the fix itself
    ("requests", "2.2.1", [], None, None),                                 # before introduced
    ("py", "1.11.0", ["PYSEC-2022-42969"], "unscored", None),             # last_affected, no fix
    ("py", "1.12.0", [], None, None),                                      # after last_affected
    ("py", "1.4.7.dev3", ["PYSEC-2022-42969"], "unscored", None),         # versions list
    ("aiohttp", "3.8.1", [], None, None),                                  # withdrawn record
    ("mkdocs", "1.2.2", ["PYSEC-2021-878"], "high", "1.2.3"),
    ("jwcrypto", "1.5.0", ["PYSEC-2024-104"], "medium", "1.5.1"),
    ("duckdb", "0.9.3.dev5", ["PYSEC-2024-25"], "critical", "0.9.3.dev6"),  # PEP 440 pre-releases
    ("duckdb", "0.9.3.dev6", [], None, None),
]


@pytest.fixture(scope="module")
def osv_db(tmp_path_factory):
    return build_osv_db(tmp_path_factory.mktemp("osv"))


@pytest.mark.parametrize("name,version,ids,severity,fixed", CASES)
def test_pypi_records_match_by_normalised_name_and_pep440_ranges(osv_db, name, version, ids, severity, fixed):
    matches = find(OsvDatabase(osv_db), "PyPI", name, version)
    assert [m.id for m in matches] == ids
    if ids:
        assert (matches[0].severity.level or "unscored", matches[0].fixed) == (severity, fixed)


def test_debian_versions_compare_as_dpkg_does(osv_db):
    db = OsvDatabase(osv_db)
    assert [m.fixed for m in find(db, "Debian:7", "nginx", "1.2.1-2.2+wheezy2")] == ["1.2.1-2.2+wheezy3"]
    assert find(db, "Debian:7", "nginx", "1.2.1-2.2+wheezy3") == []
    assert find(db, "Debian:7", "nginx", "1:1.0-1") == []   # an epoch outranks every version without one


def test_a_folder_of_json_records_is_the_same_database_as_the_zip(tmp_path):
    folder, zipped = build_osv_db(tmp_path / "a", as_zip=False), build_osv_db(tmp_path / "b")
    assert [m.as_dict() for m in find(OsvDatabase(folder), "PyPI", "mkdocs", "1.2.2")] == \
           [m.as_dict() for m in find(OsvDatabase(zipped), "PyPI", "mkdocs", "1.2.2")]
    assert OsvDatabase(folder).sha256 != OsvDatabase(zipped).sha256   # the hash names the files as they are


# -- the gate, end to end -------------------------------------------------------------------------

WHEELS = [("mkdocs", "1.2.2"), ("mkdocs", "1.2.3"), ("jwcrypto", "1.5.0"), ("duckdb", "0.9.2"),
          ("requests", "2.30.0"), ("py", "1.11.0"), ("aiohttp", "3.8.1")]


@pytest.fixture(scope="module")
def wheels(tmp_path_factory):
    folder = tmp_path_factory.mktemp("vuln-wheels")
    return {f"{n}-{v}": build_wheel(folder, n, v) for n, v in WHEELS} | {
        "jwcrypto-sdist": build_sdist(folder, "jwcrypto", "1.5.0")}


@pytest.fixture
def index(wheels):
    served = SimpleIndex.serving(wheels.values())
    yield served
    served.stop()


def gated_policy(tmp_path, index, db, requirements, gate: str, max_age: str = "1000w", sdists=False) -> object:
    path = tmp_path / "policy.yaml"
    path.write_text(f"""\
version: 1
indexes:
  mirror: {{url: "{index.url}"}}
  internal: {{kind: directory, path: {tmp_path / 'tree'}}}
vulnerabilities: {{db: {db}, max_age: {max_age}}}
packages:
  - from: mirror
    to: internal
    requirements: {json.dumps(requirements)}
    sdists: {str(sdists).lower()}
    gates:
      vulnerabilities: {gate}
audit: {{path: audit.jsonl}}
""")
    return path


def planned(result) -> dict:
    return {item["source"].split("/", 1)[1]: item for item in json.loads(result.output)["items"]}


ALL = ["mkdocs==1.2.2", "jwcrypto==1.5.0", "duckdb==0.9.2", "requests==2.30.0", "py==1.11.0", "aiohttp==3.8.1"]
GATE = ('{max_severity: medium, fixed_only: true, ignore: [{id: CVE-2023-32681, reason: "no proxies with '
        'credentials here", until: 2099-01-01}]}')


def test_the_gate_refuses_at_plan_time_naming_ids_package_and_fix_and_admits_the_rest(tmp_path, index, osv_db):
    policy = gated_policy(tmp_path, index, osv_db, ALL, GATE)
    result = run_cli("plan", "-p", policy, "--json")
    assert result.exit_code == 0, result.output
    items = planned(result)
    refused = {name: item["reason"] for name, item in items.items() if item["action"] == "refuse"}
    assert set(refused) == {"mkdocs-1.2.2-py3-none-any.whl", "duckdb-0.9.2-py3-none-any.whl"}
    assert "mkdocs 1.2.2: PYSEC-2021-878 (high 7.5; fixed in 1.2.3)" in refused["mkdocs-1.2.2-py3-none-any.whl"]
    assert "duckdb 0.9.2: PYSEC-2024-25 (critical 9.8; fixed in 0.9.3.dev6)" in refused["duckdb-0.9.2-py3-none-any.whl"]
    decisions = {name: [(m["id"], m["severity"], m["decision"]) for m in item["verification"]["vulnerabilities"]["matches"]]
                 for name, item in items.items()}
    assert decisions["jwcrypto-1.5.0-py3-none-any.whl"] == [("PYSEC-2024-104", "medium", "allowed")]
    assert decisions["py-1.11.0-py3-none-any.whl"] == [("PYSEC-2022-42969", "unscored", "no-fix")]
    assert decisions["requests-2.30.0-py3-none-any.whl"] == [("PYSEC-2023-74", "unscored", "ignored")]
    assert decisions["aiohttp-3.8.1-py3-none-any.whl"] == []   # its only record is withdrawn
    db = items["aiohttp-3.8.1-py3-none-any.whl"]["verification"]["vulnerabilities"]["db"][0]
    assert db["sha256"] == OsvDatabase(osv_db).sha256 and db["records"] == 6 and db["newest_record"].startswith("2024-10-10")


def test_sync_pushes_only_what_the_gate_admits_and_the_trail_lists_every_match(tmp_path, index, osv_db):
    policy = gated_policy(tmp_path, index, osv_db, ALL, GATE)
    result = run_cli("-v", "sync", "-p", policy)
    assert result.exit_code == 3, result.output
    landed = sorted(p.name for p in (tmp_path / "tree").rglob("*.whl"))
    assert landed == ["aiohttp-3.8.1-py3-none-any.whl", "jwcrypto-1.5.0-py3-none-any.whl",
                      "py-1.11.0-py3-none-any.whl", "requests-2.30.0-py3-none-any.whl"]
    records = audit_records(tmp_path / "audit.jsonl")
    refused = {r["artifact"]["source"]: r for r in records if r["event"] == "refused"}
    assert "PYSEC-2021-878" in refused["mirror/mkdocs-1.2.2-py3-none-any.whl"]["reason"]
    matches = refused["mirror/mkdocs-1.2.2-py3-none-any.whl"]["verification"]["vulnerabilities"]["matches"]
    assert [(m["id"], m["severity"], m["score"], m["fixed"]) for m in matches] == [("PYSEC-2021-878", "high", 7.5, "1.2.3")]
    verified = {r["artifact"]["source"]: r["verification"] for r in records if r["event"] == "verified"}
    ignored = verified["mirror/requests-2.30.0-py3-none-any.whl"]["vulnerabilities"]["matches"][0]
    assert ignored["decision"] == "ignored" and "no proxies with credentials here" in ignored["note"]
    assert "PYSEC-2024-104" in result.output and "medium" in result.output   # -v lists the matches


def test_an_unscored_match_counts_as_critical_unless_the_policy_says_otherwise(tmp_path, index, osv_db):
    strict = planned(run_cli("plan", "-p", gated_policy(tmp_path, index, osv_db, ["requests==2.30.0"],
                                                         "{max_severity: high}"), "--json"))
    assert strict["requests-2.30.0-py3-none-any.whl"]["action"] == "refuse"
    assert "unscored, counted as critical; fixed in 2.31.0" in strict["requests-2.30.0-py3-none-any.whl"]["reason"]
    lenient = planned(run_cli("plan", "-p", gated_policy(tmp_path, index, osv_db, ["requests==2.30.0"],
                                                          "{max_severity: high, unscored_as: medium}"), "--json"))
    assert lenient["requests-2.30.0-py3-none-any.whl"]["action"] == "copy"


def test_an_sdist_is_matched_like_its_wheel(tmp_path, wheels, osv_db):
    served = SimpleIndex.serving([wheels["jwcrypto-sdist"]])
    try:
        items = planned(run_cli("plan", "-p", gated_policy(tmp_path, served, osv_db, ["jwcrypto==1.5.0"],
                                                           "{max_severity: low}", sdists=True), "--json"))
    finally:
        served.stop()
    assert "jwcrypto 1.5.0: PYSEC-2024-104 (medium 5.3; fixed in 1.5.1)" in items["jwcrypto-1.5.0.tar.gz"]["reason"]


def test_a_database_that_learned_of_a_vulnerability_after_the_plan_refuses_before_the_push(tmp_path, index, osv_db):
    db = tmp_path / "osv"
    build_osv_db(db)
    with zipfile.ZipFile(db / "PyPI" / "all.zip", "w") as archive:   # the day before: no mkdocs record
        archive.writestr("PYSEC-2024-104.json", zipfile.ZipFile(osv_db / "PyPI" / "all.zip").read("PYSEC-2024-104.json"))
    policy = gated_policy(tmp_path, index, db, ["mkdocs==1.2.2"], "{max_severity: medium}")
    result = run_cli("plan", "-p", policy, "-o", tmp_path / "plan.json")
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "plan.json").read_text())["items"][0]["action"] == "copy"
    (db / "PyPI" / "all.zip").write_bytes((osv_db / "PyPI" / "all.zip").read_bytes())   # updated database
    result = run_cli("sync", "-p", policy, "--plan", tmp_path / "plan.json")
    assert result.exit_code == 3, result.output
    assert not list((tmp_path / "tree").rglob("*.whl"))
    refused = [r for r in audit_records(tmp_path / "audit.jsonl") if r["event"] == "refused"]
    assert "PYSEC-2021-878" in refused[0]["reason"] and refused[0]["verification"]["vulnerabilities"]["matches"]


# -- policy errors: exit 2, nothing touched -------------------------------------------------------

def test_a_database_older_than_max_age_is_a_policy_error_not_a_pass(tmp_path, index, osv_db):
    result = run_cli("plan", "-p", gated_policy(tmp_path, index, osv_db, ["mkdocs==1.2.3"], "{}", max_age="30d"))
    assert result.exit_code == 2, result.output
    assert "the PyPI database is" in result.output and "older than max_age 30 days" in result.output


def test_an_expired_ignore_is_a_policy_error_at_its_line(tmp_path, index, osv_db):
    gate = '{ignore: [{id: PYSEC-2021-878, reason: "accepted once", until: 2020-01-01}]}'
    result = run_cli("policy", "check", "-p", gated_policy(tmp_path, index, osv_db, ["mkdocs==1.2.2"], gate))
    assert result.exit_code == 2, result.output
    assert "policy.yaml:" in result.output and "expired on 2020-01-01" in result.output


def test_a_gate_without_a_database_is_a_policy_error(tmp_path, index):
    path = gated_policy(tmp_path, index, "/nowhere", ["mkdocs==1.2.2"], "{}")
    path.write_text("\n".join(line for line in path.read_text().splitlines() if not line.startswith("vulnerabilities:")))
    result = run_cli("policy", "check", "-p", path)
    assert result.exit_code == 2 and "a vulnerabilities gate needs the database" in result.output, result.output


def test_a_missing_database_folder_is_a_policy_error(tmp_path, index):
    result = run_cli("plan", "-p", gated_policy(tmp_path, index, tmp_path / "absent", ["mkdocs==1.2.3"], "{}"))
    assert result.exit_code == 2 and "is not a folder of OSV databases" in result.output, result.output


def test_the_records_in_tests_data_are_the_ones_the_readme_names():
    named = {line.split("|")[1].strip() for line in (DATA / "README.md").read_text().splitlines()
             if line.startswith("| ") and "/" in line.split("|")[1]}
    assert named == {f"{p.parent.name}/{p.name}" for p in DATA.glob("*/*") if p.is_file()}


# -- regsync scan FILE ----------------------------------------------------------------------------

def test_scan_lists_a_files_matches_and_exits_3_above_max_severity(wheels, osv_db):
    result = run_cli("scan", "--db", osv_db, "--max-severity", "medium", wheels["mkdocs-1.2.2"])
    assert result.exit_code == 3, result.output
    assert "PYSEC-2021-878" in result.output and "high 7.5" in result.output and "1.2.3" in result.output
    result = run_cli("scan", "--db", osv_db, "--max-severity", "medium", "--json", wheels["jwcrypto-1.5.0"])
    assert result.exit_code == 0, result.output
    evidence = json.loads(result.output[:result.output.rindex("}") + 1])
    assert [(m["id"], m["decision"]) for m in evidence["matches"]] == [("PYSEC-2024-104", "allowed")]


def test_scan_takes_the_database_and_its_age_limit_from_a_policy(tmp_path, index, wheels, osv_db):
    policy = gated_policy(tmp_path, index, osv_db, ["x"], "{}", max_age="30d")
    result = run_cli("scan", "-p", policy, wheels["mkdocs-1.2.3"])
    assert result.exit_code == 2 and "older than max_age" in result.output, result.output
    policy = gated_policy(tmp_path, index, osv_db, ["x"], "{}")
    result = run_cli("scan", "-p", policy, wheels["mkdocs-1.2.3"])
    assert result.exit_code == 0 and "admitted (0 match(es)" in result.output, result.output


def test_scan_says_a_conda_package_is_not_covered_never_clean(tmp_path, osv_db):
    package = tmp_path / "numpy-1.26.4-py311h64a7726_0.conda"
    package.write_bytes(b"PK\x05\x06" + bytes(18))
    result = run_cli("scan", "--db", osv_db, package)
    assert result.exit_code == 3, result.output
    assert "conda packages are not in OSV's data; not checked" in result.output


# -- regsync audit inventory --format cyclonedx -----------------------------------------------------

def test_the_inventory_is_a_cyclonedx_bom_that_validates_against_the_schema(tmp_path, index, osv_db):
    from cyclonedx.schema import SchemaVersion
    from cyclonedx.validation.json import JsonStrictValidator

    assert run_cli("sync", "-p", gated_policy(tmp_path, index, osv_db, ALL, GATE)).exit_code == 3
    result = run_cli("audit", "inventory", tmp_path / "audit.jsonl", "--format", "cyclonedx", "-o", tmp_path / "bom.json")
    assert result.exit_code == 0, result.output
    text = (tmp_path / "bom.json").read_text()
    assert JsonStrictValidator(SchemaVersion.V1_6).validate_str(text) is None
    bom = json.loads(text)
    assert bom["bomFormat"] == "CycloneDX" and bom["specVersion"] == "1.6"
    purls = sorted(c["purl"] for c in bom["components"])
    assert purls == ["pkg:pypi/aiohttp@3.8.1?file_name=aiohttp-3.8.1-py3-none-any.whl",
                     "pkg:pypi/jwcrypto@1.5.0?file_name=jwcrypto-1.5.0-py3-none-any.whl",
                     "pkg:pypi/py@1.11.0?file_name=py-1.11.0-py3-none-any.whl",
                     "pkg:pypi/requests@2.30.0?file_name=requests-2.30.0-py3-none-any.whl"]   # refused ones are not in
    wheel = tmp_path / "tree" / "jwcrypto" / "jwcrypto-1.5.0-py3-none-any.whl"
    import hashlib
    jwcrypto = next(c for c in bom["components"] if c["name"] == "jwcrypto")
    assert jwcrypto["hashes"] == [{"alg": "SHA-256", "content": hashlib.sha256(wheel.read_bytes()).hexdigest()}]
    assert jwcrypto["evidence"]["identity"][0]["methods"][0]["technique"] == "hash-comparison"
    vulns = {v["id"]: v for v in bom["vulnerabilities"]}
    assert set(vulns) == {"PYSEC-2024-104", "PYSEC-2022-42969", "PYSEC-2023-74"}
    assert vulns["PYSEC-2024-104"]["ratings"][0] == {"source": {"name": "OSV"}, "score": 5.3, "severity": "medium",
                                                     "method": "CVSSv31",
                                                     "vector": "AV:N/AC:L/PR:N/UI:N/S:U/C:N/I:N/A:L"}  # CycloneDX's spelling
    assert vulns["PYSEC-2024-104"]["affects"] == [{"ref": jwcrypto["bom-ref"]}]
    assert "no proxies with credentials here" in vulns["PYSEC-2023-74"]["analysis"]["detail"]



def spdx_checked(text: str) -> dict:
    """An SPDX 2.3 JSON document read back and validated by spdx-tools, and checked against the
    SPDX 2.3 JSON schema (tests/data/spdx/README.md)."""
    import jsonschema
    from spdx_tools.spdx.parser.json.json_parser import parse_from_file
    from spdx_tools.spdx.validation.document_validator import validate_full_spdx_document

    doc = json.loads(text)
    schema = json.loads((DATA.parent / "spdx" / "spdx-schema.json").read_text())
    jsonschema.validate(doc, schema)
    import tempfile
    with tempfile.NamedTemporaryFile("w", suffix=".spdx.json") as handle:
        handle.write(text)
        handle.flush()
        assert validate_full_spdx_document(parse_from_file(handle.name), "SPDX-2.3") == []
    return doc


def test_the_inventory_as_spdx_carries_the_same_artifacts_purls_hashes_and_advisories(tmp_path, index, osv_db):
    import hashlib

    assert run_cli("sync", "-p", gated_policy(tmp_path, index, osv_db, ALL, GATE)).exit_code == 3
    result = run_cli("audit", "inventory", tmp_path / "audit.jsonl", "--format", "spdx", "-o", tmp_path / "bom.spdx.json")
    assert result.exit_code == 0, result.output
    assert "4 component(s), SPDX 2.3" in result.output
    doc = spdx_checked((tmp_path / "bom.spdx.json").read_text())
    assert doc["spdxVersion"] == "SPDX-2.3"
    purls = {p["name"]: [r["referenceLocator"] for r in p.get("externalRefs", []) if r["referenceType"] == "purl"]
             for p in doc["packages"]}
    assert sorted(v for found in purls.values() for v in found) == [
        "pkg:pypi/aiohttp@3.8.1?file_name=aiohttp-3.8.1-py3-none-any.whl",
        "pkg:pypi/jwcrypto@1.5.0?file_name=jwcrypto-1.5.0-py3-none-any.whl",
        "pkg:pypi/py@1.11.0?file_name=py-1.11.0-py3-none-any.whl",
        "pkg:pypi/requests@2.30.0?file_name=requests-2.30.0-py3-none-any.whl"]   # the same as the CycloneDX BOM
    jwcrypto = next(p for p in doc["packages"] if p["name"] == "jwcrypto")
    wheel = tmp_path / "tree" / "jwcrypto" / "jwcrypto-1.5.0-py3-none-any.whl"
    assert jwcrypto["checksums"] == [{"algorithm": "SHA256", "checksumValue": hashlib.sha256(wheel.read_bytes()).hexdigest()}]
    assert jwcrypto["versionInfo"] == "1.5.0" and "regsync:rule=packages[0]" in jwcrypto["comment"]
    [advisory] = [r for r in jwcrypto["externalRefs"] if r["referenceCategory"] == "SECURITY"]
    assert advisory["referenceType"] == "advisory"
    assert advisory["referenceLocator"] == "https://osv.dev/vulnerability/PYSEC-2024-104"
    assert "medium 5.3" in advisory["comment"] and "regsync:fixed=1.5.1" in advisory["comment"]
    requests = next(p for p in doc["packages"] if p["name"] == "requests")
    assert "no proxies with credentials here" in next(r["comment"] for r in requests["externalRefs"]
                                                      if r["referenceCategory"] == "SECURITY")
    [root] = [r["relatedSpdxElement"] for r in doc["relationships"] if r["relationshipType"] == "DESCRIBES"]
    contained = {r["relatedSpdxElement"] for r in doc["relationships"] if r["spdxElementId"] == root}
    assert contained == {p["SPDXID"] for p in doc["packages"]} - {root}

# -- docs/vulnerabilities.md: its policy is valid, its command lines are ones regsync accepts -------

DOC = DATA.parent.parent.parent / "docs" / "vulnerabilities.md"


def test_the_docs_policy_is_valid_and_its_scan_commands_run(tmp_path, osv_db, monkeypatch):
    import re
    import shlex

    from tests.test_vulnerabilities_images import BASE, layer

    from tests.fixtures.cosign import make_key, write_public_key

    text = DOC.read_text().replace("/var/lib/regsync/osv", str(osv_db))
    monkeypatch.chdir(tmp_path)
    (tmp_path / "keys").mkdir()
    write_public_key(make_key("ecdsa"), tmp_path / "keys" / "release.pub")
    blocks = re.findall(r"```yaml\n(.*?)```", text, re.S)
    assert len(blocks) == 2   # the gate; images judged before any byte moves
    for block in blocks:
        (tmp_path / "policy.yaml").write_text(
            'version: 1\nregistries:\n  tuna: {url: "https://mirror.example"}\n'
            '  harbor: {url: "https://harbor.example", kind: harbor}\n' + block.replace("max_age: 7d", "max_age: 1000w")
            .replace("vulnerabilities: {db: " + str(osv_db) + "}", "vulnerabilities: {db: " + str(osv_db) + ", max_age: 1000w}"))
        result = run_cli("policy", "check", "-p", "policy.yaml")
        assert result.exit_code == 0, (block, result.output)
    build_wheel(tmp_path, "requests", "2.30.0")
    (tmp_path / "layer.tar.gz").write_bytes(layer(BASE))
    for name, content in BASE.items():
        (tmp_path / "rootfs" / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "rootfs" / name).write_bytes(content)
    commands = [line for block in re.findall(r"```sh\n(.*?)```", text, re.S)[1:] for line in block.splitlines()]
    expected = ["PYSEC-2023-74", "DSA-3029-1", "DSA-3029-1", None, None, None]
    assert len(commands) == len(expected)
    for line, found in zip(commands, expected):
        argv = shlex.split(line)[1:]
        if argv[0] == "audit":   # the inventory of a real trail is checked above; here: its command lines
            (tmp_path / "audit.jsonl").touch()
            result = run_cli(*[str(tmp_path / "audit.jsonl") if a.endswith("audit.jsonl") else a for a in argv])
            assert result.exit_code == 0 and (tmp_path / argv[-1]).exists(), (line, result.output)
            if "spdx3" in argv:
                from tests.test_inventory_spdx3 import spdx3_checked
                spdx3_checked((tmp_path / argv[-1]).read_text())
            continue
        result = run_cli(*argv)
        assert result.exit_code == 3 and found in result.output, (line, result.output)


def test_inventory_purls_follow_the_purl_types_for_conda_and_images():
    from regsync.audit.inventory import identity

    name, version, purl = identity("conda", "internal-conda/linux-64/numpy-1.26.4-py311h64a7726_0.conda", "sha256:ab")
    assert (name, version) == ("numpy", "1.26.4")
    assert str(purl) == ("pkg:conda/numpy@1.26.4?build=py311h64a7726_0&channel=internal-conda&subdir=linux-64"
                         "&type=conda")
    name, version, purl = identity("image", "harbor/ai/pytorch:2.9", "sha256:" + "a" * 64)
    assert str(purl) == f"pkg:oci/pytorch@sha256:{'a' * 64}?repository_url=harbor/ai/pytorch&tag=2.9"


def test_a_database_record_nested_past_any_osv_record_is_a_policy_error_not_a_crash(tmp_path):
    (tmp_path / "PyPI").mkdir()
    (tmp_path / "PyPI" / "deep.json").write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(Exception) as raised:
        OsvDatabase(tmp_path).ecosystem("PyPI")
    assert type(raised.value).__name__ == "PolicyError" and "is not JSON" in str(raised.value)
