"""Air gap with Python packages: export from a loopback simple index (and a registry), stop both,
import into a real pypiserver (and a fresh registry) from the bundle alone."""

import hashlib
import json
import subprocess

import pytest

from tests.fixtures.oci_layout import digest_of, inspect_raw, seed, write_image
from tests.fixtures.policies import audit_records, run_cli
from tests.fixtures.pypi import SimpleIndex, build_wheel, start_pypiserver
from tests.fixtures.registries import start_registry


@pytest.fixture
def exported(tmp_path, unique_repo):
    folder = tmp_path / "wheels"
    folder.mkdir()
    wheels = [build_wheel(folder, "app", "1.0", requires=("libcore>=1.0",)),
              build_wheel(folder, "libcore", "1.1", "cp310-cp310-manylinux_2_17_x86_64", ("numpyish>=1",)),
              build_wheel(folder, "numpyish", "1.0", payload=200_000)]
    index = SimpleIndex()
    for path in wheels:
        index.add(path, metadata=not path.name.startswith("numpyish"))  # one read from the wheel itself
    source = start_registry(tmp_path / "source")
    info = write_image(tmp_path / "layout", "1.0", layer_size=20_000, seed=3)
    seed(source, unique_repo, "1.0", tmp_path / "layout")
    target, pypi = start_registry(tmp_path / "target"), start_pypiserver(tmp_path / "pypiserver")
    policy = tmp_path / "policy.yaml"
    policy.write_text(f"""\
version: 1
registries:
  src: {{url: "{source.url}"}}
  dst: {{url: "{target.url}"}}
indexes:
  mirror: {{url: "{index.url}"}}
  internal: {{url: "{pypi.simple}", upload_url: "{pypi.url}", kind: pypiserver,
             auth: {{username: {pypi.username}, password: "{pypi.password}"}}}}
images:
  - {{from: "src/{unique_repo}", to: "dst/{unique_repo}", tags: {{include: ["1.0"]}}}}
packages:
  - from: mirror
    to: internal
    requirements: [app]
    dependencies: true
    environments: [{{python: "3.10", platform: manylinux_2_28_x86_64}}]
audit: {{path: audit.jsonl}}
""")
    bundle = tmp_path / "bundle"
    result = run_cli("export", "-p", policy, "-o", bundle)
    assert result.exit_code == 0, result.output
    assert not any((pypi.root / "packages").iterdir())  # export writes nothing to the far side
    source.stop()
    index.stop()  # from here on, only the bundle
    yield {"bundle": bundle, "policy": policy, "pypi": pypi, "target": target, "wheels": wheels, "repo": unique_repo,
           "image": info.index_digest, "tmp": tmp_path}
    pypi.stop()
    target.stop()


def sha256_file(path):
    return "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest()


def test_packages_and_images_cross_the_gap(exported):
    bundle, pypi = exported["bundle"], exported["pypi"]
    meta = json.loads((bundle / "bundle.json").read_text())
    assert sorted(p["filename"] for p in meta["packages"]) == sorted(w.name for w in exported["wheels"])
    for entry in meta["packages"]:  # stored as blobs named by their sha256, listed in SHA256SUMS
        assert (bundle / "blobs" / "sha256" / entry["sha256"].split(":")[1]).is_file()
    assert subprocess.run(["sha256sum", "-c", "--quiet", "SHA256SUMS"], cwd=bundle).returncode == 0

    result = run_cli("import", bundle, "-p", exported["policy"])

    assert result.exit_code == 0, result.output
    assert "4 pushed" in result.output
    landed = {p.name: sha256_file(p) for p in (pypi.root / "packages").iterdir()}
    assert landed == {w.name: sha256_file(w) for w in exported["wheels"]}
    assert digest_of(inspect_raw(exported["target"], f"{exported['repo']}:1.0")) == exported["image"]
    again = run_cli("import", bundle, "-p", exported["policy"])
    assert again.exit_code == 0 and "0 pushed, 4 unchanged" in again.output, again.output


def test_a_flipped_byte_in_a_wheel_is_refused_and_never_uploaded(exported):
    bundle, pypi = exported["bundle"], exported["pypi"]
    meta = json.loads((bundle / "bundle.json").read_text())
    [victim] = [p for p in meta["packages"] if p["filename"].startswith("numpyish")]
    path = bundle / "blobs" / "sha256" / victim["sha256"].split(":")[1]
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))

    result = run_cli("import", bundle, "-p", exported["policy"])

    assert result.exit_code == 3, result.output
    refused = [r for r in audit_records(exported["tmp"] / "audit.jsonl") if r["event"] == "refused"]
    assert [r["artifact"]["source"] for r in refused] == [f"mirror/{victim['filename']}"]
    assert victim["filename"] not in {p.name for p in (pypi.root / "packages").iterdir()}
