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

from regsync.errors import PolicyError, one_line

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


# Bounds on what a policy may expand to. Aliases share nodes, so a few lines of `&a [*b, *b, …]`
# ("billion laughs") would otherwise build billions of values; and the composer recurses per level.
# The policies in policies/ nest 6 levels deep and hold a few hundred values.
MAX_DEPTH = 64
MAX_VALUES = 200_000


class _Loader(yaml.SafeLoader):
    """SafeLoader that refuses nesting deeper than MAX_DEPTH before recursing into it."""

    depth = 0

    def compose_node(self, parent, index):
        self.depth += 1
        try:
            if self.depth > MAX_DEPTH:
                raise yaml.composer.ComposerError(None, None, f"nested more than {MAX_DEPTH} levels deep",
                                                  self.peek_event().start_mark)
            return super().compose_node(parent, index)
        finally:
            self.depth -= 1


def load_document(text: str, file: str, environ: dict[str, str] | None = None,
                  defer_unset: bool = False) -> Document:
    environ = os.environ if environ is None else environ
    loader = None
    try:
        loader = _Loader(text)   # the reader refuses control characters here already
        node = loader.get_single_node()
    except yaml.YAMLError as exc:
        raise _yaml_error(exc, file, text) from None
    finally:
        if loader is not None:
            loader.dispose()
    doc = Document(None, file, defer_unset=defer_unset)
    if node is None:
        raise PolicyError("the policy is empty", file)
    try:
        doc.data = _build(node, (), doc, loader, environ, [MAX_VALUES])
    except yaml.YAMLError as exc:   # a tag SafeLoader does not construct (!!python/object, !custom)
        raise _yaml_error(exc, file, text) from None
    return doc


def _yaml_error(exc: yaml.YAMLError, file: str, text: str) -> PolicyError:
    if isinstance(exc, yaml.reader.ReaderError):   # a control character: PyYAML gives its position only
        line = text.count("\n", 0, exc.position) + 1
        code = exc.character if isinstance(exc.character, int) else ord(exc.character)
        return PolicyError(f"invalid YAML: character U+{code:04X} is not allowed (a control character: is this "
                           f"a text file?)", file, line)
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or str(exc)
    return PolicyError(f"invalid YAML: {one_line(problem)}", file, mark.line + 1 if mark else None)


def _construct(loader, node, doc: Document):
    try:
        return loader.construct_object(node)
    except ValueError as exc:   # an integer of more digits than Python converts, a date like 2026-13-45
        reason = str(exc).split("; use sys.set_int_max_str_digits")[0]
        raise PolicyError(f"invalid value: {one_line(reason)}", doc.file, node.start_mark.line + 1) from None


def _build(node, path, doc: Document, loader, environ, budget: list[int]):
    budget[0] -= 1
    if budget[0] < 0:
        raise PolicyError(f"the policy expands to more than {MAX_VALUES} values (aliases of aliases?)", doc.file,
                          node.start_mark.line + 1)
    doc.lines.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        out = {}
        for key_node, value_node in node.value:
            key = _construct(loader, key_node, doc)
            if not isinstance(key, (str, int)):
                raise PolicyError("mapping keys must be strings", doc.file, key_node.start_mark.line + 1)
            if key in out:
                raise PolicyError(f"duplicate key '{key}'", doc.file, key_node.start_mark.line + 1)
            doc.lines[path + (key,)] = key_node.start_mark.line + 1
            out[key] = _build(value_node, path + (key,), doc, loader, environ, budget)
        return out
    if isinstance(node, yaml.SequenceNode):
        return [_build(child, path + (i,), doc, loader, environ, budget) for i, child in enumerate(node.value)]
    value = _construct(loader, node, doc)
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
