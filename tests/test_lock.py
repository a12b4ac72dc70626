"""One run per trail at a time: exit 5 naming the holder, --wait-lock, takeover after a killed holder,
and two processes sharing one trail never fork its chain."""

import os
import re
import signal
import subprocess
import sys
import time
import zlib

from tests.fixtures.oci_layout import seed, write_image
from tests.fixtures.policies import run_cli, write_policy

HOLD = """
import sys, time
from pathlib import Path
from regsync.lock import RunLock
RunLock(Path(sys.argv[1])).acquire()
print("held", flush=True)
time.sleep(float(sys.argv[2]))
"""


def hold_lock(path, seconds):
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(path), str(seconds)], stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    return holder


def test_second_run_exits_5_naming_the_holder_then_waits_then_takes_over(tmp_path, registry, registry2, unique_repo,
                                                                          oci_dir):
    write_image(oci_dir, "a", seed=zlib.crc32(unique_repo.encode()))
    seed(registry, unique_repo, "a", oci_dir)
    policy = write_policy(tmp_path, registry.url, registry2.url, unique_repo, tags=["a"])
    lock = tmp_path / "audit.jsonl.lock"
    holder = hold_lock(lock, 30)
    try:
        locked = run_cli("sync", "-p", policy)
        assert locked.exit_code == 5
        assert f"pid {holder.pid}" in locked.output and "started" in locked.output
        started = time.monotonic()
        waited = run_cli("sync", "-p", policy, "--wait-lock", "1.5")
        assert waited.exit_code == 5 and time.monotonic() - started >= 1.4
    finally:
        holder.kill()  # SIGKILL: the holder never releases anything itself
        holder.wait()
    assert not (tmp_path / "audit.jsonl").exists()  # the refused runs touched nothing
    took_over = run_cli("sync", "-p", policy)
    assert took_over.exit_code == 0, took_over.output


