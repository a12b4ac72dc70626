"""The verbs are library functions (regsync.runs), and a kind of artifact is one seam (the Kind protocol):
what docs/architecture.md promises a program, a test, and the next kind."""

import ast
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import pytest
from pydantic import Field

import regsync
from regsync import runs
from regsync.audit.evidence import AlreadyThere, Evidence
from regsync.audit.log import AuditLog
from regsync.audit.report import build_report, render_html
from regsync.cli.clientconfig import client_config, clients
from regsync.endpoints import Endpoints
from regsync.errors import PolicyError, RegistryError, UsageError, VerificationError
from regsync.kinds.registry import KINDS
from regsync.pipeline.apply import apply_plan
from regsync.pipeline.kind import Run
from regsync.pipeline.make import make_plan
from regsync.pipeline.plan import Details, Plan, PlanItem, details_of
from regsync.policy import load_policy
from regsync.policy.files import check_files
from regsync.policy.models import PolicyPath, Strict
from regsync.policy.section import BaseSection, NamedFile, Rendered, Section
from regsync.runs import RunOptions, load_checked
from tests.fixtures.oci_layout import digest_of, inspect_raw, seed, write_image
from tests.fixtures.policies import audit_records, write_policy

TAG = "1.0"


def test_sync_export_and_import_are_callable_from_python(tmp_path, registry, registry2, unique_repo, oci_dir):
    info = write_image(oci_dir, TAG)
    seed(registry, unique_repo, TAG, oci_dir)
    policy = write_policy(tmp_path, registry.url, registry2.url, unique_repo, tags=[TAG])
    options = RunOptions(audit_file=tmp_path / "audit.jsonl", summary_json=tmp_path / "summary.json")

    synced = runs.sync(policy, options)
    assert (synced.exit_code, synced.outcome.pushed, synced.audit_path) == (0, 1, tmp_path / "audit.jsonl")
    assert digest_of(inspect_raw(registry2, f"{unique_repo}:{TAG}")) == info.index_digest
    assert json.loads((tmp_path / "summary.json").read_text())["exit_code"] == 0

    exported = runs.export(policy, tmp_path / "bundle", options)
    assert (exported.exit_code, exported.outcome.pushed) == (0, 1)
    bundle = json.loads((tmp_path / "bundle" / "bundle.json").read_text())
    assert [a["digest"] for a in bundle["artifacts"]] == [info.index_digest]

    imported = runs.import_(policy, tmp_path / "bundle", options)
    assert (imported.exit_code, imported.outcome.skipped) == (0, 1)  # already there: unchanged
    assert [r["event"] for r in audit_records(tmp_path / "audit.jsonl")][-1] == "skipped"


@dataclass
class _Note:
    """A kind made for this test: files under a source directory copied to a target directory."""
    root: Path


class NoteDir(Strict):   # unknown keys refused
    path: PolicyPath       # relative to the policy file
    ca_file: PolicyPath | None = None   # a file the section names: checked before any run


class NoteRule(Strict):
    source: str = Field(alias="from")
    target: str = Field(alias="to")


class NoteSection(Section):
    """The made-up kind's keys: `notedirs:` (name → directory) and `notes:` rules (from → to)."""
    notedirs: dict[str, NoteDir] = {}
    notes: list[NoteRule] = []


def _notes_txt(policy, upstream):
    section = NoteSection.of(policy)
    if not section.notes:
        raise UsageError("this policy has no notes: rules")
    return Rendered("".join(f"{section.notedirs[rule.target].path}\n" for rule in section.notes),
                    ["read the copies there"])


class NotePolicy(BaseSection):
    model = NoteSection
    clients = {"notes": _notes_txt}

    def check_references(self, policy, doc):
        section = NoteSection.of(policy)
        for i, rule in enumerate(section.notes):
            for key, name in (("from", rule.source), ("to", rule.target)):
                if name not in section.notedirs:
                    raise doc.error(("notes", i, key), f"unknown note directory '{name}'")

    def files(self, policy):
        for name, found in NoteSection.of(policy).notedirs.items():
            if found.ca_file:
                yield NamedFile(("notedirs", name, "ca_file"), found.ca_file, "ca_bundle")

    def summary(self, policy):
        section = NoteSection.of(policy)
        return ([f"  notedirs:   {', '.join(section.notedirs)}"],
                [f"  note    {rule.source} -> {rule.target}" for rule in section.notes])


@dataclass
class NoteDetails(Details):
    """The made-up kind's own part of a plan item: one key, written flat beside the shared ones."""
    lines: int = 0


