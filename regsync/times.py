"""Timestamps as registries and our audit trail write them."""

from __future__ import annotations

import re
from datetime import datetime, timezone


def parse_time(text: str) -> datetime:
    """RFC 3339 as Go writes it (nanoseconds, 'Z'), which datetime.fromisoformat rejects before 3.11."""
    text = re.sub(r"(\.\d{6})\d+", r"\1", text.strip()).replace("Z", "+00:00")
    stamp = datetime.fromisoformat(text)
    return stamp if stamp.tzinfo else stamp.replace(tzinfo=timezone.utc)
