"""An sdist whose name lies: `app-1.0.tar.gz` whose `PKG-INFO` says another project. The index's
sha256 is right (it serves exactly these bytes), so only reading the sdist tells. Each is refused
(exit 3, audited) before it reaches a real pypiserver or a bundle, as a lying wheel is
(test_pypi_wheel_identity.py); pip would build it and refuse the result on the client.

The sdists are real: setuptools builds them here through its PEP 517 hook (`build_sdist`, what
`python -m build --sdist` calls) from a tiny project; the hostile ones are those same archives with
one thing changed (a file renamed, a top directory renamed, PKG-INFO grown)."""

import gzip
import io
import subprocess
import sys
import tarfile
import zipfile

import pytest

from tests.fixtures.policies import audit_records, package_policy, run_cli
from tests.fixtures.pypi import SimpleIndex

SDISTS = "    sdists: true\n"


def setuptools_sdist(folder, name: str, version: str):
    """The sdist setuptools builds for a one-module project `name` `version`."""
    project = folder / f"{name}-src"
    (project / name).mkdir(parents=True)
    (project / name / "__init__.py").write_text(f"VERSION = {version!r}\n")
    (project / "pyproject.toml").write_text(f'[build-system]\nrequires = ["setuptools"]\nbuild-backend = '
                                            f'"setuptools.build_meta"\n[project]\nname = "{name}"\nversion = "{version}"\n')
    built = subprocess.run([sys.executable, "-c", "import setuptools.build_meta as b; print(b.build_sdist('dist'))"],
                           cwd=project, capture_output=True, text=True, timeout=120, check=True)
    return project / "dist" / built.stdout.strip().splitlines()[-1]


def members(sdist):
    with tarfile.open(sdist, "r:gz") as tar:
        return [(m, tar.extractfile(m).read() if m.isfile() else None) for m in tar.getmembers()]


def repack(sdist, path, rename_top: str | None = None, pkg_info: bytes | None = None, as_zip: bool = False):
    """`sdist`'s members into `path`: the top directory renamed, PKG-INFO replaced, or as a .zip."""
    with (zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) if as_zip else tarfile.open(path, "w:gz")) as out:
        for member, data in members(sdist):
            top, _, rest = member.name.partition("/")
            member.name = f"{rename_top or top}/{rest}" if rest else (rename_top or top)
            if pkg_info is not None and rest == "PKG-INFO":
                data = pkg_info
            if as_zip:
                if data is not None:
                    out.writestr(member.name, data)
                continue
            if data is not None:
                member.size = len(data)
            out.addfile(member, io.BytesIO(data) if data is not None else None)
    return path


def sync(tmp_path, pypiserver, sdist, extra_files=()):
    index = SimpleIndex()
    try:
        index.add(sdist, project="app")
        for path in extra_files:
            index.add(path)
        policy = package_policy(tmp_path, index, pypiserver, ["app==1.0"], rule_extra=SDISTS)
        return run_cli("sync", "-p", policy, env={"PYPI_PASSWORD": "pkg-Pa55"})
    finally:
        index.stop()


@pytest.mark.parametrize("as_zip", [False, True], ids=["tar.gz", "zip"])
def test_an_honest_sdist_is_pushed(tmp_path, pypiserver, as_zip):
    built = setuptools_sdist(tmp_path / "build", "app", "1.0")
    sdist = repack(built, tmp_path / "app-1.0.zip", as_zip=True) if as_zip else built
    result = sync(tmp_path, pypiserver, sdist)
    assert result.exit_code == 0, result.output
    assert [p.name for p in (pypiserver.root / "packages").iterdir()] == [sdist.name]
    assert (pypiserver.root / "packages" / sdist.name).read_bytes() == sdist.read_bytes()


def another_project(tmp_path):
    return setuptools_sdist(tmp_path / "evil", "evil", "6.6.6")


CASES = {
    # how the hostile app-1.0 sdist is made from setuptools' own sdists, and what the refusal names
    "renamed file": (lambda tmp, out: _renamed(another_project(tmp), out),
                     "its top directory evil-6.6.6/ says evil 6.6.6, its file name app 1.0"),
    "PKG-INFO of another project": (lambda tmp, out: repack(another_project(tmp), out, rename_top="app-1.0"),
                                    "its app-1.0/PKG-INFO says evil 6.6.6, its file name app 1.0"),
    "a second PKG-INFO": (lambda tmp, out: _two_pkg_infos(tmp, out), "app-1.0/PKG-INFO is in it twice"),
    "an absurd PKG-INFO": (lambda tmp, out: repack(setuptools_sdist(tmp / "build", "app", "1.0"), out,
                                                   pkg_info=b"Metadata-Version: 2.1\nName: app\nVersion: 1.0\n"
                                                            b"Description: " + b"\0" * (17 << 20)),
                           "PKG-INFO (17825850 bytes) is larger than 16777216 bytes"),
}


