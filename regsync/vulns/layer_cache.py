"""What earlier scans read from each layer, kept in the state dir by layer digest
(docs/vulnerabilities.md): a plan can judge an image whose every layer was scanned before, and an
apply need not read a layer again that the copy did not stream.

Content-addressed: an entry is named by the digest of the layer it was read from, and written only
from a layer whose bytes were verified against that digest (the copy's verifying reader, or the
gate's own read to the last byte). Written atomically (a new private file, then a rename), read
bounded and never through a symlink; an entry that is unreadable, too big, of another format or
naming another digest is a miss, never an error. Without a usable state dir nothing is kept.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import threading
from pathlib import Path

from loguru import logger

from regsync.content.files import create_new, private_subdir, read_private_json, state_dir
from regsync.vulns.layers import _WANTED, MAX_FILE, MAX_METADATA, LayerFiles
from regsync.vulns.records import MAX_LANGUAGE

FOLDER = "vuln-layers"
MAX_ENTRY = 64 << 20
_DIGEST = re.compile(r"sha256:([0-9a-f]{64})")
# Entries hold only what the reader keeps: another selection, size limit or way of keeping a file
# (2: language packages' files cut to their names and versions, "more" ops) is another format, and
# an entry of another format is a miss, so a layer scanned before node_modules were read is read again.
VERSION = 2
FORMAT = hashlib.sha256(f"{VERSION} {_WANTED.pattern} {MAX_FILE} {MAX_METADATA} {MAX_LANGUAGE}".encode()).hexdigest()[:16]


def _folder() -> Path | None:
    root = state_dir()
    if root is None:
        return None
    try:
        return private_subdir(root, FOLDER)
    except OSError as exc:
        logger.debug("no layer scan cache: {}", exc)
        return None


def _path(digest: str) -> Path | None:
    found = _DIGEST.fullmatch(digest)
    folder = _folder() if found else None
    return folder / f"{found.group(1)}.json" if folder is not None and found else None


def cached_layer(digest: str) -> LayerFiles | None:
    """What an earlier scan read from the verified layer `digest`, or None."""
    path = _path(digest)
    if path is None:
        return None
    try:
        doc = read_private_json(path, MAX_ENTRY)
        if not isinstance(doc, dict) or doc.get("format") != FORMAT or doc.get("digest") != digest:
            return None
        files = LayerFiles()
        for op, name, data in doc["ops"]:
            if op not in ("file", "whiteout", "opaque", "more") or not isinstance(name, str):
                return None
            files.ops.append((op, name, base64.b64decode(data, validate=True) if data is not None else None))
        return files
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        logger.debug("{}: layer scan cache entry not used: {}", digest, exc)
        return None


def keep_layer(digest: str, files: LayerFiles) -> None:
    """Keep what was read from `digest`; call only once its bytes were verified against it."""
    path = _path(digest)
    if path is None:
        return
    doc = {"format": FORMAT, "digest": digest,
           "ops": [[op, name, base64.b64encode(data).decode() if data is not None else None]
                   for op, name, data in files.ops]}
    data = json.dumps(doc).encode()
    if len(data) > MAX_ENTRY:
        return
    temporary = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")  # writers may race
    try:
        with os.fdopen(create_new(temporary, 0o600), "wb") as handle:
            handle.write(data)
        os.replace(temporary, path)
    except OSError as exc:
        logger.debug("{}: layer scan not kept: {}", digest, exc)
        temporary.unlink(missing_ok=True)
