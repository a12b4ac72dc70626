"""Signed plan approvals (issue 26, docs/approvals.md): `regsync plan approve` signs a saved plan's
exact bytes as `cosign sign-blob` does; a policy with `approval: {required: 2, trust: [alice, bob],
max_age: 7d}` makes `sync --plan` and `import --plan` apply only a plan two distinct trusted keys
signed, made from the policy in force, younger than max_age. Real registries on loopback; the
signatures are checked independently with the openssl CLI."""

import hashlib
import json
import shutil
import zlib
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
import requests
from cryptography.hazmat.primitives import serialization

from regsync.trust.signing import load_private_key
from tests.fixtures.cosign import make_key, write_public_key
from tests.fixtures.oci_layout import digest_of, inspect_raw, seed, write_image
from tests.fixtures.policies import audit_records, run_cli, write_policy
from tests.test_bundle_signature import openssl_verifies

DATA = Path(__file__).parent / "data" / "cosign"
APPROVAL = "approval: {required: 2, trust: [alice, bob], max_age: 7d}\n"


def write_pkcs8(key, path: Path) -> Path:
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))
    return path


@pytest.fixture
def setup(tmp_path, registry, registry2, unique_repo, monkeypatch):
    """One image on the source; alice (PKCS#8 PEM) and bob (cosign's own encrypted cosign.key)
    approve, carol holds a key the policy does not trust; a saved plan."""
    layout = tmp_path / "layout"
    info = write_image(layout, "1.0", layer_size=20_000, seed=zlib.crc32(unique_repo.encode()))
    seed(registry, unique_repo, "1.0", layout)
    alice, carol = make_key("ecdsa"), make_key("ecdsa")
    write_pkcs8(alice, tmp_path / "alice.key")
    write_public_key(alice, tmp_path / "alice.pub")
    write_pkcs8(carol, tmp_path / "carol.key")
    shutil.copy(DATA / "sigstore-label.key", tmp_path / "bob.key")   # made by cosign; password "hello"
    monkeypatch.setenv("COSIGN_PASSWORD", "hello")
    write_public_key(load_private_key(tmp_path / "bob.key"), tmp_path / "bob.pub")   # what `cosign public-key` prints
    policy = write_policy(tmp_path, registry.url, registry2.url, unique_repo, tags=["1.0"])
    policy.write_text(policy.read_text() + "trust:\n  alice: {cosign_key: alice.pub}\n  bob: {cosign_key: bob.pub}\n"
                      + APPROVAL)
    plan = tmp_path / "plan.json"
    made = run_cli("plan", "-p", policy, "-o", plan)
    assert made.exit_code == 0, made.output
    return {"tmp": tmp_path, "policy": policy, "plan": plan, "target": registry2, "repo": unique_repo,
            "digest": info.index_digest}


def list_tags(registry, repo):
    response = requests.get(f"{registry.url}/v2/{repo}/tags/list", timeout=10)
    return (response.json().get("tags") or []) if response.status_code == 200 else []


def approve(setup, who, *more):
    result = run_cli("plan", "approve", setup["plan"], "--key", setup["tmp"] / f"{who}.key", *more)
    assert result.exit_code == 0, result.output
    return result


def sync_plan(setup):
    return run_cli("sync", "-p", setup["policy"], "--plan", setup["plan"])


def assert_untouched(setup, result, *says):
    assert result.exit_code == 2, result.output
    for text in says:
        assert text in result.output, result.output
    assert list_tags(setup["target"], setup["repo"]) == []   # nothing pushed
    [failed] = [r for r in audit_records(setup["tmp"] / "audit.jsonl") if r["event"] == "failed"]
    assert says[0] in failed["reason"]   # the refused attempt is on record


def test_approved_by_one_of_two_required_is_refused_naming_who_signed_and_who_is_missing(setup):
    approve(setup, "alice")
    result = sync_plan(setup)
    assert_untouched(setup, result, "has 1 of 2 required approvals", "signed by alice", "missing: bob")


