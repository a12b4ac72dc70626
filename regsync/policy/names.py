"""The distribution spec's grammar for repository names, tags and digests, in one place: the policy
checks its image references with it, the image kind every name it builds a URL or path from
(kinds/image/names.py).

Every name that comes from a server, a bundle, a saved plan or the policy is checked here before it
reaches a URL, a path or a decision (docs/architecture.md, "Security principles in the code"): a listed tag `2.9.1?x` would
otherwise turn into a query string and land on `2.9.1`, and a dot-segment tag into another
repository's path once urllib3 normalises it. URLs are then built from quoted parts only.
"""

from __future__ import annotations

import re

from regsync.errors import InvalidName, shown

# https://github.com/opencontainers/distribution-spec/blob/main/spec.md#pulling-manifests
TAG_RULE = "[A-Za-z0-9_][A-Za-z0-9._-]{0,127}"
_COMPONENT = r"[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*"
REPOSITORY_RULE = rf"{_COMPONENT}(?:/{_COMPONENT})*"
# https://github.com/opencontainers/image-spec/blob/main/descriptor.md#digests
DIGEST_RULE = "[a-z0-9]+(?:[+._-][a-z0-9]+)*:[a-zA-Z0-9=_-]+"
MAX_REPOSITORY = 255   # distribution's reference package caps a name here
MAX_DIGEST = 1024      # far above any algorithm's hex; only bounds what a hostile manifest can make us carry

_TAG = re.compile(TAG_RULE)
_REPOSITORY = re.compile(REPOSITORY_RULE)
_DIGEST = re.compile(DIGEST_RULE)


def is_tag(value) -> bool:
    return isinstance(value, str) and _TAG.fullmatch(value) is not None


def is_repository(value) -> bool:
    return isinstance(value, str) and len(value) <= MAX_REPOSITORY and _REPOSITORY.fullmatch(value) is not None


def is_digest(value) -> bool:
    return isinstance(value, str) and len(value) <= MAX_DIGEST and _DIGEST.fullmatch(value) is not None


def invalid_tag(value) -> str:
    return f"invalid tag name '{shown(value)}' (a tag is {TAG_RULE}, distribution spec)"


def invalid_repository(value) -> str:
    return (f"invalid repository name '{shown(value)}' (lower-case components of letters and digits "
            f"joined by . _ __ or -, separated by /, at most {MAX_REPOSITORY} characters; distribution spec)")


def invalid_digest(value) -> str:
    return f"invalid digest '{shown(value)}' (a digest is algorithm:hex)"


def check_tag(value) -> str:
    if not is_tag(value):
        raise InvalidName(invalid_tag(value))
    return value


def check_repository(value) -> str:
    if not is_repository(value):
        raise InvalidName(invalid_repository(value))
    return value


def check_digest(value) -> str:
    if not is_digest(value):
        raise InvalidName(invalid_digest(value))
    return value


def check_reference(value) -> str:
    """A manifest reference: a digest when it has a ':' (a tag never does), else a tag."""
    return check_digest(value) if isinstance(value, str) and ":" in value else check_tag(value)


def check_image_ref(ref: str) -> tuple[str, str, str]:
    """'<registry>/<repository>:<tag>' → its parts, each checked (plans and bundles name images so)."""
    path, sep, tag = ref.rpartition(":") if isinstance(ref, str) else ("", "", "")
    name, slash, repo = path.partition("/")
    if not sep or not slash or not name:
        raise InvalidName(f"invalid image reference '{shown(ref)}' (expected <registry>/<repository>:<tag>)")
    return name, check_repository(repo), check_tag(tag)
