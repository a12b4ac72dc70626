"""Registry URL paths and policy references built from checked names (the grammar itself is
regsync/policy/names.py's).

URLs are built from quoted parts only: a name that passed its grammar needs no quoting, so quoting
only ever changes a hostile one.
"""

from __future__ import annotations

from urllib.parse import quote

from regsync.policy.names import check_reference, check_repository


def registry_path(repo: str, endpoint: str, reference: str | None = None) -> str:
    """'/v2/<repository>/<endpoint>[/<reference>]', every part checked and percent-quoted (defence in
    depth: a name that passed its grammar needs no quoting, so quoting only ever changes a hostile one).
    ':' stays as it is: a legal path character (RFC 3986 pchar) that every registry expects bare in
    `sha256:<hex>`, and one that can neither end a segment nor start a query."""
    path = f"/v2/{quoted_repository(repo)}/{endpoint}"
    if reference is None:
        return path
    return path + "/" + quote(check_reference(reference), safe=":")


def quoted_repository(repo: str) -> str:
    """A checked repository name, quoted segment by segment (its '/' separate path segments)."""
    return "/".join(quote(part, safe="") for part in check_repository(repo).split("/"))


def split_ref(ref: str) -> tuple[str, str]:
    """'tuna/pytorch/cuda' → ('tuna', 'pytorch/cuda'): a policy's registry name and repository."""
    name, _, repo = ref.partition("/")
    return name, repo


def split_image_ref(ref: str) -> tuple[str, str, str]:
    """'src/pytorch/cuda:2.9' → ('src', 'pytorch/cuda', '2.9')."""
    path, _, tag = ref.rpartition(":")
    name, repo = split_ref(path)
    return name, repo, tag
