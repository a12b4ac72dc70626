"""Advice about a valid policy: regexes that match more than they seem to.

`re:` tag patterns and keyless `identity_regex` keep cosign's meaning (Go's regexp.MatchString, RE2,
as regsync.policy.regex compiles them): a match anywhere counts. So `re:2\\.9` also selects 12.9-rc, and an identity
regex without anchors also trusts an identity that merely contains it. Changing that would break
policies copied from cosign flags; naming each such pattern at its file:line is the safe middle.
"""

from __future__ import annotations

import re

from collections.abc import Iterable

from regsync.policy.models import Policy
from regsync.policy.regex import compile_regex
from regsync.policy.yamlsource import Document, Path_

_LEADING_FLAGS = re.compile(r"\(\?[aiLmsux]+\)")
# What an example identity gains in front of / after the pattern: a name someone else can hold.
_AROUND = {"tag": ("1", "-rc"), "identity": ("https://attacker.example/", "-attacker")}


def unanchored_regexes(policy: Policy, doc: Document,
                       regexes: Iterable[tuple[Path_, str, str, str, str]] = ()) -> list[str]:
    """One warning per regex that does not match whole values, as `file:line: …`. `regexes`: the
    kinds' own, as (where, shown, regex, "tag", verb) (regsync.policy.section.PolicySection.regexes)."""
    found = list(regexes)
    for name, entry in policy.trust.items():
        if entry.keyless is not None and entry.keyless.identity_regex is not None:
            regex = entry.keyless.identity_regex
            found.append((("trust", name, "keyless", "identity_regex"), f"identity_regex {regex}", regex,
                          "identity", "matches"))
    warnings = []
    for path, shown, regex, noun, verb in found:
        problem = _anchoring_problem(regex, noun, verb)
        if problem:
            warnings.append(f"{doc.file}:{doc.line_of(path)}: {shown} {problem}")
    return warnings


def _anchoring_problem(regex: str, noun: str, verb: str) -> str | None:
    flags = _LEADING_FLAGS.match(regex)
    body = regex[flags.end():] if flags else regex
    tokens, alternation = _top_level_tokens(body)
    starts = bool(tokens) and tokens[0] in ("^", r"\A")
    ends = bool(tokens) and tokens[-1] in ("$", r"\z")  # RE2 and Go: \z; \Z is refused
    advice = f"write ^…$ to match the whole {noun}"
    if alternation and (starts or ends):
        return f"has a top-level |: its anchors bind only the first and last alternatives; write ^(…|…)$ " \
               f"to match the whole {noun}"
    if starts and ends:
        return None
    prefix, suffix = _AROUND[noun]
    core = body[len(tokens[0]) if starts else 0:len(body) - (len(tokens[-1]) if ends else 0)]
    literal = re.sub(r"\\(.)", r"\1", core)
    example = (f"{'' if starts else prefix}{literal}{'' if ends else suffix}"
               if not alternation and _fullmatches(core, literal) else None)
    what = example or f"any {noun} that merely contains a match"
    state = "is unanchored" if not (starts or ends) else "has no ^ anchor" if ends else "has no $ anchor"
    return f"{state}: it also {verb} {what}; {advice}"


def _fullmatches(regex: str, text: str) -> bool:
    try:
        return compile_regex(regex).fullmatch(text) is not None
    except ValueError:
        return False


def _top_level_tokens(regex: str) -> tuple[list[str], bool]:
    """The regex's top-level tokens (escapes kept whole, groups and classes as one) and whether a
    `|` outside every group splits it. Enough to see anchors; not a regex parser."""
    tokens, alternation, depth, i = [], False, 0, 0
    while i < len(regex):
        char = regex[i]
        start = i
        if char == "\\":
            i += 2
        elif char == "[":
            i += 1
            i += regex[i:i + 1] == "^"
            i += regex[i:i + 1] == "]"
            while i < len(regex) and regex[i] != "]":
                i += 2 if regex[i] == "\\" else 1
            i += 1
        else:
            depth += (char == "(") - (char == ")")
            alternation |= char == "|" and depth == 0
            i += 1
        if depth == 0 or (char == "(" and depth == 1):
            tokens.append(regex[start:i])
    return tokens, alternation
