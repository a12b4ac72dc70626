"""The audit trail of real syncs: chained, framed per run, signed; every tamper case named by line."""

import hashlib
import json
import zlib

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519
from prometheus_client.parser import text_string_to_metric_families

from regsync.audit.log import encode
from tests.fixtures.oci_layout import seed, write_image
from tests.fixtures.policies import audit_records, run_cli, write_policy


@pytest.fixture
def signed_trail(tmp_path, registry, registry2, unique_repo, oci_dir):
    """Two runs of a real sync (one pushes, one skips), the run-finished records signed with Ed25519;
    each run also writes summary-N.json and regsync.prom (the second run's)."""
    key = ed25519.Ed25519PrivateKey.generate()
    (tmp_path / "audit.key").write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                          serialization.NoEncryption()))
    (tmp_path / "audit.pub").write_bytes(key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    for n, tag in enumerate(["a", "b"]):
        write_image(oci_dir, tag, seed=zlib.crc32(f"{unique_repo}{n}".encode()))
        seed(registry, unique_repo, tag, oci_dir)
    policy = write_policy(tmp_path, registry.url, registry2.url, unique_repo, tags=["a", "b"])
    policy.write_text(policy.read_text().replace("audit: {path: audit.jsonl}", "audit: {path: audit.jsonl, sign_key: audit.key}"))
    for n in range(2):
        assert run_cli("sync", "-p", policy, "--summary-json", tmp_path / f"summary-{n}.json",
                       "--metrics-file", tmp_path / "regsync.prom").exit_code == 0
    return tmp_path / "audit.jsonl"


def verify(trail, *extra):
    return run_cli("audit", "verify", trail, *extra)


def lines_of(trail):
    return trail.read_bytes().splitlines(keepends=True)


def tampered(trail, lines, name="tampered.jsonl"):
    path = trail.with_name(name)
    path.write_bytes(b"".join(lines))
    return path


def rechain(lines):
    """What a careful forger does: fix every seq and prev after a change."""
    out, prev = [], "0" * 64
    for seq, raw in enumerate(lines, start=1):
        entry = json.loads(raw)
        entry["seq"], entry["prev"] = seq, prev
        line = encode(entry)
        out.append(line)
        prev = hashlib.sha256(line).hexdigest()
    return out


def test_intact_trail_of_two_runs_verifies_with_and_without_the_key(signed_trail):
    records = audit_records(signed_trail, frame=True)
    events = [r["event"] for r in records]
    assert events[0] == events[6] == "run-started" and events[5] == events[9] == "run-finished"
    assert sorted(events[1:5]) == ["pushed", "pushed", "verified", "verified"]  # two images, in parallel
    assert events[7:9] == ["skipped", "skipped"]
    started = records[0]
    assert started["policy_sha256"] and started["host"] and started["user"] and started["targets"] == ["dst"]
    assert records[5]["counts"] == {"verified": 2, "pushed": 2} and records[5]["exit_code"] == 0
    assert "signature" in records[5] and "signature" in records[9]
    plain = verify(signed_trail)
    assert plain.exit_code == 0 and "intact: 10 records, 2 run(s)" in plain.output
    keyed = verify(signed_trail, "--key", signed_trail.with_name("audit.pub"))
    assert keyed.exit_code == 0 and "2 signed run(s) verified" in keyed.output


def test_edited_digest_is_named(signed_trail):
    lines = lines_of(signed_trail)
    entry = json.loads(lines[2])
    entry["artifact"]["digest"] = "sha256:" + "0" * 64
    lines[2] = encode(entry)
    result = verify(tampered(signed_trail, lines))
    assert result.exit_code == 1 and ":3: the previous line was edited" in result.output.replace("line 4's", "")


def test_deleted_line_is_named(signed_trail):
    lines = lines_of(signed_trail)
    del lines[3]
    result = verify(tampered(signed_trail, lines))
    assert result.exit_code == 1 and ":4: seq jumps from 3 to 5: 1 line(s) deleted" in result.output


def test_swapped_lines_are_named(signed_trail):
    lines = lines_of(signed_trail)
    lines[1], lines[2] = lines[2], lines[1]
    result = verify(tampered(signed_trail, lines))
    assert result.exit_code == 1 and ":2: seq 3 after 1: lines were reordered" in result.output


def test_truncated_run_is_named(signed_trail):
    lines = lines_of(signed_trail)[:-1]  # the second run lost its run-finished
    result = verify(tampered(signed_trail, lines))
    assert result.exit_code == 1 and ":7: run " in result.output and "truncated run" in result.output


def test_forged_signed_tail_is_detected_only_with_the_key(signed_trail):
    lines = lines_of(signed_trail)
    del lines[7]                      # hide a record of the second run...
    forged = rechain(lines)           # ...and rebuild the chain so it hashes cleanly
    path = tampered(signed_trail, forged)
    assert verify(path).exit_code == 0  # a bare hash chain cannot tell: that is what the signature is for
    result = verify(path, "--key", signed_trail.with_name("audit.pub"))
    assert result.exit_code == 1 and ":9: run-finished signature does not verify" in result.output


def test_unsigned_tail_fails_when_a_key_is_required(signed_trail):
    lines = lines_of(signed_trail)
    entry = json.loads(lines[-1])
    entry.pop("signature")
    lines[-1] = encode(entry)
    result = verify(tampered(signed_trail, lines), "--key", signed_trail.with_name("audit.pub"))
    assert result.exit_code == 1 and ":10: run-finished is not signed" in result.output


def test_summary_metrics_and_json_logs_share_the_run_id(tmp_path, registry, registry2, unique_repo, oci_dir):
    write_image(oci_dir, "a", seed=zlib.crc32(unique_repo.encode()))
    seed(registry, unique_repo, "a", oci_dir)
    policy = write_policy(tmp_path, registry.url, registry2.url, unique_repo, tags=["a", "missing"])
    summary, metrics = tmp_path / "out/summary.json", tmp_path / "out/regsync.prom"
    result = run_cli("-v", "--log-format", "json", "sync", "-p", policy, "--summary-json", summary,
                     "--metrics-file", metrics)
    assert result.exit_code == 1  # the missing tag failed; "a" was pushed
    body = json.loads(summary.read_text())
    assert body["exit_code"] == 1 and body["counts"]["pushed"] == 1 and body["counts"]["failed"] == 1
    assert any("missing" in p["artifact"] for p in body["problems"])
    families = {f.name: f for f in text_string_to_metric_families(metrics.read_text())}
    artifacts = {s.labels["event"]: s.value for s in families["regsync_artifacts_total"].samples}
    assert artifacts["pushed"] == 1 and artifacts["failed"] == 1
    assert "regsync_last_success_timestamp_seconds" not in families  # never succeeded yet
    assert families["regsync_run_duration_seconds"].samples[0].value > 0
    log_run_ids = {json.loads(line)["run_id"] for line in result.output.splitlines()
                   if line.startswith("{")}
    assert log_run_ids == {body["run_id"]} == {r["run_id"] for r in audit_records(tmp_path / "audit.jsonl", frame=True)}


def test_lines_swapped_far_apart_are_named_as_reordered_not_deleted(signed_trail):
    lines = lines_of(signed_trail)
    lines[1], lines[4] = lines[4], lines[1]
    result = verify(tampered(signed_trail, lines))
    assert result.exit_code == 1 and ":2: seq 5 after 1: lines were reordered (seq 2 is on line 5)" in result.output


def test_run_cut_off_and_rechained_is_named_at_the_next_run_started(signed_trail):
    lines = lines_of(signed_trail)
    del lines[5]  # the first run's run-finished, then a careful rechain hides the gap in seq
    result = verify(tampered(signed_trail, rechain(lines)))
    assert result.exit_code == 1
    assert ":6: run " in result.output and "(started line 1) has no run-finished before this run-started" in result.output
    assert "found it unfinished" not in result.output  # the next run saw a finished run: the cut came later


def test_a_crashed_run_is_flagged_and_the_next_run_says_it_found_it_unfinished(
        tmp_path, registry, registry2, unique_repo, oci_dir):
    from regsync.audit.log import AuditLog

    write_image(oci_dir, "a", seed=zlib.crc32(unique_repo.encode()))
    seed(registry, unique_repo, "a", oci_dir)
    policy = write_policy(tmp_path, registry.url, registry2.url, unique_repo, tags=["a"])
    crashed = AuditLog(tmp_path / "audit.jsonl", "crashedrun")  # killed before run-finished: no finally ran
    crashed.start_run(policy_sha256="0" * 64, policy_path=str(policy), targets=["dst"], command="sync")
    crashed.event("verified", artifact={"source": "src/x:a"})
    crashed.close()
    assert run_cli("sync", "-p", policy).exit_code == 0
    result = verify(tmp_path / "audit.jsonl")
    assert result.exit_code == 1
    assert ":3: run crashedrun (started line 1) has no run-finished" in result.output
    assert "this run-started found it unfinished" in result.output


def test_empty_trail_is_not_intact(tmp_path):
    empty = tmp_path / "audit.jsonl"
    empty.write_bytes(b"")
    result = verify(empty)
    assert result.exit_code == 1 and ":1: empty" in result.output


def _append_records(path, name, count):
    from regsync.audit.log import AuditLog

    log = AuditLog(path, name)
    for n in range(count):
        log.event("resolved", artifact={"source": f"src/{name}:{n}"})
    log.close()


def test_two_writers_never_fork_the_chain(tmp_path):
    """Two processes appending at once: the lock makes each re-read the tail, so seq and prev stay one chain."""
    import multiprocessing

    path, per_writer = tmp_path / "audit.jsonl", 150
    context = multiprocessing.get_context("fork")
    writers = [context.Process(target=_append_records, args=(path, name, per_writer)) for name in ("one", "two")]
    for writer in writers:
        writer.start()
    for writer in writers:
        writer.join(timeout=60)
        assert writer.exitcode == 0
    prev = "0" * 64
    lines = lines_of(path)
    assert len(lines) == 2 * per_writer
    for seq, raw in enumerate(lines, start=1):
        entry = json.loads(raw)
        assert (entry["seq"], entry["prev"]) == (seq, prev), f"line {seq} forks the chain"
        prev = hashlib.sha256(raw).hexdigest()
    assert {json.loads(raw)["run_id"] for raw in lines} == {"one", "two"}


def test_last_success_survives_a_failed_run_and_the_file_is_never_half_written(tmp_path):
    from regsync.ops import write_metrics

    metrics = tmp_path / "regsync.prom"

    def values():
        return {s.name: s.value for f in text_string_to_metric_families(metrics.read_text()) for s in f.samples
                if not s.labels}

    write_metrics(metrics, counts={"pushed": 3}, bytes_moved=10, duration=1.5, exit_code=0)
    succeeded = values()["regsync_last_success_timestamp_seconds"]
    write_metrics(metrics, counts={"failed": 1}, bytes_moved=0, duration=0.5, exit_code=1)
    after_failure = values()
    assert after_failure["regsync_last_success_timestamp_seconds"] == succeeded
    assert after_failure["regsync_last_run_exit_code"] == 1
    assert after_failure["regsync_last_run_timestamp_seconds"] >= succeeded
    assert [p.name for p in tmp_path.iterdir()] == ["regsync.prom"]  # the temporary file was renamed away


def test_a_trail_cut_mid_line_is_never_extended(tmp_path, registry, registry2, unique_repo, oci_dir):
    write_image(oci_dir, "a", seed=zlib.crc32(unique_repo.encode()))
    seed(registry, unique_repo, "a", oci_dir)
    policy = write_policy(tmp_path, registry.url, registry2.url, unique_repo, tags=["a"])
    assert run_cli("sync", "-p", policy).exit_code == 0
    trail = tmp_path / "audit.jsonl"
    whole = trail.read_bytes()
    trail.write_bytes(whole[:-1])  # the last record lost its newline: a write cut short
    result = run_cli("sync", "-p", policy)
    assert result.exit_code == 1 and "last line is incomplete" in result.output
    assert trail.read_bytes() == whole[:-1]  # nothing glued onto the damaged line
    assert ":4: truncated line (no newline)" in verify(trail).output


def test_merge_signs_only_inputs_it_verified_with_the_key(signed_trail):
    """A forged shard trail (an edited digest, signatures stripped, chain recomputed) must not come
    out of `audit merge --sign-key` signed: signing needs --key, and every input is checked with it."""
    pub, sign_key = signed_trail.with_name("audit.pub"), signed_trail.with_name("audit.key")
    lines = lines_of(signed_trail)
    forged_records = []
    for raw in lines[:6]:  # the first run, a pushed digest swapped for another
        entry = json.loads(raw)
        entry.pop("signature", None)
        if entry["event"] == "pushed":
            entry["artifact"]["digest"] = "sha256:" + "e" * 64
        forged_records.append(encode(entry))
    forged = tampered(signed_trail, rechain(forged_records), "shard-forged.jsonl")
    forged_run = json.loads(lines[0])["run_id"]

    unchecked = run_cli("audit", "merge", signed_trail, forged, "-o", signed_trail.with_name("m1.jsonl"),
                        "--sign-key", sign_key)
    assert unchecked.exit_code == 2 and "--sign-key needs --key" in unchecked.output
    assert not signed_trail.with_name("m1.jsonl").exists()

    refused = run_cli("audit", "merge", signed_trail, forged, "-o", signed_trail.with_name("m2.jsonl"),
                      "--key", pub, "--sign-key", sign_key)
    assert refused.exit_code == 1, refused.output
    assert f"shard-forged.jsonl:6: run {forged_run}: run-finished is not signed" in refused.output
    assert "not merging" in refused.output and not signed_trail.with_name("m2.jsonl").exists()

    merged = signed_trail.with_name("m3.jsonl")
    joined = run_cli("audit", "merge", signed_trail, "-o", merged, "--key", pub, "--sign-key", sign_key)
    assert joined.exit_code == 0, joined.output
    assert verify(merged, "--key", pub).exit_code == 0


def test_whole_runs_cut_from_the_end_fail_against_the_anchor_a_run_wrote(signed_trail):
    """Removing the last run leaves a valid, still signed trail: only an anchor kept outside the file
    (the summary JSON, the metrics file, or the head `audit verify` printed) tells."""
    pub, lines = signed_trail.with_name("audit.pub"), lines_of(signed_trail)
    head = hashlib.sha256(lines[-1]).hexdigest()
    first, second = (json.loads(signed_trail.with_name(f"summary-{n}.json").read_text()) for n in range(2))
    assert second["audit_head"] == {"sha256": head, "seq": 10}
    assert first["audit_head"] == {"sha256": hashlib.sha256(lines[5]).hexdigest(), "seq": 6}
    families = {f.name: f for f in text_string_to_metric_families(signed_trail.with_name("regsync.prom").read_text())}
    [sample] = families["regsync_audit_head_info"].samples
    assert sample.labels == {"sha256": head, "seq": "10"} and sample.value == 1

    intact = verify(signed_trail, "--key", pub, "--anchor", signed_trail.with_name("summary-1.json"))
    assert intact.exit_code == 0 and f"head sha256 {head} (seq 10)" in intact.output
    # an older anchor still holds: the runs after it were appended, not cut
    older = verify(signed_trail, "--anchor", signed_trail.with_name("summary-0.json"))
    assert older.exit_code == 0 and "anchor found at line 6; 4 record(s) after it" in older.output

    cut = tampered(signed_trail, lines[:6])  # the second run removed whole
    assert verify(cut, "--key", pub).exit_code == 0  # what the chain and the signatures alone cannot see
    by_file = verify(cut, "--key", pub, "--anchor", signed_trail.with_name("summary-1.json"))
    assert by_file.exit_code == 1
    assert "the trail ends at seq 6, before the anchor (seq 10): truncated" in by_file.output
    by_hash = verify(cut, "--expect-head", head)
    assert by_hash.exit_code == 1 and f"{head} is not the hash of any record" in by_hash.output

    rewritten = tampered(signed_trail, rechain(lines[:3] + lines[4:]), "rewritten.jsonl")
    by_seq = verify(rewritten, "--anchor", signed_trail.with_name("summary-0.json"))
    assert by_seq.exit_code == 1 and "record seq 6 is not the anchored one" in by_seq.output
    assert verify(signed_trail, "--expect-head", "abc").exit_code == 2
    # an anchor file whose head names no sha256 is refused, never a check silently skipped
    nameless = signed_trail.with_name("summary-null.json")
    nameless.write_text(json.dumps({"audit_head": {"sha256": None, "seq": 10}}))
    skipped = verify(cut, "--anchor", nameless)
    assert skipped.exit_code == 2 and "is not a summary JSON with an audit_head" in skipped.output


def test_a_run_still_going_is_in_progress_not_truncated(signed_trail):
    import fcntl
    import os

    running = tampered(signed_trail, lines_of(signed_trail)[:-1], name="running.jsonl")  # no run-finished yet
    fd = os.open(running.with_name("running.jsonl.lock"), os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # what a live regsync run holds
        result = verify(running)
        assert "run in progress" in result.output and "truncated" not in result.output, result.output
        assert result.exit_code == 0
    finally:
        os.close(fd)
    assert "truncated run" in verify(running).output  # the lock gone, the same trail is a truncated run


def test_audit_list_json_prints_the_original_record_bytes(signed_trail):
    result = run_cli("audit", "list", signed_trail, "--json")
    assert result.exit_code == 0
    assert result.stdout.encode() == signed_trail.read_bytes()


def test_a_trail_or_result_file_that_cannot_be_written_is_a_usage_error_before_the_run(tmp_path):
    """--audit-file at a FIFO, /dev/null or under /proc, --summary-json at a directory, --metrics-file under
    a file: exit 2 with the flag named, before any registry is asked (these refuse connections)."""
    import os

    policy = tmp_path / "policy.yaml"
    policy.write_text('version: 1\nregistries:\n  src: {url: "http://127.0.0.1:1"}\n  dst: {url: "http://127.0.0.1:1"}\n'
                      'images:\n  - {from: src/a/b, to: dst/a/b, tags: {include: ["1"]}}\n')
    os.mkfifo(tmp_path / "fifo")
    (tmp_path / "afile").write_text("x")
    trail = ["--audit-file", tmp_path / "audit.jsonl"]
    for args, expected in (
            (["--audit-file", tmp_path / "fifo"], "--audit-file " f"{tmp_path / 'fifo'} is not a regular file"),
            (["--audit-file", "/dev/null"], "--audit-file /dev/null is not a regular file"),
            (["--audit-file", "/proc/regsync-audit.jsonl"], "cannot create the run lock /proc/regsync-audit.jsonl.lock"),
            ([*trail, "--summary-json", tmp_path], "--summary-json " f"{tmp_path} is a directory"),
            ([*trail, "--metrics-file", tmp_path / "afile" / "m.prom"], f"{tmp_path / 'afile'} is a file, not a folder")):
        result = run_cli("sync", "-p", policy, *args)
        assert result.exit_code == 2, (args, result.output)
        assert expected in " ".join(result.output.split()) and "connection refused" not in result.output, result.output
    assert not (tmp_path / "audit.jsonl").exists()


def test_merging_the_same_trail_twice_is_refused_not_doubled(signed_trail):
    """`audit merge audit-*.jsonl audit-0.jsonl`: every run of audit-0 would be in the result twice,
    and a report built from it would count each artifact twice."""
    copy = tampered(signed_trail, lines_of(signed_trail), "copy.jsonl")
    for inputs in ([signed_trail, signed_trail], [signed_trail, copy]):
        merged = signed_trail.with_name("merged.jsonl")
        result = run_cli("audit", "merge", *inputs, "-o", merged)
        assert result.exit_code == 2 and "(the same trail given twice?)" in " ".join(result.output.split()), result.output
        assert not merged.exists()
