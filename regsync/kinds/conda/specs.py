"""The conda grammar a policy is checked against: subdirs and match specs, read by rattler's own
parsers (what rattler refuses, conda and pixi refuse). The conda section checks its rules with it
(kinds/conda/policy.py); kinds/conda/names.py uses the same subdir list for the names it reads from servers."""

from __future__ import annotations

import difflib
import re
import typing

from loguru import logger

_EXPORTED = re.compile(r"[A-Za-z0-9_.][A-Za-z0-9_.-]*==?[A-Za-z0-9_.!+*]+=[A-Za-z0-9_.+*]+")


def known_subdirs() -> tuple[str, ...]:
    """The subdirs rattler knows (its Subdir grammar), noarch included."""
    from rattler.platform.subdir import SubdirLiteral

    return typing.get_args(SubdirLiteral)


def check_subdir(value: str) -> str:
    known = known_subdirs()
    if value in known:
        return value
    near = difflib.get_close_matches(value, known, n=1, cutoff=0.6)
    hint = f" (did you mean '{near[0]}'?)" if near else ""
    raise ValueError(f"'{value}' is not a conda subdir{hint}; examples: linux-64, linux-aarch64, osx-arm64, win-64")


def check_spec(value: str) -> str:
    """A match spec as conda and pixi read it (rattler's strict parser: what it refuses, they refuse),
    or `name=version=build` as `conda list --export` writes it, returned in the form it was read as."""
    from rattler import MatchSpec
    from rattler.exceptions import InvalidMatchSpecError

    if "::" in value:  # the rule's `from:` says which channels; a spec naming one would bypass it
        raise ValueError(f"'{value}': a spec names no channel here; the rule's from: does")
    try:
        MatchSpec(value, strict=True)
        return value
    except InvalidMatchSpecError as exc:
        reason = str(exc).splitlines()[0]
    if _EXPORTED.fullmatch(value):
        # rattler's lenient parser reads it as conda does (version exact, then the build); the strict
        # parser accepts what it made of it, so the solver and the plan see one reading
        read = str(MatchSpec(value, strict=False))
        try:
            MatchSpec(read, strict=True)
        except InvalidMatchSpecError:
            pass
        else:
            logger.info("conda spec '{}' (name=version=build, as conda list --export writes it) read as '{}'",
                        value, read)
            return read
    raise ValueError(f"'{value}' is not a match spec: {reason}")