def test_two_concurrent_runs_one_waits_for_the_other(tmp_path, registry, registry2, unique_repo, oci_dir):
    write_image(oci_dir, "a", layer_size=2 * 1024 * 1024, seed=zlib.crc32(unique_repo.encode()))
    seed(registry, unique_repo, "a", oci_dir)
    policy = write_policy(tmp_path, registry.url, registry2.url, unique_repo, tags=["a"])
    command = [sys.executable, "-m", "regsync", "--no-progress", "sync", "-p", str(policy)]
    # both may wait: on a loaded machine the second can start its run before the first does
    first = subprocess.Popen(command + ["--bandwidth", "2MiB", "--wait-lock", "60"], cwd=tmp_path,
                             stderr=subprocess.PIPE, text=True)
    time.sleep(0.8)
    second = subprocess.run(command + ["--wait-lock", "60"], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    _, first_stderr = first.communicate(timeout=120)
    assert first.returncode == 0 and second.returncode == 0, (first_stderr, second.stderr)
    pushed = ["1 pushed, 0 unchanged" in text for text in (first_stderr, second.stderr)]
    unchanged = ["0 pushed, 1 unchanged" in text for text in (first_stderr, second.stderr)]
    assert sorted(pushed) == [False, True] and unchanged == [not p for p in pushed], (first_stderr, second.stderr)
    assert run_cli("audit", "verify", tmp_path / "audit.jsonl").exit_code == 0


WRITER = """
import sys
from pathlib import Path
from regsync.audit.log import AuditLog
log = AuditLog(Path(sys.argv[1]), sys.argv[2])
log.start_run(policy_sha256="0" * 64, policy_path="p.yaml", targets=["dst"], command="test")
for i in range(150):
    log.event("skipped", artifact={"source": f"src/r:{i}", "target": f"dst/r:{i}"}, reason="writer " + sys.argv[2])
log.finish_run(exit_code=0, bytes_moved=0)
log.close()
"""


def test_two_writers_on_one_trail_never_fork_the_chain(tmp_path):
    trail = tmp_path / "shared.jsonl"
    writers = [subprocess.Popen([sys.executable, "-c", WRITER, str(trail), f"w{n}"]) for n in range(2)]
    for writer in writers:
        assert writer.wait(timeout=60) == 0
    assert len(trail.read_text().splitlines()) == 2 * 152
    # Runs interleave line by line, so frames overlap; the chain itself must still be unbroken.
    records = [__import__("json").loads(line) for line in trail.read_text().splitlines()]
    assert [r["seq"] for r in records] == list(range(1, 2 * 152 + 1))
    import hashlib
    raw = trail.read_bytes().splitlines(keepends=True)
    assert all(records[i]["prev"] == hashlib.sha256(raw[i - 1]).hexdigest() for i in range(1, len(raw)))


def test_sigterm_run_finished_records_the_interruption(tmp_path, registry, registry2, unique_repo, oci_dir):
    from tests.fixtures.faultproxy import FaultProxy
    from tests.fixtures.policies import audit_records

    write_image(oci_dir, "a", seed=zlib.crc32(unique_repo.encode()))
    seed(registry, unique_repo, "a", oci_dir)
    proxy = FaultProxy(registry.url)
    stall = proxy.add(kind="stall", path="/blobs/sha256:", seconds=2.0)
    try:
        policy = write_policy(tmp_path, proxy.url, registry2.url, unique_repo, tags=["a"])
        process = subprocess.Popen([sys.executable, "-m", "regsync", "--no-progress", "sync", "-p", str(policy)],
                                   cwd=tmp_path, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 20
        while not stall.fired and time.monotonic() < deadline:
            time.sleep(0.02)
        os.kill(process.pid, signal.SIGTERM)
        process.communicate(timeout=60)
    finally:
        proxy.stop()
    assert process.returncode == 1
    finished = audit_records(tmp_path / "audit.jsonl", frame=True)[-1]
    assert finished["event"] == "run-finished" and finished["interrupted"] is True and finished["exit_code"] == 1
    assert run_cli("audit", "verify", tmp_path / "audit.jsonl").exit_code == 0


def test_wait_lock_says_it_waited_and_for_how_long(tmp_path, registry, registry2, unique_repo, oci_dir):
    write_image(oci_dir, "a", seed=zlib.crc32(unique_repo.encode()))
    seed(registry, unique_repo, "a", oci_dir)
    policy = write_policy(tmp_path, registry.url, registry2.url, unique_repo, tags=["a"])
    holder = hold_lock(tmp_path / "audit.jsonl.lock", 4)
    try:
        gave_up = run_cli("sync", "-p", policy, "--wait-lock", "0.6")
        assert gave_up.exit_code == 5
        assert f"pid {holder.pid}" in gave_up.stderr and "waited 0.6 s (--wait-lock 0.6)" in gave_up.stderr, gave_up.stderr
        waited = run_cli("sync", "-p", policy, "--wait-lock", "20")
    finally:
        holder.kill()
        holder.wait()
    assert waited.exit_code == 0, waited.output
    [summary] = [line for line in waited.stderr.splitlines() if "1 pushed" in line]
    seconds = float(re.search(r"waited (\d+\.\d) s for the lock \(pid (\d+) on ", summary).group(1))
    assert 0.3 <= seconds <= 20 and f"pid {holder.pid} on" in summary, summary
    unlocked = run_cli("sync", "-p", policy, "--wait-lock", "20")
    assert unlocked.exit_code == 0 and "for the lock" not in unlocked.stderr, unlocked.stderr
    no_wait = run_cli("sync", "-p", policy)  # without --wait-lock, the message names the flag
    assert no_wait.exit_code == 0


def test_an_audit_file_that_is_a_directory_or_in_a_missing_one_is_a_usage_error(tmp_path, registry, registry2,
                                                                                  unique_repo):
    policy = write_policy(tmp_path, registry.url, registry2.url, unique_repo, tags=["a"])
    summary = tmp_path / "summary.json"
    directory = run_cli("sync", "-p", policy, "--audit-file", tmp_path, "--summary-json", summary)
    assert directory.exit_code == 2, directory.output
    assert directory.stderr.strip() == (f"error: --audit-file {tmp_path} is a directory: name a file in it, "
                                        f"e.g. {tmp_path / 'regsync-audit.jsonl'}")
    assert '"exit_code": 2' in summary.read_text()  # a cron wrapper still gets its summary
    missing = tmp_path / "no-such-dir" / "audit.jsonl"
    result = run_cli("sync", "-p", policy, "--audit-file", missing)
    assert result.exit_code == 2 and "does not exist" in result.stderr and "internal error" not in result.stderr
    assert not missing.parent.exists()  # nothing created for a typo
    export = run_cli("export", "-p", policy, "-o", tmp_path / "bundle", "--audit-file", tmp_path)
    assert export.exit_code == 2 and "is a directory" in export.stderr, export.output
