"""The manifests under an image: a pure walk of an OCI index/manifest graph, each one digest-checked."""

from __future__ import annotations

from regsync.errors import VerificationError
from regsync.kinds.image.source import ImageSource
from regsync.kinds.image.manifest import Descriptor, Manifest

MAX_INDEX_DEPTH = 4  # an index of indexes is legal; deeper nesting is not seen in the wild
# Distinct manifests under one root: a multi-arch image with attestations has dozens; a source
# that names more is not an image to copy but work for us to do.
MAX_TREE_MANIFESTS = 10_000


def manifest_tree(client: ImageSource, repo: str, root: Manifest) -> list[Manifest]:
    """Every distinct manifest under `root`, children before parents, `root` last; each digest- and
    size-checked.

    Each digest is fetched and listed once, however often indexes repeat it: an index naming one
    child 20 times at each of 4 levels is 5 manifests, not 168,421.
    """
    tree: list[Manifest] = []
    _walk(client, repo, root, 0, {root.digest: len(root.raw)}, tree)
    return tree


def _walk(client: ImageSource, repo: str, manifest: Manifest, depth: int, sizes: dict[str, int],
          tree: list[Manifest]) -> None:
    """`sizes`: digest → size of every manifest already met in this tree."""
    if depth > MAX_INDEX_DEPTH:
        raise VerificationError(f"{manifest.digest}: indexes nested deeper than {MAX_INDEX_DEPTH}")
    for child in manifest.children():
        if child.digest in sizes:
            _check_size(manifest, child, sizes)
            continue
        if len(sizes) >= MAX_TREE_MANIFESTS:
            raise VerificationError(f"{manifest.digest}: more than {MAX_TREE_MANIFESTS} manifests under one image")
        fetched = client.get_manifest(repo, child.digest)
        sizes[child.digest] = len(fetched.raw)
        _check_size(manifest, child, sizes)
        _walk(client, repo, fetched, depth + 1, sizes, tree)
    tree.append(manifest)


def _check_size(index: Manifest, child: Descriptor, sizes: dict[str, int]) -> None:
    # Clients check it when they pull (containerd refuses a mismatch): copying it would push an
    # index nobody can pull.
    if child.size != sizes[child.digest]:
        raise VerificationError(f"{index.digest}: lists {child.digest} as {child.size} bytes, "
                                f"the manifest has {sizes[child.digest]}")
