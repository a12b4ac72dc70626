"""An SQLite index over the JSONL trail, for queries. The JSONL stays the source of truth: the
index is rebuilt whenever the trail's size or last line differ from what it was built from."""

from __future__ import annotations

import hashlib
import os
import sqlite3
from pathlib import Path

from regsync.audit.chain import read_record
from regsync.content.files import open_input

SCHEMA = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT);
CREATE TABLE records (seq INTEGER, ts TEXT, run_id TEXT, event TEXT, source TEXT, target TEXT, digest TEXT,
                      rule TEXT, reason TEXT, line TEXT);
CREATE INDEX records_ts ON records (ts);
CREATE INDEX records_event ON records (event);
CREATE INDEX records_run ON records (run_id);
"""


def _fingerprint(trail: Path) -> str:
    """Size, inode, mtime and the last 64 KiB: any append, rewrite or replacement changes it, without
    reading a multi-gigabyte trail (`audit verify` is the integrity check, not the index)."""
    with open_input(trail) as handle:
        stat = os.fstat(handle.fileno())
        handle.seek(max(0, stat.st_size - 65536))
        tail = hashlib.sha256(handle.read()).hexdigest()
    return f"{stat.st_size}:{stat.st_ino}:{stat.st_mtime_ns}:{tail}"


def open_index(trail: Path, index_path: Path | None = None) -> sqlite3.Connection:
    index_path = index_path or trail.with_name(trail.name + ".sqlite")
    fingerprint = _fingerprint(trail)
    if index_path.exists():
        db = sqlite3.connect(index_path)
        try:
            row = db.execute("SELECT value FROM meta WHERE key = 'fingerprint'").fetchone()
            if row and row[0] == fingerprint:
                return db
        except sqlite3.DatabaseError:
            pass
        db.close()
        index_path.unlink()
    return _build(trail, index_path, fingerprint)


def _build(trail: Path, index_path: Path, fingerprint: str) -> sqlite3.Connection:
    tmp = index_path.with_name(index_path.name + ".tmp")
    tmp.unlink(missing_ok=True)
    db = sqlite3.connect(tmp)
    db.executescript(SCHEMA)
    with open_input(trail) as handle, db:
        db.executemany("INSERT INTO records VALUES (?,?,?,?,?,?,?,?,?,?)", _rows(handle))
        db.execute("INSERT INTO meta VALUES ('fingerprint', ?)", (fingerprint,))
    db.close()
    tmp.replace(index_path)  # readers never see a half-built index
    return sqlite3.connect(index_path)


def _rows(handle):
    for raw in handle:
        record = read_record(raw)
        if record is None:   # not an audit record: `audit verify` names it
            continue
        artifact = record.get("artifact") or {}
        yield (record.get("seq"), record.get("ts"), record.get("run_id"), record.get("event"), artifact.get("source"),
               artifact.get("target"), artifact.get("digest"), record.get("policy_rule"), record.get("reason"),
               raw.decode("utf-8", "replace").rstrip("\n"))


def query(db: sqlite3.Connection, *, since: str | None = None, until: str | None = None, event: str | None = None,
          artifact: str | None = None, run: str | None = None, raw: bool = False) -> list:
    """The matching records as dicts, or with `raw` as the trail's own lines (the hashed bytes)."""
    filters = [("ts >= ?", since), ("ts <= ?", until), ("event = ?", event), ("run_id = ?", run),
               # shell-style pattern against source or target, e.g. '*pytorch*'
               ("(source GLOB ? OR target GLOB ?)", artifact)]
    clauses = [clause for clause, value in filters if value]
    params = [value for clause, value in filters if value for _ in range(clause.count("?"))]
    where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
    lines = [line for (line,) in db.execute(f"SELECT line FROM records {where} ORDER BY seq", params)]
    return lines if raw else [record for record in map(read_record, lines) if record is not None]
