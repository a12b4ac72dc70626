"""The manifests under an image: a pure walk of an OCI index/manifest graph, each one digest-checked."""

from __future__ import annotations

from regsync.errors import VerificationError
from regsync.kinds.oci.manifest import Manifest

MAX_INDEX_DEPTH = 4  # an index of indexes is legal; deeper nesting is not seen in the wild
# Distinct manifests under one root: a multi-arch image with attestations has dozens; a source
# that names more is not an image to copy but work for us to do.
MAX_TREE_MANIFESTS = 10_000


def manifest_tree(client, repo: str, root: Manifest) -> list[Manifest]:
    """Every distinct manifest under `root`, children before parents, `root` last; each digest-checked.

    Each digest is fetched and listed once, however often indexes repeat it: an index naming one
    child 20 times at each of 4 levels is 5 manifests, not 168,421.
    """
    tree: list[Manifest] = []
    _walk(client, repo, root, 0, {root.digest}, tree)
    return tree


def _walk(client, repo: str, manifest: Manifest, depth: int, seen: set[str],
          tree: list[Manifest]) -> None:
    if depth > MAX_INDEX_DEPTH:
        raise VerificationError(f"{manifest.digest}: indexes nested deeper than {MAX_INDEX_DEPTH}")
    for child in manifest.children():
        if child.digest in seen:
            continue
        if len(seen) >= MAX_TREE_MANIFESTS:
            raise VerificationError(f"{manifest.digest}: more than {MAX_TREE_MANIFESTS} manifests under one image")
        seen.add(child.digest)
        _walk(client, repo, client.get_manifest(repo, child.digest), depth + 1, seen, tree)
    tree.append(manifest)
