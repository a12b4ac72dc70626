"""Package targets other than pypiserver: a real devpi-server, and Nexus pypi-hosted's URL shape
(`/repository/<repo>/`, `#md5=` links) played by nginx in front of pypiserver. Each is proven by
pip itself resolving the closure from the target alone."""

import hashlib
import json

import pytest
import requests

from regsync.errors import VerificationError
from regsync.kinds.package.index import PackageIndex
from regsync.kinds.package.sinks import UploadTarget, _metadata_fields
from tests.fixtures.devpi import start_devpi
from tests.fixtures.nginx import nexus_pypi_front
from tests.fixtures.policies import audit_records, run_cli
from tests.fixtures.pypi import SimpleIndex, build_wheel, start_pypiserver
from tests.test_pypi import pip_download

LINUX = ("3.10", "manylinux_2_28_x86_64")
CLOSURE = ("app", "libcore", "numpyish", "speedy")


@pytest.fixture(scope="module")
def wheels(tmp_path_factory):
    folder = tmp_path_factory.mktemp("wheels")
    return {
        "app": build_wheel(folder, "app", "1.0", requires=("libcore>=1.0",)),
        "libcore": build_wheel(folder, "libcore", "1.1", "cp310-cp310-manylinux_2_17_x86_64", ("numpyish>=1",)),
        "numpyish": build_wheel(folder, "numpyish", "1.0", payload=300_000, requires=("Speedy.Lib>=2",)),
        # a name that is not in normal form: each index lists it under speedy-lib, and must find it there
        "speedy": build_wheel(folder, "Speedy_Lib", "2.0"),
        "winhelper": build_wheel(folder, "winhelper", "1.0"),
        "lonely": build_wheel(folder, "lonely", "1.0"),  # never reaches a target: its uploads are refused
    }


@pytest.fixture(scope="module")
def index(wheels):
    served = SimpleIndex()
    for key, path in wheels.items():
        served.add(path, metadata=key != "numpyish")
    yield served
    served.stop()


@pytest.fixture(scope="module")
def devpi(tmp_path_factory):
    server = start_devpi(tmp_path_factory.mktemp("devpi"))
    yield server
    server.stop()


