"""The resolver's look-ahead: pages and PEP 658 metadata of known dependencies are fetched in
parallel while resolvelib works, each once, never a whole wheel on a guess, and the closure is
exactly what a one-at-a-time resolution gives."""

import email.message
import threading
import time

import pytest
from packaging.requirements import Requirement
from pypi_simple import DistributionPackage

from regsync.errors import RegistryError
from regsync.kinds.package.environment import TargetEnvironment
from regsync.kinds.package.resolver import Options, resolve

ENV = TargetEnvironment("3.11", "manylinux_2_28_x86_64")
TREE = {  # project -> {version: requires}; pkg0 fans out to six, two of which share a leaf
    "pkg0": {"1.0": ["pkg1", "pkg2", "pkg3", "pkg4", "pkg5", "pkg6"]},
    "pkg1": {"1.0": ["leaf"]}, "pkg2": {"1.0": ["leaf>=2"]},
    "pkg3": {"1.0": []}, "pkg4": {"1.0": []}, "pkg5": {"1.0": []}, "pkg6": {"2.0": [], "1.0": ["never"]},
    "leaf": {"2.0": [], "1.0": []},
}


class SlowIndex:
    """An index whose every page and metadata answer takes `delay` seconds; it counts calls and
    the most requests it had in flight at once."""

    def __init__(self, tree, delay=0.05, no_metadata=(), broken=()):
        self.tree, self.delay, self.no_metadata, self.broken = tree, delay, set(no_metadata), set(broken)
        self.pages, self.metadata_reads = [], []
        self.in_flight = self.peak = 0
        self._lock = threading.Lock()

    def _wait(self):
        with self._lock:
            self.in_flight += 1
            self.peak = max(self.peak, self.in_flight)
        time.sleep(self.delay)
        with self._lock:
            self.in_flight -= 1

    def files(self, project):
        self.pages.append(project)
        self._wait()
        if project in self.broken:
            raise RegistryError(f"slow/{project}", 503, "index error")
        return [DistributionPackage(filename=f"{project}-{v}-py3-none-any.whl", url=f"http://x/{project}-{v}.whl",
                                    project=project, version=v, package_type="wheel", digests={"sha256": "0" * 64},
                                    requires_python=None, has_sig=None, has_metadata=project not in self.no_metadata)
                for v in self.tree.get(project, {})]

    def metadata(self, package):
        self.metadata_reads.append(package.filename)
        self._wait()
        message = email.message.Message()
        for requirement in self.tree[package.project][package.version]:
            message["Requires-Dist"] = requirement
        return message


def closure(index, *requirements):
    found = resolve(index, [Requirement(r) for r in requirements], ENV, Options(), dependencies=True)
    return {(c.name, str(c.version)) for c in found}


EXPECTED = {("pkg0", "1.0"), ("pkg1", "1.0"), ("pkg2", "1.0"), ("pkg3", "1.0"), ("pkg4", "1.0"), ("pkg5", "1.0"),
            ("pkg6", "2.0"), ("leaf", "2.0")}


def test_dependencies_are_fetched_in_parallel_and_each_once():
    index = SlowIndex(TREE, delay=0.1)
    started = time.monotonic()
    assert closure(index, "pkg0") == EXPECTED
    elapsed = time.monotonic() - started
    assert index.peak >= 3, index.peak  # six siblings known at once are fetched together
    assert sorted(index.pages) == sorted(set(index.pages)) == sorted(p for p, _ in EXPECTED)
    assert sorted(index.metadata_reads) == sorted(set(index.metadata_reads))
    assert len(index.metadata_reads) == len(EXPECTED)  # pkg6 1.0 (needs "never") is not read on a guess
    # one at a time this is 16 answers of 100 ms in a row; looked ahead, about six
    assert elapsed < 16 * 0.1 * 0.75, elapsed


def test_no_wheel_is_downloaded_on_a_guess():
    # without a .metadata file the metadata comes out of the wheel: only the resolver may ask for that
    index = SlowIndex(TREE, no_metadata={"pkg3", "leaf"})
    assert closure(index, "pkg0") == EXPECTED
    assert index.metadata_reads.count("leaf-2.0-py3-none-any.whl") == 1
    assert "leaf-1.0-py3-none-any.whl" not in index.metadata_reads


def test_an_error_met_ahead_is_raised_only_where_the_resolver_needs_it():
    # a project that only a non-chosen version would need fails on the index: the closure is unharmed
    tree = dict(TREE, pkg6={"2.0": [], "1.0": ["broken"]}, broken={"1.0": []})
    assert closure(SlowIndex(tree, broken={"broken"}), "pkg0") == EXPECTED
    # and one the closure needs fails the resolution as a one-at-a-time resolver would
    with pytest.raises(RegistryError, match="pkg4"):
        closure(SlowIndex(TREE, broken={"pkg4"}), "pkg0")
