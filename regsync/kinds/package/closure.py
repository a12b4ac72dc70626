"""The files each package rule's closure holds, resolved once per rule and environment in a run.

A saved plan only narrows the policy (issue 22): `sync --plan` pushes a file only when it belongs to
the closure the policy resolves to, whatever the plan lists. The closures `plan` resolved in this
run are recorded here and reused (a plain `sync`, `import`, `export` resolve once); a saved plan's
are re-derived on first use at apply, one resolution per rule and environment (the index object
keeps the pages for the run), with the plan's versions tried first: the plan may still choose among
versions the requirements admit, as an old plan applied after upstream released more does, but not
add a project, a file or a version no requirement chain of the policy leads to.
"""

from __future__ import annotations

import threading
from concurrent.futures import Future
from typing import TYPE_CHECKING

from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name
from packaging.version import Version
from pypi_simple import DistributionPackage

from regsync.errors import RegistryError, VerificationError
from regsync.kinds.package.environment import TargetEnvironment, rule_environments
from regsync.content.python_names import parse_file_name
from regsync.kinds.package.ref import sha256_of
from regsync.kinds.package.resolver import Candidate, Options, ResolutionError, parse_requirement, resolve
from regsync.kinds.package.source import PackageSource
from regsync.pipeline.rules import NOT_ALLOWED
from regsync.kinds.package.policy import PackageRule

if TYPE_CHECKING:
    from regsync.endpoints import Endpoints

KEY = "package:closures"   # the run's Closures in Endpoints.client
Files = dict[str, str | None]   # file name → its sha256 (None when the index gave none)


def rule_inputs(rule: PackageRule, rule_name: str) -> tuple[list[Requirement], dict[str, SpecifierSet], Options]:
    """(requirements, constraints by project, options) of a rule, as the resolver takes them."""
    requirements = [parse_requirement(text, f"{rule_name}.requirements") for text in rule.requirements]
    constraints: dict[str, SpecifierSet] = {}
    for text in rule.constraints:
        constraint = parse_requirement(text, f"{rule_name}.constraints")
        constraints[canonicalize_name(constraint.name)] = constraint.specifier
    options = Options(rule.sdists, frozenset(canonicalize_name(n) for n in rule.only_binary))
    return requirements, constraints, options


def closures_of(endpoints: "Endpoints") -> "Closures":
    return endpoints.client(KEY, Closures)


class Closures:
    """(rule name, environment label) → {filename: sha256} of its closure, or the error resolving it."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._closures: dict[tuple[str, str], Future[Files]] = {}
        self._prefer: dict[tuple[str, str], dict[str, set[Version]]] = {}   # (source, target index) → …

    def record(self, rule_name: str, env: TargetEnvironment, closure: list[Candidate] | Exception) -> None:
        """What `plan` resolved in this run (a list of Candidates, or why it could not)."""
        future: Future[Files] = Future()
        if isinstance(closure, Exception):
            future.set_exception(closure)
        else:
            future.set_result({c.file.filename: sha256_of(c.file) for c in closure})
        with self._lock:
            self._closures.setdefault((rule_name, env.label), future)

    def prefer(self, source: str, target: str) -> None:
        """A saved plan's item: its version is tried first when its rule's closure is re-derived."""
        source_index, _, filename = source.partition("/")
        try:
            project, version = parse_file_name(filename)
        except ValueError:
            return   # apply refuses it; it decides no order
        with self._lock:
            wanted = self._prefer.setdefault((source_index, target.partition("/")[0]), {})
            wanted.setdefault(project, set()).add(version)

    def admit(self, rule_name: str, rule: PackageRule, index: PackageSource, package: DistributionPackage) -> None:
        """The file (as its index lists it now) is in the closure of one of the rule's environments;
        raises VerificationError when it is in none, RegistryError when a closure cannot be resolved."""
        failures = []
        for env in rule_environments(rule):
            try:
                files = self._closure(rule_name, rule, index, env)
            except (ResolutionError, RegistryError, VerificationError) as exc:
                failures.append(f"{env.label}: {exc}")
                continue
            if package.filename in files and files[package.filename] == sha256_of(package):
                return
        if failures:
            raise RegistryError(f"{rule.source}/{package.filename}", None,
                                f"the closure of {rule_name} cannot be resolved now ({'; '.join(failures)})")
        raise VerificationError(f"{NOT_ALLOWED}: {package.filename} is not in the closure {rule_name} resolves to "
                                f"(requirements {rule.requirements}) for any of its environments")

    def _closure(self, rule_name: str, rule: PackageRule, index: PackageSource, env: TargetEnvironment) -> Files:
        """The closure, resolved by whoever asks first; everyone else waits for that one resolution."""
        with self._lock:
            future, owner = self._closures.get((rule_name, env.label)), False
            if future is None:
                future, owner = self._closures.setdefault((rule_name, env.label), Future()), True
            prefer = self._prefer.get((rule.source, rule.target), {})
        if owner:
            try:
                requirements, constraints, options = rule_inputs(rule, rule_name)
                closure = resolve(index, requirements, env, options, rule.dependencies, constraints, prefer=prefer)
                future.set_result({c.file.filename: sha256_of(c.file) for c in closure})
            except BaseException as exc:   # kept: every item of this rule meets the same answer
                future.set_exception(exc)
        return future.result()
