"""Directory targets served by a web server running as another user (issue 20 item 2, issue 21 item 5).

Every static channel and package tree is served that way: Debian's nginx runs its workers as
`www-data`. Bytes wait in the private state dir (0600) while they download and resume; what lands
in the served tree must have the mode of a published file (0666 less the umask: 0644 under the
usual 022), while the state dir stays the user's own (0700). Here nginx really serves the tree as
www-data (the suite runs as root in CI); a package client then installs from it."""

from __future__ import annotations

import os
import shutil
import stat
import tempfile
from pathlib import Path

import pytest
import requests

from tests.fixtures.conda import Pkg, make_channel, serve
from tests.fixtures.nginx import static_front
from tests.fixtures.policies import run_cli
from tests.fixtures.pypi import SimpleIndex, build_wheel

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="nginx switches its workers to www-data only as root")


@pytest.fixture
def public_dir():
    """A directory others may enter (pytest's tmp dirs are 0700), removed afterwards."""
    path = Path(tempfile.mkdtemp(prefix="regsync-served-"))
    os.chmod(path, 0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def umask() -> int:
    current = os.umask(0o022)
    os.umask(current)
    return current


def published_files(root: Path, suffixes: tuple[str, ...]) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file() and p.name.endswith(suffixes))


def test_conda_packages_are_served_by_nginx_as_www_data(tmp_path, public_dir):
    import asyncio

    import rattler

    channel = make_channel(tmp_path / "up", [Pkg("tool", "1.0", "0", depends=("lib",)), Pkg("lib", "1.0", "0"),
                                             Pkg("helper", "1.0", "0", subdir="noarch")])
    upstream = serve(channel)
    mirror, state = public_dir / "channel", tmp_path / "state"
    try:
        path = tmp_path / "policy.yaml"
        path.write_text(f"""\
version: 1
channels:
  up: {{url: "{upstream.url}"}}
  internal: {{kind: directory, path: {mirror}}}
conda:
  - {{from: up, to: internal, platforms: [linux-64], specs: [tool, helper], dependencies: true}}
audit: {{path: audit.jsonl}}
""")
        synced = run_cli("sync", "-p", path, env={"REGSYNC_STATE_DIR": str(state)})
    finally:
        upstream.stop()
    assert synced.exit_code == 0, synced.output
    packages = published_files(mirror, (".conda",))
    assert sorted(p.name for p in packages) == ["helper-1.0-0.conda", "lib-1.0-0.conda", "tool-1.0-0.conda"]
    expected = 0o666 & ~umask()
    assert {p.name: oct(stat.S_IMODE(p.stat().st_mode)) for p in packages} == {p.name: oct(expected) for p in packages}
    assert stat.S_IMODE((state / "downloads").stat().st_mode) == 0o700  # the state dir stays private

    web = static_front(tmp_path / "nginx", mirror, user="www-data")
    try:
        for package in packages:
            answer = requests.get(f"{web.url}/{package.relative_to(mirror)}", timeout=10)
            assert answer.status_code == 200 and answer.content == package.read_bytes(), package.name

        async def install():
            records = await rattler.solve([rattler.Channel(web.url + "/")], ["tool", "helper"],
                                          platforms=["linux-64", "noarch"],
                                          gateway=rattler.Gateway(cache_dir=str(tmp_path / "repodata-cache")))
            await rattler.install(records, target_prefix=str(tmp_path / "env"), cache_dir=str(tmp_path / "pkgs"),
                                  platform=rattler.Subdir("linux-64"), show_progress=False)
            return sorted(r.name.normalized for r in records)

        assert asyncio.run(install()) == ["helper", "lib", "tool"]
    finally:
        web.stop()
    assert (tmp_path / "env/share/regsync-test/tool.txt").read_text() == "tool 1.0 0\n"


def test_wheels_in_a_directory_tree_are_served_by_nginx_as_www_data(tmp_path, public_dir):
    import subprocess
    import sys

    wheel = build_wheel(tmp_path / "wheels", "app", "1.0", payload=50_000)
    index = SimpleIndex()
    index.add(wheel)
    tree, state = public_dir / "tree", tmp_path / "state"
    try:
        path = tmp_path / "policy.yaml"
        path.write_text(f"""\
version: 1
indexes:
  mirror: {{url: "{index.url}"}}
  internal: {{kind: directory, path: {tree}}}
packages:
  - {{from: mirror, to: internal, requirements: [app], dependencies: false}}
audit: {{path: audit.jsonl}}
""")
        synced = run_cli("sync", "-p", path, env={"REGSYNC_STATE_DIR": str(state)})
    finally:
        index.stop()
    assert synced.exit_code == 0, synced.output
    [placed] = published_files(tree, (".whl",))
    assert stat.S_IMODE(placed.stat().st_mode) == 0o666 & ~umask()
    assert stat.S_IMODE((state / "downloads").stat().st_mode) == 0o700

    web = static_front(tmp_path / "nginx", tree, user="www-data")
    try:
        answer = requests.get(f"{web.url}/{placed.relative_to(tree)}", timeout=10)
        assert answer.status_code == 200 and answer.content == placed.read_bytes()
        env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_")}
        env.update(PIP_CONFIG_FILE="/dev/null", PIP_NO_INPUT="1")
        pip = subprocess.run([sys.executable, "-m", "pip", "download", "--no-cache-dir", "--disable-pip-version-check",
                              "--index-url", f"{web.url}/simple/", "--no-deps", "-d", str(tmp_path / "got"), "app"],
                             capture_output=True, text=True, timeout=120, env=env)
        assert pip.returncode == 0, pip.stdout + pip.stderr
    finally:
        web.stop()
    assert (tmp_path / "got" / wheel.name).read_bytes() == wheel.read_bytes()
