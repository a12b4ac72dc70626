"""`audit inventory --format spdx3` (docs/vulnerabilities.md): the trail of the SPDX 2.3 and CycloneDX
inventory tests as SPDX 3.0.1 JSON-LD, checked against SPDX's own 3.0.1 JSON schema and SHACL model
(tests/data/spdx/README.md), and read back by spdx-python-model's JSON-LD reader."""

import hashlib
import json
import warnings

from tests.fixtures.osv import DATA
from tests.fixtures.policies import run_cli
from tests.test_vulnerabilities import ALL, GATE, gated_policy, index, osv_db, spdx_checked, wheels  # noqa: F401

SPDX = DATA.parent / "spdx"


def spdx3_checked(text: str) -> dict:
    """An SPDX 3.0.1 JSON-LD document, valid against SPDX's 3.0.1 JSON schema, conforming to the
    SHACL shapes of SPDX's 3.0.1 model as RDF (rdflib's JSON-LD reader, pyshacl: a reader and a
    validator independent of the library that wrote it), and read back by spdx-python-model with
    every reference resolved inside the document."""
    import jsonschema
    import pyshacl
    import rdflib
    from spdx_python_model import load_data

    doc = json.loads(text)
    schema = json.loads((SPDX / "spdx-3.0.1-json-schema.json").read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    jsonschema.Draft202012Validator(schema).validate(doc)
    # the context the document names, from the file SPDX publishes at that URL: no network here
    context = json.loads((SPDX / "spdx-3.0.1-context.jsonld").read_text())["@context"]
    with warnings.catch_warnings():   # rdflib's JSON-LD parser uses its own deprecated ConjunctiveGraph
        warnings.simplefilter("ignore", DeprecationWarning)
        data = rdflib.Graph().parse(data=json.dumps({**doc, "@context": context}), format="json-ld")
    shapes = rdflib.Graph().parse(SPDX / "spdx-3.0.1-model.ttl", format="turtle")
    conforms, _, report = pyshacl.validate(data, shacl_graph=shapes, ont_graph=shapes, inference="none")
    assert conforms, report[:4000]
    _, objects = load_data(doc)
    assert objects.link() == set()   # no id referred to that the document does not hold
    return doc


def graph_of(doc: dict) -> tuple[dict, list[dict]]:
    """(elements by spdxId, the relationships of every kind)."""
    graph = doc["@graph"]
    return ({e["spdxId"]: e for e in graph if "spdxId" in e},
            [e for e in graph if "relationshipType" in e])


def inventory_root(doc: dict) -> dict:
    """SpdxDocument -> its Sbom -> the one root package, as the 2.3 document DESCRIBES it."""
    ids, _ = graph_of(doc)
    [document] = [e for e in ids.values() if e["type"] == "SpdxDocument"]
    assert document["creationInfo"] and set(document["profileConformance"]) == {"core", "software", "security"}
    [sbom] = [ids[i] for i in document["rootElement"]]
    assert sbom["type"] == "software_Sbom"
    [root] = [ids[i] for i in sbom["rootElement"]]
    return root


def contained(doc: dict, parent: dict) -> list[dict]:
    ids, relationships = graph_of(doc)
    return [ids[t] for r in relationships if r["relationshipType"] == "contains" and r["from"] == parent["spdxId"]
            for t in r["to"]]


def test_the_inventory_as_spdx3_carries_the_same_artifacts_purls_hashes_and_advisories(tmp_path, index, osv_db):
    assert run_cli("sync", "-p", gated_policy(tmp_path, index, osv_db, ALL, GATE)).exit_code == 3
    result = run_cli("audit", "inventory", tmp_path / "audit.jsonl", "--format", "spdx3", "-o", tmp_path / "bom.json")
    assert result.exit_code == 0, result.output
    assert "4 component(s), SPDX 3.0.1" in result.output
    doc = spdx3_checked((tmp_path / "bom.json").read_text())
    assert doc["@context"] == "https://spdx.org/rdf/3.0.1/spdx-context.jsonld"
    ids, relationships = graph_of(doc)
    [info] = [e for e in doc["@graph"] if e["type"] == "CreationInfo"]
    assert info["specVersion"] == "3.0.1" and ids[info["createdUsing"][0]]["name"].startswith("regsync-")

    root = inventory_root(doc)
    artifacts = contained(doc, root)
    packages = [e for e in ids.values() if e["type"] == "software_Package"]
    assert sorted(p["spdxId"] for p in artifacts) == sorted(p["spdxId"] for p in packages if p is not root)
    assert sorted(p["software_packageUrl"] for p in artifacts) == [
        "pkg:pypi/aiohttp@3.8.1?file_name=aiohttp-3.8.1-py3-none-any.whl",
        "pkg:pypi/jwcrypto@1.5.0?file_name=jwcrypto-1.5.0-py3-none-any.whl",
        "pkg:pypi/py@1.11.0?file_name=py-1.11.0-py3-none-any.whl",
        "pkg:pypi/requests@2.30.0?file_name=requests-2.30.0-py3-none-any.whl"]   # refused ones are not in
    jwcrypto = next(p for p in artifacts if p["name"] == "jwcrypto")
    wheel = tmp_path / "tree" / "jwcrypto" / "jwcrypto-1.5.0-py3-none-any.whl"
    assert jwcrypto["verifiedUsing"] == [{"type": "Hash", "algorithm": "sha256",
                                          "hashValue": hashlib.sha256(wheel.read_bytes()).hexdigest()}]
    assert jwcrypto["software_packageVersion"] == "1.5.0" and "regsync:rule=packages[0]" in jwcrypto["comment"]

    def about(kind: str, vulnerability: str) -> list[dict]:
        return [r for r in relationships if r["relationshipType"] == kind and r["from"] == vulnerability]

    vulnerabilities = {e["name"]: e for e in ids.values() if e["type"] == "security_Vulnerability"}
    assert set(vulnerabilities) == {"PYSEC-2024-104", "PYSEC-2022-42969", "PYSEC-2023-74"}   # as the CycloneDX BOM's
    pysec = vulnerabilities["PYSEC-2024-104"]
    assert {"type": "ExternalIdentifier", "externalIdentifierType": "cve",
            "identifier": "CVE-2023-6681"} in pysec["externalIdentifier"]
    assert pysec["externalRef"] == [{"type": "ExternalRef", "externalRefType": "securityAdvisory",
                                     "locator": ["https://osv.dev/vulnerability/PYSEC-2024-104"]}]
    assert [r["to"] for r in relationships if r["relationshipType"] == "hasAssociatedVulnerability"
            and r["from"] == jwcrypto["spdxId"]] == [[pysec["spdxId"]]]
    [cvss] = about("hasAssessmentFor", pysec["spdxId"])
    assert cvss["type"] == "security_CvssV3VulnAssessmentRelationship" and cvss["to"] == [jwcrypto["spdxId"]]
    assert (float(cvss["security_score"]), cvss["security_severity"], cvss["security_vectorString"]) == (
        5.3, "medium", "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:N/I:N/A:L")
    [affects] = about("affects", pysec["spdxId"])
    assert affects["type"] == "security_VexAffectedVulnAssessmentRelationship"
    assert affects["security_actionStatement"] == "upgrade to 1.5.1" and affects["to"] == [jwcrypto["spdxId"]]
    [no_fix] = about("affects", vulnerabilities["PYSEC-2022-42969"]["spdxId"])
    assert no_fix["security_actionStatement"] == "no fixed version known" and "no-fix" in no_fix["security_statusNotes"]
    # an ignore is under investigation, its reason the status notes (CycloneDX: in_triage, its detail)
    [ignored] = about("underInvestigationFor", vulnerabilities["PYSEC-2023-74"]["spdxId"])
    assert ignored["type"] == "security_VexUnderInvestigationVulnAssessmentRelationship"
    assert "no proxies with credentials here" in ignored["security_statusNotes"]
    assert [ids[t]["name"] for t in ignored["to"]] == ["requests"]

    # the same trail as SPDX 2.3: the same purls, each with the same hash and the same advisories
    spdx2 = spdx_checked(run_cli("audit", "inventory", tmp_path / "audit.jsonl", "--format", "spdx").output)

    def purl2(package: dict) -> str:
        return next(r["referenceLocator"] for r in package["externalRefs"] if r["referenceType"] == "purl")

    assert {purl2(p): ([c["checksumValue"] for c in p["checksums"]],
                       sorted(r["referenceLocator"] for r in p["externalRefs"] if r["referenceCategory"] == "SECURITY"))
            for p in spdx2["packages"] if p.get("externalRefs")} == {
        p["software_packageUrl"]: ([h["hashValue"] for h in p["verifiedUsing"]],
                                   sorted(ids[t]["externalRef"][0]["locator"][0] for r in relationships
                                          if r["relationshipType"] == "hasAssociatedVulnerability"
                                          and r["from"] == p["spdxId"] for t in r["to"]))
        for p in artifacts}


def test_an_empty_trail_is_a_valid_spdx3_document_with_an_empty_inventory(tmp_path):
    (tmp_path / "audit.jsonl").touch()
    result = run_cli("audit", "inventory", tmp_path / "audit.jsonl", "--format", "spdx3")
    assert result.exit_code == 0, result.output
    doc = spdx3_checked(result.output)
    root = inventory_root(doc)
    assert root["name"] == "imported by regsync (audit.jsonl)" and contained(doc, root) == []


def test_the_spdx3_files_in_tests_data_are_the_ones_the_readme_names():
    readme = (SPDX / "README.md").read_text()
    for name in ("spdx-3.0.1-json-schema.json", "spdx-3.0.1-model.ttl", "spdx-3.0.1-context.jsonld"):
        assert f"{name} {hashlib.sha256((SPDX / name).read_bytes()).hexdigest()}" in readme


def test_each_cvss_version_is_its_own_spdx3_assessment_and_a_shared_vulnerability_is_one_element():
    from cvss import CVSS2, CVSS4

    from regsync.audit.inventory import Imported, identity
    from regsync.audit.spdx3 import spdx3_document

    v4, v2 = "CVSS:4.0/AV:N/AC:L/AT:N/PR:N/UI:N/VC:H/VI:H/VA:H/SC:N/SI:N/SA:N", "AV:N/AC:L/Au:N/C:P/I:P/A:P"
    found = [{"ecosystem": "Debian:12", "name": n, "version": "1.0-1"} for n in ("libfoo", "libbar")]
    matches = [{"id": "CVE-2099-1", "aliases": [], "package": "libfoo", "version": "1.0-1", "severity": "critical",
                "score": float(CVSS4(v4).base_score), "vector": v4, "fixed": None, "decision": "no-fix", "note": ""},
               {"id": "CVE-2099-1", "aliases": [], "package": "libbar", "version": "1.0-1", "severity": "high",
                "score": CVSS2(v2).scores()[0], "vector": v2, "fixed": "1.0-2", "decision": "allowed", "note": ""}]
    digest = "sha256:" + "c" * 64
    row = {"kind": "image", "target": "dst/app:1", "digest": digest,
           "verification": {"vulnerabilities": {"packages": found, "matches": matches}}}
    doc = spdx3_checked(spdx3_document([Imported(row, "image:dst/app:1", *identity("image", "dst/app:1", digest),
                                                 "c" * 64)], "audit.jsonl"))
    ids, relationships = graph_of(doc)
    [vulnerability] = [e for e in ids.values() if e["type"] == "security_Vulnerability"]
    assert vulnerability["externalIdentifier"][0]["externalIdentifierType"] == "cve"
    ratings = {ids[r["to"][0]]["name"]: r for r in relationships if r["relationshipType"] == "hasAssessmentFor"}
    assert (ratings["libfoo"]["type"], ratings["libfoo"]["security_severity"]) == (
        "security_CvssV4VulnAssessmentRelationship", "critical")
    assert ratings["libbar"]["type"] == "security_CvssV2VulnAssessmentRelationship"   # SPDX 3: no v2 severity
    assert (float(ratings["libbar"]["security_score"]), ratings["libbar"]["security_vectorString"]) == (7.5, v2)
    affects = {ids[r["to"][0]]["name"]: r["security_actionStatement"] for r in relationships
               if r["relationshipType"] == "affects"}
    assert affects == {"libfoo": "no fixed version known", "libbar": "upgrade to 1.0-2"}