class NoteKind:
    name = "note"
    bundle_section = "notes"
    section = NotePolicy()

    def __init__(self):
        self.runs: list[Run] = []   # what each transfer was handed

    @staticmethod
    def _dir(endpoints, name):
        path = NoteSection.of(endpoints.policy).notedirs[name].path
        return endpoints.client(f"note:{name}", lambda: _Note(path))

    def plan(self, policy, endpoints, jobs, shard, diff_target):
        items = []
        for rule in NoteSection.of(policy).notes:
            source, target = self._dir(endpoints, rule.source), self._dir(endpoints, rule.target)
            for path in sorted(source.root.iterdir()):
                action = "skip" if (target.root / path.name).exists() else "copy"
                digest = hashlib.sha256(path.read_bytes()).hexdigest()
                items.append(PlanItem(self.name, f"{rule.source}/{path.name}", f"{rule.target}/{path.name}", digest,
                                      action, bytes=path.stat().st_size,
                                      details=NoteDetails(path.read_bytes().count(b"\n"))))
        return items, []

    def authorize(self, item, policy):
        item.rule = "notes"

    def read_details(self, fields):
        return NoteDetails.read(fields)

    def check_names(self, item):
        pass

    def is_stale(self, item, endpoints):
        return None

    def transfer(self, item, run: Run):
        self.runs.append(run)
        (source, name), target = item.source.split("/", 1), item.target.split("/", 1)[0]
        there = self._dir(run.endpoints, target).root / name
        if there.exists() and hashlib.sha256(there.read_bytes()).hexdigest() == item.digest:
            return AlreadyThere("already in the target directory")
        data = (self._dir(run.endpoints, source).root / name).read_bytes()
        run.on_bytes(len(data))
        if hashlib.sha256(data).hexdigest() != item.digest:
            raise VerificationError(f"{name}: sha256 differs from the plan's")
        if data.count(b"\n") != details_of(item, NoteDetails).lines:
            raise VerificationError(f"{name}: not as many lines as the plan says")
        there.write_bytes(data)
        return Evidence(method="sha256", against="the source directory", facts={"notes": 1})

    def export(self, item, run, sink):
        raise NotImplementedError

    def targets(self, policy):
        return {rule.target for rule in NoteSection.of(policy).notes}

    def export_stand_ins(self, policy):
        return {}

    def bundle_sources(self, bundle, policy, layout_for):
        return {}


NOTE_POLICY = """version: 1
audit: {path: audit.jsonl}
notedirs:
  src: {path: src}
  dst: {path: dst}
notes:
  - {from: src, to: dst}
"""


def _load(path, kinds):
    loaded = load_policy(path, {}, sections=tuple(kind.section for kind in kinds.values()))
    check_files(loaded)
    return loaded


def _one_note(tmp_path, kinds, data=b"alpha"):
    """src/a.txt holding `data`, an empty dst/, NOTE_POLICY loaded with `kinds`: (loaded, endpoints)."""
    (tmp_path / "src").mkdir()
    (tmp_path / "dst").mkdir()
    (tmp_path / "src" / "a.txt").write_bytes(data)
    (tmp_path / "policy.yaml").write_text(NOTE_POLICY)
    loaded = _load(tmp_path / "policy.yaml", kinds)
    return loaded, Endpoints(loaded)


def test_a_new_kind_is_one_entry_in_the_registry(tmp_path):
    """No change to the pipeline, the policy or the CLI's verbs: the kind's section reads its own
    keys (checked at their file:line), make_plan plans it, apply_plan transfers and audits it,
    client-config renders its client. The kinds are a parameter: the made-up one is handed in, the
    registry is left as it is."""
    (tmp_path / "src").mkdir()
    (tmp_path / "dst").mkdir()
    (tmp_path / "src" / "a.txt").write_bytes(b"alpha")
    (tmp_path / "src" / "b.txt").write_bytes(b"beta")
    (tmp_path / "dst" / "b.txt").write_bytes(b"beta")
    kinds = {"note": NoteKind()}
    (tmp_path / "policy.yaml").write_text(NOTE_POLICY)
    loaded = _load(tmp_path / "policy.yaml", kinds)
    endpoints = Endpoints(loaded)
    plan = make_plan(loaded, endpoints, kinds)
    assert [(i.kind, i.source, i.action) for i in plan.items] == [("note", "src/a.txt", "copy"),
                                                                   ("note", "src/b.txt", "skip")]
    audit = AuditLog(tmp_path / "audit.jsonl", "run")
    outcome = apply_plan(plan, endpoints, kinds, audit)
    audit.close()
    assert (outcome.pushed, outcome.skipped, outcome.bytes) == (1, 1, 5)
    assert (tmp_path / "dst" / "a.txt").read_bytes() == b"alpha"
    assert [(r["event"], r["artifact"]["kind"]) for r in audit_records(tmp_path / "audit.jsonl")] == [
        ("skipped", "note"), ("verified", "note"), ("pushed", "note")]
    assert NoteSection.of(loaded.policy).notedirs["dst"].path == tmp_path / "dst"   # relative to the policy
    rendered = client_config(loaded.policy, "notes", sections=loaded.sections)
    assert (rendered.text, rendered.notes) == (f"{tmp_path / 'dst'}\n", ["read the copies there"])
    assert NotePolicy().summary(loaded.policy) == (["  notedirs:   src, dst"], ["  note    src -> dst"])
    assert "note" not in KINDS and "notes" not in clients()