def test_approved_by_two_is_applied_and_the_audit_and_report_name_the_approvers(setup):
    approve(setup, "alice")
    approve(setup, "bob", "-p", setup["policy"])   # cosign.key, password from COSIGN_PASSWORD
    tmp, plan = setup["tmp"], setup["plan"]
    signatures = sorted(tmp.glob("plan.json.approval-*.sig"))
    assert len(signatures) == 2
    # cosign sign-blob's format over the plan's exact bytes: openssl checks it without regsync
    verified = {who for who in ("alice", "bob") for sig in signatures if openssl_verifies(tmp, tmp / f"{who}.pub", sig, plan)}
    assert verified == {"alice", "bob"}

    result = sync_plan(setup)

    assert result.exit_code == 0, result.output
    assert digest_of(inspect_raw(setup["target"], f"{setup['repo']}:1.0")) == setup["digest"]
    [approved] = [r for r in audit_records(tmp / "audit.jsonl") if "plan" in (r["artifact"] or {})]
    assert approved["event"] == "verified"
    assert [a["trust"] for a in approved["verification"]["approvers"]] == ["alice", "bob"]
    assert approved["verification"]["policy_sha256"] == json.loads(plan.read_text())["policy_sha256"]
    report = run_cli("audit", "report", tmp / "audit.jsonl", "--html", tmp / "report.html")
    assert report.exit_code == 0, report.output
    page = (tmp / "report.html").read_text()
    assert "<th>Approved by</th>" in page and "alice (sha256:" in page and "bob (sha256:" in page


def test_a_plan_edited_after_approval_is_refused(setup):
    approve(setup, "alice")
    approve(setup, "bob")
    plan = setup["plan"]
    doc = json.loads(plan.read_text())
    doc["items"][0]["reason"] = "reviewed"   # any change, even one apply does not act on
    plan.write_text(json.dumps(doc, indent=2) + "\n")
    result = sync_plan(setup)
    assert_untouched(setup, result, "has 0 of 2 required approvals", "the plan changed after it was signed")


def test_expired_approvals_are_refused(setup):
    plan = setup["plan"]
    doc = json.loads(plan.read_text())
    doc["created"] = (datetime.now(timezone.utc) - timedelta(days=8)).isoformat(timespec="seconds")
    plan.write_text(json.dumps(doc, indent=2) + "\n")
    late = run_cli("plan", "approve", plan, "--key", setup["tmp"] / "alice.key", "-p", setup["policy"])
    assert late.exit_code == 2 and "expired at" in late.output and "not approved" in late.output, late.output
    approve(setup, "alice")   # without the policy nothing stops the signature; sync still refuses
    approve(setup, "bob")
    result = sync_plan(setup)
    assert_untouched(setup, result, "expired at", "approval.max_age 7d after the plan was made")


def test_a_plan_approved_for_another_policy_is_refused(setup):
    approve(setup, "alice")
    approve(setup, "bob")
    policy = setup["policy"]
    policy.write_text(policy.read_text().replace("max_age: 7d", "max_age: 30d"))   # the policy changed since
    result = sync_plan(setup)
    assert_untouched(setup, result, "was made from another policy", "its approvals were for that policy")

    # pointing the approved plan at today's policy voids its signatures
    from tests.fixtures.policies import load_policy

    doc = json.loads(setup["plan"].read_text())
    doc["policy_sha256"] = load_policy(policy).sha256
    setup["plan"].write_text(json.dumps(doc, indent=2) + "\n")
    again = sync_plan(setup)
    assert again.exit_code == 2 and "has 0 of 2 required approvals" in again.output, again.output


def test_sync_without_a_plan_is_refused_when_approvals_are_required(setup):
    result = run_cli("sync", "-p", setup["policy"])
    assert_untouched(setup, result, "the policy requires 2 approval(s) of a saved plan")


