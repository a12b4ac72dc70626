"""The dependency closure for one target environment, with resolvelib (the resolver pip uses).

Candidates are (project, version, the one file pip would install there); dependencies come from
the file's core metadata (Requires-Dist), with markers evaluated for the target environment and
the extras that were asked for.

resolvelib asks for one page or one metadata file at a time; against a remote mirror each is a
round trip, and a 40-project closure is ~80 of them in a row. So as soon as a dependency is known,
its page and the metadata of the file it would most likely pin are fetched ahead on a few threads,
and so on down the tree; the resolver then finds them ready. Prefetching only reads pages and
PEP 658 metadata files (never a whole wheel), and each is fetched once: what the resolver decides
is unchanged, only the waiting overlaps.
"""

from __future__ import annotations

import email.message
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import TypeVar
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field

import resolvelib
from packaging.requirements import InvalidRequirement, Requirement
from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.utils import InvalidWheelFilename, canonicalize_name, parse_wheel_filename
from packaging.version import InvalidVersion, Version
from pypi_simple import DistributionPackage

from regsync.errors import PolicyError, RegsyncError, VerificationError
from regsync.kinds.package.environment import TargetEnvironment
from regsync.kinds.package.source import PackageSource


class ResolutionError(RegsyncError):
    """No set of files satisfies the requirements for an environment; the message names the chain."""


@dataclass(frozen=True)
class Candidate:
    name: str
    version: Version
    file: DistributionPackage = field(compare=False, hash=False)
    extras: frozenset[str] = frozenset()


@dataclass
class Options:
    sdists: bool = False
    only_binary: frozenset[str] = frozenset()


def parse_requirement(text: str, where: str) -> Requirement:
    try:
        return Requirement(text)
    except InvalidRequirement as exc:
        raise PolicyError(f"{where}: '{text}' is not a PEP 508 requirement ({exc})") from None


def exactly_pinned(requirements: Iterable[Requirement]) -> bool:
    return any(s.operator in ("==", "===") and "*" not in s.version for r in requirements for s in r.specifier)


def allows_prereleases(specifiers: Iterable[SpecifierSet]) -> bool:
    """pip's rule: a pre-release is a candidate only when a specifier itself names one."""
    return any(Version(s.version.rstrip(".*")).is_prerelease for spec in specifiers for s in spec
               if s.version.rstrip(".*")[:1].isdigit())


def best_file(files: list[DistributionPackage], env: TargetEnvironment, options: Options,
              pinned: bool) -> DistributionPackage | None:
    """The file pip would pick for `env` among one version's files, or None."""
    ranked: list[tuple[int, int, DistributionPackage]] = []
    for package in files:
        if package.is_yanked and not pinned:  # PEP 592: yanked files only for an exact pin
            continue
        if package.requires_python and not _python_ok(package.requires_python, env):
            continue
        if package.filename.endswith(".whl"):
            try:
                _, _, _, wheel_tags = parse_wheel_filename(package.filename)
            except InvalidWheelFilename:
                continue
            ranks = [env.tag_rank[t] for t in wheel_tags if t in env.tag_rank]
            if ranks:
                ranked.append((0, min(ranks), package))
        elif package.package_type == "sdist" and options.sdists and canonicalize_name(package.project or "") not in options.only_binary:
            ranked.append((1, 0 if package.filename.endswith(".tar.gz") else 1, package))
    return min(ranked, key=lambda r: (r[0], r[1]))[2] if ranked else None


def _python_ok(spec: str, env: TargetEnvironment) -> bool:
    try:
        return SpecifierSet(spec).contains(env.full_version, prereleases=True)
    except InvalidSpecifier:
        return True  # a broken data-requires-python is ignored, as pip does


PREFETCH_THREADS = 8
T = TypeVar("T")
PREFETCH_MAX = 5000  # projects looked at ahead of the resolver in one resolution, at most


RequirementInformation = resolvelib.structs.RequirementInformation[Requirement, "Candidate"]