def test_a_new_kind_s_own_part_of_an_item_round_trips_through_a_saved_plan(tmp_path):
    """The made-up kind's part (`lines`) is written flat beside the shared keys (after version 1's,
    which every item carries), read back by the kind itself, used by its transfer, and a saved plan
    whose part is not what the kind writes is refused naming the item."""
    kinds = {"note": NoteKind()}
    loaded, endpoints = _one_note(tmp_path, kinds, b"one\ntwo\n")
    path = tmp_path / "plan.json"
    make_plan(loaded, endpoints, kinds).save(path)
    [written] = json.loads(path.read_text())["items"]
    assert list(written)[-3:] == ["source_index", "project", "lines"]   # version 1's keys first, then its own
    assert (written["lines"], written["platforms"], written["environments"]) == (2, None, None)

    saved = Plan.load(path, kinds)
    assert details_of(saved.items[0], NoteDetails) == NoteDetails(lines=2)
    assert saved.to_json() == path.read_text()
    audit = AuditLog(tmp_path / "audit.jsonl", "run")
    outcome = apply_plan(saved, endpoints, kinds, audit)
    audit.close()
    assert (outcome.pushed, (tmp_path / "dst" / "a.txt").read_bytes()) == (1, b"one\ntwo\n")

    for wrong, message in (("two", 'lines: input should be a valid integer, unable to parse string as an '
                                   'integer, not "two"'),
                           ([2], "lines: input should be a valid integer, not [2]")):
        path.write_text(path.read_text().replace('"lines": 2', f'"lines": {json.dumps(wrong)}'))
        with pytest.raises(UsageError) as caught:
            Plan.load(path, kinds)
        assert str(caught.value) == f"{path}: not a regsync plan: item note src/a.txt -> dst/a.txt: {message}"
        path.write_text(path.read_text().replace(f'"lines": {json.dumps(wrong)}', '"lines": 2'))
    with pytest.raises(UsageError) as caught:   # a key of no kind the plan's items have
        path.write_text(path.read_text().replace('"lines": 2', '"lines": 2, "layers": 1'))
        Plan.load(path, kinds)
    assert str(caught.value).endswith("item note src/a.txt -> dst/a.txt: layers: not a key of this kind's items")


@pytest.mark.parametrize("old, new, line, message", [
    ("  - {from: src, to: dst}", "  - {from: src, to: elsewhere}", 7, "unknown note directory 'elsewhere'"),
    ("  dst: {path: dst}", "  dst: {path: dst, mode: 0644}", 5, "unknown key 'mode'"),
    ("audit: {path: audit.jsonl}", "audit: {path: audit.jsonl}\nnote: []", 3, "unknown key 'note'"),
    ("  src: {path: src}", "  src: {path: src, ca_file: ca.pem}", 4, "{tmp}/ca.pem holds no PEM certificate (a CA bundle is "
                                                                    "one or more -----BEGIN CERTIFICATE----- blocks)"),
])
def test_a_new_kind_s_policy_section_is_checked_at_its_line(tmp_path, old, new, line, message):
    (tmp_path / "policy.yaml").write_text(NOTE_POLICY.replace(old, new))
    (tmp_path / "ca.pem").write_text("not a certificate\n")
    with pytest.raises(PolicyError) as caught:
        _load(tmp_path / "policy.yaml", {"note": NoteKind()})
    assert (caught.value.line, caught.value.msg) == (line, message.format(tmp=tmp_path))