def test_one_key_counts_once_and_an_untrusted_key_not_at_all(setup):
    tmp, plan = setup["tmp"], setup["plan"]
    approve(setup, "alice")
    [mine] = tmp.glob("plan.json.approval-*.sig")
    shutil.copy(mine, tmp / "plan.json.approval-again.sig")   # the same signature twice
    (tmp / "plan.json.approval-link.sig").symlink_to(mine)      # and through a symlink, never followed
    approve(setup, "carol")                                     # a key no trust entry holds
    refused = run_cli("plan", "approve", plan, "--key", tmp / "carol.key", "-p", setup["policy"])
    assert refused.exit_code == 2 and "not the key of any approval.trust entry" in refused.output, refused.output
    result = sync_plan(setup)
    assert_untouched(setup, result, "has 1 of 2 required approvals", "missing: bob", "a symlink, never followed",
                     "or another key signed it")

    # two trust entries holding alice's key are still one approver
    policy = setup["policy"]
    policy.write_text(policy.read_text().replace("bob: {cosign_key: bob.pub}", "bob: {cosign_key: alice.pub}"))
    remade = run_cli("plan", "-p", policy, "-o", plan)
    assert remade.exit_code == 0, remade.output
    approve(setup, "alice")
    again = sync_plan(setup)
    assert again.exit_code == 2 and "has 1 of 2 required approvals" in again.output, again.output


def test_plan_show_renders_the_plan_its_rules_signers_and_changes_since_an_older_plan(setup):
    tmp, plan = setup["tmp"], setup["plan"]
    old = tmp / "old.json"
    doc = json.loads(plan.read_text())
    doc["items"][0]["digest"] = "sha256:" + "0" * 64
    doc["items"].append({**doc["items"][0], "target": doc["items"][0]["target"] + "-gone"})
    old.write_text(json.dumps(doc))
    approve(setup, "alice")

    text = run_cli("plan", "show", plan, "-p", setup["policy"], "--since", old)
    assert text.exit_code == 0, text.output
    assert f"{setup['repo']}:1.0" in text.output and "1 to copy" in text.output
    assert "images[0]: 1 copy" in text.output and f"-> dst/{setup['repo']} [1.0]" in text.output
    assert "alice (sha256:" in text.output and "NOT APPROVED" in text.output and "missing: bob" in text.output
    assert "changed " in text.output and "removed " in text.output and "-gone" in text.output

    markdown = run_cli("plan", "show", plan, "-p", setup["policy"], "--since", old, "--format", "markdown")
    assert markdown.exit_code == 0, markdown.output
    lines = markdown.output.splitlines()
    assert "| kind | source | target | digest | action | bytes | reason |" in lines
    [row] = [line for line in lines if line.startswith("| image |")]
    assert f"`{setup['digest'][7:19]}`" in row and "| copy |" in row
    assert "### Approvals seen" in lines and "- **removed**" in markdown.output

    hostile = tmp / "hostile.json"   # a reason (from a server, or an editor) cannot break the ticket's table
    doc = json.loads(plan.read_text())
    doc["items"][0]["reason"] = "a | b `x` [link](http://evil)\n| forged | row |"
    hostile.write_text(json.dumps(doc))
    shown = run_cli("plan", "show", hostile, "--format", "markdown")
    assert shown.exit_code == 0, shown.output
    [row] = [line for line in shown.output.splitlines() if line.startswith("| image |")]
    assert row.replace("\\|", "").count("|") == 8 and "forged" in row and "\\[link\\]" in row

    bare = run_cli("plan", "show", plan)   # no policy: the signatures are listed, not judged
    assert bare.exit_code == 0 and "not checked" in bare.output, bare.output