class Provider(resolvelib.AbstractProvider[Requirement, "Candidate", str]):
    def __init__(self, index: PackageSource, env: TargetEnvironment, options: Options, constraints: dict[str, SpecifierSet],
                 prefetch: ThreadPoolExecutor | None = None, prefer: dict[str, set[Version]] | None = None):
        self.index, self.env, self.options, self.constraints = index, env, options, constraints
        self.prefer = prefer or {}   # project → versions tried first (a saved plan's), if admitted at all
        self._prefetch_pool = prefetch
        self._pages: dict[str, Future[list[DistributionPackage]]] = {}
        self._metadata: dict[str, Future[email.message.Message]] = {}
        self._ahead: set[str] = set()
        self._lock = threading.Lock()
        self.refused: dict[str, tuple[DistributionPackage, str]] = {}  # filename → (file, why), met while resolving

    def _once(self, table: dict[str, Future[T]], key: str, fetch: Callable[[], T]) -> Future[T]:
        """The one fetch of `key`: whoever asks first runs it, everyone else waits on its result
        (a future is created only by a thread that is about to run it, so no wait is on a queue)."""
        with self._lock:
            future, owner = table.get(key), False
            if future is None:
                future, owner = table.setdefault(key, Future()), True
        if owner:
            try:
                future.set_result(fetch())
            except BaseException as exc:  # kept for whoever needs it; a prefetch that failed decides nothing
                future.set_exception(exc)
        return future

    def _files(self, identifier: str) -> list[DistributionPackage]:
        return self._once(self._pages, identifier, lambda: self.index.files(identifier)).result()

    def _core_metadata(self, package: DistributionPackage) -> email.message.Message:
        return self._once(self._metadata, package.filename, lambda: self.index.metadata(package)).result()

    def look_ahead(self, requirement: Requirement) -> None:
        """Start fetching what resolving `requirement` will read, unless already under way."""
        name = canonicalize_name(requirement.name)
        with self._lock:
            if self._prefetch_pool is None or name in self._ahead or len(self._ahead) >= PREFETCH_MAX:
                return
            self._ahead.add(name)
        try:
            self._prefetch_pool.submit(self._prefetch, name, requirement)
        except RuntimeError:  # the pool is shut down: resolution is over
            pass

    def _prefetch(self, name: str, requirement: Requirement) -> None:
        try:
            candidates = self._candidates(name, [requirement], set())
            if candidates and candidates[0].file.has_metadata:  # never download a wheel to guess
                for dependency in self._requirements(self._core_metadata(candidates[0].file), candidates[0].extras):
                    self.look_ahead(dependency)
        except Exception:  # noqa: BLE001 — the resolver meets the same error when (if) it needs this
            pass

    def identify(self, requirement_or_candidate: Requirement | Candidate) -> str:
        return canonicalize_name(requirement_or_candidate.name)

    def get_preference(self, identifier: str, resolutions: Mapping[str, Candidate],
                       candidates: Mapping[str, Iterator[Candidate]],
                       information: Mapping[str, Iterator[RequirementInformation]],
                       backtrack_causes: Sequence[RequirementInformation]) -> int:
        return sum(1 for _ in candidates[identifier])

    def find_matches(self, identifier: str, requirements: Mapping[str, Iterator[Requirement]],
                     incompatibilities: Mapping[str, Iterator[Candidate]]) -> list[Candidate]:
        return self._candidates(identifier, list(requirements[identifier]),
                                {c.version for c in incompatibilities[identifier]})

    def _candidates(self, identifier: str, requirements: list[Requirement], bad: set[Version]) -> list[Candidate]:
        extras = frozenset(e for r in requirements for e in r.extras)
        pinned = exactly_pinned(requirements)
        by_version: dict[Version, list[DistributionPackage]] = {}
        for package in self._files(identifier):
            try:
                by_version.setdefault(Version(package.version or ""), []).append(package)
            except InvalidVersion:
                continue
        specifiers = [r.specifier for r in requirements] + [self.constraints.get(identifier, SpecifierSet())]
        allow_pre = allows_prereleases(specifiers)
        newest_first = sorted(by_version, reverse=True)
        preferred = self.prefer.get(identifier, ())
        found: list[Candidate] = []
        for version in [v for v in newest_first if v in preferred] + [v for v in newest_first if v not in preferred]:
            if version in bad or not all(spec.contains(version, prereleases=allow_pre) for spec in specifiers):
                continue
            chosen = best_file(by_version[version], self.env, self.options, pinned)
            if chosen is not None and chosen.filename not in self.refused:
                found.append(Candidate(identifier, version, chosen, extras))
        return found

    def is_satisfied_by(self, requirement: Requirement, candidate: Candidate) -> bool:
        return (requirement.specifier.contains(candidate.version, prereleases=True)
                and set(requirement.extras) <= candidate.extras)

    def get_dependencies(self, candidate: Candidate) -> list[Requirement]:
        try:
            metadata = self._core_metadata(candidate.file)
        except VerificationError as exc:
            # A file that fails its index hash (read whole for its metadata) is refused like at apply
            # time; the resolver then rules this version out (a dependency it can never meet) and
            # goes on with the others.
            self.refused[candidate.file.filename] = (candidate.file, exc.reason)
            return [Requirement(f"{candidate.name}!={candidate.version}")]
        deps = self._requirements(metadata, candidate.extras)
        for requirement in deps:
            self.look_ahead(requirement)
        return deps

    def _requirements(self, metadata: email.message.Message, extras: frozenset[str]) -> list[Requirement]:
        deps = []
        for text in metadata.get_all("Requires-Dist") or []:
            try:
                requirement = Requirement(text)
            except InvalidRequirement:
                continue
            if requirement.marker is None or any(
                    requirement.marker.evaluate(dict(self.env.markers, extra=extra))
                    for extra in ({""} | set(extras))):
                requirement.marker = None
                deps.append(requirement)
        return deps