def test_the_registry_s_sections_refuse_a_kind_they_do_not_have(tmp_path):
    (tmp_path / "policy.yaml").write_text(NOTE_POLICY)
    with pytest.raises(PolicyError) as caught:
        load_checked(tmp_path / "policy.yaml")
    assert caught.value.msg == "2 errors: line 3: unknown key 'notedirs'; line 6: unknown key 'notes'"


def test_apply_writes_a_kinds_audit_records_from_its_evidence(tmp_path):
    """The made-up kind returns Evidence (or AlreadyThere) and never sees the audit trail: apply writes
    `verified` and `pushed` from it, a saved plan applied again is `skipped` by the same typed
    outcome, and the report renders its row with the columns every kind gets."""
    kind = NoteKind()
    loaded, endpoints = _one_note(tmp_path, {"note": kind})
    plan = make_plan(loaded, endpoints, {"note": kind})
    trail = tmp_path / "audit.jsonl"
    for run_id in ("first", "again"):   # the same plan twice: the second finds the file there
        audit = AuditLog(trail, run_id)
        apply_plan(plan, endpoints, {"note": kind}, audit)
        audit.close()
    records = audit_records(trail)
    assert [(r["run_id"], r["event"]) for r in records] == [("first", "verified"), ("first", "pushed"),
                                                            ("again", "skipped")]
    verified, pushed, skipped = records
    evidence = {"method": "sha256", "against": "the source directory", "notes": 1}
    assert verified["verification"] == pushed["verification"] == evidence
    assert verified["artifact"] == pushed["artifact"] == {
        "kind": "note", "source": "src/a.txt", "target": "dst/a.txt",
        "digest": hashlib.sha256(b"alpha").hexdigest(), "size": 5}
    assert (skipped["reason"], skipped["artifact"]["size"]) == ("already in the target directory", 0)
    # what a kind is handed holds no audit trail: it cannot write a record of its own
    assert len(kind.runs) == 2
    assert not any(isinstance(value, AuditLog) for run in kind.runs for value in vars(run).values())

    report = build_report(trail)
    [row] = [a for a in report["artifacts"] if a["run_id"] == "first"]
    assert (row["decision"], row["kind"], row["method"], row["signer"]) == ("pushed", "note", "sha256", "")
    page = render_html(report)
    assert '<td class="method">sha256</td>' in page and '<td class="decision">skipped</td>' in page


class BrokenTargetNoteKind(NoteKind):
    """Verifies, says so, then cannot write to its target."""

    def transfer(self, item, run: Run):
        run.verified(item, Evidence(method="sha256", against="the source directory"))
        raise RegistryError(item.target, None, "the target directory is read-only")


def test_checks_that_passed_before_a_push_failed_stay_in_the_trail(tmp_path):
    """`run.verified` is when a kind's checks passed: apply writes `verified` then, so a push that
    fails afterwards leaves `verified` and `failed`, and the report still shows how it was verified."""
    kinds = {"note": BrokenTargetNoteKind()}
    loaded, endpoints = _one_note(tmp_path, kinds)
    audit = AuditLog(tmp_path / "audit.jsonl", "run")
    outcome = apply_plan(make_plan(loaded, endpoints, kinds), endpoints, kinds, audit)
    audit.close()
    assert (outcome.pushed, outcome.failed) == (0, 1)
    assert [r["event"] for r in audit_records(tmp_path / "audit.jsonl")] == ["verified", "failed"]
    [row] = build_report(tmp_path / "audit.jsonl")["artifacts"]
    assert (row["decision"], row["method"]) == ("failed", "sha256")


# The layers below the kinds (docs/architecture.md, "Dependencies").
BELOW_THE_KINDS = ("content", "net", "trust", "policy", "pipeline", "audit", "bundle", "approvals", "vulns",
                   "endpoints.py")


def _imported_modules(path: Path):
    for node in ast.walk(ast.parse(path.read_text())):   # imports inside functions count too
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and not node.level:
            yield node.module or ""


def test_no_layer_below_the_kinds_imports_one():
    package = Path(regsync.__file__).parent
    climbs = [f"{path.relative_to(package)}: {module}"
              for layer in BELOW_THE_KINDS
              for path in ([package / layer] if layer.endswith(".py") else sorted((package / layer).rglob("*.py")))
              for module in _imported_modules(path) if module == "regsync.kinds" or module.startswith("regsync.kinds.")]
    assert len(list((package / "pipeline").glob("*.py"))) > 3 and (package / "endpoints.py").is_file()  # found them
    assert climbs == []
