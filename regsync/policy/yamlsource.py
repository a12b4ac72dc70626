"""YAML → plain data, remembering the line of every key and value, with ${ENV} interpolation.

PyYAML's constructors drop source positions, so we walk the composed node tree ourselves: each
path (tuple of keys and list indices) maps to the line users see in their editor.
"""

from __future__ import annotations

import os
import re
from typing import Any
from dataclasses import dataclass, field

import yaml

from regsync.errors import PolicyError

Path_ = tuple[Any, ...]  # a path into the document: keys and list indices
_ENV = re.compile(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


@dataclass
class Document:
    data: object
    file: str
    lines: dict[Path_, int] = field(default_factory=dict)
    # Variables left unset where the caller allowed it (`defer_unset`), by path: the value keeps its
    # `${NAME}` text, and the caller decides whether that path may stay unresolved.
    unset: dict[Path_, str] = field(default_factory=dict)
    defer_unset: bool = False

    def line_of(self, path: Path_) -> int | None:
        """The line of `path`, or of its nearest ancestor that has one."""
        path = tuple(path)
        while path:
            if path in self.lines:
                return self.lines[path]
            path = path[:-1]
        return self.lines.get((), None)

    def error(self, path: Path_, msg: str) -> PolicyError:
        return PolicyError(msg, self.file, self.line_of(path))


def load_document(text: str, file: str, environ: dict[str, str] | None = None,
                  defer_unset: bool = False) -> Document:
    environ = os.environ if environ is None else environ
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        problem = getattr(exc, "problem", None) or str(exc)
        raise PolicyError(f"invalid YAML: {problem}", file, mark.line + 1 if mark else None) from None
    finally:
        loader.dispose()
    doc = Document(None, file, defer_unset=defer_unset)
    if node is None:
        raise PolicyError("the policy is empty", file)
    doc.data = _build(node, (), doc, loader, environ)
    return doc


def _build(node, path, doc: Document, loader, environ):
    doc.lines.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        out = {}
        for key_node, value_node in node.value:
            key = loader.construct_object(key_node)
            if not isinstance(key, (str, int)):
                raise PolicyError("mapping keys must be strings", doc.file, key_node.start_mark.line + 1)
            if key in out:
                raise PolicyError(f"duplicate key '{key}'", doc.file, key_node.start_mark.line + 1)
            doc.lines[path + (key,)] = key_node.start_mark.line + 1
            out[key] = _build(value_node, path + (key,), doc, loader, environ)
        return out
    if isinstance(node, yaml.SequenceNode):
        return [_build(child, path + (i,), doc, loader, environ) for i, child in enumerate(node.value)]
    value = loader.construct_object(node)
    if isinstance(value, str):
        value = _interpolate(value, environ, doc, path)
    return value


def _interpolate(value: str, environ, doc: Document, path) -> str:
    def substitute(match: re.Match) -> str:
        if match.group(0) == "$$":
            return "$"
        name = match.group(1)
        if name not in environ and doc.defer_unset:
            doc.unset[path] = name
            return match.group(0)
        if name not in environ:
            # Never fall back to an empty string: an empty password is a silent auth downgrade.
            raise doc.error(path, f"environment variable '{name}' is not set")
        return environ[name]

    return _ENV.sub(substitute, value)
