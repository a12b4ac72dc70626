"""PyPI replication end to end: a loopback PEP 503 index → real pypiserver (htpasswd uploads),
completeness proven by pip itself resolving from the target only."""

import json
import os
import subprocess
import sys

import pytest
import requests

from tests.fixtures.policies import audit_records, run_cli
from tests.fixtures.pypi import SimpleIndex, build_sdist, build_wheel

ENVS = [("3.10", "manylinux_2_28_x86_64"), ("3.12", "win_amd64")]


@pytest.fixture(scope="module")
def wheels(tmp_path_factory):
    folder = tmp_path_factory.mktemp("wheels")
    built = {
        "app": build_wheel(folder, "app", "1.0", requires=(
            "libcore>=1.0", 'winhelper; sys_platform == "win32"', 'speedups; extra == "fast"')),
        "app3": build_wheel(folder, "app", "3.0", requires_python=">=3.13"),
        "libcore-linux": build_wheel(folder, "libcore", "1.1", "cp310-cp310-manylinux_2_17_x86_64", ("numpyish>=1",)),
        "libcore-win": build_wheel(folder, "libcore", "1.1", "cp312-cp312-win_amd64", ("numpyish>=1",)),
        "libcore-sdist": build_sdist(folder, "libcore", "1.1"),
        "libcore-yanked": build_wheel(folder, "libcore", "1.2"),
        "numpyish": build_wheel(folder, "numpyish", "1.0", payload=300_000),
        "winhelper": build_wheel(folder, "winhelper", "1.0"),
        "speedups": build_wheel(folder, "speedups", "1.0", "cp310-cp310-manylinux_2_28_x86_64"),
        "speedups-too-new": build_wheel(folder, "speedups", "1.0", "cp310-cp310-manylinux_2_31_x86_64"),
    }
    return built


@pytest.fixture
def index(wheels):
    served = SimpleIndex()
    for key, path in wheels.items():
        served.add(path, yanked=key == "libcore-yanked", requires_python=">=3.13" if key == "app3" else None,
                   metadata=key != "numpyish")  # numpyish: no PEP 658 file, metadata read from the wheel
    yield served
    served.stop()


def policy(tmp_path, index, target, requirements, dependencies=True, envs=ENVS, extra=""):
    env_yaml = ", ".join(f'{{python: "{py}", platform: {plat}}}' for py, plat in envs)
    if target == "directory":
        target_yaml = f"{{kind: directory, path: {tmp_path / 'tree'}}}"
    else:
        target_yaml = (f'{{url: "{target.simple}", upload_url: "{target.url}", kind: pypiserver, '
                       f'auth: {{username: {target.username}, password: "${{PYPI_PASSWORD}}"}}}}')
    path = tmp_path / "policy.yaml"
    path.write_text(f"""\
version: 1
indexes:
  mirror: {{url: "{index.url}"}}
  internal: {target_yaml}
packages:
  - from: mirror
    to: internal
    requirements: {requirements}
    dependencies: {str(dependencies).lower()}
    environments: [{env_yaml}]
{extra}audit: {{path: audit.jsonl}}
""")
    return path


def regsync(*args, password="pkg-Pa55"):
    return run_cli(*args, env={"PYPI_PASSWORD": password})