def resolve(index: PackageSource, requirements: Iterable[Requirement], env: TargetEnvironment, options: Options,
            dependencies: bool, constraints: dict[str, SpecifierSet] | None = None,
            refused: dict[str, tuple[DistributionPackage, str]] | None = None, prefer: dict[str, set[Version]] | None = None) -> list[Candidate]:
    """The files of the closure; `refused` (when given) receives the files ruled out on the way
    because they failed their hash, filename → (file, reason), even when resolution then fails.
    `prefer`: versions tried before the newer ones (a saved plan's, re-derived at apply); they only
    change the order candidates are tried in, never what the requirements admit."""
    provider = Provider(index, env, options, constraints or {}, prefer=prefer)
    wanted = [r for r in requirements if r.marker is None or r.marker.evaluate(dict(env.markers, extra=""))]
    if not dependencies:
        out: list[Candidate] = []
        for requirement in wanted:
            name = canonicalize_name(requirement.name)
            matches = provider.find_matches(name, {name: iter([requirement])}, {name: iter(())})
            if not matches:
                raise ResolutionError(f"{env.label}: no file of {requirement} fits this environment")
            out.append(matches[0])
        return out
    pool = ThreadPoolExecutor(PREFETCH_THREADS, thread_name_prefix="prefetch")
    provider = Provider(index, env, options, constraints or {}, prefetch=pool, prefer=prefer)
    for requirement in wanted:
        provider.look_ahead(requirement)
    try:
        result = resolvelib.Resolver(provider, resolvelib.BaseReporter()).resolve(wanted, max_rounds=2000)
    except resolvelib.ResolutionImpossible as exc:
        chains = []
        for cause in exc.causes:
            if cause.parent is not None and cause.parent.file.filename in provider.refused:
                continue  # the stand-in dependency of a refused file, named below
            parent = f"{cause.parent.name} {cause.parent.version}" if cause.parent else "the policy"
            chains.append(f"{cause.requirement} (required by {parent})")
        chains += [f"{name} refused: {why}" for name, (_, why) in provider.refused.items()]
        raise ResolutionError(f"{env.label}: cannot resolve: " + "; ".join(chains)) from None
    except resolvelib.ResolutionTooDeep:
        raise ResolutionError(f"{env.label}: resolution too deep (over 2000 rounds)") from None
    finally:
        # what is still in flight was a guess the resolver did not need: let it finish, start nothing new
        pool.shutdown(wait=True, cancel_futures=True)
        if refused is not None:
            refused.update(provider.refused)
    return sorted(result.mapping.values(), key=lambda c: c.name)