def test_plan_show_as_json_is_the_plan_contract_with_a_review_beside_it(setup):
    """`plan show --format json`: the saved plan as regsync writes it (DESIGN.md's plan contract:
    `sync --plan` reads it back), whatever an editor did to its layout, plus `review`."""
    tmp, plan = setup["tmp"], setup["plan"]
    approve(setup, "alice")
    edited = tmp / "edited.json"   # the same plan, keys reordered and re-indented by an editor
    edited.write_text(json.dumps(json.loads(plan.read_text()), sort_keys=True, indent=7))
    old = tmp / "old.json"
    doc = json.loads(plan.read_text())
    doc["items"][0]["digest"] = "sha256:" + "0" * 64
    old.write_text(json.dumps(doc))

    shown = run_cli("plan", "show", plan, "-p", setup["policy"], "--since", old, "--format", "json")
    assert shown.exit_code == 0, shown.output
    body = json.loads(shown.stdout)
    review = body.pop("review")
    assert json.dumps(body, indent=2) + "\n" == plan.read_text()   # the plan's own bytes, key for key
    assert review["sha256"] == hashlib.sha256(plan.read_bytes()).hexdigest()
    assert review["rules"] == [{"rule": "images[0]", "maps": f"src/{setup['repo']} -> dst/{setup['repo']} [1.0]",
                                "items": {"copy": 1, "update": 0, "skip": 0, "refuse": 0}}]
    approvals = review["approvals"]
    assert approvals["approved"] is False and "missing: bob" in approvals["status"]
    assert [line.split(": ")[1].split(" (")[0] for line in approvals["seen"]] == ["alice"]
    assert review["since"] == {"plan": str(old), "changes": [
        {"change": "changed", "target": f"dst/{setup['repo']}:1.0",
         "detail": f"copy 000000000000 -> copy {setup['digest'][7:19]}"}]}

    reordered = run_cli("plan", "show", edited, "--format", "json")   # canonical: as `plan -o` writes it
    assert reordered.exit_code == 0, reordered.output
    again = json.loads(reordered.stdout)
    assert again.pop("review")["approvals"]["approved"] is None   # no policy: not checked
    assert again == body and reordered.stdout.startswith(plan.read_text()[:-3])

    approve(setup, "bob", "-p", setup["policy"])
    both = json.loads(run_cli("plan", "show", plan, "-p", setup["policy"], "--format", "json").stdout)
    assert both["review"]["approvals"]["approved"] is True and "since" not in both["review"]
    applied = run_cli("sync", "-p", setup["policy"], "--plan", plan)
    assert applied.exit_code == 0, applied.output


def test_import_applies_only_an_approved_plan_of_the_bundle(setup):
    tmp, policy = setup["tmp"], setup["policy"]
    bundle = tmp / "bundle"
    exported = run_cli("export", "-p", policy, "-o", bundle)
    assert exported.exit_code == 0, exported.output
    unplanned = run_cli("import", bundle, "-p", policy)
    assert unplanned.exit_code == 2 and "--bundle BUNDLE" in unplanned.output, unplanned.output

    plan = tmp / "import-plan.json"
    made = run_cli("plan", "-p", policy, "--bundle", bundle, "-o", plan)
    assert made.exit_code == 0, made.output
    assert run_cli("plan", "approve", plan, "--key", tmp / "alice.key").exit_code == 0
    once = run_cli("import", bundle, "-p", policy, "--plan", plan)
    assert once.exit_code == 2 and "has 1 of 2 required approvals" in once.output, once.output
    assert list_tags(setup["target"], setup["repo"]) == []

    assert run_cli("plan", "approve", plan, "--key", tmp / "bob.key").exit_code == 0
    twice = run_cli("import", bundle, "-p", policy, "--plan", plan)
    assert twice.exit_code == 0, twice.output
    assert digest_of(inspect_raw(setup["target"], f"{setup['repo']}:1.0")) == setup["digest"]


def test_policy_check_summarises_the_approval_section(setup):
    result = run_cli("policy", "check", "-p", setup["policy"])
    assert result.exit_code == 0, result.output
    assert "approvals:  2 required of alice, bob, valid 7d after the plan is made" in result.output


@pytest.mark.parametrize("approval, says", [
    ("approval: {required: 3, trust: [alice, bob]}", "required: 3 needs at least 3 trust entries"),
    ("approval: {required: 1, trust: [nobody]}", "unknown trust entry 'nobody'"),
    ("approval: {required: 1, trust: [alice], max_age: 7 days}", "is not a duration"),
    ("approval: {required: 1, trust: [ci]}", "trust entry 'ci' must be a cosign_key"),
])
def test_an_approval_section_that_cannot_work_is_a_policy_error_with_its_line(setup, approval, says):
    policy = setup["policy"]
    policy.write_text(policy.read_text().replace(APPROVAL, approval + "\n").replace(
        "trust:\n", "trust:\n  ci: {keyless: {issuer: https://token.actions.githubusercontent.com, identity: x}}\n"))
    result = run_cli("policy", "check", "-p", policy)
    assert result.exit_code == 2 and says in result.output and "policy.yaml:" in result.output, result.output
