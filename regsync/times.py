"""Timestamps as registries and our audit trail write them."""

from __future__ import annotations

import re
from datetime import datetime, timezone

_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_time(text: str) -> datetime:
    """RFC 3339 as Go writes it (nanoseconds, 'Z'), which datetime.fromisoformat rejects before 3.11."""
    text = re.sub(r"(\.\d{6})\d+", r"\1", text.strip()).replace("Z", "+00:00")
    stamp = datetime.fromisoformat(text)
    return stamp if stamp.tzinfo else stamp.replace(tzinfo=timezone.utc)


def parse_duration(value) -> int:
    """'7d' → 604800 seconds (s, m, h, d, w); a plain integer is seconds."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    match = re.fullmatch(r"\s*(\d+)\s*([smhdw])\s*", str(value))
    if not match:
        raise ValueError(f"'{value}' is not a duration (examples: 7d, 12h, 90m, 3600s)")
    return int(match.group(1)) * _SECONDS[match.group(2)]


def format_duration(seconds: int) -> str:
    """604800 → '7d': the largest unit up to days that divides it."""
    for unit, size in sorted(_SECONDS.items(), key=lambda pair: -pair[1])[1:]:
        if seconds and seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"