def _renamed(sdist, out):
    out.write_bytes(sdist.read_bytes())
    return out


def _two_pkg_infos(tmp_path, out):
    """tar may name a member twice, and unpacking keeps the last: a second app-1.0/PKG-INFO, evil's."""
    repack(setuptools_sdist(tmp_path / "build", "app", "1.0"), out)
    evil = dict((m.name, d) for m, d in members(another_project(tmp_path)))["evil-6.6.6/PKG-INFO"]
    raw = gzip.decompress(out.read_bytes())
    with tarfile.open(fileobj=io.BytesIO(raw)) as tar:
        kept = [(m, tar.extractfile(m).read() if m.isfile() else None) for m in tar.getmembers()]
    with tarfile.open(out, "w:gz") as tar:
        for member, data in kept:
            tar.addfile(member, io.BytesIO(data) if data is not None else None)
        info = tarfile.TarInfo("app-1.0/PKG-INFO")
        info.size = len(evil)
        tar.addfile(info, io.BytesIO(evil))
    return out


@pytest.mark.parametrize("case", CASES)
def test_an_sdist_whose_name_lies_is_refused_before_it_is_pushed(tmp_path, pypiserver, case):
    make, named = CASES[case]
    sdist = make(tmp_path, tmp_path / "app-1.0.tar.gz")
    assert sdist.stat().st_size < 1 << 20    # what travels is small; the absurd PKG-INFO inflates to 17 MiB
    result = sync(tmp_path, pypiserver, sdist)
    assert result.exit_code == 3, result.output
    assert list((pypiserver.root / "packages").iterdir()) == []
    records = audit_records(tmp_path / "audit.jsonl")
    assert [r for r in records if r["event"] == "pushed"] == []
    [refused] = [r["reason"] for r in records if r["event"] == "refused"]
    assert named in refused, refused


def test_an_sdist_whose_name_lies_is_not_exported(tmp_path, pypiserver):
    sdist = repack(another_project(tmp_path), tmp_path / "app-1.0.tar.gz", rename_top="app-1.0")
    index = SimpleIndex()
    try:
        index.add(sdist, project="app")
        policy = package_policy(tmp_path, index, pypiserver, ["app==1.0"], rule_extra=SDISTS)
        result = run_cli("export", "-p", policy, "-o", tmp_path / "bundle", env={"PYPI_PASSWORD": "pkg-Pa55"})
    finally:
        index.stop()
    assert result.exit_code == 3, result.output
    assert "its app-1.0/PKG-INFO says evil 6.6.6" in result.output
    blobs = tmp_path / "bundle" / "blobs" / "sha256"
    assert not blobs.exists() or [p for p in blobs.iterdir() if p.stat().st_size == sdist.stat().st_size] == []


@pytest.mark.parametrize("limit, value, named", [
    ("MAX_MEMBERS", 4, "more than 4 members"),
    ("MAX_INFLATED_BYTES", 64 << 10, "inflates to more than 65536 bytes"),
])
def test_an_sdist_is_read_bounded(tmp_path, pypiserver, monkeypatch, limit, value, named):
    """Lowered here so the test stays small: setuptools' sdist of a one-module project has 10
    members and inflates to about 80 KiB once a 64 KiB data file is in it."""
    monkeypatch.setattr(f"regsync.kinds.package.sdist.{limit}", value)
    build = tmp_path / "build"
    built = setuptools_sdist(build, "app", "1.0")
    assert len(members(built)) > 4
    with tarfile.open(tmp_path / "app-1.0.tar.gz", "w:gz") as tar:   # the same, with 64 KiB of zeros more
        for member, data in members(built):
            tar.addfile(member, io.BytesIO(data) if data is not None else None)
        info = tarfile.TarInfo("app-1.0/app/data.bin")
        info.size = 64 << 10
        tar.addfile(info, io.BytesIO(b"\0" * info.size))
    result = sync(tmp_path, pypiserver, tmp_path / "app-1.0.tar.gz")
    assert result.exit_code == 3, result.output
    assert list((pypiserver.root / "packages").iterdir()) == []
    [refused] = [r["reason"] for r in audit_records(tmp_path / "audit.jsonl") if r["event"] == "refused"]
    assert named in refused, refused
