"""Time in the forms the API and the ARNs use."""
from __future__ import annotations

import time
from datetime import datetime, timezone


def now() -> datetime:
    return datetime.now(timezone.utc)


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def parse(value: str) -> datetime:
    return datetime.fromisoformat(value)
