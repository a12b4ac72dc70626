"""Export and import as an operator meets them (issue 13): refusals before anything is written,
the directories to carry, a half-written bundle named as such, no source secrets on the far side,
and a bundle other OCI tools can read."""

import json
import shutil
import subprocess

from tests.fixtures.oci_layout import digest_of, inspect_raw, seed, write_image
from tests.fixtures.policies import run_cli, write_policy


def _two_images(registry, repo, oci_dir, layer_size=150_000):
    for n, tag in enumerate(("a", "b")):
        write_image(oci_dir, tag, layer_size=layer_size, seed=40 + n)
        seed(registry, repo, tag, oci_dir)


def test_a_volume_smaller_than_the_largest_blob_is_refused_before_anything_is_written(tmp_path, registry, registry2,
                                                                                       unique_repo, oci_dir):
    _two_images(registry, unique_repo, oci_dir)
    policy = write_policy(tmp_path, registry.url, registry2.url, unique_repo, tags=["glob:*"])
    bundle = tmp_path / "vb"
    result = run_cli("export", "-p", policy, "-o", bundle, "--volume-size", 100_000)
    assert result.exit_code == 2, result.output
    assert "--volume-size" in result.output and "largest" in result.output
    assert not bundle.exists()


def test_a_split_export_names_the_directories_to_carry(tmp_path, registry, registry2, unique_repo, oci_dir):
    _two_images(registry, unique_repo, oci_dir)
    policy = write_policy(tmp_path, registry.url, registry2.url, unique_repo, tags=["glob:*"])
    bundle = tmp_path / "vb"
    result = run_cli("export", "-p", policy, "-o", bundle, "--volume-size", 400_000)
    assert result.exit_code == 0, result.output
    volumes = [bundle, *sorted(tmp_path.glob("vb.vol*"))]
    assert len(volumes) >= 2
    assert f"carry {len(volumes)} directories: " + ", ".join(str(v) for v in volumes) in result.output, result.output


def test_a_half_written_bundle_names_the_missing_file(tmp_path, registry, registry2, unique_repo, oci_dir):
    _two_images(registry, unique_repo, oci_dir, layer_size=5_000)
    policy = write_policy(tmp_path, registry.url, registry2.url, unique_repo, tags=["glob:*"])
    bundle = tmp_path / "vb"
    assert run_cli("export", "-p", policy, "-o", bundle).exit_code == 0
    half = tmp_path / "half"
    shutil.copytree(bundle, half)
    (half / "bundle.json").unlink()
    result = run_cli("import", half, "-p", policy)
    assert result.exit_code == 2, result.output
    assert f"{half}/bundle.json is missing" in result.output and "HTTP 404" not in result.output
    shutil.rmtree(half)
    shutil.copytree(bundle, half)
    victim = sorted((half / "blobs" / "sha256").iterdir())[0]
    victim.unlink()
    result = run_cli("import", half, "-p", policy)
    assert result.exit_code == 2, result.output
    assert f"blobs/sha256/{victim.name}" in result.output and "missing" in result.output
    assert "HTTP 404" not in result.output


def test_import_needs_none_of_the_source_sides_variables(tmp_path, registry_basic, registry2, unique_repo, oci_dir):
    write_image(oci_dir, "1.0", layer_size=5_000, seed=50)
    seed(registry_basic, unique_repo, "1.0", oci_dir)
    auth = f', auth: {{username: {registry_basic.username}, password: "${{SRC_PASSWORD}}"}}'
    policy = write_policy(tmp_path, registry_basic.url, registry2.url, unique_repo, tags=["1.0"], src_options=auth)
    bundle = tmp_path / "vb"
    exported = run_cli("export", "-p", policy, "-o", bundle, env={"SRC_PASSWORD": registry_basic.password})
    assert exported.exit_code == 0, exported.output
    imported = run_cli("import", bundle, "-p", policy, env={"SRC_PASSWORD": None})
    assert imported.exit_code == 0, imported.output
    # a variable the target side uses is still required
    target_auth = policy.read_text().replace('dst: {url: "', 'dst: {auth: {username: u, password: "${DST_PASSWORD}"}, url: "')
    policy.write_text(target_auth)
    missing = run_cli("import", bundle, "-p", policy, env={"SRC_PASSWORD": None, "DST_PASSWORD": None})
    assert missing.exit_code == 2 and "DST_PASSWORD" in missing.output and "SRC_PASSWORD" not in missing.output


