"""A target channel's `<subdir>/repodata.json`, read and rewritten as a stream.

A big channel's listing is hundreds of MB of JSON: parsed whole it takes about ten times that in
memory, and a rewrite through json.dumps costs seconds of CPU (issue 20: adding 8 files to a 134 MB
listing took 20 s and 1.8 GiB). So regsync writes its targets' listings one record per line:

    {
    "info": {"subdir": "linux-64"},
    "packages": {
    "a-1.0-0.tar.bz2": {"build": "0", ...},
    "b-2.0-1.tar.bz2": {"build": "1", ...}
    },
    "packages.conda": {},
    "removed": [],
    "repodata_version": 1
    }

It is plain JSON for every client, and the next run reads it line by line: each record stays its
own text, copied as it is unless this run replaces it, parsed only when someone asks for it. A
line holds no newline of its own (json.dumps escapes them), so the layout cannot be forged from
inside a record. A listing in another layout (written by conda-index, by hand) is read whole once,
as JSON, within the caller's bound; the first rewrite puts it in this layout.

Hand-written rather than a streaming JSON library: the layout is regsync's own, and splitting a
line at its key is all the parsing a record needs (ijson, tried on a 190 MB listing, spent about
4 s per pass on this project's 2-core machine building every record as objects only to write
them back as text).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

from regsync.errors import RegistryError

SECTIONS = ("packages", "packages.conda")
# A listing as parts: ("top", key, value text), ("section", key), ("record", filename, record text), ("end",)
Part = tuple[str, ...]
Rank = tuple[int, int] | None   # a record's place upstream: (which source, where in its repodata)
_DECODER = json.JSONDecoder()


class NotOurs(ValueError):
    """The file is not in the layout above (fall back to reading it whole)."""


def section_of(filename: str) -> str:
    return "packages.conda" if filename.endswith(".conda") else "packages"


def empty_parts(subdir: str) -> list[Part]:
    """A new listing's parts: what a fresh channel's repodata.json holds."""
    return [("top", "info", json.dumps({"subdir": subdir})), ("section", "packages"), ("end",),
            ("section", "packages.conda"), ("end",), ("top", "removed", "[]"), ("top", "repodata_version", "1")]


def parts_of_lines(lines: Iterable[str]) -> Iterator[Part]:
    """The listing as parts: ("top", key, value text), ("section", key), ("record", filename, record
    text), ("end",) closing a section. Raises NotOurs at the first line out of the layout."""
    lines = iter(lines)
    if next(lines, "").rstrip("\n") != "{":
        raise NotOurs("not regsync's layout")
    in_section = False
    for raw in lines:
        line = raw.rstrip("\n")
        if in_section:
            if line in ("}", "},"):
                in_section = False
                yield ("end",)
                continue
            key, text = _split(line)
            if not (text.startswith("{") and text.endswith("}")):
                raise NotOurs(f"a record of {key!r} is not one line")
            yield ("record", key, text)
        elif line == "}":
            if any(rest.strip() for rest in lines):
                raise NotOurs("text after the listing's end")
            return
        else:
            key, text = _split(line)
            if key in SECTIONS and text in ("{", "{}"):
                yield ("section", key)
                if text == "{}":
                    yield ("end",)
                else:
                    in_section = True
            else:
                json.loads(text)  # a one-line value (small: info, removed, a version), whole or not ours
                yield ("top", key, text)
    raise NotOurs("the listing ends early")


def _split(line: str) -> tuple[str, str]:
    try:
        key, end = _DECODER.raw_decode(line)
    except ValueError:
        raise NotOurs("a line without a key") from None
    text = line[end + 2:]
    text = text[:-1] if text.endswith(",") else text
    if not isinstance(key, str) or line[end:end + 2] != ": " or not text:
        raise NotOurs("a line without a key")
    return key, text


def parts_of_document(data: bytes) -> Iterator[Part]:
    """A listing in any layout, read whole (the fallback): the same parts, each value as json.dumps
    writes it (key for key as the file has it). Raises ValueError at once when it is not a JSON object."""
    try:
        repodata = json.loads(data)
    except ValueError:
        raise ValueError("not JSON") from None
    if not isinstance(repodata, dict):
        raise ValueError("not a JSON object")
    return _document_parts(repodata)


def _document_parts(repodata: dict[str, Any]) -> Iterator[Part]:
    for key, value in repodata.items():
        if key in SECTIONS and isinstance(value, dict):
            yield ("section", key)
            for filename, record in value.items():
                yield ("record", filename, json.dumps(record))
            yield ("end",)
        else:
            yield ("top", key, json.dumps(value))


class Listed(Mapping[str, dict[str, Any]]):
    """File name → record of what a listing holds; each record kept as its text, parsed on lookup."""

    def __init__(self, parts: Iterable[Part] = ()):
        self._texts: dict[str, str] = {}
        for part in parts:
            if part[0] == "record":
                self._texts[part[1]] = part[2]

    def __getitem__(self, filename: str) -> dict[str, Any]:
        text = self._texts[filename]
        try:
            record = json.loads(text)
        except ValueError:
            record = None
        if not isinstance(record, dict):  # a line edited by hand: never guessed at
            raise RegistryError(f"repodata.json of the target: {filename}", None,
                                "its record is not one JSON object: fix or remove that line")
        return record

    def __iter__(self) -> Iterator[str]:
        return iter(self._texts)

    def __len__(self) -> int:
        return len(self._texts)


def merged(parts: Iterable[Part], batch: Mapping[str, tuple[Rank, dict[str, Any]]],
           rank: Callable[[str], Rank], withdrawn: Iterable[str] = ()) -> Iterator[str]:
    """The listing's text, chunk by chunk: `parts` with every record of `batch` (file name → (its
    rank, record)) written exactly as given (json.dumps of the dict: key for key, in its order).
    A record the listing has is replaced where it stands. A new one goes before the first listed
    record that comes after it upstream (`rank`: its place in the source's repodata, None when the
    source does not list it), so a mirror lists in upstream's order and a client reading it
    (rattler's choice between a .tar.bz2 and a .conda of one build depends on it) sees what it saw
    upstream; the rest go at the end of their section.

    `withdrawn`: files upstream lists as `removed`. Each joins the listing's `removed` list and,
    when the listing has its record, that record is no longer listed (the file stays where it is).
    A file of `batch` is never withdrawn: upstream lists it."""
    withdrawn = [name for name in dict.fromkeys(withdrawn) if name not in batch]
    dropped = set(withdrawn)
    waiting = {section: sorted(((key, name) for name, (key, _) in batch.items() if section_of(name) == section),
                               key=lambda pair: (pair[0] is None, pair[0] if pair[0] is not None else 0))
               for section in SECTIONS}
    waiting = {section: [name for _, name in pairs] for section, pairs in waiting.items()}
    written: set[str] = set()
    seen_sections: set[str] = set()
    first_top, header, section = True, None, ""

    def record_line(name: str, text: str) -> str:
        nonlocal header
        line = (header if header is not None else ",\n") + json.dumps(name) + ": " + text
        header = None
        return line

    def open_section(key: str) -> None:
        nonlocal section, header, first_top
        section, header = key, ("" if first_top else ",\n") + json.dumps(key) + ": {\n"
        first_top = False
        seen_sections.add(key)

    def new_before(current_rank: Rank) -> Iterator[str]:
        queue = waiting[section]
        while queue and current_rank is not None:
            head = batch[queue[0]][0]
            if head is None or not head < current_rank:
                break
            name = queue.pop(0)
            written.add(name)
            yield record_line(name, json.dumps(batch[name][1]))

    def close() -> Iterator[str]:
        nonlocal section
        for name in waiting[section]:
            if name not in written:
                written.add(name)
                yield record_line(name, json.dumps(batch[name][1]))
        waiting[section] = []
        # an empty section stays on its line: `"packages": {}`
        yield header[:-1] + "}" if header is not None else "\n}"
        section = ""

    removed_written = False

    def removed_text(text: str) -> str:
        listed = json.loads(text)
        listed = listed if isinstance(listed, list) else []
        return json.dumps([name for name in dict.fromkeys(listed + withdrawn) if name not in batch])

    yield "{\n"
    for part in parts:
        kind = part[0]
        if kind == "top":
            text = part[2]
            if part[1] == "removed":
                text, removed_written = removed_text(text), True
            yield ("" if first_top else ",\n") + json.dumps(part[1]) + ": " + text
            first_top = False
        elif kind == "section":
            open_section(part[1])
        elif kind == "record":
            name = part[1]
            if name in written or name in dropped:
                continue  # written earlier, in upstream's place; or withdrawn upstream
            yield from new_before(rank(name))
            if name in batch:
                written.add(name)
                yield record_line(name, json.dumps(batch[name][1]))
            else:
                yield record_line(name, part[2])
        else:  # the section's end
            yield from close()
    for missing in SECTIONS:
        if missing not in seen_sections and waiting[missing]:
            open_section(missing)
            yield from close()
    if withdrawn and not removed_written:
        yield ",\n" + json.dumps("removed") + ": " + removed_text("[]")
    yield "\n}\n"
