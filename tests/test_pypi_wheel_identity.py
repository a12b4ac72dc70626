"""A wheel whose name lies (issue 22): `app-1.0-py3-none-any.whl`, listed with PEP 658 metadata for
`app 1.0`, whose own `.dist-info` says `evil 6.6.6, Requires-Dist: backdoor`. The index's sha256 is
right (the index serves exactly these bytes), so only reading the wheel tells. Each is refused
(exit 3, audited) before it reaches a real pypiserver; pip would refuse it on the client anyway
(pip/_internal/utils/wheel.py `wheel_dist_info_dir`), after the closure was computed without
`backdoor`.

The hostile wheels are written with the stdlib zipfile as a real one is laid out (PEP 427: the
package, then `<name>-<version>.dist-info/` with METADATA, WHEEL and a RECORD of urlsafe-base64
sha256 digests and sizes).
"""

import base64
import hashlib
import zipfile

import pytest

from tests.fixtures.policies import audit_records, package_policy, run_cli
from tests.fixtures.pypi import SimpleIndex, build_wheel

HONEST = b"Metadata-Version: 2.1\nName: app\nVersion: 1.0\nSummary: an app\n"
EVIL = b"Metadata-Version: 2.1\nName: evil\nVersion: 6.6.6\nRequires-Dist: backdoor\n"
LYING_DEPS = b"Metadata-Version: 2.1\nName: app\nVersion: 1.0\nSummary: an app\nRequires-Dist: backdoor\n"
WHEEL = b"Wheel-Version: 1.0\nGenerator: bdist_wheel (0.43.0)\nRoot-Is-Purelib: true\nTag: py3-none-any\n"


def real_looking_wheel(folder, dist_infos: dict[str, bytes], extra_members: int = 0):
    """app-1.0-py3-none-any.whl holding `dist_infos` ({".dist-info" directory: its METADATA})."""
    members = {"app/__init__.py": b"VALUE = 1\n"}
    members.update({f"app/data_{n}.txt": b"" for n in range(extra_members)})
    for info_dir, metadata in dist_infos.items():
        members[f"{info_dir}/METADATA"] = metadata
        members[f"{info_dir}/WHEEL"] = WHEEL
    record = "".join(f"{name},sha256={base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b'=').decode()},"
                     f"{len(data)}\n" for name, data in members.items())
    for info_dir in dist_infos:
        members[f"{info_dir}/RECORD"] = (record + f"{info_dir}/RECORD,,\n").encode()
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "app-1.0-py3-none-any.whl"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as wheel:
        for name, data in members.items():
            wheel.writestr(zipfile.ZipInfo(name, (2024, 1, 1, 0, 0, 0)), data)
    return path


CASES = {
    # (the wheel's .dist-info directories, the PEP 658 file the index lists or None, what the refusal names)
    "another name": ({"evil-6.6.6.dist-info": EVIL}, HONEST, "evil-6.6.6.dist-info says evil 6.6.6"),
    "another Requires-Dist": ({"app-1.0.dist-info": LYING_DEPS}, HONEST, "says Requires-Dist [backdoor]"),
    "two .dist-info directories": ({"app-1.0.dist-info": HONEST, "evil-6.6.6.dist-info": EVIL}, HONEST,
                                   "exactly one .dist-info directory"),
    "another name, no PEP 658 file": ({"evil-6.6.6.dist-info": EVIL}, None, "says evil 6.6.6"),
}


@pytest.mark.parametrize("case", CASES)
def test_a_wheel_whose_name_lies_is_refused_before_it_is_pushed(tmp_path, pypiserver, case):
    dist_infos, pep658, named = CASES[case]
    index = SimpleIndex()
    try:
        index.add(real_looking_wheel(tmp_path / "hostile", dist_infos), metadata=pep658 is not None,
                  metadata_bytes=pep658)
        index.add(build_wheel(tmp_path / "other", "backdoor", "1.0"))
        result = run_cli("sync", "-p", package_policy(tmp_path, index, pypiserver, ["app==1.0"], True), env={"PYPI_PASSWORD": "pkg-Pa55"})
    finally:
        index.stop()
    assert result.exit_code == 3, result.output
    assert list((pypiserver.root / "packages").iterdir()) == []
    records = audit_records(tmp_path / "audit.jsonl")
    assert [r for r in records if r["event"] == "pushed"] == []
    refused = [r["reason"] for r in records if r["event"] == "refused"]
    # without a PEP 658 file the plan read the wheel itself: refused there, with the closure it blocks
    assert refused and all(named in reason for reason in refused), refused


@pytest.mark.parametrize("limit, value, wheel_args, named", [
    ("MAX_MEMBERS", 8, {"extra_members": 20}, "zip directory"),
    ("MAX_METADATA_BYTES", 4096, {"dist_infos": {"app-1.0.dist-info": HONEST + b"Description: " + b"x" * 65536}},
     "METADATA is larger than 4096 bytes")])
def test_a_wheel_is_read_bounded(tmp_path, pypiserver, monkeypatch, limit, value, wheel_args, named):
    """Lowered here so the test stays small: a zip directory over the entry bound is refused before
    zipfile lists it, and METADATA is inflated up to its bound only (here 64 KiB of it deflate to
    a few hundred bytes)."""
    monkeypatch.setattr(f"regsync.kinds.package.wheel.{limit}", value)
    args = {"dist_infos": {"app-1.0.dist-info": HONEST}, **wheel_args}
    index = SimpleIndex()
    try:
        index.add(real_looking_wheel(tmp_path / "big", **args), metadata_bytes=HONEST)
        result = run_cli("sync", "-p", package_policy(tmp_path, index, pypiserver, ["app==1.0"], True), env={"PYPI_PASSWORD": "pkg-Pa55"})
    finally:
        index.stop()
    assert result.exit_code == 3, result.output
    assert list((pypiserver.root / "packages").iterdir()) == []
    [refused] = [r for r in audit_records(tmp_path / "audit.jsonl") if r["event"] == "refused"]
    assert named in refused["reason"], refused["reason"]