def test_a_platform_filtered_bundle_is_readable_by_skopeo(tmp_path, registry, registry2, unique_repo, oci_dir):
    info = write_image(oci_dir, "1.0", layer_size=5_000, seed=60)
    seed(registry, unique_repo, "1.0", oci_dir)
    policy = write_policy(tmp_path, registry.url, registry2.url, unique_repo, tags=["1.0"],
                          rule_extra="    platforms: [linux/amd64]\n")
    bundle = tmp_path / "vb"
    assert run_cli("export", "-p", policy, "-o", bundle).exit_code == 0
    ref = f"src/{unique_repo}:1.0"
    copied = subprocess.run(["skopeo", "copy", "--all", f"oci:{bundle}:{ref}", f"dir:{tmp_path / 'out'}"],
                            capture_output=True, text=True, timeout=120)
    assert copied.returncode == 0, copied.stderr
    imported = run_cli("import", bundle, "-p", policy)
    assert imported.exit_code == 0, imported.output
    assert digest_of(inspect_raw(registry2, f"{unique_repo}:1.0")) != info.index_digest  # the filtered index


def test_import_reads_none_of_the_sources_settings_images_and_conda(tmp_path, registry, registry2, unique_repo,
                                                                    oci_dir):
    """Issue 21, item 4: on import the bundle stands in for every source registry and channel. Their
    URLs, credentials and CA files come from variables the far side does not have: not required, not
    validated, not read (a CA file named there that does not exist is never opened)."""
    import certifi

    from tests.fixtures.conda import Pkg, make_channel, serve

    info = write_image(oci_dir, "1.0", layer_size=5_000, seed=70)
    seed(registry, unique_repo, "1.0", oci_dir)
    channel = serve(make_channel(tmp_path / "up", [Pkg("lib", "1.0", "0")]))
    policy = tmp_path / "policy.yaml"
    policy.write_text(f"""\
version: 1
registries:
  src: {{url: "${{SRC_URL}}", tls: {{ca_file: "${{SRC_CA}}"}}, auth: {{username: u, password: "${{SRC_PASSWORD}}"}}}}
  dst: {{url: "{registry2.url}"}}
channels:
  up: {{url: "${{CONDA_URL}}"}}
  internal: {{kind: directory, path: {tmp_path / 'mirror'}}}
images:
  - {{from: src/{unique_repo}, to: dst/{unique_repo}, tags: {{include: ["1.0"]}}}}
conda:
  - {{from: up, to: internal, platforms: [linux-64], specs: [lib]}}
audit: {{path: audit.jsonl}}
""")
    source_side = {"SRC_URL": registry.url, "SRC_CA": certifi.where(), "SRC_PASSWORD": "p", "CONDA_URL": channel.url}
    try:
        exported = run_cli("export", "-p", policy, "-o", tmp_path / "vb", env=source_side)
    finally:
        channel.stop()
    assert exported.exit_code == 0, exported.output
    far_side = {name: None for name in source_side}
    imported = run_cli("import", tmp_path / "vb", "-p", policy, env=far_side)
    assert imported.exit_code == 0, imported.output
    assert digest_of(inspect_raw(registry2, f"{unique_repo}:1.0")) == info.index_digest
    assert (tmp_path / "mirror/linux-64/lib-1.0-0.conda").exists()
    missing_ca = run_cli("import", tmp_path / "vb", "-p", policy, env={**far_side, "SRC_CA": str(tmp_path / "nope.pem")})
    assert missing_ca.exit_code == 0, missing_ca.output
    # `policy check` and `sync` still need every variable: only import has the bundle to stand in
    checked = run_cli("policy", "check", "-p", policy, env=far_side)
    assert checked.exit_code == 2 and "SRC_URL" in checked.output, checked.output


def test_export_into_a_folder_of_other_files_or_past_a_file_is_refused_before_the_run(tmp_path):
    """A bundle's blobs and SHA256SUMS are never mixed into a folder of someone's files; -o under a
    file or where no folder can be made is a usage error, not an internal error after resolving."""
    policy = tmp_path / "policy.yaml"
    policy.write_text('version: 1\nregistries:\n  src: {url: "http://127.0.0.1:1"}\n  dst: {url: "http://127.0.0.1:1"}\n'
                      'images:\n  - {from: src/a/b, to: dst/a/b, tags: {include: ["1"]}}\naudit: {path: audit.jsonl}\n')
    foreign = tmp_path / "documents"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    (tmp_path / "afile").write_text("x")
    for out, expected in ((foreign, "is a folder of other files, not a bundle"),
                          (tmp_path / "afile" / "bundle", "afile is a file, not a folder"),
                          ("/proc/regsync-bundle", "cannot create the bundle folder")):
        result = run_cli("export", "-p", policy, "-o", out)
        assert result.exit_code == 2 and expected in " ".join(result.output.split()), result.output
    assert sorted(p.name for p in foreign.iterdir()) == ["notes.txt"]
    assert not (tmp_path / "audit.jsonl").exists()