@pytest.fixture(scope="module")
def nexus(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("nexus-pypi")
    # Nexus pypi-hosted pages carry #md5= fragments only
    backend = start_pypiserver(workdir / "pypiserver", username="nexus-sync", password="nexus-Pa55", hash_algo="md5",
                               base_path="/repository/pypi-internal/")
    front = nexus_pypi_front(workdir / "nginx", backend.url, "pypi-internal")
    front.backend = backend
    yield front
    front.stop()
    backend.stop()


def policy(tmp_path, index, *, kind, url, upload_url, username, requirements, env_var="TARGET_PASSWORD"):
    auth = f', auth: {{username: {username}, password: "${{{env_var}}}"}}' if username else ""
    path = tmp_path / "policy.yaml"
    path.write_text(f"""\
version: 1
indexes:
  mirror: {{url: "{index.url}"}}
  internal: {{url: "{url}", upload_url: "{upload_url}", kind: {kind}{auth}}}
packages:
  - from: mirror
    to: internal
    requirements: {json.dumps(requirements)}
    dependencies: true
    environments: [{{python: "{LINUX[0]}", platform: {LINUX[1]}}}]
audit: {{path: audit.jsonl}}
""")
    return path


def devpi_policy(tmp_path, index, devpi, requirements, username=None):
    return policy(tmp_path, index, kind="devpi", url=devpi.simple, upload_url=devpi.url,
                  username=username or devpi.username, requirements=requirements)


def on_devpi(devpi, project) -> dict[str, str]:  # project: any spelling, the index normalises it
    """What devpi lists for `project`: filename → sha256, from its own simple page."""
    listed = PackageIndex("check", devpi.simple).files(project)
    return {p.filename: p.digests.get("sha256") for p in listed}


def sha256(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_closure_lands_in_devpi_and_pip_installs_from_it(tmp_path, index, devpi, wheels):
    path = devpi_policy(tmp_path, index, devpi, ["app"])

    synced = run_cli("sync", "-p", path, "--summary-json", tmp_path / "summary.json",
                     env={"TARGET_PASSWORD": devpi.password})

    assert synced.exit_code == 0, synced.output
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["bytes"] == sum(wheels[k].stat().st_size for k in CLOSURE), synced.output
    for key in CLOSURE:
        assert on_devpi(devpi, wheels[key].name.split("-")[0]) == {wheels[key].name: sha256(wheels[key])}
    got = pip_download(devpi.simple, tmp_path / "dl", *LINUX, "app")
    assert got.returncode == 0, got.stdout + got.stderr
    assert sorted(p.name for p in (tmp_path / "dl").iterdir()) == sorted(wheels[k].name for k in CLOSURE)
    for key in CLOSURE:
        assert (tmp_path / "dl" / wheels[key].name).read_bytes() == wheels[key].read_bytes()

    again = run_cli("sync", "-p", path, env={"TARGET_PASSWORD": devpi.password})
    assert again.exit_code == 0 and "0 pushed, 4 unchanged" in again.output, again.output


def test_devpi_same_name_other_hash_is_refused_and_left_alone(tmp_path, index, devpi, wheels):
    impostor = build_wheel(tmp_path / "other", "winhelper", "1.0", payload=999)
    target = UploadTarget("internal", PackageIndex("internal", devpi.simple, _credentials(devpi), upload_url=devpi.url),
                          devpi.url)
    target.put(impostor, impostor.name, "sha256:" + sha256(impostor))

    result = run_cli("sync", "-p", devpi_policy(tmp_path, index, devpi, ["winhelper"]),
                     env={"TARGET_PASSWORD": devpi.password})

    assert result.exit_code == 3, result.output
    refused = [r for r in audit_records(tmp_path / "audit.jsonl") if r["event"] == "refused"]
    assert len(refused) == 1 and "never overwritten" in refused[0]["reason"]
    assert on_devpi(devpi, "winhelper") == {impostor.name: sha256(impostor)}
    # and should a plan go stale, devpi's non-volatile index refuses the overwrite itself
    with pytest.raises(VerificationError, match="already has a different file"):
        target.put(wheels["winhelper"], wheels["winhelper"].name, "sha256:" + sha256(wheels["winhelper"]))
    assert on_devpi(devpi, "winhelper") == {impostor.name: sha256(impostor)}


@pytest.mark.parametrize("password", [None, "not-the-Pa55word"])
def test_devpi_upload_without_valid_credentials_is_a_clear_error(tmp_path, index, devpi, password):
    if password is None:
        path = policy(tmp_path, index, kind="devpi", url=devpi.simple, upload_url=devpi.url, username=None,
                      requirements=["lonely"])
        env = {}
    else:
        path, env = devpi_policy(tmp_path, index, devpi, ["lonely"]), {"TARGET_PASSWORD": password}

    result = run_cli("sync", "-p", path, env=env)

    assert result.exit_code == 1, result.output
    assert "401" in result.output and "credentials" in result.output, result.output
    assert (password or devpi.password) not in result.output
    assert password is None or password not in (tmp_path / "audit.jsonl").read_text()
    assert on_devpi(devpi, "lonely") == {}


def _credentials(server):
    from regsync.kinds.image.auth import Credentials

    return Credentials(server.username, server.password)


def test_nexus_pypi_hosted_round_trip_through_its_url_shape(tmp_path, index, nexus, wheels):
    repo = f"{nexus.url}/repository/pypi-internal/"
    path = policy(tmp_path, index, kind="nexus", url=repo + "simple/", upload_url=repo, username=nexus.backend.username,
                  requirements=["app"])
    page = requests.get(repo + "simple/", timeout=10)
    assert page.status_code == 200

    synced = run_cli("sync", "-p", path, env={"TARGET_PASSWORD": nexus.backend.password})

    assert synced.exit_code == 0, synced.output
    packages = nexus.backend.root / "packages"
    assert sorted(p.name for p in packages.iterdir()) == sorted(wheels[k].name for k in CLOSURE)
    uploads = [r for r in nexus.requests() if r["method"] == "POST"]
    assert len(uploads) == 4 and all(r["uri"] == "/repository/pypi-internal/" and r["status"] == 200 for r in uploads)
    listing = requests.get(repo + "simple/libcore/", timeout=10).text
    assert "#md5=" in listing and "sha256" not in listing  # the shape regsync has to cope with
    assert 'href="/repository/pypi-internal/packages/' in listing  # files linked inside the repository
    got = pip_download(repo + "simple/", tmp_path / "dl", *LINUX, "app")
    assert got.returncode == 0, got.stdout + got.stderr

    # an md5-only listing: regsync reads the present files back to compare sha256, then skips them
    again = run_cli("sync", "-p", path, env={"TARGET_PASSWORD": nexus.backend.password})
    assert again.exit_code == 0 and "0 pushed, 4 unchanged" in again.output, again.output
    seen = [r for r in nexus.requests() if r["uri"] != "/"]  # "/": the fixture's start-up probe
    assert all(r["uri"].startswith("/repository/pypi-internal/") for r in seen), seen
    # the first sync met pypiserver's redirect of what it lacked to pypi.org, through the front, and stayed here
    assert any(r["status"] == 303 and r["uri"].endswith("/simple/app/") for r in seen), seen


def test_nexus_md5_listing_still_refuses_an_impostor(tmp_path, index, nexus, wheels):
    impostor = build_wheel(tmp_path / "other", "winhelper", "1.0", payload=777)
    (nexus.backend.root / "packages" / impostor.name).write_bytes(impostor.read_bytes())
    repo = f"{nexus.url}/repository/pypi-internal/"
    path = policy(tmp_path, index, kind="nexus", url=repo + "simple/", upload_url=repo, username=nexus.backend.username,
                  requirements=["winhelper"])

    result = run_cli("sync", "-p", path, env={"TARGET_PASSWORD": nexus.backend.password})

    assert result.exit_code == 3, result.output
    refused = [r for r in audit_records(tmp_path / "audit.jsonl") if r["event"] == "refused"]
    assert len(refused) == 1 and "never overwritten" in refused[0]["reason"]
    assert (nexus.backend.root / "packages" / impostor.name).read_bytes() == impostor.read_bytes()


def test_upload_form_carries_what_nexus_needs(wheels):
    fields = _metadata_fields(wheels["libcore"], wheels["libcore"].name)
    assert fields["name"] == "libcore" and fields["version"] == "1.1"
    assert fields["md5_digest"] == hashlib.md5(wheels["libcore"].read_bytes(), usedforsecurity=False).hexdigest()
    assert fields["filetype"] == "bdist_wheel" and fields["pyversion"] == "cp310"
    assert fields["metadata_version"] == "2.1" and fields["summary"] == "test package libcore"
