"""Time in the forms the API and the ARNs use."""
from __future__ import annotations

from datetime import datetime, timezone


def now() -> datetime:
    return datetime.now(timezone.utc)


def parse(value: str) -> datetime:
    return datetime.fromisoformat(value)


def now_ms() -> int:
    """Now, in milliseconds since the epoch (the feedback service's timestamps)."""
    return int(now().timestamp() * 1000)