def pip_download(index_url, dest, python, platform, requirement):
    """pip resolving from `index_url` alone, as a machine with that interpreter and platform would."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_")}
    env.update(PIP_CONFIG_FILE="/dev/null", PIP_NO_INPUT="1")
    # pip takes --platform literally; a glibc 2.28 machine also accepts older manylinux wheels.
    platforms = [platform] + (["manylinux_2_17_x86_64", "manylinux2014_x86_64"] if "manylinux" in platform else [])
    return subprocess.run([sys.executable, "-m", "pip", "download", "--no-cache-dir", "--disable-pip-version-check",
                           "--index-url", index_url, "--only-binary=:all:", "--python-version", python,
                           *[f"--platform={p}" for p in platforms], "-d", str(dest), requirement],
                          capture_output=True, text=True, timeout=180, env=env)


def test_closure_for_two_environments_lands_complete_in_pypiserver(tmp_path, index, pypiserver, wheels):
    # the extra only where its wheel exists: root requirements carry markers like any other
    requirements = json.dumps(['app[fast]; sys_platform == "linux"', 'app; sys_platform == "win32"'])
    path = policy(tmp_path, index, pypiserver, requirements)
    mark = len(index.requests)
    planned = regsync("plan", "-p", path, "--json")
    assert planned.exit_code == 0, planned.output
    # plan reads pages and PEP 658 metadata, and the one wheel without it; never the others
    fetched = {p for p, _ in index.requests[mark:] if p.startswith("/files/") and not p.endswith(".metadata")}
    assert fetched == {f"/files/{wheels['numpyish'].name}"}

    sizes = {i["source"].split("/", 1)[1]: i["bytes"] for i in json.loads(planned.stdout)["items"]}
    assert sizes[wheels["numpyish"].name] == wheels["numpyish"].stat().st_size  # read at plan time: its size is known
    on_disk = {path.name: path.stat().st_size for path in wheels.values()}
    assert sizes == {name: on_disk[name] for name in sizes}  # the others: a HEAD each (the page gives no size)
    assert len(index.heads) == len(sizes) - 1

    mark = len(index.requests)
    synced = regsync("sync", "-p", path)
    assert synced.exit_code == 0, synced.output
    # the one wheel planning must download (no PEP 658 file) crosses the network once per run
    downloads = [p for p, _ in index.requests[mark:] if p.startswith("/files/") and not p.endswith(".metadata")]
    assert sorted(downloads) == sorted(set(downloads)), downloads
    on_target = {p.name for p in (pypiserver.root / "packages").iterdir()}
    assert on_target == {wheels[k].name for k in ("app", "libcore-linux", "libcore-win", "numpyish", "winhelper",
                                                  "speedups")}
    for python, platform in ENVS:  # pip itself, from the target alone, for each environment
        result = pip_download(pypiserver.simple, tmp_path / f"dl-{platform}", python, platform, "app[fast]"
                              if platform.startswith("many") else "app")
        assert result.returncode == 0, result.stdout + result.stderr

    again = regsync("sync", "-p", path)
    assert again.exit_code == 0 and "0 pushed, 6 unchanged" in again.output
    pushed = [r for r in audit_records(tmp_path / "audit.jsonl") if r["event"] == "pushed"]
    assert {r["artifact"]["kind"] for r in pushed} == {"package"} and len(pushed) == 6


def test_a_project_pypiserver_sends_to_pypi_org_is_not_on_the_target_and_v_says_why(tmp_path, index, pypiserver,
                                                                                    wheels):
    # pypiserver as users run it: what it lacks is a redirect to the public PyPI, not a 404
    answer = requests.get(pypiserver.simple + "winhelper/", allow_redirects=False, timeout=10)
    assert (answer.status_code, answer.headers["Location"]) == (303, "https://pypi.org/simple/winhelper/")

    result = run_cli("-v", "sync", "-p", policy(tmp_path, index, pypiserver, '["winhelper"]', dependencies=False,
                                                envs=ENVS[:1]), env={"PYPI_PASSWORD": "pkg-Pa55"})

    # no network here: the run succeeding is the proof nothing followed the redirect off loopback
    assert result.exit_code == 0, result.output
    assert "internal: winhelper redirects to https://pypi.org/simple/winhelper/: not on this target" in result.output
    assert {p.name for p in (pypiserver.root / "packages").iterdir()} == {wheels["winhelper"].name}


def test_yanked_skipped_unless_pinned_and_requires_python_respected(tmp_path, index, pypiserver, wheels):
    plan = regsync("plan", "-p", policy(tmp_path, index, pypiserver, '["libcore", "app"]', dependencies=False,
                                        envs=[("3.10", "manylinux_2_28_x86_64")]), "--json")
    files = {i["source"].split("/", 1)[1] for i in json.loads(plan.output)["items"]}
    assert files == {wheels["libcore-linux"].name, wheels["app"].name}  # not 1.2 (yanked), not app 3.0 (py>=3.13)
    pinned = regsync("plan", "-p", policy(tmp_path, index, pypiserver, '["libcore==1.2"]', dependencies=False,
                                          envs=[("3.10", "manylinux_2_28_x86_64")]), "--json")
    assert wheels["libcore-yanked"].name in pinned.output


def test_corrupted_file_is_refused_and_never_uploaded(tmp_path, index, pypiserver, wheels):
    index.projects["winhelper"][0].advertised_sha256 = "0" * 64  # the index keeps the old hash; the file changed
    result = regsync("sync", "-p", policy(tmp_path, index, pypiserver, '["winhelper"]', dependencies=False))
    assert result.exit_code == 3, result.output
    refused = [r for r in audit_records(tmp_path / "audit.jsonl") if r["event"] == "refused"]
    assert refused and "digest mismatch" in refused[0]["reason"]
    assert not any((pypiserver.root / "packages").iterdir())


def test_a_file_corrupted_where_plan_reads_its_metadata_is_refused_and_resolution_goes_on(tmp_path, pypiserver):
    """No PEP 658 file: plan downloads the wheel for its metadata, finds the hash wrong, refuses that
    file (exit 3, audited) and resolves with the next version, as apply-time refusals do."""
    folder = tmp_path / "wheels"
    good, bad = build_wheel(folder, "tool", "1.0"), build_wheel(folder, "tool", "2.0")
    served = SimpleIndex()
    try:
        served.add(good, metadata=False)
        served.add(bad, metadata=False)
        served.projects["tool"][-1].advertised_sha256 = "0" * 64
        path = policy(tmp_path, served, pypiserver, '["tool"]', envs=ENVS[:1])
        planned = regsync("plan", "-p", path, "--json")
        actions = {item["source"].rsplit("/", 1)[1]: item["action"] for item in json.loads(planned.output)["items"]}
        assert actions == {bad.name: "refuse", good.name: "copy"}, planned.output
        result = regsync("sync", "-p", path)
    finally:
        served.stop()
    assert result.exit_code == 3, result.output
    refused = [r for r in audit_records(tmp_path / "audit.jsonl") if r["event"] == "refused"]
    assert len(refused) == 1 and "digest mismatch" in refused[0]["reason"], refused
    assert sorted(p.name for p in (pypiserver.root / "packages").iterdir()) == [good.name]


def test_download_resumes_with_range_after_the_connection_drops(tmp_path, index, pypiserver, wheels):
    name = wheels["numpyish"].name
    index.cut_after[name] = 100_000
    result = regsync("sync", "-p", policy(tmp_path, index, pypiserver, '["numpyish"]', dependencies=False))
    assert result.exit_code == 0, result.output
    ranges = [r for p, r in index.requests if p == f"/files/{name}" and r]
    assert ranges == ["bytes=100000-"]
    assert (pypiserver.root / "packages" / name).read_bytes() == wheels["numpyish"].read_bytes()


def test_same_name_with_another_hash_on_the_target_is_refused(tmp_path, index, pypiserver, wheels):
    impostor = build_wheel(tmp_path / "other", "winhelper", "1.0", payload=999)
    (pypiserver.root / "packages" / impostor.name).write_bytes(impostor.read_bytes())
    result = regsync("sync", "-p", policy(tmp_path, index, pypiserver, '["winhelper"]', dependencies=False))
    assert result.exit_code == 3, result.output
    assert "never overwritten" in result.output or "never overwritten" in (tmp_path / "audit.jsonl").read_text()
    assert (pypiserver.root / "packages" / impostor.name).read_bytes() == impostor.read_bytes()


def test_conflict_names_the_chain(tmp_path, index, pypiserver):
    result = regsync("plan", "-p", policy(tmp_path, index, pypiserver, '["app", "libcore<1.0"]'))
    assert result.exit_code == 1 and "cannot resolve" in result.output and "libcore" in result.output


def test_directory_target_is_a_static_index_pip_can_use(tmp_path, index, wheels):
    path = policy(tmp_path, index, "directory", '["app"]', envs=[("3.10", "manylinux_2_28_x86_64")])
    result = regsync("sync", "-p", path)
    assert result.exit_code == 0, result.output
    tree = tmp_path / "tree"
    assert (tree / "simple" / "app" / "index.html").exists() and (tree / "simple" / "app" / "index.json").exists()
    server = subprocess.Popen([sys.executable, "-m", "http.server", "--bind", "127.0.0.1", "0", "-d", str(tree)],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        port = int(server.stdout.readline().split("port ")[1].split(" ")[0])
        got = pip_download(f"http://127.0.0.1:{port}/simple/", tmp_path / "dl", "3.10", "manylinux_2_28_x86_64", "app")
        assert got.returncode == 0, got.stdout + got.stderr
    finally:
        server.terminate()
        server.wait(timeout=10)


def test_pip_config_points_at_the_target_with_its_ca(tmp_path, index, pypiserver):
    path = policy(tmp_path, index, pypiserver, '["app"]')
    path.write_text(path.read_text().replace("kind: pypiserver,", f"kind: pypiserver, tls: {{ca_file: {tmp_path}/ca.pem}},"))
    result = regsync("pip-config", "-p", path)
    assert result.exit_code == 0, result.output
    assert f"index-url = {pypiserver.simple}" in result.output and f"cert = {tmp_path}/ca.pem" in result.output
    assert "trusted-host" not in result.output and "pkg-Pa55" not in result.output
    assert "keyring" in result.output  # the index needs credentials: say how, without printing them


def test_shards_split_package_files_disjointly(tmp_path, index):
    from regsync.endpoints import Endpoints
    from regsync.kinds.registry import KINDS
    from tests.fixtures.policies import load_policy
    from regsync.pipeline.make import make_plan
    from regsync.pipeline.shard import Shard

    loaded = load_policy(policy(tmp_path, index, "directory", '["app"]'))

    def planned(shard=None):
        return {item.target for item in make_plan(loaded, Endpoints(loaded), KINDS, shard=shard).items}

    whole, first, second = planned(), planned(Shard(0, 2)), planned(Shard(1, 2))
    assert len(whole) >= 4 and first | second == whole and not first & second


def test_sdists_whose_names_hold_dashes_or_legacy_spellings_sync(tmp_path, pypiserver):
    """`python-dateutil-2.8.2.tar.gz` was looked up as project `python` ("no longer on the source
    index"): the project comes from the index page, carried in the plan item."""
    folder = tmp_path / "sdists"
    files = {"python-dateutil": build_sdist(folder, "python-dateutil", "2.8.2", dist="python-dateutil"),
             "zope.interface": build_sdist(folder, "zope.interface", "5.0", dist="zope.interface"),
             "PyYAML": build_sdist(folder, "PyYAML", "6.0", dist="PyYAML")}
    served = SimpleIndex()
    for project, path in files.items():
        served.add(path, project=project)
    try:
        requirements = json.dumps(["python-dateutil==2.8.2", "zope-interface==5.0", "pyyaml==6.0"])
        path = policy(tmp_path, served, pypiserver, requirements, dependencies=False, envs=ENVS[:1],
                      extra="    sdists: true\n")
        synced = regsync("sync", "-p", path)
        assert synced.exit_code == 0, synced.output
        planned = json.loads(regsync("plan", "-p", path, "--json").stdout)
        assert {i.get("project") for i in planned["items"]} == {"python-dateutil", "zope-interface", "pyyaml"}
        assert {p.name for p in (pypiserver.root / "packages").iterdir()} >= {f.name for f in files.values()}
        again = regsync("sync", "-p", path)
        assert again.exit_code == 0 and "0 pushed, 3 unchanged" in again.output, again.output
    finally:
        served.stop()


def test_a_requirement_every_candidate_of_which_was_refused_is_a_refusal_not_a_failure(tmp_path, pypiserver):
    """Tampered bytes that leave nothing to resolve with are a security refusal (exit 3) naming the
    refused files, not a runtime failure; a network failure stays exit 1."""
    folder = tmp_path / "wheels"
    only = build_wheel(folder, "tool", "2.0")
    served = SimpleIndex()
    try:
        served.add(only, metadata=False)
        served.projects["tool"][-1].advertised_sha256 = "0" * 64
        path = policy(tmp_path, served, pypiserver, '["tool"]', envs=ENVS[:1])
        result = regsync("sync", "-p", path)
        assert result.exit_code == 3, result.output
        refused = [r for r in audit_records(tmp_path / "audit.jsonl") if r["event"] == "refused"]
        assert any(only.name in r["reason"] and "refused by verification" in r["reason"] for r in refused), refused
        assert not [r for r in audit_records(tmp_path / "audit.jsonl") if r["event"] == "failed"]
        served.fail_with = 503
        down = regsync("sync", "-p", path)
        assert down.exit_code == 1, down.output
    finally:
        served.stop()
    assert list((pypiserver.root / "packages").iterdir()) == []
